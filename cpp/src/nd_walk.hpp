// Walking the axes of N-d strided arrays, shared by the drivers
// (driver.cpp, cross_entropy.cpp). ISA-free.
#pragma once

#include <cstddef>
#include <vector>

namespace fastsoftmax::nd {

constexpr std::size_t kMaxOperands = 4;

// The axes other than the reduction axis, with one stride per operand.
struct Dim {
    std::size_t size;
    std::ptrdiff_t stride[kMaxOperands];
};

// Merge neighbouring axes that step through memory as one (C order).
inline std::vector<Dim> coalesce(const std::vector<Dim>& dims, std::size_t k) {
    std::vector<Dim> out;
    for (const Dim& d : dims) {
        if (!out.empty()) {
            Dim& prev = out.back();
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
        out.push_back(d);
    }
    return out;
}

// Calls f(offsets) for every index of `dims` (C order); offsets in elements.
template <class F>
void for_each_index(const std::vector<Dim>& dims, std::size_t k, F&& f) {
    std::vector<std::size_t> idx(dims.size(), 0);
    std::ptrdiff_t off[kMaxOperands] = {0, 0, 0, 0};
    for (;;) {
        f(off);
        std::size_t d = dims.size();
        for (;;) {
            if (d == 0) return;
            --d;
            if (++idx[d] < dims[d].size) {
                for (std::size_t a = 0; a < k; ++a) off[a] += dims[d].stride[a];
                break;
            }
            for (std::size_t a = 0; a < k; ++a)
                off[a] -= dims[d].stride[a] * static_cast<std::ptrdiff_t>(dims[d].size - 1);
            idx[d] = 0;
        }
    }
}

}  // namespace fastsoftmax::nd
