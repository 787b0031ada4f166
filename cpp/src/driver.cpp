// The softmax family's N-d driver: the layout planner (layout/plan.hpp)
// chooses the way and cuts the tasks; this file says which kernel runs on
// each piece: rows, columns (in place), gathered rows, or the segments of a
// few long rows (softmax, log_softmax, logsumexp), whose (max, sum) pairs
// are merged.
#include "fastsoftmax/driver.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"
#include "layout/copy.hpp"
#include "layout/plan.hpp"

namespace fastsoftmax {
namespace {

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

// softmax, log_softmax or logsumexp of a few long rows, planned as segments
// (the operands: x, y): per segment its (max, sum) (softmax: and its
// exponentials), merged per row, then per segment the outputs.
template <class T>
void long_rows(const Kernels<T>& k, Op op, const layout::Plan& plan, const T* x, T* y,
               const SoftmaxParams& params) {
    const std::size_t rows = plan.lines, n = plan.n;
    constexpr std::size_t kRefs = layout::kSegment / kMinSegmentBlock;
    const bool soft = op == Op::softmax;
    SoftmaxParams in_cache = params;  // (the scalar path of a special row)
    in_cache.from_memory = false;
    std::vector<std::ptrdiff_t> x_row, y_row;  // the rows' offsets
    layout::for_each_line(plan, [&](const std::ptrdiff_t* offsets) {
        x_row.push_back(offsets[0]);
        y_row.push_back(offsets[1]);
    });
    // the scale as the kernels use it (generic/temperature.hpp): rounded to the compute type
    const double scale = static_cast<double>(static_cast<compute_t<T>>(params.scale));
    std::vector<MaxSum> part(plan.units);
    std::vector<compute_t<T>> refs(soft ? plan.units * kRefs : 0);
    parallel_for(plan.tasks(), [&](std::size_t t) {
        const layout::Segment seg = layout::segment_of(plan, t);
        const auto start = static_cast<std::ptrdiff_t>(seg.start);
        part[t] = k.segment_max_sum(x + x_row[seg.line] + start, seg.length,
                                    soft ? y + y_row[seg.line] + start : nullptr,
                                    soft ? &refs[t * kRefs] : nullptr, params);
    });
    const std::size_t segs = plan.segments_per_line;
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
            if (p.sum > 0)
                s += p.sum *
                     std::exp(scaled_difference(p.max, m, scale));  // (not a segment of -inf)
        }
        row[r] = {m, s, special || !std::isfinite(m) || s != s};
    }
    if (op == Op::logsumexp) {
        for (std::size_t r = 0; r < rows; ++r) {
            if (row[r].special)
                k.logsumexp_rows(x + x_row[r], 0, y + y_row[r], 0, 1, n, params);
            else
                y[y_row[r]] = to_storage<T>(
                    static_cast<compute_t<T>>(std::fma(row[r].max, scale, std::log(row[r].sum))));
        }
        return;
    }
    parallel_for(plan.tasks(), [&](std::size_t t) {
        const layout::Segment seg = layout::segment_of(plan, t);
        const auto start = static_cast<std::ptrdiff_t>(seg.start);
        const T* xs = x + x_row[seg.line] + start;
        T* ys = y + y_row[seg.line] + start;
        const MaxSum& ms = row[seg.line];
        if (ms.special) {  // SciPy's answers, from the scalar path (x was not written)
            if (soft)
                std::fill_n(ys, seg.length,
                            to_storage<T>(std::numeric_limits<compute_t<T>>::quiet_NaN()));
            else if (seg.start == 0)
                k.log_softmax_rows(xs, 0, ys, 0, 1, n, in_cache);
        } else if (soft) {
            k.softmax_segment_scale(xs, ys, seg.length, &refs[t * kRefs], ms.max, ms.sum, params);
        } else {
            k.log_softmax_segment(xs, ys, seg.length, ms.max, ms.sum, params);
        }
    });
}

// where=: what an excluded entry of each input becomes, so that the plain
// row kernels leave it out (x: -inf; softmax_backward's grad and y: 0;
// log_softmax_backward's grad: 0, y: -inf), and what an excluded entry of
// the output is, which is also what a line with nothing included gives
// (softmax and the gradients: 0; log_softmax, logsumexp: -inf).
template <class T>
struct MaskFills {
    T in0, in1, out;
};

