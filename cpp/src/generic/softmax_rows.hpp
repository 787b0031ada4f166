// The softmax family, written once over a vector wrapper V and compiled per
// target (cpp/src/arch/instantiate.cpp).
//
// Rows (reduction axis contiguous), in XNNPACK's terms:
//   softmax     : rmax -> raddstoreexpminusmax -> vscale        (3 passes)
//                 - rows of one vector: four rows at a time (short rows)
//                 - arrays in cache: the three passes software-pipelined
//                   over consecutive rows
//                 - arrays from memory: likewise, the exponentials in a
//                   scratch row, the outputs written with streaming stores
//                 - rows longer than L1: block by block, one read of x
//   log_softmax : online (max, sum) read pass -> (x - max) - log(sum)
//   logsumexp   : online (max, sum) read pass, one read of the row
// Many short rows (up to k*TileLimit) go by tiles: a tile of V::N rows is
// transposed so that the column kernels below do them, one row per lane.
// Columns (reduction axis strided, another axis contiguous): the same passes,
// vectorized across the contiguous axis, one lane per independent reduction.
//
// Softmax outputs are exp of the exact x - max (vexp_sub), summed in double
// (ExpSum) and scaled by 1/sum as two floats (Factor): about 2 ulp from the
// exact value. Sums that only feed a log are accumulated in vector registers
// over blocks of at most kBlock vectors and then folded into a wide
// accumulator (double for float, compensated double for double), so the
// error does not grow with the row length. Rows whose maximum is not finite,
// or whose sum is NaN, take the scalar path of special_rows.hpp (SciPy's
// answers).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <type_traits>

#include "fastsoftmax/kernels.hpp"
#include "generic/blocks.hpp"
#include "generic/masked_rows.hpp"
#include "generic/register_tiles.hpp"
#include "generic/row_mask.hpp"
#include "generic/segments.hpp"
#include "generic/short_rows.hpp"
#include "generic/softmax_cols.hpp"
#include "generic/special_rows.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/tiles.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// The longest rows each op sends by tiles (tiles.hpp), measured with avx512
// on 4096 rows: e.g. float32 softmax of 10 classes 51 -> 39 us by tiles, but
// of 64 classes 144 by rows and 158 by tiles; float64 logsumexp of 10
// classes 183 -> 58 us, of 128 classes 506 -> 466 us (bench/RESULTS.md).
template <class V>
constexpr std::size_t kSoftmaxTileLimit =
    std::min<std::size_t>(sizeof(typename V::T) == 4 ? 48 : 64, SoftmaxTileRowsMax<V>::value);
template <class V>
constexpr std::size_t kLogSoftmaxTileLimit = 64;
template <class V>
constexpr std::size_t kLogSumExpTileLimit = 128;

// Rows that fit in L1, in arrays that fit in cache, software-pipelined: one loop over the columns
// does the exp-store-sum pass of row r (bound by the FMA units) together with the max pass of row
// r+1 and the scale pass of row r-1 (bound by loads and stores), so the two kinds of work overlap
// instead of taking turns. The exponentials go to y itself, or for half precision (see
// kExpInOutput) to two float scratch rows taking turns, from which the scale pass rounds each
// output once (bfloat16 of 4096 x 128: 342 -> 270 us against three passes a row).
template <class V, class Z, class M = NoRowMask>
void softmax_rows_pipelined(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                            std::ptrdiff_t ys, std::size_t rows, std::size_t n, const Z& z,
                            const M& mask = {}) {
    using T = typename V::T;
    using C = typename V::Compute;  // (the exponentials' rows: of T)
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    const std::size_t tail = n % N;
    const std::size_t full = n - tail;
    T* const scratch = kExpInOutput<V> ? nullptr : thread_scratch<T>(2 * n);
    T m = masked_row_max<V>(x, n, mask.row(0));  // of the current row
    typename V::S* prev = nullptr;               // the previous row, still to be scaled by inv_prev
    const T* prev_e = nullptr;  // its exponentials (prev itself, but for half precision)
    Factor<V> inv_prev{V::zero(), V::zero()};
    for (std::size_t r = 0; r < rows; ++r) {
        const typename V::S* xr = x + static_cast<std::ptrdiff_t>(r) * xs;
        typename V::S* yr = y + static_cast<std::ptrdiff_t>(r) * ys;
        T* er;
        if constexpr (kExpInOutput<V>)
            er = yr;
        else
            er = scratch + (r & 1) * n;
        const std::size_t rn = (r + 1 < rows) ? r + 1 : r;
        const typename V::S* xn = x + static_cast<std::ptrdiff_t>(rn) * xs;  // the next row
        const auto lr = mask.row(r), ln = mask.row(rn);  // (the last row re-reads itself)
        const bool ok = std::isfinite(m);
        const reg vm = V::set1(ok ? m : T(0));
        const reg vlo = V::set1(z.floor(ok ? m : T(0)));
        reg mx0 = V::set1(neg_inf<T>()), mx1 = mx0;
        ExpSum<V> s0;
        std::size_t i = 0;
        for (; i + 2 * N <= full; i += 2 * N) {
            mx0 = V::max(mx0, masked_load<V>(xn, i, ln, N));
            mx1 = V::max(mx1, masked_load<V>(xn, i + N, ln, N));
            if (ok) {
                const reg e0 = z.exp_sub(masked_load<V>(xr, i, lr, N), vm, vlo);
                const reg e1 = z.exp_sub(masked_load<V>(xr, i + N, lr, N), vm, vlo);
                C::store(er + i, e0);
                C::store(er + i + N, e1);
                s0.add2(e0, e1);
            }
            if (prev) {
                V::store(prev + i, inv_prev.apply(C::load(prev_e + i)));
                V::store(prev + i + N, inv_prev.apply(C::load(prev_e + i + N)));
            }
        }
        for (; i < n; i += N) {
            const std::size_t w = (n - i < N) ? n - i : N;
            mx0 = V::max(mx0, masked_load<V>(xn, i, ln, w));
            if (ok) {
                const reg e = z.exp_sub(masked_load<V>(xr, i, lr, w), vm, vlo);
                C::store_partial(er + i, w, e);
                s0.add(e);
            }
            if (prev)
                V::store_partial(prev + i, w, inv_prev.apply(C::load_partial(prev_e + i, w, 0)));
        }
        const double sum = s0.total();
        if (!ok || sum != sum) {  // max not finite, or a NaN in the row
            softmax_special(yr, 1, n, lr.m);
            prev = nullptr;
        } else {
            prev = yr;
            prev_e = er;
            inv_prev = Factor<V>::reciprocal(sum);
        }
        m = V::hmax(V::max(mx0, mx1));
    }
    if (prev) map_row<V>(prev_e, prev, n, [inv_prev](reg v) { return inv_prev.apply(v); }, nullptr);
}

