// The softmax family, written once over a vector wrapper V and compiled per
// target (cpp/src/arch/instantiate.cpp).
//
// Rows (reduction axis contiguous), in XNNPACK's terms:
//   softmax     : rmax -> raddstoreexpminusmax -> vscale        (3 passes)
//                 - rows of one vector: four rows at a time (short rows)
//                 - arrays in cache: the three passes software-pipelined
//                   over consecutive rows
//                 - rows longer than L1: block by block, one read of x
//   log_softmax : online (max, sum) read pass -> (x - max) - log(sum)
//   logsumexp   : online (max, sum) read pass, one read of the row
// Many short rows (up to kTileLimits) go by tiles: a tile of V::N rows is
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
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <type_traits>

#include "fastsoftmax/kernels.hpp"
#include "generic/special_rows.hpp"
#include "generic/vec_math.hpp"

#ifndef FASTSOFTMAX_TARGET
#error "define FASTSOFTMAX_TARGET (the target's namespace) before including generic code"
#endif

// Each target's translation unit gets its own copy in its own namespace, so
// no inline function compiled with one target's flags is shared with another.
namespace fastsoftmax::FASTSOFTMAX_TARGET {

constexpr std::size_t kBlock = 64;  // vectors per block of a row (4 KiB)

template <class T>
constexpr T neg_inf() {
    return -std::numeric_limits<T>::infinity();
}

// A double factor (1/sum, for the final scaling of softmax) applied to T
// vectors. For float it is kept as hi + lo (two floats), and e * f =
// fma(e, hi, e * lo) is rounded once, as a division by the sum would be, but
// without a division per element.
template <class V>
struct Factor {
    typename V::reg hi, lo;
    static Factor of(double f) {
        using T = typename V::T;
        const T hi = static_cast<T>(f);
        return {V::set1(hi), V::set1(static_cast<T>(f - static_cast<double>(hi)))};
    }
    static Factor reciprocal(double s) { return of(1.0 / s); }
    typename V::reg apply(typename V::reg e) const {
        if constexpr (sizeof(typename V::T) == 4) return V::fmadd(e, hi, V::mul(e, lo));
        return V::mul(e, hi);  // double: rounding 1/s costs far less than the tolerance
    }
};

// ---------------------------------------------------------------- rows ----

template <class V>
typename V::T row_max(const typename V::T* x, std::size_t n) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    auto m0 = V::set1(neg_inf<T>()), m1 = m0, m2 = m0, m3 = m0;
    std::size_t i = 0;
    for (; i + 4 * N <= n; i += 4 * N) {
        m0 = V::max(m0, V::load(x + i));
        m1 = V::max(m1, V::load(x + i + N));
        m2 = V::max(m2, V::load(x + i + 2 * N));
        m3 = V::max(m3, V::load(x + i + 3 * N));
    }
    for (; i + N <= n; i += N) m0 = V::max(m0, V::load(x + i));
    if (i < n) m1 = V::max(m1, V::load_partial(x + i, n - i, neg_inf<T>()));
    return V::hmax(V::max(V::max(m0, m1), V::max(m2, m3)));
}

// The sum of the exponentials that softmax divides by, per lane. A float
// accumulator holding the row maximum's exp(0) = 1 would round every small
// term it adds to 2^-24 (a bias of several ulp on the whole row), so in float
// each pair of vectors is added once and goes straight into the double
// accumulator. Double runs are summed in a register for up to kBlock vectors
// and folded into the compensated sum.
template <class V>
struct ExpSum {
    using reg = typename V::reg;
    static constexpr bool kPairs = sizeof(typename V::T) == 4;
    typename V::Wide wide = V::wide_zero();
    reg run = V::zero();
    std::size_t count = 0;  // vectors in run
    void add2(reg e0, reg e1) {
        if constexpr (kPairs) {
            V::wide_add(wide, V::add(e0, e1));
        } else {
            run = V::add(run, V::add(e0, e1));
            if ((count += 2) >= kBlock) flush();
        }
    }
    void add(reg e) {
        run = V::add(run, e);
        if (++count >= (kPairs ? 2 : kBlock)) flush();
    }
    void flush() {
        V::wide_add(wide, run);
        run = V::zero();
        count = 0;
    }
    double total() {
        flush();
        return V::wide_hsum(wide);
    }
};

// Stores exp(x - m) into y (which may alias x) and returns the sum.
template <class V>
double row_store_exp_sum(const typename V::T* x, typename V::T* y, std::size_t n, typename V::T m) {
    constexpr std::size_t N = V::N;
    const auto vm = V::set1(m);
    const auto vlo = V::set1(exp_floor(m));
    ExpSum<V> s0;
    std::size_t i = 0;
    for (; i + 2 * N <= n; i += 2 * N) {
        const auto e0 = vexp_sub<V>(V::load(x + i), vm, vlo);
        const auto e1 = vexp_sub<V>(V::load(x + i + N), vm, vlo);
        V::store(y + i, e0);
        V::store(y + i + N, e1);
        s0.add2(e0, e1);
    }
    for (; i < n; i += N) {
        const std::size_t w = (n - i < N) ? n - i : N;
        const auto e = vexp_sub<V>(V::load_partial(x + i, w, neg_inf<typename V::T>()), vm, vlo);
        V::store_partial(y + i, w, e);
        s0.add(e);
    }
    return s0.total();
}