template <class T>
MaskFills<T> mask_fills(Op op) {
    using C = compute_t<T>;
    const T zero = to_storage<T>(C(0));
    const T ninf = to_storage<T>(-std::numeric_limits<C>::infinity());
    switch (op) {
        case Op::softmax:
            return {ninf, zero, zero};
        case Op::log_softmax:
        case Op::logsumexp:
            return {ninf, zero, ninf};
        case Op::softmax_backward:
            return {zero, zero, zero};
        case Op::log_softmax_backward:
            return {zero, ninf, zero};
    }
    return {zero, zero, zero};
}

// Lines per batch of a masked call: about this many elements per buffer, so
// that the buffers stay in L1/L2 between the copy and the kernel.
constexpr std::size_t kMaskedBatch = 8192;

// Which rows (float32 and float64, their masks contiguous along them) read
// the mask in their kernels' passes instead of going through the buffers
// (bench/masks.py, float32, time against the plain call, mask copied / read
// in the passes). log_softmax and logsumexp at the row lengths their plain
// kernels take by groups or one by one (Kernels::masked_log_rows; avx512,
// 2026-12-07, log_softmax): 1.48 / 1.15 at (4096, 100), 1.59 / 1.22 at
// (1024, 1000), 1.94 / 1.12 at (256, 32000), 2.26 / 1.22 at (8192, 1024);
// logsumexp, against the one-by-one rows' earlier version (Kernels::masked_row's,
// from 128 classes): 1.30 / 1.20 at (1024, 1000). softmax from kMaskedPipelinedRowMin classes
// (softmax_rows.hpp), the rows the plain kernels pipeline or stream (Kernels::masked_softmax_rows;
// avx2, 2026-12-07): 1.50 / 1.23 at (4096, 100), 1.40 / 1.23 at (4096, 64), 1.63 / 1.14 at (1024,
// 1000), 1.44 / 1.36 at (8192, 1024); the rows the plain kernels do by tiles in memory stay with
// the buffers, whose kernels' bits they are (pipelined with the mask read in the passes: 1.28
// against 1.35 at (8192, 33), 2.71 against 1.85 at (8192, 10), 1.86 against 1.31 at (8192, 17)).
// The register tiles read it (all three ops, the rows and a full or (1, C) mask end to end;
// avx512, 2026-12-07, (8192, 10): softmax 1.78 / 1.16, log_softmax 1.86 / 1.27, logsumexp 1.73 /
// 1.14). Past
// kLongRowBytes, from kMaskedSoftmaxMin (Kernels::masked_softmax_long_row): 1.44 / 1.14 at (256,
// 32000) (avx512). The gradients read it at every row length (Kernels::masked_*_backward_rows;
// avx2: 2.01-5.30 / 1.07-1.49 over bench/masks.py's five shapes). The (N, 1) masks' runs of rows
// start at kMaskedRowMin (shorter rows: many short kernel calls, 3.3x at (8192, 10)).
constexpr std::size_t kMaskedRowMin = 128;
constexpr std::size_t kMaskedSoftmaxMin = 8192;

// Whether a gradient line's first excluded entry (mask bytes ms apart) is
// NaN: its included entries are finite but their sum overflowed, which gives
// the excluded ones 0 * inf (the other way they turn NaN, a non-finite input,
// masked_copy reports).
template <class T>
bool nan_at_first_excluded(const T* line, const unsigned char* m, std::ptrdiff_t ms,
                           std::size_t n) {
    std::size_t i = 0;
    if (ms == 1) {
        const void* z = std::memchr(m, 0, n);
        if (!z) return false;
        i = static_cast<std::size_t>(static_cast<const unsigned char*>(z) - m);
    } else {
        while (i < n && m[static_cast<std::ptrdiff_t>(i) * ms]) ++i;
        if (i == n) return false;
    }
    const auto v = to_compute(line[i]);
    return v != v;
}

