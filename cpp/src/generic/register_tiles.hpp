// Rows of 2 to kRegisterTileMax elements laid end to end (a contiguous
// (rows, n) array), on targets with the short transposes (V::column_of,
// V::block_of): V::N rows at a time are transposed in registers, one row per
// lane, computed with exactly the column kernels' lane-by-lane arithmetic
// (softmax_cols, log_softmax_cols, logsumexp_cols: the same bits as the
// tiles, tiles.hpp), and transposed back, with no tile in memory. Two groups
// of V::N rows go through each step together: one group's chain (max -> exp
// -> sum -> 1/sum -> scale) is too short for the core to overlap the next.
// Rows longer than a vector (where V::kWideRegisterTileMax allows them: avx2,
// float32, 9 to 16 elements) go one group at a time, by V::N x V::N
// transposes through a block on the stack, their length still a
// compile-time constant.
#pragma once

#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>

#include "generic/blocks.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/tiles.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// (by the short transposes: n masked permutes per vector each way grow as
// n^2, and the tiles' V::N x V::N transposes measured faster from 9 elements
// on; past V::N, by those transposes, see WideRegisterTileMax)
constexpr std::size_t kRegisterTileMax = 16;
constexpr std::size_t kRegisterGroups = 2;

template <class V>
constexpr bool kHasRegisterTiles = HasShortTranspose<V>::value;

// f(Const<n>{}) for n in [1, sizeof...(K)].
template <class F, std::size_t... K>
void call_with_constant(std::size_t n, F& f, std::index_sequence<K...>) {
    ((n == K + 1 ? f(Const<K + 1>{}) : void()), ...);
}

// Whether V transposes a whole group at once where n is a compile-time
// constant: V::columns_of(rows, Const<n>{}, cols) and V::blocks_of(cols,
// Const<n>{}, rows), every column_of (block_of) in one call, so that the work
// they share is done once whatever the compiler sees; then n may be V::N where
// V::kConstTransposeMax says so (avx2: its 8 x 8 transpose).
template <class V, class = void>
struct HasGroupTranspose : std::false_type {};
template <class V>
struct HasGroupTranspose<
    V, std::void_t<decltype(V::columns_of(static_cast<const typename V::reg*>(nullptr), Const<2>{},
                                          static_cast<typename V::reg*>(nullptr))),
                   decltype(V::blocks_of(static_cast<const typename V::reg*>(nullptr), Const<2>{},
                                         static_cast<typename V::reg*>(nullptr)))>>
    : std::true_type {};

// The longest rows of the register tiles on V: V::kConstTransposeMax where
// the wrapper has one, else V::N - 1 (the short transposes' tables stop there).
template <class V, class = void>
struct ConstTransposeMax : Const<V::N - 1> {};
template <class V>
struct ConstTransposeMax<V, std::void_t<decltype(V::kConstTransposeMax)>>
    : Const<V::kConstTransposeMax> {};

// The longest rows past V::N the register tiles take, by V::N x V::N blocks:
// V::kWideRegisterTileMax where the wrapper has one (avx2, float32: softmax
// of 9 to 16 classes 7.9-8.8 instructions an element, against 10.1-12.3 by
// the tiles of tiles.hpp, whose kernels' loops run over a run-time n), else
// none.
template <class V, class = void>
struct WideRegisterTileMax : Const<0> {};
template <class V>
struct WideRegisterTileMax<V, std::void_t<decltype(V::kWideRegisterTileMax)>>
    : Const<V::kWideRegisterTileMax> {};
template <class V>
constexpr std::size_t kRegisterTileMost =
    WideRegisterTileMax<V>::value > V::N ? WideRegisterTileMax<V>::value
                                         : ConstTransposeMax<V>::value;

