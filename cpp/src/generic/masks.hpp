// The copy that masks (where=) go through: a line of x into a contiguous
// buffer, `fill` where the mask is False (driver.cpp: -inf for the logits, 0
// for a gradient, so that the plain row kernels leave those entries out).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fastsoftmax/kernels.hpp"
#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// The unsigned integer of S's size: the copy moves bit patterns (a NaN under
// the mask is never loaded as a float; half-precision values move as 16-bit
// words) ...
template <class S>
using BitsOf = std::conditional_t<sizeof(S) == 2, std::uint16_t,
                                  std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>>;

// ... and S's exponent field in them (all ones: +-inf or NaN).
template <class S>
constexpr BitsOf<S> exponent_bits() {
    if constexpr (std::is_same_v<S, float>)
        return 0x7f800000u;
    else if constexpr (std::is_same_v<S, double>)
        return 0x7ff0000000000000u;
    else if constexpr (std::is_same_v<S, bfloat16>)
        return 0x7f80u;
    else
        return 0x7c00u;
}

// to[i] = m[i * ms] ? x[i * xs] : fill for i < n (a mask byte is true when
// nonzero). Returns kMaskAny when any byte was true, plus kMaskNonFinite when
// an included value is +-inf or NaN (the kernels may then write NaN at the
// excluded entries too: driver.cpp rewrites them). The contiguous case is a
// loop the compiler vectorizes with this target's instructions (AVX-512: a
// byte compare into a mask register, then blends).
template <class S>
unsigned masked_copy(const S* x, std::ptrdiff_t xs, const unsigned char* m, std::ptrdiff_t ms,
                     S* to, std::size_t n, S fill) {
    using B = BitsOf<S>;
    static_assert(sizeof(B) == sizeof(S) && std::is_trivially_copyable_v<S>);
    constexpr B e = exponent_bits<S>();
    B f;
    std::memcpy(&f, &fill, sizeof f);
    unsigned char any = 0, bad = 0;
    if (xs == 1 && ms == 1) {
        for (std::size_t i = 0; i < n; ++i) {
            B v;
            std::memcpy(&v, x + i, sizeof v);
            const unsigned char k = m[i] != 0;
            any |= k;
            bad |= k & ((v & e) == e);
            v = k ? v : f;
            std::memcpy(to + i, &v, sizeof v);
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            B v;
            std::memcpy(&v, x + static_cast<std::ptrdiff_t>(i) * xs, sizeof v);
            const unsigned char k = m[static_cast<std::ptrdiff_t>(i) * ms] != 0;
            any |= k;
            bad |= k & ((v & e) == e);
            v = k ? v : f;
            std::memcpy(to + i, &v, sizeof v);
        }
    }
    return (any ? kMaskAny : 0u) | (bad ? kMaskNonFinite : 0u);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
