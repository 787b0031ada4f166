// Rows whose maximum is not finite (a NaN, a +inf, or only -inf entries)
// take this scalar path, which reproduces SciPy's answers exactly:
//   softmax      : every entry NaN;
//   log_softmax  : NaN present or all -inf -> every entry NaN;
//                  max +inf -> NaN where x = +inf, -inf elsewhere;
//   logsumexp    : NaN present -> NaN, else the maximum (+inf or -inf).
// Strides are in elements; S is the storage type (its values are compared and
// written in the compute type, compute_t<S>). With a where= mask m (one byte
// per entry, contiguous), the included entries alone are the row, and
// softmax writes 0 at the others, log_softmax -inf.
#pragma once

#include <cstddef>
#include <limits>

#include "fastsoftmax/half.hpp"
#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

struct RowExtremes {
    bool has_nan = false;
    bool has_pos_inf = false;
    bool all_neg_inf = true;
};

template <class S>
RowExtremes scan_extremes(const S* x, std::ptrdiff_t xs, std::size_t n,
                          const unsigned char* m = nullptr) {
    using T = compute_t<S>;
    RowExtremes r;
    constexpr T inf = std::numeric_limits<T>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
        if (m && !m[i]) continue;
        const T v = to_compute(x[static_cast<std::ptrdiff_t>(i) * xs]);
        if (v != v) r.has_nan = true;
        if (v == inf) r.has_pos_inf = true;
        if (v != -inf) r.all_neg_inf = false;
    }
    return r;
}

template <class S>
void fill_strided(S* y, std::ptrdiff_t ys, std::size_t n, compute_t<S> value) {
    const S v = to_storage<S>(value);
    for (std::size_t i = 0; i < n; ++i) y[static_cast<std::ptrdiff_t>(i) * ys] = v;
}

// (with a mask: NaN at the included entries, 0 at the others)
template <class S>
void softmax_special(S* y, std::ptrdiff_t ys, std::size_t n, const unsigned char* m = nullptr) {
    using T = compute_t<S>;
    if (!m) return fill_strided(y, ys, n, std::numeric_limits<T>::quiet_NaN());
    for (std::size_t i = 0; i < n; ++i)
        y[static_cast<std::ptrdiff_t>(i) * ys] =
            to_storage<S>(m[i] ? std::numeric_limits<T>::quiet_NaN() : T(0));
}

// x is read before y is written, element by element, so y may alias x.
template <class S>
void log_softmax_special(const S* x, std::ptrdiff_t xs, S* y, std::ptrdiff_t ys, std::size_t n,
                         const unsigned char* m = nullptr) {
    using T = compute_t<S>;
    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr T nan = std::numeric_limits<T>::quiet_NaN();
    const RowExtremes r = scan_extremes(x, xs, n, m);
    const bool all_nan = r.has_nan || !r.has_pos_inf;  // NaN present, or all -inf
    if (all_nan && !m) {
        fill_strided(y, ys, n, nan);
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const T v = to_compute(x[static_cast<std::ptrdiff_t>(i) * xs]);
        y[static_cast<std::ptrdiff_t>(i) * ys] = to_storage<S>(m && !m[i]              ? -inf
                                                               : (all_nan || v == inf) ? nan
                                                                                       : -inf);
    }
}

// (in the compute type: the caller stores it)
template <class S>
compute_t<S> logsumexp_special(const S* x, std::ptrdiff_t xs, std::size_t n,
                               const unsigned char* m = nullptr) {
    using T = compute_t<S>;
    constexpr T inf = std::numeric_limits<T>::infinity();
    const RowExtremes r = scan_extremes(x, xs, n, m);
    if (r.has_nan) return std::numeric_limits<T>::quiet_NaN();
    return r.has_pos_inf ? inf : -inf;
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