// Rows of arrays that stream from memory, when a row fits in L1/L2: one loop
// over the columns does three rows' work, the maximum of row r+1 (read from
// memory), exp(x - max) of row r into a scratch row that stays in cache, and
// row r-1 = its scratch row * (1 / sum), written with non-temporal stores
// (StreamedRows). Reading, computing and writing overlap, and y's lines are
// never read.
template <class V, class Z, class M = NoRowMask>
void softmax_rows_streamed(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                           std::ptrdiff_t ys, std::size_t rows, std::size_t n, const Z& z,
                           const M& mask = {}) {
    using T = typename V::T;
    using S = typename V::S;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    const std::size_t full = n - n % N;
    T* const scratch = thread_scratch<T>(2 * n);
    StreamedRows<V> out;
    T m = masked_row_max<V>(x, n, mask.row(0));  // of the current row
    // the previous row, still to be written (if any)
    RowStream<V, ScaledBy<V>> prev(y, n, {scratch, Factor<V>::of(1.0)});
    bool have_prev = false;
    // (the row kStreamPrefetchBytes past the next one, asked for at each row's start)
    const std::size_t ahead = rows_ahead<S>(n, kStreamPrefetchBytes);
    for (std::size_t r = 0; r < rows; ++r) {
        const S* xr = x + static_cast<std::ptrdiff_t>(r) * xs;
        S* yr = y + static_cast<std::ptrdiff_t>(r) * ys;
        const std::size_t rn = (r + 1 < rows) ? r + 1 : r;
        const S* xn = x + static_cast<std::ptrdiff_t>(rn) * xs;  // the next row
        prefetch_ahead(xn, xs, rn, rows, n, ahead);
        const auto lr = mask.row(r), ln = mask.row(rn);  // (the last re-reads itself)
        T* const e = scratch + (r & 1) * n;
        const bool ok = std::isfinite(m);
        const reg vm = V::set1(ok ? m : T(0));
        const reg vlo = V::set1(z.floor(ok ? m : T(0)));
        reg mx0 = V::set1(neg_inf<T>()), mx1 = mx0;
        ExpSum<V> s0;
        if (have_prev) prev.begin(out);
        std::size_t i = 0;
        for (; i + 2 * N <= full; i += 2 * N) {
            mx0 = V::max(mx0, masked_load<V>(xn, i, ln, N));
            mx1 = V::max(mx1, masked_load<V>(xn, i + N, ln, N));
            if (ok) {
                const reg e0 = z.exp_sub(masked_load<V>(xr, i, lr, N), vm, vlo);
                const reg e1 = z.exp_sub(masked_load<V>(xr, i + N, lr, N), vm, vlo);
                V::store(e + i, e0);
                V::store(e + i + N, e1);
                s0.add2(e0, e1);
            }
            if (have_prev) prev.to(i + 2 * N);
        }
        for (; i < n; i += N) {
            const std::size_t w = (n - i < N) ? n - i : N;
            mx0 = V::max(mx0, masked_load<V>(xn, i, ln, w));
            if (ok) {
                const reg e0 = z.exp_sub(masked_load<V>(xr, i, lr, w), vm, vlo);
                V::store_partial(e + i, w, e0);
                s0.add(e0);
            }
        }
        if (have_prev) prev.end(out);
        const double sum = s0.total();
        have_prev = ok && sum == sum;
        if (have_prev)
            prev = RowStream<V, ScaledBy<V>>(yr, n, {e, Factor<V>::reciprocal(sum)});
        else  // max not finite, or a NaN in the row
            softmax_special(yr, 1, n, lr.m);
        m = V::hmax(V::max(mx0, mx1));
    }
    if (have_prev) {
        prev.begin(out);
        prev.end(out);
    }
    out.finish();
}

