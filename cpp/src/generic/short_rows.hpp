// Rows of at most one vector, a few at a time (the targets without a vector
// transpose, and the rows the tiles do not take).
#pragma once

#include <cmath>
#include <cstddef>

#include "generic/blocks.hpp"
#include "generic/special_rows.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// ------------------------------------------------------------ short rows --
//
// Rows of at most one vector (n <= V::N, e.g. 10 classes) are latency-bound
// when done one at a time (max -> exp -> sum -> reciprocal is a chain), so
// kShortGroup rows go through each step together, and their logs are taken
// in one vector.

constexpr std::size_t kShortGroup = 4;

// kExact: the exponentials are softmax outputs (vexp_sub, exact x - max);
// the log ops only need their sum.
template <class V, std::size_t G, bool kExact, class Z>
struct ShortGroup {
    typename V::reg x[G];  // the rows, -inf past n
    typename V::reg e[G];  // exp(x - max)
    typename V::T max[G];
    double sum[G];
    bool special[G];  // max not finite, or a NaN: special_rows.hpp

    ShortGroup(const typename V::S* p, std::ptrdiff_t ps, std::size_t n, const Z& z) {
        using T = typename V::T;
        for (std::size_t k = 0; k < G; ++k)
            x[k] = V::load_partial(p + static_cast<std::ptrdiff_t>(k) * ps, n, neg_inf<T>());
        for (std::size_t k = 0; k < G; ++k) max[k] = V::hmax(x[k]);
        for (std::size_t k = 0; k < G; ++k) {
            if constexpr (kExact)
                e[k] = z.exp_sub(x[k], V::set1(max[k]), V::set1(z.floor(max[k])));
            else
                e[k] = z.exp_diff(x[k], V::set1(max[k]));
        }
        for (std::size_t k = 0; k < G; ++k) {
            auto w = V::wide_zero();
            V::wide_add(w, e[k]);
            sum[k] = V::wide_hsum(w);
            special[k] = !std::isfinite(max[k]) || sum[k] != sum[k];
        }
    }
};

// out[k] = log(s[k]) for k < g, with the vectorized log (no libm call).

template <class V>
struct ShortSoftmax {
    template <std::size_t G, class Z>
    static void run(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y, std::ptrdiff_t ys,
                    std::size_t n, const Z& z) {
        const ShortGroup<V, G, true, Z> g(x, xs, n, z);
        for (std::size_t k = 0; k < G; ++k) {
            typename V::S* yk = y + static_cast<std::ptrdiff_t>(k) * ys;
            if (g.special[k])
                softmax_special(yk, 1, n);
            else
                V::store_partial(yk, n, Factor<V>::reciprocal(g.sum[k]).apply(g.e[k]));
        }
    }
};

template <class V>
struct ShortLogSoftmax {
    template <std::size_t G, class Z>
    static void run(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y, std::ptrdiff_t ys,
                    std::size_t n, const Z& z) {
        using T = typename V::T;
        const ShortGroup<V, G, false, Z> g(x, xs, n, z);
        T logs[G];
        logs_of<V>(g.sum, logs, G);
        for (std::size_t k = 0; k < G; ++k) {
            const std::ptrdiff_t kk = static_cast<std::ptrdiff_t>(k);
            if (g.special[k])
                log_softmax_special(x + kk * xs, 1, y + kk * ys, 1, n);
            else
                V::store_partial(y + kk * ys, n,
                                 z.shifted(g.x[k], V::set1(g.max[k]), V::set1(logs[k])));
        }
    }
};

template <class V>
struct ShortLogSumExp {
    template <std::size_t G, class Z>
    static void run(const typename V::S* x, std::ptrdiff_t xs, typename V::S* out,
                    std::ptrdiff_t os, std::size_t n, const Z& z) {
        using T = typename V::T;
        const ShortGroup<V, G, false, Z> g(x, xs, n, z);
        T logs[G];
        logs_of<V>(g.sum, logs, G);
        for (std::size_t k = 0; k < G; ++k) {
            const std::ptrdiff_t kk = static_cast<std::ptrdiff_t>(k);
            out[kk * os] = to_storage<typename V::S>(
                g.special[k] ? logsumexp_special(x + kk * xs, 1, n) : z.top(g.max[k], logs[k]));
        }
    }
};

// ------------------------------------------------------ one-element rows --
//
// Rows of one element need no exponential: f(x) maps a vector of rows to
// their outputs (softmax: 1, log_softmax: 0, logsumexp: x + 0, each NaN where
// the row is not finite, as the general paths answer). V::N rows at a time,
// straight from memory when the rows are adjacent, else through a buffer.
template <class V, class F>
void one_element_rows(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                      std::ptrdiff_t ys, std::size_t rows, F f) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    std::size_t r = 0;
    if (xs == 1 && ys == 1) {
        for (; r + N <= rows; r += N) V::store(y + r, f(V::load(x + r)));
        if (r < rows) V::store_partial(y + r, rows - r, f(V::load_partial(x + r, rows - r, 0)));
        return;
    }
    alignas(64) T buf[N];
    for (; r < rows; r += N) {
        const std::size_t w = (rows - r < N) ? rows - r : N;
        const auto at = static_cast<std::ptrdiff_t>(r);
        for (std::size_t l = 0; l < w; ++l)
            buf[l] = to_compute(x[(at + static_cast<std::ptrdiff_t>(l)) * xs]);
        V::Compute::store(buf, f(V::Compute::load(buf)));
        for (std::size_t l = 0; l < w; ++l)
            y[(at + static_cast<std::ptrdiff_t>(l)) * ys] = to_storage<typename V::S>(buf[l]);
    }
}

// Runs Op::run<kShortGroup> over whole groups of rows, then Op::run<1> over the rest.
template <class Op, class In, class Out, class Z>
void short_rows(const In* x, std::ptrdiff_t xs, Out* y, std::ptrdiff_t ys, std::size_t rows,
                std::size_t n, const Z& z) {
    std::size_t r = 0;
    for (; r + kShortGroup <= rows; r += kShortGroup) {
        Op::template run<kShortGroup>(x, xs, y, ys, n, z);
        x += static_cast<std::ptrdiff_t>(kShortGroup) * xs;
        y += static_cast<std::ptrdiff_t>(kShortGroup) * ys;
    }
    for (; r < rows; ++r, x += xs, y += ys) Op::template run<1>(x, xs, y, ys, n, z);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