// Whether any of the n bytes at m is nonzero.
bool line_any(const unsigned char* m, std::size_t n) {
    std::uint64_t acc = 0;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t v;
        std::memcpy(&v, m + i, 8);
        acc |= v;
    }
    for (; i < n; ++i) acc |= m[i];
    return acc != 0;
}

// The lines of a call with a where= mask (plan: rows or gather; the mask is
// operand `mi`, its stride along the axis `ms`). Each batch of lines is
// copied to per-task buffers with the fills where the mask is False (in one
// copy when the rows and their masks lie back to back, or the mask is one
// row for all: a (1, C) mask, laid out once per task), and the plain row
// kernels run on the buffers; then `finish` rewrites the excluded entries of
// the lines where the kernels may have put NaN there. A mask constant along the axis of contiguous
// rows (ms = 0: an (N, 1) mask) copies nothing: the kernels run on the runs of included rows
// themselves, and the excluded rows are filled. Rows whose mask is contiguous along them
// copy nothing either where their kernels read the mask in their passes: the gradients
// (any row length), softmax's register tiles, pipelined and streamed rows
// (masked_softmax_rows), log_softmax and logsumexp (masked_log_rows) and long
// softmax rows (masked_softmax_long_row, below).
template <class T>
void masked_lines(const Kernels<T>& k, Op op, const layout::Plan& plan, const T* a, const T* b,
                  T* y, std::size_t o, const unsigned char* mask, std::size_t mi, std::ptrdiff_t ms,
                  const SoftmaxParams& params) {
    const std::size_t n = plan.n;
    const bool reduce = op == Op::logsumexp;
    const bool rows = plan.way == layout::Way::rows;
    const std::ptrdiff_t* const rs = plan.inner.stride;  // rows: between the rows of a batch
    const std::ptrdiff_t* const as = plan.axis_stride;
    const auto sn = static_cast<std::ptrdiff_t>(n);
    if (rows && (ms == 0 || n <= 1)) {  // no copy
        parallel_for(plan.tasks(), [&](std::size_t t) {
            layout::for_each_batch(plan, t, [&](const layout::Batch& batch) {
                const std::ptrdiff_t* off = batch.offsets;
                const T out = mask_fills<T>(op).out;
                const auto included = [&](std::size_t r) {
                    return n > 0 && mask[off[mi] + static_cast<std::ptrdiff_t>(r) * rs[mi]];
                };
                if (n < kMaskedRowMin) {  // (short rows: all at once, then the fills)
                    call_rows(k, op, a + off[0], rs[0], b ? b + off[1] : nullptr, rs[1], y + off[o],
                              rs[o], batch.count, n, params);
                    for (std::size_t r = 0; r < batch.count; ++r)
                        if (!included(r))
                            std::fill_n(y + off[o] + static_cast<std::ptrdiff_t>(r) * rs[o],
                                        reduce ? 1 : n, out);
                    return;
                }
                // runs of included rows to the kernels, the others filled
                for (std::size_t r = 0; r < batch.count;) {
                    std::size_t e = r;
                    while (e < batch.count && included(e)) ++e;
                    const auto i = static_cast<std::ptrdiff_t>(r);
                    if (e > r) {
                        call_rows(k, op, a + off[0] + i * rs[0], rs[0],
                                  b ? b + off[1] + i * rs[1] : nullptr, rs[1],
                                  y + off[o] + i * rs[o], rs[o], e - r, n, params);
                        r = e;
                    } else {
                        std::fill_n(y + off[o] + i * rs[o], reduce ? 1 : n, out);
                        ++r;
                    }
                }
            });
        });
        return;
    }
    if (rows && ms == 1 && op == Op::softmax && k.masked_softmax_rows &&
        // the mask read in the register tiles', pipelined or streamed rows' passes
        k.masked_softmax_rows(a, rs[0], y, rs[o], mask, rs[mi], 0, n, params)) {
        parallel_for(plan.tasks(), [&](std::size_t t) {
            layout::for_each_batch(plan, t, [&](const layout::Batch& batch) {
                const std::ptrdiff_t* off = batch.offsets;
                k.masked_softmax_rows(a + off[0], rs[0], y + off[o], rs[o], mask + off[mi], rs[mi],
                                      batch.count, n, params);
            });
        });
        return;
    }
    if (rows && ms == 1 && (op == Op::log_softmax || op == Op::logsumexp) && k.masked_log_rows) {
        // the mask read in the row kernels' passes
        const MaskedOp mop = op == Op::log_softmax ? MaskedOp::log_softmax : MaskedOp::logsumexp;
        if (k.masked_log_rows(mop, a, rs[0], y, rs[o], mask, rs[mi], 0, n, params)) {
            parallel_for(plan.tasks(), [&](std::size_t t) {
                layout::for_each_batch(plan, t, [&](const layout::Batch& batch) {
                    const std::ptrdiff_t* off = batch.offsets;
                    k.masked_log_rows(mop, a + off[0], rs[0], y + off[o], rs[o], mask + off[mi],
                                      rs[mi], batch.count, n, params);
                });
            });
            return;
        }
    }
    if (rows && ms == 1 && b) {  // gradients: the mask read in the kernels' passes
        const auto kernel = op == Op::softmax_backward ? k.masked_softmax_backward_rows
                                                       : k.masked_log_softmax_backward_rows;
        parallel_for(plan.tasks(), [&](std::size_t t) {
            layout::for_each_batch(plan, t, [&](const layout::Batch& batch) {
                const std::ptrdiff_t* off = batch.offsets;
                kernel(a + off[0], rs[0], b + off[1], rs[1], y + off[o], rs[o], mask + off[mi],
                       rs[mi], batch.count, n, params);
            });
        });
        return;
    }
    const MaskFills<T> fill = mask_fills<T>(op);
    // After the kernels, a line (its mask m): the output fill at its excluded
    // entries (masked_copy in place) when nothing was included (softmax and
    // log_softmax gave NaN), when an included value was not finite (`flags`:
    // the kernels may have given the whole line NaN), or when a gradient's
    // sum overflowed; logsumexp's one value is already right.
    const auto finish = [&](T* line, const unsigned char* m, bool empty, unsigned flags) {
        if (!reduce &&
            (empty || (flags & kMaskNonFinite) || (b && nan_at_first_excluded(line, m, ms, n))))
            k.masked_copy(line, 1, m, ms, line, n, fill.out);
    };
    if (rows && ms == 1 && k.masked_softmax_long_row && op == Op::softmax &&
        n >= kMaskedSoftmaxMin) {  // the mask in the passes
        parallel_for(plan.tasks(), [&](std::size_t t) {
            std::vector<T> buf;  // (the rows left to the plain kernels)
            layout::for_each_batch(plan, t, [&](const layout::Batch& batch) {
                for (std::size_t r = 0; r < batch.count; ++r) {
                    const auto at = [&](std::size_t q) {
                        return batch.offsets[q] + static_cast<std::ptrdiff_t>(r) * rs[q];
                    };
                    const T* const x = a + at(0);
                    const unsigned char* const m = mask + at(mi);
                    T* const line = y + at(o);
                    if (k.masked_softmax_long_row(x, m, line, n, params)) continue;
                    buf.resize(n);
                    const unsigned f = k.masked_copy(x, 1, m, 1, buf.data(), n, fill.in0);
                    call_rows<T>(k, op, buf.data(), 0, nullptr, 0, line, 0, 1, n, params);
                    finish(line, m, !(f & kMaskAny), f);
                }
            });
        });
        return;
    }
    const std::size_t per = rows ? std::max<std::size_t>(1, kMaskedBatch / n) : 1;
    // one copy for a whole batch: rows back to back in each input, their
    // masks back to back or one row for all
    const bool block = rows && ms == 1 && as[0] == 1 && rs[0] == sn &&
                       (!b || (as[1] == 1 && rs[1] == sn)) && (rs[mi] == sn || rs[mi] == 0);
    SoftmaxParams in_cache = params;  // (gather: the output goes to a buffer)
    in_cache.from_memory = false;
    parallel_for(plan.tasks(), [&](std::size_t t) {
        std::vector<T> buf_a(per * n), buf_b(b ? per * n : 0), buf_y(rows ? 0 : reduce ? 1 : n);
        std::vector<unsigned char> empty(per), laid(block && rs[mi] == 0 ? per * n : 0);
        const unsigned char* laid_from = nullptr;  // the mask row `laid` repeats
        layout::for_each_batch(plan, t, [&](const layout::Batch& batch) {
            for (std::size_t first = 0; first < batch.count; first += per) {
                const std::size_t count = std::min(per, batch.count - first);
                const auto at = [&](std::size_t q, std::size_t r) {  // operand q's line first + r
                    return batch.offsets[q] + static_cast<std::ptrdiff_t>(first + r) * rs[q];
                };
                const auto mask_of = [&](std::size_t r) { return mask + at(mi, r); };
                unsigned flags = 0;
                if (block) {
                    const unsigned char* m = mask_of(0);
                    if (!laid.empty()) {
                        if (laid_from != m) {
                            for (std::size_t r = 0; r < per; ++r) std::memcpy(&laid[r * n], m, n);
                            laid_from = m;
                        }
                        std::fill_n(empty.begin(), count, !line_any(m, n));
                        m = laid.data();
                    } else {
                        for (std::size_t r = 0; r < count; ++r) empty[r] = !line_any(m + r * n, n);
                    }
                    flags = k.masked_copy(a + at(0, 0), 1, m, 1, buf_a.data(), count * n, fill.in0);
                    if (b)
                        flags |=
                            k.masked_copy(b + at(1, 0), 1, m, 1, buf_b.data(), count * n, fill.in1);
                } else {
                    for (std::size_t r = 0; r < count; ++r) {
                        const unsigned f = k.masked_copy(a + at(0, r), as[0], mask_of(r), ms,
                                                         &buf_a[r * n], n, fill.in0);
                        empty[r] = !(f & kMaskAny);
                        flags |= f;
                        if (b)
                            flags |= k.masked_copy(b + at(1, r), as[1], mask_of(r), ms,
                                                   &buf_b[r * n], n, fill.in1);
                    }
                }
                const T* const bb = b ? buf_b.data() : nullptr;
                if (rows)
                    call_rows(k, op, buf_a.data(), sn, bb, sn, y + at(o, 0), rs[o], count, n,
                              params);
                else
                    call_rows(k, op, buf_a.data(), 0, bb, 0, buf_y.data(), 0, 1, n, in_cache);
                for (std::size_t r = 0; r < count; ++r)
                    finish(rows ? y + at(o, r) : buf_y.data(), mask_of(r), empty[r], flags);
                if (!rows) {
                    if (reduce)
                        y[batch.offsets[o]] = buf_y[0];
                    else
                        layout::copy_line_out(buf_y.data(), n, y + batch.offsets[o], as[o]);
                }
            }
        });
    });
}

}  // namespace

