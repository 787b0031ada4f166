// The N-d driver of the fused cross-entropy: validates the labels, works out
// the reduction's denominators, then feeds the active target's kernels:
//   rows    - the class axis contiguous in every operand: batches of rows;
//   columns - the last example axis contiguous instead (e.g. (N, C, d1..dk)
//             with axis=1): tiles of examples side by side, one per lane;
//   gather  - anything else (soft-capping or a saved lse with such layouts,
//             more than kMaxColumnClasses classes, negative strides on the
//             last axis, ...): one row at a time through contiguous buffers.
#include "fastsoftmax/cross_entropy.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"
#include "nd_walk.hpp"

namespace fastsoftmax {
namespace {

using nd::Dim;
using nd::for_each_run;
using nd::for_each_unit;
using nd::Split;
using nd::split_last;

// The multi-index (in `shape`, C order) of flat position `flat`.
std::vector<std::size_t> unravel(std::size_t flat, const std::vector<std::size_t>& shape) {
    std::vector<std::size_t> idx(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    return idx;
}

// Checks every label; returns the reduction's denominators: the sum of the
// weights of the non-ignored labels and their number.
template <class T>
void check_labels(const std::vector<std::size_t>& ex_shape, const std::vector<Dim>& dims,
                  const std::int64_t* labels, std::size_t n, const CeOptions<T>& o, double& wsum,
                  double& count) {
    const Split split = split_last(dims, 1);
    const std::int64_t cls = static_cast<std::int64_t>(n);
    std::size_t examples = 1;
    for (const std::size_t e : ex_shape) examples *= e;
    std::size_t flat = 0, cnt = 0;
    double ws = 0;  // the weights' sum (without weights: the count)
    const std::ptrdiff_t step = split.last.stride[0];
    for_each_run(split.outer, split.last, 1, 0, examples,
                 [&](const std::ptrdiff_t* off, std::size_t len) {
                     const std::int64_t* p = labels + off[0];
                     for (std::size_t i = 0; i < len; ++i, p += step) {
                         const std::int64_t v = *p;
                         if (v == o.ignore_index) continue;
                         if (v < 0 || v >= cls) throw BadLabel{unravel(flat + i, ex_shape), v};
                         ++cnt;
                         if (o.weight) ws += static_cast<double>(o.weight[v]);
                     }
                     flat += len;
                 });
    wsum = o.weight ? ws : static_cast<double>(cnt);
    count = static_cast<double>(cnt);
}

constexpr std::size_t kMaxColumnClasses = 4096;  // (and < 2^24: labels compared as floats)

// The column kernels take the examples of the last (non-unit) example axis
// side by side: it must be contiguous in the logits, probabilities and
// gradient (then the examples of a call are consecutive in C order).
template <class T>
bool columns_ok(const std::vector<Dim>& dims, std::size_t n, bool soft, bool has_grad,
                bool has_lse, T softcap) {
    // (many classes: rows gathered one at a time, so the tile buffers stay small)
    if (dims.empty() || has_lse || softcap != 0 || n > kMaxColumnClasses) return false;
    const Dim& last = dims.back();
    return last.stride[0] == 1 && (!soft || last.stride[1] == 1) &&
           (!has_grad || last.stride[2] == 1);
}

}  // namespace

template <class T>
double cross_entropy(const std::vector<std::size_t>& shape, std::size_t axis,
                     const CeArray<const T>& x, const CeArray<const std::int64_t>* labels,
                     const CeArray<const T>* target, const CeArray<const T>* lse,
                     const CeArray<T>& grad, const double* grad_scale, double* loss_rows,
                     Reduction reduction, const CeOptions<T>& options) {
    if (axis >= shape.size()) throw std::invalid_argument("axis out of range");
    if ((labels == nullptr) == (target == nullptr))
        throw std::invalid_argument("pass exactly one of labels and target");
    const std::size_t n = shape[axis];
    if (n == 0) throw std::invalid_argument("cross_entropy needs at least one class");

    // operands: 0 logits, 1 labels or target, 2 grad, 3 lse
    std::vector<std::size_t> ex_shape;
    std::vector<Dim> dims, label_dims;
    std::size_t examples = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
        if (d == axis) continue;
        ex_shape.push_back(shape[d]);
        examples *= shape[d];
        if (shape[d] == 1) continue;
        Dim dim{shape[d],
                {x.strides[d], labels ? labels->strides[d] : target->strides[d],
                 grad.data ? grad.strides[d] : 0, lse ? lse->strides[d] : 0}};
        dims.push_back(dim);
        label_dims.push_back(Dim{shape[d], {dim.stride[1], 0, 0, 0}});
    }

