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
// for i, j < V::N (the x86 targets and NEON's float32).
template <class V, class = void>
struct HasTranspose : std::false_type {};
template <class V>
struct HasTranspose<
    V, std::void_t<decltype(V::transpose(std::declval<const typename V::T*>(), std::ptrdiff_t{},
                                         std::declval<typename V::T*>(), std::ptrdiff_t{}))>>
    : std::true_type {};

// The longest rows a target sends by tiles, whatever the op:
// V::kTileRowsMax where the wrapper has one, else each op's own limit; and
// V::kSoftmaxTileRowsMax, softmax's. (NEON: its horizontal reductions are
// single instructions, so its row paths cost no more instructions than the
// tiles from 33 elements on, and softmax's, which takes no log per row,
// fewer from 8; bench/RESULTS.md.)
template <class V, class = void>
struct TileRowsMax : std::integral_constant<std::size_t, std::size_t(-1)> {};
template <class V>
struct TileRowsMax<V, std::void_t<decltype(V::kTileRowsMax)>>
    : std::integral_constant<std::size_t, V::kTileRowsMax> {};
template <class V, class = void>
struct SoftmaxTileRowsMax : TileRowsMax<V> {};
template <class V>
struct SoftmaxTileRowsMax<V, std::void_t<decltype(V::kSoftmaxTileRowsMax)>>
    : std::integral_constant<std::size_t, V::kSoftmaxTileRowsMax> {};

// Whether rows of n go by tiles: on targets with a vector transpose (moved
// element by element, the tiles were slower), by n (and the op, the type and
// the target) only, so that a row gets the same answer in any batch.
template <class V>
bool tiles_pay(std::size_t n, std::size_t limit) {
    return HasTranspose<V>::value && V::N >= 4 && n >= 2 && n <= limit &&
           n <= TileRowsMax<V>::value && n * V::N * sizeof(typename V::T) <= kTileBytes;
}

// Whether V has column_of and block_of (the short transposes, for rows of
// n < V::N laid end to end: arch/common_ops.hpp, ShortTransposeTables).
template <class V, class = void>
struct HasShortTranspose : std::false_type {};
// (void(...): the functions return a vector, and a vector type as a template
// argument of void_t loses its attributes, which GCC warns about)
template <class V>
struct HasShortTranspose<
    V, std::void_t<decltype(void(V::column_of(static_cast<const typename V::reg*>(nullptr),
                                              std::size_t{}, std::size_t{}))),
                   decltype(void(V::block_of(static_cast<const typename V::reg*>(nullptr),
                                             std::size_t{}, std::size_t{})))>> : std::true_type {};

// The longest rows the short transposes take: n masked permutes per vector
// each way grow as n^2, and from 5 elements on the V::N x V::N blocks below
// measured faster (float32, avx512, cross_entropy with its gradient: 8
// classes 1.27x slower by the short transposes, 10 classes softmax 0.83 ->
// 0.53 ns an element by the blocks).
constexpr std::size_t kShortTransposeMax = 4;

// Whether the last k < V::N columns of a group of V::N rows (all of them,
// for rows shorter than V::N) move element by element rather than by a
// block and a transpose (tile_in): up to 24 elements, of arrays of the
// compute type (avx2, float32, softmax: 9 and 10 classes 0.91 and 0.96x the
// instructions of the overlapping block, 12 classes 1.03x; through a staging
// block, 9 classes took 5.3 instructions an element in tile_in and
// tile_out). Half-precision storage keeps the blocks, whose conversions are
// the vector ones.
template <class V>
constexpr bool scalar_tail(std::size_t k) {
    return std::is_same_v<typename V::S, typename V::T> && k * V::N <= 24;
}