template <class T>
void apply(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
           const Strided<const T>& in0, const Strided<const T>* in1, const Strided<T>& out,
           const SoftmaxParams& call_params, const Strided<const unsigned char>* where) {
    if (axis >= shape.size()) throw std::invalid_argument("axis out of range");
    const bool reduce = (op == Op::logsumexp);
    // operands: in0, [in1], out, [where]
    const std::size_t o = in1 ? 2 : 1, k = where ? o + 2 : o + 1;
    layout::Operand operands[4] = {{layout::Holds::elements, in0.strides.data()}};
    if (in1) operands[1] = {layout::Holds::elements, in1->strides.data()};
    operands[o] = {reduce ? layout::Holds::line_values : layout::Holds::elements,
                   out.strides.data()};
    if (where) operands[o + 1] = {layout::Holds::strided_elements, where->strides.data()};
    layout::Options options;
    options.row_cost = kRowCost;
    // (a mask goes through row buffers: rows or gather)
    options.columns = !where;
    options.segments = !in1 && !where;
    // (column_tiles stays off: measured 1.8x faster for axis=1 of (64, 32,
    // 64, 64), but 1.6-1.9x slower for axis=0 of (4096, 100); choosing by
    // the stride is left for later)
    layout::Plan plan = layout::plan(shape, axis, operands, k, options);
    const std::size_t n = plan.n;
    if (plan.lines == 0 || (n == 0 && !reduce)) return;  // nothing to compute

    const Kernels<T>& kern = kernels_of<T>(active_kernels());
    SoftmaxParams params = call_params;
    params.from_memory = plan.lines * n * sizeof(T) >= kStreamBytes;
    // softmax's rows from memory overlap each row's arithmetic with the
    // previous row's stores, within one kernel call: as many tasks as threads
    // (each a batch of rows, unless the layout splits it), not tasks of about
    // kTaskElements (rows of 32,000 went two to a call, of 128,256 one). A
    // row's result does not depend on its batch.
    if (op == Op::softmax && params.from_memory && plan.way == layout::Way::rows) {
        const std::size_t threads = num_threads();
        plan.units_per_task = std::max(plan.units_per_task, (plan.units + threads - 1) / threads);
    }
    SoftmaxParams in_cache = params;  // (for one row copied to a buffer)
    in_cache.from_memory = false;
    const T* const a = in0.data;
    const T* const b = in1 ? in1->data : nullptr;
    T* const y = out.data;
    const std::ptrdiff_t* const axis_stride = plan.axis_stride;
    const std::ptrdiff_t* const row_stride = plan.inner.stride;

    if (where)
        return masked_lines(kern, op, plan, a, b, y, o, where->data, o + 1, where->strides[axis],
                            params);
    switch (plan.way) {
        case layout::Way::segments:
            return long_rows(kern, op, plan, a, y, params);
        case layout::Way::rows:
            return parallel_for(plan.tasks(), [&](std::size_t t) {
                layout::for_each_batch(plan, t, [&](const layout::Batch& rows) {
                    const std::ptrdiff_t* off = rows.offsets;
                    call_rows(kern, op, a + off[0], row_stride[0], b ? b + off[1] : nullptr,
                              row_stride[1], y + off[o], row_stride[o], rows.count, n, params);
                });
            });
        case layout::Way::columns:
            return parallel_for(plan.tasks(), [&](std::size_t t) {
                layout::for_each_batch(plan, t, [&](const layout::Batch& cols) {
                    const std::ptrdiff_t* off = cols.offsets;
                    call_cols(kern, op, a + off[0], axis_stride[0], b ? b + off[1] : nullptr,
                              axis_stride[1], y + off[o], axis_stride[o], n, cols.count, params);
                });
            });
        case layout::Way::column_tiles:  // (not asked for)
        case layout::Way::gather:
            break;
    }
    // gather: each row through contiguous buffers (one set per task)
    parallel_for(plan.tasks(), [&](std::size_t t) {
        std::vector<T> buf_a(n), buf_b(b ? n : 0), buf_y(reduce ? 1 : n);
        layout::for_each_batch(plan, t, [&](const layout::Batch& row) {
            const std::ptrdiff_t* off = row.offsets;
            layout::copy_line_in(a + off[0], axis_stride[0], n, buf_a.data());
            if (b) layout::copy_line_in(b + off[1], axis_stride[1], n, buf_b.data());
            call_rows(kern, op, buf_a.data(), 0, b ? buf_b.data() : nullptr, 0, buf_y.data(), 0, 1,
                      n, in_cache);
            if (reduce)
                y[off[o]] = buf_y[0];
            else
                layout::copy_line_out(buf_y.data(), n, y + off[o], axis_stride[o]);
        });
    });
}

template void apply<float>(Op, const std::vector<std::size_t>&, std::size_t,
                           const Strided<const float>&, const Strided<const float>*,
                           const Strided<float>&, const SoftmaxParams&,
                           const Strided<const unsigned char>*);
template void apply<double>(Op, const std::vector<std::size_t>&, std::size_t,
                            const Strided<const double>&, const Strided<const double>*,
                            const Strided<double>&, const SoftmaxParams&,
                            const Strided<const unsigned char>*);
template void apply<bfloat16>(Op, const std::vector<std::size_t>&, std::size_t,
                              const Strided<const bfloat16>&, const Strided<const bfloat16>*,
                              const Strided<bfloat16>&, const SoftmaxParams&,
                              const Strided<const unsigned char>*);
template void apply<float16>(Op, const std::vector<std::size_t>&, std::size_t,
                             const Strided<const float16>&, const Strided<const float16>*,
                             const Strided<float16>&, const SoftmaxParams&,
                             const Strided<const unsigned char>*);

}  // namespace fastsoftmax
