// Portable baseline: a one-lane "vector" in plain C++, always built. The
// compiler may still auto-vectorize the loops with the ISA's base flags
// (SSE2 on x86-64). No FMA is assumed: fmadd is a*b+c, rounded twice.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "arch/common_ops.hpp"

namespace fastsoftmax::baseline {

template <class T_, class Bits, int MantBits, int Bias>
struct Scalar : ScaleOrZero<Scalar<T_, Bits, MantBits, Bias>> {
    using T = T_;  // compute type (registers, scalars, scratch)
    using S = T_;  // storage type (the caller's arrays)
    using reg = T;
    using mask = bool;
    static constexpr std::size_t N = 1;
    // an underflowing multiply costs a microcode assist (see vexp)
    static constexpr bool kSlowSubnormals = true;

    static reg load(const T* p) { return *p; }
    static reg load_partial(const T* p, std::size_t n, T fill) { return n ? *p : fill; }
    static void store(T* p, reg v) { *p = v; }
    static void store_partial(T* p, std::size_t n, reg v) {
        if (n) *p = v;
    }
    static void stream(T* p, reg v) { *p = v; }  // no portable non-temporal store
    static void stream_fence() {}
    static reg set1(T v) { return v; }
    static reg zero() { return T(0); }
    static reg add(reg a, reg b) { return a + b; }
    static reg sub(reg a, reg b) { return a - b; }
    static reg mul(reg a, reg b) { return a * b; }
    static reg div(reg a, reg b) { return a / b; }
    static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
    static reg fnmadd(reg a, reg b, reg c) { return c - a * b; }
    // x86 semantics: the second operand when either is NaN.
    static reg max(reg a, reg b) { return a > b ? a : b; }
    static reg min(reg a, reg b) { return a < b ? a : b; }
    static reg abs(reg a) { return std::fabs(a); }
    static Bits pow2_bits(Bits e) { return (e + Bias) << MantBits; }
    // p * 2^n for integral n in [-2 * Bias, 2 * Bias]; outside it (n infinite or
    // NaN: then p is NaN too, and so is the result) no integer conversion is
    // attempted, which would be undefined behaviour.
    static reg scale_pow2(reg p, reg n) {
        if (!(std::fabs(n) <= T(2 * Bias))) return p * n;
        const auto ni = static_cast<std::int64_t>(n);
        const auto n1 = ni >= 0 ? ni / 2 : -((-ni + 1) / 2);  // floor(n / 2)
        const auto n2 = ni - n1;
        T s1, s2;
        const Bits b1 = pow2_bits(static_cast<Bits>(n1)), b2 = pow2_bits(static_cast<Bits>(n2));
        std::memcpy(&s1, &b1, sizeof(T));
        std::memcpy(&s2, &b2, sizeof(T));
        return p * s1 * s2;
    }
    static void frexp12(reg x, reg& m, reg& e) {
        int ei = 0;
        m = std::frexp(x, &ei) * T(2);  // [0.5, 1) -> [1, 2)
        e = static_cast<T>(ei - 1);
    }
    static mask lt(reg a, reg b) { return a < b; }
    static mask gt(reg a, reg b) { return a > b; }
    static mask eq(reg a, reg b) { return a == b; }
    static mask ge(reg a, reg b) { return a >= b; }
    static mask isnan(reg a) { return a != a; }
    static mask not_finite(reg a) { return !std::isfinite(a); }
    static mask mask_or(mask a, mask b) { return a || b; }
    static mask bytes_nonzero(const unsigned char* m) { return m[0] != 0; }
    static mask bytes_nonzero_partial(const unsigned char* m, std::size_t w) {
        return w != 0 && m[0] != 0;
    }
    static reg select(mask m, reg a, reg b) { return m ? a : b; }
    static T hmax(reg v) { return v; }
};

struct F32 : Scalar<float, std::uint32_t, 23, 127> {
    using Compute = F32;
    using Wide = double;
    static Wide wide_zero() { return 0.0; }
    static void wide_add(Wide& w, reg v) { w += v; }
    static double wide_hsum(const Wide& w) { return w; }
    static reg wide_round(const Wide& w) { return static_cast<float>(w); }
    static void wide_store(const Wide& w, double* lanes) { lanes[0] = w; }
    static void wide_reciprocal(const Wide& w, reg& hi, reg& lo) {
        const double inv = 1.0 / w;
        hi = static_cast<float>(inv);
        lo = static_cast<float>(inv - static_cast<double>(hi));
    }
};

struct F64 : Scalar<double, std::uint64_t, 52, 1023> {
    using Compute = F64;
    using Wide = NeumaierSum;
    static Wide wide_zero() { return {}; }
    static void wide_add(Wide& w, reg v) { w.add(v); }
    static double wide_hsum(const Wide& w) { return w.value(); }
    static reg wide_round(const Wide& w) { return w.value(); }
    static void wide_store(const Wide& w, double* lanes) { lanes[0] = w.value(); }
    static void wide_reciprocal(const Wide& w, reg& hi, reg& lo) {
        hi = 1.0 / w.value();
        lo = hi - hi;  // 0, or NaN with hi
    }
};

// Half-precision storage (Converting, common_ops.hpp): one element at a time,
// by the portable scalar conversions of fastsoftmax/half.hpp.
template <class H>
struct ScalarCvt {
    static float load(const H* p) { return to_compute(*p); }
    static void store(H* p, float v) { *p = to_storage<H>(v); }
};

struct BF16 : Converting<F32, bfloat16, ScalarCvt<bfloat16>> {};
struct F16 : Converting<F32, float16, ScalarCvt<float16>> {};

}  // namespace fastsoftmax::baseline