// Float32 rows of arrays from memory longer than kLongRowBytes, up to this
// many bytes: softmax_long_rows_streamed (its two scratch rows stay in L2 up
// to rows of 512 KiB, in L3 beyond). Longer rows, and float64's (1.08-1.19x
// slower that way at 32 MB), keep softmax_long_row's exponentials in y.
constexpr std::size_t kStreamedLongRowBytes = std::size_t(1) << 20;

// RowStream's values of a long row: its exponentials e[k, k + w) times the
// factor of the block of kBlock vectors each lies in, f[block] = exp((ref -
// max) * s) / sum (s: the temperature's scale; a vector that straddles two
// blocks, as y's alignment may make it, takes each lane's own; a block of
// -inf has exponentials and factor 0).
template <class V>
struct ScaledByBlocks {
    using T = typename V::T;
    using reg = typename V::reg;
    static constexpr std::size_t B = kBlock * V::N;
    const T* e;
    const double* f;
    Factor<V> now = Factor<V>::of(0.0);  // the factor of the elements [from, to)
    std::size_t from = 1, to = 0;
    __attribute__((always_inline)) reg operator()(std::size_t k, std::size_t w) {
        const reg ek = w == V::N ? V::load(e + k) : V::load_partial(e + k, w, 0);
        if (__builtin_expect(k >= from && k + w <= to, 1)) return now.apply(ek);
        return next(k, w, ek);
    }
    // (once a block: its factor, and a vector across two blocks lane by lane)
    __attribute__((noinline)) reg next(std::size_t k, std::size_t w, reg ek) {
        constexpr std::size_t N = V::N;
        const std::size_t b = k / B, last = (k + w - 1) / B;
        now = Factor<V>::of(f[b]);
        from = b * B;
        to = from + B;
        if (last == b) return now.apply(ek);
        alignas(64) T lanes[N], later[N];
        V::store(lanes, now.apply(ek));
        V::store(later, Factor<V>::of(f[last]).apply(ek));
        for (std::size_t l = last * B - k; l < N; ++l) lanes[l] = later[l];
        return V::load(lanes);
    }
};

