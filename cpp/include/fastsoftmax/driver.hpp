// Walks N-d strided arrays and hands rows or columns to the active kernels.
#pragma once

#include <cstddef>
#include <vector>

namespace fastsoftmax {

enum class Op { softmax, log_softmax, logsumexp, softmax_backward, log_softmax_backward };

// One array operand: data pointer and strides in elements (may be negative).
template <class T>
struct Strided {
    T* data;
    std::vector<std::ptrdiff_t> strides;
};

// Applies `op` along `axis` of arrays of shape `shape`.
//   in0 (and in1 for the backward ops: in0 = grad, in1 = y) are read;
//   out is written; for logsumexp, out has the same ndim with out.strides[axis]
//   ignored (the reduced axis). out may alias an input exactly (same data and
//   strides), never partially.
template <class T>
void apply(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
           const Strided<const T>& in0, const Strided<const T>* in1, const Strided<T>& out);

}  // namespace fastsoftmax
