// The entropy and the KL divergence of one contiguous row of logits, with
// their gradients: f32-rentropy and f32-rkldiv in XNNPACK's naming.
//
// entropy: H = -sum p log p, p = softmax(z), z = x / T, from
//   H = log s + w / s,  s = sum exp(z - m),  w = sum exp(z - m) (m - z)
// (m the row maximum): both terms are sums of non-negative values, so H keeps
// its relative accuracy down to a peaked row (H ~ 1e-12); s is split into the
// maximum's ties (counted exactly) and the rest, and log s = log(ties) +
// log1p(rest / ties). Three reads: the maximum, the sums, the gradient
//   dH/dz = -p (log p + H) = -p ((z - m) + w / s).
//
// KL divergence: KL(t || p) = sum t (log t - log p), p = softmax(z), the
// target t given as logits (t = softmax(y / T)), probabilities or log
// probabilities. Written as sum t log(t / p) term by term it still cancels
// (sum t (log t - log p) ~ 1e-4 per term, 1e-8 in all when the two nearly
// agree), so the row is summed as non-negative terms instead. With
// l = z - log t and any constant c, e = l - c (for t > 0):
//   KL = St log(St + E1 + A) - E1,  St = sum t,  E1 = sum t e,
//   A = sum_{t>0} t psi(e) + sum_{t=0} exp(z - c),  psi(e) = exp(e) - 1 - e >= 0
// exactly, whatever c; c is the t-weighted mean of l (from a read pass),
// which makes E1 ~ 0 and leaves A, a sum of non-negative terms, as nearly the
// whole answer; psi(e) is a Taylor series for small |e|, and
// exp(z - c) - t (1 + e) elsewhere. For logits targets t is normalized
// (t / St): KL = log1p((E1 + A) / St) - E1 / St, in which t enters only to
// relative first order, so that pass runs in the compute type
// (kl_logits_row). A target given as (log) probabilities enters the KL to
// first order (an error of 1e-7 in a log t is one of 1e-3 in a KL of 1e-8),
// so those terms are computed in double (kl_div_row). The gradient, with
// respect to z, St p - t, is in the compute type.
//
// Special rows (a NaN, a maximum of +-inf, a target that is not a
// distribution) go to a scalar float64 version, which gives NaN, or +inf
// where p = 0 under a t > 0 (see kl_div_row_special).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "fastsoftmax/kernels.hpp"
#include "generic/blocks.hpp"
#include "generic/target.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// The floor of z - m: exp of it is 0 in float and double, and 0 * floor is 0
// (a -inf logit would give 0 * inf).
template <class T>
constexpr T kDivFloor = T(-1e4);

// psi(e) / e^2 = 1/2! + e/3! + ... + e^8/10!, psi(e) = exp(e) - 1 - e: the
// next term is below 2^-33 of the sum for |e| < 1/2, below 1e-16 for |e| < 1/16
template <class T>
constexpr T kPsi[9] = {T(1.0 / 2),     T(1.0 / 6),      T(1.0 / 24),
                       T(1.0 / 120),   T(1.0 / 720),    T(1.0 / 5040),
                       T(1.0 / 40320), T(1.0 / 362880), T(1.0 / 3628800)};

// Elements per block of the KL's double pass (a multiple of every N).
constexpr std::size_t kKlBlock = 64;