// Long rows of arrays from memory (softmax_long_row's arithmetic, the same
// bits): row r is read once, block by block (each block's maximum, then its
// exponentials against the running maximum, into a scratch row that stays in
// L2), and inside that loop, a pair of vectors at a time, row r-1 is scaled
// from its scratch row and written with non-temporal stores (StreamedRows).
// The arithmetic and the stores overlap, and y's lines are never read.
// Written after each row, or a block at a time, the stores stalled the
// arithmetic (bench/floor_memory.cpp's kernels, float32 out=: by blocks
// 1.17-1.20x the time of a pair at a time; after each row 1.3-1.5x). The
// rows must come in one call (the driver gives softmax from memory one batch
// per thread): the first row of a call has no row before it.
template <class V, class Z>
void softmax_long_rows_streamed(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                                std::ptrdiff_t ys, std::size_t rows, std::size_t n, const Z& z) {
    using T = typename V::T;
    using S = typename V::S;
    constexpr std::size_t N = V::N, B = kBlock * V::N;
    const std::size_t nb = (n + B - 1) / B;
    // the two scratch rows on 64-byte lines (a vector across two lines is two
    // accesses: so are the exponentials' stores; the reads follow y's alignment)
    constexpr std::size_t kLine = 64 / sizeof(T);
    const std::size_t stride = (n + kLine - 1) / kLine * kLine;
    T* scratch = thread_scratch<T>(2 * stride + kLine);
    scratch += (kLine - reinterpret_cast<std::uintptr_t>(scratch) / sizeof(T) % kLine) % kLine;
    Scratch<double> factors(2 * nb);  // per block of the two rows: its ref, then its factor
    StreamedRows<V> out;
    RowStream<V, ScaledByBlocks<V>> prev(y, n, {scratch, factors.data});
    bool have_prev = false;
    for (std::size_t r = 0; r < rows; ++r) {
        const S* xr = x + static_cast<std::ptrdiff_t>(r) * xs;
        S* yr = y + static_cast<std::ptrdiff_t>(r) * ys;
        T* const e = scratch + (r & 1) * stride;
        double* const f = factors.data + (r & 1) * nb;
        if (have_prev) prev.begin(out);
        const MaxSum ms = online_walk<V>(
            AheadRowView<V>{{xr}}, n,
            [&](std::size_t b, std::size_t i0, std::size_t len, T ref) {
                f[b] = static_cast<double>(ref);
                ExpSum<V> s0;  // (as row_store_exp_sum)
                const auto vm = V::set1(ref);
                const auto vlo = V::set1(ref == neg_inf<T>() ? ref : z.floor(ref));
                const S* xi = xr + i0;
                T* ei = e + i0;
                // (a local copy, kept in registers through the loop's stores)
                RowStream<V, ScaledByBlocks<V>> w = prev;
                std::size_t i = 0;
                for (; i + 2 * N <= len; i += 2 * N) {
                    if (ref == neg_inf<T>()) {
                        V::store(ei + i, V::zero());
                        V::store(ei + i + N, V::zero());
                    } else {
                        const auto e0 = z.exp_sub(V::load(xi + i), vm, vlo);
                        const auto e1 = z.exp_sub(V::load(xi + i + N), vm, vlo);
                        V::store(ei + i, e0);
                        V::store(ei + i + N, e1);
                        s0.add2(e0, e1);
                    }
                    if (have_prev) w.to(i0 + i + 2 * N);
                }
                for (; i < len; i += N) {
                    const std::size_t k = (len - i < N) ? len - i : N;
                    if (ref == neg_inf<T>()) {
                        V::store_partial(ei + i, k, V::zero());
                    } else {
                        const auto e0 =
                            z.exp_sub(V::load_partial(xi + i, k, neg_inf<T>()), vm, vlo);
                        V::store_partial(ei + i, k, e0);
                        s0.add(e0);
                    }
                }
                prev = w;
                return ref == neg_inf<T>() ? 0.0 : s0.total();
            },
            SameMax{}, z.scale());
        if (have_prev) prev.end(out);  // (the rest of row r-1, if row r stopped early)
        have_prev = !ms.special && ms.max > static_cast<double>(neg_inf<T>());
        if (have_prev) {
            for (std::size_t b = 0; b < nb; ++b)
                f[b] = f[b] == static_cast<double>(neg_inf<T>())
                           ? 0.0
                           : std::exp(scaled_difference(f[b], ms.max, z.scale())) / ms.sum;
            prev = RowStream<V, ScaledByBlocks<V>>(yr, n, {e, f});
        } else {  // max not finite, a NaN, or only -inf
            softmax_special(yr, 1, n);
        }
    }
    if (have_prev) {
        prev.begin(out);
        prev.end(out);
    }
    out.finish();
}

// Three plain passes per row: the maximum; exp(x - max) and its sum, stored
// in y, or for half precision (see kExpInOutput) in a float scratch row that
// stays in L1/L2; then y = those exponentials * (1 / sum). With `stream`,
// y is written with non-temporal stores.
template <class V, class Z>
void softmax_rows_three_passes(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                               std::ptrdiff_t ys, std::size_t rows, std::size_t n, bool stream,
                               const Z& z) {
    using T = typename V::T;
    StreamedRows<V> out;
    T* scratch = nullptr;
    if constexpr (!kExpInOutput<V>) scratch = thread_scratch<T>(n);
    for (std::size_t r = 0; r < rows; ++r, x += xs, y += ys) {
        T* e;  // (S is T where the exponentials go to y)
        if constexpr (kExpInOutput<V>)
            e = y;
        else
            e = scratch;
        const T m = row_max<V>(x, n);
        if (!std::isfinite(m)) {
            softmax_special(y, 1, n);
            continue;
        }
        const double s = row_store_exp_sum<V>(x, e, n, m, z);
        if (s != s) {  // a NaN in the row
            softmax_special(y, 1, n);
            continue;
        }
        const auto inv = Factor<V>::reciprocal(s);
        map_row<V>(
            e, y, n, [inv](typename V::reg v) { return inv.apply(v); }, stream ? &out : nullptr);
    }
    if (stream) out.finish();
}

