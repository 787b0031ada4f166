// where= on a contiguous row whose mask is contiguous along it: softmax and
// logsumexp reading the mask in their own passes, the excluded entries read
// as -inf (no copy of the row; driver.cpp says for which rows). The passes
// are those of the plain rows (the maximum, the exponentials of exact
// differences, their sum in double, 1 / sum as two floats; logsumexp: the
// online walk of online_max_sum), so the results are as accurate as theirs.
#pragma once

#include <cmath>
#include <cstddef>

#include "fastsoftmax/kernels.hpp"
#include "generic/blocks.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// w <= N lanes of x, -inf where the mask byte is 0 (what is under the mask,
// NaN included, is discarded).
template <class V>
typename V::reg load_where(const typename V::S* x, const unsigned char* m, std::size_t w) {
    using T = typename V::T;
    const auto ninf = V::set1(neg_inf<T>());
    if (w == V::N) return V::select(V::bytes_nonzero(m), V::load(x), ninf);
    return V::select(V::bytes_nonzero_partial(m, w), V::load_partial(x, w, neg_inf<T>()), ninf);
}

// f(lanes, i, w) for each vector of [0, n): w lanes from i.
template <class V, class F>
void for_each_vector(std::size_t n, F&& f) {
    std::size_t i = 0;
    for (; i + V::N <= n; i += V::N) f(i, V::N);
    if (i < n) f(i, n - i);
}

template <class V>
typename V::T masked_max(const typename V::S* x, const unsigned char* m, std::size_t n) {
    auto m0 = V::set1(neg_inf<typename V::T>()), m1 = m0;
    std::size_t i = 0;
    for (; i + 2 * V::N <= n; i += 2 * V::N) {
        m0 = V::max(m0, load_where<V>(x + i, m + i, V::N));
        m1 = V::max(m1, load_where<V>(x + i + V::N, m + i + V::N, V::N));
    }
    for_each_vector<V>(n - i, [&](std::size_t k, std::size_t w) {
        m0 = V::max(m0, load_where<V>(x + i + k, m + i + k, w));
    });
    return V::hmax(V::max(m0, m1));
}

// A masked row as online_walk reads it (blocks.hpp: RowView's twin).
template <class V>
struct MaskedRowView {
    const typename V::S* x;
    const unsigned char* m;
    typename V::T max(std::size_t i, std::size_t len) const {
        return masked_max<V>(x + i, m + i, len);
    }
    bool has_nan(std::size_t i, std::size_t len) const {
        for (std::size_t k = i; k < i + len; ++k)
            if (const auto v = to_compute(x[k]); m[k] && v != v) return true;
        return false;
    }
};

// The row's (max, sum of exp((x - max) * s)) over the included entries, from
// one read: online_walk with the masked loads.
template <class V, class Z>
MaxSum masked_max_sum(const typename V::S* x, const unsigned char* m, std::size_t n, const Z& z) {
    using T = typename V::T;
    return online_walk<V>(
        MaskedRowView<V>{x, m}, n,
        [&](std::size_t, std::size_t i, std::size_t len, T ref) {
            if (ref == neg_inf<T>()) return 0.0;
            const auto vm = V::set1(ref);
            auto s0 = V::zero(), s1 = V::zero();
            std::size_t k = i;
            for (; k + 2 * V::N <= i + len; k += 2 * V::N) {
                s0 = V::add(s0, z.exp_diff(load_where<V>(x + k, m + k, V::N), vm));
                s1 = V::add(s1, z.exp_diff(load_where<V>(x + k + V::N, m + k + V::N, V::N), vm));
            }
            for_each_vector<V>(i + len - k, [&](std::size_t j, std::size_t w) {
                s0 = V::add(s0, z.exp_diff(load_where<V>(x + k + j, m + k + j, w), vm));
            });
            return stretch_total<V>(V::add(s0, s1));
        },
        SameMax{}, z.scale());
}

// softmax of the included entries, as the plain rows do it: the maximum,
// then exp(x - max) into y with their sum, then y times 1 / sum (two floats
// for float32); false for a row the plain kernels must answer.
template <class V, class Z>
bool masked_softmax_row(const typename V::S* x, const unsigned char* m, typename V::S* y,
                        std::size_t n, const Z& z) {
    using T = typename V::T;
    const T mx = masked_max<V>(x, m, n);
    if (!std::isfinite(mx)) return false;  // (nothing included, only -inf, +inf, or NaN)
    const auto vm = V::set1(mx), lo = V::set1(z.floor(mx));
    ExpSum<V> sum;
    std::size_t i = 0;
    for (; i + 2 * V::N <= n; i += 2 * V::N) {
        const auto e0 = z.exp_sub(load_where<V>(x + i, m + i, V::N), vm, lo);
        const auto e1 = z.exp_sub(load_where<V>(x + i + V::N, m + i + V::N, V::N), vm, lo);
        V::store(y + i, e0);
        V::store(y + i + V::N, e1);
        sum.add2(e0, e1);
    }
    for_each_vector<V>(n - i, [&](std::size_t k, std::size_t w) {
        const auto e = z.exp_sub(load_where<V>(x + i + k, m + i + k, w), vm, lo);
        V::store_partial(y + i + k, w, e);
        sum.add(e);
    });
    const double s = sum.total();
    if (s != s) return false;  // a NaN included
    const Factor<V> inv = Factor<V>::reciprocal(s);
    map_row<V>(y, y, n, [inv](typename V::reg v) { return inv.apply(v); }, nullptr);
    return true;
}

// softmax or logsumexp (its one value at y) of the included entries of the
// row x of n elements, mask m (float32 and float64 rows: the outputs are
// rounded once, as the plain kernels round them). Returns false for a row
// the plain kernels must answer (nothing included, a NaN or +inf included,
// only -inf), having written at most y's n outputs.
template <class V>
bool masked_row(MaskedOp op, const typename V::S* x, const unsigned char* m, typename V::S* y,
                std::size_t n, const SoftmaxParams& params) {
    using T = typename V::T;
    static_assert(kExpInOutput<V>, "float32 and float64 rows only");
    return with_temperature<V>(params, [&](const auto& z) {
        if (op == MaskedOp::softmax) return masked_softmax_row<V>(x, m, y, n, z);
        if (op != MaskedOp::logsumexp) return false;
        const MaxSum ms = masked_max_sum<V>(x, m, n, z);
        if (ms.special) return false;
        *y = static_cast<T>(z.top(ms.max, std::log(ms.sum)));
        return true;
    });
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