// A heap buffer. Not std::vector: its out-of-line members would be compiled
// with this target's flags yet shared (one copy per program) with the other
// targets' code, so a baseline CPU could run AVX-512 instructions.
template <class T>
struct Scratch {
    T* data;
    explicit Scratch(std::size_t n)
        : data(n ? static_cast<T*>(std::malloc(n * sizeof(T))) : nullptr) {
        if (n && !data) throw std::bad_alloc();
    }
    ~Scratch() { std::free(data); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

// Arrays of at least kStreamBytes come from and go to memory: log_softmax
// writes them with non-temporal (streaming) stores, which saves reading each
// destination line before writing it, and softmax does not pipeline them.

// y[i] = op(src[i]) for i < n; src may be y. With `stream`, the aligned
// middle of y is written with non-temporal stores (call V::stream_fence()
// before the data is used by another thread).
template <class V, class Op>
void map_row(const typename V::T* src, typename V::T* y, std::size_t n, Op op, bool stream) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    std::size_t i = 0;
    if (stream) {
        constexpr std::size_t A = N * sizeof(T);  // the alignment streaming stores need
        const auto addr = reinterpret_cast<std::uintptr_t>(y);  // aligned to sizeof(T)
        const std::size_t head = std::min(((A - addr % A) % A) / sizeof(T), n);  // < N
        if (head > 0) V::store_partial(y, head, op(V::load_partial(src, head, 0)));
        for (i = head; i + 2 * N <= n; i += 2 * N) {
            V::stream(y + i, op(V::load(src + i)));
            V::stream(y + i + N, op(V::load(src + i + N)));
        }
        for (; i + N <= n; i += N) V::stream(y + i, op(V::load(src + i)));
    } else {
        for (; i + 4 * N <= n; i += 4 * N) {
            V::store(y + i, op(V::load(src + i)));
            V::store(y + i + N, op(V::load(src + i + N)));
            V::store(y + i + 2 * N, op(V::load(src + i + 2 * N)));
            V::store(y + i + 3 * N, op(V::load(src + i + 3 * N)));
        }
        for (; i + N <= n; i += N) V::store(y + i, op(V::load(src + i)));
    }
    if (i < n) V::store_partial(y + i, n - i, op(V::load_partial(src + i, n - i, 0)));
}

// sum(exp(x - m)) over a stretch of a row (at most kBlock*N elements, so
// the float accumulators stay short), per lane, before stretch_total.
template <class V>
typename V::reg stretch_exp_lanes(const typename V::T* x, std::size_t len, typename V::T m) {
    constexpr std::size_t N = V::N;
    const auto vm = V::set1(m);
    auto s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
    std::size_t i = 0;
    for (; i + 4 * N <= len; i += 4 * N) {
        s0 = V::add(s0, vexp<V>(V::sub(V::load(x + i), vm)));
        s1 = V::add(s1, vexp<V>(V::sub(V::load(x + i + N), vm)));
        s2 = V::add(s2, vexp<V>(V::sub(V::load(x + i + 2 * N), vm)));
        s3 = V::add(s3, vexp<V>(V::sub(V::load(x + i + 3 * N), vm)));
    }
    for (; i + N <= len; i += N) s0 = V::add(s0, vexp<V>(V::sub(V::load(x + i), vm)));
    if (i < len) {
        s1 = V::add(s1,
                    vexp<V>(V::sub(V::load_partial(x + i, len - i, neg_inf<typename V::T>()), vm)));
    }
    return V::add(V::add(s0, s1), V::add(s2, s3));
}

// The sum of stretch_exp_lanes' lanes, in the wide type.
template <class V>
double stretch_total(typename V::reg lanes) {
    auto wide = V::wide_zero();
    V::wide_add(wide, lanes);
    return V::wide_hsum(wide);
}

template <class V>
double stretch_sum_exp(const typename V::T* x, std::size_t len, typename V::T m) {
    return stretch_total<V>(stretch_exp_lanes<V>(x, len, m));
}

template <class T>
bool has_nan(const T* x, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (x[i] != x[i]) return true;
    return false;
}

struct SameMax {
    template <class T>
    T operator()(T m) const {
        return m;
    }
};

// One read of the row: per 4 KiB block, the block maximum (from memory), then
// block(b, i, len, ref) (from L1), which returns the block's sum of
// exp(x - ref) against the running maximum ref (-inf for a block of -inf
// entries, whose exponentials are 0). The running sum is rescaled only when
// the maximum grows. special: the maximum is not finite or a NaN was seen.
// map_max: the block's values are f(x) for an increasing f (cross_entropy's
// soft-capping), so their maximum is f(max x).
template <class V, class Block, class MapMax = SameMax>
MaxSum online_max_sum(const typename V::T* x, std::size_t n, Block&& block, MapMax map_max = {}) {
    using T = typename V::T;
    constexpr std::size_t B = kBlock * V::N;
    T m = neg_inf<T>();
    NeumaierSum sum;
    for (std::size_t b = 0, i = 0; i < n; ++b, i += B) {
        const std::size_t len = (n - i < B) ? n - i : B;
        const T bm = map_max(row_max<V>(x + i, len));
        if (!(bm > neg_inf<T>())) {  // block of -inf (or a NaN the max dropped)
            if (bm != bm || has_nan(x + i, len)) return {0, 0, true};
            block(b, i, len, neg_inf<T>());
            continue;
        }
        if (!std::isfinite(bm)) return {0, 0, true};
        if (bm > m) {
            if (sum.value() != 0.0) {
                const double f = std::exp(static_cast<double>(m) - static_cast<double>(bm));
                sum.sum *= f;
                sum.comp *= f;
            }
            m = bm;
        }
        sum.add(block(b, i, len, m));
    }
    const double s = sum.value();
    if (!std::isfinite(m) || s != s) return {0, 0, true};
    return {static_cast<double>(m), s, false};
}

template <class V>
MaxSum row_online_max_sum(const typename V::T* x, std::size_t n) {
    return online_max_sum<V>(
        x, n, [x](std::size_t, std::size_t i, std::size_t len, typename V::T ref) {
            return ref == neg_inf<typename V::T>() ? 0.0 : stretch_sum_exp<V>(x + i, len, ref);
        });
}

// ------------------------------------------------------------ short rows --
//
// Rows of at most one vector (n <= V::N, e.g. 10 classes) are latency-bound
// when done one at a time (max -> exp -> sum -> reciprocal is a chain), so
// kShortGroup rows go through each step together, and their logs are taken
// in one vector.

constexpr std::size_t kShortGroup = 4;

// kExact: the exponentials are softmax outputs (vexp_sub, exact x - max);
// the log ops only need their sum.
template <class V, std::size_t G, bool kExact>
struct ShortGroup {
    typename V::reg x[G];  // the rows, -inf past n
    typename V::reg e[G];  // exp(x - max)
    typename V::T max[G];
    double sum[G];
    bool special[G];  // max not finite, or a NaN: special_rows.hpp

