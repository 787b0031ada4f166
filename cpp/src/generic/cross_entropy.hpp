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
#include <type_traits>

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

// 0, 1, ..., N-1: the lane numbers.
template <class V>
typename V::reg lane_numbers() {
    using T = typename V::T;
    static constexpr T kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static_assert(V::N <= 16);
    return V::load(kIota);
}

// Lanes [0, w) of a vector.
template <class V>
typename V::mask first_lanes(std::size_t w) {
    return V::lt(lane_numbers<V>(), V::set1(static_cast<typename V::T>(w)));
}

// The per-class coefficients of the linear terms of the loss and gradient:
// load(i) for a whole vector at class i, load_partial(i, w) with lanes past
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
    const typename V::T* w;
    typename V::reg load(std::size_t i) const { return V::load(w + i); }
    typename V::reg load_partial(std::size_t i, std::size_t len) const {
        return V::load_partial(w + i, len, 0);
    }
    typename V::T at(std::size_t i) const { return w[i]; }
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
template <class V>
typename V::mask lane_is(std::size_t j) {
    using T = typename V::T;
    return V::eq(lane_numbers<V>(), V::set1(static_cast<T>(j < V::N ? j : 16)));
}

// An ExpSplit before the sums across lanes (ce_stretch_lanes returns it;
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
template <class V, bool kCap, class Coef, bool kStore, bool kTies>
SplitLanes<V, kTies> ce_stretch_lanes(const typename V::T* x, typename V::T* e, std::size_t len,
                                      typename V::T ref, const Cap<V, kCap>& cap, const Coef& coef,
                                      std::size_t base, double& lin, double& cs, std::size_t skip) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    const bool live = ref != neg_inf<T>();
    const reg vref = V::set1(live ? ref : T(0));
    const reg inf = V::set1(std::numeric_limits<T>::infinity());
    const reg one = V::set1(T(1));
    const reg vs = V::set1(kLinScale<T>), vref_s = V::mul(vref, vs);  // (see kLinScale)
    const auto ex = [&](reg xv) { return vexp<V>(V::sub(xv, vref)); };
    reg s0 = V::zero(), s1 = V::zero(), t0 = V::zero();
    ExpSum<V> l, c;
    std::size_t i = 0;
    for (; i + 2 * N <= len; i += 2 * N) {
        const reg x0 = cap(V::load(x + i)), x1 = cap(V::load(x + i + N));
        if (live) {
            reg e0 = ex(x0), e1 = ex(x1);
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
                l.add2(V::mul(c0, V::fnmadd(x0, vs, vref_s)), V::mul(c1, V::fnmadd(x1, vs, vref_s)));
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
            reg ev = V::select(in, ex(xv), V::zero());
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

template <class V, bool kCap, class Coef, bool kStore, bool kTies>
ExpSplit ce_stretch(const typename V::T* x, typename V::T* e, std::size_t len, typename V::T ref,
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
template <class V, bool kCap, class Coef, bool kStore, bool kTies>
CeStats ce_row_stats(const typename V::T* x, std::size_t n, const Cap<V, kCap>& cap,
                     const Coef& coef, std::size_t y, typename V::T x_y,
                     typename V::T* e = nullptr, typename V::T* refs = nullptr) {
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
        const ExpSplit bs = ce_stretch<V, kCap, Coef, kStore, kTies>(
            x + i, kStore ? e + i : nullptr, len, ref, cap, coef, i, st.lin, st.cs, y - i);
        seen += st.cs - before;
        sum.ties += bs.ties;
        sum.rest += bs.rest;
        return bs.ties + bs.rest;
    };
    MaxSum ms;
    if constexpr (kCap)
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
template <class V, bool kCap, class Coef>
void ce_row_grad(const typename V::T* x, typename V::T* g, std::size_t n, typename V::T m,
                 const Factor<V>& f, typename V::T e, const Cap<V, kCap>& cap, const Coef& coef) {
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

// The gradient pass over stored exponentials (ce_row_stats with kStore):
// g[c] = f_b * g[c] - e * coef[c], f_b = f * exp(refs[b] - m) per block.
template <class V, class Coef>
void ce_row_scale(typename V::T* g, std::size_t n, const typename V::T* refs, double m, double f,
                  typename V::T e, const Coef& coef) {
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
        const reg fb = V::set1(static_cast<T>(
            dref == m ? f : ref == neg_inf<T>() ? 0.0 : f * std::exp(dref - m)));
        const auto out = [&](reg ev, reg cv) {
            const reg gv = V::mul(ev, fb);
            if constexpr (Coef::kNone) return gv;
            return V::fnmadd(ve, cv, gv);
        };
        std::size_t i = i0;
        for (; i + 2 * N <= end; i += 2 * N) {
            V::store(g + i, out(V::load(g + i), coef.load(i)));
            V::store(g + i + N, out(V::load(g + i + N), coef.load(i + N)));
        }
        for (; i < end; i += N) {
            const std::size_t w = (end - i < N) ? end - i : N;
            V::store_partial(g + i, w, out(V::load_partial(g + i, w, 0), coef.load_partial(i, w)));
        }
    }
}

template <class T>
void fill_row(T* p, std::size_t n, T v) {
    for (std::size_t i = 0; i < n; ++i) p[i] = v;
}

// out[k] = op(in[k]) for k < g, computed in T, one vector op per V::N values.
template <class V, class Op>
void map_values(const double* in, double* out, std::size_t g, Op op) {
    using T = typename V::T;
    for (std::size_t i = 0; i < g; i += V::N) {
        T buf[V::N];
        for (std::size_t k = 0; k < V::N; ++k) buf[k] = (i + k < g) ? static_cast<T>(in[i + k]) : 0;
        V::store(buf, op(V::load(buf)));
        for (std::size_t k = 0; k < V::N && i + k < g; ++k) out[i + k] = buf[k];
    }
}

// log1p(u): w = 1 + u rounded, then log(w) * u / (w - 1), which corrects the
// rounding of w (a few ulp of T).
template <class V>
typename V::reg vlog1p(typename V::reg u) {
    using T = typename V::T;
    const auto w = V::add(V::set1(T(1)), u);
    const auto d = V::sub(w, V::set1(T(1)));
    return V::select(V::eq(d, V::zero()), u, V::mul(vlog<V>(w), V::div(u, d)));
}

// Short rows (up to kCeGroupMaxVectors vectors: most class counts, not
// vocabularies) go through in groups of kCeGroup, each step for the whole
// group: the per-row chain of reductions (max, sums, log) is latency-bound
// when done one short row at a time.
constexpr std::size_t kCeGroup = 8;
constexpr std::size_t kCeGroupMaxVectors = 16;  // longest rows grouped (vectors)

// kTies: probabilities (see ExpSplit); integer labels otherwise.
template <class V, bool kCap, bool kTies, class Coef, class MakeCoef>
CeSums ce_rows(const CeRows<typename V::T>& a, const CeOptions<typename V::T>& o,
               MakeCoef make_coef) {
    using T = typename V::T;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    const Cap<V, kCap> cap(o.softcap);
    const std::size_t n = a.n;
    const double eps = o.smoothing, z = o.z_loss, dn = static_cast<double>(n);
    // the store-then-scale gradient (one exp per element) needs the logits
    // only in the read pass; soft-capping needs them again (its derivative)
    constexpr bool kStore = !kCap;
    const bool store = kStore && a.grad && !a.lse;
    const std::size_t blocks = (n + kBlock * V::N - 1) / (kBlock * V::N);
    // Short rows go through in groups (below); longer rows one at a time, so
    // that a row is still in L1 for its second look (measured: a group of 8
    // rows of 1024 float32 took 1.4x as long as single rows).
    const bool grouped = !kCap && !a.lse && n <= kCeGroupMaxVectors * V::N;
    Scratch<T> refs(store && !grouped ? blocks : 0);  // block references (single rows)
    CeSums total;
    const auto x_of = [&](std::size_t r) { return a.x + static_cast<std::ptrdiff_t>(r) * a.xs; };
    const auto g_of = [&](std::size_t r) {
        return a.grad ? a.grad + static_cast<std::ptrdiff_t>(r) * a.gs : nullptr;
    };

    // The row's label in y (-1 for probabilities); an ignored row is done here.
    const auto ignored = [&](std::size_t r, std::int64_t& y) {
        y = a.label ? a.label[static_cast<std::ptrdiff_t>(r) * a.ls] : -1;
        if (!a.label) return false;
        const bool ignore = y == o.ignore_index;
        if (!ignore && y >= 0 && static_cast<std::size_t>(y) < n) return false;
        // ignored; or out of range although the driver checked every label
        // (another thread changed them since): NaN, and no access through y
        const T fill = ignore ? T(0) : std::numeric_limits<T>::quiet_NaN();
        if (a.loss) a.loss[r] = static_cast<double>(fill);
        if (!ignore) total.ce += static_cast<double>(fill);
        if (T* g = g_of(r)) fill_row(g, n, fill);
        return true;
    };

    // The loss and gradient of row r from its read pass. xy = x[y] (read
    // before the gradient may overwrite it); with stored exponentials, refs
    // holds each block's reference.
    const auto finish = [&](std::size_t r, std::int64_t y, T xy, const CeStats& st,
                            const Coef& coef, const T* block_refs) {
        const double wy = (a.label && o.weight) ? static_cast<double>(o.weight[y]) : 1.0;
        const double log_s = st.log_sum, lse = st.max + log_s;
        if (!a.lse) {
            double ce = nan, zl = z != 0 ? nan : 0;
            if (!st.special) {
                if (a.label) {
                    ce = (1 - eps) * wy * st.label_term;
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
        T* g = g_of(r);
        if (!g) return;
        if (st.special) return fill_row(g, n, std::numeric_limits<T>::quiet_NaN());
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
        if (store)
            ce_row_scale<V>(g, n, block_refs, st.max, coef_a / st.sum, static_cast<T>(coef_e), coef);
        else
            ce_row_grad<V>(x_of(r), g, n, static_cast<T>(st.max), Factor<V>::of(coef_a / st.sum),
                           static_cast<T>(coef_e), cap, coef);
        if constexpr (!kTies) {  // integer labels (kTies: probabilities)
            const double d = kCap ? static_cast<double>(cap.scalar_deriv(xy)) : 1.0;
            if (st.others >= 0) {  // p - 1 = -others / s: no cancellation when p is near 1
                const double cy = static_cast<double>(coef.at(static_cast<std::size_t>(y)));
                g[y] = static_cast<T>(label_gradient(coef_a - coef_b, coef_b, st.label_exp,
                                                     st.others, st.sum, coef_e * cy) *
                                      d);
            } else {
                g[y] = static_cast<T>(static_cast<double>(g[y]) - coef_b * d);
            }
        }
    };

    if (!grouped) {
        for (std::size_t r = 0; r < a.rows; ++r) {
            std::int64_t y;
            if (ignored(r, y)) continue;
            const T* x = x_of(r);
            const T xy = a.label ? x[y] : T(0);
            const std::size_t skip = a.label ? static_cast<std::size_t>(y) : n;
            const Coef coef = make_coef(r);
            CeStats st;
            if (a.lse) {
                st.max = static_cast<double>(a.lse[static_cast<std::ptrdiff_t>(r) * a.lses]);
                st.sum = 1;
                st.log_sum = 0;
                st.special = !std::isfinite(st.max);
                if (a.label) {  // p = exp(x'[y] - lse) and 1 - p
                    const double d = static_cast<double>(cap.scalar(xy)) - st.max;
                    st.label_exp = std::exp(d);
                    st.others = -std::expm1(d);
                }
                if constexpr (!Coef::kNone) st.cs = coef_sum<V>(coef, n);
            } else if (store) {
                st = ce_row_stats<V, kCap, Coef, kStore, kTies>(x, n, cap, coef, skip, xy, g_of(r),
                                                                refs.data);
            } else {
                st = ce_row_stats<V, kCap, Coef, false, kTies>(x, n, cap, coef, skip, xy);
            }
            finish(r, y, xy, st, coef, refs.data);
        }
        return total;
    }

    // Short rows, kCeGroup at a time (without soft-capping): each step for
    // the whole group, then the logs in one vector. Short rows count
    // ties rather than skip the label: the skip's data-dependent branch (one
    // mispredict per row) costs more than the ties' two operations per
    // vector there.
    const bool short_rows = kTies || n <= 4 * V::N;
    std::size_t rows[kCeGroup];
    std::int64_t ys[kCeGroup];
    T xys[kCeGroup];
    std::size_t count = 0;
    const auto run_group = [&](auto ties_tag) {
        constexpr bool kT = decltype(ties_tag)::value;
        T m[kCeGroup];
        CeStats st[kCeGroup];
        SplitLanes<V, kT> lanes[kCeGroup];
        ExpSplit es[kCeGroup];
        double d[kCeGroup], ey[kCeGroup], u[kCeGroup], l1p[kCeGroup];
        for (std::size_t k = 0; k < count; ++k) m[k] = row_max<V>(x_of(rows[k]), n);
        for (std::size_t k = 0; k < count; ++k) {
            st[k].max = static_cast<double>(m[k]);
            st[k].special = !std::isfinite(m[k]);
            d[k] = kT ? 0.0 : static_cast<double>(xys[k]) - st[k].max;
            ey[k] = 1;
            if (st[k].special) continue;
            const Coef coef = make_coef(rows[k]);
            const std::size_t skip = kT ? n : static_cast<std::size_t>(ys[k]);
            lanes[k] =
                store
                    ? ce_stretch_lanes<V, kCap, Coef, true, kT>(x_of(rows[k]), g_of(rows[k]), n,
                                                                m[k], cap, coef, 0, st[k].lin,
                                                                st[k].cs, skip)
                    : ce_stretch_lanes<V, kCap, Coef, false, kT>(
                          x_of(rows[k]), nullptr, n, m[k], cap, coef, 0, st[k].lin, st[k].cs, skip);
        }
        // the reductions after all the rows' exponentials (off each row's path)
        for (std::size_t k = 0; k < count; ++k)
            if (!st[k].special) es[k] = lanes[k].split();
        if constexpr (!kT) map_values<V>(d, ey, count, [](auto v) { return vexp<V>(v); });
        // A label far below the maximum: exp(d) may underflow in T and
        // rest / exp(d) overflow it; such rows (loss > -kFarBelow) take double.
        constexpr double kFarBelow = -60;
        for (std::size_t k = 0; k < count; ++k) {
            if (!kT && d[k] < kFarBelow) ey[k] = std::exp(d[k]);
            u[k] = st[k].special ? 0.0 : ce_log1p_arg<kT>(es[k], ey[k]);
        }
        map_values<V>(u, l1p, count, [](auto v) { return vlog1p<V>(v); });
        for (std::size_t k = 0; k < count; ++k)
            if (!kT && d[k] < kFarBelow) l1p[k] = std::log1p(u[k]);
        for (std::size_t k = 0; k < count; ++k) {
            if (!st[k].special)
                ce_finish_sums<kT>(st[k], es[k], static_cast<double>(xys[k]), ey[k], l1p[k]);
            finish(rows[k], ys[k], xys[k], st[k], make_coef(rows[k]), &m[k]);
        }
        count = 0;
    };
    const auto group = [&] {
        if (short_rows)
            run_group(std::true_type{});
        else
            run_group(std::false_type{});
    };
    for (std::size_t r = 0; r < a.rows; ++r) {
        std::int64_t y;
        if (ignored(r, y)) continue;
        rows[count] = r;
        ys[count] = y;
        xys[count] = a.label ? x_of(r)[y] : T(0);
        if (++count == kCeGroup) group();
    }
    if (count) group();
    return total;
}

template <class V, bool kCap>
CeSums ce_rows_capped(const CeRows<typename V::T>& a, const CeOptions<typename V::T>& o) {
    using T = typename V::T;
    if (!a.label) {
        const auto keep = V::set1(static_cast<T>(1 - o.smoothing));
        const auto add = V::set1(static_cast<T>(o.smoothing / static_cast<double>(a.n)));
        if (o.weight)
            return ce_rows<V, kCap, true, TargetCoef<V, true>>(a, o, [&](std::size_t r) {
                return TargetCoef<V, true>{a.target + static_cast<std::ptrdiff_t>(r) * a.ts,
                                           o.weight, keep, add};
            });
        return ce_rows<V, kCap, true, TargetCoef<V, false>>(a, o, [&](std::size_t r) {
            return TargetCoef<V, false>{a.target + static_cast<std::ptrdiff_t>(r) * a.ts, nullptr,
                                        keep, add};
        });
    }
    if (o.smoothing == 0)
        return ce_rows<V, kCap, false, NoCoef<V>>(a, o, [](std::size_t) { return NoCoef<V>{}; });
    if (o.weight)
        return ce_rows<V, kCap, false, WeightCoef<V>>(a, o,
                                               [&](std::size_t) { return WeightCoef<V>{o.weight}; });
    return ce_rows<V, kCap, false, OnesCoef<V>>(a, o, [](std::size_t) { return OnesCoef<V>{}; });
}

// ------------------------------------------------------------- columns ----
//
// (N, C, d1..dk) with the classes on axis 1: V::N examples side by side, one
// per lane, the classes strided. Per chunk of lanes: the maximum (a pass over
// the classes), the exponentials stored into the gradient with their sums
// (ties apart, as for probabilities in rows) and the linear sums, the
// per-lane logs in one vector op, then a pass that scales the stored
// exponentials. Ignored lanes get 0, lanes whose maximum is not finite or
// that hold a NaN get NaN. (Integer labels without smoothing or z-loss take
// ce_cols_labels, below: the same in fewer steps.)
template <class V, bool kSoft>
CeSums ce_cols(const CeCols<typename V::T>& a, const CeOptions<typename V::T>& o) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr T inf = std::numeric_limits<T>::infinity();
    const std::size_t n = a.n;
    const double eps = o.smoothing, z = o.z_loss, dn = static_cast<double>(n);
    const bool lin_terms = kSoft || eps != 0;
    const reg keep = V::set1(static_cast<T>(1 - eps)), add = V::set1(static_cast<T>(eps / dn));
    const reg zero = V::zero(), one = V::set1(T(1)),
              nan = V::set1(std::numeric_limits<T>::quiet_NaN());
    const auto at = [](auto* p, std::ptrdiff_t stride, std::size_t i) {
        return p + static_cast<std::ptrdiff_t>(i) * stride;
    };
    CeSums total;
    for (std::size_t c0 = 0; c0 < a.inner; c0 += N) {
        const Chunk<V> ch{(a.inner - c0 < N) ? a.inner - c0 : N};
        const T* x = a.x + c0;
        T* g = a.grad ? a.grad + c0 : nullptr;
        const T* t = kSoft ? a.target + c0 : nullptr;
        // per lane, as T lanes: label, x[label], its weight; flags: ignored,
        // unusable (a label out of range: labels changed by another thread
        // since they were checked -> NaN); and the gradient's scale
        T yf[N], xy[N], wy[N], ignored[N], unusable[N];
        double gsc[N];
        for (std::size_t l = 0; l < N; ++l) {
            yf[l] = -1;
            xy[l] = 0;
            wy[l] = 1;
            gsc[l] = a.grad_scale && l < ch.w ? a.grad_scale[c0 + l] : 1.0;
            ignored[l] = unusable[l] = 0;
            if (kSoft || l >= ch.w) continue;
            const std::int64_t y = a.label[static_cast<std::ptrdiff_t>(c0 + l) * a.ls];
            if (y == o.ignore_index) {
                ignored[l] = 1;
            } else if (y < 0 || static_cast<std::size_t>(y) >= n) {
                unusable[l] = 1;
            } else {
                yf[l] = static_cast<T>(y);
                xy[l] = x[static_cast<std::ptrdiff_t>(y) * a.xs + static_cast<std::ptrdiff_t>(l)];
                if (o.weight) wy[l] = o.weight[y];
            }
        }
        const auto coef_at = [&](std::size_t i) {
            if constexpr (kSoft) {
                const reg tp = V::fmadd(ch.load(at(t, a.ts, i), 0), keep, add);
                return o.weight ? V::mul(V::set1(o.weight[i]), tp) : tp;
            } else {
                return V::set1(o.weight ? o.weight[i] : T(1));
            }
        };
        const reg m = col_max<V>(x, a.xs, n, ch);
        const reg ref = V::select(V::not_finite(m), zero, m);
        const reg vs = V::set1(kLinScale<T>), ref_s = V::mul(ref, vs);  // (see kLinScale)
        auto rest = V::wide_zero(), ties = V::wide_zero(), lin = V::wide_zero(),
             cs = V::wide_zero();
        for (std::size_t i = 0; i < n;) {
            const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
            reg r0 = zero, t0 = zero, l0 = zero, c0v = zero;
            for (; i < end; ++i) {
                const reg xv = ch.load(at(x, a.xs, i), -inf);
                const reg e = vexp<V>(V::sub(xv, ref));
                if (g) ch.store(at(g, a.gs, i), e);
                const auto top = V::eq(xv, m);
                r0 = V::add(r0, V::select(top, zero, e));
                t0 = V::add(t0, V::select(top, one, zero));
                if (lin_terms) {
                    const reg cv = coef_at(i);
                    l0 = V::fmadd(cv, V::fnmadd(xv, vs, ref_s), l0);
                    c0v = V::add(c0v, cv);
                }
            }
            V::wide_add(rest, r0);
            V::wide_add(ties, t0);
            if (lin_terms) {
                V::wide_add(lin, l0);
                V::wide_add(cs, c0v);
            }
        }
        // log(s) = log1p((ties - 1) + rest), the small part formed in double
        double rs[N], tsum[N], css[N];
        T mt[N];
        V::wide_store(rest, rs);
        V::wide_store(ties, tsum);
        V::wide_store(cs, css);
        V::store(mt, m);
        T u[N];
        for (std::size_t l = 0; l < N; ++l) u[l] = static_cast<T>((tsum[l] - 1) + rs[l]);
        const reg s = V::add(V::wide_round(ties), V::wide_round(rest));
        const reg log_s = vlog1p<V>(V::load(u));
        const reg lse = V::add(m, log_s);
        auto special = V::mask_or(V::not_finite(m), V::isnan(s));
        if constexpr (!kSoft)
            special = V::mask_or(special, V::mask_or(V::isnan(V::load(xy)),
                                                     V::gt(V::load(unusable), zero)));
        const auto skip = V::gt(V::load(ignored), zero);
        // the losses lane by lane in double, as the rows do: m - x[y], the linear
        // sums and lse^2 may exceed the largest T where the loss does not
        {
            T ls[N], sp[N];
            double lins[N];
            V::store(ls, log_s);
            V::store(sp, V::select(special, one, zero));
            V::wide_store(lin, lins);
            const double q = std::numeric_limits<double>::quiet_NaN();
            for (std::size_t l = 0; l < ch.w; ++l) {
                double ce = 0, zl = 0;
                if (ignored[l] == 0) {
                    if (sp[l] != 0) {
                        ce = q;
                        zl = z != 0 ? q : 0.0;
                    } else {
                        const double lsd = static_cast<double>(ls[l]), mx = static_cast<double>(mt[l]);
                        const double lin_l = lins[l] * kLinUnscale;
                        if constexpr (kSoft) {
                            ce = css[l] * lsd + lin_l;
                        } else {
                            ce = (1 - eps) * static_cast<double>(wy[l]) *
                                 (lsd + (mx - static_cast<double>(xy[l])));
                            if (eps != 0) ce += eps / dn * (o.weight_sum * lsd + lin_l);
                        }
                        if (z != 0) zl = z * (mx + lsd) * (mx + lsd);
                    }
                    total.ce += ce;
                    total.z += zl;
                }
                if (a.loss) a.loss[c0 + l] = ce + zl;
            }
        }
        if (!g) continue;
        // the gradient: g = fa * e - fe * coef - fb * [c = y], the factors per
        // lane in double as the rows form them (a per-example scale, 1 / sum of
        // the weights or a weight may lie beyond T's range where g does not)
        T fav[N], fev[N], fbv[N], sv[N], lsev[N];
        double fbd[N];  // fb in double (also the label's gradient below)
        V::store(sv, s);
        V::store(lsev, lse);
        for (std::size_t l = 0; l < N; ++l) {
            const double sc = gsc[l] * a.s_ce;
            double fa_l, fe_l, fb_l = 0;
            if constexpr (kSoft) {
                fa_l = sc * css[l];
                fe_l = sc;
            } else {
                fb_l = sc * (1 - eps) * static_cast<double>(wy[l]);
                fa_l = fb_l + sc * (eps * o.weight_sum / dn);
                fe_l = sc * (eps / dn);
            }
            if (z != 0) fa_l += gsc[l] * (a.s_z * 2 * z) * static_cast<double>(lsev[l]);
            fav[l] = static_cast<T>(fa_l / static_cast<double>(sv[l]));
            fev[l] = static_cast<T>(fe_l);
            fbd[l] = fb_l;
            fbv[l] = static_cast<T>(fb_l);
        }
        const reg fa = V::load(fav), fe = V::load(fev), fb = V::load(fbv);
        const reg vy = V::load(yf);
        // at a label that is the maximum, p - 1 = -((ties - 1) + rest) / s,
        // in double: formed as fa * e - fb it would cancel when p is near 1
        reg gy = zero;
        auto label_top = V::lt(one, zero);  // (no lane)
        if constexpr (!kSoft) {
            T gyl[N], top[N], lsv[N];
            V::store(lsv, log_s);
            const double extra = a.s_ce * eps * o.weight_sum / dn;  // coef_a - coef_b, per unit
            for (std::size_t l = 0; l < N; ++l) {
                top[l] = T(0);
                gyl[l] = T(0);
                if (l >= ch.w || yf[l] < 0 || xy[l] != mt[l]) continue;
                const double sc = gsc[l], sl = tsum[l] + rs[l];
                double fx = sc * extra;  // + the z-loss term
                if (z != 0)
                    fx += sc * a.s_z * 2 * z *
                          (static_cast<double>(mt[l]) + static_cast<double>(lsv[l]));
                const double cy =
                    o.weight ? static_cast<double>(o.weight[static_cast<std::size_t>(yf[l])]) : 1.0;
                gyl[l] = static_cast<T>(label_gradient(fx, fbd[l], 1.0, (tsum[l] - 1) + rs[l], sl,
                                                       sc * a.s_ce * eps / dn * cy));
                top[l] = T(1);
            }
            gy = V::load(gyl);
            label_top = V::gt(V::load(top), zero);
        }
        for (std::size_t i = 0; i < n; ++i) {
            T* gi = at(g, a.gs, i);
            reg gv = V::mul(ch.load(gi, 0), fa);
            if (lin_terms) gv = V::fnmadd(fe, coef_at(i), gv);
            if constexpr (!kSoft) {
                const auto at_y = V::eq(vy, V::set1(static_cast<T>(i)));
                gv = V::sub(gv, V::select(at_y, fb, zero));
                gv = V::select(at_y, V::select(label_top, gy, gv), gv);
            }
            ch.store(gi, V::select(skip, zero, V::select(special, nan, gv)));
        }
    }
    return total;
}

// Integer labels without smoothing or z-loss (the usual call), every step a
// vector op across the lanes: one pass over the classes gives the maximum m,
// then one pass gives x[y] and rest = the sum of exp(x - m) over the other
// classes (stored into the gradient), and per lane
//   ce = w[y] * (lse - x[y]) = w[y] * log1p(rest / ey),  ey = exp(x[y] - m),
// exact in form as in the rows (a label far below the maximum, where ey
// underflows: (m - x[y]) + log(ey + rest)); the gradient is
//   f * exp(x - m), f = s_ce * scale * w[y] / s (s = ey + rest), and at the
// label -f * rest (p - 1 = -rest / s, without cancellation). Products with a
// class weight or a per-example scale are formed in double lane by lane, as
// the rows form them (they may lie beyond T's range where the result does not).
template <class V>
CeSums ce_cols_labels(const CeCols<typename V::T>& a, const CeOptions<typename V::T>& o) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr T kIgnored = -1, kUnusable = -2;  // label lanes that hold no class
    const std::size_t n = a.n;
    const reg zero = V::zero(), one = V::set1(T(1)),
              nan = V::set1(std::numeric_limits<T>::quiet_NaN());
    const auto at = [](auto* p, std::ptrdiff_t stride, std::size_t i) {
        return p + static_cast<std::ptrdiff_t>(i) * stride;
    };
    auto total = V::wide_zero();
    double lane_total = 0;  // the lanes done one by one
    // the gradient's factor formed in T: no weights or per-example scales, and
    // s_ce a normal T (1 / count for a mean, times a scalar grad_out)
    const T s_ce_t = static_cast<T>(a.s_ce);
    const bool t_factor = !o.weight && !a.grad_scale && std::isfinite(s_ce_t) &&
                          (a.s_ce == 0 || std::fabs(s_ce_t) >= std::numeric_limits<T>::min());
    for (std::size_t c0 = 0; c0 < a.inner; c0 += N) {
        const Chunk<V> ch{(a.inner - c0 < N) ? a.inner - c0 : N};
        const T* x = a.x + c0;
        T* g = a.grad ? a.grad + c0 : nullptr;
        // per lane: the label, or kIgnored (and the lanes past the chunk), or
        // kUnusable (out of range: labels changed by another thread since the
        // driver checked them -> NaN)
        T yf[N];
        for (std::size_t l = 0; l < N; ++l) {
            const std::int64_t y =
                l < ch.w ? a.label[static_cast<std::ptrdiff_t>(c0 + l) * a.ls] : o.ignore_index;
            yf[l] = y == o.ignore_index                           ? kIgnored
                    : (y < 0 || static_cast<std::size_t>(y) >= n) ? kUnusable
                                                                  : static_cast<T>(y);
        }
        const reg vy = V::load(yf);
        reg vw = one;  // the label's weight
        if (o.weight) {
            T wy[N];
            for (std::size_t l = 0; l < N; ++l)
                wy[l] = yf[l] >= 0 ? o.weight[static_cast<std::size_t>(yf[l])] : T(1);
            vw = V::load(wy);
        }
        const reg m = col_max<V>(x, a.xs, n, ch);
        const reg ref = V::select(V::not_finite(m), zero, m);
        reg xy = zero;
        auto rest_w = V::wide_zero();
        for (std::size_t i = 0; i < n;) {
            const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
            reg r = zero;
            for (; i < end; ++i) {
                const reg xv = ch.load(at(x, a.xs, i), -inf);
                const reg e = vexp<V>(V::sub(xv, ref));
                if (g) ch.store(at(g, a.gs, i), e);
                const auto at_y = V::eq(vy, V::set1(static_cast<T>(i)));
                xy = V::select(at_y, xv, xy);
                r = V::add(r, V::select(at_y, zero, e));
            }
            V::wide_add(rest_w, r);
        }
        const reg rest = V::wide_round(rest_w);
        const reg d = V::sub(xy, ref);  // <= 0
        const reg ey = vexp<V>(d);
        const auto far = V::lt(d, V::set1(T(-60)));  // ey underflows, or rest / ey overflows
        const reg l1p = vlog1p<V>(V::select(far, V::sub(V::add(rest, ey), one), V::div(rest, ey)));
        const auto skip = V::eq(vy, V::set1(kIgnored));
        const auto special = V::mask_or(V::mask_or(V::not_finite(m), V::isnan(rest)),
                                        V::mask_or(V::isnan(xy), V::eq(vy, V::set1(kUnusable))));
        const auto done = V::mask_or(skip, special);  // a loss of 0, or NaN
        // (the weight comes in below: the product is formed in double, where
        // a weight may take it past the largest T, or be subnormal)
        const reg loss = V::select(skip, zero, V::select(special, nan, V::select(far, zero, l1p)));
        // far below: (m - x[y]) + log(s), in double (m - x[y] may exceed the largest T)
        const reg far_lanes = V::select(done, zero, V::select(far, one, zero));
        const bool per_lane = o.weight || V::hmax(far_lanes) > 0;
        if (!per_lane) V::wide_add(total, loss);
        double lanes[N];
        if (a.loss || per_lane) {
            auto lw = V::wide_zero();
            V::wide_add(lw, loss);
            V::wide_store(lw, lanes);
        }
        if (per_lane) {
            T fl[N], mt[N], xt[N], lt[N], wt[N];
            V::store(fl, far_lanes);
            V::store(mt, m);
            V::store(xt, xy);
            V::store(lt, l1p);
            V::store(wt, vw);
            for (std::size_t l = 0; l < ch.w; ++l) {
                const double wl = static_cast<double>(wt[l]);
                if (fl[l] != 0) {
                    const double mx = static_cast<double>(mt[l]), xl = static_cast<double>(xt[l]);
                    lanes[l] = wl * ((mx - xl) + static_cast<double>(lt[l]));
                } else {
                    lanes[l] *= wl;  // (0 where ignored, NaN where special)
                }
                lane_total += lanes[l];
            }
        }
        if (a.loss)
            for (std::size_t l = 0; l < ch.w; ++l) a.loss[c0 + l] = lanes[l];
        if (!g) continue;
        const reg s = V::add(ey, rest);
        reg f;  // s_ce * grad_scale * w[y] / s
        if (t_factor) {
            f = V::div(V::set1(s_ce_t), s);
        } else {  // in double, as the rows form it: the factors may lie beyond T's range
            T sv[N], wt[N], fv[N];
            V::store(sv, s);
            V::store(wt, vw);
            for (std::size_t l = 0; l < N; ++l) {
                const double gl = a.grad_scale && l < ch.w ? a.grad_scale[c0 + l] : 1.0;
                fv[l] = static_cast<T>(a.s_ce * gl * static_cast<double>(wt[l]) /
                                       static_cast<double>(sv[l]));
            }
            f = V::load(fv);
        }
        const reg gy = V::fnmadd(f, rest, zero);  // (+0 for a single class)
        for (std::size_t i = 0; i < n; ++i) {
            T* gi = at(g, a.gs, i);
            const auto at_y = V::eq(vy, V::set1(static_cast<T>(i)));
            const reg gv = V::select(at_y, gy, V::mul(ch.load(gi, 0), f));
            ch.store(gi, V::select(skip, zero, V::select(special, nan, gv)));
        }
    }
    CeSums sums;
    sums.ce = V::wide_hsum(total) + lane_total;
    return sums;
}

template <class V>
CeSums cross_entropy_cols(const CeCols<typename V::T>& a, const CeOptions<typename V::T>& o) {
    if (!a.label) return ce_cols<V, true>(a, o);
    if (o.smoothing == 0 && o.z_loss == 0) return ce_cols_labels<V>(a, o);
    return ce_cols<V, false>(a, o);
}

// Short rows by tiles (softmax.hpp): V::N rows (logits, and probabilities)
// transposed into tiles, ce_cols on them, the gradient transposed back. Each lane is computed on
// its own, as in ce_cols, so a row's loss does not depend on its batch.
template <class V>
CeSums ce_by_tiles(const CeRows<typename V::T>& a, const CeOptions<typename V::T>& o) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    alignas(64) T xt[kTileBytes / sizeof(T)];
    alignas(64) T tt[kTileBytes / sizeof(T)];
    CeSums total;
    for (std::size_t r = 0; r < a.rows; r += N) {
        const std::size_t w = (a.rows - r < N) ? a.rows - r : N;
        const auto off = static_cast<std::ptrdiff_t>(r);
        tile_in<V>(a.x + off * a.xs, a.xs, xt, w, a.n);
        if (a.target) tile_in<V>(a.target + off * a.ts, a.ts, tt, w, a.n);
        CeCols<T> c;
        c.x = xt;
        c.xs = N;
        c.label = a.label ? a.label + off * a.ls : nullptr;
        c.ls = a.ls;
        c.target = a.target ? tt : nullptr;
        c.ts = N;
        c.grad = a.grad ? xt : nullptr;  // in place: ce_cols reads each entry first
        c.gs = N;
        c.grad_scale = a.grad_scale ? a.grad_scale + r : nullptr;
        c.loss = a.loss ? a.loss + r : nullptr;
        c.s_ce = a.s_ce;
        c.s_z = a.s_z;
        c.n = a.n;
        c.inner = w;
        const CeSums s = cross_entropy_cols<V>(c, o);
        total.ce += s.ce;
        total.z += s.z;
        if (a.grad) tile_out<V>(xt, a.grad + off * a.gs, a.gs, w, a.n);
    }
    return total;
}

template <class V>
CeSums cross_entropy_rows(const CeRows<typename V::T>& a, const CeOptions<typename V::T>& o) {
    if (o.softcap == 0 && !a.lse && tiles_pay<V>(a.n, kTileLimits<V>.cross_entropy))
        return ce_by_tiles<V>(a, o);
    return o.softcap != 0 ? ce_rows_capped<V, true>(a, o) : ce_rows_capped<V, false>(a, o);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
