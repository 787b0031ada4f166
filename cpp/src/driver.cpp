// The N-d driver. It chooses, per call, one of three ways to feed kernels:
//   rows    - the reduction axis is contiguous in every operand: the other
//             axes are coalesced and the innermost one is passed as `rows`;
//   columns - another axis is contiguous in every operand: kernels vectorize
//             across it, one lane per independent reduction (no transpose);
//   gather  - anything else (e.g. a negative stride on the reduction axis):
//             each row is copied into a contiguous buffer and back.
// Each way cuts its work into tasks for the threads (parallel.hpp) by shape
// alone; a few long rows (softmax, log_softmax, logsumexp) are cut into
// segments, whose (max, sum) pairs are merged.
#include "fastsoftmax/driver.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"
#include "nd_walk.hpp"

namespace fastsoftmax {
namespace {

using nd::coalesce;
using nd::Dim;
using nd::for_each_run;
using nd::for_each_unit;
using nd::Split;
using nd::split_last;
using nd::kMaxOperands;

template <class T>
void call_rows(const Kernels<T>& k, Op op, const T* a, std::ptrdiff_t as, const T* b,
               std::ptrdiff_t bs, T* o, std::ptrdiff_t os, std::size_t rows, std::size_t n,
               const SoftmaxParams& params) {
    switch (op) {
        case Op::softmax:
            return k.softmax_rows(a, as, o, os, rows, n, params);
        case Op::log_softmax:
            return k.log_softmax_rows(a, as, o, os, rows, n, params);
        case Op::logsumexp:
            return k.logsumexp_rows(a, as, o, os, rows, n, params);
        case Op::softmax_backward:
            return k.softmax_backward_rows(a, as, b, bs, o, os, rows, n, params);
        case Op::log_softmax_backward:
            return k.log_softmax_backward_rows(a, as, b, bs, o, os, rows, n, params);
    }
}

template <class T>
void call_cols(const Kernels<T>& k, Op op, const T* a, std::ptrdiff_t as, const T* b,
               std::ptrdiff_t bs, T* o, std::ptrdiff_t os, std::size_t n, std::size_t inner,
               const SoftmaxParams& params) {
    switch (op) {
        case Op::softmax:
            return k.softmax_cols(a, as, o, os, n, inner, params);
        case Op::log_softmax:
            return k.log_softmax_cols(a, as, o, os, n, inner, params);
        case Op::logsumexp:
            return k.logsumexp_cols(a, as, o, n, inner, params);
        case Op::softmax_backward:
            return k.softmax_backward_cols(a, as, b, bs, o, os, n, inner, params);
        case Op::log_softmax_backward:
            return k.log_softmax_backward_cols(a, as, b, bs, o, os, n, inner, params);
    }
}

// At most this many rows of at least two segments each are cut into
// segments of kSegment elements, spread over the threads (a multiple of
// every target's block, so that segments start on a block).
constexpr std::size_t kFewRows = 8;
constexpr std::size_t kSegment = std::size_t(1) << 15;
static_assert(kSegment % 1024 == 0, "segments start on a block of any target");

// softmax, log_softmax or logsumexp of a few long rows (row r at a + ia[r],
// its output at y + iy[r]): per segment its (max, sum) (softmax: and its
// exponentials), merged per row, then per segment the outputs.
template <class T>
void long_rows(const Kernels<T>& k, Op op, const T* a, const std::vector<std::ptrdiff_t>& ia,
               T* y, const std::vector<std::ptrdiff_t>& iy, std::size_t n, const SoftmaxParams& params) {
    const std::size_t rows = ia.size();
    const std::size_t segs = (n + kSegment - 1) / kSegment;
    constexpr std::size_t kRefs = kSegment / kMinSegmentBlock;
    const bool soft = op == Op::softmax;
    SoftmaxParams in_cache = params;  // (the scalar path of a special row)
    in_cache.from_memory = false;
    std::vector<MaxSum> part(rows * segs);
    std::vector<T> refs(soft ? rows * segs * kRefs : 0);
    const auto seg = [&](std::size_t t, std::size_t& r, std::size_t& i) {
        r = t / segs;
        i = (t % segs) * kSegment;
        return (n - i < kSegment) ? n - i : kSegment;
    };
    parallel_for(rows * segs, [&](std::size_t t) {
        std::size_t r, i;
        const std::size_t len = seg(t, r, i);
        const auto ii = static_cast<std::ptrdiff_t>(i);
        part[t] = k.segment_max_sum(a + ia[r] + ii, len, soft ? y + iy[r] + ii : nullptr,
                                    soft ? &refs[t * kRefs] : nullptr, params);
    });
    std::vector<MaxSum> row(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        double m = -std::numeric_limits<double>::infinity(), s = 0;
        bool special = false;
        for (std::size_t j = 0; j < segs; ++j) {
            special = special || part[r * segs + j].special;
            m = std::max(m, part[r * segs + j].max);
        }
        for (std::size_t j = 0; j < segs && !special; ++j) {
            const MaxSum& p = part[r * segs + j];
            if (p.sum > 0) s += p.sum * std::exp(p.max - m);  // (not a segment of -inf)
        }
        row[r] = {m, s, special || !std::isfinite(m) || s != s};
    }
    if (op == Op::logsumexp) {
        for (std::size_t r = 0; r < rows; ++r) {
            if (row[r].special)
                k.logsumexp_rows(a + ia[r], 0, y + iy[r], 0, 1, n, params);
            else
                y[iy[r]] = static_cast<T>(row[r].max + std::log(row[r].sum));
        }
        return;
    }
    parallel_for(rows * segs, [&](std::size_t t) {
        std::size_t r, i;
        const std::size_t len = seg(t, r, i);
        const auto ii = static_cast<std::ptrdiff_t>(i);
        const MaxSum& ms = row[r];
        if (ms.special) {  // SciPy's answers, from the scalar path (x was not written)
            if (soft)
                std::fill_n(y + iy[r] + ii, len, std::numeric_limits<T>::quiet_NaN());
            else if (i == 0)
                k.log_softmax_rows(a + ia[r], 0, y + iy[r], 0, 1, n, in_cache);
        } else if (soft) {
            k.softmax_segment_scale(y + iy[r] + ii, len, &refs[t * kRefs], ms.max, ms.sum, params);
        } else {
            k.log_softmax_segment(a + ia[r] + ii, y + iy[r] + ii, len, ms.max, ms.sum, params);
        }
    });
}

}  // namespace

template <class T>
void apply(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
           const Strided<const T>& in0, const Strided<const T>* in1, const Strided<T>& out) {
    const std::size_t ndim = shape.size();
    if (axis >= ndim) throw std::invalid_argument("axis out of range");
    const bool reduce = (op == Op::logsumexp);
    const std::size_t k = in1 ? 3 : 2;  // operands: in0, [in1], out (last)
    const std::size_t o = k - 1;
    const std::size_t n = shape[axis];
    const Kernels<T>& kern = kernels_of<T>(active_kernels());

    std::ptrdiff_t axis_stride[kMaxOperands] = {in0.strides[axis], in1 ? in1->strides[axis] : 0, 0};
    axis_stride[o] = reduce ? 0 : out.strides[axis];

    std::vector<Dim> dims;
    std::size_t lines = 1;  // the number of reductions
    for (std::size_t d = 0; d < ndim; ++d) {
        if (d == axis) continue;
        if (shape[d] == 0) return;  // nothing to compute
        lines *= shape[d];
        if (shape[d] == 1) continue;
        Dim dim{shape[d], {in0.strides[d], in1 ? in1->strides[d] : 0, 0}};
        dim.stride[o] = out.strides[d];
        dims.push_back(dim);
    }
    if (n == 0 && !reduce) return;
    SoftmaxParams params;
    params.from_memory = lines * n * sizeof(T) >= kStreamBytes;
    SoftmaxParams in_cache = params;  // (for one row copied to a buffer)
    in_cache.from_memory = false;

    const T* const a = in0.data;
    const T* const b = in1 ? in1->data : nullptr;
    T* const y = out.data;

    // rows: every operand (but a reduced output) is contiguous along the axis
    bool rows_ok = true;
    for (std::size_t i = 0; i < k; ++i)
        rows_ok = rows_ok && (n <= 1 || axis_stride[i] == 1 || (reduce && i == o));
    const Split rows = split_last(dims, k);  // (rows and gather)
    const Dim& last = rows.last;
    if (rows_ok) {
        if (!b && lines <= kFewRows && n >= 2 * kSegment) {
            std::vector<std::ptrdiff_t> ia, iy;
            for_each_unit(rows.outer, last, k, 0, lines, [&](const std::ptrdiff_t* off) {
                ia.push_back(off[0]);
                iy.push_back(off[o]);
            });
            return long_rows(kern, op, a, ia, y, iy, n, params);
        }
        const std::size_t per = units_per_task(lines, n + kRowCost);
        parallel_for((lines + per - 1) / per, [&](std::size_t t) {
            for_each_run(rows.outer, last, k, t * per, std::min(lines, (t + 1) * per),
                         [&](const std::ptrdiff_t* off, std::size_t count) {
                             call_rows(kern, op, a + off[0], last.stride[0],
                                       b ? b + off[1] : nullptr, last.stride[1], y + off[o],
                                       last.stride[o], count, n, params);
                         });
        });
        return;
    }

    // columns: some other axis is contiguous in every operand; tasks take
    // whole vectors of columns where they can
    for (std::size_t j = dims.size(); j-- > 0;) {
        bool unit = true;
        for (std::size_t i = 0; i < k; ++i) unit = unit && dims[j].stride[i] == 1;
        if (!unit) continue;
        const Dim inner = dims[j];
        std::vector<Dim> rest(dims);
        rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(j));
        rest = coalesce(rest, k);
        const std::size_t per = units_per_task(lines, n, 64);
        parallel_for((lines + per - 1) / per, [&](std::size_t t) {
            for_each_run(rest, inner, k, t * per, std::min(lines, (t + 1) * per),
                         [&](const std::ptrdiff_t* off, std::size_t count) {
                             call_cols(kern, op, a + off[0], axis_stride[0],
                                       b ? b + off[1] : nullptr, axis_stride[1], y + off[o],
                                       axis_stride[o], n, count, params);
                         });
        });
        return;
    }

