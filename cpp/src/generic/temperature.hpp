// The softmax family at a temperature: softmax(x / T), log_softmax(x / T),
// logsumexp(x / T) and their gradients with respect to x, with no pass and
// no array beyond the plain kernels'. With s = 1 / T > 0 the maximum of
// x * s is max(x) * s, so every kernel finds m = max(x) as before and only
// changes what it computes from x - m:
//   softmax     exp((x - m) * s) / sum,   the product folded into exp's
//               argument reduction (vec_math.hpp: exp_scaled), x - m exact:
//               as accurate as at T = 1, and more than softmax(x / T) of the
//               rounded quotients;
//   log_softmax (x - m) * s - log(sum),  one rounding after x - m;
//   logsumexp   m * s + log(sum);
//   backward    the plain result times s.
// A kernel takes one of the two policies below by value (its type picks the
// code: Unscaled is the plain kernels' arithmetic, unchanged) from
// with_temperature, which reads params.scale.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "fastsoftmax/kernels.hpp"
#include "generic/target.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// C is the compute wrapper (V::Compute: the arithmetic, whatever the storage).
template <class C>
struct Unscaled {
    using T = typename C::T;
    using reg = typename C::reg;
    // exp((x - m) * s) of the exact difference, 0 below lo = floor(m)
    reg exp_sub(reg x, reg m, reg lo) const { return vexp_sub<C>(x, m, lo); }
    // exp(d * s) for a difference d = x - m already rounded (sums that feed a log)
    reg exp_of(reg d) const { return vexp<C>(d); }
    reg floor(reg m) const { return exp_floor<C>(m); }
    template <class U>  // (a scalar; where reg is T, the reg one: the same value)
    U floor(U m) const {
        return exp_floor(m);
    }
    // log_softmax's (x - m) * s - l
    reg shifted(reg x, reg m, reg l) const { return C::sub(C::sub(x, m), l); }
    // logsumexp's m * s + l
    reg top(reg m, reg l) const { return C::add(m, l); }
    template <class U>  // (scalars: float or double)
    U top(U m, U l) const {
        return m + l;
    }
    reg times(reg v) const { return v; }
    double scale() const { return 1.0; }
};

template <class C>
struct Scaled {
    using T = typename C::T;
    using reg = typename C::reg;
    // (every path scales by the same rounded s, in T or in double, so that a
    // row's result does not depend on which path its shape takes)
    explicit Scaled(double scale)
        : s(static_cast<double>(static_cast<T>(scale))),
          // -exp_lo / s: differences below -span give exp < e^exp_lo (0); at
          // most T's largest value (a larger T only lowers the floor further)
          span(static_cast<T>(std::min(-static_cast<double>(MathConsts<T>::exp_lo) / s,
                                       static_cast<double>(std::numeric_limits<T>::max())))),
          vs(C::set1(static_cast<T>(s))),
          vs_log2e(C::set1(static_cast<T>(s * static_cast<double>(MathConsts<T>::log2e)))),
          vspan(C::set1(span)),
          vd_lo(C::set1(-span)) {}
    reg exp_sub(reg x, reg m, reg lo) const {
        return vexp_sub_scaled<C>(x, m, lo, vs, vs_log2e, vd_lo);
    }
    reg exp_of(reg d) const { return vexp<C>(C::mul(d, vs)); }
    reg floor(reg m) const { return exp_floor<C>(m, vspan); }
    template <class U>
    U floor(U m) const {
        return exp_floor(m, span);
    }
    reg shifted(reg x, reg m, reg l) const {
        return C::fmadd(C::sub(x, m), vs, C::sub(C::zero(), l));
    }
    reg top(reg m, reg l) const { return C::fmadd(m, vs, l); }
    template <class U>
    U top(U m, U l) const {
        return std::fma(m, static_cast<U>(s), l);
    }
    reg times(reg v) const { return C::mul(v, vs); }
    double scale() const { return s; }

  private:
    double s;
    T span;
    reg vs, vs_log2e, vspan, vd_lo;
};

// f(Unscaled<C>{}) at temperature 1 (the scale rounds to 1 in T), else
// f(Scaled<C>(params.scale)); returns what f returns.
template <class V, class F>
auto with_temperature(const SoftmaxParams& params, F&& f) {
    using C = typename V::Compute;
    if (static_cast<typename C::T>(params.scale) == typename C::T(1)) return f(Unscaled<C>{});
    return f(Scaled<C>(params.scale));
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