template <class V>
void softmax_rows(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y, std::ptrdiff_t ys,
                  std::size_t rows, std::size_t n, const SoftmaxParams& params) {
    using T = typename V::T;
    if (n == 0) return;
    if (n == 1)
        return one_element_rows<V>(x, xs, y, ys, rows, [](typename V::reg v) {
            return V::select(V::not_finite(v), V::set1(std::numeric_limits<T>::quiet_NaN()),
                             V::set1(T(1)));
        });
    with_temperature<V>(params, [&](const auto& z) {
        const bool end_to_end = xs == static_cast<std::ptrdiff_t>(n) && ys == xs;
        if (try_register_tiles<V>(n, 2, end_to_end,
                                  [&](auto k) { softmax_register_tiles<V, k>(x, y, rows, z); }))
            return;
        if (tiles_pay<V>(n, kSoftmaxTileLimit<V>))
            return by_tiles<V>(x, xs, y, ys, rows, n, n,
                               [n, &params](typename V::T* t, std::size_t ts, std::size_t w) {
                                   const auto its = static_cast<std::ptrdiff_t>(ts);
                                   softmax_cols<typename V::Compute>(t, its, t, its, n, w, params);
                               });
        if (n <= V::N) return short_rows<ShortSoftmax<V>>(x, xs, y, ys, rows, n, z);
        if (params.from_memory && n * sizeof(T) <= kLongRowBytes)
            return softmax_rows_streamed<V>(x, xs, y, ys, rows, n, z);
        if constexpr (!kExpInOutput<V>) {        // half precision: each output rounded once
            if (n * sizeof(T) <= kLongRowBytes)  // (arrays in cache; from memory: above)
                return softmax_rows_pipelined<V>(x, xs, y, ys, rows, n, z);
            if (n * sizeof(T) <= kHalfScratchBytes)  // one exp per element, as the float rows
                return softmax_rows_three_passes<V>(x, xs, y, ys, rows, n, params.from_memory, z);
            // longer rows: a read pass for (max, sum), then exp(x - max) / sum again
            StreamedRows<V> out;
            const typename V::S* xr = x;
            typename V::S* yr = y;
            for (std::size_t r = 0; r < rows; ++r, xr += xs, yr += ys) {
                const MaxSum ms = row_online_max_sum<V>(xr, n, z);
                if (ms.special)
                    softmax_special(yr, 1, n);
                else
                    softmax_row_from_stats<V>(xr, yr, n, static_cast<T>(ms.max), ms.sum,
                                              params.from_memory ? &out : nullptr, z);
            }
            if (params.from_memory) out.finish();
            return;
        }
        if (n * sizeof(T) > kLongRowBytes) {
            if constexpr (sizeof(T) == 4)
                if (params.from_memory && n * sizeof(T) <= kStreamedLongRowBytes)
                    return softmax_long_rows_streamed<V>(x, xs, y, ys, rows, n, z);
            for (std::size_t r = 0; r < rows; ++r)
                softmax_long_row<V>(x + static_cast<std::ptrdiff_t>(r) * xs,
                                    y + static_cast<std::ptrdiff_t>(r) * ys, n, params, z);
            return;
        }
        softmax_rows_pipelined<V>(x, xs, y, ys, rows, n, z);
    });
}

// The register tiles with a where= mask (TileMask) for the rows of n that the
// plain kernels take by them (fill: the output at an excluded element):
// f(Const<n>{}, mask) where the rows lie end to end (end_to_end: x's and the
// output's) and their mask too (mrs = n) or one row for all (mrs = 0, laid
// out V::N times on the stack for the tile); false for other rows, and where
// the tile's loads take no mask (RegisterTile::kMaskable). rows = 0 asks.
template <class V, class F>
bool try_masked_register_tiles(std::size_t n, bool end_to_end, const unsigned char* m,
                               std::ptrdiff_t mrs, std::size_t rows, typename V::T fill, F f) {
    if (mrs != 0 && mrs != static_cast<std::ptrdiff_t>(n)) return false;
    bool taken = false;
    try_register_tiles<V>(n, 2, end_to_end, [&](auto k) {
        if constexpr (RegisterTile<V, k>::kMaskable) {
            taken = true;
            if (rows == 0) return;
            TileMask<typename V::T> mask{m, mrs == 0, fill};
            unsigned char group[V::N * k];
            if (mask.repeats) {
                for (std::size_t l = 0; l < V::N; ++l) std::memcpy(group + l * k, m, k);
                mask.m = group;
            }
            f(k, mask);
        }
    });
    return taken;
}

// The shortest rows that softmax's pipelined and streamed rows take with a
// mask, past the register tiles and tiles (driver.cpp has the figures:
// shorter rows went faster through the buffers).
constexpr std::size_t kMaskedPipelinedRowMin = 32;