// Whether V does rows of n by register tiles: n in [lo, kRegisterTileMax],
// up to kRegisterTileMost, the rows laid end to end; then f(Const<n>{}) runs
// (the kernels below for the row length as a compile-time constant: their
// loops unroll, their tiles stay in registers).
template <class V, class F>
bool try_register_tiles(std::size_t n, std::size_t lo, bool end_to_end, F f) {
    if constexpr (kHasRegisterTiles<V>) {
        constexpr std::size_t most = kRegisterTileMost<V>;
        if (!end_to_end || n < lo || n > most || n > kRegisterTileMax) return false;
        const auto fixed = [&f](auto k) {
            if constexpr (k <= most) f(k);
        };
        call_with_constant(n, fixed, std::make_index_sequence<kRegisterTileMax>{});
        return true;
    }
    (void)n, (void)lo, (void)end_to_end, (void)f;
    return false;
}

// Whether V has transpose8(in, out): out[j] lane i = in[i] lane j, i, j < 8,
// in registers (avx2's float32).
template <class V, class = void>
struct HasTranspose8 : std::false_type {};
template <class V>
struct HasTranspose8<
    V, std::void_t<decltype(V::transpose8(static_cast<const typename V::reg*>(nullptr),
                                          static_cast<typename V::reg*>(nullptr)))>>
    : std::true_type {};

// where= in the register tiles: one byte per element of the rows laid end to
// end as x is, from m, advancing with the rows; or (`repeats`, a (1, C) mask
// laid out V::N times) one group's bytes that every group repeats. An excluded element is read as
// -inf, and its output written as `fill` (0 for softmax, -inf for log_softmax): the bits of the
// plain rows on the input with -inf there and the driver's fills, special rows included.
// NoTileMask: the plain tiles (their code as it was without masks).
struct NoTileMask {
    NoTileMask at(std::size_t) const { return {}; }
};
template <class T>
struct TileMask {
    const unsigned char* m = nullptr;
    bool repeats = false;
    T fill = T(0);
    // the mask of the tile from element e
    TileMask at(std::size_t e) const { return {repeats ? m : m + e, repeats, fill}; }
    // the bytes of the tile's elements from `at`, a multiple of `group`
    const unsigned char* bytes(std::size_t at, std::size_t group) const {
        return m + (repeats ? at % group : at);
    }
};

// How many groups of V::N rows a register tile of rows of kN takes by
// default: one past V::N (its columns would not fit the registers twice).
template <class V, std::size_t kN>
constexpr std::size_t kRegisterGroupsOf = kN > V::N ? 1 : kRegisterGroups;

// G groups of V::N rows of kN elements each: cols[g][j], lane l = element j
// of row l of group g; `rows` of them are real (the rest read as 0).
template <class V, std::size_t kN, std::size_t G = kRegisterGroupsOf<V, kN>>
struct RegisterTile {
    using reg = typename V::reg;
    using T = typename V::T;
    static constexpr std::size_t N = V::N;
    static constexpr std::size_t kGroups = G;
    // rows longer than a vector: by V::N x V::N blocks through the stack (a
    // group short of V::N rows by tile_in and tile_out)
    static constexpr bool kByBlocks = kN > N;
    static_assert(kN < N || HasGroupTranspose<V>::value || kByBlocks,
                  "rows of V::N take the group transposes (column_of's tables stop at N - 1)");
    static_assert(!kByBlocks || HasTranspose<V>::value, "rows past V::N take V::transpose");
    // A whole group's V::N x V::N blocks: at 0, V::N, ..., and where kN is not
    // a multiple of V::N, the last V::N columns, overlapping the block before
    // (their shared columns moved twice, the same values: see tile_in).
    static constexpr std::size_t kBlocks = (kN + N - 1) / N;
    // Rows of 6 where V has transpose8 (avx2, float32): a whole tile's rows
    // are loaded a vector each (a row's lanes past its end hold the next
    // row's first elements; the last row's, zeros) and transposed in
    // registers, and stored back the same way. (Softmax of 6 classes: 0.82-0.95x
    // the time of the short transposes; 7 classes 1.04-1.08x, though 0.96x the
    // instructions; 4 and 5 classes 1.28 and 1.13x the instructions.)
    static constexpr bool kByRows = kN == 6 && N == 8 && HasTranspose8<V>::value;
    // Whether the tile takes a TileMask (the loads and stores of load_short
    // and store_short: not the blocks', not kByRows').
    static constexpr bool kMaskable = !kByBlocks && !kByRows;
    template <class M>
    static constexpr bool kMasked = !std::is_same_v<M, NoTileMask>;
    static constexpr std::size_t block_at(std::size_t b) {
        return (b + 1) * N > kN ? kN - N : b * N;
    }
    reg c[G][kN];