    ShortGroup(const typename V::T* p, std::ptrdiff_t ps, std::size_t n) {
        using T = typename V::T;
        for (std::size_t k = 0; k < G; ++k)
            x[k] = V::load_partial(p + static_cast<std::ptrdiff_t>(k) * ps, n, neg_inf<T>());
        for (std::size_t k = 0; k < G; ++k) max[k] = V::hmax(x[k]);
        for (std::size_t k = 0; k < G; ++k) {
            if constexpr (kExact)
                e[k] = vexp_sub<V>(x[k], V::set1(max[k]), V::set1(exp_floor(max[k])));
            else
                e[k] = vexp<V>(V::sub(x[k], V::set1(max[k])));
        }
        for (std::size_t k = 0; k < G; ++k) {
            auto w = V::wide_zero();
            V::wide_add(w, e[k]);
            sum[k] = V::wide_hsum(w);
            special[k] = !std::isfinite(max[k]) || sum[k] != sum[k];
        }
    }
};

// out[k] = log(s[k]) for k < g, with the vectorized log (no libm call).
template <class V>
void logs_of(const double* s, typename V::T* out, std::size_t g) {
    using T = typename V::T;
    for (std::size_t i = 0; i < g; i += V::N) {
        T buf[V::N];
        for (std::size_t k = 0; k < V::N; ++k)
            buf[k] = (i + k < g) ? static_cast<T>(s[i + k]) : T(1);
        V::store(buf, vlog<V>(V::load(buf)));
        for (std::size_t k = 0; k < V::N && i + k < g; ++k) out[i + k] = buf[k];
    }
}

template <class V>
struct ShortSoftmax {
    template <std::size_t G>
    static void run(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y, std::ptrdiff_t ys,
                    std::size_t n) {
        using T = typename V::T;
        const ShortGroup<V, G, true> g(x, xs, n);
        for (std::size_t k = 0; k < G; ++k) {
            T* yk = y + static_cast<std::ptrdiff_t>(k) * ys;
            if (g.special[k])
                softmax_special(yk, 1, n);
            else
                V::store_partial(yk, n, Factor<V>::reciprocal(g.sum[k]).apply(g.e[k]));
        }
    }
};

template <class V>
struct ShortLogSoftmax {
    template <std::size_t G>
    static void run(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y, std::ptrdiff_t ys,
                    std::size_t n) {
        using T = typename V::T;
        const ShortGroup<V, G, false> g(x, xs, n);
        T logs[G];
        logs_of<V>(g.sum, logs, G);
        for (std::size_t k = 0; k < G; ++k) {
            const std::ptrdiff_t kk = static_cast<std::ptrdiff_t>(k);
            if (g.special[k])
                log_softmax_special(x + kk * xs, 1, y + kk * ys, 1, n);
            else
                V::store_partial(y + kk * ys, n,
                                 V::sub(V::sub(g.x[k], V::set1(g.max[k])), V::set1(logs[k])));
        }
    }
};

template <class V>
struct ShortLogSumExp {
    template <std::size_t G>
    static void run(const typename V::T* x, std::ptrdiff_t xs, typename V::T* out,
                    std::ptrdiff_t os, std::size_t n) {
        using T = typename V::T;
        const ShortGroup<V, G, false> g(x, xs, n);
        T logs[G];
        logs_of<V>(g.sum, logs, G);
        for (std::size_t k = 0; k < G; ++k) {
            const std::ptrdiff_t kk = static_cast<std::ptrdiff_t>(k);
            out[kk * os] = g.special[k] ? logsumexp_special(x + kk * xs, 1, n) : g.max[k] + logs[k];
        }
    }
};

// Runs Op::run<kShortGroup> over whole groups of rows, then Op::run<1> over the rest.
template <class Op, class In, class Out>
void short_rows(const In* x, std::ptrdiff_t xs, Out* y, std::ptrdiff_t ys, std::size_t rows,
                std::size_t n) {
    std::size_t r = 0;
    for (; r + kShortGroup <= rows; r += kShortGroup) {
        Op::template run<kShortGroup>(x, xs, y, ys, n);
        x += static_cast<std::ptrdiff_t>(kShortGroup) * xs;
        y += static_cast<std::ptrdiff_t>(kShortGroup) * ys;
    }
    for (; r < rows; ++r, x += xs, y += ys) Op::template run<1>(x, xs, y, ys, n);
}

// ------------------------------------------------ segments of long rows --
//
// A few rows too long for one thread are cut into segments (driver.cpp):
// first each segment's (max, sum) - softmax also stores exp(x - ref) per
// block, as softmax_long_row does - then, with the row's (max, sum) merged
// from them, each segment's outputs.

// The (max, sum) of a segment; with y and refs, softmax's first pass (refs:
// one per block of kBlock vectors, at least kMinSegmentBlock elements). A
// segment of -inf only gives (-inf, 0), not special: its row may have other,
// finite, segments.
template <class V>
MaxSum segment_max_sum(const typename V::T* x, std::size_t n, typename V::T* y,
                       typename V::T* refs) {
    using T = typename V::T;
    static_assert(kBlock * V::N >= kMinSegmentBlock, "refs are sized for kMinSegmentBlock");
    const MaxSum ms =
        y ? online_max_sum<V>(x, n,
                              [&](std::size_t b, std::size_t i, std::size_t len, T ref) {
                                  refs[b] = ref;
                                  return ref == neg_inf<T>()
                                             ? 0.0
                                             : row_store_exp_sum<V>(x + i, y + i, len, ref);
                              })
          : row_online_max_sum<V>(x, n);
    if (ms.special && row_max<V>(x, n) == neg_inf<T>() && !has_nan(x, n))
        return {static_cast<double>(neg_inf<T>()), 0.0, false};
    return ms;
}

// softmax's second pass over a segment: y = exp(x - ref) * exp(ref - max) / sum.
template <class V>
void softmax_segment_scale(typename V::T* y, std::size_t n, const typename V::T* refs, double max,
                           double sum) {
    using T = typename V::T;
    constexpr std::size_t B = kBlock * V::N;
    for (std::size_t b = 0, i = 0; i < n; ++b, i += B) {
        const std::size_t len = (n - i < B) ? n - i : B;
        if (refs[b] == neg_inf<T>()) {
            fill_strided(y + i, 1, len, T(0));
            continue;
        }
        const auto vf = Factor<V>::of(std::exp(static_cast<double>(refs[b]) - max) / sum);
        map_row<V>(y + i, y + i, len, [vf](typename V::reg v) { return vf.apply(v); }, false);
    }
}

// log_softmax's last pass: y = (x - max) - log_sum, in this order (x - max
// is exact for the entries that matter, and the log is rounded once).
template <class V>
void shift_row(const typename V::T* x, typename V::T* y, std::size_t n, typename V::T max,
               typename V::T log_sum, bool stream) {
    const auto vm = V::set1(max);
    const auto vl = V::set1(log_sum);
    map_row<V>(x, y, n, [vm, vl](typename V::reg v) { return V::sub(V::sub(v, vm), vl); }, stream);
}

// log_softmax over a segment, as log_softmax_rows does it for a whole row.
template <class V>
void log_softmax_segment(const typename V::T* x, typename V::T* y, std::size_t n, double max,
                         double sum, bool stream) {
    using T = typename V::T;
    shift_row<V>(x, y, n, static_cast<T>(max), static_cast<T>(std::log(sum)), stream);
    if (stream) V::stream_fence();
}

// Rows longer than this (about L1) are done block by block, so x is read
// from memory once: per block, its maximum and then exp(x - running max)
// while the block is in L1 (segment_max_sum over the whole row); a second
// pass scales each block by exp(block's reference - row max) / sum.
constexpr std::size_t kLongRowBytes = std::size_t(32) << 10;

template <class V>
void softmax_long_row(const typename V::T* x, typename V::T* y, std::size_t n) {
    using T = typename V::T;
    Scratch<T> refs((n + kBlock * V::N - 1) / (kBlock * V::N));  // one per block
    const MaxSum ms = segment_max_sum<V>(x, n, y, refs.data);
    if (ms.special || !(ms.max > static_cast<double>(neg_inf<T>())))  // (or only -inf)
        return softmax_special(y, 1, n);
    softmax_segment_scale<V>(y, n, refs.data, ms.max, ms.sum);
}

// The column kernels (below), which short rows use by tiles.
template <class V>
void softmax_cols(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y, std::ptrdiff_t ys,
                  std::size_t n, std::size_t inner);
template <class V>
void log_softmax_cols(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y,
                      std::ptrdiff_t ys, std::size_t n, std::size_t inner);
template <class V>
void logsumexp_cols(const typename V::T* x, std::ptrdiff_t xs, typename V::T* out, std::size_t n,
                    std::size_t inner);

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

// The longest rows that go by tiles, per op and element type (each also
// within kTileBytes): up to these the tiles were faster than the row paths,
// measured with avx512 on 4096 rows (e.g. float32 softmax of 10 classes
// 51 -> 39 us, but of 64 classes 144 by rows and 158 by tiles; float64
// logsumexp of 10 classes 183 -> 58 us, of 128 classes 506 -> 466 us;
// cross_entropy with its gradient, float32: 128 classes 78 ns a row by rows
// and 68 by tiles (the column kernel of integer labels, ce_cols_labels), but
// with avx2's 8 lanes 114 and 124; float64: 128 classes 762 by rows and 837
// by tiles; see bench/RESULTS.md).
struct TileLimits {
    std::size_t softmax, log_softmax, logsumexp, cross_entropy;
};
template <class V>
constexpr TileLimits kTileLimits =
    sizeof(typename V::T) == 4 ? TileLimits{48, 64, 128, V::N >= 16 ? 128u : 96u}
                               : TileLimits{64, 64, 128, 96};

// Whether V has transpose(src, ss, dst, ds): dst[j * ds + i] = src[i * ss + j]
// for i, j < V::N (the x86 targets).
template <class V, class = void>
struct HasTranspose : std::false_type {};
template <class V>
struct HasTranspose<V, std::void_t<decltype(&V::transpose)>> : std::true_type {};

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
void tile_in(const typename V::T* x, std::ptrdiff_t xs, typename V::T* tile, std::size_t w,
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
        for (std::size_t k = 0; k < n; ++k) tile[k * N + l] = x[k];
}

// Lanes [0, w) of the tile's first n rows back into rows [0, w) of y:
// y[l * ys + i] = tile[i * V::N + l].
template <class V>
void tile_out(const typename V::T* tile, typename V::T* y, std::ptrdiff_t ys, std::size_t w,
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
        for (std::size_t k = 0; k < n; ++k) y[k] = tile[k * N + l];
}

// cols(tile, w) computes lanes [0, w) of the n x V::N tile in place; the
// tile's first out_n rows (n, or 1 for a reduction) go back to y.
template <class V, class Cols>
void by_tiles(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y, std::ptrdiff_t ys,
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
// instead of taking turns.
template <class V>
void softmax_rows_pipelined(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y,
                            std::ptrdiff_t ys, std::size_t rows, std::size_t n) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    const std::size_t tail = n % N;
    const std::size_t full = n - tail;
    T m = row_max<V>(x, n);  // of the current row
    T* prev = nullptr;       // the previous row, still to be scaled by inv_prev
    Factor<V> inv_prev{V::zero(), V::zero()};
    for (std::size_t r = 0; r < rows; ++r) {
        const T* xr = x + static_cast<std::ptrdiff_t>(r) * xs;
        T* yr = y + static_cast<std::ptrdiff_t>(r) * ys;
        const T* xn = (r + 1 < rows) ? xr + xs : xr;  // the next row (the last row re-reads itself)
        const bool ok = std::isfinite(m);
        const reg vm = V::set1(ok ? m : T(0));
        const reg vlo = V::set1(exp_floor(ok ? m : T(0)));
        reg mx0 = V::set1(neg_inf<T>()), mx1 = mx0;
        ExpSum<V> s0;
        std::size_t i = 0;
        for (; i + 2 * N <= full; i += 2 * N) {
            mx0 = V::max(mx0, V::load(xn + i));
            mx1 = V::max(mx1, V::load(xn + i + N));
            if (ok) {
                const reg e0 = vexp_sub<V>(V::load(xr + i), vm, vlo);
                const reg e1 = vexp_sub<V>(V::load(xr + i + N), vm, vlo);
                V::store(yr + i, e0);
                V::store(yr + i + N, e1);
                s0.add2(e0, e1);
            }
            if (prev) {
                V::store(prev + i, inv_prev.apply(V::load(prev + i)));
                V::store(prev + i + N, inv_prev.apply(V::load(prev + i + N)));
            }
        }
        for (; i < n; i += N) {
            const std::size_t w = (n - i < N) ? n - i : N;
            mx0 = V::max(mx0, V::load_partial(xn + i, w, neg_inf<T>()));
            if (ok) {
                const reg e = vexp_sub<V>(V::load_partial(xr + i, w, neg_inf<T>()), vm, vlo);
                V::store_partial(yr + i, w, e);
                s0.add(e);
            }
            if (prev)
                V::store_partial(prev + i, w, inv_prev.apply(V::load_partial(prev + i, w, 0)));
        }
        const double sum = s0.total();
        if (!ok || sum != sum) {  // max not finite, or a NaN in the row
            softmax_special(yr, 1, n);
            prev = nullptr;
        } else {
            prev = yr;
            inv_prev = Factor<V>::reciprocal(sum);
        }
        m = V::hmax(V::max(mx0, mx1));
    }
    if (prev) map_row<V>(prev, prev, n, [inv_prev](reg v) { return inv_prev.apply(v); }, false);
}

template <class V>
void softmax_rows(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y, std::ptrdiff_t ys,
                  std::size_t rows, std::size_t n, bool from_memory) {
    using T = typename V::T;
    if (n == 0) return;
    if (tiles_pay<V>(n, kTileLimits<V>.softmax))
        return by_tiles<V>(x, xs, y, ys, rows, n, n, [n](typename V::T* t, std::size_t w) {
            softmax_cols<V>(t, V::N, t, V::N, n, w);
        });
    if (n <= V::N) return short_rows<ShortSoftmax<V>>(x, xs, y, ys, rows, n);
    if (n * sizeof(T) > kLongRowBytes) {
        for (std::size_t r = 0; r < rows; ++r, x += xs, y += ys) softmax_long_row<V>(x, y, n);
        return;
    }
    // Pipelining pays while the data is in cache; on arrays that stream from
    // memory it measured slower than three plain passes (8192x1024 float32:
    // 3.8 vs 3.1 ms), which give the hardware prefetchers one stream at a time.
    if (!from_memory) return softmax_rows_pipelined<V>(x, xs, y, ys, rows, n);
    for (std::size_t r = 0; r < rows; ++r, x += xs, y += ys) {
        const T m = row_max<V>(x, n);
        if (!std::isfinite(m)) {
            softmax_special(y, 1, n);
            continue;
        }
        const double s = row_store_exp_sum<V>(x, y, n, m);
        if (s != s) {  // a NaN in the row
            softmax_special(y, 1, n);
            continue;
        }
        const auto inv = Factor<V>::reciprocal(s);
        map_row<V>(y, y, n, [inv](typename V::reg v) { return inv.apply(v); }, false);
    }
}

// Rows of at most this many bytes (more than one vector, at most one block):
// log_softmax and logsumexp take their logs kLogGroup at a time in one vector
// (logs_of) instead of a libm call each, which cost as much as the rest of a
// 128-element row (log_softmax 4096x128 float32: 320 -> 240 us). The group
// stays in L1 for log_softmax's last pass.
constexpr std::size_t kGroupedLogRowBytes = 2048;
constexpr std::size_t kLogGroup = 8;

// The (max, sum) of kLogGroup rows of one block each, and the logs of their
// sums in one vector (a sum of 1 for the special rows).
template <class V>
void row_group_stats(const typename V::T* x, std::ptrdiff_t xs, std::size_t g, std::size_t n,
                     MaxSum* ms, typename V::T* logs) {
    using T = typename V::T;
    double sums[kLogGroup];
    T m[kLogGroup];
    // the maxima first: each row's exponentials wait for its maximum's
    // reduction, which is then ready, not on the row's critical path
    for (std::size_t k = 0; k < g; ++k)
        m[k] = row_max<V>(x + static_cast<std::ptrdiff_t>(k) * xs, n);
    // then the exponentials' per-lane sums of every row, and only then their
    // reductions, so that no row's reduction holds up the next row's work
    typename V::reg lanes[kLogGroup];
    for (std::size_t k = 0; k < g; ++k)  // one block: no running maximum needed
        lanes[k] = std::isfinite(m[k])
                       ? stretch_exp_lanes<V>(x + static_cast<std::ptrdiff_t>(k) * xs, n, m[k])
                       : V::zero();
    for (std::size_t k = 0; k < g; ++k) {
        const double sum = stretch_total<V>(lanes[k]);
        ms[k] = {static_cast<double>(m[k]), sum, !std::isfinite(m[k]) || sum != sum};
        sums[k] = ms[k].special ? 1.0 : sum;
    }
    logs_of<V>(sums, logs, g);
}

template <class V>
void logsumexp_row_groups(const typename V::T* x, std::ptrdiff_t xs, typename V::T* out,
                          std::ptrdiff_t os, std::size_t rows, std::size_t n) {
    using T = typename V::T;
    for (std::size_t r = 0; r < rows; r += kLogGroup) {
        const std::size_t g = std::min(kLogGroup, rows - r);
        const T* xg = x + static_cast<std::ptrdiff_t>(r) * xs;
        MaxSum ms[kLogGroup];
        T logs[kLogGroup];
        row_group_stats<V>(xg, xs, g, n, ms, logs);
        for (std::size_t k = 0; k < g; ++k) {
            T* o = out + static_cast<std::ptrdiff_t>(r + k) * os;
            *o = ms[k].special ? logsumexp_special(xg + static_cast<std::ptrdiff_t>(k) * xs, 1, n)
                               : static_cast<T>(ms[k].max + static_cast<double>(logs[k]));
        }
    }
}

template <class V>
void log_softmax_row_groups(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y,
                            std::ptrdiff_t ys, std::size_t rows, std::size_t n, bool stream) {
    using T = typename V::T;
    for (std::size_t r = 0; r < rows; r += kLogGroup) {
        const std::size_t g = std::min(kLogGroup, rows - r);
        const T* xg = x + static_cast<std::ptrdiff_t>(r) * xs;
        T* yg = y + static_cast<std::ptrdiff_t>(r) * ys;
        MaxSum ms[kLogGroup];
        T logs[kLogGroup];
        row_group_stats<V>(xg, xs, g, n, ms, logs);
        for (std::size_t k = 0; k < g; ++k) {
            const T* xk = xg + static_cast<std::ptrdiff_t>(k) * xs;
            T* yk = yg + static_cast<std::ptrdiff_t>(k) * ys;
            if (ms[k].special) {
                log_softmax_special(xk, 1, yk, 1, n);
                continue;
            }
            shift_row<V>(xk, yk, n, static_cast<T>(ms[k].max), logs[k], stream);
        }
    }
}

template <class V>
void log_softmax_rows(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y,
                      std::ptrdiff_t ys, std::size_t rows, std::size_t n, bool from_memory) {
    using T = typename V::T;
    if (n == 0) return;
    if (tiles_pay<V>(n, kTileLimits<V>.log_softmax))
        return by_tiles<V>(x, xs, y, ys, rows, n, n, [n](typename V::T* t, std::size_t w) {
            log_softmax_cols<V>(t, V::N, t, V::N, n, w);
        });
    if (n <= V::N) return short_rows<ShortLogSoftmax<V>>(x, xs, y, ys, rows, n);
    const bool stream = from_memory;
    if (n * sizeof(T) <= kGroupedLogRowBytes && n <= kBlock * V::N) {
        log_softmax_row_groups<V>(x, xs, y, ys, rows, n, stream);
        if (stream) V::stream_fence();
        return;
    }
    for (std::size_t r = 0; r < rows; ++r, x += xs, y += ys) {
        const MaxSum ms = row_online_max_sum<V>(x, n);
        if (ms.special) {
            log_softmax_special(x, 1, y, 1, n);
            continue;
        }
        shift_row<V>(x, y, n, static_cast<T>(ms.max), static_cast<T>(std::log(ms.sum)), stream);
    }
    if (stream) V::stream_fence();
}

template <class V>
void logsumexp_rows(const typename V::T* x, std::ptrdiff_t xs, typename V::T* out,
                    std::ptrdiff_t os, std::size_t rows, std::size_t n) {
    using T = typename V::T;
    if (tiles_pay<V>(n, kTileLimits<V>.logsumexp))  // each lane's result in the tile's first row
        return by_tiles<V>(x, xs, out, os, rows, n, 1,
                           [n](T* t, std::size_t w) { logsumexp_cols<V>(t, V::N, t, n, w); });
    if (n >= 1 && n <= V::N) return short_rows<ShortLogSumExp<V>>(x, xs, out, os, rows, n);
    if (n * sizeof(T) <= kGroupedLogRowBytes && n <= kBlock * V::N)
        return logsumexp_row_groups<V>(x, xs, out, os, rows, n);
    for (std::size_t r = 0; r < rows; ++r, x += xs, out += os) {
        if (n == 0) {
            *out = neg_inf<T>();
            continue;
        }
        const MaxSum ms = row_online_max_sum<V>(x, n);
        *out = ms.special ? logsumexp_special(x, 1, n) : static_cast<T>(ms.max + std::log(ms.sum));
    }
}

// The two backward ops, o = out(g, y, s) with s the sum over the reduction of
// the terms accumulated by acc:
template <class V>
struct SoftmaxGrad {  // o = y * (g - sum(g * y))
    using reg = typename V::reg;
    static reg acc(reg s, reg g, reg y) { return V::fmadd(g, y, s); }
    static reg out(reg g, reg y, reg s) { return V::mul(y, V::sub(g, s)); }
};

template <class V>
struct LogSoftmaxGrad {  // o = g - exp(y) * sum(g)
    using reg = typename V::reg;
    static reg acc(reg s, reg g, reg) { return V::add(s, g); }
    static reg out(reg g, reg y, reg s) { return V::fnmadd(vexp<V>(y), s, g); }
};

template <class V, class Op>
void backward_rows(const typename V::T* g, std::ptrdiff_t gs, const typename V::T* y,
                   std::ptrdiff_t ys, typename V::T* o, std::ptrdiff_t os, std::size_t rows,
                   std::size_t n) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    for (std::size_t r = 0; r < rows; ++r, g += gs, y += ys, o += os) {
        auto wide = V::wide_zero();
        std::size_t i = 0;
        while (i + N <= n) {
            const std::size_t end = (n - i >= kBlock * N) ? i + kBlock * N : n;
            auto s0 = V::zero(), s1 = V::zero();
            for (; i + 2 * N <= end; i += 2 * N) {
                s0 = Op::acc(s0, V::load(g + i), V::load(y + i));
                s1 = Op::acc(s1, V::load(g + i + N), V::load(y + i + N));
            }
            for (; i + N <= end; i += N) s0 = Op::acc(s0, V::load(g + i), V::load(y + i));
            V::wide_add(wide, V::add(s0, s1));
        }
        if (i < n)  // zero fill: the missing lanes add nothing
            V::wide_add(wide, Op::acc(V::zero(), V::load_partial(g + i, n - i, 0),
                                      V::load_partial(y + i, n - i, 0)));
        const auto vs = V::set1(static_cast<T>(V::wide_hsum(wide)));
        for (i = 0; i + N <= n; i += N)
            V::store(o + i, Op::out(V::load(g + i), V::load(y + i), vs));
        if (i < n)
            V::store_partial(
                o + i, n - i,
                Op::out(V::load_partial(g + i, n - i, 0), V::load_partial(y + i, n - i, 0), vs));
    }
}

