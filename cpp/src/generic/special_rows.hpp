// Rows whose maximum is not finite (a NaN, a +inf, or only -inf entries)
// take this scalar path, which reproduces SciPy's answers exactly:
//   softmax      : every entry NaN;
//   log_softmax  : NaN present or all -inf -> every entry NaN;
//                  max +inf -> NaN where x = +inf, -inf elsewhere;
//   logsumexp    : NaN present -> NaN, else the maximum (+inf or -inf).
// Strides are in elements.
#pragma once

#include <cstddef>
#include <limits>

#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

struct RowExtremes {
    bool has_nan = false;
    bool has_pos_inf = false;
    bool all_neg_inf = true;
};

template <class T>
RowExtremes scan_extremes(const T* x, std::ptrdiff_t xs, std::size_t n) {
    RowExtremes r;
    constexpr T inf = std::numeric_limits<T>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
        const T v = x[static_cast<std::ptrdiff_t>(i) * xs];
        if (v != v) r.has_nan = true;
        if (v == inf) r.has_pos_inf = true;
        if (v != -inf) r.all_neg_inf = false;
    }
    return r;
}

template <class T>
void fill_strided(T* y, std::ptrdiff_t ys, std::size_t n, T value) {
    for (std::size_t i = 0; i < n; ++i) y[static_cast<std::ptrdiff_t>(i) * ys] = value;
}

template <class T>
void softmax_special(T* y, std::ptrdiff_t ys, std::size_t n) {
    fill_strided(y, ys, n, std::numeric_limits<T>::quiet_NaN());
}

// x is read before y is written, element by element, so y may alias x.
template <class T>
void log_softmax_special(const T* x, std::ptrdiff_t xs, T* y, std::ptrdiff_t ys, std::size_t n) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr T nan = std::numeric_limits<T>::quiet_NaN();
    const RowExtremes r = scan_extremes(x, xs, n);
    if (r.has_nan || !r.has_pos_inf) {  // NaN present, or all -inf
        fill_strided(y, ys, n, nan);
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const T v = x[static_cast<std::ptrdiff_t>(i) * xs];
        y[static_cast<std::ptrdiff_t>(i) * ys] = (v == inf) ? nan : -inf;
    }
}

template <class T>
T logsumexp_special(const T* x, std::ptrdiff_t xs, std::size_t n) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    const RowExtremes r = scan_extremes(x, xs, n);
    if (r.has_nan) return std::numeric_limits<T>::quiet_NaN();
    return r.has_pos_inf ? inf : -inf;
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