template <class V>
double entropy_row(const typename V::S* x, std::size_t n, double inv_t, typename V::S* g,
                   double gscale) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    if (n == 0) return nan;
    const T inv = static_cast<T>(inv_t);
    const T m = row_max<V>(x, n) * inv;  // (x * inv is monotone: the maximum of z)
    const reg vinv = V::set1(inv), vm = V::set1(m), floor = V::set1(kDivFloor<T>);
    const reg one = V::set1(T(1));
    // z - m, floored (NaN stays NaN: max returns its second operand then)
    const auto dz = [&](reg xv) { return V::max(floor, V::sub(V::mul(xv, vinv), vm)); };
    ExpSum<V> rest, wsum, ties;
    std::size_t i = 0;
    const auto sums = [&](reg xv) {
        const reg d = dz(xv), e = vexp<V>(d);
        const auto at = V::eq(d, V::zero());
        rest.add(V::select(at, V::zero(), e));
        ties.add(V::select(at, one, V::zero()));
        wsum.add(V::mul(e, V::sub(V::zero(), d)));
    };
    for (; i + N <= n; i += N) sums(V::load(x + i));
    if (i < n) sums(V::load_partial(x + i, n - i, neg_inf<T>()));  // (d = floor, e = 0)
    const double k = ties.total(), r = rest.total(), w = wsum.total();
    const double s = k + r;
    const double h = std::log(k) + std::log1p(r / k) + w / s;
    if (!g) return h;
    if (!(h == h) || !std::isfinite(m)) {
        for (std::size_t j = 0; j < n; ++j) g[j] = to_storage<typename V::S>(T(nan));
        return nan;
    }
    // g = gscale * dH/dx = (-gscale * inv / s) * e * (d + w / s)
    const reg c = V::set1(static_cast<T>(w / s)), f = V::set1(static_cast<T>(-gscale * inv_t / s));
    const auto grad = [&](reg xv) {
        const reg d = dz(xv);
        return V::mul(f, V::mul(vexp<V>(d), V::add(d, c)));
    };
    for (i = 0; i + N <= n; i += N) V::store(g + i, grad(V::load(x + i)));
    if (i < n) V::store_partial(g + i, n - i, grad(V::load_partial(x + i, n - i, neg_inf<T>())));
    return h;
}

// The scalar float64 KL of a special row (see the top of this file): NaN
// where the softmax of either row is NaN (a NaN, a +inf, only -inf) or a
// target term is NaN (a negative probability, a NaN); +inf where t > 0 meets
// p = 0; zero-probability target classes add 0. The gradient St p - t where
// the KL is not NaN, else NaN.
template <class S>
double kl_div_row_special(const S* x, const S* t, std::size_t n, KlTarget kind, double inv, S* g,
                          double gscale) {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    constexpr double inf = std::numeric_limits<double>::infinity();
    const auto z = [&](std::size_t i) { return static_cast<double>(to_compute(x[i])) * inv; };
    const auto tv = [&](std::size_t i) { return static_cast<double>(to_compute(t[i])); };
    // log(sum exp(f(i))), NaN unless the maximum is finite and no f(i) is NaN
    const auto lse = [&](auto f) {
        double m = -inf;
        for (std::size_t i = 0; i < n; ++i) {
            const double v = f(i);
            if (v != v) return nan;
            m = v > m ? v : m;
        }
        if (!std::isfinite(m)) return nan;
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) s += std::exp(f(i) - m);
        return m + std::log(s);
    };
    const double lse_z = lse(z);
    const double lse_y =
        kind == KlTarget::logits ? lse([&](std::size_t i) { return tv(i) * inv; }) : 0.0;
    // the target's probability and log probability at i
    const auto target = [&](std::size_t i, double& lt) {
        if (kind == KlTarget::probs) {
            const double w = tv(i);
            lt = std::log(w);  // (NaN for w < 0)
            return w;
        }
        lt = kind == KlTarget::logits ? tv(i) * inv - lse_y : tv(i);
        return std::exp(lt);
    };
    double kl = lse_z == lse_z && lse_y == lse_y ? 0.0 : nan, st = 0;
    for (std::size_t i = 0; i < n && kl == kl; ++i) {
        double lt;
        const double w = target(i, lt);
        if (w == 0) continue;
        if (!(w < inf)) kl = nan;  // (an infinite probability: not a distribution)
        kl += w * (lt - (z(i) - lse_z));
        st += w;
    }
    if (kind == KlTarget::logits) st = 1;
    if (g) {
        for (std::size_t i = 0; i < n; ++i) {
            double lt;
            const double w = target(i, lt);
            const double v = kl == kl ? (st * std::exp(z(i) - lse_z) - w) * (inv * gscale) : nan;
            g[i] = to_storage<S>(static_cast<compute_t<S>>(v));
        }
    }
    return kl;
}

// A float sum of a run of up to 16 vectors at a time, then in double lanes:
// the sums of the KL's terms need a relative accuracy of 1e-6 or so, not
// ExpSum's (its float pairs).
template <class V>
struct RunSum {
    typename V::Wide wide = V::wide_zero();
    typename V::reg run = V::zero();
    std::size_t count = 0;
    void add(typename V::reg v) {
        run = V::add(run, v);
        if (++count == 16) {
            V::wide_add(wide, run);
            run = V::zero();
            count = 0;
        }
    }
    double total() {
        V::wide_add(wide, run);
        return V::wide_hsum(wide);
    }
};

