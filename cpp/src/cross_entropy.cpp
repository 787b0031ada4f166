// The N-d driver of the fused cross-entropy: validates the labels, works out
// the reduction's denominators, then feeds the active target's kernels the
// pieces the layout planner (layout/plan.hpp) cuts:
//   rows         - the class axis contiguous in every operand: batches of rows;
//   column_tiles - the last example axis contiguous instead (e.g. (N, C,
//                  d1..dk) with axis=1): tiles of examples, one per lane;
//   gather       - anything else (soft-capping or a saved lse with such
//                  layouts, more than layout::kMaxTileClasses classes, a
//                  negative stride on the last axis, ...): one row at a time.
#include "fastsoftmax/cross_entropy.hpp"

#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"
#include "layout/copy.hpp"
#include "layout/plan.hpp"

namespace fastsoftmax {
namespace {

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
void check_labels(const std::vector<std::size_t>& shape, std::size_t axis,
                  const Strided<const std::int64_t>& labels, const CeOptions<T>& o, double& wsum,
                  double& count) {
    std::vector<std::size_t> ex_shape(shape);
    ex_shape.erase(ex_shape.begin() + static_cast<std::ptrdiff_t>(axis));
    // the labels' lines in C order, their axes coalesced
    const layout::Operand operand{layout::Holds::strided_line_values, labels.strides.data()};
    const layout::Plan walk = layout::plan(shape, axis, &operand, 1, layout::Options{});
    const std::int64_t classes = static_cast<std::int64_t>(shape[axis]);
    std::size_t flat = 0, cnt = 0;
    double ws = 0;  // the weights' sum (without weights: the count)
    const std::ptrdiff_t step = walk.inner.stride[0];
    layout::for_each_run(
        walk.outer, walk.inner, 1, 0, walk.lines, [&](const std::ptrdiff_t* off, std::size_t len) {
            const std::int64_t* p = labels.data + off[0];
            if (step == 1 && !o.weight) {  // (the usual labels: vectorized)
                const LabelCount c = active_kernels().count_labels(p, len, o.ignore_index, classes);
                if (!c.bad) {
                    cnt += c.used;
                    flat += len;
                    return;
                }
            }
            for (std::size_t i = 0; i < len; ++i, p += step) {
                const std::int64_t v = *p;
                if (v == o.ignore_index) continue;
                if (v < 0 || v >= classes) throw BadLabel{unravel(flat + i, ex_shape), v};
                ++cnt;
                if (o.weight) ws += static_cast<double>(o.weight[v]);
            }
            flat += len;
        });
    wsum = o.weight ? ws : static_cast<double>(cnt);
    count = static_cast<double>(cnt);
}

// The operands, in the planner's slots: 0 logits, 1 labels or target,
// 2 grad, 3 lse.
enum Slot : std::size_t { kLogits, kLabels, kGrad, kLse };

// The kernels on the plan's pieces. Each task adds its examples' losses into
// its own sums, piece by piece in order.
template <class T>
struct CrossEntropyTasks {
    const Kernels<T>& kernels;
    const layout::Plan& plan;
    const Strided<const T>& x;
    const Strided<const std::int64_t>* labels;
    const Strided<const T>* target;
    const Strided<const compute_t<T>>* lse;
    const Strided<T>& grad;
    const double* grad_scale;
    double* loss_rows;
    double* lse_rows;
    const CeOptions<T>& options;
    CeRows<T> base;  // n and the reduction's factors

    static void add(CeSums& into, const CeSums& sums) {
        into.ce += sums.ce;
        into.z += sums.z;
    }

    // The row kernel on `rows` (its logits, target and grad set) for the
    // piece's examples.
    void run_rows(CeRows<T> rows, const layout::Batch& piece, CeSums& into) const {
        rows.rows = piece.count;
        if (labels) rows.label = labels->data + piece.offsets[kLabels];
        if (lse) rows.lse = lse->data + piece.offsets[kLse];
        rows.grad_scale = grad_scale ? grad_scale + piece.first_line : nullptr;
        rows.loss = loss_rows ? loss_rows + piece.first_line : nullptr;
        rows.lse_out = lse_rows ? lse_rows + piece.first_line : nullptr;
        add(into, kernels.cross_entropy_rows(rows, options));
    }

    void rows_in_place(const layout::Batch& piece, CeSums& into) const {
        const std::ptrdiff_t* offsets = piece.offsets;
        const std::ptrdiff_t* stride = plan.inner.stride;  // from row to row
        CeRows<T> rows = base;
        rows.x = x.data + offsets[kLogits];
        rows.xs = stride[kLogits];
        rows.ls = stride[kLabels];
        if (target) rows.target = target->data + offsets[kLabels];
        rows.ts = stride[kLabels];
        if (grad.data) rows.grad = grad.data + offsets[kGrad];
        rows.gs = stride[kGrad];
        rows.lses = stride[kLse];
        run_rows(rows, piece, into);
    }

