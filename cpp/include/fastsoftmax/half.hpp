// The half-precision storage types: bfloat16 and IEEE binary16 (float16).
//
// The functions here are static (internal linkage): the per-target objects
// (cpp/src/arch/instantiate.cpp, compiled with AVX-512 flags, say) inline or
// emit their own copies, and the linker cannot hand one target's copy to
// another target's code (.ci/run checks each target's symbols).
//
// Both are 16-bit patterns the kernels load into float32 registers and store
// back from them (arch/<isa>/vec.hpp converts whole vectors); all arithmetic
// is in float32 (compute_t<S> is float). The scalar conversions here are
// portable and exact: widening is exact, narrowing rounds to nearest, ties to
// even, with overflow to +-inf, gradual underflow (float16 subnormals) and
// NaN kept a quiet NaN of the same sign.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fastsoftmax {

// Distinct types (not uint16_t) so that a kernel for bfloat16 cannot be called
// on float16 data, nor either one on integers.
struct bfloat16 {
    std::uint16_t bits;
};
struct float16 {
    std::uint16_t bits;
};

namespace half_detail {
static inline std::uint32_t bits_of(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
static inline float float_of(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
}  // namespace half_detail

static inline float to_float(bfloat16 h) {
    return half_detail::float_of(std::uint32_t(h.bits) << 16);
}

static inline bfloat16 to_bfloat16(float f) {
    const std::uint32_t u = half_detail::bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)  // NaN: keep the sign and top payload, set quiet
        return {static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
    // round to nearest even on the 16 dropped bits (a carry into the exponent
    // is the correct rounding, up to +-inf)
    return {static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

static inline float to_float(float16 h) {
    const std::uint32_t sign = std::uint32_t(h.bits & 0x8000u) << 16;
    const std::uint32_t exp = (h.bits >> 10) & 0x1fu;
    const std::uint32_t mant = h.bits & 0x3ffu;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
        const float v = static_cast<float>(mant) * 0x1p-24f;
        return half_detail::float_of(half_detail::bits_of(v) | sign);
    }
    if (exp == 31) return half_detail::float_of(sign | 0x7f800000u | (mant << 13));  // inf, NaN
    return half_detail::float_of(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline float16 to_float16(float f) {
    using half_detail::bits_of;
    using half_detail::float_of;
    std::uint32_t u = bits_of(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    std::uint32_t h;
    if (u > 0x7f800000u) {
        h = 0x7e00u | ((u >> 13) & 0x3ffu);  // NaN: quiet, top payload bits kept
    } else if (u >= 0x477ff000u) {
        h = 0x7c00u;  // rounds to or beyond 65520: +-inf (and inf itself)
    } else if (u < 0x38800000u) {
        // below 2^-14: a float16 subnormal or zero. Adding 0.5 aligns the
        // result's last bit with float's last mantissa bit, so the float
        // addition itself rounds to nearest even (default rounding mode).
        h = bits_of(float_of(u) + 0.5f) - bits_of(0.5f);
    } else {
        // normal: rebias the exponent, round the 13 dropped bits to nearest even
        h = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;  // 0xc8000000: (15 - 127) << 23
    }
    return {static_cast<std::uint16_t>(h | sign)};
}

// The compute type of a storage type S: the type of the registers, scalars
// and scratch buffers a kernel for arrays of S works in (float for float and
// the half-precision types, double for double).
template <class S>
struct ComputeOf {
    using type = S;
};
template <>
struct ComputeOf<bfloat16> {
    using type = float;
};
template <>
struct ComputeOf<float16> {
    using type = float;
};
template <class S>
using compute_t = typename ComputeOf<S>::type;

// One element of storage type S as its compute type, and back (rounded to
// nearest even): the scalar paths of the kernels (the vector ones convert in
// registers, arch/<isa>/vec.hpp).
static inline float to_compute(float v) { return v; }
static inline double to_compute(double v) { return v; }
static inline float to_compute(bfloat16 v) { return to_float(v); }
static inline float to_compute(float16 v) { return to_float(v); }

template <class S>
static inline S to_storage(compute_t<S> v) {
    if constexpr (std::is_same_v<S, bfloat16>)
        return to_bfloat16(v);
    else if constexpr (std::is_same_v<S, float16>)
        return to_float16(v);
    else
        return v;
}

}  // namespace fastsoftmax