// ------------------------------------------------------------- columns ----
//
// A "chunk" is one vector of lanes across the contiguous axis, at column
// offset c with `w` valid lanes (w == V::N except for the last chunk).

template <class V>
struct Chunk {
    std::size_t w;
    typename V::reg load(const typename V::T* p, typename V::T fill) const {
        return (w == V::N) ? V::load(p) : V::load_partial(p, w, fill);
    }
    void store(typename V::T* p, typename V::reg v) const {
        if (w == V::N)
            V::store(p, v);
        else
            V::store_partial(p, w, v);
    }
};

constexpr std::size_t kColBlock = 32;  // rows per float accumulator before folding

template <class V>
typename V::reg col_max(const typename V::T* x, std::ptrdiff_t xs, std::size_t n, Chunk<V> ch) {
    using T = typename V::T;
    auto m0 = V::set1(neg_inf<T>()), m1 = m0;
    std::size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        m0 = V::max(m0, ch.load(x + static_cast<std::ptrdiff_t>(i) * xs, neg_inf<T>()));
        m1 = V::max(m1, ch.load(x + static_cast<std::ptrdiff_t>(i + 1) * xs, neg_inf<T>()));
    }
    if (i < n) m0 = V::max(m0, ch.load(x + static_cast<std::ptrdiff_t>(i) * xs, neg_inf<T>()));
    return V::max(m0, m1);
}