    // One row through contiguous buffers of n values each.
    void gathered_row(const layout::Batch& piece, T* x_buffer, T* target_buffer, T* grad_buffer,
                      CeSums& into) const {
        const std::ptrdiff_t* offsets = piece.offsets;
        const std::ptrdiff_t* axis_stride = plan.axis_stride;
        const std::size_t n = plan.n;
        CeRows<T> row = base;
        layout::copy_line_in(x.data + offsets[kLogits], axis_stride[kLogits], n, x_buffer);
        row.x = x_buffer;
        if (target) {
            layout::copy_line_in(target->data + offsets[kLabels], axis_stride[kLabels], n,
                                 target_buffer);
            row.target = target_buffer;
        }
        if (grad.data) row.grad = grad_buffer;
        row.grad_from_memory = false;  // (a buffer in cache)
        run_rows(row, piece, into);
        if (grad.data)
            layout::copy_line_out(grad_buffer, n, grad.data + offsets[kGrad], axis_stride[kGrad]);
    }

    // The column kernel on a tile of examples: the logits (and target)
    // copied to tiles, the gradient computed over the logits' tile, then
    // copied out.
    void tile(const layout::Batch& piece, T* x_tile, T* target_tile, CeSums& into) const {
        const std::ptrdiff_t* offsets = piece.offsets;
        const std::ptrdiff_t* axis_stride = plan.axis_stride;
        const std::size_t n = plan.n, width = plan.tile_width;
        const auto tile_stride = static_cast<std::ptrdiff_t>(width);
        layout::copy_tile_in(x.data + offsets[kLogits], axis_stride[kLogits], n, piece.count,
                             x_tile, width);
        CeCols<T> cols;
        cols.x = x_tile;
        cols.xs = tile_stride;
        // a temperature: the kernel scales the tile in vectors (see plan: not half)
        if (std::is_floating_point_v<T> && options.scale != 1) cols.scale_in_place = x_tile;
        if (labels) {
            cols.label = labels->data + offsets[kLabels];
            cols.ls = plan.inner.stride[kLabels];
        } else {
            layout::copy_tile_in(target->data + offsets[kLabels], axis_stride[kLabels], n,
                                 piece.count, target_tile, width);
            cols.target = target_tile;
            cols.ts = tile_stride;
        }
        if (grad.data) {
            cols.grad = x_tile;
            cols.gs = tile_stride;
        }
        cols.grad_scale = grad_scale ? grad_scale + piece.first_line : nullptr;
        cols.loss = loss_rows ? loss_rows + piece.first_line : nullptr;
        cols.lse_out = lse_rows ? lse_rows + piece.first_line : nullptr;
        cols.s_ce = base.s_ce;
        cols.s_z = base.s_z;
        cols.n = n;
        cols.inner = piece.count;
        add(into, kernels.cross_entropy_cols(cols, options));
        if (grad.data)
            layout::copy_tile_out(x_tile, width, n, piece.count, grad.data + offsets[kGrad],
                                  axis_stride[kGrad]);
    }