// Elements [k0, n) of rows [0, w) of x into lanes [0, w) of the tile's rows
// k0 to n, and back: the tiles' moves element by element. (A column at a
// time: for a tail of one or two columns, the inner loop then runs over the
// lanes, not over one or two elements; 9 classes 1.2x the instructions the
// other way round.)
template <class V>
void elements_in(const typename V::S* x, std::ptrdiff_t xs, typename V::T* tile, std::size_t ts,
                 std::size_t w, std::size_t k0, std::size_t n) {
    for (std::size_t k = k0; k < n; ++k)
        for (std::size_t l = 0; l < w; ++l)
            tile[k * ts + l] =
                to_compute(x[static_cast<std::ptrdiff_t>(l) * xs + static_cast<std::ptrdiff_t>(k)]);
}
template <class V>
void elements_out(const typename V::T* tile, std::size_t ts, typename V::S* y, std::ptrdiff_t ys,
                  std::size_t w, std::size_t k0, std::size_t n) {
    for (std::size_t k = k0; k < n; ++k)
        for (std::size_t l = 0; l < w; ++l)
            y[static_cast<std::ptrdiff_t>(l) * ys + static_cast<std::ptrdiff_t>(k)] =
                to_storage<typename V::S>(tile[k * ts + l]);
}

// Rows [0, w) of x (n elements each, w <= V::N) into lanes [0, w) of a tile
// whose rows are ts apart: tile[i * ts + l] = x[l * xs + i]. Rows laid end
// to end and shorter than a vector go by the short transposes where V has
// them; whole groups by blocks of V::N x V::N. The last n % V::N columns go
// element by element (scalar_tail); or, in rows of at least V::N, by one more
// block, of the last V::N columns, which overlaps the one before it (the
// columns they share are written twice, the same values; avx2, float32,
// softmax: 12, 15, 20 and 36 classes 0.96, 0.96, 0.98 and 0.99x the
// instructions of a staging block); or,
// in shorter rows, through a staging block, which fills the tile's rows
// past n, up to V::N, with anything. Nothing outside the group's rows is
// read.
template <class V>
void tile_in(const typename V::S* x, std::ptrdiff_t xs, typename V::T* tile, std::size_t ts,
             std::size_t w, std::size_t n) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    const auto its = static_cast<std::ptrdiff_t>(ts);
    if constexpr (HasShortTranspose<V>::value) {
        if (n < N && n <= kShortTransposeMax && xs == static_cast<std::ptrdiff_t>(n)) {
            // rows end to end: n vectors
            const std::size_t total = w * n;
            typename V::reg v[N] = {};  // (n < N of them read: GCC cannot tell)
            for (std::size_t k = 0, at = 0; k < n; ++k, at += N)
                v[k] = at + N <= total ? V::load(x + at)
                                       : V::load_partial(x + at, at < total ? total - at : 0, 0);
            for (std::size_t j = 0; j < n; ++j)
                V::Compute::store(tile + j * ts, V::column_of(v, n, j));
            return;
        }
    }
    if constexpr (HasTranspose<V>::value) {
        if (w == N) {
            std::size_t i = 0;
            // the stride as a constant, so that the stores' addresses fold (without
            // this loop, log_softmax of 64 classes measured 1.10-1.12x slower)
            if (ts == N)
                for (; i + N <= n; i += N) V::transpose(x + i, xs, tile + i * N, N);
            for (; i + N <= n; i += N) V::transpose(x + i, xs, tile + i * ts, its);
            if (i < n && scalar_tail<V>(n - i)) {
                elements_in<V>(x, xs, tile, ts, N, i, n);
            } else if (i < n && n >= N) {
                V::transpose(x + (n - N), xs, tile + (n - N) * ts, its);
            } else if (i < n) {  // (i == 0)
                alignas(64) T block[N * N];
                for (std::size_t l = 0; l < N; ++l)
                    V::store(block + l * N,
                             V::load_partial(x + static_cast<std::ptrdiff_t>(l) * xs, n, 0));
                V::transpose(block, N, tile, its);
            }
            return;
        }
    }
    elements_in<V>(x, xs, tile, ts, w, 0, n);
}