// Sum over the column of exp(x - ref), per lane. kStore: also store the
// exponentials in y, computed with vexp_sub (softmax outputs).
template <class V, bool kStore>
typename V::Wide col_sum_exp(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y,
                             std::ptrdiff_t ys, std::size_t n, typename V::reg ref, Chunk<V> ch) {
    using T = typename V::T;
    const auto ref_lo = exp_floor<V>(ref);
    if constexpr (kStore) {
        ExpSum<V> sum;
        for (std::size_t i = 0; i < n; ++i) {
            const auto xv = ch.load(x + static_cast<std::ptrdiff_t>(i) * xs, neg_inf<T>());
            const auto e = vexp_sub<V>(xv, ref, ref_lo);
            ch.store(y + static_cast<std::ptrdiff_t>(i) * ys, e);
            sum.add(e);
        }
        sum.flush();
        return sum.wide;
    } else {
        auto wide = V::wide_zero();
        for (std::size_t i = 0; i < n;) {
            const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
            auto s = V::zero();
            for (; i < end; ++i)
                s = V::add(
                    s, vexp<V>(V::sub(
                           ch.load(x + static_cast<std::ptrdiff_t>(i) * xs, neg_inf<T>()), ref)));
            V::wide_add(wide, s);
        }
        return wide;
    }
}

