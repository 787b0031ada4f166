// Operations whose code is the same on several targets, written once over
// the wrapper's own operations. A wrapper derives from the ones it uses
// (static functions only: CRTP, so `V` is the wrapper itself); the bodies are
// compiled with each target's flags, in its own namespace, like the rest of
// its code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fastsoftmax/half.hpp"
#include "generic/compensated.hpp"
#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// The w <= 8 bytes at p as the low bytes of an integer, zeros above (the
// order of a little-endian load), reading [p, p + w) only: two overlapping
// loads rather than a byte loop (bytes stored one by one and then loaded as
// a vector wait for the stores: no store forwarding).
inline std::uint64_t low_bytes(const unsigned char* p, std::size_t w) {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian targets");
    if (w >= 4) {
        std::uint32_t a, b;
        std::memcpy(&a, p, 4);
        std::memcpy(&b, p + w - 4, 4);
        return a | (std::uint64_t{b} << (8 * (w - 4)));
    }
    if (w >= 2) {
        std::uint16_t a, b;
        std::memcpy(&a, p, 2);
        std::memcpy(&b, p + w - 2, 2);
        return a | (std::uint64_t{b} << (8 * (w - 2)));
    }
    return w ? p[0] : 0;
}

// p * 2^n, 0 in the lanes of `zero_lanes`, from the target's scale_pow2 (two
// exact power-of-two factors): for targets without a scaling instruction.
template <class V>
struct ScaleOrZero {
    template <class R, class M>
    static R scale_pow2_or_zero(R p, R n, M zero_lanes) {
        return V::select(zero_lanes, V::zero(), V::scale_pow2(p, n));
    }
};

// The lane tables of the short transposes (column_of, block_of): N rows of n
// elements (n < N) laid end to end fill n vectors, element e = l * n + j
// (row l, column j) sitting in vector e / N, lane e % N.
//   column j (lane l = row l's element j) takes lane col_lane[n][j][l] of
//     vector col_src[n][j][l]; bit l of col_mask[n][j][k] is set where that
//     vector is k;
//   block vector k (lane q = element k * N + q) takes lane row_lane[n][k][q]
//     (the row) of column row_src[n][k][q]; bit q of row_mask[n][k][j] is set
//     where that column is j.
// Lane is the permutes' index type (32-bit, or 64-bit for double lanes).
template <std::size_t N, class Lane>
struct ShortTransposeTables {
    alignas(64) Lane col_lane[N][N][N] = {};
    alignas(64) Lane col_src[N][N][N] = {};
    alignas(64) Lane row_lane[N][N][N] = {};
    alignas(64) Lane row_src[N][N][N] = {};
    std::uint32_t col_mask[N][N][N] = {};
    std::uint32_t row_mask[N][N][N] = {};
    // The same lanes as a two-source permute of the vector pair (2i, 2i + 1)
    // holding them indexes them: lane + N * (source % 2).
    alignas(64) Lane pair_col[N][N][N] = {};
    alignas(64) Lane pair_row[N][N][N] = {};
    // For n prime to N, the lanes of column j land on distinct positions
    // (l * n + j) % N of the vectors: position q holds lane col_at[n][j][q].
    alignas(64) Lane col_at[N][N][N] = {};

    constexpr ShortTransposeTables() {
        for (std::size_t n = 1; n < N; ++n) {
            for (std::size_t j = 0; j < n; ++j)
                for (std::size_t l = 0; l < N; ++l) {
                    const std::size_t e = l * n + j;
                    col_lane[n][j][l] = static_cast<Lane>(e % N);
                    col_src[n][j][l] = static_cast<Lane>(e / N);
                    col_mask[n][j][e / N] |= std::uint32_t{1} << l;
                    col_at[n][j][e % N] = static_cast<Lane>(l);
                }
            for (std::size_t k = 0; k < n; ++k)
                for (std::size_t q = 0; q < N; ++q) {
                    const std::size_t e = k * N + q;
                    row_lane[n][k][q] = static_cast<Lane>(e / n);
                    row_src[n][k][q] = static_cast<Lane>(e % n);
                    row_mask[n][k][e % n] |= std::uint32_t{1} << q;
                }
        }
        for (std::size_t n = 1; n < N; ++n)
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t l = 0; l < N; ++l) {
                    pair_col[n][i][l] =
                        static_cast<Lane>(col_lane[n][i][l] + N * (col_src[n][i][l] % 2));
                    pair_row[n][i][l] =
                        static_cast<Lane>(row_lane[n][i][l] + N * (row_src[n][i][l] % 2));
                }
    }
};

