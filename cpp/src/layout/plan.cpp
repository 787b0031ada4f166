// The planner (plan.hpp): the choice of the way, the coalesced axes, and the
// cut into tasks, all from the shape and the strides alone.
#include "layout/plan.hpp"

#include <stdexcept>
#include <utility>

namespace fastsoftmax::layout {
namespace {

static_assert(kSegment % 1024 == 0, "segments start on a block of any target");

// Whether operand `op` must be contiguous along the axis (rows) ...
bool along_axis(const Operand& op) { return op.holds == Holds::elements; }

// ... and across the lines (columns).
bool across_lines(const Operand& op) {
    return op.holds == Holds::elements || op.holds == Holds::line_values;
}

// The axis the column kernels vectorize across: the innermost axis of
// `dims` contiguous in every operand that needs it (with lines_in_c_order,
// the last one or none). Returns dims.size() when there is none.
std::size_t column_axis(const std::vector<Dim>& dims, const Operand* operands, std::size_t count,
                        bool last_only) {
    for (std::size_t j = dims.size(); j-- > 0;) {
        bool contiguous = true;
        for (std::size_t a = 0; a < count; ++a)
            contiguous = contiguous && (!across_lines(operands[a]) || dims[j].stride[a] == 1);
        if (contiguous) return j;
        if (last_only) break;
    }
    return dims.size();
}

// dims coalesced, their last axis split off as plan.inner (a unit axis when
// there is none).
void split_last(Plan& plan, std::vector<Dim>&& dims) {
    coalesce(dims, plan.operands);
    plan.outer = std::move(dims);
    if (!plan.outer.empty()) {
        plan.inner = plan.outer.back();
        plan.outer.pop_back();
    }
}

}  // namespace

Plan plan(const std::vector<std::size_t>& shape, std::size_t axis, const Operand* operands,
          std::size_t count, const Options& options) {
    if (axis >= shape.size() || count > kMaxOperands)
        throw std::invalid_argument("axis or operands out of range");
    Plan plan;
    plan.operands = count;
    plan.n = shape[axis];
    for (std::size_t a = 0; a < count; ++a)
        plan.axis_stride[a] = along_axis(operands[a]) ? operands[a].strides[axis] : 0;

    // the other axes, but for those of length 1 (which address nothing)
    std::vector<Dim> dims;
    dims.reserve(shape.size() - 1);  // (the only allocation of most plans)
    plan.lines = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
        if (d == axis) continue;
        plan.lines *= shape[d];
        if (shape[d] == 1) continue;
        Dim dim{shape[d], {0, 0, 0, 0}};
        for (std::size_t a = 0; a < count; ++a)
            if (operands[a].holds != Holds::nothing) dim.stride[a] = operands[a].strides[d];
        dims.push_back(dim);
    }
    if (plan.lines == 0) return plan;  // (no task)
    const std::size_t n = plan.n;

    bool rows = true;
    for (std::size_t a = 0; a < count; ++a)
        rows = rows && (n <= 1 || !along_axis(operands[a]) || plan.axis_stride[a] == 1);
    if (rows && options.segments && plan.lines <= kFewRows && n >= 2 * kSegment) {
        plan.way = Way::segments;
        split_last(plan, std::move(dims));
        plan.segments_per_line = (n + kSegment - 1) / kSegment;
        plan.units = plan.lines * plan.segments_per_line;
        return plan;
    }
    if (rows) {
        plan.way = Way::rows;
        split_last(plan, std::move(dims));
        // batches of short rows stay whole within a task (when one fits)
        const std::size_t cost = n + options.row_cost;
        plan.units = plan.lines;
        plan.units_per_task = units_per_task(
            plan.lines, cost, options.row_group * cost <= kTaskElements ? options.row_group : 1);
        return plan;
    }

    const bool tiles = options.column_tiles && n <= kMaxTileClasses;
    const std::size_t j = (tiles || options.columns)
                              ? column_axis(dims, operands, count, options.lines_in_c_order)
                              : dims.size();
    if (j < dims.size()) {
        const Dim across = dims[j];  // (the reserve leaves room to put it back)
        dims.erase(dims.begin() + static_cast<std::ptrdiff_t>(j));
        plan.units = plan.lines;
        if (tiles) {
            // that axis last, merged with the others where memory allows
            dims.push_back(across);
            split_last(plan, std::move(dims));
            // Tiles of about 8192 elements (32 KiB of float32), in whole
            // vectors of lines: the wider the tile, the longer each
            // contiguous segment copied in and out (64 -> 384 lines at 21
            // classes: 6.0 -> 4.2 ms with a separate gradient array).
            plan.way = Way::column_tiles;
            plan.tile_width = std::min(std::clamp<std::size_t>(8192 / n / 16 * 16, 16, 512),
                                       (plan.inner.size + 15) / 16 * 16);
            const std::size_t row_tiles = (plan.inner.size + plan.tile_width - 1) / plan.tile_width;
            plan.units = plan.lines / plan.inner.size * row_tiles;
            plan.units_per_task = units_per_task(plan.units, plan.tile_width * n);
        } else {
            // That axis alone (not merged), and tasks of whole vectors of
            // lines where they can: which lanes share a vector stays as it
            // was recorded (a NaN's sign can depend on it).
            plan.way = Way::columns;
            coalesce(dims, count);
            plan.outer = std::move(dims);
            plan.inner = across;
            plan.units_per_task = units_per_task(plan.lines, n, 64);
        }
        return plan;
    }

    plan.way = Way::gather;
    split_last(plan, std::move(dims));
    plan.units = plan.lines;
    plan.units_per_task = units_per_task(plan.lines, n + options.row_cost);
    return plan;
}

}  // namespace fastsoftmax::layout