    template <class M = NoTileMask>
    void load(const typename V::S* x, std::size_t rows, const M& mask = {}) {
        static_assert(kMaskable || !kMasked<M>, "kMaskable tiles only");
        if constexpr (kByBlocks) {
            for (std::size_t g = 0; g < G; ++g) {
                const std::size_t w = g * N < rows ? (rows - g * N < N ? rows - g * N : N) : 0;
                alignas(64) T block[kN * N];
                if (w == N) {
                    for_constants<kBlocks>([&](auto b) {
                        constexpr std::size_t at = block_at(b);
                        V::transpose(x + g * N * kN + at, kN, block + at * N, N);
                    });
                } else {  // (the lanes past the rows: 0)
                    for (std::size_t i = 0; i < kN * N; ++i) block[i] = T(0);
                    if (w > 0) tile_in<V>(x + g * N * kN, kN, block, N, w, kN);
                }
                for (std::size_t j = 0; j < kN; ++j) c[g][j] = V::Compute::load(block + j * N);
            }
        } else if constexpr (kByRows) {
            if (rows == G * N)
                load_rows(x);
            else
                load_part(x, rows);
        } else {
            load_short(x, rows, mask);
        }
    }
    // (kByRows: a whole tile row by row; the batch's last, partial one out of
    // line, so that the code of every whole tile stays small enough for GCC
    // to inline its exponentials: inline, they went out of line)
    void load_rows(const typename V::S* x) {
        for_constants<G>([&](auto g) {
            const typename V::S* xg = x + g * N * kN;
            reg v[N];
            for_constants<N - 1>([&](auto l) { v[l] = V::load(xg + l * kN); });
            v[N - 1] = V::load_partial(xg + (N - 1) * kN, kN, 0);
            reg t[N];
            V::transpose8(v, t);
            for_constants<kN>([&](auto j) { c[g][j] = t[j]; });
        });
    }
    __attribute__((noinline)) void load_part(const typename V::S* x, std::size_t rows) {
        load_short(x, rows);
    }
    template <class M = NoTileMask>
    void load_short(const typename V::S* x, std::size_t rows, const M& mask = {}) {
        const std::size_t total = rows * kN;
        // (always_inline: called once a block, GCC left these out of line)
        const auto block = [&](std::size_t g, std::size_t k) __attribute__((always_inline)) {
            const std::size_t at = (g * kN + k) * N;
            if constexpr (!kMasked<M>) {
                return at + N <= total ? V::load(x + at)
                                       : V::load_partial(x + at, at < total ? total - at : 0, 0);
            } else {  // (-inf at the excluded elements; the lanes past the rows stay 0)
                const std::size_t w = at + N <= total ? N : at < total ? total - at : 0;
                const reg v = w == N ? V::load(x + at) : V::load_partial(x + at, w, 0);
                const unsigned char* const b = mask.bytes(at, N * kN);
                const reg ninf = V::set1(neg_inf<T>());
                if (w == N) return V::select(V::bytes_nonzero(b), v, ninf);
                static constexpr unsigned char kOnes[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                                            1, 1, 1, 1, 1, 1, 1, 1};
                return V::select(V::bytes_nonzero_partial(b, w), v,
                                 V::select(V::bytes_nonzero_partial(kOnes, w), ninf, V::zero()));
            }
        };
        if constexpr (HasGroupTranspose<V>::value) {  // (unrolled: see for_constants)
            for_constants<G>([&](auto g) {
                reg v[kN];
                for_constants<kN>([&](auto k) { v[k] = block(g, k); });
                V::columns_of(v, Const<kN>{}, c[g]);
            });
        } else {
            for (std::size_t g = 0; g < G; ++g) {
                reg v[kN];
                for (std::size_t k = 0; k < kN; ++k) v[k] = block(g, k);
                for (std::size_t j = 0; j < kN; ++j) c[g][j] = V::column_of(v, kN, j);
            }
        }
    }
    // out[g][j] back to `rows` rows of kN at y
    template <class M = NoTileMask>
    static void store(const reg (&out)[G][kN], typename V::S* y, std::size_t rows,
                      const M& mask = {}) {
        static_assert(kMaskable || !kMasked<M>, "kMaskable tiles only");
        if constexpr (kByBlocks) {
            for (std::size_t g = 0; g < G && g * N < rows; ++g) {
                alignas(64) T block[kN * N];
                for (std::size_t j = 0; j < kN; ++j) V::Compute::store(block + j * N, out[g][j]);
                if (rows - g * N >= N) {
                    for_constants<kBlocks>([&](auto b) {
                        constexpr std::size_t at = block_at(b);
                        V::transpose(block + at * N, N, y + g * N * kN + at, kN);
                    });
                } else {
                    tile_out<V>(block, N, y + g * N * kN, kN, rows - g * N, kN);
                }
            }
        } else if constexpr (kByRows) {
            if (rows == G * N)
                store_rows(out, y);
            else
                store_part(out, y, rows);
        } else {
            store_short(out, y, rows, mask);
        }
    }
    // (kByRows: in row order, each row's store running into the next row's
    // first elements, which its own store then writes)
    static void store_rows(const reg (&out)[G][kN], typename V::S* y) {
        for_constants<G>([&](auto g) {
            typename V::S* yg = y + g * N * kN;
            reg t[N], v[N];
            for_constants<N>([&](auto j) { t[j] = out[g][j < kN ? j : 0]; });
            V::transpose8(t, v);
            for_constants<N - 1>([&](auto l) { V::store(yg + l * kN, v[l]); });
            V::store_partial(yg + (N - 1) * kN, kN, v[N - 1]);
        });
    }
    __attribute__((noinline)) static void store_part(const reg (&out)[G][kN], typename V::S* y,
                                                     std::size_t rows) {
        store_short(out, y, rows);
    }
    template <class M = NoTileMask>
    static void store_short(const reg (&out)[G][kN], typename V::S* y, std::size_t rows,
                            const M& mask = {}) {
        const std::size_t total = rows * kN;
        const auto put = [&](std::size_t g, std::size_t k, reg b) __attribute__((always_inline)) {
            const std::size_t at = (g * kN + k) * N;
            if constexpr (kMasked<M>) {  // (the fill at the excluded elements)
                const std::size_t w = at + N <= total ? N : at < total ? total - at : 0;
                if (w > 0) {
                    const unsigned char* const m = mask.bytes(at, N * kN);
                    b = V::select(w == N ? V::bytes_nonzero(m) : V::bytes_nonzero_partial(m, w), b,
                                  V::set1(mask.fill));
                }
            }
            if (at + N <= total)
                V::store(y + at, b);
            else if (at < total)
                V::store_partial(y + at, total - at, b);
        };
        if constexpr (HasGroupTranspose<V>::value) {
            for_constants<G>([&](auto g) {
                // (a group past the rows is left alone: ce_register_tiles
                // writes no gradient there)
                if (g * kN * N >= total) return;
                reg b[kN];
                V::blocks_of(out[g], Const<kN>{}, b);
                for_constants<kN>([&](auto k) { put(g, k, b[k]); });
            });
        } else {
            for (std::size_t g = 0; g < G; ++g)
                for (std::size_t k = 0; k < kN; ++k) {
                    if ((g * kN + k) * N >= total) return;
                    put(g, k, V::block_of(out[g], kN, k));
                }
        }
    }
    // the column maximum, as col_max takes it (the same NaN answers: its first
    // max(-inf, x) is x itself, a NaN included)
    reg max(std::size_t g) const {
        if constexpr (kN == 1) return V::max(c[g][0], V::set1(neg_inf<typename V::T>()));
        reg m0 = c[g][0], m1 = c[g][kN > 1 ? 1 : 0];
        std::size_t i = 2;
        for (; i + 2 <= kN; i += 2) {
            m0 = V::max(m0, c[g][i]);
            m1 = V::max(m1, c[g][i + 1]);
        }
        if (i < kN) m0 = V::max(m0, c[g][i]);
        return V::max(m0, m1);
    }
    // The sum of the column kernels' log ops, (0 + e[0]) + e[1] + ...: their
    // float sum of a block, which they then pass through the wide accumulator
    // and back unchanged (one block: the same bits).
    static reg log_sum(const reg (&e)[kN]) {
        reg s = e[0];  // (0 + e = e: no exponential is -0)
        for (std::size_t j = 1; j < kN; ++j) s = V::add(s, e[j]);
        return s;
    }
    // The exponentials of group g's columns: exp(c - ref), by vexp_sub (kSub)
    // or vexp. Two columns need one: where the row's maximum is finite, the
    // larger element's exp(0) is exactly 1 (as the column kernels compute
    // it); where it is not, softmax's factor is NaN and the log ops' answers
    // come from x - max alone, and a NaN still reaches the sum (the compare
    // picks the NaN as the smaller element, or the maximum is that NaN).
    template <bool kSub, class Z>
    void exps(std::size_t g, reg ref, reg ref_lo, reg (&e)[kN], const Z& z) const {
        using C = typename V::Compute;
        const auto ex = [&](reg v) {
            if constexpr (kSub)
                return z.exp_sub(v, ref, ref_lo);
            else
                return z.exp_diff(v, ref);
        };
        if constexpr (kN == 2) {
            const auto first = C::ge(c[g][0], c[g][1]);  // false for a NaN
            const reg small = ex(C::select(first, c[g][1], c[g][0]));
            const reg one = C::set1(typename V::T(1));
            e[0] = C::select(first, one, small);
            e[1] = C::select(first, small, one);
        } else {
            for (std::size_t j = 0; j < kN; ++j) e[j] = ex(c[g][j]);
        }
    }
};