// A float KL kept as it is: 1e5 (the relative accuracy asked for) times 32
// roundings (a float run of 16 vectors summed, and each term's) times the
// unit roundoff, per unit of the sum of the terms' sizes.
template <class T>
constexpr double kKlTrust = 1e5 * 32 * std::numeric_limits<T>::epsilon() / 2;

// The KL's gradient from the scratch rows: g = ez * gp - w * gw, w from a
// scratch row of the compute type W = T, or the target itself (W = S).
template <class V, class W>
void kl_gradient(const typename V::T* ez, const W* w, std::size_t n, typename V::reg gp,
                 typename V::reg gw, typename V::S* g) {
    using C = typename V::Compute;
    using L = std::conditional_t<std::is_same_v<W, typename V::T>, C, V>;  // (w's loads)
    constexpr std::size_t N = V::N;
    std::size_t i = 0;
    for (; i + N <= n; i += N)
        V::store(g + i, V::sub(V::mul(C::load(ez + i), gp), V::mul(L::load(w + i), gw)));
    if (i < n) {
        const std::size_t r = n - i;
        V::store_partial(g + i, r,
                         V::sub(V::mul(C::load_partial(ez + i, r, 0), gp),
                                V::mul(L::load_partial(w + i, r, 0), gw)));
    }
}

