// The passes over one row of logits: the read pass (maximum, split sums of
// exponentials, linear sums) and the two gradient passes (from the logits, or
// over stored exponentials).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "generic/blocks.hpp"
#include "generic/ce_terms.hpp"
#include "generic/target.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// a group of rows reduces theirs after all its exponentials: see ce_rows).
template <class V, bool kTies>
struct SplitLanes {
    typename V::reg ties, rest;
    ExpSplit split() const {
        const auto total = [](typename V::reg v) {
            auto w = V::wide_zero();
            V::wide_add(w, v);
            return V::wide_hsum(w);
        };
        return {kTies ? total(ties) : 0.0, total(rest)};
    }
};

// One stretch of a row, inside one block (so the float accumulators stay
// short): the exponentials against ref (none for ref = -inf, an all -inf
// stretch), and adds the stretch's sum coef * (ref - x') to lin (coef * +inf
// when ref = -inf) and sum coef to cs. With a destination e (kStore), also
// stores exp(x' - ref) there (e may be x). skip: the index (in the stretch)
// left out of rest when !kTies, or anything >= len. Returns the sums per
// lane (ce_stretch: reduced).
template <class V, int kCap, class Coef, bool kStore, bool kTies, class E, bool kFold = true>
SplitLanes<V, kTies> ce_stretch_lanes(const typename V::S* x, E* e, std::size_t len,
                                      typename V::T ref, const Cap<V, kCap>& cap, const Coef& coef,
                                      std::size_t base, double& lin, double& cs, std::size_t skip) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    if constexpr (kCap == kCapScale && kFold) {
        if (!(std::fabs(ref) <= kFoldedRefMax<T>))  // (and -inf: an all -inf stretch)
            return ce_stretch_lanes<V, kCap, Coef, kStore, kTies, E, false>(
                x, e, len, ref, cap, coef, base, lin, cs, skip);
    }
    const bool live = ref != neg_inf<T>();
    const reg vref = V::set1(live ? ref : T(0));
    const reg inf = V::set1(std::numeric_limits<T>::infinity());
    const reg one = V::set1(T(1));
    const reg vs = V::set1(kLinScale<T>), vref_s = V::mul(vref, vs);  // (see kLinScale)
    // exp(x' - ref) from the load xr and x' = cap(xr); a temperature's
    // x * scale - ref in one fused multiply-add, one rounding (x' itself is
    // formed only where it is used: ties, linear terms), so that the pass
    // costs what it costs at T = 1 (the multiply had cost 2-3% of the call at
    // (4096, 1000)); see kFoldedRefMax for its bound
    const reg nref = V::sub(V::zero(), vref);
    const auto ex = [&](reg xr, reg xv) {
        if constexpr (kCap == kCapScale && kFold) return vexp<V>(V::fmadd(xr, cap.inv, nref));
        return (void)xr, vexp<V>(V::sub(xv, vref));
    };
    reg s0 = V::zero(), s1 = V::zero(), t0 = V::zero();
    ExpSum<V> l, c;
    std::size_t i = 0;
    for (; i + 2 * N <= len; i += 2 * N) {
        const reg r0 = V::load(x + i), r1 = V::load(x + i + N);
        const reg x0 = cap(r0), x1 = cap(r1);
        if (live) {
            reg e0 = ex(r0, x0), e1 = ex(r1, x1);
            if constexpr (kStore) {
                V::store(e + i, e0);
                V::store(e + i + N, e1);
            }
            if constexpr (kTies) {
                const auto at0 = V::eq(x0, vref), at1 = V::eq(x1, vref);
                e0 = V::select(at0, V::zero(), e0);
                e1 = V::select(at1, V::zero(), e1);
                t0 = V::add(t0,
                            V::add(V::select(at0, one, V::zero()), V::select(at1, one, V::zero())));
            } else if (skip - i < 2 * N) {  // the label is in this pair
                e0 = V::select(lane_is<V>(skip - i), V::zero(), e0);
                e1 = V::select(lane_is<V>(skip - i - N), V::zero(), e1);  // (wraps: no lane)
            }
            s0 = V::add(s0, e0);
            s1 = V::add(s1, e1);
        } else if constexpr (kStore) {
            V::store(e + i, V::zero());
            V::store(e + i + N, V::zero());
        }
        if constexpr (!Coef::kNone) {
            const reg c0 = coef.load(base + i), c1 = coef.load(base + i + N);
            if (live)
                l.add2(V::mul(c0, V::fnmadd(x0, vs, vref_s)),
                       V::mul(c1, V::fnmadd(x1, vs, vref_s)));
            else
                l.add2(V::mul(c0, inf), V::mul(c1, inf));
            c.add2(c0, c1);
        }
    }
    for (; i < len; i += N) {
        const std::size_t w = (len - i < N) ? len - i : N;
        const auto in = first_lanes<V>(w);
        const reg xr = V::load_partial(x + i, w, 0), xv = cap(xr);
        if (live) {
            reg ev = V::select(in, ex(xr, xv), V::zero());
            if constexpr (kStore) V::store_partial(e + i, w, ev);
            if constexpr (kTies) {
                const auto at = V::eq(xv, vref);
                ev = V::select(at, V::zero(), ev);
                t0 = V::add(t0, V::select(in, V::select(at, one, V::zero()), V::zero()));
            } else if (skip - i < N) {
                ev = V::select(lane_is<V>(skip - i), V::zero(), ev);
            }
            s0 = V::add(s0, ev);
        } else if constexpr (kStore) {
            V::store_partial(e + i, w, V::zero());
        }
        if constexpr (!Coef::kNone) {
            const reg cv = V::select(in, coef.load_partial(base + i, w), V::zero());
            l.add(V::select(in, V::mul(cv, live ? V::fnmadd(xv, vs, vref_s) : inf), V::zero()));
            c.add(cv);
        }
    }
    if constexpr (!Coef::kNone) {
        lin += l.total() * kLinUnscale;
        cs += c.total();
    }
    return {t0, V::add(s0, s1)};
}