// Runs op(tile, rows) over the rows, G * V::N at a time. (log_softmax's and
// logsumexp's ops below are always inlined: GCC otherwise left some of them
// out of line, their constants rebuilt on every step; softmax's inlined so
// took 1.4x the instructions on NEON at 2 classes.)
// With a mask (M: a TileMask, or NoTileMask), op(tile, rows, the tile's mask).
template <class V, std::size_t kN, class Op, class M = NoTileMask>
void by_register_tiles(const typename V::S* x, typename V::S* y, std::size_t rows, Op op,
                       const M& mask = {}) {
    constexpr std::size_t step = RegisterTile<V, kN>::kGroups * V::N;
    for (std::size_t r = 0; r < rows; r += step) {
        const std::size_t w = (rows - r < step) ? rows - r : step;
        RegisterTile<V, kN> t;
        const auto tm = mask.at(r * kN);
        t.load(x + r * kN, w, tm);
        op(t, y, r, w, tm);
    }
}

template <class V, std::size_t kN, class Z, class M = NoTileMask>
void softmax_register_tiles(const typename V::S* x, typename V::S* y, std::size_t rows, const Z& z,
                            const M& mask = {}) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t G = RegisterTile<V, kN>::kGroups;
    using Tile = RegisterTile<V, kN>;
    by_register_tiles<V, kN>(
        x, y, rows,
        [&z](Tile& t, typename V::S* out, std::size_t r, std::size_t w, const M& tm) {
            using C = typename V::Compute;  // (the tiles' arithmetic: float for half precision)
            reg e[G][kN];
            for (std::size_t g = 0; g < G; ++g) {  // (softmax_cols, lane by lane)
                const reg m = t.max(g);
                const auto bad = C::not_finite(m);
                const reg ref = C::select(bad, C::zero(), m);
                const reg ref_lo = z.floor(ref);
                t.template exps<true>(g, ref, ref_lo, e[g], z);
                ExpSum<C> sum;
                for (std::size_t j = 0; j < kN; ++j) sum.add(e[g][j]);
                sum.flush();
                reg hi, lo;
                C::wide_reciprocal(sum.wide, hi, lo);
                const reg nan = C::set1(std::numeric_limits<T>::quiet_NaN());
                const Factor<C> inv{C::select(bad, nan, hi), C::select(bad, nan, lo)};
                for (std::size_t j = 0; j < kN; ++j) e[g][j] = inv.apply(e[g][j]);
            }
            Tile::store(e, out + r * kN, w, tm);
        },
        mask);
}