// kl_div_row for logits targets, in the compute type. With w = exp(y' - my)
// (y' = y * inv, unnormalized) the KL is log1p((E1 + A) / St) - E1 / St, in
// which the w enter only to relative first order (log sum w exp(e) - sum w e,
// over St, is flat in w where e ~ 0): float exponentials do. The e must be
// exact to their own precision: they come from the exact difference
// d = (x - y) * inv (TwoSum, and Dekker's product, which needs no FMA), less
// c. Pass 2 stores exp(z - mz) and w in a scratch row and sums them (and
// sum w d, for c); pass 3 reads them back, so that it takes no exponential:
// exp(z - c) = exp(z - mz) exp(mz - c), and the gradient is
// exp(z - mz) / s_z - w / St.
template <class V>
double kl_logits_row(const typename V::S* x, const typename V::S* t, std::size_t n,
                     typename V::T inv, typename V::S* g, double gscale) {
    using T = typename V::T;
    using C = typename V::Compute;  // (the scratch rows are of T)
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr bool kFloat = sizeof(T) == 4;
    constexpr T kSplit = kFloat ? T(4097) : T(134217729);  // 2^12 + 1, 2^27 + 1
    // kPsi's range: |e| < 1/2 in float, 1/16 in double; beyond it, q - w (1 + e)
    // loses < 2^-3 of psi
    constexpr T kSeriesMax = kFloat ? T(0.5) : T(1.0 / 16);
    const T mz = row_max<V>(x, n) * inv, my = row_max<V>(t, n) * inv;
    if (!std::isfinite(mz) || !std::isfinite(my)) return std::numeric_limits<double>::quiet_NaN();
    if (n == 1) {  // both distributions are (1): exactly 0
        if (g) g[0] = to_storage<typename V::S>(T(0));
        return 0.0;
    }

    // Pass 2: ez = exp(z - mz) and w to the scratch rows; s_z, St, sum w d.
    T* ez = thread_scratch<T>(2 * n);
    T* wt = ez + n;
    const reg vinv = V::set1(inv), vmz = V::set1(mz), vmy = V::set1(my);
    const reg floor = V::set1(kDivFloor<T>);
    RunSum<V> sz, su, sud, sb;
    const bool unit = inv == T(1);
    const auto pass2 = [&](reg xv, reg yv, std::size_t i, std::size_t w) {
        const reg z = V::mul(xv, vinv), y = V::mul(yv, vinv);
        const reg e = vexp<V>(V::max(floor, V::sub(z, vmz)));
        const reg u = vexp<V>(V::max(floor, V::sub(y, vmy)));
        if (w == N) {
            C::store(ez + i, e);
            C::store(wt + i, u);
        } else {
            C::store_partial(ez + i, w, e);
            C::store_partial(wt + i, w, u);
        }
        sz.add(e);
        su.add(u);
        const auto pos = V::gt(u, V::zero());
        const reg d = V::sub(z, y);
        sud.add(V::select(pos, V::mul(u, d), V::zero()));
        // the size of d's rounding (z and y are rounded too unless inv = 1)
        const reg size = unit ? V::abs(d) : V::add(V::abs(z), V::abs(y));
        sb.add(V::select(pos, V::mul(u, size), V::zero()));
    };
    std::size_t i = 0;
    for (; i + N <= n; i += N) pass2(V::load(x + i), V::load(t + i), i, N);
    if (i < n) {  // (fills -inf: ez = w = 0)
        const std::size_t w = n - i;
        pass2(V::load_partial(x + i, w, neg_inf<T>()), V::load_partial(t + i, w, neg_inf<T>()), i,
              w);
    }
    const double s_z = sz.total(), s_u = su.total(), s_ud = sud.total();
    if (!std::isfinite(s_z) || !std::isfinite(s_u) || !std::isfinite(s_ud))
        return std::numeric_limits<double>::quiet_NaN();
    const double mu = s_ud / s_u;  // the w-weighted mean of d: c = mu + my
    const double c = mu + static_cast<double>(my);
    const reg gp = V::set1(static_cast<T>(static_cast<double>(inv) * gscale / s_z));
    const reg gw = V::set1(static_cast<T>(static_cast<double>(inv) * gscale / s_u));
    // The KL as sum t (log t - log p) = (mz - my) - mu + log(s_z / s_u), when it is large
    // against its rounding: then only the gradient is left to write.
    const double simple =
        (static_cast<double>(mz) - static_cast<double>(my)) - mu + std::log(s_z / s_u);
    if (kFloat && std::isfinite(simple) &&
        std::fabs(simple) >= kKlTrust<T> * (sb.total() / s_u + 1)) {  // (float64: never)
        if (g) kl_gradient<V>(ez, wt, n, gp, gw, g);
        return simple;
    }

    // Pass 3: the terms, from d, ez and w; the gradient.
    const T mu_hi = static_cast<T>(mu), mu_lo = static_cast<T>(mu - static_cast<double>(mu_hi));
    const T ci = kSplit * inv, inv_hi = ci - (ci - inv), inv_lo = inv - inv_hi;
    const reg vih = V::set1(inv_hi), vil = V::set1(inv_lo), vsplit = V::set1(kSplit);
    const reg vmh = V::set1(mu_hi), vml = V::set1(mu_lo), one = V::set1(T(1));
    const reg vq = V::set1(static_cast<T>(std::exp(static_cast<double>(mz) - c)));
    const reg smax = V::set1(kSeriesMax);
    RunSum<V> acc_a, acc_e1;
    // e = d - c, d = (x - y) * inv as dh + dl exactly (to the precision of T squared)
    const auto centered = [&](reg xv, reg yv) {
        const reg s = V::sub(xv, yv), bb = V::sub(s, xv);
        const reg err = V::sub(V::sub(xv, V::sub(s, bb)), V::add(yv, bb));
        reg dh = s, dl = err;
        if (!unit) {
            dh = V::mul(s, vinv);
            const reg cs = V::mul(vsplit, s), sh = V::sub(cs, V::sub(cs, s)), sl = V::sub(s, sh);
            const reg pe = V::add(
                V::add(V::add(V::sub(V::mul(sh, vih), dh), V::mul(sh, vil)), V::mul(sl, vih)),
                V::mul(sl, vil));
            dl = V::fmadd(err, vinv, pe);
        }
        return V::add(V::sub(dh, vmh), V::sub(dl, vml));  // (dh - mu_hi: exact)
    };
    // |e| where w > 0, else the series' bound (such a lane needs exp(z - c))
    const auto reach = [&](reg e, reg wv) {
        return V::select(V::gt(wv, V::zero()), V::abs(e), smax);
    };
    enum Terms { kSeries, kBig, kMixed };
    // the terms of one vector, all by the series, all by exp(z - c) or each its own way
    const auto terms = [&](reg e, reg ev, reg wv, Terms how) {
        const auto pos = V::gt(wv, V::zero());
        const auto series = [&] { return V::mul(V::mul(wv, V::mul(e, e)), horner<V>(e, kPsi<T>)); };
        const auto big = [&] {
            const reg q = V::mul(ev, vq);  // exp(z - c): w exp(e) where w > 0
            return V::select(pos, V::fnmadd(wv, V::add(one, e), q), q);
        };
        if (how == kSeries) return series();
        if (how == kBig) return big();
        return V::select(V::lt(reach(e, wv), smax), series(), big());
    };
    const auto grad = [&](reg ev, reg wv) { return V::sub(V::mul(ev, gp), V::mul(wv, gw)); };
    const auto classify = [&](T hi, T lo) {
        return hi < kSeriesMax ? kSeries : !(lo < kSeriesMax) ? kBig : kMixed;
    };
    // Four vectors at a time: one test of their lanes' reach (a horizontal
    // maximum costs as much as the series).
    constexpr std::size_t kGroup = 4;
    for (i = 0; i + kGroup * N <= n; i += kGroup * N) {
        reg e[kGroup], ev[kGroup], wv[kGroup];
        reg hi = V::zero(), lo = smax;
        for (std::size_t k = 0; k < kGroup; ++k) {
            const std::size_t j = i + k * N;
            e[k] = centered(V::load(x + j), V::load(t + j));
            ev[k] = C::load(ez + j);
            wv[k] = C::load(wt + j);
            const reg r = reach(e[k], wv[k]);
            hi = V::max(hi, r);
            lo = V::min(lo, r);
        }
        const Terms how = classify(V::hmax(hi), -V::hmax(V::sub(V::zero(), lo)));
        for (std::size_t k = 0; k < kGroup; ++k) {
            acc_a.add(terms(e[k], ev[k], wv[k], how));
            acc_e1.add(V::select(V::gt(wv[k], V::zero()), V::mul(wv[k], e[k]), V::zero()));
            if (g) V::store(g + i + k * N, grad(ev[k], wv[k]));
        }
    }
    for (; i < n; i += N) {  // (the last vectors; partial ones with w = 0, e = 0)
        const std::size_t w = n - i < N ? n - i : N;
        const reg e = centered(V::load_partial(x + i, w, T(0)), V::load_partial(t + i, w, T(0)));
        const reg ev = C::load_partial(ez + i, w, T(0)), wv = C::load_partial(wt + i, w, T(0));
        const auto in = first_lanes<V>(w);
        const reg r = V::select(in, reach(e, wv), V::zero());
        const Terms how = V::hmax(r) < kSeriesMax ? kSeries : kMixed;
        acc_a.add(V::select(in, terms(e, ev, wv, how), V::zero()));
        acc_e1.add(V::select(V::gt(wv, V::zero()), V::mul(wv, e), V::zero()));
        if (g) V::store_partial(g + i, w, grad(ev, wv));
    }
    const double a = acc_a.total(), e1 = acc_e1.total();
    return std::log1p((e1 + a) / s_u) - e1 / s_u;
}

