// Mergeable parts of the softmax family along one axis (fastsoftmax's
// logsumexp_parts, for arrays split along that axis, as Dask chunks them):
// each line's (max, sum of exp(x - max)) pair, and softmax or log_softmax
// of a part of each line from the whole line's pair, merged from its
// parts' pairs by the caller (in Python: fastsoftmax.merge_logsumexp_parts).
//
// The pairs, per line (in float64):
//   finite maximum m        -> (m, sum(exp(x - m))), the sum >= 1;
//   only -inf, or no values -> (-inf, 0);
//   a NaN                   -> (NaN, NaN);
//   a +inf (and no NaN)     -> (+inf, 1).
#pragma once

#include <cstddef>
#include <vector>

#include "fastsoftmax/driver.hpp"
#include "fastsoftmax/strided.hpp"

namespace fastsoftmax {

// max and sum hold one value per line of x (their strides along `axis`
// are ignored) and are written. The sum is taken as logsumexp takes it
// (float exponentials in short runs, then double) or, with softmax_sums, as
// softmax does (each pair of float vectors straight into double: no
// accumulator holds exp(0) = 1 while it adds small terms), which the
// outputs of apply_from_max_sum's softmax need for softmax's accuracy
// (float only: double and half-precision runs are summed in double anyway).
template <class T>
void max_sum_parts(const std::vector<std::size_t>& shape, std::size_t axis,
                   const Strided<const T>& x, const Strided<double>& max,
                   const Strided<double>& sum, bool softmax_sums);

// op is Op::softmax or Op::log_softmax: out = op of x's lines given the
// whole lines' pairs (max, sum) (their strides along `axis` ignored); the
// special pairs give the answers the whole line would (special_rows.hpp).
// out may alias x exactly.
template <class T>
void apply_from_max_sum(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
                        const Strided<const T>& x, const Strided<const double>& max,
                        const Strided<const double>& sum, const Strided<T>& out);

}  // namespace fastsoftmax
