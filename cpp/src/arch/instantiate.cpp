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
#include "generic/softmax.hpp"

namespace fastsoftmax {

const KernelTable& FASTSOFTMAX_CAT(FASTSOFTMAX_TARGET, _kernels)() {
    namespace isa = FASTSOFTMAX_TARGET;
    static const KernelTable table{FASTSOFTMAX_STR(FASTSOFTMAX_TARGET),
                                   isa::make_kernels<isa::F32>(), isa::make_kernels<isa::F64>()};
    return table;
}

}  // namespace fastsoftmax