// softmax_rows with a where= mask (row_mask.hpp: one byte per entry,
// contiguous along the row, mask rows mrs apart, 0: one for all) for the
// rows that softmax_rows takes by register tiles (try_masked_register_tiles)
// or pipelines or streams (from kMaskedPipelinedRowMin, more than a vector,
// not by tiles, at most kLongRowBytes): their passes reading the mask, an excluded
// entry as -inf (0 out). A row with nothing included gives 0; one whose
// included entries are softmax_special's case, NaN at those and 0 at the
// others: the bits of the plain rows with -inf at the excluded entries and
// the driver's fills (the rows it copies). False, having written nothing,
// for other row lengths and layouts (rows = 0 asks). Float32 and float64.
template <class V>
bool masked_softmax_rows(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                         std::ptrdiff_t ys, const unsigned char* m, std::ptrdiff_t mrs,
                         std::size_t rows, std::size_t n, const SoftmaxParams& params) {
    using T = typename V::T;
    static_assert(kExpInOutput<V>, "float32 and float64 rows only");
    const auto sn = static_cast<std::ptrdiff_t>(n);
    if (try_masked_register_tiles<V>(n, xs == sn && ys == sn, m, mrs, rows, T(0),
                                     [&](auto k, const TileMask<T>& tm) {
                                         with_temperature<V>(params, [&](const auto& z) {
                                             softmax_register_tiles<V, k>(x, y, rows, z, tm);
                                         });
                                     }))
        return true;
    if (n < kMaskedPipelinedRowMin || n <= V::N || n * sizeof(T) > kLongRowBytes ||
        tiles_pay<V>(n, kSoftmaxTileLimit<V>) || (kHasRegisterTiles<V> && n <= kRegisterTileMax))
        return false;
    if (rows == 0) return true;  // (the kernels read a row before their loop)
    const RowMask<V> mask{m, mrs};
    with_temperature<V>(params, [&](const auto& z) {
        if (params.from_memory)
            softmax_rows_streamed<V>(x, xs, y, ys, rows, n, z, mask);
        else
            softmax_rows_pipelined<V>(x, xs, y, ys, rows, n, z, mask);
    });
    return true;
}

// Rows of at most this many bytes (more than one vector, at most one block):
// log_softmax and logsumexp take their logs kLogGroup at a time in one vector
// (logs_of) instead of a libm call each, which cost as much as the rest of a
// 128-element row (log_softmax 4096x128 float32: 320 -> 240 us). The group
// stays in L1 for log_softmax's last pass.
constexpr std::size_t kGroupedLogRowBytes = 2048;
constexpr std::size_t kLogGroup = 8;

// The (max, sum) of kLogGroup rows of one block each, and the logs of their
// sums in one vector (a sum of 1 for the special rows). With a where= mask
// (M: a RowMask of the group's rows; float32 and float64), of the included
// entries.
template <class V, class Z, class M = NoRowMask>
void row_group_stats(const typename V::S* x, std::ptrdiff_t xs, std::size_t g, std::size_t n,
                     MaxSum* ms, typename V::T* logs, const Z& z, const M& mask = {}) {
    using T = typename V::T;
    static_assert(kExpInOutput<V> || std::is_same_v<M, NoRowMask>, "masks: float32 and float64");
    double sums[kLogGroup];
    T m[kLogGroup];
    // the maxima first: each row's exponentials wait for its maximum's
    // reduction, which is then ready, not on the row's critical path
    for (std::size_t k = 0; k < g; ++k)
        m[k] = masked_row_max<V>(x + static_cast<std::ptrdiff_t>(k) * xs, n, mask.row(k));
    // then the exponentials' per-lane sums of every row, and only then their
    // reductions, so that no row's reduction holds up the next row's work
    // (half precision: each row's sum straight into the wide type, see
    // stretch_sum_exp)
    typename V::reg lanes[kLogGroup];
    if constexpr (kExpInOutput<V>) {
        for (std::size_t k = 0; k < g; ++k)  // one block: no running maximum needed
            lanes[k] = std::isfinite(m[k])
                           ? masked_exp_lanes<V>(x + static_cast<std::ptrdiff_t>(k) * xs, n, m[k],
                                                 z, mask.row(k))
                           : V::zero();
    }
    for (std::size_t k = 0; k < g; ++k) {
        double sum;
        if constexpr (kExpInOutput<V>)
            sum = stretch_total<V>(lanes[k]);
        else
            sum = std::isfinite(m[k])
                      ? stretch_sum_exp<V>(x + static_cast<std::ptrdiff_t>(k) * xs, n, m[k], z)
                      : 0.0;
        ms[k] = {static_cast<double>(m[k]), sum, !std::isfinite(m[k]) || sum != sum};
        sums[k] = ms[k].special ? 1.0 : sum;
    }
    logs_of<V>(sums, logs, g);
}

template <class V, class Z, class M = NoRowMask>
void logsumexp_row_groups(const typename V::S* x, std::ptrdiff_t xs, typename V::S* out,
                          std::ptrdiff_t os, std::size_t rows, std::size_t n, const Z& z,
                          const M& mask = {}) {
    using T = typename V::T;
    for (std::size_t r = 0; r < rows; r += kLogGroup) {
        const std::size_t g = std::min(kLogGroup, rows - r);
        const typename V::S* xg = x + static_cast<std::ptrdiff_t>(r) * xs;
        MaxSum ms[kLogGroup];
        T logs[kLogGroup];
        row_group_stats<V>(xg, xs, g, n, ms, logs, z, mask.from(r));
        for (std::size_t k = 0; k < g; ++k) {
            typename V::S* o = out + static_cast<std::ptrdiff_t>(r + k) * os;
            *o = to_storage<typename V::S>(
                ms[k].special ? logsumexp_special(xg + static_cast<std::ptrdiff_t>(k) * xs, 1, n,
                                                  mask.row(r + k).m)
                              : static_cast<T>(z.top(ms[k].max, static_cast<double>(logs[k]))));
        }
    }
}

