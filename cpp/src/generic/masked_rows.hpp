// where= masks read in the row kernels' own passes (one byte per entry,
// contiguous along the row; row_mask.hpp gives a vector's lanes): the masked
// loads (an excluded entry read as -inf, what is under it never used), the
// maximum, the exponentials' sums, the online walk and log_softmax's shift
// over the included entries, each the twin of a plain pass with the same
// order of operations, so that a masked row gets the bits of the plain row
// with -inf at its excluded entries (softmax_rows.hpp's masked kernels use
// them); and softmax of one long row (driver.cpp: Kernels::masked_softmax_long_row),
// whose passes are the plain rows' in cache (the maximum, the exponentials of
// exact differences, their sum in double, 1 / sum as two floats), as accurate
// as the plain long rows but not their bits.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "fastsoftmax/kernels.hpp"
#include "generic/blocks.hpp"
#include "generic/row_mask.hpp"
#include "generic/segments.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// The masked rows' loads (L: a MaskRow, or NoRowMask::Row for all): the
// w lanes of row x from i (w < N: -inf after), -inf where excluded.
template <class V, class L>
typename V::reg masked_load(const typename V::S* x, std::size_t i, const L& lanes, std::size_t w) {
    using T = typename V::T;
    const auto v = w == V::N ? V::load(x + i) : V::load_partial(x + i, w, neg_inf<T>());
    if constexpr (std::is_same_v<L, NoRowMask::Row>)
        return v;
    else
        return V::select(w == V::N ? lanes.at(i) : lanes.range(i, w), v, V::set1(neg_inf<T>()));
}

// row_max over the included entries
template <class V, class L>
typename V::T masked_row_max(const typename V::S* x, std::size_t n, const L& lanes) {
    if constexpr (std::is_same_v<L, NoRowMask::Row>) {
        return row_max<V>(x, n);
    } else {
        auto m0 = V::set1(neg_inf<typename V::T>()), m1 = m0;
        std::size_t i = 0;
        for (; i + 2 * V::N <= n; i += 2 * V::N) {
            m0 = V::max(m0, masked_load<V>(x, i, lanes, V::N));
            m1 = V::max(m1, masked_load<V>(x, i + V::N, lanes, V::N));
        }
        for (; i < n; i += V::N)
            m0 = V::max(m0, masked_load<V>(x, i, lanes, n - i < V::N ? n - i : V::N));
        return V::hmax(V::max(m0, m1));
    }
}

// stretch_exp_lanes over the included entries (lanes: a MaskRow, or
// NoRowMask::Row for all): the same sums, an excluded entry read as -inf.
template <class V, class Z, class L>
typename V::reg masked_exp_lanes(const typename V::S* x, std::size_t len, typename V::T m,
                                 const Z& z, const L& lanes) {
    if constexpr (std::is_same_v<L, NoRowMask::Row>) {
        return stretch_exp_lanes<V>(x, len, m, z);
    } else {
        constexpr std::size_t N = V::N;
        const auto vm = V::set1(m);
        const auto at = [&](std::size_t i) { return masked_load<V>(x, i, lanes, N); };
        auto s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
        std::size_t i = 0;
        for (; i + 4 * N <= len; i += 4 * N) {
            s0 = V::add(s0, z.exp_diff(at(i), vm));
            s1 = V::add(s1, z.exp_diff(at(i + N), vm));
            s2 = V::add(s2, z.exp_diff(at(i + 2 * N), vm));
            s3 = V::add(s3, z.exp_diff(at(i + 3 * N), vm));
        }
        for (; i + N <= len; i += N) s0 = V::add(s0, z.exp_diff(at(i), vm));
        if (i < len) s1 = V::add(s1, z.exp_diff(masked_load<V>(x, i, lanes, len - i), vm));
        return V::add(V::add(s0, s1), V::add(s2, s3));
    }
}

// y = f(x) over a row, as map_row writes it (stream: non-temporal stores),
// an excluded entry read as -inf (lanes: a MaskRow).
template <class V, class L, class F>
void masked_map_row(const typename V::S* x, typename V::S* y, std::size_t n, const L& lanes, F f,
                    StreamedRows<V>* stream) {
    constexpr std::size_t N = V::N;
    const auto at = [&](std::size_t k, std::size_t w) { return f(masked_load<V>(x, k, lanes, w)); };
    std::size_t i = 0;
    if (stream && !stream->joins_rows()) {
        const std::size_t head = StreamedRows<V>::head(y, n);
        if (head > 0) V::store_partial(y, head, at(0, head));
        for (i = head; i + N <= n; i += N) V::stream(y + i, at(i, N));
    } else if (stream) {
        RowStream<V, decltype(at)> row(y, n, at);
        row.begin(*stream);
        row.end(*stream);
        return;
    } else {
        for (; i + N <= n; i += N) V::store(y + i, at(i, N));
    }
    if (i < n) V::store_partial(y + i, n - i, at(i, n - i));
}

