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
template <class T>
void apply(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
           const Strided<const T>& in0, const Strided<const T>* in1, const Strided<T>& out,
           const SoftmaxParams& params);

}  // namespace fastsoftmax