template <class V, class Z, class M = NoRowMask>
void log_softmax_row_groups(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                            std::ptrdiff_t ys, std::size_t rows, std::size_t n,
                            StreamedRows<V>* stream, const Z& z, const M& mask = {}) {
    using T = typename V::T;
    for (std::size_t r = 0; r < rows; r += kLogGroup) {
        const std::size_t g = std::min(kLogGroup, rows - r);
        const typename V::S* xg = x + static_cast<std::ptrdiff_t>(r) * xs;
        typename V::S* yg = y + static_cast<std::ptrdiff_t>(r) * ys;
        MaxSum ms[kLogGroup];
        T logs[kLogGroup];
        row_group_stats<V>(xg, xs, g, n, ms, logs, z, mask.from(r));
        for (std::size_t k = 0; k < g; ++k) {
            const typename V::S* xk = xg + static_cast<std::ptrdiff_t>(k) * xs;
            typename V::S* yk = yg + static_cast<std::ptrdiff_t>(k) * ys;
            const auto lanes = mask.row(r + k);
            if (ms[k].special) {
                log_softmax_special(xk, 1, yk, 1, n, lanes.m);
                continue;
            }
            masked_shift_row<V>(xk, yk, n, static_cast<T>(ms[k].max), logs[k], stream, z, lanes);
        }
    }
}

// log_softmax or logsumexp (MaskedOp) with a where= mask (row_mask.hpp, as
// masked_softmax_rows takes it) for the rows that their plain kernels take
// by register tiles (as masked_softmax_rows), by groups or one by one (more
// than a vector, not by tiles): the same
// passes reading the mask (masked_rows.hpp), an excluded entry as -inf
// (log_softmax: -inf out); a row whose included entries are the special
// case, or with none, as special_rows.hpp gives it the included entries.
// The bits of the plain rows with -inf at the excluded entries and the
// driver's fills. False, having written nothing, for other row lengths
// (rows = 0 asks). Float32 and float64.
template <class V>
bool masked_log_rows(MaskedOp op, const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                     std::ptrdiff_t ys, const unsigned char* m, std::ptrdiff_t mrs,
                     std::size_t rows, std::size_t n, const SoftmaxParams& params) {
    using T = typename V::T;
    static_assert(kExpInOutput<V>, "float32 and float64 rows only");
    const bool log_softmax = op == MaskedOp::log_softmax;
    const auto sn = static_cast<std::ptrdiff_t>(n);
    if (try_masked_register_tiles<V>(
            n, xs == sn && ys == (log_softmax ? sn : 1), m, mrs, rows,
            log_softmax ? neg_inf<T>() : T(0), [&](auto k, const TileMask<T>& tm) {
                with_temperature<V>(params, [&](const auto& z) {
                    if (log_softmax)
                        log_softmax_register_tiles<V, k>(x, y, rows, z, tm);
                    else
                        logsumexp_register_tiles<V, k>(x, y, rows, z, tm);
                });
            }))
        return true;
    if (n <= V::N || (kHasRegisterTiles<V> && n <= kRegisterTileMax) ||
        tiles_pay<V>(n, log_softmax ? kLogSoftmaxTileLimit<V> : kLogSumExpTileLimit<V>))
        return false;
    if (rows == 0) return true;
    const RowMask<V> mask{m, mrs};
    StreamedRows<V> out(false);
    StreamedRows<V>* const stream = log_softmax && params.from_memory ? &out : nullptr;
    with_temperature<V>(params, [&](const auto& z) {
        if (n * sizeof(T) <= kGroupedLogRowBytes && n <= kBlock * V::N) {
            if (log_softmax)
                return log_softmax_row_groups<V>(x, xs, y, ys, rows, n, stream, z, mask);
            return logsumexp_row_groups<V>(x, xs, y, ys, rows, n, z, mask);
        }
        for (std::size_t r = 0; r < rows; ++r) {  // (log_softmax_rows' and logsumexp_rows' own)
            const typename V::S* xr = x + static_cast<std::ptrdiff_t>(r) * xs;
            typename V::S* yr = y + static_cast<std::ptrdiff_t>(r) * ys;
            const auto lanes = mask.row(r);
            const MaxSum ms = masked_max_sum<V>(xr, lanes.m, n, z);
            if (!log_softmax) {
                *yr = ms.special ? logsumexp_special(xr, 1, n, lanes.m)
                                 : static_cast<T>(z.top(ms.max, std::log(ms.sum)));
            } else if (ms.special) {
                log_softmax_special(xr, 1, yr, 1, n, lanes.m);
            } else {
                masked_shift_row<V>(xr, yr, n, static_cast<T>(ms.max),
                                    static_cast<T>(std::log(ms.sum)), stream, z, lanes);
            }
        }
    });
    if (stream) out.finish();
    return true;
}

