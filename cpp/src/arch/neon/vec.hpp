// AArch64 NEON (Advanced SIMD) vector wrappers (4 floats, 2 doubles) for the
// generic algorithms. NEON is part of every AArch64 CPU: no extra flags.
//
// NaN: vmaxq/vminq (FMAX/FMIN) and vmaxvq (FMAXV) return NaN when either
// operand is NaN, unlike x86 (the second operand). Every use in the generic
// code still gives NaN in -> NaN out, and the special cases are unchanged:
//   vexp   : min(exp_hi, NaN) and max(exp_lo, NaN) are NaN, so p and the
//            result are NaN; -inf is clamped to exp_lo, whose exp rounds to
//            +0; +inf to exp_hi, whose exp overflows to +inf.
//   row_max, ShortGroup, pipelined rows (max, hmax): a NaN makes the row
//            maximum NaN, which the callers send to special_rows.hpp (on x86
//            they find it through has_nan() or the NaN sum instead).
//   col_max: a NaN lane makes the lane's max NaN, so not_finite(max) holds
//            and the formulas give NaN (softmax, log_softmax: x - NaN;
//            logsumexp: the sum is NaN too, since exp(NaN - 0) is NaN).
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "arch/common_ops.hpp"

namespace fastsoftmax::neon {

// Bitwise not of a 64-bit lane mask (there is no vmvnq_u64).
inline uint64x2_t not64(uint64x2_t m) {
    return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(m)));
}

// The byte indices of F32's short transposes (TBL): byte b of lane l of
// column j (col) or block k (row) of rows of n, for ShortTransposeTables'
// lane l: 16 * (its vector) + 4 * (its lane) + b.
struct ShortBytes {
    alignas(16) std::uint8_t col[4][4][16] = {};
    alignas(16) std::uint8_t row[4][4][16] = {};
    constexpr ShortBytes() {
        constexpr ShortTransposeTables<4, std::int32_t> t{};
        for (std::size_t n = 1; n < 4; ++n)
            for (std::size_t j = 0; j < n; ++j)
                for (std::size_t l = 0; l < 4; ++l)
                    for (std::size_t b = 0; b < 4; ++b) {
                        col[n][j][4 * l + b] = static_cast<std::uint8_t>(
                            16 * t.col_src[n][j][l] + 4 * t.col_lane[n][j][l] + b);
                        row[n][j][4 * l + b] = static_cast<std::uint8_t>(
                            16 * t.row_src[n][j][l] + 4 * t.row_lane[n][j][l] + b);
                    }
    }
};

// No masked loads or stores in NEON: partial ones go lane by lane (LD1 / ST1
// of one lane), so nothing past p + n is read or written. (Through a stack
// buffer and memcpy, as on x86, the call in the kernels' loops made GCC
// reload every constant of vexp after it, in every iteration: no vector
// register survives a call.)
struct F32 : ScaleOrZero<F32> {
    using T = float;      // compute type (registers, scalars, scratch)
    using S = float;      // storage type (the caller's arrays)
    using Compute = F32;  // the wrapper for arrays of T
    using reg = float32x4_t;
    using mask = uint32x4_t;  // all-ones / all-zeros lanes
    static constexpr std::size_t N = 4;
    // subnormal results cost nothing extra on AArch64 cores (see vexp)
    static constexpr bool kSlowSubnormals = false;
    // rows of up to this many elements by tiles, softmax's up to 7
    // (generic/tiles.hpp)
    static constexpr std::size_t kTileRowsMax = 32;
    static constexpr std::size_t kSoftmaxTileRowsMax = 7;

