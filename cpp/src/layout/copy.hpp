// Copies between strided operands and the contiguous buffers of the gather
// and column_tiles ways (plan.hpp). ISA-free.
#pragma once

#include <cstddef>
#include <cstring>

namespace fastsoftmax::layout {

// to[i] = from[i * stride] for i < n.
template <class T>
void copy_line_in(const T* from, std::ptrdiff_t stride, std::size_t n, T* to) {
    for (std::size_t i = 0; i < n; ++i) to[i] = from[static_cast<std::ptrdiff_t>(i) * stride];
}

// to[i * stride] = from[i] for i < n.
template <class T>
void copy_line_out(const T* from, std::size_t n, T* to, std::ptrdiff_t stride) {
    for (std::size_t i = 0; i < n; ++i) to[static_cast<std::ptrdiff_t>(i) * stride] = from[i];
}

// A tile of `width` lines side by side, value c of line l at
// from[c * value_stride + l], to tile[c * tile_width + l]: n contiguous
// copies of `width` values.
template <class T>
void copy_tile_in(const T* from, std::ptrdiff_t value_stride, std::size_t n, std::size_t width,
                  T* tile, std::size_t tile_width) {
    for (std::size_t c = 0; c < n; ++c)
        std::memcpy(tile + c * tile_width, from + static_cast<std::ptrdiff_t>(c) * value_stride,
                    width * sizeof(T));
}

// ... and back.
template <class T>
void copy_tile_out(const T* tile, std::size_t tile_width, std::size_t n, std::size_t width, T* to,
                   std::ptrdiff_t value_stride) {
    for (std::size_t c = 0; c < n; ++c)
        std::memcpy(to + static_cast<std::ptrdiff_t>(c) * value_stride, tile + c * tile_width,
                    width * sizeof(T));
}

}  // namespace fastsoftmax::layout