// Column lanes need no scalar path: with ref = (max finite ? max : 0), as
// SciPy does, a NaN anywhere makes the lane's sum NaN, a +inf makes it +inf,
// and the formulas below give SciPy's answers lane by lane.

template <class V>
void softmax_cols(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y, std::ptrdiff_t ys,
                  std::size_t n, std::size_t inner) {
    using T = typename V::T;
    if (n == 0) return;
    for (std::size_t c = 0; c < inner; c += V::N) {
        const Chunk<V> ch{(inner - c < V::N) ? inner - c : V::N};
        const auto m = col_max<V>(x + c, xs, n, ch);
        const auto bad = V::not_finite(m);
        const auto wide =
            col_sum_exp<V, true>(x + c, xs, y + c, ys, n, V::select(bad, V::zero(), m), ch);
        // per lane 1/sum as hi + lo (see Factor); a non-finite max makes the
        // whole lane NaN (SciPy), a NaN sum does by itself
        double sums[V::N];
        V::wide_store(wide, sums);
        T hi[V::N], lo[V::N], maxes[V::N];
        V::store(maxes, m);
        for (std::size_t l = 0; l < V::N; ++l) {
            const double inv = 1.0 / sums[l];
            hi[l] =
                std::isfinite(maxes[l]) ? static_cast<T>(inv) : std::numeric_limits<T>::quiet_NaN();
            lo[l] = static_cast<T>(inv - static_cast<double>(hi[l]));
        }
        const Factor<V> inv{V::load(hi), V::load(lo)};
        for (std::size_t i = 0; i < n; ++i) {
            T* p = y + c + static_cast<std::ptrdiff_t>(i) * ys;
            ch.store(p, inv.apply(ch.load(p, 0)));
        }
    }
}

