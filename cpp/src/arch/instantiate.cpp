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
#include "generic/backward.hpp"
#include "generic/ce_rows.hpp"
#include "generic/softmax_rows.hpp"

namespace fastsoftmax {

namespace FASTSOFTMAX_TARGET {

// All kernels of one element type, for the KernelTable.
template <class V>
constexpr Kernels<typename V::T> make_kernels() {
    return Kernels<typename V::T>{
        &softmax_rows<V>,
        &log_softmax_rows<V>,
        &logsumexp_rows<V>,
        &backward_rows<V, SoftmaxGrad<V>>,
        &backward_rows<V, LogSoftmaxGrad<V>>,
        &softmax_cols<V>,
        &log_softmax_cols<V>,
        &logsumexp_cols<V>,
        &backward_cols<V, SoftmaxGrad<V>>,
        &backward_cols<V, LogSoftmaxGrad<V>>,
        &segment_max_sum<V>,
        &softmax_segment_scale<V>,
        &log_softmax_segment<V>,
        &cross_entropy_rows<V>,
        &cross_entropy_cols<V>,
        &exp_array<V>,
        &log_array<V>,
        &tanh_array<V>,
    };
}

}  // namespace FASTSOFTMAX_TARGET

const KernelTable& FASTSOFTMAX_CAT(FASTSOFTMAX_TARGET, _kernels)() {
    namespace isa = FASTSOFTMAX_TARGET;
    static const KernelTable table{FASTSOFTMAX_STR(FASTSOFTMAX_TARGET),
                                   isa::make_kernels<isa::F32>(), isa::make_kernels<isa::F64>()};
    return table;
}

}  // namespace fastsoftmax