// shift_row over the included entries (lanes: a MaskRow, or NoRowMask::Row),
// -inf at the others ((-inf - max) * s - log_sum).
template <class V, class Z, class L>
void masked_shift_row(const typename V::S* x, typename V::S* y, std::size_t n, typename V::T max,
                      typename V::T log_sum, StreamedRows<V>* stream, const Z& z, const L& lanes) {
    if constexpr (std::is_same_v<L, NoRowMask::Row>) {
        shift_row<V>(x, y, n, max, log_sum, stream, z);
    } else {
        const auto vm = V::set1(max);
        const auto vl = V::set1(log_sum);
        if (z.halves())
            return masked_map_row<V>(
                x, y, n, lanes,
                [vm, vl, &z](typename V::reg v) { return z.template shifted_as<true>(v, vm, vl); },
                stream);
        masked_map_row<V>(
            x, y, n, lanes,
            [vm, vl, &z](typename V::reg v) { return z.template shifted_as<false>(v, vm, vl); },
            stream);
    }
}

// A masked row as online_walk reads it (blocks.hpp: RowView's twin).
template <class V>
struct MaskedRowView {
    const typename V::S* x;
    const unsigned char* m;
    typename V::T max(std::size_t i, std::size_t len) const {
        return masked_row_max<V>(x + i, len, MaskRow<V>{m + i});
    }
    bool has_nan(std::size_t i, std::size_t len) const {
        for (std::size_t k = i; k < i + len; ++k)
            if (const auto v = to_compute(x[k]); m[k] && v != v) return true;
        return false;
    }
};

// row_online_max_sum over the included entries: the same walk and sums, an
// excluded entry read as -inf (so the bits of the row with -inf there).
template <class V, class Z>
MaxSum masked_max_sum(const typename V::S* x, const unsigned char* m, std::size_t n, const Z& z) {
    static_assert(kExpInOutput<V>, "float32 and float64 rows only");
    using T = typename V::T;
    return online_walk<V>(
        MaskedRowView<V>{x, m}, n,
        [&](std::size_t, std::size_t i, std::size_t len, T ref) {
            return ref == neg_inf<T>() ? 0.0
                                       : stretch_total<V>(masked_exp_lanes<V>(x + i, len, ref, z,
                                                                              MaskRow<V>{m + i}));
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
    constexpr std::size_t N = V::N;
    const MaskRow<V> lanes{m};
    const T mx = masked_row_max<V>(x, n, lanes);
    if (!std::isfinite(mx)) return false;  // (nothing included, only -inf, +inf, or NaN)
    const auto vm = V::set1(mx), lo = V::set1(z.floor(mx));
    ExpSum<V> sum;
    std::size_t i = 0;
    for (; i + 2 * N <= n; i += 2 * N) {
        const auto e0 = z.exp_sub(masked_load<V>(x, i, lanes, N), vm, lo);
        const auto e1 = z.exp_sub(masked_load<V>(x, i + N, lanes, N), vm, lo);
        V::store(y + i, e0);
        V::store(y + i + N, e1);
        sum.add2(e0, e1);
    }
    for (; i < n; i += N) {
        const std::size_t w = n - i < N ? n - i : N;
        const auto e = z.exp_sub(masked_load<V>(x, i, lanes, w), vm, lo);
        V::store_partial(y + i, w, e);
        sum.add(e);
    }
    const double s = sum.total();
    if (s != s) return false;  // a NaN included
    const Factor<V> inv = Factor<V>::reciprocal(s);
    map_row<V>(y, y, n, [inv](typename V::reg v) { return inv.apply(v); }, nullptr);
    return true;
}

// softmax of the included entries of the row x of n elements, mask m, for
// rows past kLongRowBytes (float32 and float64: the outputs are rounded
// once, as the plain kernels round them). Returns false for a row the plain
// kernels must answer (nothing included, a NaN or +inf included, only
// -inf), having written at most y's n outputs.
template <class V>
bool masked_softmax_long_row(const typename V::S* x, const unsigned char* m, typename V::S* y,
                             std::size_t n, const SoftmaxParams& params) {
    static_assert(kExpInOutput<V>, "float32 and float64 rows only");
    return with_temperature<V>(params,
                               [&](const auto& z) { return masked_softmax_row<V>(x, m, y, n, z); });
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
