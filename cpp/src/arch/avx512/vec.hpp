// AVX-512 (F, DQ, BW, VL) vector wrappers: the operations the generic
// algorithms in cpp/src/generic/ need, for float (16 lanes) and double (8).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "arch/common_ops.hpp"

namespace fastsoftmax::avx512 {

// The 4 x 4 transpose of 128-bit lanes (of floats or, cast, doubles):
// lane q of out[k] is lane k of in[q]. The last step of both transposes.
inline void transpose_lanes(const __m512 (&in)[4], __m512 (&out)[4]) {
    const __m512 p0 = _mm512_shuffle_f32x4(in[0], in[1], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 p1 = _mm512_shuffle_f32x4(in[0], in[1], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512 p2 = _mm512_shuffle_f32x4(in[2], in[3], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 p3 = _mm512_shuffle_f32x4(in[2], in[3], _MM_SHUFFLE(3, 1, 3, 1));
    out[0] = _mm512_shuffle_f32x4(p0, p2, _MM_SHUFFLE(2, 0, 2, 0));
    out[1] = _mm512_shuffle_f32x4(p1, p3, _MM_SHUFFLE(2, 0, 2, 0));
    out[2] = _mm512_shuffle_f32x4(p0, p2, _MM_SHUFFLE(3, 1, 3, 1));
    out[3] = _mm512_shuffle_f32x4(p1, p3, _MM_SHUFFLE(3, 1, 3, 1));
}

// The permutes of the short transposes, for float and double lanes.
inline __m512 permute(__m512i idx, __m512 v) { return _mm512_permutexvar_ps(idx, v); }
inline __m512d permute(__m512i idx, __m512d v) { return _mm512_permutexvar_pd(idx, v); }
inline __m512 permute2(__m512 a, __m512i idx, __m512 b) {
    return _mm512_permutex2var_ps(a, idx, b);
}
inline __m512d permute2(__m512d a, __m512i idx, __m512d b) {
    return _mm512_permutex2var_pd(a, idx, b);
}
inline __m512 mask_permute(__m512 acc, __mmask16 m, __m512i idx, __m512 v) {
    return _mm512_mask_permutexvar_ps(acc, m, idx, v);
}
inline __m512d mask_permute(__m512d acc, __mmask8 m, __m512i idx, __m512d v) {
    return _mm512_mask_permutexvar_pd(acc, m, idx, v);
}
inline __m512 mask_mov(__m512 acc, __mmask16 m, __m512 v) { return _mm512_mask_mov_ps(acc, m, v); }
inline __m512d mask_mov(__m512d acc, __mmask8 m, __m512d v) {
    return _mm512_mask_mov_pd(acc, m, v);
}

// The short transposes (common_ops.hpp, ShortTransposeTables) of N lanes of
// R, n < N: rows[k] holds elements kN .. kN + N - 1 of N rows of n laid end
// to end; column_of gives lane l = element j of row l, block_of the inverse.
// Two-source permutes of pairs of vectors (ceil(n / 2) of them each) where n
// is a compile-time constant (the register tiles); n masked permutes, a loop
// without branches inside, where it is known only at run time (the tiles).
// (always_inline: without it GCC laid out ce_register_tiles differently,
// with more spills, and the cross-entropy of 2 and 3 classes took 1.10-1.13x)
// (R deduced from the arguments: a register type as a template argument of
// the struct would lose its alignment attribute, which GCC warns about)
template <std::size_t N, class Lane, class M>
struct ShortTransposes {
    static constexpr ShortTransposeTables<N, Lane> kShort{};
    template <class R>
    __attribute__((always_inline)) static R column_of(const R* rows, std::size_t n, std::size_t j) {
        if (__builtin_constant_p(n))
            return from_pairs(rows, n, kShort.pair_col[n][j], kShort.col_mask[n][j]);
        return masked(rows, n, kShort.col_lane[n][j], kShort.col_mask[n][j]);
    }
    template <class R>
    __attribute__((always_inline)) static R block_of(const R* cols, std::size_t n, std::size_t k) {
        if (__builtin_constant_p(n))
            return from_pairs(cols, n, kShort.pair_row[n][k], kShort.row_mask[n][k]);
        return masked(cols, n, kShort.row_lane[n][k], kShort.row_mask[n][k]);
    }
    // The lanes of v[0 .. n) that `lanes` (col_lane, row_lane) and `masks`
    // (col_mask, row_mask) name, one masked permute per vector.
    template <class R>
    __attribute__((always_inline)) static R masked(const R* v, std::size_t n, const Lane* lanes,
                                                   const std::uint32_t* masks) {
        const __m512i idx = _mm512_load_si512(lanes);
        R acc = permute(idx, v[0]);
        for (std::size_t k = 1; k < n; ++k)
            acc = mask_permute(acc, static_cast<M>(masks[k]), idx, v[k]);
        return acc;
    }
    // The same from `pairs` (pair_col, pair_row): one two-source permute per
    // pair of vectors, merged by masks (the last vector of an odd n alone).
    template <class R>
    __attribute__((always_inline)) static R from_pairs(const R* v, std::size_t n, const Lane* pairs,
                                                       const std::uint32_t* masks) {
        const __m512i idx = _mm512_load_si512(pairs);
        if (n == 1) return permute(idx, v[0]);
        R acc = permute2(v[0], idx, v[1]);
        for (std::size_t k = 2; k < n; k += 2) {
            const auto m = static_cast<M>(masks[k] | (k + 1 < n ? masks[k + 1] : 0));
            if (m == 0) continue;
            acc = mask_mov(acc, m, k + 1 < n ? permute2(v[k], idx, v[k + 1]) : permute(idx, v[k]));
        }
        return acc;
    }
};

struct F32 : ShortTransposes<16, std::int32_t, __mmask16> {
    using T = float;      // compute type (registers, scalars, scratch)
    using S = float;      // storage type (the caller's arrays)
    using Compute = F32;  // the wrapper for arrays of T
    using reg = __m512;
    using mask = __mmask16;
    static constexpr std::size_t N = 16;
    // vscalefps produces subnormals without a penalty
    static constexpr bool kSlowSubnormals = false;

    static reg load(const T* p) { return _mm512_loadu_ps(p); }
    static reg load_partial(const T* p, std::size_t n, T fill) {
        const mask m = static_cast<mask>((1u << n) - 1u);
        return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p);
    }
    static void store(T* p, reg v) { _mm512_storeu_ps(p, v); }
    static void store_partial(T* p, std::size_t n, reg v) {
        _mm512_mask_storeu_ps(p, static_cast<mask>((1u << n) - 1u), v);
    }
    // non-temporal store; p aligned to sizeof(reg)
    static void stream(T* p, reg v) { _mm512_stream_ps(p, v); }
    static void stream_fence() { _mm_sfence(); }
    static reg set1(T v) { return _mm512_set1_ps(v); }
    static reg zero() { return _mm512_setzero_ps(); }
    static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
    static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }    // a*b+c
    static reg fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }  // c-a*b
    // x86 max/min return the second operand when either is NaN.
    static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
    static reg abs(reg a) { return _mm512_abs_ps(a); }
    static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
    // p * 2^n for integral n, with correct overflow, underflow and subnormals.
    static reg scale_pow2_or_zero(reg p, reg n, mask zero) {  // 0 in the lanes of zero
        return _mm512_maskz_scalef_ps(static_cast<mask>(~zero), p, n);
    }
    // x = m * 2^e with m in [1, 2), for finite x > 0 (subnormals included).
    static void frexp12(reg x, reg& m, reg& e) {
        m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
        e = _mm512_getexp_ps(x);
    }
    static mask lt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
    static mask eq(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
    static mask ge(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
    static mask not_finite(reg a) {  // NaN or +-inf
        return _mm512_cmp_ps_mask(_mm512_sub_ps(a, a), _mm512_setzero_ps(), _CMP_NEQ_UQ);
    }
    static mask mask_or(mask a, mask b) { return static_cast<mask>(a | b); }
    static mask bytes_nonzero(const unsigned char* m) {  // (16 bytes)
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
        return _mm_test_epi8_mask(b, b);
    }
    static mask bytes_nonzero_partial(const unsigned char* m, std::size_t w) {  // (w < 16)
        const __m128i b = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << w) - 1u), m);
        return _mm_test_epi8_mask(b, b);
    }
    static reg select(mask m, reg a, reg b) { return _mm512_mask_blend_ps(m, b, a); }  // m ? a : b
    static T hmax(reg v) { return _mm512_reduce_max_ps(v); }
    // Integer class labels as lanes (the cross-entropy's label vector): lane l
    // is p[l] as a float, `ignored` where p[l] == ignore or l >= w, `unusable`
    // where p[l] is outside [0, n). The comparisons are made in int64.
    static reg label_lanes(const std::int64_t* p, std::size_t w, std::int64_t ignore, std::size_t n,
                           T ignored, T unusable) {
        const __mmask8 m0 = static_cast<__mmask8>(w >= 8 ? 0xff : (1u << w) - 1u);
        const __mmask8 m1 = static_cast<__mmask8>(w >= 16  ? 0xff
                                                  : w <= 8 ? 0
                                                           : (1u << (w - 8)) - 1u);
        const __m512i ig = _mm512_set1_epi64(ignore),
                      cls = _mm512_set1_epi64(static_cast<long long>(n));
        const __m512i y0 = _mm512_mask_loadu_epi64(ig, m0, p),
                      y1 = _mm512_mask_loadu_epi64(ig, m1, p + 8);
        const auto half = [&](__m512i y, __mmask8& skip, __mmask8& bad) {
            skip = _mm512_cmpeq_epi64_mask(y, ig);
            bad = static_cast<__mmask8>(~skip & ~_mm512_cmplt_epu64_mask(y, cls));
            return _mm512_cvtepi64_ps(y);
        };
        __mmask8 s0, b0, s1, b1;
        const __m256 f0 = half(y0, s0, b0), f1 = half(y1, s1, b1);
        reg v = _mm512_insertf32x8(_mm512_castps256_ps512(f0), f1, 1);
        const mask skip = static_cast<mask>(s0 | (s1 << 8)),
                   bad = static_cast<mask>(b0 | (b1 << 8));
        v = _mm512_mask_mov_ps(v, bad, _mm512_set1_ps(unusable));
        return _mm512_mask_mov_ps(v, skip, _mm512_set1_ps(ignored));
    }
    // dst[j * ds + i] = src[i * ss + j] for i, j < 16: 16 loads, 64 shuffles, 16 stores
    static void transpose(const T* src, std::ptrdiff_t ss, T* dst, std::ptrdiff_t ds) {
        reg u[16];  // u[4q + j]: lane k holds element 4k + j of rows 4q .. 4q + 3
        for (int q = 0; q < 4; ++q) {
            const T* r = src + 4 * q * ss;
            const reg r0 = load(r), r1 = load(r + ss), r2 = load(r + 2 * ss), r3 = load(r + 3 * ss);
            const reg t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
            const reg t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
            u[4 * q + 0] = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
            u[4 * q + 1] = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
            u[4 * q + 2] = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
            u[4 * q + 3] = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
        }
        // column 4k + j: lane k of u[j], u[4 + j], u[8 + j], u[12 + j]
        for (int j = 0; j < 4; ++j) {
            reg col[4];
            transpose_lanes({u[j], u[4 + j], u[8 + j], u[12 + j]}, col);
            for (int k = 0; k < 4; ++k) store(dst + (4 * k + j) * ds, col[k]);
        }
    }