// Lanes [0, w) of the tile's first n rows (ts apart) back into rows [0, w)
// of y: y[l * ys + i] = tile[i * ts + l], the last columns as tile_in moved
// them in. Nothing outside the group's rows is written.
template <class V>
void tile_out(const typename V::T* tile, std::size_t ts, typename V::S* y, std::ptrdiff_t ys,
              std::size_t w, std::size_t n) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    const auto its = static_cast<std::ptrdiff_t>(ts);
    if constexpr (HasShortTranspose<V>::value) {
        if (n < N && n <= kShortTransposeMax && ys == static_cast<std::ptrdiff_t>(n)) {
            // rows end to end: n vectors
            const std::size_t total = w * n;
            typename V::reg c[N];
            for (std::size_t j = 0; j < n; ++j) c[j] = V::Compute::load(tile + j * ts);
            for (std::size_t k = 0, at = 0; at < total; ++k, at += N) {
                const auto b = V::block_of(c, n, k);
                if (at + N <= total)
                    V::store(y + at, b);
                else
                    V::store_partial(y + at, total - at, b);
            }
            return;
        }
    }
    if constexpr (HasTranspose<V>::value) {
        if (w == N && n > 1) {
            const std::size_t whole_n = n / N * N;
            if (whole_n < n && scalar_tail<V>(n - whole_n)) {
                elements_out<V>(tile, ts, y, ys, N, whole_n, n);
            } else if (whole_n < n && n >= N) {
                V::transpose(tile + (n - N) * ts, its, y + (n - N), ys);
            } else if (whole_n < n) {  // (whole_n == 0)
                alignas(64) T block[N * N];
                V::transpose(tile, its, block, N);
                for (std::size_t l = 0; l < N; ++l)
                    V::store_partial(y + static_cast<std::ptrdiff_t>(l) * ys, n,
                                     V::load(block + l * N));
            }
            std::size_t i = 0;
            if (ts == N)
                for (; i + N <= n; i += N) V::transpose(tile + i * N, N, y + i, ys);
            for (; i + N <= n; i += N) V::transpose(tile + i * ts, its, y + i, ys);
            return;
        }
    }
    elements_out<V>(tile, ts, y, ys, w, 0, n);
}

// How many groups of V::N rows one tile takes (kTileBytes, at most
// kTileGroups): rows of up to kWideTileMax elements do little work per group,
// and a kernel call per group was bound by its latency (max -> exp -> sum ->
// 1/sum -> scale); longer rows measured no faster in wider tiles (64
// classes: log_softmax 1.18x slower).
constexpr std::size_t kTileGroups = 16;
constexpr std::size_t kWideTileMax = 16;
template <class V>
std::size_t tile_groups(std::size_t n) {
    constexpr std::size_t N = V::N;
    if (n > kWideTileMax) return 1;
    // (rounded up to V::N: below V::N the staging block fills rows past n;
    // past V::N nothing does since the overlapping last block, but the tile
    // widths were measured with the rounding, which stays until remeasured)
    const std::size_t rows_held = (n + N - 1) / N * N;
    const std::size_t k = kTileBytes / (rows_held * N * sizeof(typename V::T));
    return k < 1 ? 1 : (k > kTileGroups ? kTileGroups : k);
}

// cols(tile, ts, w) computes lanes [0, w) of the tile (rows ts apart) in
// place; the tile's first out_n rows (n, or 1 for a reduction) go back to y.
template <class V, class Cols>
void by_tiles(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y, std::ptrdiff_t ys,
              std::size_t rows, std::size_t n, std::size_t out_n, Cols cols) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    alignas(64) T tile[kTileBytes / sizeof(T)];
    const std::size_t ts = tile_groups<V>(n) * N;  // lanes per tile
    for (std::size_t r = 0; r < rows; r += ts) {
        const std::size_t w = (rows - r < ts) ? rows - r : ts;
        for (std::size_t g = 0; g < w; g += N) {
            const auto off = static_cast<std::ptrdiff_t>(r + g);
            tile_in<V>(x + off * xs, xs, tile + g, ts, (w - g < N) ? w - g : N, n);
        }
        cols(tile, ts, w);
        for (std::size_t g = 0; g < w; g += N) {
            const auto off = static_cast<std::ptrdiff_t>(r + g);
            tile_out<V>(tile + g, ts, y + off * ys, ys, (w - g < N) ? w - g : N, out_n);
        }
    }
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
