// softmax_backward and log_softmax_backward over rows and over columns.
#pragma once

#include <cstddef>
#include <type_traits>

#include "fastsoftmax/kernels.hpp"
#include "generic/blocks.hpp"
#include "generic/row_mask.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// kStreamLongRows: whether rows past kLongRowBytes of arrays from memory are
// written with streaming stores as the shorter ones are (StreamedRows), as
// measured (bench/out_of_cache.py, float32 out=, time against ordinary
// stores): softmax_backward 0.97 at (8192, 1024), 0.77 at (256, 32000), 0.80
// at (32, 128256); log_softmax_backward 0.74, but 1.04 and 1.05 (its second
// pass, with an exp per element, is bound by the arithmetic, not memory).

// the terms accumulated by acc:
template <class V>
struct SoftmaxGrad {  // o = y * (g - sum(g * y))
    using reg = typename V::reg;
    static constexpr bool kStreamLongRows = true;
    static reg acc(reg s, reg g, reg y) { return V::fmadd(g, y, s); }
    static reg out(reg g, reg y, reg s) { return V::mul(y, V::sub(g, s)); }
};

template <class V>
struct LogSoftmaxGrad {  // o = g - exp(y) * sum(g)
    using reg = typename V::reg;
    static constexpr bool kStreamLongRows = false;
    static reg acc(reg s, reg g, reg) { return V::add(s, g); }
    static reg out(reg g, reg y, reg s) { return V::fnmadd(vexp<V>(y), s, g); }
};

// At a temperature (y the softmax or log_softmax of x * s), the gradient
// with respect to x: Op::out times s (z.times). With a where= mask (M: a
// RowMask), the excluded entries add nothing to the sum (the partial sums
// keep their value there, so the sums are those of the plain rows with g = 0
// at those entries, bit for bit) and are written 0: what is under the mask,
// NaN included, is never used.
template <class V, class Op, class Z, class M = NoRowMask>
void backward_rows_at(const typename V::S* g, std::ptrdiff_t gs, const typename V::S* y,
                      std::ptrdiff_t ys, typename V::S* o, std::ptrdiff_t os, std::size_t rows,
                      std::size_t n, const SoftmaxParams& params, const Z& z, const M& mask = {}) {
    using T = typename V::T;
    using reg = typename V::reg;
    constexpr std::size_t N = V::N;
    constexpr bool kMasked = !std::is_same_v<M, NoRowMask>;
    StreamedRows<V> out;
    const bool stream =
        params.from_memory && (Op::kStreamLongRows || n * sizeof(T) <= kLongRowBytes);
    for (std::size_t r = 0; r < rows; ++r, g += gs, y += ys, o += os) {
        [[maybe_unused]] const auto lanes = mask.row(r);
        // the sum's term at i, w lanes (w < N: zero-filled, the row's last)
        const auto acc = [&](reg s, std::size_t i, std::size_t w) {
            const bool whole = w == N;
            const reg t = Op::acc(s, whole ? V::load(g + i) : V::load_partial(g + i, w, 0),
                                  whole ? V::load(y + i) : V::load_partial(y + i, w, 0));
            if constexpr (kMasked)
                return V::select(whole ? lanes.at(i) : lanes.range(i, w), t, s);
            else
                return t;
        };
        // the output at k, w lanes (w < N: the row's first or last)
        const auto part = [&](std::size_t k, std::size_t w, reg vs) {
            const reg v =
                z.times(Op::out(w == N ? V::load(g + k) : V::load_partial(g + k, w, 0),
                                w == N ? V::load(y + k) : V::load_partial(y + k, w, 0), vs));
            if constexpr (kMasked)
                return V::select(w == N ? lanes.at(k) : lanes.range(k, w), v, V::zero());
            else
                return v;
        };
        auto wide = V::wide_zero();
        std::size_t i = 0;
        while (i + N <= n) {
            const std::size_t end = (n - i >= kBlock * N) ? i + kBlock * N : n;
            auto s0 = V::zero(), s1 = V::zero();
            for (; i + 2 * N <= end; i += 2 * N) {
                s0 = acc(s0, i, N);
                s1 = acc(s1, i + N, N);
            }
            for (; i + N <= end; i += N) s0 = acc(s0, i, N);
            V::wide_add(wide, V::add(s0, s1));
        }
        if (i < n)  // zero fill: the missing lanes add nothing
            V::wide_add(wide, acc(V::zero(), i, n - i));
        const auto vs = V::set1(static_cast<T>(V::wide_hsum(wide)));
        if (stream) {
            const std::size_t head = StreamedRows<V>::head(o, n);
            out.begin(o, head, [&] { return part(0, head, vs); });
            for (i = head; i + N <= n; i += N) V::stream(o + i, part(i, N, vs));
            out.end(o + n, n - i, [&] { return part(i, n - i, vs); });
        } else {
            for (i = 0; i + N <= n; i += N) V::store(o + i, part(i, N, vs));
            if (i < n) V::store_partial(o + i, n - i, part(i, n - i, vs));
        }
    }
    if (stream) out.finish();
}

