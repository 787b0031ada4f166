// The fused softmax cross-entropy over rows of contiguous logits, written
// once over a vector wrapper V and compiled per target. Formulas: see
// fastsoftmax/cross_entropy.hpp.
//
// Per row:
//   1. one read of the logits (the online block walk of softmax.hpp): the
//      maximum m of x', s = sum exp(x' - m) and, when the loss needs them
//      (label smoothing, probability targets), lin = sum coef[c] * (m - x'[c])
//      and cs = sum coef[c], where coef is w (smoothing) or w * t' (targets).
//      Every term of lin is >= 0, so the loss,
//        lse - x'[y] = log(s) + (m - x'[y]),   sum coef * (lse - x') = cs * log(s) + lin,
//      is a sum of non-negative terms: no cancellation, and no log-probability
//      is ever formed.
//   2. with a gradient, one pass from cache that writes
//        grad[c] = a * exp(x'[c] - m) / s - e * coef[c]   (- b at c = y),
//      times the soft-capping derivative; no probability array, no one-hot.
// Rows whose maximum is not finite or that hold a NaN give NaN (PyTorch's
// answer); ignored rows give a loss of 0 and a zero gradient.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "fastsoftmax/cross_entropy.hpp"
#include "generic/softmax.hpp"
#include "generic/vec_math.hpp"

