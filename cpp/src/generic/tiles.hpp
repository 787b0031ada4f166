// Many short rows by tiles: V::N rows transposed into one tile, one row per
// lane, so that a column kernel does them with no reduction across lanes.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "generic/blocks.hpp"
#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// ------------------------------------------------ short rows as columns --
//
// Many short rows: V::N of them at a time are transposed into a tile of
// n x V::N (one row per lane, contiguous), the column kernels (below) do the
// work with no reduction across lanes, and the results are transposed back.
// Done one at a time (or in groups), a short row costs more in its
// reductions (max, sum, log: chains of shuffles and scalar steps) than in
// its exponentials. Each lane is computed on its own, so a row's result does
// not depend on which tile or lane it lands in (nor on the thread split).

// The largest tile (n * V::N elements): a whole number of V::N x V::N blocks
// on every target, as tile_in and tile_out move whole blocks.
constexpr std::size_t kTileBytes = 8192;

// Each op owns the longest rows it sends by tiles (kSoftmaxTileLimit, ...,
// kCeTileLimit): up to those, tiles measured faster than its row paths
// (bench/RESULTS.md); every limit also keeps a tile within kTileBytes.

// Whether V has transpose(src, ss, dst, ds): dst[j * ds + i] = src[i * ss + j]
// for i, j < V::N (the x86 targets).
template <class V, class = void>
struct HasTranspose : std::false_type {};
template <class V>
struct HasTranspose<
    V, std::void_t<decltype(V::transpose(std::declval<const typename V::T*>(), std::ptrdiff_t{},
                                         std::declval<typename V::T*>(), std::ptrdiff_t{}))>>
    : std::true_type {};

// Whether rows of n go by tiles: on targets with a vector transpose (moved
// element by element, the tiles were slower), by n (and the op, the type and
// the target) only, so that a row gets the same answer in any batch.
template <class V>
bool tiles_pay(std::size_t n, std::size_t limit) {
    return HasTranspose<V>::value && V::N >= 4 && n >= 2 && n <= limit &&
           n * V::N * sizeof(typename V::T) <= kTileBytes;
}

// Rows [0, w) of x (n elements each) into lanes [0, w) of an n x V::N tile:
// tile[i * V::N + l] = x[l * xs + i]. Whole tiles go by blocks of V::N x V::N
// (the last one through a staging block, so that nothing past a row is
// read); the tile's rows past n may then hold anything.
template <class V>
void tile_in(const typename V::S* x, std::ptrdiff_t xs, typename V::T* tile, std::size_t w,
             std::size_t n) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    if constexpr (HasTranspose<V>::value) {
        if (w == N) {
            std::size_t i = 0;
            for (; i + N <= n; i += N) V::transpose(x + i, xs, tile + i * N, N);
            if (i < n) {
                alignas(64) T block[N * N];
                for (std::size_t l = 0; l < N; ++l)
                    V::store(
                        block + l * N,
                        V::load_partial(x + static_cast<std::ptrdiff_t>(l) * xs + i, n - i, 0));
                V::transpose(block, N, tile + i * N, N);
            }
            return;
        }
    }
    for (std::size_t l = 0; l < w; ++l, x += xs)
        for (std::size_t k = 0; k < n; ++k) tile[k * N + l] = to_compute(x[k]);
}

// Lanes [0, w) of the tile's first n rows back into rows [0, w) of y:
// y[l * ys + i] = tile[i * V::N + l].
template <class V>
void tile_out(const typename V::T* tile, typename V::S* y, std::ptrdiff_t ys, std::size_t w,
              std::size_t n) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    if constexpr (HasTranspose<V>::value) {
        if (w == N && n > 1) {
            std::size_t i = 0;
            for (; i + N <= n; i += N) V::transpose(tile + i * N, N, y + i, ys);
            if (i < n) {
                alignas(64) T block[N * N];
                V::transpose(tile + i * N, N, block, N);
                for (std::size_t l = 0; l < N; ++l)
                    V::store_partial(y + static_cast<std::ptrdiff_t>(l) * ys + i, n - i,
                                     V::load(block + l * N));
            }
            return;
        }
    }
    for (std::size_t l = 0; l < w; ++l, y += ys)
        for (std::size_t k = 0; k < n; ++k) y[k] = to_storage<typename V::S>(tile[k * N + l]);
}

// cols(tile, w) computes lanes [0, w) of the n x V::N tile in place; the
// tile's first out_n rows (n, or 1 for a reduction) go back to y.
template <class V, class Cols>
void by_tiles(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y, std::ptrdiff_t ys,
              std::size_t rows, std::size_t n, std::size_t out_n, Cols cols) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    alignas(64) T tile[kTileBytes / sizeof(T)];
    for (std::size_t r = 0; r < rows; r += N) {
        const std::size_t w = (rows - r < N) ? rows - r : N;
        const auto off = static_cast<std::ptrdiff_t>(r);
        tile_in<V>(x + off * xs, xs, tile, w, n);
        cols(tile, w);
        tile_out<V>(tile, y + off * ys, ys, w, out_n);
    }
}

// Rows that fit in L1, in arrays that fit in cache, software-pipelined: one loop over the columns
// does the exp-store-sum pass of row r (bound by the FMA units) together with the max pass of row
// r+1 and the scale pass of row r-1 (bound by loads and stores), so the two kinds of work overlap

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