    static reg load(const T* p) { return vld1q_f32(p); }
    static void store(T* p, reg v) { vst1q_f32(p, v); }
    static reg load_partial(const T* p, std::size_t n, T fill) {
        reg v = vdupq_n_f32(fill);
        if (n > 0) v = vld1q_lane_f32(p, v, 0);
        if (n > 1) v = vld1q_lane_f32(p + 1, v, 1);
        if (n > 2) v = vld1q_lane_f32(p + 2, v, 2);
        if (n > 3) v = vld1q_lane_f32(p + 3, v, 3);
        return v;
    }
    static void store_partial(T* p, std::size_t n, reg v) {
        if (n > 0) vst1q_lane_f32(p, v, 0);
        if (n > 1) vst1q_lane_f32(p + 1, v, 1);
        if (n > 2) vst1q_lane_f32(p + 2, v, 2);
        if (n > 3) vst1q_lane_f32(p + 3, v, 3);
    }
    // A plain store: NEON's only non-temporal store (STNP) is a pair-store
    // hint; no fence is needed.
    static void stream(T* p, reg v) { vst1q_f32(p, v); }
    static void stream_fence() {}
    static reg set1(T v) { return vdupq_n_f32(v); }
    static reg zero() { return vdupq_n_f32(0.0f); }
    static reg add(reg a, reg b) { return vaddq_f32(a, b); }
    static reg sub(reg a, reg b) { return vsubq_f32(a, b); }
    static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
    static reg div(reg a, reg b) { return vdivq_f32(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }   // a*b+c
    static reg fnmadd(reg a, reg b, reg c) { return vfmsq_f32(c, a, b); }  // c-a*b
    // NaN if either operand is NaN (see the top of this file).
    static reg max(reg a, reg b) { return vmaxq_f32(a, b); }
    static reg abs(reg a) { return vabsq_f32(a); }
    static reg min(reg a, reg b) { return vminq_f32(a, b); }
    // p * 2^n for integral n in [-252, 254]: two exact power-of-two factors,
    // so subnormal results are rounded once and large n overflow to +inf.
    static reg scale_pow2(reg p, reg n) {
        const int32x4_t ni = vcvtnq_s32_f32(n);
        const int32x4_t n1 = vshrq_n_s32(ni, 1);  // arithmetic: floor(n / 2)
        const int32x4_t n2 = vsubq_s32(ni, n1);
        const int32x4_t bias = vdupq_n_s32(127);
        const reg s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
        const reg s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
        return vmulq_f32(vmulq_f32(p, s1), s2);
    }
    // x = m * 2^e, m in [1, 2), for finite x > 0; subnormals are scaled by
    // 2^23 first. Other inputs give garbage that vlog replaces.
    static void frexp12(reg x, reg& m, reg& e) {
        const mask sub = vcltq_f32(x, vdupq_n_f32(1.17549435e-38f));
        x = vbslq_f32(sub, vmulq_f32(x, vdupq_n_f32(8388608.0f)), x);
        const uint32x4_t bits = vreinterpretq_u32_f32(x);
        const int32x4_t ebits =
            vreinterpretq_s32_u32(vandq_u32(vshrq_n_u32(bits, 23), vdupq_n_u32(0xff)));
        // subtract 127, and 23 more in scaled lanes
        const int32x4_t adj = vbslq_s32(sub, vdupq_n_s32(127 + 23), vdupq_n_s32(127));
        e = vcvtq_f32_s32(vsubq_s32(ebits, adj));
        m = vreinterpretq_f32_u32(
            vorrq_u32(vandq_u32(bits, vdupq_n_u32(0x007fffff)), vdupq_n_u32(0x3f800000)));
    }
    // Ordered comparisons: false when either operand is NaN.
    static mask lt(reg a, reg b) { return vcltq_f32(a, b); }
    static mask gt(reg a, reg b) { return vcgtq_f32(a, b); }
    static mask eq(reg a, reg b) { return vceqq_f32(a, b); }
    static mask ge(reg a, reg b) { return vcgeq_f32(a, b); }
    static mask isnan(reg a) { return vmvnq_u32(vceqq_f32(a, a)); }
    // a - a is 0 for finite a, NaN for +-inf and NaN
    static mask not_finite(reg a) {
        return vmvnq_u32(vceqq_f32(vsubq_f32(a, a), vdupq_n_f32(0.0f)));
    }
    static mask mask_or(mask a, mask b) { return vorrq_u32(a, b); }
    static mask bytes_nonzero(const unsigned char* m) {  // (4 bytes)
        std::uint32_t v;
        std::memcpy(&v, m, sizeof v);
        return lanes_of_bytes(v);
    }
    static mask bytes_nonzero_partial(const unsigned char* m, std::size_t w) {  // (w < 4)
        return lanes_of_bytes(static_cast<std::uint32_t>(low_bytes(m, w)));
    }
    static mask lanes_of_bytes(std::uint32_t v) {  // lane k: byte k of v
        const uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(v)));
        return vcgtq_u32(vmovl_u16(vget_low_u16(h)), vdupq_n_u32(0));
    }
    static reg select(mask m, reg a, reg b) { return vbslq_f32(m, a, b); }  // m ? a : b
    static T hmax(reg v) { return vmaxvq_f32(v); }  // NaN if any lane is NaN

    // dst[j * ds + i] = src[i * ss + j] for i, j < 4: 4 loads, 8 permutes
    // (TRN1/TRN2 of 32-bit lanes, then of their 64-bit pairs), 4 stores.
    static void transpose(const T* src, std::ptrdiff_t ss, T* dst, std::ptrdiff_t ds) {
        const reg r0 = load(src), r1 = load(src + ss), r2 = load(src + 2 * ss),
                  r3 = load(src + 3 * ss);
        // t0 = (r0[0], r1[0], r0[2], r1[2]), t1 = (r0[1], r1[1], r0[3], r1[3]); t2, t3 of r2, r3
        const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1));
        const float64x2_t t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
        const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3));
        const float64x2_t t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
        store(dst, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
        store(dst + ds, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
        store(dst + 2 * ds, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
        store(dst + 3 * ds, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
    }
    // The short transposes (arch/README.md), n < 4: rows[k] holds elements
    // 4k .. 4k + 3 of 4 rows of n laid end to end; column_of gives lane l =
    // element j of row l, block_of the inverse. n = 2 by UZP / ZIP; n = 3
    // by one table lookup over the three vectors (TBL, ShortBytes).
    static constexpr ShortBytes kShortBytes{};
    static reg lookup3(const reg* v, const std::uint8_t* bytes) {
        const uint8x16x3_t t = {
            {vreinterpretq_u8_f32(v[0]), vreinterpretq_u8_f32(v[1]), vreinterpretq_u8_f32(v[2])}};
        return vreinterpretq_f32_u8(vqtbl3q_u8(t, vld1q_u8(bytes)));
    }
    static reg column_of(const reg* rows, std::size_t n, std::size_t j) {
        if (n == 1) return rows[0];
        if (n == 2) return j == 0 ? vuzp1q_f32(rows[0], rows[1]) : vuzp2q_f32(rows[0], rows[1]);
        return lookup3(rows, kShortBytes.col[3][j]);  // (n == 3)
    }
    static reg block_of(const reg* cols, std::size_t n, std::size_t k) {
        if (n == 1) return cols[0];
        if (n == 2) return k == 0 ? vzip1q_f32(cols[0], cols[1]) : vzip2q_f32(cols[0], cols[1]);
        return lookup3(cols, kShortBytes.row[3][k]);  // (n == 3)
    }

    // Float sums are accumulated in double: two lanes of double per half.
    struct Wide {
        float64x2_t lo, hi;
    };
    static Wide wide_zero() { return {vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
    static void wide_add(Wide& w, reg v) {
        w.lo = vaddq_f64(w.lo, vcvt_f64_f32(vget_low_f32(v)));
        w.hi = vaddq_f64(w.hi, vcvt_high_f64_f32(v));
    }
    static double wide_hsum(const Wide& w) { return vaddvq_f64(vaddq_f64(w.lo, w.hi)); }
    // the per-lane sums, lanes in order
    static void wide_store(const Wide& w, double* lanes) {
        vst1q_f64(lanes, w.lo);
        vst1q_f64(lanes + 2, w.hi);
    }
    static reg wide_round(const Wide& w) { return vcvt_high_f32_f64(vcvt_f32_f64(w.lo), w.hi); }
    static void wide_reciprocal(const Wide& w, reg& hi, reg& lo) {
        const float64x2_t one = vdupq_n_f64(1.0);
        const float64x2_t r0 = vdivq_f64(one, w.lo), r1 = vdivq_f64(one, w.hi);
        const float32x2_t h0 = vcvt_f32_f64(r0);
        hi = vcvt_high_f32_f64(h0, r1);
        const float64x2_t d0 = vsubq_f64(r0, vcvt_f64_f32(h0));
        const float64x2_t d1 = vsubq_f64(r1, vcvt_high_f64_f32(hi));
        lo = vcvt_high_f32_f64(vcvt_f32_f64(d0), d1);
    }
};

struct F64 : ScaleOrZero<F64>, NeumaierLanes<F64> {
    using T = double;     // compute type (registers, scalars, scratch)
    using S = double;     // storage type (the caller's arrays)
    using Compute = F64;  // the wrapper for arrays of T
    using reg = float64x2_t;
    using mask = uint64x2_t;
    static constexpr std::size_t N = 2;
    // subnormal results cost nothing extra on AArch64 cores (see vexp)
    static constexpr bool kSlowSubnormals = false;

    static reg load(const T* p) { return vld1q_f64(p); }
    static void store(T* p, reg v) { vst1q_f64(p, v); }
    // (lane by lane, as F32's)
    static reg load_partial(const T* p, std::size_t n, T fill) {
        reg v = vdupq_n_f64(fill);
        if (n > 0) v = vld1q_lane_f64(p, v, 0);
        if (n > 1) v = vld1q_lane_f64(p + 1, v, 1);
        return v;
    }
    static void store_partial(T* p, std::size_t n, reg v) {
        if (n > 0) vst1q_lane_f64(p, v, 0);
        if (n > 1) vst1q_lane_f64(p + 1, v, 1);
    }
    static void stream(T* p, reg v) { vst1q_f64(p, v); }
    static void stream_fence() {}
    static reg set1(T v) { return vdupq_n_f64(v); }
    static reg zero() { return vdupq_n_f64(0.0); }
    static reg add(reg a, reg b) { return vaddq_f64(a, b); }
    static reg sub(reg a, reg b) { return vsubq_f64(a, b); }
    static reg mul(reg a, reg b) { return vmulq_f64(a, b); }
    static reg div(reg a, reg b) { return vdivq_f64(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return vfmaq_f64(c, a, b); }
    static reg fnmadd(reg a, reg b, reg c) { return vfmsq_f64(c, a, b); }
    static reg max(reg a, reg b) { return vmaxq_f64(a, b); }
    static reg abs(reg a) { return vabsq_f64(a); }
    static reg min(reg a, reg b) { return vminq_f64(a, b); }
    // p * 2^n for integral n in [-2044, 2046].
    static reg scale_pow2(reg p, reg n) {
        const int64x2_t ni = vcvtnq_s64_f64(n);
        const int64x2_t n1 = vshrq_n_s64(ni, 1);
        const int64x2_t n2 = vsubq_s64(ni, n1);
        const int64x2_t bias = vdupq_n_s64(1023);
        const reg s1 = vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(n1, bias), 52));
        const reg s2 = vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(n2, bias), 52));
        return vmulq_f64(vmulq_f64(p, s1), s2);
    }
    static void frexp12(reg x, reg& m, reg& e) {
        const mask sub = vcltq_f64(x, vdupq_n_f64(2.2250738585072014e-308));
        x = vbslq_f64(sub, vmulq_f64(x, vdupq_n_f64(4503599627370496.0)), x);  // 2^52
        const uint64x2_t bits = vreinterpretq_u64_f64(x);
        const int64x2_t ebits =
            vreinterpretq_s64_u64(vandq_u64(vshrq_n_u64(bits, 52), vdupq_n_u64(0x7ff)));
        const int64x2_t adj = vbslq_s64(sub, vdupq_n_s64(1023 + 52), vdupq_n_s64(1023));
        e = vcvtq_f64_s64(vsubq_s64(ebits, adj));
        m = vreinterpretq_f64_u64(vorrq_u64(vandq_u64(bits, vdupq_n_u64(0x000fffffffffffffULL)),
                                            vdupq_n_u64(0x3ff0000000000000ULL)));
    }
    static mask lt(reg a, reg b) { return vcltq_f64(a, b); }
    static mask gt(reg a, reg b) { return vcgtq_f64(a, b); }
    static mask eq(reg a, reg b) { return vceqq_f64(a, b); }
    static mask ge(reg a, reg b) { return vcgeq_f64(a, b); }
    static mask isnan(reg a) { return not64(vceqq_f64(a, a)); }
    static mask not_finite(reg a) { return not64(vceqq_f64(vsubq_f64(a, a), vdupq_n_f64(0.0))); }
    static mask mask_or(mask a, mask b) { return vorrq_u64(a, b); }
    static mask bytes_nonzero(const unsigned char* m) {  // (2 bytes)
        std::uint16_t v;
        std::memcpy(&v, m, sizeof v);
        return lanes_of_bytes(v);
    }
    static mask bytes_nonzero_partial(const unsigned char* m, std::size_t n) {  // (n < 2)
        return lanes_of_bytes(static_cast<std::uint16_t>(low_bytes(m, n)));
    }
    static mask lanes_of_bytes(std::uint16_t v) {  // lane k: byte k of v
        const uint16x8_t h = vmovl_u8(vreinterpret_u8_u16(vdup_n_u16(v)));
        const uint32x4_t w = vmovl_u16(vget_low_u16(h));
        return vcgtq_u64(vmovl_u32(vget_low_u32(w)), vdupq_n_u64(0));
    }
    static reg select(mask m, reg a, reg b) { return vbslq_f64(m, a, b); }
    static T hmax(reg v) { return vmaxvq_f64(v); }

    // Double sums: Neumaier's compensated summation per lane (common_ops.hpp).
    struct Wide {
        reg sum, comp;
    };
};

// Half-precision storage (Converting, common_ops.hpp): 4 elements of 16 bits
// per float vector; partial loads and stores lane by lane, as F32's.
inline const std::uint16_t* bits16(const void* p) { return static_cast<const std::uint16_t*>(p); }
inline std::uint16_t* bits16(void* p) { return static_cast<std::uint16_t*>(p); }
// lanes [0, n) of p, 0 past them
inline uint16x4_t load16_lanes(const std::uint16_t* p, std::size_t n) {
    uint16x4_t h = vdup_n_u16(0);
    if (n > 0) h = vld1_lane_u16(p, h, 0);
    if (n > 1) h = vld1_lane_u16(p + 1, h, 1);
    if (n > 2) h = vld1_lane_u16(p + 2, h, 2);
    if (n > 3) h = vld1_lane_u16(p + 3, h, 3);
    return h;
}
inline void store16_lanes(std::uint16_t* p, std::size_t n, uint16x4_t h) {
    if (n > 0) vst1_lane_u16(p, h, 0);
    if (n > 1) vst1_lane_u16(p + 1, h, 1);
    if (n > 2) vst1_lane_u16(p + 2, h, 2);
    if (n > 3) vst1_lane_u16(p + 3, h, 3);
}
// v in lanes [0, n), fill past them
inline float32x4_t fill_past(float32x4_t v, std::size_t n, float fill) {
    const uint32x4_t lane = {0, 1, 2, 3};
    return vbslq_f32(vcltq_u32(lane, vdupq_n_u32(static_cast<std::uint32_t>(n))), v,
                     vdupq_n_f32(fill));
}

// The loads and stores of Converting's Cvt for 16-bit storage H, from
// C::widen (4 elements' bits to floats, exactly) and C::narrow (floats to
// bits, rounded).
template <class C, class H>
struct Bits16Cvt {
    static float32x4_t load(const H* p) { return C::widen(vld1_u16(bits16(p))); }
    static void store(H* p, float32x4_t v) { vst1_u16(bits16(p), C::narrow(v)); }
    static float32x4_t load_partial(const H* p, std::size_t n, float fill) {
        return fill_past(C::widen(load16_lanes(bits16(p), n)), n, fill);
    }
    static void store_partial(H* p, std::size_t n, float32x4_t v) {
        store16_lanes(bits16(p), n, C::narrow(v));
    }
};

// bfloat16: the top half of a float; narrowing rounds to nearest even.
struct Bf16Cvt : Bits16Cvt<Bf16Cvt, bfloat16> {
    static float32x4_t widen(uint16x4_t h) { return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); }
    static uint16x4_t narrow(float32x4_t v) {
        const uint32x4_t u = vreinterpretq_u32_f32(v);
        const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
        uint32x4_t r = vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb);
        const uint32x4_t nan = vmvnq_u32(vceqq_f32(v, v));
        r = vbslq_u32(nan, vorrq_u32(u, vdupq_n_u32(0x00400000)), r);
        return vshrn_n_u32(r, 16);
    }
};

// float16: FCVTL / FCVTN (round to nearest even, the default FPCR mode).
struct F16Cvt : Bits16Cvt<F16Cvt, float16> {
    static float32x4_t widen(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
    static uint16x4_t narrow(float32x4_t v) { return vreinterpret_u16_f16(vcvt_f16_f32(v)); }
};

struct BF16 : Converting<F32, bfloat16, Bf16Cvt> {};
struct F16 : Converting<F32, float16, F16Cvt> {};

}  // namespace fastsoftmax::neon