// kl_div_row for probability and log-probability targets, first in the
// compute type: a target's log probability enters the KL to first order, so
// the result is kept only when it is large against its rounding, bounded by
// kTrust * sum t (1 + |log t| + |z - c|); otherwise (distributions that
// nearly agree) the caller runs the double pass. Returns NaN for that.
template <class V>
double kl_probs_row(const typename V::S* x, const typename V::S* t, std::size_t n, bool probs,
                    typename V::T inv, typename V::S* g, double gscale) {
    using T = typename V::T;
    using C = typename V::Compute;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    constexpr T kSeriesMax = sizeof(T) == 4 ? T(0.5) : T(1.0 / 16);
    const T mz = row_max<V>(x, n) * inv;
    if (!std::isfinite(mz)) return nan;
    // Pass 2: ez, and whichever of w and log w the target does not hold
    // (log w for probabilities, w for log probabilities), to the scratch
    // rows; s_z, St, sum w (z - log w).
    T* ez = thread_scratch<T>(2 * n);
    T* aux = ez + n;  // log w (probabilities) or w (log probabilities)
    const reg vinv = V::set1(inv), vmz = V::set1(mz), floor = V::set1(kDivFloor<T>);
    RunSum<V> sz, sw, swd, sb;
    const auto pass2 = [&](reg xv, reg tv, std::size_t i, std::size_t w) {
        const reg z = V::mul(xv, vinv);
        const reg e = vexp<V>(V::max(floor, V::sub(z, vmz)));
        const reg wv = probs ? tv : vexp<V>(tv);
        const reg lt = probs ? vlog<V>(tv) : tv;
        if (w == N) {
            C::store(ez + i, e);
            C::store(aux + i, probs ? lt : wv);
        } else {
            C::store_partial(ez + i, w, e);
            C::store_partial(aux + i, w, probs ? lt : wv);
        }
        sz.add(e);
        sw.add(wv);  // (NaN, +inf: not a distribution; t < 0: NaN below)
        // d = (z - mz) - log w, and its size
        const auto pos = V::gt(wv, V::zero());
        const reg dz = V::sub(z, vmz), d = V::sub(dz, lt);
        swd.add(V::select(pos, V::mul(wv, d), V::zero()));
        sb.add(V::select(pos, V::mul(wv, V::add(V::abs(dz), V::abs(lt))), V::zero()));
        return V::lt(wv, V::zero());
    };
    std::size_t i = 0;
    auto negative = V::lt(V::zero(), V::zero());
    for (; i + N <= n; i += N)
        negative = V::mask_or(negative, pass2(V::load(x + i), V::load(t + i), i, N));
    if (i < n) {  // (fills: ez = 0; a target of weight 0)
        const std::size_t w = n - i;
        negative = V::mask_or(negative,
                              pass2(V::load_partial(x + i, w, neg_inf<T>()),
                                    V::load_partial(t + i, w, probs ? T(0) : neg_inf<T>()), i, w));
    }
    const double s_z = sz.total(), st = sw.total(), s_wd = swd.total();
    if (V::hmax(V::select(negative, V::set1(T(1)), V::zero())) != 0 || !(st > 0) ||
        !std::isfinite(st) || !std::isfinite(s_z) || !std::isfinite(s_wd))
        return nan;
    const double c = s_wd / st + static_cast<double>(mz);  // the w-weighted mean of z - log w
    const reg gp = V::set1(static_cast<T>(static_cast<double>(inv) * gscale * st / s_z));
    const reg gw = V::set1(static_cast<T>(static_cast<double>(inv) * gscale));
    // sum w (log w - log p) = St log s_z - sum w d, when large against its rounding
    const double simple = st * std::log(s_z) - s_wd;
    if (std::isfinite(simple) && std::fabs(simple) >= kKlTrust<T> * (sb.total() + st)) {
        if (g) {
            if (probs)
                kl_gradient<V>(ez, t, n, gp, gw, g);
            else
                kl_gradient<V>(ez, aux, n, gp, gw, g);
        }
        return simple;
    }

    // Pass 3: the terms and the bound, from z, log w, ez and w; the gradient.
    const reg vc = V::set1(static_cast<T>(c)), one = V::set1(T(1)), smax = V::set1(kSeriesMax);
    const reg vq = V::set1(static_cast<T>(std::exp(static_cast<double>(mz) - c)));
    RunSum<V> acc_a, acc_e1, acc_b;
    const auto pass3 = [&](reg xv, reg ev, reg wv, reg lt, typename V::mask in, std::size_t i,
                           std::size_t w) {
        const reg z = V::mul(xv, vinv);
        const reg e = V::sub(V::sub(z, lt), vc);
        const auto pos = V::gt(wv, V::zero());
        // t psi(e): the series where |e| is small, else exp(z - c) - t (1 + e);
        // exp(z - c) where t = 0
        const reg q = V::mul(ev, vq);  // exp(z - c)
        const reg series = V::mul(V::mul(wv, V::mul(e, e)), horner<V>(e, kPsi<T>));
        const reg term = V::select(V::lt(V::select(pos, V::abs(e), smax), smax), series,
                                   V::select(pos, V::fnmadd(wv, V::add(one, e), q), q));
        acc_a.add(V::select(in, term, V::zero()));
        acc_e1.add(V::select(in, V::select(pos, V::mul(wv, e), V::zero()), V::zero()));
        const reg size = V::add(one, V::add(V::abs(lt), V::abs(V::sub(z, vc))));
        acc_b.add(V::select(in, V::select(pos, V::mul(wv, size), V::zero()), V::zero()));
        if (g) {
            const reg gv = V::sub(V::mul(ev, gp), V::mul(wv, gw));
            if (w == N)
                V::store(g + i, gv);
            else
                V::store_partial(g + i, w, gv);
        }
    };
    const auto all = first_lanes<V>(N);
    // (w and log w as pass 2 formed them: one is t itself, the other in aux)
    for (i = 0; i + N <= n; i += N) {
        const reg tv = V::load(t + i), av = C::load(aux + i);
        pass3(V::load(x + i), C::load(ez + i), probs ? tv : av, probs ? av : tv, all, i, N);
    }
    if (i < n) {  // (lanes past w: 0, as the masks and weights of 0 need)
        const std::size_t w = n - i;
        const reg tv = V::load_partial(t + i, w, T(0)), av = C::load_partial(aux + i, w, T(0));
        pass3(V::load_partial(x + i, w, T(0)), C::load_partial(ez + i, w, T(0)), probs ? tv : av,
              probs ? av : tv, first_lanes<V>(w), i, w);
    }
    const double a = acc_a.total(), e1 = acc_e1.total(), b = acc_b.total();
    const double kl = st * (std::log(st) + std::log1p((e1 + a) / st)) - e1;
    return std::isfinite(kl) && std::fabs(kl) >= kKlTrust<T> * b ? kl : nan;
}

