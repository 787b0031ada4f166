// The cross-entropy's terms, shared by its row and column kernels: the
// soft-capping (Cap), the per-class coefficients of the linear terms, the
// statistics of a row's read pass and the label's gradient. Formulas: see
// fastsoftmax/cross_entropy.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "fastsoftmax/cross_entropy.hpp"
#include "fastsoftmax/kernels.hpp"
#include "generic/target.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// The labels' check (KernelTable::count_labels): a loop without branches,
// which the compiler vectorizes with the target's instructions (AVX-512: the
// int64 compares into mask registers, 8 labels at a time). The driver's loop
// label by label, which finds the first bad one, took 30% of the time of
// the cross-entropy of one class.
inline LabelCount count_labels(const std::int64_t* y, std::size_t n, std::int64_t ignore,
                               std::int64_t classes) {
    std::size_t used = 0;
    std::uint64_t bad = 0;
    const auto limit = static_cast<std::uint64_t>(classes);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t u = y[i] != ignore;
        used += u;
        bad |= u & (static_cast<std::uint64_t>(y[i]) >= limit);  // (negative: huge)
    }
    return {used, bad != 0};
}

// What the logits go through first: nothing (kCapNone), a scale (kCapScale:
// x' = x * scale, scale = 1 / temperature) or soft-capping (kCapTanh:
// x' = softcap * tanh(x * scale / softcap)). both() gives x' and 1 - tanh^2:
// the scale of dx'/dx is left to the gradient factors (s_ce, s_z).
constexpr int kCapNone = 0, kCapTanh = 1, kCapScale = 2;

// A temperature's exponentials take x * scale - ref in one fused multiply-add
// against the rounded ref = fl(max * scale): at the maximum that is ref's
// rounding error, up to half an ulp of ref, which must stay small beside 1.
// Beyond this |ref| (quotients past 2^22 in float, 2^51 in double: the error
// at most 1/4) the kernels take the rounded products x' - ref instead, as
// they did before (exp(-512) had lost the maximum's term at |ref| = 1e10).
template <class T>
constexpr T kFoldedRefMax = sizeof(T) == 4 ? T(4194304.0) : T(2251799813685248.0);
template <class V, int kCap>
struct Cap {
    using T = typename V::T;
    using reg = typename V::reg;
    reg s, inv;
    Cap(T softcap, T scale)
        : s(V::set1(softcap)),
          inv(V::set1(kCap == kCapTanh    ? scale / softcap
                      : kCap == kCapScale ? scale
                                          : T(1))) {}
    reg operator()(reg x) const {
        if constexpr (kCap == kCapTanh) return V::mul(s, vtanh<V>(V::mul(x, inv)));
        if constexpr (kCap == kCapScale) return V::mul(x, inv);
        return x;
    }
    // x' and dx'/dx
    reg both(reg x, reg& deriv) const {
        const reg u = vtanh<V>(V::mul(x, inv));
        deriv = V::mul(V::sub(V::set1(T(1)), u), V::add(V::set1(T(1)), u));
        return V::mul(s, u);
    }
    T scalar(T x) const {  // bit-identical to the vector lanes
        T buf[V::N];
        V::store(buf, (*this)(V::set1(x)));
        return buf[0];
    }
    T scalar_deriv(T x) const {
        T buf[V::N];
        reg d;
        both(V::set1(x), d);
        V::store(buf, d);
        return buf[0];
    }
};

// 0, 1, ..., N-1: the lane numbers.

// w unspecified (callers mask them).
template <class V>
struct NoCoef {  // integer labels without smoothing: no linear term
    static constexpr bool kNone = true;
    typename V::reg load(std::size_t) const { return V::zero(); }
    typename V::reg load_partial(std::size_t, std::size_t) const { return V::zero(); }
    typename V::T at(std::size_t) const { return 0; }
};

template <class V>
struct OnesCoef {  // integer labels, smoothing, no weights
    static constexpr bool kNone = false;
    typename V::reg load(std::size_t) const { return V::set1(typename V::T(1)); }
    typename V::reg load_partial(std::size_t, std::size_t) const {
        return V::set1(typename V::T(1));
    }
    typename V::T at(std::size_t) const { return 1; }
};

template <class V>
struct WeightCoef {  // integer labels, smoothing, class weights
    static constexpr bool kNone = false;
    const typename V::T* w;  // (class weights are in the compute type)
    typename V::reg load(std::size_t i) const { return V::load(w + i); }
    typename V::reg load_partial(std::size_t i, std::size_t len) const {
        return V::load_partial(w + i, len, 0);
    }
    typename V::T at(std::size_t i) const { return w[i]; }
};

template <class V, bool kWeight>
struct TargetCoef {  // probabilities t: w * t', t' = (1 - eps) * t + eps / n
    static constexpr bool kNone = false;
    const typename V::S* t;
    const typename V::T* w;
    typename V::reg keep, add;  // 1 - eps, eps / n
    typename V::reg of(typename V::reg tv, typename V::reg wv) const {
        const auto tp = V::fmadd(tv, keep, add);
        if constexpr (kWeight) return V::mul(wv, tp);
        return tp;
    }
    typename V::reg load(std::size_t i) const {
        return of(V::load(t + i), kWeight ? V::load(w + i) : V::zero());
    }
    typename V::reg load_partial(std::size_t i, std::size_t len) const {
        return of(V::load_partial(t + i, len, 0),
                  kWeight ? V::load_partial(w + i, len, 0) : V::zero());
    }
};

// The linear sums coef * (ref - x) are accumulated scaled by 2^-64: ref - x
// may exceed the largest T (logits of +-3e38) where the loss itself does not
// (a small coefficient), and a zero coefficient must give 0, not 0 * inf.
// Scaling by a power of two is exact; it is undone in double.
template <class T>
constexpr T kLinScale = T(1) / T(18446744073709551616.0);  // 2^-64
constexpr double kLinUnscale = 18446744073709551616.0;     // 2^64

