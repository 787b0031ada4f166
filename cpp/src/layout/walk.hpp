// Walking the axes of N-d strided arrays: the planner's building blocks
// (plan.hpp), and the label checks of cross_entropy.cpp. ISA-free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace fastsoftmax::layout {

constexpr std::size_t kMaxOperands = 4;

// An axis other than the reduction axis: its length and one stride per
// operand, in elements.
struct Dim {
    std::size_t size;
    std::ptrdiff_t stride[kMaxOperands];
};

// Merges neighbouring axes that step through memory as one (C order), in
// place.
inline void coalesce(std::vector<Dim>& dims, std::size_t k) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < dims.size(); ++i) {
        const Dim d = dims[i];
        if (kept > 0) {
            Dim& prev = dims[kept - 1];
            bool merge = true;
            for (std::size_t a = 0; a < k; ++a)
                merge =
                    merge && prev.stride[a] == d.stride[a] * static_cast<std::ptrdiff_t>(d.size);
            if (merge) {
                prev.size *= d.size;
                for (std::size_t a = 0; a < k; ++a) prev.stride[a] = d.stride[a];
                continue;
            }
        }
        dims[kept++] = d;
    }
    dims.resize(kept);
}

// Calls f(offsets, count) for the units [begin, end) of the C-order index
// space outer x [0, run.size) (run.size >= 1), one call per stretch of
// consecutive units along `run`: offsets (in elements) of its first unit;
// the next ones are run.stride further each. Lets threads take ranges.
template <class F>
void for_each_run(const std::vector<Dim>& outer, const Dim& run, std::size_t k, std::size_t begin,
                  std::size_t end, F&& f) {
    if (begin >= end) return;
    std::vector<std::size_t> idx(outer.size());
    std::ptrdiff_t off[kMaxOperands] = {0, 0, 0, 0};
    std::size_t rest = begin / run.size;
    for (std::size_t d = outer.size(); d-- > 0;) {
        idx[d] = rest % outer[d].size;
        rest /= outer[d].size;
        for (std::size_t a = 0; a < k; ++a)
            off[a] += static_cast<std::ptrdiff_t>(idx[d]) * outer[d].stride[a];
    }
    std::size_t r = begin % run.size;
    for (std::size_t pos = begin;;) {
        const std::size_t count = std::min(run.size - r, end - pos);
        std::ptrdiff_t first[kMaxOperands] = {0, 0, 0, 0};
        for (std::size_t a = 0; a < k; ++a)
            first[a] = off[a] + static_cast<std::ptrdiff_t>(r) * run.stride[a];
        f(static_cast<const std::ptrdiff_t*>(first), count);
        pos += count;
        if (pos >= end) return;
        r = 0;
        for (std::size_t d = outer.size();;) {  // the next index of outer
            if (d == 0) return;
            --d;
            if (++idx[d] < outer[d].size) {
                for (std::size_t a = 0; a < k; ++a) off[a] += outer[d].stride[a];
                break;
            }
            for (std::size_t a = 0; a < k; ++a)
                off[a] -= outer[d].stride[a] * static_cast<std::ptrdiff_t>(outer[d].size - 1);
            idx[d] = 0;
        }
    }
}

// for_each_run, one call f(offsets) per unit.
template <class F>
void for_each_unit(const std::vector<Dim>& outer, const Dim& run, std::size_t k, std::size_t begin,
                   std::size_t end, F&& f) {
    for_each_run(outer, run, k, begin, end, [&](const std::ptrdiff_t* off, std::size_t count) {
        std::ptrdiff_t at[kMaxOperands] = {off[0], off[1], off[2], off[3]};
        for (std::size_t i = 0; i < count; ++i) {
            f(static_cast<const std::ptrdiff_t*>(at));
            for (std::size_t a = 0; a < k; ++a) at[a] += run.stride[a];
        }
    });
}

}  // namespace fastsoftmax::layout