template <class V>
double kl_div_row(const typename V::S* x, const typename V::S* t, std::size_t n, KlTarget kind,
                  double inv_t, typename V::S* g, double gscale) {
    using T = typename V::T;
    using S = typename V::S;
    using reg = typename V::reg;
    using D = F64;  // the double-precision terms
    using dreg = typename D::reg;
    constexpr std::size_t N = V::N, ND = D::N;
    static_assert(kKlBlock % N == 0 && kKlBlock % ND == 0);
    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr double dinf = std::numeric_limits<double>::infinity();
    const double invd = inv_t;  // (the double pass scales by it, unrounded)
    const T inv = static_cast<T>(inv_t);
    if (n == 0) return std::numeric_limits<double>::quiet_NaN();
    const auto special = [&] { return kl_div_row_special<S>(x, t, n, kind, invd, g, gscale); };
    if (kind == KlTarget::logits) {
        const double kl = kl_logits_row<V>(x, t, n, inv, g, gscale);
        return std::isfinite(kl) ? kl : special();
    }
    const bool probs = kind == KlTarget::probs;
    if (sizeof(T) == 4) {  // (in double the double pass is the one)
        const double kl = kl_probs_row<V>(x, t, n, probs, inv, g, gscale);
        if (kl == kl) return kl;
    }

    // Pass 1: the maximum.
    const T mz = row_max<V>(x, n) * inv;
    if (!std::isfinite(mz)) return special();

    // Pass 2 (compute type): sum exp(z - mz) for p; the target's
    // probabilities u, their sum and sum u (z - log t), for c.
    const reg vinv = V::set1(inv), vmz = V::set1(mz);
    const reg floor = V::set1(kDivFloor<T>), one = V::set1(T(1)), vinf = V::set1(inf);
    const auto ez = [&](reg xv) { return vexp<V>(V::max(floor, V::sub(V::mul(xv, vinv), vmz))); };
    ExpSum<V> sz, su, sud, bad;
    const auto pass2 = [&](reg xv, reg tv) {
        sz.add(ez(xv));
        const reg z = V::mul(xv, vinv);
        reg u, lt;
        if (probs) {
            u = tv;
            lt = vlog<V>(tv);
        } else {
            u = vexp<V>(tv);
            lt = tv;
        }
        // u not in [0, inf) (NaN, negative, +inf): not a distribution
        bad.add(V::select(V::ge(u, V::zero()), V::select(V::lt(u, vinf), V::zero(), one), one));
        su.add(u);
        sud.add(V::select(V::gt(u, V::zero()), V::mul(u, V::sub(z, lt)), V::zero()));
    };
    std::size_t i = 0;
    for (; i + N <= n; i += N) pass2(V::load(x + i), V::load(t + i));
    if (i < n) {  // (fills: z = -inf; a target of weight 0)
        const std::size_t w = n - i;
        pass2(V::load_partial(x + i, w, -inf), V::load_partial(t + i, w, probs ? T(0) : -inf));
    }
    const double s_z = sz.total(), s_u = su.total(), s_ud = sud.total();
    if (bad.total() != 0 || !(s_u > 0) || !std::isfinite(s_z) || !std::isfinite(s_ud))
        return special();
    const double c = s_ud / s_u;  // the t-weighted mean of z - log t

    // Pass 3 (probabilities, log probabilities): the double terms, a block at
    // a time, and the gradient. A target given as (log) probabilities enters
    // the KL to first order, so its log (exp) is taken in double.
    const dreg dinv = D::set1(invd), dc = D::set1(c);
    const dreg small = D::set1(1.0 / 16);
    // (the series kPsi for |e| < 1/16)
    dreg acc_a = D::zero(), acc_e1 = D::zero();
    // (St enters the KL to first order: compensated, for float64 rows)
    typename D::Wide acc_st = D::wide_zero();
    const reg vp = V::set1(static_cast<T>(1.0 / s_z)), vst = V::set1(static_cast<T>(s_u));
    const reg gs = V::set1(static_cast<T>(invd * gscale));
    alignas(64) double xd[kKlBlock], td[kKlBlock], wd[kKlBlock];
    alignas(64) T wf[kKlBlock];
    const double tfill = probs ? 0.0 : -dinf;
    for (std::size_t b = 0; b < n; b += kKlBlock) {
        const std::size_t len = n - b < kKlBlock ? n - b : kKlBlock;
        const std::size_t padded = (len + ND - 1) / ND * ND;
        for (std::size_t j = 0; j < len; ++j) {
            xd[j] = static_cast<double>(to_compute(x[b + j]));
            td[j] = static_cast<double>(to_compute(t[b + j]));
        }
        for (std::size_t j = len; j < padded; ++j) {
            xd[j] = -dinf;
            td[j] = tfill;
        }
        for (std::size_t j = 0; j < padded; j += ND) {
            const dreg z = D::mul(D::load(xd + j), dinv);
            dreg w, e;
            if (probs) {
                w = D::load(td + j);
                e = D::sub(D::sub(z, vlog<D>(w)), dc);
            } else {
                const dreg lt = D::load(td + j);
                w = vexp<D>(lt);
                e = D::sub(D::sub(z, lt), dc);
            }
            const auto pos = D::gt(w, D::zero());
            const auto tiny = D::lt(D::abs(e), small);  // (false for NaN, +-inf)
            // t psi(e) by the series where |e| is small ...
            const dreg series = D::mul(D::mul(w, D::mul(e, e)), horner<D>(e, kPsi<double>));
            dreg term = series;
            const bool all_tiny = D::hmax(D::select(tiny, D::zero(), D::set1(1.0))) == 0;
            if (!all_tiny) {
                // ... and exp(z - c) - t (1 + e) elsewhere, exp(z - c) where t = 0
                const dreg q = vexp<D>(D::sub(z, dc));
                const dreg big = D::select(pos, D::fnmadd(w, e, D::sub(q, w)), q);
                term = D::select(tiny, series, big);
            }
            acc_a = D::add(acc_a, term);
            acc_e1 = D::add(acc_e1, D::select(pos, D::mul(w, e), D::zero()));
            D::wide_add(acc_st, w);
            if (g) D::store(wd + j, w);
        }
        if (!g) continue;
        for (std::size_t j = 0; j < len; ++j) wf[j] = static_cast<T>(wd[j]);
        std::size_t j = 0;
        for (; j + N <= len; j += N) {
            const reg p = V::mul(ez(V::load(x + b + j)), vp);
            V::store(g + b + j, V::mul(gs, V::sub(V::mul(vst, p), V::load(wf + j))));
        }
        if (j < len) {
            const std::size_t w = len - j;
            const reg p = V::mul(ez(V::load_partial(x + b + j, w, -inf)), vp);
            const reg tv = V::load_partial(wf + j, w, T(0));
            V::store_partial(g + b + j, w, V::mul(gs, V::sub(V::mul(vst, p), tv)));
        }
    }
    const auto hsum = [](dreg v) {
        alignas(64) double lanes[ND];
        D::store(lanes, v);
        double s = 0;
        for (std::size_t l = 0; l < ND; ++l) s += lanes[l];
        return s;
    };
    const double a = hsum(acc_a), e1 = hsum(acc_e1), st = D::wide_hsum(acc_st);
    const double kl = st * (std::log(st) + std::log1p((e1 + a) / st)) - e1;
    if (!std::isfinite(kl)) return special();
    return kl;
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