// The wide accumulator of double lanes: Neumaier's compensated summation
// per lane. The wrapper declares `struct Wide { reg sum, comp; };` (its
// register type cannot be named here: V is incomplete where this struct is
// instantiated, and a register type as a template argument loses its
// alignment attribute).
template <class V>
struct NeumaierLanes {
    static auto wide_zero() { return typename V::Wide{V::zero(), V::zero()}; }
    template <class W, class R>
    static void wide_add(W& w, R v) {
        const R t = V::add(w.sum, v);
        const auto big = V::ge(V::abs(w.sum), V::abs(v));
        const R larger = V::select(big, w.sum, v);
        const R smaller = V::select(big, v, w.sum);
        w.comp = V::add(w.comp, V::add(V::sub(larger, t), smaller));
        w.sum = t;
    }
    template <class W>
    static double wide_hsum(const W& w) {
        alignas(64) double sums[V::N], comps[V::N];
        V::store(sums, w.sum);
        V::store(comps, w.comp);
        return neumaier_total(sums, comps, V::N);
    }
    // an infinite lane makes its compensation NaN (inf - inf): ignore it then
    template <class W>
    static auto wide_round(const W& w) {
        return V::select(V::not_finite(w.sum), w.sum, V::add(w.sum, w.comp));
    }
    template <class W>
    static void wide_store(const W& w, double* lanes) {
        V::store(lanes, wide_round(w));
    }
    template <class W, class R>
    static void wide_reciprocal(const W& w, R& hi, R& lo) {
        hi = V::div(V::set1(1.0), wide_round(w));
        lo = V::sub(hi, hi);  // 0, or NaN with hi
    }
};

// The wrapper for arrays of a half-precision storage type H (bfloat16,
// float16) over the target's float wrapper F: every operation of F, arrays
// of float included (scratch, tiles), and loads and stores of H that convert
// in registers, from Cvt's
//   static reg load(const H* p);            N elements, widened exactly
//   static void store(H* p, reg v);         N elements, rounded to nearest even
// and, where the target has something better than going through the stack,
//   static reg load_partial(const H* p, size_t n, float fill);
//   static void store_partial(H* p, size_t n, reg v);
//   static void stream(H* p, reg v);        p aligned to N * sizeof(H)
template <class F, class H, class Cvt>
struct Converting : F {
    using S = H;
    using Compute = F;
    using T = typename F::T;
    using reg = typename F::reg;
    static_assert(std::is_same_v<T, float>, "half-precision storage computes in float");

    using F::load;
    using F::load_partial;
    using F::store;
    using F::store_partial;
    using F::stream;
    static reg load(const S* p) { return Cvt::load(p); }
    static void store(S* p, reg v) { Cvt::store(p, v); }
    static reg load_partial(const S* p, std::size_t n, T fill) {
        if constexpr (HasPartial<Cvt>::value) {
            return Cvt::load_partial(p, n, fill);
        } else {
            alignas(64) T buf[F::N];
            for (std::size_t i = 0; i < F::N; ++i) buf[i] = i < n ? to_compute(p[i]) : fill;
            return F::load(buf);
        }
    }
    static void store_partial(S* p, std::size_t n, reg v) {
        if constexpr (HasPartial<Cvt>::value) {
            Cvt::store_partial(p, n, v);
        } else {
            alignas(64) S buf[F::N];
            Cvt::store(buf, v);
            // (the bound tells GCC, which otherwise warns of sizes it cannot
            // rule out where the caller's loops are inlined)
            std::memcpy(p, buf, (n < F::N ? n : F::N) * sizeof(S));
        }
    }
    static void stream(S* p, reg v) {
        if constexpr (HasStream<Cvt>::value)
            Cvt::stream(p, v);
        else
            Cvt::store(p, v);
    }
    // F's transpose (where F has one) between arrays of S and of T, through
    // a staging block of T: dst[j * ds + i] = src[i * ss + j], i, j < N.
    template <class Src, class Dst, class F2 = F>
    static auto transpose(const Src* src, std::ptrdiff_t ss, Dst* dst, std::ptrdiff_t ds)
        -> decltype(F2::transpose(static_cast<const T*>(nullptr), ss, static_cast<T*>(nullptr),
                                  ds)) {
        constexpr std::size_t N = F::N;
        if constexpr (std::is_same_v<Src, T> && std::is_same_v<Dst, T>) {
            F::transpose(src, ss, dst, ds);
        } else if constexpr (std::is_same_v<Src, S> && std::is_same_v<Dst, T>) {
            alignas(64) T block[N * N];
            for (std::size_t i = 0; i < N; ++i)
                F::store(block + i * N, load(src + static_cast<std::ptrdiff_t>(i) * ss));
            F::transpose(block, N, dst, ds);
        } else {
            static_assert(std::is_same_v<Src, T> && std::is_same_v<Dst, S>);
            alignas(64) T block[N * N];
            F::transpose(src, ss, block, N);
            for (std::size_t i = 0; i < N; ++i)
                store(dst + static_cast<std::ptrdiff_t>(i) * ds, F::load(block + i * N));
        }
    }

  private:
    // (expressions, not member pointers: a pointer to a function of vector
    // type as a template argument drops the type's attributes, and warns)
    template <class C, class = void>
    struct HasPartial : std::false_type {};
    template <class C>
    struct HasPartial<
        C, std::void_t<decltype(void(C::load_partial(static_cast<const H*>(nullptr), std::size_t{},
                                                     float{}))),
                       decltype(C::store_partial(static_cast<H*>(nullptr), std::size_t{}, reg{}))>>
        : std::true_type {};
    template <class C, class = void>
    struct HasStream : std::false_type {};
    template <class C>
    struct HasStream<C, std::void_t<decltype(C::stream(static_cast<H*>(nullptr), reg{}))>>
        : std::true_type {};
};

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