template <class V, int kCap, class Coef, bool kStore, bool kTies, class E>
ExpSplit ce_stretch(const typename V::S* x, E* e, std::size_t len, typename V::T ref,
                    const Cap<V, kCap>& cap, const Coef& coef, std::size_t base, double& lin,
                    double& cs, std::size_t skip) {
    return ce_stretch_lanes<V, kCap, Coef, kStore, kTies>(x, e, len, ref, cap, coef, base, lin, cs,
                                                          skip)
        .split();
}

// Completes st from the row's split sum: s, log(s) and, for an integer
// label (xy = x'[y]), lse - x'[y]: log(s) + (m - xy) with ties (both terms
// >= 0), log1p(rest / ey) without (ey = exp(xy - m)). l1p: log1p of
// ce_log1p_arg's value.
template <bool kTies>
void ce_finish_sums(CeStats& st, const ExpSplit& sum, double xy, double ey, double l1p) {
    if constexpr (kTies) {
        st.sum = sum.ties + sum.rest;
        st.log_sum = l1p;  // of (ties - 1) + rest: ties >= 1, the maximum itself
        st.label_term = st.log_sum + (st.max - xy);  // (integer labels) no cancellation
        st.special = st.special || xy != xy;
        if (xy == st.max) st.others = (sum.ties - 1) + sum.rest;  // the label is a tie
    } else {
        const double d = xy - st.max;  // <= 0, exact
        st.special = st.special || xy != xy;
        st.sum = ey + sum.rest;
        st.label_exp = ey;
        st.others = sum.rest;  // every entry but the label's
        if (ey > 1e-300) {
            st.label_term = l1p;  // of rest / ey
            st.log_sum = d + st.label_term;
        } else {  // the label's exponential underflows: no precision to keep
            st.log_sum = std::log(st.sum);
            st.label_term = st.log_sum - d;
        }
    }
}

template <bool kTies>
double ce_log1p_arg(const ExpSplit& sum, double ey) {
    if constexpr (kTies) return (sum.ties - 1) + sum.rest;
    return sum.rest / ey;
}