    CeSums task(std::size_t t) const {
        CeSums sums;
        const std::size_t n = plan.n, width = plan.tile_width;
        switch (plan.way) {
            case layout::Way::rows:
                layout::for_each_batch(
                    plan, t, [&](const layout::Batch& piece) { rows_in_place(piece, sums); });
                break;
            case layout::Way::column_tiles: {
                std::vector<T> x_tile(n * width), target_tile(target ? n * width : 0);
                layout::for_each_batch(plan, t, [&](const layout::Batch& piece) {
                    tile(piece, x_tile.data(), target_tile.data(), sums);
                });
                break;
            }
            default: {  // gather (the options ask for no other way)
                std::vector<T> x_buffer(n), target_buffer(target ? n : 0),
                    grad_buffer(grad.data ? n : 0);
                layout::for_each_batch(plan, t, [&](const layout::Batch& piece) {
                    gathered_row(piece, x_buffer.data(), target_buffer.data(), grad_buffer.data(),
                                 sums);
                });
            }
        }
        return sums;
    }
};

}  // namespace

template <class T>
double cross_entropy(const std::vector<std::size_t>& shape, std::size_t axis,
                     const Strided<const T>& x, const Strided<const std::int64_t>* labels,
                     const Strided<const T>* target, const Strided<const compute_t<T>>* lse,
                     const Strided<T>& grad, const double* grad_scale, double* loss_rows,
                     double* lse_rows, Reduction reduction, const CeOptions<T>& options) {
    if (axis >= shape.size()) throw std::invalid_argument("axis out of range");
    if ((labels == nullptr) == (target == nullptr))
        throw std::invalid_argument("pass exactly one of labels and target");
    const std::size_t n = shape[axis];
    if (n == 0) throw std::invalid_argument("cross_entropy needs at least one class");

    using layout::Holds;
    layout::Operand operands[4];
    operands[kLogits] = {Holds::elements, x.strides.data()};
    operands[kLabels] = labels ? layout::Operand{Holds::strided_line_values, labels->strides.data()}
                               : layout::Operand{Holds::elements, target->strides.data()};
    if (grad.data) operands[kGrad] = {Holds::elements, grad.strides.data()};
    if (lse) operands[kLse] = {Holds::strided_line_values, lse->strides.data()};
    layout::Options layout_options;
    // (integer labels of up to 8 classes without smoothing, z-loss or
    // soft-capping cost a few ns a row through the register tiles: tasks of
    // about 400 rows made the kernel's per-call work 7% of the time of two
    // classes; the tasks still depend on the shape and the call alone)
    const bool register_tiles =
        labels && n <= 8 && options.smoothing == 0 && options.z_loss == 0 && options.softcap == 0;
    layout_options.row_cost = register_tiles ? 16 : kCrossEntropyRowCost;
    layout_options.row_group = 8;  // short rows go through the kernel 8 at a time
    // (N, C, d1..dk), classes on axis 1: one lane per example, through tiles
    // (measured: 8x21x128x128, 29.7 ms gathering rows, 8.4 ms in place,
    // 4.4 ms through tiles). The column kernel has no soft-capping and no
    // saved lse; the per-example arrays (grad_scale, loss) are in C order.
    // (a temperature scales the tile in place: not in half precision, whose tile
    // would round the scaled logits)
    layout_options.column_tiles =
        !lse && options.softcap == 0 && (options.scale == 1 || std::is_floating_point_v<T>);
    static_assert(layout::kMaxTileClasses < (std::size_t(1) << 24),
                  "the column kernel compares labels as floats");
    layout_options.lines_in_c_order = true;
    const layout::Plan plan = layout::plan(shape, axis, operands, 4, layout_options);
    const std::size_t examples = plan.lines;

    double wsum = static_cast<double>(examples), count = wsum;
    if (labels && examples > 0) check_labels(shape, axis, *labels, options, wsum, count);
    CeRows<T> base;
    base.n = n;
    if (reduction == Reduction::mean) {
        base.s_ce = 1.0 / wsum;
        base.s_z = 1.0 / count;
    }
    base.s_ce *= static_cast<double>(options.scale);  // dx'/dx's scale (cross_entropy.hpp)
    base.s_z *= static_cast<double>(options.scale);
    base.grad_from_memory = grad.data && examples * n * sizeof(T) >= kStreamBytes;
    CeSums total;
    if (examples > 0) {
        const CrossEntropyTasks<T> tasks{kernels_of<T>(active_kernels()),
                                         plan,
                                         x,
                                         labels,
                                         target,
                                         lse,
                                         grad,
                                         grad_scale,
                                         loss_rows,
                                         lse_rows,
                                         options,
                                         base};
        // Tasks depend on the shape only, and their sums are added in task
        // order: so does the total.
        std::vector<CeSums> sums(plan.tasks());
        parallel_for(sums.size(), [&](std::size_t t) { sums[t] = tasks.task(t); });
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
                                     const Strided<const float>&,
                                     const Strided<const std::int64_t>*,
                                     const Strided<const float>*, const Strided<const float>*,
                                     const Strided<float>&, const double*, double*, double*,
                                     Reduction, const CeOptions<float>&);
template double cross_entropy<double>(const std::vector<std::size_t>&, std::size_t,
                                      const Strided<const double>&,
                                      const Strided<const std::int64_t>*,
                                      const Strided<const double>*, const Strided<const double>*,
                                      const Strided<double>&, const double*, double*, double*,
                                      Reduction, const CeOptions<double>&);
template double cross_entropy<bfloat16>(const std::vector<std::size_t>&, std::size_t,
                                        const Strided<const bfloat16>&,
                                        const Strided<const std::int64_t>*,
                                        const Strided<const bfloat16>*, const Strided<const float>*,
                                        const Strided<bfloat16>&, const double*, double*, double*,
                                        Reduction, const CeOptions<bfloat16>&);
template double cross_entropy<float16>(const std::vector<std::size_t>&, std::size_t,
                                       const Strided<const float16>&,
                                       const Strided<const std::int64_t>*,
                                       const Strided<const float16>*, const Strided<const float>*,
                                       const Strided<float16>&, const double*, double*, double*,
                                       Reduction, const CeOptions<float16>&);

}  // namespace fastsoftmax
