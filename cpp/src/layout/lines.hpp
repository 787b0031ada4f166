// Walks the lines of an N-d array along one axis, each handed over
// contiguous (copied to a per-task buffer when the axis is strided), on the
// pool's threads: for the kernels that take one line at a time (the
// mergeable parts, the entropy and the KL divergence). ISA-free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "fastsoftmax/parallel.hpp"
#include "layout/copy.hpp"
#include "layout/plan.hpp"

namespace fastsoftmax::layout {

// (the prefetch distance for rows that are parts of longer ones)
constexpr std::size_t kLinePrefetchBytes = std::size_t(64) << 10;

// Walks the lines of x along `axis` with the other operands (per-line
// values, or elements of an output): f(line, n, offsets, buffer, axis
// strides) gets each line contiguous, copied to the task's buffer when the
// plan gathers (buffer then not null).
template <class T, class F>
void walk_lines(const std::vector<std::size_t>& shape, std::size_t axis, const Operand* operands,
                std::size_t count, const T* x, F&& f) {
    if (axis >= shape.size()) throw std::invalid_argument("axis out of range");
    Options options;
    options.row_cost = kRowCost;
    const Plan plan = layout::plan(shape, axis, operands, count, options);
    if (plan.lines == 0) return;
    const std::size_t n = plan.n;
    // rows that are parts of longer ones (a chunk of the class axis): the hardware
    // prefetcher does not cross the gap to the next row, so it is asked for (views
    // of (8192, 32000) float32 in 8 chunks: 13.7 -> 10.8-13.2 ms a chunk)
    const bool gaps =
        plan.way == Way::rows && plan.inner.stride[0] != static_cast<std::ptrdiff_t>(n);
    const std::size_t ahead = gaps ? std::min(n * sizeof(T), kLinePrefetchBytes) : 0;
    parallel_for(plan.tasks(), [&](std::size_t t) {
        std::vector<T> buf(plan.way == Way::rows ? 0 : n);
        for_each_batch(plan, t, [&](const Batch& batch) {
            for (std::size_t r = 0; r < batch.count; ++r) {
                if (r + 1 < batch.count) {  // (ahead is 0 without gaps)
                    const char* next = reinterpret_cast<const char*>(
                        x + batch.offsets[0] +
                        static_cast<std::ptrdiff_t>(r + 1) * plan.inner.stride[0]);
                    for (std::size_t k = 0; k < ahead; k += 64) __builtin_prefetch(next + k);
                }
                std::ptrdiff_t off[kMaxOperands] = {0, 0, 0, 0};
                for (std::size_t a = 0; a < count; ++a)
                    off[a] =
                        batch.offsets[a] + static_cast<std::ptrdiff_t>(r) * plan.inner.stride[a];
                const T* line = x + off[0];
                if (!buf.empty()) {
                    copy_line_in(line, plan.axis_stride[0], n, buf.data());
                    line = buf.data();
                }
                f(line, n, off, buf.empty() ? nullptr : buf.data(), plan.axis_stride);
            }
        });
    });
}

}  // namespace fastsoftmax::layout