#ifndef FASTSOFTMAX_TARGET
#error "define FASTSOFTMAX_TARGET (the target's namespace) before including generic code"
#endif

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// x' = softcap * tanh(x / softcap) (kCap) or x, and dx'/dx = 1 - tanh^2.
template <class V, bool kCap>
struct Cap {
    using T = typename V::T;
    using reg = typename V::reg;
    reg s, inv;
    explicit Cap(T softcap)
        : s(V::set1(softcap)), inv(V::set1(kCap ? T(1) / softcap : T(1))) {}
    reg operator()(reg x) const {
        if constexpr (kCap) return V::mul(s, vtanh<V>(V::mul(x, inv)));
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

// Lanes [0, w) of a vector.
template <class V>
typename V::mask first_lanes(std::size_t w) {
    using T = typename V::T;
    static constexpr T kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static_assert(V::N <= 16);
    return V::lt(V::load(kIota), V::set1(static_cast<T>(w)));
}

// The per-class coefficients of the linear terms of the loss and gradient:
// load(i) for a whole vector at class i, load_partial(i, w) with lanes past
// w unspecified (callers mask them).
template <class V>
struct NoCoef {  // integer labels without smoothing: no linear term
    static constexpr bool kNone = true;
    typename V::reg load(std::size_t) const { return V::zero(); }
    typename V::reg load_partial(std::size_t, std::size_t) const { return V::zero(); }
};

template <class V>
struct OnesCoef {  // integer labels, smoothing, no weights
    static constexpr bool kNone = false;
    typename V::reg load(std::size_t) const { return V::set1(typename V::T(1)); }
    typename V::reg load_partial(std::size_t, std::size_t) const {
        return V::set1(typename V::T(1));
    }
};

template <class V>
struct WeightCoef {  // integer labels, smoothing, class weights
    static constexpr bool kNone = false;
    const typename V::T* w;
    typename V::reg load(std::size_t i) const { return V::load(w + i); }
    typename V::reg load_partial(std::size_t i, std::size_t len) const {
        return V::load_partial(w + i, len, 0);
    }
};

template <class V, bool kWeight>
struct TargetCoef {  // probabilities t: w * t', t' = (1 - eps) * t + eps / n
    static constexpr bool kNone = false;
    const typename V::T* t;
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

// What the read pass found in a row.
struct CeStats {
    double max = 0, sum = 0;  // m = max x', s = sum exp(x' - m)
    double log_sum = 0;       // log(s), accurate also when s is close to 1
    double lin = 0, cs = 0;   // sum coef * (m - x'), sum coef
    bool special = false;     // a NaN, or a maximum that is not finite
};

// sum exp(x' - ref) over a stretch, split as ties + rest: ties counts the
// entries equal to ref (whose exponentials are exactly 1) and rest sums the
// others. A confident row's loss is log(1 + rest) with a tiny rest, which a
// float accumulator holding the 1 would round away.
struct ExpSplit {
    double ties = 0, rest = 0;
};

// One stretch of a row, inside one block (so the float accumulators stay
// short): the exponentials against ref (none for ref = -inf, an all -inf
// stretch), and adds the stretch's sum coef * (ref - x') to lin (coef * +inf
// when ref = -inf) and sum coef to cs.
template <class V, bool kCap, class Coef>
ExpSplit ce_stretch(const typename V::T* x, std::size_t len, typename V::T ref,
                    const Cap<V, kCap>& cap, const Coef& coef, std::size_t base, double& lin,
                    double& cs) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    const bool live = ref != neg_inf<T>();
    const reg vref = V::set1(live ? ref : T(0));
    const reg inf = V::set1(std::numeric_limits<T>::infinity());
    const reg one = V::set1(T(1));
    reg s0 = V::zero(), s1 = V::zero(), t0 = V::zero();
    ExpSum<V> l, c;
    std::size_t i = 0;
    for (; i + 2 * N <= len; i += 2 * N) {
        const reg x0 = cap(V::load(x + i)), x1 = cap(V::load(x + i + N));
        if (live) {
            const auto at0 = V::eq(x0, vref), at1 = V::eq(x1, vref);
            s0 = V::add(s0, V::select(at0, V::zero(), vexp<V>(V::sub(x0, vref))));
            s1 = V::add(s1, V::select(at1, V::zero(), vexp<V>(V::sub(x1, vref))));
            t0 = V::add(t0, V::add(V::select(at0, one, V::zero()), V::select(at1, one, V::zero())));
        }
        if constexpr (!Coef::kNone) {
            const reg c0 = coef.load(base + i), c1 = coef.load(base + i + N);
            if (live)
                l.add2(V::mul(c0, V::sub(vref, x0)), V::mul(c1, V::sub(vref, x1)));
            else
                l.add2(V::mul(c0, inf), V::mul(c1, inf));
            c.add2(c0, c1);
        }
    }
    for (; i < len; i += N) {
        const std::size_t w = (len - i < N) ? len - i : N;
        const auto in = first_lanes<V>(w);
        const reg xv = cap(V::load_partial(x + i, w, 0));
        if (live) {
            const reg at = V::select(in, V::select(V::eq(xv, vref), one, V::zero()), V::zero());
            const reg e = vexp<V>(V::sub(xv, vref));
            s0 = V::add(s0, V::select(in, V::select(V::eq(xv, vref), V::zero(), e), V::zero()));
            t0 = V::add(t0, at);
        }
        if constexpr (!Coef::kNone) {
            const reg cv = V::select(in, coef.load_partial(base + i, w), V::zero());
            l.add(V::select(in, V::mul(cv, live ? V::sub(vref, xv) : inf), V::zero()));
            c.add(cv);
        }
    }
    if constexpr (!Coef::kNone) {
        lin += l.total();
        cs += c.total();
    }
    auto rest = V::wide_zero(), ties = V::wide_zero();
    V::wide_add(rest, V::add(s0, s1));
    V::wide_add(ties, t0);
    return {V::wide_hsum(ties), V::wide_hsum(rest)};
}

// The read pass: one read of the row, block by block (online_max_sum).
template <class V, bool kCap, class Coef>
CeStats ce_row_stats(const typename V::T* x, std::size_t n, const Cap<V, kCap>& cap,
                     const Coef& coef) {
    using T = typename V::T;
    CeStats st;
    double seen = 0;        // sum of coef so far
    T last = neg_inf<T>();  // the reference st.lin, ties and rest are taken against
    ExpSplit sum;
    const auto block = [&](std::size_t, std::size_t i, std::size_t len, T ref) {
        if (ref != neg_inf<T>()) {
            if (last != neg_inf<T>() && ref > last) {  // move the sums to the new maximum
                const double d = static_cast<double>(ref) - static_cast<double>(last);
                st.lin += d * seen;
                sum.rest = (sum.rest + sum.ties) * std::exp(-d);
                sum.ties = 0;
            }
            last = ref;
        }
        const double before = st.cs;
        const ExpSplit b = ce_stretch<V>(x + i, len, ref, cap, coef, i, st.lin, st.cs);
        seen += st.cs - before;
        sum.ties += b.ties;
        sum.rest += b.rest;
        return b.ties + b.rest;
    };
    MaxSum ms;
    if constexpr (kCap)
        ms = online_max_sum<V>(x, n, block, [&cap](T m) { return cap.scalar(m); });
    else
        ms = online_max_sum<V>(x, n, block);
    st.max = ms.max;
    st.special = ms.special;
    st.sum = sum.ties + sum.rest;
    st.log_sum = std::log1p((sum.ties - 1) + sum.rest);  // ties >= 1: the maximum itself
    return st;
}

// sum coef over a row (the gradient from a saved logsumexp needs it).
template <class V, class Coef>
double coef_sum(const Coef& coef, std::size_t n) {
    ExpSum<V> c;
    std::size_t i = 0;
    for (; i + V::N <= n; i += V::N) c.add(coef.load(i));
    if (i < n) c.add(V::select(first_lanes<V>(n - i), coef.load_partial(i, n - i), V::zero()));
    return c.total();
}

// The gradient pass: g[c] = (f * exp(x'[c] - m) - e * coef[c]) * dx'/dx
// (g may be x: each element is read before it is written).
template <class V, bool kCap, class Coef>
void ce_row_grad(const typename V::T* x, typename V::T* g, std::size_t n, typename V::T m,
                 const Factor<V>& f, typename V::T e, const Cap<V, kCap>& cap, const Coef& coef) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    const reg vm = V::set1(m), vlo = V::set1(exp_floor(m)), ve = V::set1(e);
    const auto grad = [&](reg xv, reg cv) {
        reg d = V::zero();
        const reg xp = kCap ? cap.both(xv, d) : xv;
        reg gv = f.apply(vexp_sub<V>(xp, vm, vlo));
        if constexpr (!Coef::kNone) gv = V::fnmadd(ve, cv, gv);
        if constexpr (kCap) gv = V::mul(gv, d);
        return gv;
    };
    std::size_t i = 0;
    for (; i + 2 * N <= n; i += 2 * N) {
        const reg g0 = grad(V::load(x + i), coef.load(i));
        const reg g1 = grad(V::load(x + i + N), coef.load(i + N));
        V::store(g + i, g0);
        V::store(g + i + N, g1);
    }
    for (; i < n; i += N) {
        const std::size_t w = (n - i < N) ? n - i : N;
        V::store_partial(g + i, w, grad(V::load_partial(x + i, w, m), coef.load_partial(i, w)));
    }
}

template <class T>
void fill_row(T* p, std::size_t n, T v) {
    for (std::size_t i = 0; i < n; ++i) p[i] = v;
}

template <class V, bool kCap, class Coef, class MakeCoef>
CeSums ce_rows(const CeRows<typename V::T>& a, const CeOptions<typename V::T>& o,
               MakeCoef make_coef) {
    using T = typename V::T;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    const Cap<V, kCap> cap(o.softcap);
    const std::size_t n = a.n;
    const double eps = o.smoothing, z = o.z_loss, dn = static_cast<double>(n);
    CeSums total;
    for (std::size_t r = 0; r < a.rows; ++r) {
        const std::ptrdiff_t rr = static_cast<std::ptrdiff_t>(r);
        const T* x = a.x + rr * a.xs;
        T* g = a.grad ? a.grad + rr * a.gs : nullptr;
        std::int64_t y = -1;
        double wy = 1;
        T xy = 0;  // x[y], read before the gradient may overwrite it
        if (a.label) {
            y = a.label[rr * a.ls];
            if (y == o.ignore_index) {
                if (a.loss) a.loss[r] = 0;
                if (g) fill_row(g, n, T(0));
                continue;
            }
            if (o.weight) wy = static_cast<double>(o.weight[y]);
            xy = x[y];
        }
        const Coef coef = make_coef(r);
        CeStats st;
        if (a.lse) {
            st.max = static_cast<double>(a.lse[rr * a.lses]);
            st.sum = 1;
            st.log_sum = 0;
            st.special = !std::isfinite(st.max);
            if constexpr (!Coef::kNone) st.cs = coef_sum<V>(coef, n);
        } else {
            st = ce_row_stats<V>(x, n, cap, coef);
        }
        const double log_s = st.log_sum, lse = st.max + log_s;
        if (!a.lse) {
            double ce = nan, zl = z != 0 ? nan : 0;
            if (!st.special) {
                if (a.label) {
                    ce = (1 - eps) * wy * (log_s + (st.max - static_cast<double>(cap.scalar(xy))));
                    if (eps != 0) ce += eps / dn * (o.weight_sum * log_s + st.lin);
                } else {
                    ce = st.cs * log_s + st.lin;
                }
                if (z != 0) zl = z * lse * lse;
            }
            total.ce += ce;
            total.z += zl;
            if (a.loss) a.loss[r] = ce + zl;
        }
        if (!g) continue;
        if (st.special) {
            fill_row(g, n, std::numeric_limits<T>::quiet_NaN());
            continue;
        }
        const double scale = a.grad_scale ? a.grad_scale[r] : 1.0;
        const double s_ce = scale * a.s_ce, s_z = scale * a.s_z;
        double coef_a, coef_e, coef_b = 0;
        if (a.label) {
            coef_b = s_ce * (1 - eps) * wy;
            coef_a = coef_b + s_ce * eps * o.weight_sum / dn;
            coef_e = s_ce * eps / dn;
        } else {
            coef_a = s_ce * st.cs;
            coef_e = s_ce;
        }
        if (z != 0) coef_a += s_z * 2 * z * lse;
        ce_row_grad<V>(x, g, n, static_cast<T>(st.max), Factor<V>::of(coef_a / st.sum),
                       static_cast<T>(coef_e), cap, coef);
        if (a.label) {
            const double d = kCap ? static_cast<double>(cap.scalar_deriv(xy)) : 1.0;
            g[y] = static_cast<T>(static_cast<double>(g[y]) - coef_b * d);
        }
    }
    return total;
}

template <class V, bool kCap>
CeSums ce_rows_capped(const CeRows<typename V::T>& a, const CeOptions<typename V::T>& o) {
    using T = typename V::T;
    if (!a.label) {
        const auto keep = V::set1(static_cast<T>(1 - o.smoothing));
        const auto add = V::set1(static_cast<T>(o.smoothing / static_cast<double>(a.n)));
        if (o.weight)
            return ce_rows<V, kCap, TargetCoef<V, true>>(a, o, [&](std::size_t r) {
                return TargetCoef<V, true>{a.target + static_cast<std::ptrdiff_t>(r) * a.ts,
                                           o.weight, keep, add};
            });
        return ce_rows<V, kCap, TargetCoef<V, false>>(a, o, [&](std::size_t r) {
            return TargetCoef<V, false>{a.target + static_cast<std::ptrdiff_t>(r) * a.ts, nullptr,
                                        keep, add};
        });
    }
    if (o.smoothing == 0)
        return ce_rows<V, kCap, NoCoef<V>>(a, o, [](std::size_t) { return NoCoef<V>{}; });
    if (o.weight)
        return ce_rows<V, kCap, WeightCoef<V>>(a, o,
                                               [&](std::size_t) { return WeightCoef<V>{o.weight}; });
    return ce_rows<V, kCap, OnesCoef<V>>(a, o, [](std::size_t) { return OnesCoef<V>{}; });
}

template <class V>
CeSums cross_entropy_rows(const CeRows<typename V::T>& a, const CeOptions<typename V::T>& o) {
    return o.softcap != 0 ? ce_rows_capped<V, true>(a, o) : ce_rows_capped<V, false>(a, o);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
