// Instantiates the generic algorithms for one target. CMake compiles this
// file once per target, each time with -DFASTSOFTMAX_TARGET=<isa> and that
// target's flags only (see cpp/CMakeLists.txt), like simdjson's per-ISA
// implementations; the vector wrapper comes from arch/<isa>/vec.hpp.
#ifndef FASTSOFTMAX_TARGET
#error "compile with -DFASTSOFTMAX_TARGET=<isa>"
#endif

#define FASTSOFTMAX_STR2(x) #x
#define FASTSOFTMAX_STR(x) FASTSOFTMAX_STR2(x)
#define FASTSOFTMAX_CAT2(a, b) a##b
#define FASTSOFTMAX_CAT(a, b) FASTSOFTMAX_CAT2(a, b)

// clang-format off
#include FASTSOFTMAX_STR(arch/FASTSOFTMAX_TARGET/vec.hpp)
// clang-format on
#include "arch/vec_contract.hpp"
#include "generic/backward.hpp"
#include "generic/ce_rows.hpp"
#include "generic/divergence_rows.hpp"
#include "generic/masked_rows.hpp"
#include "generic/masks.hpp"
#include "generic/softmax_rows.hpp"

namespace fastsoftmax {

namespace FASTSOFTMAX_TARGET {

// All kernels for arrays of V::S, by member name (Kernels<S>, kernels.hpp).
template <class V>
constexpr Kernels<typename V::S> make_kernels() {
    static_assert(VecContract<V>::value, "arch/README.md: the vector contract");
    Kernels<typename V::S> k{};
    k.softmax_rows = &softmax_rows<V>;
    k.log_softmax_rows = &log_softmax_rows<V>;
    k.logsumexp_rows = &logsumexp_rows<V>;
    k.softmax_backward_rows = &backward_rows<V, SoftmaxGrad<V>>;
    k.log_softmax_backward_rows = &backward_rows<V, LogSoftmaxGrad<V>>;
    k.softmax_cols = &softmax_cols<V>;
    k.log_softmax_cols = &log_softmax_cols<V>;
    k.logsumexp_cols = &logsumexp_cols<V>;
    k.softmax_backward_cols = &backward_cols<V, SoftmaxGrad<V>>;
    k.log_softmax_backward_cols = &backward_cols<V, LogSoftmaxGrad<V>>;
    k.segment_max_sum = &segment_max_sum<V>;
    k.softmax_segment_scale = &softmax_segment_scale<V>;
    k.log_softmax_segment = &log_softmax_segment<V>;
    k.softmax_from_max_sum = &softmax_from_max_sum<V>;
    k.cross_entropy_rows = &cross_entropy_rows<V>;
    k.cross_entropy_cols = &cross_entropy_cols<V>;
    k.entropy_row = &entropy_row<V>;
    k.kl_div_row = &kl_div_row<V>;
    k.masked_copy = &masked_copy<typename V::S>;
    k.masked_softmax_backward_rows = &masked_backward_rows<V, SoftmaxGrad<V>>;
    k.masked_log_softmax_backward_rows = &masked_backward_rows<V, LogSoftmaxGrad<V>>;
    if constexpr (kExpInOutput<V>) {
        k.masked_softmax_rows = &masked_softmax_rows<V>;
        k.masked_log_rows = &masked_log_rows<V>;
        k.masked_softmax_long_row = &masked_softmax_long_row<V>;
    }
    k.exp = &exp_array<V>;
    k.log = &log_array<V>;
    k.log1p = &log1p_array<V>;
    k.tanh = &tanh_array<V>;
    return k;
}

}  // namespace FASTSOFTMAX_TARGET

const KernelTable& FASTSOFTMAX_CAT(FASTSOFTMAX_TARGET, _kernels)() {
    namespace isa = FASTSOFTMAX_TARGET;
    static const KernelTable table{
        FASTSOFTMAX_STR(FASTSOFTMAX_TARGET), isa::make_kernels<isa::F32>(),
        isa::make_kernels<isa::F64>(),       isa::make_kernels<isa::BF16>(),
        isa::make_kernels<isa::F16>(),       &isa::count_labels};
    return table;
}

}  // namespace fastsoftmax
