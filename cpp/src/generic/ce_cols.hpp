// The fused cross-entropy over columns: (N, C, d1..dk) with the classes on
// axis 1, and the short rows' tiles.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "fastsoftmax/cross_entropy.hpp"
#include "generic/blocks.hpp"
#include "generic/ce_terms.hpp"
#include "generic/target.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

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
// The gradient pass's exp(x[i] - ref) of a chunk: the exponential the read
// pass left in the gradient g (at gi), or, for half-precision storage (see
// kExpInOutput), the same exponential again from x.
template <class V, class Ch>
auto ce_col_exp(Ch ch, typename V::reg ref, std::ptrdiff_t xs) {
    using T = typename V::T;
    return [ch, ref, xs](const typename V::S* x, const typename V::S* gi, std::size_t i) {
        if constexpr (kExpInOutput<V>) {
            (void)x;
            return ch.load(gi, 0);
        } else {
            (void)gi;
            const auto xv = ch.load(x + static_cast<std::ptrdiff_t>(i) * xs,
                                    -std::numeric_limits<T>::infinity());
            return vexp<V>(V::sub(xv, ref));
        }
    };
}

template <class V, bool kSoft>
CeSums ce_cols(const CeCols<typename V::S>& a, const CeOptions<typename V::S>& o) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr T inf = std::numeric_limits<T>::infinity();
    const std::size_t n = a.n;
    const double eps = o.smoothing, z = o.z_loss, dn = static_cast<double>(n);
    const CeCall call(o, n, a.s_ce, a.s_z);
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
        const typename V::S* x = a.x + c0;
        typename V::S* g = a.grad ? a.grad + c0 : nullptr;
        const typename V::S* t = kSoft ? a.target + c0 : nullptr;
        // per lane, as T lanes: label, x[label], its weight; flags: ignored,
        // unusable (a label out of range: labels changed by another thread
        // since they were checked -> NaN); and the gradient's scale
        T label_lanes[N], xy[N], wy[N], ignored[N], unusable[N];
        double grad_scales[N];
        for (std::size_t l = 0; l < N; ++l) {
            label_lanes[l] = -1;
            xy[l] = 0;
            wy[l] = 1;
            grad_scales[l] = a.grad_scale && l < ch.w ? a.grad_scale[c0 + l] : 1.0;
            ignored[l] = unusable[l] = 0;
            if (kSoft || l >= ch.w) continue;
            const std::int64_t y = a.label[static_cast<std::ptrdiff_t>(c0 + l) * a.ls];
            if (y == o.ignore_index) {
                ignored[l] = 1;
            } else if (y < 0 || static_cast<std::size_t>(y) >= n) {
                unusable[l] = 1;
            } else {
                label_lanes[l] = static_cast<T>(y);
                xy[l] = to_compute(
                    x[static_cast<std::ptrdiff_t>(y) * a.xs + static_cast<std::ptrdiff_t>(l)]);
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
        const auto exp_at = ce_col_exp<V>(ch, ref, a.xs);
        const reg vs = V::set1(kLinScale<T>), ref_s = V::mul(ref, vs);  // (see kLinScale)
        auto rest = V::wide_zero(), ties = V::wide_zero(), lin = V::wide_zero(),
             cs = V::wide_zero();
        for (std::size_t i = 0; i < n;) {
            const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
            reg rest_block = zero, ties_block = zero, lin_block = zero, coef_block = zero;
            for (; i < end; ++i) {
                const reg xv = ch.load(at(x, a.xs, i), -inf);
                const reg e = vexp<V>(V::sub(xv, ref));
                if (kExpInOutput<V> && g) ch.store(at(g, a.gs, i), e);
                const auto top = V::eq(xv, m);
                rest_block = V::add(rest_block, V::select(top, zero, e));
                ties_block = V::add(ties_block, V::select(top, one, zero));
                if (lin_terms) {
                    const reg cv = coef_at(i);
                    lin_block = V::fmadd(cv, V::fnmadd(xv, vs, ref_s), lin_block);
                    coef_block = V::add(coef_block, cv);
                }
            }
            V::wide_add(rest, rest_block);
            V::wide_add(ties, ties_block);
            if (lin_terms) {
                V::wide_add(lin, lin_block);
                V::wide_add(cs, coef_block);
            }
        }
        // log(s) = log1p((ties - 1) + rest), the small part formed in double
        double rest_lanes[N], tie_lanes[N], coef_sum_lanes[N];
        T max_lanes[N];
        V::wide_store(rest, rest_lanes);
        V::wide_store(ties, tie_lanes);
        V::wide_store(cs, coef_sum_lanes);
        V::store(max_lanes, m);
        T u[N];
        for (std::size_t l = 0; l < N; ++l)
            u[l] = static_cast<T>((tie_lanes[l] - 1) + rest_lanes[l]);
        const reg s = V::add(V::wide_round(ties), V::wide_round(rest));
        const reg log_s = vlog1p<V>(V::load(u));
        auto special = V::mask_or(V::not_finite(m), V::isnan(s));
        if constexpr (!kSoft)
            special = V::mask_or(special,
                                 V::mask_or(V::isnan(V::load(xy)), V::gt(V::load(unusable), zero)));
        const auto skip = V::gt(V::load(ignored), zero);
        // the losses lane by lane in double, as the rows do: m - x[y], the linear
        // sums and lse^2 may exceed the largest T where the loss does not
        T log_sum_lanes[N], special_lanes[N];
        double lin_lanes[N], lse_lanes[N];  // lin, and lse = m + log(s) in double
        V::store(log_sum_lanes, log_s);
        V::store(special_lanes, V::select(special, one, zero));
        V::wide_store(lin, lin_lanes);
        for (std::size_t l = 0; l < N; ++l)
            lse_lanes[l] =
                static_cast<double>(max_lanes[l]) + static_cast<double>(log_sum_lanes[l]);
        const double q = std::numeric_limits<double>::quiet_NaN();
        for (std::size_t l = 0; l < ch.w; ++l) {
            double ce = 0, zl = 0;
            if (ignored[l] == 0) {
                if (special_lanes[l] != 0) {
                    ce = q;
                    zl = z != 0 ? q : 0.0;
                } else {
                    const double lsd = static_cast<double>(log_sum_lanes[l]),
                                 mx = static_cast<double>(max_lanes[l]);
                    const double lin_l = lin_lanes[l] * kLinUnscale;
                    if constexpr (kSoft)
                        ce = ce_target_loss(coef_sum_lanes[l], lsd, lin_l);
                    else
                        ce = ce_label_loss(call, static_cast<double>(wy[l]),
                                           lsd + (mx - static_cast<double>(xy[l])), lsd, lin_l);
                    zl = z_loss_term(call, lse_lanes[l]);
                }
                total.ce += ce;
                total.z += zl;
            }
            if (a.loss) a.loss[c0 + l] = ce + zl;
            if (a.lse_out)  // (as the rows: 0 where ignored, NaN where special)
                a.lse_out[c0 + l] = ignored[l] != 0         ? 0.0
                                    : special_lanes[l] != 0 ? q
                                                            : lse_lanes[l];
        }
        if (!g) continue;
        // the gradient: g = a * e - e * coef - b * [c = y] (ce_terms.hpp), the
        // factors per lane in double as the rows form them (a per-example
        // scale, 1 / sum of the weights or a weight may lie beyond T's range
        // where g does not)
        T softmax_factor_lanes[N], coef_factor_lanes[N], label_factor_lanes[N], sum_lanes[N];
        CeGradFactors factors[N];
        V::store(sum_lanes, s);
        for (std::size_t l = 0; l < N; ++l) {
            factors[l] =
                kSoft ? ce_target_factors(call, grad_scales[l], coef_sum_lanes[l], lse_lanes[l])
                      : ce_label_factors(call, grad_scales[l], static_cast<double>(wy[l]),
                                         lse_lanes[l]);
            softmax_factor_lanes[l] =
                static_cast<T>(factors[l].a / static_cast<double>(sum_lanes[l]));
            coef_factor_lanes[l] = static_cast<T>(factors[l].e);
            label_factor_lanes[l] = static_cast<T>(factors[l].b);
        }
        const reg softmax_factor = V::load(softmax_factor_lanes),
                  coef_factor = V::load(coef_factor_lanes),
                  label_factor = V::load(label_factor_lanes);
        const reg vy = V::load(label_lanes);
        // at a label that is the maximum, p - 1 = -((ties - 1) + rest) / s,
        // in double: formed as softmax_factor * e - label_factor it would cancel when p is near 1
        reg gy = zero;
        auto label_top = V::lt(one, zero);  // (no lane)
        if constexpr (!kSoft) {
            T gyl[N], top[N];
            for (std::size_t l = 0; l < N; ++l) {
                top[l] = T(0);
                gyl[l] = T(0);
                if (l >= ch.w || label_lanes[l] < 0 || xy[l] != max_lanes[l]) continue;
                const double cy =
                    o.weight
                        ? static_cast<double>(o.weight[static_cast<std::size_t>(label_lanes[l])])
                        : 1.0;
                gyl[l] = static_cast<T>(label_gradient(factors[l], 1.0,
                                                       (tie_lanes[l] - 1) + rest_lanes[l],
                                                       tie_lanes[l] + rest_lanes[l], cy));
                top[l] = T(1);
            }
            gy = V::load(gyl);
            label_top = V::gt(V::load(top), zero);
        }
        for (std::size_t i = 0; i < n; ++i) {
            typename V::S* gi = at(g, a.gs, i);
            reg gv = V::mul(exp_at(x, gi, i), softmax_factor);
            if (lin_terms) gv = V::fnmadd(coef_factor, coef_at(i), gv);
            if constexpr (!kSoft) {
                const auto at_y = V::eq(vy, V::set1(static_cast<T>(i)));
                gv = V::sub(gv, V::select(at_y, label_factor, zero));
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
// Whether V has label_lanes (integer class labels as lanes, compared in
// int64: arch/README.md).
template <class V, class = void>
struct HasLabelLanes : std::false_type {};
template <class V>
struct HasLabelLanes<V, std::void_t<decltype(void(V::label_lanes(
                            static_cast<const std::int64_t*>(nullptr), std::size_t{},
                            std::int64_t{}, std::size_t{}, typename V::T{}, typename V::T{})))>>
    : std::true_type {};

// The per-chunk work of ce_cols_labels, for the tiles (columns in memory)
// and the register tiles (register_tiles.hpp): the chunk's lanes [0, w) are
// examples c0 + l of `a` (labels, per-example scales and losses); its
// logits, its exponentials and its gradient go through the callers' hooks.
// The sums are kept in the order ce_cols_labels has always added them.
// kN: the number of classes where known at compile time (the register
// tiles: the loops over the classes unroll), else 0.
template <class V, std::size_t kN = 0>
struct CeLabelsChunks {
    using T = typename V::T;
    using reg = typename V::reg;
    static constexpr std::size_t N = V::N;
    static constexpr T kIgnored = -1, kUnusable = -2;  // label lanes that hold no class
    const CeCols<typename V::S>& a;
    const CeOptions<typename V::S>& o;
    const CeCall call;  // (no smoothing, no z-loss here)
    // the gradient's factor formed in T: no weights or per-example scales, and
    // s_ce a normal T (1 / count for a mean, times a scalar grad_out)
    const T s_ce_t;
    const bool t_factor;
    typename V::Wide total = V::wide_zero();
    double lane_total = 0;  // the lanes done one by one

    CeLabelsChunks(const CeCols<typename V::S>& a_, const CeOptions<typename V::S>& o_)
        : a(a_),
          o(o_),
          call(o_, a_.n, a_.s_ce, a_.s_z),
          s_ce_t(static_cast<T>(a_.s_ce)),
          t_factor(!o_.weight && !a_.grad_scale && std::isfinite(s_ce_t) &&
                   (a_.s_ce == 0 || std::fabs(s_ce_t) >= std::numeric_limits<T>::min())) {}

    CeSums sums() const {
        CeSums out;
        out.ce = V::wide_hsum(total) + lane_total;
        return out;
    }
    // sums(), and the sums back to 0 (the next chunks' own)
    CeSums take() {
        const CeSums out = sums();
        total = V::wide_zero();
        lane_total = 0;
        return out;
    }

    // Per lane of examples c0 + l, l < w: the label, or kIgnored (and the
    // lanes past w), or kUnusable (out of range: labels changed by another
    // thread since the driver checked them -> NaN); label_lanes holds them
    // too where weights need them or they were read one by one.
    reg labels(std::size_t c0, std::size_t w, std::size_t n, T (&label_lanes)[N]) const {
        if constexpr (HasLabelLanes<V>::value) {
            if (a.ls == 1) {  // (contiguous labels: the usual case, in vector registers)
                const reg vy =
                    V::label_lanes(a.label + c0, w, o.ignore_index, n, kIgnored, kUnusable);
                if (o.weight) V::store(label_lanes, vy);
                return vy;
            }
        }
        for (std::size_t l = 0; l < N; ++l) {
            const std::int64_t y =
                l < w ? a.label[static_cast<std::ptrdiff_t>(c0 + l) * a.ls] : o.ignore_index;
            label_lanes[l] = y == o.ignore_index                           ? kIgnored
                             : (y < 0 || static_cast<std::size_t>(y) >= n) ? kUnusable
                                                                           : static_cast<T>(y);
        }
        return V::load(label_lanes);
    }

    // x_at(i): class i's logits (lanes past w: anything); with a gradient
    // (grad), keep(i, e) is handed exp(x - ref) of class i in the first pass,
    // again(i, ref) gives it back in the second, and put(i, v) takes the
    // gradient of class i.
    // kScaled: a temperature, x' = x * vs (vs > 0): the maximum of x' is
    // max(x) * vs, and each exponential exp(x * vs - ref) one fused
    // multiply-add, so that the logits are read as they are. (Always inlined:
    // the register tiles keep e and the gradient in registers only then; GCC
    // 12 left chunk<true> out of line there, 1.05x the plain call's time.)
    template <bool kScaled = false, class X, class Keep, class Again, class Put>
    __attribute__((always_inline)) void chunk(std::size_t c0, std::size_t w, X x_at, bool grad,
                                              Keep keep, Again again, Put put,
                                              reg vs = V::set1(T(1))) {
        constexpr T inf = std::numeric_limits<T>::infinity();
        const std::size_t n = kN ? kN : a.n;
        const reg zero = V::zero(), one = V::set1(T(1)),
                  nan = V::set1(std::numeric_limits<T>::quiet_NaN());
        T label_lanes[N];
        const reg vy = labels(c0, w, n, label_lanes);
        reg vw = one;  // the label's weight
        if (o.weight) {
            T wy[N];
            for (std::size_t l = 0; l < N; ++l)
                wy[l] =
                    label_lanes[l] >= 0 ? o.weight[static_cast<std::size_t>(label_lanes[l])] : T(1);
            vw = V::load(wy);
        }
        // the maximum, as col_max takes it (the same NaN answers)
        reg m0 = V::set1(-inf), m1 = m0;
        std::size_t k = 0;
        for (; k + 2 <= n; k += 2) {
            m0 = V::max(m0, x_at(k));
            m1 = V::max(m1, x_at(k + 1));
        }
        if (k < n) m0 = V::max(m0, x_at(k));
        const reg m = kScaled ? V::mul(V::max(m0, m1), vs) : V::max(m0, m1);
        const reg ref = V::select(V::not_finite(m), zero, m), nref = V::sub(zero, ref);
        reg xy = zero;
        // One class, unscaled (the register tiles of one class): every lane
        // that counts has x[y] = max, so exp(x - max) = 1, rest = 0 and a loss
        // of log1p(0) = +0; lanes whose logit is not finite are special, and
        // their results, like the ignored lanes', are replaced below.
        constexpr bool kOne = kN == 1 && !kScaled;
        auto rest_w = V::wide_zero();
        // (kFold: x * vs - ref in one fused multiply-add, unless some lane's
        // |ref| is past kFoldedRefMax: then the rounded products)
        const auto exps = [&](auto fold) {
            constexpr bool kFold = decltype(fold)::value;
            for (std::size_t i = 0; i < n;) {
                const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
                reg r = zero;
                for (; i < end; ++i) {
                    const reg xv = x_at(i);
                    const reg e = kOne      ? one
                                  : kFold   ? vexp<V>(V::fmadd(xv, vs, nref))
                                  : kScaled ? vexp<V>(V::sub(V::mul(xv, vs), ref))
                                            : vexp<V>(V::sub(xv, ref));
                    if (grad) keep(i, e);
                    const auto at_y = V::eq(vy, V::set1(static_cast<T>(i)));
                    xy = V::select(at_y, xv, xy);
                    r = V::add(r, V::select(at_y, zero, e));
                }
                V::wide_add(rest_w, r);
            }
        };
        if (kScaled && V::hmax(V::abs(ref)) <= kFoldedRefMax<T>)
            exps(std::true_type{});
        else
            exps(std::false_type{});
        if constexpr (kScaled) xy = V::mul(xy, vs);  // (x'[y])
        const reg rest = V::wide_round(rest_w);
        const reg d = V::sub(xy, ref);  // <= 0
        const reg ey = kOne ? one : vexp<V>(d);
        const auto far = V::lt(d, V::set1(T(-60)));  // ey underflows, or rest / ey overflows
        const reg l1p =
            kOne ? zero
                 : vlog1p<V>(V::select(far, V::sub(V::add(rest, ey), one), V::div(rest, ey)));
        const auto skip = V::eq(vy, V::set1(kIgnored));
        const auto special = V::mask_or(V::mask_or(V::not_finite(m), V::isnan(rest)),
                                        V::mask_or(V::isnan(xy), V::eq(vy, V::set1(kUnusable))));
        const auto done = V::mask_or(skip, special);  // a loss of 0, or NaN
        // (the weight comes in below: the product is formed in double, where
        // a weight may take it past the largest T, or be subnormal)
        const reg loss = V::select(skip, zero, V::select(special, nan, V::select(far, zero, l1p)));
        // far below: (m - x[y]) + log(s), in double (m - x[y] may exceed the largest T)
        const reg far_lanes = V::select(done, zero, V::select(far, one, zero));
        const bool per_lane = o.weight || (!kOne && V::hmax(far_lanes) > 0);
        if (!per_lane) V::wide_add(total, loss);
        double lanes[N];
        if (a.loss || per_lane) {
            auto lw = V::wide_zero();
            V::wide_add(lw, loss);
            V::wide_store(lw, lanes);
        }
        if (per_lane) {
            T far_flags[N], max_lanes[N], label_logit_lanes[N], log1p_lanes[N], weight_lanes[N];
            V::store(far_flags, far_lanes);
            V::store(max_lanes, m);
            V::store(label_logit_lanes, xy);
            V::store(log1p_lanes, l1p);
            V::store(weight_lanes, vw);
            for (std::size_t l = 0; l < w; ++l) {
                const double wl = static_cast<double>(weight_lanes[l]);
                if (far_flags[l] != 0) {
                    const double mx = static_cast<double>(max_lanes[l]),
                                 xl = static_cast<double>(label_logit_lanes[l]);
                    lanes[l] = wl * ((mx - xl) + static_cast<double>(log1p_lanes[l]));
                } else {
                    lanes[l] *= wl;  // (0 where ignored, NaN where special)
                }
                lane_total += lanes[l];
            }
        }
        if (a.loss)
            for (std::size_t l = 0; l < w; ++l) a.loss[c0 + l] = lanes[l];
        if (a.lse_out) {  // m + log(s), s = ey + rest (as the rows: 0 where
                          // ignored, NaN where special)
            T max_lanes[N], sum_lanes[N], label_lanes_now[N], special_now[N];
            V::store(max_lanes, m);
            V::store(sum_lanes, V::add(ey, rest));
            V::store(label_lanes_now, vy);
            V::store(special_now, V::select(special, one, zero));
            for (std::size_t l = 0; l < w; ++l)
                a.lse_out[c0 + l] = label_lanes_now[l] == kIgnored ? 0.0
                                    : special_now[l] != 0
                                        ? std::numeric_limits<double>::quiet_NaN()
                                        : static_cast<double>(max_lanes[l]) +
                                              std::log(static_cast<double>(sum_lanes[l]));
        }
        if (!grad) return;
        const reg s = V::add(ey, rest);
        reg f;  // s_ce * grad_scale * w[y] / s
        if (t_factor) {
            f = kOne ? V::set1(s_ce_t) : V::div(V::set1(s_ce_t), s);  // (kOne: s = 1)
        } else {  // in double, as the rows form it: the factors may lie beyond T's range
            T sum_lanes[N], weight_lanes[N], factor_lanes[N];
            V::store(sum_lanes, s);
            V::store(weight_lanes, vw);
            for (std::size_t l = 0; l < N; ++l) {
                const double gl = a.grad_scale && l < w ? a.grad_scale[c0 + l] : 1.0;
                const CeGradFactors gf =
                    ce_label_factors(call, gl, static_cast<double>(weight_lanes[l]), 0);
                factor_lanes[l] = static_cast<T>(gf.a / static_cast<double>(sum_lanes[l]));
            }
            f = V::load(factor_lanes);
        }
        const reg gy = V::fnmadd(f, rest, zero);  // (+0 for a single class)
        for (std::size_t i = 0; i < n; ++i) {
            const auto at_y = V::eq(vy, V::set1(static_cast<T>(i)));
            const reg gv = V::select(at_y, gy, V::mul(again(i, ref), f));
            put(i, V::select(skip, zero, V::select(special, nan, gv)));
        }
    }

    // The usual call: no weights, per-example scales or losses, no lse
    // output, no temperature (for kN >= 2, groups() takes it).
    bool plain(bool scaled) const { return t_factor && !scaled && !a.loss && !a.lse_out; }
    // G chunks at once, for plain() calls: chunk g's lanes are examples
    // c0 + g * N + l, l < w - g * N (chunks past w: none), its logits
    // x_at(g, i), its gradient put(g, i, v). Each chunk's steps are chunk's,
    // so the results are its bits, but they go through each step together, so
    // that one chunk's chain (exp -> sum -> divisions -> log1p) overlaps the
    // next's: with one chunk at a time the core waited on each chain (the
    // rows of 2 to 8 classes took 1.4x to 2x as long). sums[g] is what
    // take() gives after chunk(g); a chunk with a label far below its maximum
    // (chunk's formula in double, lane by lane) is left to chunk: far[g] set,
    // its gradient and sum not given.
    template <std::size_t G, class X, class Put>
    __attribute__((always_inline)) void groups(std::size_t c0, std::size_t w, X x_at, bool grad,
                                               Put put, double (&sums)[G], bool (&far)[G]) {
        static_assert(kN >= 2, "groups() takes rows of a known number of classes");
        constexpr T inf = std::numeric_limits<T>::infinity();
        const reg zero = V::zero(), one = V::set1(T(1)),
                  nan = V::set1(std::numeric_limits<T>::quiet_NaN());
        reg vy[G], m[G], ref[G], e[G][kN], xy[G], ey[G], rest[G];
        for (std::size_t g = 0; g < G; ++g) {
            const std::size_t at = g * N, wg = w > at ? (w - at < N ? w - at : N) : 0;
            T label_lanes[N];
            vy[g] = labels(c0 + at, wg, kN, label_lanes);
            reg m0 = V::set1(-inf), m1 = m0;  // (as chunk takes the maximum)
            std::size_t k = 0;
            for (; k + 2 <= kN; k += 2) {
                m0 = V::max(m0, x_at(g, k));
                m1 = V::max(m1, x_at(g, k + 1));
            }
            if (k < kN) m0 = V::max(m0, x_at(g, k));
            m[g] = V::max(m0, m1);
            ref[g] = V::select(V::not_finite(m[g]), zero, m[g]);
        }
        for (std::size_t g = 0; g < G; ++g) {
            if constexpr (kN == 2) {
                // one exponential: where the maximum is finite, the larger
                // element's exp(x - max) = exp(0) is exactly 1, as vexp gives
                // it; where it is not, the lane's results are NaN or 0 whatever
                // its exponentials
                const reg x0 = x_at(g, 0), x1 = x_at(g, 1);
                const auto first = V::ge(x0, x1);
                const reg small = vexp<V>(V::sub(V::select(first, x1, x0), ref[g]));
                e[g][0] = V::select(first, one, small);
                e[g][1] = V::select(first, small, one);
            } else {
                for (std::size_t i = 0; i < kN; ++i) e[g][i] = vexp<V>(V::sub(x_at(g, i), ref[g]));
            }
            reg r = zero;
            xy[g] = zero;
            ey[g] = zero;  // (chunk's exp(x[y] - ref), but for lanes whose results are 0 or NaN)
            for (std::size_t i = 0; i < kN; ++i) {
                const auto at_y = V::eq(vy[g], V::set1(static_cast<T>(i)));
                xy[g] = V::select(at_y, x_at(g, i), xy[g]);
                ey[g] = V::select(at_y, e[g][i], ey[g]);
                r = V::add(r, V::select(at_y, zero, e[g][i]));
            }
            rest[g] = r;  // (chunk's wide sum of one float block, rounded back: r)
        }
        for (std::size_t g = 0; g < G; ++g) {  // (past w: every lane skipped)
            const auto skip = V::eq(vy[g], V::set1(kIgnored));
            const auto special =
                V::mask_or(V::mask_or(V::not_finite(m[g]), V::isnan(rest[g])),
                           V::mask_or(V::isnan(xy[g]), V::eq(vy[g], V::set1(kUnusable))));
            const auto far_below = V::lt(V::sub(xy[g], ref[g]), V::set1(T(-60)));
            far[g] = V::hmax(V::select(V::mask_or(skip, special), zero,
                                       V::select(far_below, one, zero))) > 0;
            if (far[g]) continue;
            const reg l1p = vlog1p<V>(V::div(rest[g], ey[g]));
            const reg loss = V::select(skip, zero, V::select(special, nan, l1p));
            auto lw = V::wide_zero();
            V::wide_add(lw, loss);
            sums[g] = V::wide_hsum(lw) + 0.0;  // (take(): no lane done one by one)
            if (!grad) continue;
            const reg f = V::div(V::set1(s_ce_t), V::add(ey[g], rest[g]));
            const reg gy = V::fnmadd(f, rest[g], zero);
            for (std::size_t i = 0; i < kN; ++i) {
                const auto at_y = V::eq(vy[g], V::set1(static_cast<T>(i)));
                const reg gv = V::select(at_y, gy, V::mul(e[g][i], f));
                put(g, i, V::select(skip, zero, V::select(special, nan, gv)));
            }
        }
    }
};

template <class V>
CeSums ce_cols_labels(const CeCols<typename V::S>& a, const CeOptions<typename V::S>& o) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr T inf = std::numeric_limits<T>::infinity();
    const auto at = [](auto* p, std::ptrdiff_t stride, std::size_t i) {
        return p + static_cast<std::ptrdiff_t>(i) * stride;
    };
    CeLabelsChunks<V> k(a, o);
    // (the strides as locals: read through `a`, GCC reloaded them after every
    // store, which may alias them)
    const std::ptrdiff_t xs = a.xs, gs = a.gs;
    const auto chunks = [&](auto scaled) {
        for_chunks<V>(a.inner, [&](std::size_t c0, auto ch) {
            const typename V::S* x = a.x + c0;
            typename V::S* g = a.grad ? a.grad + c0 : nullptr;
            k.template chunk<decltype(scaled)::value>(
                c0, ch.w, [&](std::size_t i) { return ch.load(at(x, xs, i), -inf); }, g != nullptr,
                [&](std::size_t i, reg e) {
                    if constexpr (kExpInOutput<V>) ch.store(at(g, gs, i), e);
                },
                [&](std::size_t i, reg ref) {
                    return ce_col_exp<V>(ch, ref, xs)(x, at(g, gs, i), i);
                },
                [&](std::size_t i, reg v) { ch.store(at(g, gs, i), v); }, V::set1(o.scale));
        });
    };
    // A temperature on the caller's tile: the logits read as they are (float
    // storage only, where the second pass reads the stored exponentials, not
    // x again: see ce_col_exp and cross_entropy_cols)
    if (kExpInOutput<V> && a.scale_in_place && o.scale != 1)
        chunks(std::true_type{});
    else
        chunks(std::false_type{});
    return k.sums();
}

template <class V>
CeSums cross_entropy_cols(const CeCols<typename V::S>& a, const CeOptions<typename V::S>& o) {
    const bool labels_only = a.label && o.smoothing == 0 && o.z_loss == 0;
    // a temperature on the caller's tile: ce_cols_labels scales the logits as
    // it reads them; the others read them scaled in place first (one pass)
    if (a.scale_in_place && o.scale != 1 && !(labels_only && kExpInOutput<V>)) {
        const auto vs = V::set1(o.scale);
        map_array<V>(a.scale_in_place, a.scale_in_place, a.n * static_cast<std::size_t>(a.xs), 0,
                     [vs](typename V::reg v) { return V::mul(v, vs); });
    }
    if (!a.label) return ce_cols<V, true>(a, o);
    if (labels_only) return ce_cols_labels<V>(a, o);
    return ce_cols<V, false>(a, o);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