template <class V, std::size_t kN, class Z, class M = NoTileMask>
void log_softmax_register_tiles(const typename V::S* x, typename V::S* y, std::size_t rows,
                                const Z& z, const M& mask = {}) {
    using reg = typename V::reg;
    constexpr std::size_t G = RegisterTile<V, kN>::kGroups;
    using Tile = RegisterTile<V, kN>;
    by_register_tiles<V, kN>(
        x, y, rows,
        [&z](Tile& t, typename V::S* out, std::size_t r, std::size_t w, const M& tm)
            __attribute__((always_inline)) {
                reg o[G][kN];
                for (std::size_t g = 0; g < G; ++g) {  // (log_softmax_cols, lane by lane)
                    const reg m = t.max(g);
                    const reg ref = V::select(V::not_finite(m), V::zero(), m);
                    reg e[kN];
                    t.template exps<false>(g, ref, ref, e, z);
                    const reg ls = vlog<V>(RegisterTile<V, kN>::log_sum(e));
                    for (std::size_t j = 0; j < kN; ++j) o[g][j] = z.shifted(t.c[g][j], m, ls);
                }
                Tile::store(o, out + r * kN, w, tm);
            },
        mask);
}

template <class V, std::size_t kN, class Z, class M = NoTileMask>
void logsumexp_register_tiles(const typename V::S* x, typename V::S* out, std::size_t rows,
                              const Z& z, const M& mask = {}) {
    using reg = typename V::reg;
    constexpr std::size_t G = RegisterTile<V, kN>::kGroups;
    using Tile = RegisterTile<V, kN>;
    by_register_tiles<V, kN>(
        x, out, rows,
        [&z](Tile& t, typename V::S* o, std::size_t r, std::size_t w, const M&)
            __attribute__((always_inline)) {
                for (std::size_t g = 0; g < G; ++g) {  // (logsumexp_cols, lane by lane)
                    const std::size_t at = r + g * V::N;
                    if (at >= r + w) return;
                    const reg m = t.max(g);
                    const auto bad = V::not_finite(m);
                    const reg ref = V::select(bad, V::zero(), m);
                    reg e[kN];
                    t.template exps<false>(g, ref, ref, e, z);
                    const reg sr = RegisterTile<V, kN>::log_sum(e);
                    const reg special = V::select(V::isnan(sr), sr, m);
                    const reg v = V::select(bad, special, z.top(m, vlog<V>(sr)));
                    const std::size_t left = r + w - at;
                    if (left >= V::N)
                        V::store(o + at, v);
                    else
                        V::store_partial(o + at, left, v);
                }
            },
        mask);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
