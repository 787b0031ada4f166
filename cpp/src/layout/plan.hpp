// One plan of the walk over N-d strided arrays, for both drivers (driver.cpp:
// the softmax family; cross_entropy.cpp). A line is one reduction: the n
// values along the axis (a row of logits). Given the shape, the axis and
// the operands' strides, plan() chooses how the kernels are fed:
//   rows         - the axis contiguous in every operand: the other axes
//                  coalesced, the innermost one passed as a batch of rows;
//   columns      - another axis contiguous instead: kernels vectorize across
//                  it, one lane per line, in place (no transpose);
//   column_tiles - the same through tiles of lines x n copied to a contiguous
//                  buffer first: the axis' stride is often a large power of
//                  two, whose cache lines share a few sets and evict one
//                  another between a kernel's passes (see kMaxTileClasses);
//   gather       - anything else (a negative stride on the axis, say): each
//                  line copied to a contiguous buffer and back;
//   segments     - a few very long rows, each cut into segments.
// and cuts the work into tasks for the threads by shape alone, so that
// results never depend on the number of threads (parallel.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "fastsoftmax/parallel.hpp"
#include "layout/walk.hpp"

namespace fastsoftmax::layout {

enum class Way { rows, columns, column_tiles, gather, segments };

// What an operand holds, which decides what its strides must allow.
enum class Holds {
    nothing,              // an absent operand: its strides are ignored
    elements,             // one value per element (logits, outputs, targets):
                          // contiguous along the axis for rows, across the lines
                          // for columns
    line_values,          // one value per line that the column kernels store
                          // contiguously (logsumexp's output): contiguous across
                          // the lines for columns
    strided_line_values,  // one value per line, taken with any stride (labels, lse)
    strided_elements,     // one value per element, taken with any stride (a where=
                          // mask, which the driver copies through): its offsets
                          // are kept, its strides never decide the way
};

struct Operand {
    Holds holds = Holds::nothing;
    const std::ptrdiff_t* strides = nullptr;  // one per dimension, in elements
};

// What the driver's kernels can take.
struct Options {
    std::size_t row_cost = kRowCost;  // a row's fixed cost, in elements
    std::size_t row_group = 1;        // rows a row kernel takes together: kept in one task
    bool columns = false;             // columns in place
    bool column_tiles = false;        // column tiles (up to kMaxTileClasses values per line)
    // The driver indexes per-line arrays by a line's C-order position, so a
    // batch of columns must be consecutive lines: only the last axis can be
    // the one the kernels vectorize across.
    bool lines_in_c_order = false;
    bool segments = false;  // a few long rows cut into segments
};

// Tiles hold up to this many values per line: at least 16 lines then fit in
// a tile of 64K elements.
constexpr std::size_t kMaxTileClasses = 4096;

// At most this many rows of at least two segments each are cut into
// segments of kSegment elements (a multiple of every target's block, so
// that segments start on a block).
constexpr std::size_t kFewRows = 8;
constexpr std::size_t kSegment = std::size_t(1) << 15;

struct Plan {
    Way way = Way::rows;
    std::size_t n = 0;         // the values per line (the axis' length)
    std::size_t lines = 0;     // the number of lines (0: nothing to do)
    std::size_t operands = 0;  // as passed to plan()
    std::ptrdiff_t axis_stride[kMaxOperands] = {0, 0, 0, 0};  // 0 for line values
    // The lines are walked as outer x inner in C order, outer coalesced.
    // inner is, by way: rows - the batch of rows a kernel call takes;
    // columns, column_tiles - the contiguous axis the kernels vectorize
    // across; gather, segments - the innermost axis.
    std::vector<Dim> outer;
    Dim inner{1, {0, 0, 0, 0}};
    std::size_t tile_width = 0;         // column_tiles: lines per tile
    std::size_t segments_per_line = 0;  // segments
    // Tasks: units_per_task consecutive units each, the units being lines,
    // tiles or segments (by way).
    std::size_t units = 0;
    std::size_t units_per_task = 1;

    std::size_t tasks() const { return (units + units_per_task - 1) / units_per_task; }
};

// `operands` has `count` (<= kMaxOperands) entries, each with strides for
// every dimension of `shape`; axis < shape.size().
Plan plan(const std::vector<std::size_t>& shape, std::size_t axis, const Operand* operands,
          std::size_t count, const Options& options);

// A piece of a task: `count` lines from `offsets` (of the first line's
// first value, per operand, in elements), which is line `first_line` of
// the walk (its C-order position when lines_in_c_order). rows: the rows are
// plan.inner.stride apart; columns: side by side across plan.inner; tiles:
// likewise, count <= plan.tile_width; gather: count is 1.
struct Batch {
    std::ptrdiff_t offsets[kMaxOperands];
    std::size_t count;
    std::size_t first_line;
};

// Calls f(batch) for each piece of task `task` (< plan.tasks()), in order
// (not for segments: see segment_of).
template <class F>
void for_each_batch(const Plan& plan, std::size_t task, F&& f) {
    const std::size_t begin = task * plan.units_per_task;
    const std::size_t end = std::min(plan.units, begin + plan.units_per_task);
    const std::size_t k = plan.operands;
    if (plan.way == Way::column_tiles) {
        const std::size_t width = plan.tile_width;
        const std::size_t row_tiles = (plan.inner.size + width - 1) / width;  // per run of inner
        const Dim tile_run{row_tiles, {0, 0, 0, 0}};  // (the offsets of the run's first line)
        std::size_t tile = begin;
        for_each_unit(plan.outer, tile_run, k, begin, end, [&](const std::ptrdiff_t* run) {
            const std::size_t first = tile % row_tiles * width;
            Batch batch{{0, 0, 0, 0},
                        std::min(plan.inner.size - first, width),
                        tile / row_tiles * plan.inner.size + first};
            for (std::size_t a = 0; a < k; ++a)
                batch.offsets[a] =
                    run[a] + static_cast<std::ptrdiff_t>(first) * plan.inner.stride[a];
            f(static_cast<const Batch&>(batch));
            ++tile;
        });
        return;
    }
    std::size_t line = begin;
    const auto piece = [&](const std::ptrdiff_t* offsets, std::size_t count) {
        const Batch batch{{offsets[0], offsets[1], offsets[2], offsets[3]}, count, line};
        f(batch);
        line += count;
    };
    if (plan.way == Way::gather)
        for_each_unit(plan.outer, plan.inner, k, begin, end,
                      [&](const std::ptrdiff_t* offsets) { piece(offsets, 1); });
    else
        for_each_run(plan.outer, plan.inner, k, begin, end, piece);
}

// Calls f(offsets) for every line, in order (the offsets of its first value).
template <class F>
void for_each_line(const Plan& plan, F&& f) {
    for_each_unit(plan.outer, plan.inner, plan.operands, 0, plan.lines, f);
}

// segments: task `task` is values [start, start + length) of line `line`.
struct Segment {
    std::size_t line, start, length;
};

inline Segment segment_of(const Plan& plan, std::size_t task) {
    const std::size_t start = task % plan.segments_per_line * kSegment;
    return {task / plan.segments_per_line, start, std::min(plan.n - start, kSegment)};
}

}  // namespace fastsoftmax::layout