template <class V>
void log_softmax_rows(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                      std::ptrdiff_t ys, std::size_t rows, std::size_t n,
                      const SoftmaxParams& params) {
    using T = typename V::T;
    if (n == 0) return;
    if (n == 1)
        return one_element_rows<V>(x, xs, y, ys, rows, [](typename V::reg v) {
            return V::select(V::not_finite(v), V::set1(std::numeric_limits<T>::quiet_NaN()),
                             V::zero());
        });
    with_temperature<V>(params, [&](const auto& z) {
        if constexpr (kExpInOutput<V>) {  // (half precision: the tiles' narrow path)
            const bool end_to_end = xs == static_cast<std::ptrdiff_t>(n) && ys == xs;
            if (try_register_tiles<V>(n, 2, end_to_end, [&](auto k) {
                    log_softmax_register_tiles<V, k>(x, y, rows, z);
                }))
                return;
        }
        if (tiles_pay<V>(n, kLogSoftmaxTileLimit<V>))
            return by_tiles<V>(x, xs, y, ys, rows, n, n,
                               [n, &params](typename V::T* t, std::size_t ts, std::size_t w) {
                                   SoftmaxParams tile_params = params;
                                   tile_params.narrow_output = !kExpInOutput<V>;
                                   const auto its = static_cast<std::ptrdiff_t>(ts);
                                   log_softmax_cols<typename V::Compute>(t, its, t, its, n, w,
                                                                         tile_params);
                               });
        if (n <= V::N) return short_rows<ShortLogSoftmax<V>>(x, xs, y, ys, rows, n, z);
        StreamedRows<V> out(false);
        StreamedRows<V>* const stream = params.from_memory ? &out : nullptr;
        if (n * sizeof(T) <= kGroupedLogRowBytes && n <= kBlock * V::N) {
            log_softmax_row_groups<V>(x, xs, y, ys, rows, n, stream, z);
            if (stream) out.finish();
            return;
        }
        const typename V::S* xr = x;
        typename V::S* yr = y;
        for (std::size_t r = 0; r < rows; ++r, xr += xs, yr += ys) {
            const MaxSum ms = params.from_memory ? row_online_max_sum<V, AheadRowView>(xr, n, z)
                                                 : row_online_max_sum<V>(xr, n, z);
            if (ms.special) {
                log_softmax_special(xr, 1, yr, 1, n);
                continue;
            }
            shift_row<V>(xr, yr, n, static_cast<T>(ms.max), static_cast<T>(std::log(ms.sum)),
                         stream, z);
        }
        if (stream) out.finish();
    });
}

template <class V>
void logsumexp_rows(const typename V::S* x, std::ptrdiff_t xs, typename V::S* out,
                    std::ptrdiff_t os, std::size_t rows, std::size_t n,
                    const SoftmaxParams& params) {
    using T = typename V::T;
    with_temperature<V>(params, [&](const auto& z) {
        if (n == 1)  // x * s + 0: -0 becomes +0, as max + log(1) does
            return one_element_rows<V>(x, xs, out, os, rows, [&z](typename V::reg v) {
                return V::add(z.times(v), V::zero());
            });
        if (try_register_tiles<V>(n, 2, xs == static_cast<std::ptrdiff_t>(n) && os == 1,
                                  [&](auto k) { logsumexp_register_tiles<V, k>(x, out, rows, z); }))
            return;
        if (tiles_pay<V>(n, kLogSumExpTileLimit<V>))  // each lane's result in the tile's first row
            return by_tiles<V>(x, xs, out, os, rows, n, 1,
                               [n, &params](T* t, std::size_t ts, std::size_t w) {
                                   logsumexp_cols<typename V::Compute>(
                                       t, static_cast<std::ptrdiff_t>(ts), t, n, w, params);
                               });
        if (n >= 1 && n <= V::N) return short_rows<ShortLogSumExp<V>>(x, xs, out, os, rows, n, z);
        if (n * sizeof(T) <= kGroupedLogRowBytes && n <= kBlock * V::N)
            return logsumexp_row_groups<V>(x, xs, out, os, rows, n, z);
        const typename V::S* xr = x;
        typename V::S* o = out;
        for (std::size_t r = 0; r < rows; ++r, xr += xs, o += os) {
            if (n == 0) {
                *o = to_storage<typename V::S>(neg_inf<T>());
                continue;
            }
            const MaxSum ms = row_online_max_sum<V>(xr, n, z);
            *o = to_storage<typename V::S>(ms.special
                                               ? logsumexp_special(xr, 1, n)
                                               : static_cast<T>(z.top(ms.max, std::log(ms.sum))));
        }
    });
}

// The two backward ops, o = out(g, y, s) with s the sum over the reduction of

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