// What the read pass found in a row.
struct CeStats {
    double max = 0, sum = 0;  // m = max x', s = sum exp(x' - m)
    double log_sum = 0;       // log(s)
    double label_term = 0;    // lse - x'[y] (integer labels), accurate also when tiny
    double lin = 0, cs = 0;   // sum coef * (m - x'), sum coef
    // integer labels: p = exp(x'[y] - m) and s - p, where the latter is known
    // without cancellation (others < 0: not known; then p / s <= 1/2)
    double label_exp = 1, others = -1;
    bool special = false;  // a NaN, or a maximum that is not finite
};

// d loss / d x'[y] of an integer label, with the gradient's factors a (of
// softmax), b (of the label's one-hot) and e * coef[y] (smoothing), where
// p = ey / s is near 1: p - 1 = -others / s (others = s - ey, known without
// cancellation), so a * p - b = ((a - b) * ey - b * others) / s.
inline double label_gradient(double a_minus_b, double b, double ey, double others, double s,
                             double e_coef_y) {
    return (a_minus_b * ey - b * others) / s - e_coef_y;
}

// sum exp(x' - ref) over a stretch, as ties + rest. A confident row's loss
// is log(1 + tiny), which a float accumulator holding the maximum's exp(0) = 1
// would round away, so the big term is kept out of the float sums:
//   integer labels: rest sums every entry but the label's (skip); the loss is
//     then lse - x'[y] = log1p(rest / exp(x'[y] - m)), exact in form;
//   probabilities (kTies): ties counts the entries equal to ref (exactly 1
//     each) and rest sums the others.
struct ExpSplit {
    double ties = 0, rest = 0;
};

// Lane j of a vector (none for j >= N).

// ------------------------------------------ one formula, one place ----
//
// The per-example loss and the gradient's factors, in double, from an
// example's statistics (the read pass of a row, or of a column lane). The
// rows (ce_rows.hpp) and both column kernels (ce_cols.hpp) call these, per
// row or per lane, so that the paths cannot drift apart.

// What every example of a call shares.
struct CeCall {
    double smoothing, z_loss;  // eps, z
    double classes;            // n
    double weight_sum;         // W (n without class weights)
    double s_ce, s_z;          // the reduction's factors of the two terms
    template <class T>
    CeCall(const CeOptions<T>& o, std::size_t n, double s_ce_, double s_z_)
        : smoothing(o.smoothing),
          z_loss(o.z_loss),
          classes(static_cast<double>(n)),
          weight_sum(o.weight_sum),
          s_ce(s_ce_),
          s_z(s_z_) {}
};

// ce of an integer label y of weight wy, from label_term = lse - x'[y],
// log_sum = log(s) and lin = sum w * (m - x'):
//   (1 - eps) * wy * (lse - x'[y]) + eps / n * (W * log(s) + lin)
inline double ce_label_loss(const CeCall& c, double wy, double label_term, double log_sum,
                            double lin) {
    double ce = (1 - c.smoothing) * wy * label_term;
    if (c.smoothing != 0) ce += c.smoothing / c.classes * (c.weight_sum * log_sum + lin);
    return ce;
}

// ce of probabilities: sum coef * (lse - x') = cs * log(s) + lin, cs = sum coef.
inline double ce_target_loss(double cs, double log_sum, double lin) { return cs * log_sum + lin; }

// The z-loss term z * lse^2 (0 without z-loss).
inline double z_loss_term(const CeCall& c, double lse) {
    return c.z_loss != 0 ? c.z_loss * lse * lse : 0.0;
}

// The gradient of one example, times its upstream factor `scale`:
//   grad[c] = (a * p[c] - e * coef[c] - b * [c = y]) * dx'/dx,  p = softmax(x'),
// with a = b + extra for integer labels. extra (the smoothing's and the
// z-loss's part of a) is kept apart: the label's gradient of a confident row
// needs a - b, which formed as a difference would lose it to the rounding
// of b (measured: float64 with smoothing and z-loss, 7.8e-13 of the row's
// largest gradient that way, 2.3e-14 this way).
struct CeGradFactors {
    double a = 0, b = 0, e = 0, extra = 0;
};

// z * lse^2's part of a.
inline double z_loss_factor(const CeCall& c, double scale, double lse) {
    return c.z_loss != 0 ? scale * c.s_z * 2 * c.z_loss * lse : 0.0;
}

// Integer labels (coef: the class weights, or 1, for the smoothing term).
inline CeGradFactors ce_label_factors(const CeCall& c, double scale, double wy, double lse) {
    const double s_ce = scale * c.s_ce;
    CeGradFactors f;
    f.b = s_ce * (1 - c.smoothing) * wy;
    f.extra = s_ce * c.smoothing * c.weight_sum / c.classes + z_loss_factor(c, scale, lse);
    f.a = f.b + f.extra;
    f.e = s_ce * c.smoothing / c.classes;
    return f;
}

// Probabilities (coef = w * t'), cs = sum coef.
inline CeGradFactors ce_target_factors(const CeCall& c, double scale, double cs, double lse) {
    const double s_ce = scale * c.s_ce;
    CeGradFactors f;
    f.a = s_ce * cs + z_loss_factor(c, scale, lse);
    f.e = s_ce;
    return f;
}

// The label's gradient when p = ey / s is near 1 (see label_gradient), from
// the factors; coef_y = coef[y].
inline double label_gradient(const CeGradFactors& f, double ey, double others, double s,
                             double coef_y) {
    return label_gradient(f.extra, f.b, ey, others, s, f.e * coef_y);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
