// The softmax family at a temperature: softmax(x / T), log_softmax(x / T),
// logsumexp(x / T) and their gradients with respect to x, with no pass and
// no array beyond the plain kernels'. With s = 1 / T > 0 the maximum of
// x * s is max(x) * s, so every kernel finds m = max(x) as before and only
// changes what it computes from x - m:
//   softmax     exp((x - m) * s) / sum,   s folded into the exponential's
//               constants (vec_math.hpp: FoldedExp), x - m exact: as
//               accurate as at T = 1, and more than softmax(x / T) of the
//               rounded quotients;
//   log_softmax (x - m) * s - log(sum),  one rounding after x - m;
//   logsumexp   m * s + log(sum);
//   backward    the plain result times s.
// A kernel takes one of the policies below by value (its type picks the
// code: Unscaled is the plain kernels' arithmetic, unchanged) from
// with_temperature, which reads params.scale.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

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
    // exp((x - m) * s), x - m rounded (the sums that feed a log)
    reg exp_diff(reg x, reg m) const { return vexp<C>(C::sub(x, m)); }
    reg floor(reg m) const { return exp_floor<C>(m); }
    template <class U>  // (a scalar; where reg is T, the reg one: the same value)
    U floor(U m) const {
        return exp_floor(m);
    }
    // log_softmax's (x - m) * s - l (shifted_as<kHalve>: the same, for a
    // loop that chose by halves() once)
    reg shifted(reg x, reg m, reg l) const { return C::sub(C::sub(x, m), l); }
    template <bool kHalve>
    reg shifted_as(reg x, reg m, reg l) const {
        return shifted(x, m, l);
    }
    bool halves() const { return false; }
    // logsumexp's m * s + l
    reg top(reg m, reg l) const { return C::add(m, l); }
    template <class U>  // (scalars: float or double)
    U top(U m, U l) const {
        return m + l;
    }
    reg times(reg v) const { return v; }
    double scale() const { return 1.0; }
};

// The exponentials by FoldedExp, the scale folded into its constants: no
// more work than at T = 1 for s within its range (kFold); beyond it (very
// small or large temperatures), s = 2^k s' with s' in [1, 2), and each
// difference is first multiplied by 2^k (exactly: one more operation).
template <class C, bool kFold>
struct Scaled {
    using T = typename C::T;
    using reg = typename C::reg;
    // (every path scales by the same rounded s, in T or in double, so that a
    // row's result does not depend on which path its shape takes)
    explicit Scaled(double scale)
        : s(static_cast<double>(static_cast<T>(scale))),
          // -exp_lo / s: differences below -span give exp < e^exp_lo (0); at
          // most T's largest value (a larger T only lowers the floor further)
          span(or_inf(-static_cast<double>(MathConsts<T>::exp_lo) / s)),
          vs(C::set1(static_cast<T>(s))),
          vspan(C::set1(span)),
          vd_lo(C::set1(-span)),
          vd_hi(C::set1(at_most_max(static_cast<double>(MathConsts<T>::exp_hi) / s))),
          vpow(C::set1(static_cast<T>(kFold ? 1.0 : std::ldexp(1.0, std::ilogb(s))))),
          vs2(C::set1(static_cast<T>(2 * s))),
          fold(kFold ? s : std::ldexp(s, -std::ilogb(s))) {}
    // (vexp_sub's steps: x - m exact by TwoSum, 0 below lo; beyond the fold,
    // x and m times 2^k first, so that x - m cannot overflow where
    // (x - m) * s does not)
    reg exp_sub(reg x, reg m, reg lo) const {
        const auto zero = C::lt(x, lo);  // false for NaN
        const auto xc = pow2(C::kSlowSubnormals ? C::select(zero, m, x) : x);
        const auto mc = pow2(m);
        const auto d = C::sub(xc, mc);
        const auto bb = C::sub(d, xc);
        const auto err = C::sub(C::sub(xc, C::sub(d, bb)), C::add(mc, bb));
        return fold.template clamped<true>(C::max(pow2(vd_lo), d), err, zero);
    }
    // (vexp's clamps, on d: [exp_lo, exp_hi] / s; the operand orders keep NaN;
    // beyond the fold, x and m times 2^k first, as in exp_sub)
    reg exp_diff(reg x, reg m) const {
        const reg d = C::min(pow2(vd_hi), C::sub(pow2(x), pow2(m)));
        const auto zero = C::lt(d, pow2(vd_lo));  // (as in vexp: no assist below the range)
        if constexpr (C::kSlowSubnormals)
            return fold.template clamped<false>(C::select(zero, C::zero(), d), d, zero);
        else
            return fold.template clamped<false>(C::max(pow2(vd_lo), d), d, zero);
    }
    reg floor(reg m) const { return exp_floor<C>(m, vspan); }
    template <class U>
    U floor(U m) const {
        return exp_floor(m, span);
    }
    // (x - m) * s - l; for s < 1 (halves()) as (x/2 - m/2) * 2s, which does
    // not overflow where (x - m) * s does not (a row spread beyond T's
    // largest value: for s >= 1 the product overflows too)
    bool halves() const { return s < 1; }
    template <bool kHalve>
    reg shifted_as(reg x, reg m, reg l) const {
        const reg nl = C::sub(C::zero(), l);
        if constexpr (kHalve) {
            const reg h = C::set1(T(0.5));
            return C::fmadd(C::sub(C::mul(x, h), C::mul(m, h)), vs2, nl);
        }
        return C::fmadd(C::sub(x, m), vs, nl);
    }
    reg shifted(reg x, reg m, reg l) const {
        return halves() ? shifted_as<true>(x, m, l) : shifted_as<false>(x, m, l);
    }
    reg top(reg m, reg l) const { return C::fmadd(m, vs, l); }
    template <class U>
    U top(U m, U l) const {
        return std::fma(m, static_cast<U>(s), l);
    }
    reg times(reg v) const { return C::mul(v, vs); }
    double scale() const { return s; }

  private:
    reg pow2(reg d) const {
        if constexpr (kFold) return d;
        return C::mul(d, vpow);  // (exact; an overflow to -inf has exp 0 all the same)
    }
    // (a span beyond T's range: no finite x is below the floor)
    static T or_inf(double v) {
        return v > static_cast<double>(std::numeric_limits<T>::max())
                   ? std::numeric_limits<T>::infinity()
                   : static_cast<T>(v);
    }
    static T at_most_max(double v) {
        return static_cast<T>(std::min(v, static_cast<double>(std::numeric_limits<T>::max())));
    }
    double s;
    T span;
    reg vs, vspan, vd_lo, vd_hi;
    reg vpow;  // 2^k (1 where kFold)
    reg vs2;   // 2s (shifted_as<true>)
    FoldedExp<C> fold;
};

// f(Unscaled<C>{}) at temperature 1 (the scale rounds to 1 in T), else
// f(Scaled<C, kFold>(params.scale)); returns what f returns.
template <class V, class F>
auto with_temperature(const SoftmaxParams& params, F&& f) {
    using C = typename V::Compute;
    using T = typename C::T;
    if (static_cast<T>(params.scale) == T(1)) return f(Unscaled<C>{});
    const double s = static_cast<double>(static_cast<T>(params.scale));
    if (FoldedExp<C>::folds(s)) return f(Scaled<C, true>(params.scale));
    return f(Scaled<C, false>(params.scale));
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