// The read pass: one read of the row, block by block (online_max_sum). With
// e (kStore), the exponentials of each block are stored there against the
// running maximum of that block, which goes into refs[block]. y: the label
// (integer labels, !kTies) and x_y = x[y], read before e may overwrite it.
// e: the gradient row, or a float scratch row (half precision, kExpInOutput).
template <class V, int kCap, class Coef, bool kStore, bool kTies, class E = typename V::S>
CeStats ce_row_stats(const typename V::S* x, std::size_t n, const Cap<V, kCap>& cap,
                     const Coef& coef, std::size_t y, typename V::T x_y, E* e = nullptr,
                     typename V::T* refs = nullptr) {
    using T = typename V::T;
    CeStats st;
    double seen = 0;        // sum of coef so far
    T last = neg_inf<T>();  // the reference st.lin, ties and rest are taken against
    ExpSplit sum;
    const auto block = [&](std::size_t b, std::size_t i, std::size_t len, T ref) {
        if (ref != neg_inf<T>()) {
            if (last != neg_inf<T>() && ref > last) {  // move the sums to the new maximum
                const double d = static_cast<double>(ref) - static_cast<double>(last);
                st.lin += d * seen;
                sum.rest = (sum.rest + sum.ties) * std::exp(-d);
                sum.ties = 0;
            }
            last = ref;
        }
        if constexpr (kStore) refs[b] = ref;
        const double before = st.cs;
        const ExpSplit bs = ce_stretch<V, kCap, Coef, kStore, kTies, E>(
            x + i, kStore ? e + i : nullptr, len, ref, cap, coef, i, st.lin, st.cs, y - i);
        seen += st.cs - before;
        sum.ties += bs.ties;
        sum.rest += bs.rest;
        return bs.ties + bs.rest;
    };
    MaxSum ms;
    if constexpr (kCap != kCapNone)  // (the maximum of x', from x's)
        ms = online_max_sum<V>(x, n, block, [&cap](T m) { return cap.scalar(m); });
    else
        ms = online_max_sum<V>(x, n, block);
    st.max = ms.max;
    st.special = ms.special;
    if (st.special) return st;
    const double xy = kTies ? 0.0 : static_cast<double>(cap.scalar(x_y));
    const double ey = kTies ? 1.0 : std::exp(xy - st.max);
    ce_finish_sums<kTies>(st, sum, xy, ey, std::log1p(ce_log1p_arg<kTies>(sum, ey)));
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

// The gradient pass from the logits: g[c] = (f * exp(x'[c] - m) - e * coef[c])
// * dx'/dx (g may be x: each element is read before it is written).
// stream: the aligned middle of the row goes out with non-temporal stores
// (then V::stream_fence() before another thread reads g).
template <class V, int kCap, class Coef>
void ce_row_grad(const typename V::S* x, typename V::S* g, std::size_t n, typename V::T m,
                 const Factor<V>& f, typename V::T e, const Cap<V, kCap>& cap, const Coef& coef,
                 bool stream = false) {
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    const reg vm = V::set1(m), vlo = V::set1(exp_floor(m)), ve = V::set1(e);
    const auto grad = [&](reg xv, reg cv) {
        reg d = V::zero();
        const reg xp = kCap == kCapTanh ? cap.both(xv, d) : cap(xv);
        reg gv = f.apply(vexp_sub<V>(xp, vm, vlo));
        if constexpr (!Coef::kNone) gv = V::fnmadd(ve, cv, gv);
        if constexpr (kCap == kCapTanh) gv = V::mul(gv, d);
        return gv;
    };
    std::size_t i = 0;
    if (stream) {
        const std::size_t head = StreamedRows<V>::head(g, n);
        if (head > 0)
            V::store_partial(g, head,
                             grad(V::load_partial(x, head, m), coef.load_partial(0, head)));
        for (i = head; i + 2 * N <= n; i += 2 * N) {
            const reg g0 = grad(V::load(x + i), coef.load(i));
            const reg g1 = grad(V::load(x + i + N), coef.load(i + N));
            V::stream(g + i, g0);
            V::stream(g + i + N, g1);
        }
    }
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

// The gradient pass over stored exponentials (ce_row_stats with kStore):
// g[c] = f_b * src[c] - e * coef[c], f_b = f * exp(refs[b] - m) per block;
// src is g itself, or the float scratch row (half precision).
// stream: the aligned middle of each block goes out with non-temporal stores
// (then V::stream_fence() before another thread reads g).
template <class V, class Coef, class E>
void ce_row_scale(const E* src, typename V::S* g, std::size_t n, const typename V::T* refs,
                  double m, double f, typename V::T e, const Coef& coef, bool stream = false) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr std::size_t B = kBlock * N;
    const reg ve = V::set1(e);
    for (std::size_t b = 0, i0 = 0; i0 < n; ++b, i0 += B) {
        const std::size_t end = (n - i0 < B) ? n : i0 + B;
        const T ref = refs[b];
        // one rounding of the factor: gradients are compared to their largest entry
        const double dref = static_cast<double>(ref);
        const reg fb = V::set1(static_cast<T>(dref == m             ? f
                                              : ref == neg_inf<T>() ? 0.0
                                                                    : f * std::exp(dref - m)));
        const auto out = [&](reg ev, reg cv) {
            const reg gv = V::mul(ev, fb);
            if constexpr (Coef::kNone) return gv;
            return V::fnmadd(ve, cv, gv);
        };
        std::size_t i = i0;
        if (stream) {
            const std::size_t head = StreamedRows<V>::head(g + i, end - i);
            if (head > 0)
                V::store_partial(
                    g + i, head,
                    out(V::load_partial(src + i, head, 0), coef.load_partial(i, head)));
            for (i += head; i + N <= end; i += N)
                V::stream(g + i, out(V::load(src + i), coef.load(i)));
        }
        for (; i + 2 * N <= end; i += 2 * N) {
            V::store(g + i, out(V::load(src + i), coef.load(i)));
            V::store(g + i + N, out(V::load(src + i + N), coef.load(i + N)));
        }
        for (; i < end; i += N) {
            const std::size_t w = (end - i < N) ? end - i : N;
            V::store_partial(g + i, w,
                             out(V::load_partial(src + i, w, 0), coef.load_partial(i, w)));
        }
    }
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