template <class V, class Op>
void backward_rows(const typename V::S* g, std::ptrdiff_t gs, const typename V::S* y,
                   std::ptrdiff_t ys, typename V::S* o, std::ptrdiff_t os, std::size_t rows,
                   std::size_t n, const SoftmaxParams& params) {
    with_temperature<V>(params, [&](const auto& z) {
        backward_rows_at<V, Op>(g, gs, y, ys, o, os, rows, n, params, z);
    });
}

// backward_rows with a where= mask (RowMask): contiguous rows, their mask
// bytes contiguous along them, mask rows `mrs` apart (0: one for all).
template <class V, class Op>
void masked_backward_rows(const typename V::S* g, std::ptrdiff_t gs, const typename V::S* y,
                          std::ptrdiff_t ys, typename V::S* o, std::ptrdiff_t os,
                          const unsigned char* m, std::ptrdiff_t mrs, std::size_t rows,
                          std::size_t n, const SoftmaxParams& params) {
    with_temperature<V>(params, [&](const auto& z) {
        backward_rows_at<V, Op>(g, gs, y, ys, o, os, rows, n, params, z, RowMask<V>{m, mrs});
    });
}

template <class V, class Op, class Z>
void backward_cols_at(const typename V::S* g, std::ptrdiff_t gs, const typename V::S* y,
                      std::ptrdiff_t ys, typename V::S* o, std::ptrdiff_t os, std::size_t n,
                      std::size_t inner, const Z& z) {
    for (std::size_t c = 0; c < inner; c += V::N) {
        const Chunk<V> ch{(inner - c < V::N) ? inner - c : V::N};
        const auto at = [&](const typename V::S* p, std::ptrdiff_t ps, std::size_t i) {
            return ch.load(p + c + static_cast<std::ptrdiff_t>(i) * ps, 0);
        };
        auto wide = V::wide_zero();
        for (std::size_t i = 0; i < n;) {
            const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
            auto s = V::zero();
            for (; i < end; ++i) s = Op::acc(s, at(g, gs, i), at(y, ys, i));
            V::wide_add(wide, s);
        }
        const auto vs = V::wide_round(wide);
        for (std::size_t i = 0; i < n; ++i)
            ch.store(o + c + static_cast<std::ptrdiff_t>(i) * os,
                     z.times(Op::out(at(g, gs, i), at(y, ys, i), vs)));
    }
}

template <class V, class Op>
void backward_cols(const typename V::S* g, std::ptrdiff_t gs, const typename V::S* y,
                   std::ptrdiff_t ys, typename V::S* o, std::ptrdiff_t os, std::size_t n,
                   std::size_t inner, const SoftmaxParams& params) {
    with_temperature<V>(
        params, [&](const auto& z) { backward_cols_at<V, Op>(g, gs, y, ys, o, os, n, inner, z); });
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