    // Float sums are accumulated in double: a "wide" accumulator per lane.
    struct Wide {
        __m512d lo, hi;
    };
    static Wide wide_zero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
    static void wide_add(Wide& w, reg v) {
        w.lo = _mm512_add_pd(w.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        w.hi = _mm512_add_pd(
            w.hi,
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    static double wide_hsum(const Wide& w) {
        return _mm512_reduce_add_pd(_mm512_add_pd(w.lo, w.hi));
    }
    static void wide_store(const Wide& w, double* lanes) {
        _mm512_storeu_pd(lanes, w.lo);
        _mm512_storeu_pd(lanes + 8, w.hi);
    }
    static reg wide_round(const Wide& w) {
        const __m256 lo = _mm512_cvtpd_ps(w.lo);
        const __m256 hi = _mm512_cvtpd_ps(w.hi);
        return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    }
    static void wide_reciprocal(const Wide& w, reg& hi, reg& lo) {
        const __m512d one = _mm512_set1_pd(1.0);
        const __m512d r0 = _mm512_div_pd(one, w.lo), r1 = _mm512_div_pd(one, w.hi);
        const __m256 h0 = _mm512_cvtpd_ps(r0), h1 = _mm512_cvtpd_ps(r1);
        const __m256 l0 = _mm512_cvtpd_ps(_mm512_sub_pd(r0, _mm512_cvtps_pd(h0)));
        const __m256 l1 = _mm512_cvtpd_ps(_mm512_sub_pd(r1, _mm512_cvtps_pd(h1)));
        hi = _mm512_insertf32x8(_mm512_castps256_ps512(h0), h1, 1);
        lo = _mm512_insertf32x8(_mm512_castps256_ps512(l0), l1, 1);
    }
};

struct F64 : NeumaierLanes<F64>, ShortTransposes<8, std::int64_t, __mmask8> {
    using T = double;     // compute type (registers, scalars, scratch)
    using S = double;     // storage type (the caller's arrays)
    using Compute = F64;  // the wrapper for arrays of T
    using reg = __m512d;
    using mask = __mmask8;
    static constexpr std::size_t N = 8;
    // vscalefps produces subnormals without a penalty
    static constexpr bool kSlowSubnormals = false;

    static reg load(const T* p) { return _mm512_loadu_pd(p); }
    static reg load_partial(const T* p, std::size_t n, T fill) {
        const mask m = static_cast<mask>((1u << n) - 1u);
        return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), m, p);
    }
    static void store(T* p, reg v) { _mm512_storeu_pd(p, v); }
    static void store_partial(T* p, std::size_t n, reg v) {
        _mm512_mask_storeu_pd(p, static_cast<mask>((1u << n) - 1u), v);
    }
    static void stream(T* p, reg v) { _mm512_stream_pd(p, v); }
    static void stream_fence() { _mm_sfence(); }
    static reg set1(T v) { return _mm512_set1_pd(v); }
    static reg zero() { return _mm512_setzero_pd(); }
    static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
    static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
    static reg div(reg a, reg b) { return _mm512_div_pd(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
    static reg fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_pd(a, b, c); }
    static reg max(reg a, reg b) { return _mm512_max_pd(a, b); }
    static reg abs(reg a) { return _mm512_abs_pd(a); }
    static reg min(reg a, reg b) { return _mm512_min_pd(a, b); }
    static reg scale_pow2_or_zero(reg p, reg n, mask zero) {
        return _mm512_maskz_scalef_pd(static_cast<mask>(~zero), p, n);
    }
    static void frexp12(reg x, reg& m, reg& e) {
        m = _mm512_getmant_pd(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
        e = _mm512_getexp_pd(x);
    }
    static mask lt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
    static mask eq(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
    static mask ge(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
    static mask not_finite(reg a) {
        return _mm512_cmp_pd_mask(_mm512_sub_pd(a, a), _mm512_setzero_pd(), _CMP_NEQ_UQ);
    }
    static mask mask_or(mask a, mask b) { return static_cast<mask>(a | b); }
    static mask bytes_nonzero(const unsigned char* m) {  // (8 bytes)
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
        return static_cast<mask>(_mm_test_epi8_mask(b, b));
    }
    static mask bytes_nonzero_partial(const unsigned char* m, std::size_t w) {  // (w < 8)
        const __m128i b = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << w) - 1u), m);
        return static_cast<mask>(_mm_test_epi8_mask(b, b));
    }
    static reg select(mask m, reg a, reg b) { return _mm512_mask_blend_pd(m, b, a); }
    static T hmax(reg v) { return _mm512_reduce_max_pd(v); }
    // Integer class labels as lanes (as F32's)
    static reg label_lanes(const std::int64_t* p, std::size_t w, std::int64_t ignore, std::size_t n,
                           T ignored, T unusable) {
        const __mmask8 m = static_cast<__mmask8>(w >= 8 ? 0xff : (1u << w) - 1u);
        const __m512i ig = _mm512_set1_epi64(ignore);
        const __m512i y = _mm512_mask_loadu_epi64(ig, m, p);
        const __mmask8 skip = _mm512_cmpeq_epi64_mask(y, ig);
        const __mmask8 bad = static_cast<__mmask8>(
            ~skip & ~_mm512_cmplt_epu64_mask(y, _mm512_set1_epi64(static_cast<long long>(n))));
        reg v = _mm512_mask_mov_pd(_mm512_cvtepi64_pd(y), bad, _mm512_set1_pd(unusable));
        return _mm512_mask_mov_pd(v, skip, _mm512_set1_pd(ignored));
    }
    // dst[j * ds + i] = src[i * ss + j] for i, j < 8: 8 loads, 24 shuffles, 8 stores
    static void transpose(const T* src, std::ptrdiff_t ss, T* dst, std::ptrdiff_t ds) {
        reg u[8];  // u[2p + j]: lane k holds element 2k + j of rows 2p, 2p + 1
        for (int p = 0; p < 4; ++p) {
            const reg r0 = load(src + 2 * p * ss), r1 = load(src + (2 * p + 1) * ss);
            u[2 * p] = _mm512_unpacklo_pd(r0, r1);
            u[2 * p + 1] = _mm512_unpackhi_pd(r0, r1);
        }
        // column 2k + j: lane k of u[j], u[2 + j], u[4 + j], u[6 + j]
        for (int j = 0; j < 2; ++j) {
            const auto f = [](reg v) { return _mm512_castpd_ps(v); };
            __m512 col[4];
            transpose_lanes({f(u[j]), f(u[2 + j]), f(u[4 + j]), f(u[6 + j])}, col);
            for (int k = 0; k < 4; ++k) store(dst + (2 * k + j) * ds, _mm512_castps_pd(col[k]));
        }
    }

    // Double sums: Neumaier's compensated summation per lane (common_ops.hpp).
    struct Wide {
        reg sum, comp;
    };
};

// Half-precision storage (Converting, common_ops.hpp): 16 elements of 16 bits
// per float vector, masked loads and stores of 16-bit lanes (AVX512BW).
inline __mmask16 lanes16(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// bfloat16: the top half of a float. Widening is a shift; narrowing rounds
// to nearest even with integer adds (AVX512-BF16's vcvtneps2bf16 would also
// do, but flushes subnormals to zero).
struct Bf16Cvt {
    static __m512 widen(__m256i h) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    static __m512i narrow(__m512 v) {  // bfloat16 bits in the low half of each lane
        const __m512i u = _mm512_castps_si512(v);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
        const __m512i quiet = _mm512_or_si512(u, _mm512_set1_epi32(0x00400000));
        return _mm512_srli_epi32(
            _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), quiet), 16);
    }
    static __m512 load(const bfloat16* p) {
        return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static __m512 load_partial(const bfloat16* p, std::size_t n, float fill) {
        const __mmask16 m = lanes16(n);
        return _mm512_mask_blend_ps(m, _mm512_set1_ps(fill), widen(_mm256_maskz_loadu_epi16(m, p)));
    }
    static void store(bfloat16* p, __m512 v) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(narrow(v)));
    }
    static void store_partial(bfloat16* p, std::size_t n, __m512 v) {
        _mm512_mask_cvtepi32_storeu_epi16(p, lanes16(n), narrow(v));
    }
    static void stream(bfloat16* p, __m512 v) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(narrow(v)));
    }
};

// float16: vcvtph2ps / vcvtps2ph (round to nearest even, subnormals kept).
struct F16Cvt {
    static constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    static __m512 load(const float16* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static __m512 load_partial(const float16* p, std::size_t n, float fill) {
        const __mmask16 m = lanes16(n);
        return _mm512_mask_blend_ps(m, _mm512_set1_ps(fill),
                                    _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)));
    }
    static void store(float16* p, __m512 v) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, kRound));
    }
    static void store_partial(float16* p, std::size_t n, __m512 v) {
        _mm256_mask_storeu_epi16(p, lanes16(n), _mm512_cvtps_ph(v, kRound));
    }
    static void stream(float16* p, __m512 v) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, kRound));
    }
};

struct BF16 : Converting<F32, bfloat16, Bf16Cvt> {};
struct F16 : Converting<F32, float16, F16Cvt> {};

}  // namespace fastsoftmax::avx512
