// The softmax family over columns: the reduction axis strided, another axis
// contiguous, one lane per independent reduction (no scalar path: see below).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

#include "fastsoftmax/kernels.hpp"
#include "generic/blocks.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

template <class V, class Z>
void softmax_cols_at(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y, std::ptrdiff_t ys,
                     std::size_t n, std::size_t inner, const Z& z) {
    using T = typename V::T;
    // (captures by value: through references, GCC reloaded n and ys after
    // every store of the scaling loop, which may alias them)
    for_chunks<V>(inner, [x, xs, y, ys, n, &z](std::size_t c, auto ch) {
        const auto m = col_max<V>(x + c, xs, n, ch);
        const auto bad = V::not_finite(m);
        const auto ref = V::select(bad, V::zero(), m);
        // (half precision: no exponentials in y, see kExpInOutput)
        const auto wide = col_sum_exp<V, kExpInOutput<V>>(x + c, xs, y + c, ys, n, ref, ch, z);
        // per lane 1/sum as hi + lo (see Factor); a non-finite max makes the
        // whole lane NaN (SciPy), a NaN sum does by itself
        typename V::reg hi, lo;
        V::wide_reciprocal(wide, hi, lo);
        const auto nan = V::set1(std::numeric_limits<T>::quiet_NaN());
        const Factor<V> inv{V::select(bad, nan, hi), V::select(bad, nan, lo)};
        typename V::S* p = y + c;
        if constexpr (kExpInOutput<V>) {
            for (std::size_t i = 0; i < n; ++i, p += ys) ch.store(p, inv.apply(ch.load(p, 0)));
        } else {
            const auto ref_lo = z.floor(ref);
            const typename V::S* q = x + c;
            for (std::size_t i = 0; i < n; ++i, p += ys, q += xs)
                ch.store(p, inv.apply(z.exp_sub(ch.load(q, neg_inf<T>()), ref, ref_lo)));
        }
    });
}

template <class V>
void softmax_cols(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y, std::ptrdiff_t ys,
                  std::size_t n, std::size_t inner, const SoftmaxParams& params) {
    if (n == 0) return;
    with_temperature<V>(params,
                        [&](const auto& z) { softmax_cols_at<V>(x, xs, y, ys, n, inner, z); });
}

template <class V, class Z>
void log_softmax_cols_at(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                         std::ptrdiff_t ys, std::size_t n, std::size_t inner, bool narrow,
                         const Z& z) {
    for_chunks<V>(inner, [x, xs, y, ys, n, narrow, &z](std::size_t c, auto ch) {
        const auto m = col_max<V>(x + c, xs, n, ch);
        const auto ref = V::select(V::not_finite(m), V::zero(), m);
        // max = +inf: s = +inf, so (x - max) - log(s) is NaN at +inf, -inf elsewhere;
        // all -inf: x - max is NaN; a NaN: s is NaN. SciPy's answers in each case.
        typename V::reg ls;
        if (!narrow) {
            ls =
                vlog<V>(V::wide_round(col_sum_exp<V, false>(x + c, xs, nullptr, 0, n, ref, ch, z)));
        } else {
            // each term straight into the wide sum (no float sum holding the
            // maximum's 1 rounds the small terms), then log1p(s - 1)
            using T = typename V::T;
            auto wide = V::wide_zero();
            const typename V::S* q = x + c;
            for (std::size_t i = 0; i < n; ++i, q += xs)
                V::wide_add(wide, z.exp_diff(ch.load(q, neg_inf<T>()), ref));
            double sums[V::N];
            T logs[V::N];
            V::wide_store(wide, sums);
            logs_near_one<V>(sums, logs, V::N);
            ls = V::load(logs);
        }
        const typename V::S* q = x + c;
        typename V::S* p = y + c;
        for (std::size_t i = 0; i < n; ++i, q += xs, p += ys)
            ch.store(p, z.shifted(ch.load(q, 0), m, ls));
    });
}

template <class V>
void log_softmax_cols(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                      std::ptrdiff_t ys, std::size_t n, std::size_t inner,
                      const SoftmaxParams& params) {
    if (n == 0) return;
    const bool narrow = !kExpInOutput<V> || params.narrow_output;
    with_temperature<V>(
        params, [&](const auto& z) { log_softmax_cols_at<V>(x, xs, y, ys, n, inner, narrow, z); });
}

template <class V, class Z>
void logsumexp_cols_at(const typename V::S* x, std::ptrdiff_t xs, typename V::S* out, std::size_t n,
                       std::size_t inner, const Z& z) {
    using T = typename V::T;
    for_chunks<V>(inner, [x, xs, out, n, &z](std::size_t c, auto ch) {
        if (n == 0) {
            ch.store(out + c, V::set1(neg_inf<T>()));
            return;
        }
        const auto m = col_max<V>(x + c, xs, n, ch);
        const auto bad = V::not_finite(m);
        const auto s = V::wide_round(
            col_sum_exp<V, false>(x + c, xs, nullptr, 0, n, V::select(bad, V::zero(), m), ch, z));
        // non-finite max: the max itself (+-inf), or NaN if a NaN was seen
        const auto special = V::select(V::isnan(s), s, m);
        ch.store(out + c, V::select(bad, special, z.top(m, vlog<V>(s))));
    });
}

template <class V>
void logsumexp_cols(const typename V::S* x, std::ptrdiff_t xs, typename V::S* out, std::size_t n,
                    std::size_t inner, const SoftmaxParams& params) {
    with_temperature<V>(params,
                        [&](const auto& z) { logsumexp_cols_at<V>(x, xs, out, n, inner, z); });
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
