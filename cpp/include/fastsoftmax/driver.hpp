// The softmax family over N-d strided arrays: plans the walk
// (cpp/src/layout/plan.hpp) and hands its pieces to the active kernels.
#pragma once

#include <cstddef>
#include <vector>

#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/strided.hpp"

namespace fastsoftmax {

enum class Op { softmax, log_softmax, logsumexp, softmax_backward, log_softmax_backward };

// Applies `op` along `axis` of arrays of shape `shape`.
//   in0 (and in1 for the backward ops: in0 = grad, in1 = y) are read;
//   out is written; for logsumexp, out has the same ndim with out.strides[axis]
//   ignored (the reduced axis). out may alias an input exactly (same data and
//   strides), never partially.
// params: the call's parameters (the binding fills what the user gave); the
// driver sets params.from_memory from the array's size before the kernels
// see them.
// where: a mask of the input's shape (one byte per element, in elements;
// nonzero: included), or null. Excluded entries are left out of each line:
// softmax gives 0 there, log_softmax -inf, the gradients 0; a line with
// nothing included gives softmax 0, log_softmax and logsumexp -inf, and a
// zero gradient. out must not overlap it.
template <class T>
void apply(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
           const Strided<const T>& in0, const Strided<const T>* in1, const Strided<T>& out,
           const SoftmaxParams& params, const Strided<const unsigned char>* where = nullptr);

}  // namespace fastsoftmax