    double wsum = static_cast<double>(examples), count = wsum;
    if (labels && examples > 0)
        check_labels(ex_shape, label_dims, labels->data, n, options, wsum, count);
    CeRows<T> base;
    base.n = n;
    if (reduction == Reduction::mean) {
        base.s_ce = 1.0 / wsum;
        base.s_z = 1.0 / count;
    }
    CeSums total;
    if (examples > 0) {
        const Kernels<T>& kern = kernels_of<T>(active_kernels());
        const std::ptrdiff_t xa = x.strides[axis];
        const std::ptrdiff_t ta = target ? target->strides[axis] : 1;
        const std::ptrdiff_t ga = grad.data ? grad.strides[axis] : 1;
        // Each task adds its examples' losses into its own sums, added up in
        // task order at the end: tasks depend on the shape only, so does the total.
        std::vector<CeSums> sums;
        const auto tasks = [&](std::size_t units, std::size_t per) {
            sums.assign((units + per - 1) / per, CeSums{});
            return sums.size();
        };
        // the kernel on rows of examples [ex, ex + rows.rows)
        const auto run = [&](CeRows<T> rows, std::size_t ex, CeSums& into) {
            rows.grad_scale = grad_scale ? grad_scale + ex : nullptr;
            rows.loss = loss_rows ? loss_rows + ex : nullptr;
            const CeSums s = kern.cross_entropy_rows(rows, options);
            into.ce += s.ce;
            into.z += s.z;
        };
        const auto point = [&](CeRows<T>& r, const std::ptrdiff_t* off) {
            if (labels) r.label = labels->data + off[1];
            if (lse) r.lse = lse->data + off[3];
        };
        const Split split = split_last(dims, 4);
        const std::vector<Dim>& c = split.outer;
        const Dim& last = split.last;
        if (n == 1 || (xa == 1 && ta == 1 && ga == 1)) {
            // short rows go through the kernel 8 at a time: keep the groups whole
            const std::size_t cost = n + kCrossEntropyRowCost;
            const std::size_t per = units_per_task(examples, cost, 8 * cost <= kTaskElements ? 8 : 1);
            parallel_for(tasks(examples, per), [&](std::size_t t) {
                std::size_t ex = t * per;
                for_each_run(c, last, 4, ex, std::min(examples, ex + per),
                             [&](const std::ptrdiff_t* off, std::size_t count) {
                                 CeRows<T> r = base;
                                 r.rows = count;
                                 r.x = x.data + off[0];
                                 r.xs = last.stride[0];
                                 point(r, off);
                                 r.ls = last.stride[1];
                                 if (target) r.target = target->data + off[1];
                                 r.ts = last.stride[1];
                                 if (grad.data) r.grad = grad.data + off[2];
                                 r.gs = last.stride[2];
                                 r.lses = last.stride[3];
                                 run(r, ex, sums[t]);
                                 ex += count;
                             });
            });
        } else if (columns_ok(dims, n, target != nullptr, grad.data != nullptr, lse != nullptr,
                              options.softcap)) {
            // (N, C, d1..dk), classes on axis 1: the last example axis is
            // contiguous in every operand; one lane per example. Tiles of W
            // examples are copied to a contiguous buffer first: the classes'
            // stride (d1 * ... * dk elements) is often a large power of two,
            // whose lines share a few cache sets and evict one another
            // between the kernel's passes (measured: 8x21x128x128, 29.7 ms
            // gathering rows, 8.4 ms in place, 4.4 ms through tiles of 64).
            // Tiles of about 8192 elements (32 KiB of float32): the wider the
            // tile, the longer each contiguous segment copied in and out
            // (64 -> 384 examples at 21 classes: 6.0 -> 4.2 ms with a separate
            // gradient array).
            const std::size_t W =
                std::min(std::clamp<std::size_t>(8192 / n / 16 * 16, 16, 512),
                         (last.size + 15) / 16 * 16);
            const std::size_t row_tiles = (last.size + W - 1) / W;  // per index of c
            const std::size_t all_tiles = examples / last.size * row_tiles;
            const std::size_t per = units_per_task(all_tiles, W * n);
            const Dim tile_run{row_tiles, {0, 0, 0, 0}};  // (offsets of the tile's row)
            parallel_for(tasks(all_tiles, per), [&](std::size_t t) {
                std::vector<T> xb(n * W), tb(target ? n * W : 0);
                std::size_t tile = t * per;
                const auto one_tile = [&](const std::ptrdiff_t* off) {
                    const std::size_t j0 = tile % row_tiles * W;
                    const std::size_t ex = tile / row_tiles * last.size + j0;
                    const std::size_t w = std::min(last.size - j0, W);
                    const auto ij = static_cast<std::ptrdiff_t>(j0);
                    for (std::size_t cl = 0; cl < n; ++cl) {
                        const auto ic = static_cast<std::ptrdiff_t>(cl);
                        std::memcpy(&xb[cl * W], x.data + off[0] + ic * xa + ij, w * sizeof(T));
                        if (target)
                            std::memcpy(&tb[cl * W], target->data + off[1] + ic * ta + ij,
                                        w * sizeof(T));
                    }
                    CeCols<T> col;
                    col.x = xb.data();
                    col.xs = static_cast<std::ptrdiff_t>(W);
                    if (labels) {
                        col.label = labels->data + off[1] + ij * last.stride[1];
                        col.ls = last.stride[1];
                    } else {
                        col.target = tb.data();
                        col.ts = static_cast<std::ptrdiff_t>(W);
                    }
                    if (grad.data) {  // computed over the tile of logits, then copied out
                        col.grad = xb.data();
                        col.gs = static_cast<std::ptrdiff_t>(W);
                    }
                    col.grad_scale = grad_scale ? grad_scale + ex : nullptr;
                    col.loss = loss_rows ? loss_rows + ex : nullptr;
                    col.s_ce = base.s_ce;
                    col.s_z = base.s_z;
                    col.n = n;
                    col.inner = w;
                    const CeSums s = kern.cross_entropy_cols(col, options);
                    sums[t].ce += s.ce;
                    sums[t].z += s.z;
                    if (grad.data)
                        for (std::size_t cl = 0; cl < n; ++cl)
                            std::memcpy(grad.data + off[2] + static_cast<std::ptrdiff_t>(cl) * ga + ij,
                                        &xb[cl * W], w * sizeof(T));
                    ++tile;
                };
                for_each_unit(c, tile_run, 4, tile, std::min(all_tiles, tile + per), one_tile);
            });
        } else {  // one row at a time through contiguous buffers
            const std::size_t per = units_per_task(examples, n + kCrossEntropyRowCost);
            parallel_for(tasks(examples, per), [&](std::size_t t) {
                std::vector<T> xb(n), tb(target ? n : 0), gb(grad.data ? n : 0);
                std::size_t ex = t * per;
                const auto one_row = [&](const std::ptrdiff_t* off) {
                    const T* xp = x.data + off[0];
                    for (std::size_t i = 0; i < n; ++i)
                        xb[i] = xp[static_cast<std::ptrdiff_t>(i) * xa];
                    CeRows<T> r = base;
                    r.rows = 1;
                    r.x = xb.data();
                    point(r, off);
                    if (target) {
                        const T* tp = target->data + off[1];
                        for (std::size_t i = 0; i < n; ++i)
                            tb[i] = tp[static_cast<std::ptrdiff_t>(i) * ta];
                        r.target = tb.data();
                    }
                    if (grad.data) r.grad = gb.data();
                    run(r, ex, sums[t]);
                    if (grad.data) {
                        T* gp = grad.data + off[2];
                        for (std::size_t i = 0; i < n; ++i)
                            gp[static_cast<std::ptrdiff_t>(i) * ga] = gb[i];
                    }
                    ++ex;
                };
                for_each_unit(c, last, 4, ex, std::min(examples, ex + per), one_row);
            });
        }
        for (const CeSums& s : sums) {
            total.ce += s.ce;
            total.z += s.z;
        }
    }
    switch (reduction) {
        case Reduction::none:
            return 0;
        case Reduction::sum:
            return total.ce + total.z;
        case Reduction::mean:
            // no weight to divide by: NaN, as PyTorch's 0/0 (also when the
            // smoothing part alone would be finite over 0)
            if (wsum == 0) return std::numeric_limits<double>::quiet_NaN();
            return total.ce / wsum + (options.z_loss != 0 ? total.z / count : 0.0);
    }
    return 0;
}

template double cross_entropy<float>(const std::vector<std::size_t>&, std::size_t,
                                     const CeArray<const float>&,
                                     const CeArray<const std::int64_t>*,
                                     const CeArray<const float>*, const CeArray<const float>*,
                                     const CeArray<float>&, const double*, double*, Reduction,
                                     const CeOptions<float>&);
template double cross_entropy<double>(const std::vector<std::size_t>&, std::size_t,
                                      const CeArray<const double>&,
                                      const CeArray<const std::int64_t>*,
                                      const CeArray<const double>*, const CeArray<const double>*,
                                      const CeArray<double>&, const double*, double*, Reduction,
                                      const CeOptions<double>&);

}  // namespace fastsoftmax