template <class V>
void log_softmax_cols(const typename V::T* x, std::ptrdiff_t xs, typename V::T* y,
                      std::ptrdiff_t ys, std::size_t n, std::size_t inner) {
    if (n == 0) return;
    for (std::size_t c = 0; c < inner; c += V::N) {
        const Chunk<V> ch{(inner - c < V::N) ? inner - c : V::N};
        const auto m = col_max<V>(x + c, xs, n, ch);
        const auto s = V::wide_round(col_sum_exp<V, false>(
            x + c, xs, nullptr, 0, n, V::select(V::not_finite(m), V::zero(), m), ch));
        // max = +inf: s = +inf, so (x - max) - log(s) is NaN at +inf, -inf elsewhere;
        // all -inf: x - max is NaN; a NaN: s is NaN. SciPy's answers in each case.
        const auto ls = vlog<V>(s);
        for (std::size_t i = 0; i < n; ++i) {
            const auto xv = ch.load(x + c + static_cast<std::ptrdiff_t>(i) * xs, 0);
            ch.store(y + c + static_cast<std::ptrdiff_t>(i) * ys, V::sub(V::sub(xv, m), ls));
        }
    }
}

template <class V>
void logsumexp_cols(const typename V::T* x, std::ptrdiff_t xs, typename V::T* out, std::size_t n,
                    std::size_t inner) {
    using T = typename V::T;
    for (std::size_t c = 0; c < inner; c += V::N) {
        const Chunk<V> ch{(inner - c < V::N) ? inner - c : V::N};
        if (n == 0) {
            ch.store(out + c, V::set1(neg_inf<T>()));
            continue;
        }
        const auto m = col_max<V>(x + c, xs, n, ch);
        const auto bad = V::not_finite(m);
        const auto s = V::wide_round(
            col_sum_exp<V, false>(x + c, xs, nullptr, 0, n, V::select(bad, V::zero(), m), ch));
        // non-finite max: the max itself (+-inf), or NaN if a NaN was seen
        const auto special = V::select(V::isnan(s), s, m);
        ch.store(out + c, V::select(bad, special, V::add(m, vlog<V>(s))));
    }
}

template <class V, class Op>
void backward_cols(const typename V::T* g, std::ptrdiff_t gs, const typename V::T* y,
                   std::ptrdiff_t ys, typename V::T* o, std::ptrdiff_t os, std::size_t n,
                   std::size_t inner) {
    for (std::size_t c = 0; c < inner; c += V::N) {
        const Chunk<V> ch{(inner - c < V::N) ? inner - c : V::N};
        const auto at = [&](const typename V::T* p, std::ptrdiff_t ps, std::size_t i) {
            return ch.load(p + c + static_cast<std::ptrdiff_t>(i) * ps, 0);
        };
        auto wide = V::wide_zero();
        for (std::size_t i = 0; i < n;) {
            const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
            auto s = V::zero();
            for (; i < end; ++i) s = Op::acc(s, at(g, gs, i), at(y, ys, i));
            V::wide_add(wide, s);
        }
        const auto vs = V::wide_round(wide);
        for (std::size_t i = 0; i < n; ++i)
            ch.store(o + c + static_cast<std::ptrdiff_t>(i) * os,
                     Op::out(at(g, gs, i), at(y, ys, i), vs));
    }
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