    // gather: copy each row into contiguous buffers (one set per task)
    const std::size_t per = units_per_task(lines, n + kRowCost);
    parallel_for((lines + per - 1) / per, [&](std::size_t t) {
        std::vector<T> buf_a(n), buf_b(b ? n : 0), buf_y(reduce ? 1 : n);
        const auto one_row = [&](const std::ptrdiff_t* off) {
            for (std::size_t i = 0; i < n; ++i) {
                buf_a[i] = a[off[0] + static_cast<std::ptrdiff_t>(i) * axis_stride[0]];
                if (b) buf_b[i] = b[off[1] + static_cast<std::ptrdiff_t>(i) * axis_stride[1]];
            }
            call_rows(kern, op, buf_a.data(), 0, b ? buf_b.data() : nullptr, 0, buf_y.data(), 0,
                      1, n, in_cache);
            if (reduce) {
                y[off[o]] = buf_y[0];
            } else {
                for (std::size_t i = 0; i < n; ++i)
                    y[off[o] + static_cast<std::ptrdiff_t>(i) * axis_stride[o]] = buf_y[i];
            }
        };
        for_each_unit(rows.outer, last, k, t * per, std::min(lines, (t + 1) * per), one_row);
    });
}

template void apply<float>(Op, const std::vector<std::size_t>&, std::size_t,
                           const Strided<const float>&, const Strided<const float>*,
                           const Strided<float>&);
template void apply<double>(Op, const std::vector<std::size_t>&, std::size_t,
                            const Strided<const double>&, const Strided<const double>*,
                            const Strided<double>&);

}  // namespace fastsoftmax
