// Long rows: segments of a row split across threads (driver.cpp), and rows
// longer than L1 done block by block from one read.
#pragma once

#include <cmath>
#include <cstddef>

#include "fastsoftmax/kernels.hpp"
#include "generic/blocks.hpp"
#include "generic/special_rows.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// ------------------------------------------------ segments of long rows --
//
// A few rows too long for one thread are cut into segments (driver.cpp):
// first each segment's (max, sum) - softmax also stores exp(x - ref) per
// block, as softmax_long_row does - then, with the row's (max, sum) merged
// from them, each segment's outputs.

// The (max, sum) of a segment; with y and refs, softmax's first pass (refs:
// one per block of kBlock vectors, at least kMinSegmentBlock elements). A
// segment of -inf only gives (-inf, 0), not special: its row may have other,
// finite, segments.
template <class V, class Z>
MaxSum segment_stats(const typename V::S* x, std::size_t n, typename V::S* y, typename V::T* refs,
                     const Z& z) {
    using T = typename V::T;
    static_assert(kBlock * V::N >= kMinSegmentBlock, "refs are sized for kMinSegmentBlock");
    const MaxSum ms = (y && kExpInOutput<V>)
                          ? online_max_sum<V>(
                                x, n,
                                [&](std::size_t b, std::size_t i, std::size_t len, T ref) {
                                    refs[b] = ref;
                                    return ref == neg_inf<T>()
                                               ? 0.0
                                               : row_store_exp_sum<V>(x + i, y + i, len, ref, z);
                                },
                                SameMax{}, z.scale())
                          : row_online_max_sum<V>(x, n, z);
    if (ms.special && row_max<V>(x, n) == neg_inf<T>() && !has_nan(x, n))
        return {static_cast<double>(neg_inf<T>()), 0.0, false};
    return ms;
}

template <class V>
MaxSum segment_max_sum(const typename V::S* x, std::size_t n, typename V::S* y, typename V::T* refs,
                       const SoftmaxParams& params) {
    return with_temperature<V>(params,
                               [&](const auto& z) { return segment_stats<V>(x, n, y, refs, z); });
}

// softmax of a part of a row, given the whole row's (max, sum) merged from
// its parts' (parts.cpp): one rounding per output, as softmax_rows gives.
template <class V>
void softmax_from_max_sum(const typename V::S* x, typename V::S* y, std::size_t n, double max,
                          double sum, const SoftmaxParams& params) {
    StreamedRows<V> out;
    with_temperature<V>(params, [&](const auto& z) {
        softmax_row_from_stats<V>(x, y, n, static_cast<typename V::T>(max), sum,
                                  params.from_memory ? &out : nullptr, z);
    });
    if (params.from_memory) out.finish();
}

// softmax's second pass over a segment, given the row's (max, sum):
// y = exp(x - ref) * exp(ref - max) / sum from the exponentials the first
// pass left in y, or (half precision, kExpInOutput) y = exp(x - max) / sum
// (each difference times the scale, at a temperature).
template <class V>
void softmax_segment_scale(const typename V::S* x, typename V::S* y, std::size_t n,
                           const typename V::T* refs, double max, double sum,
                           const SoftmaxParams& params) {
    using T = typename V::T;
    if constexpr (!kExpInOutput<V>)  // y holds nothing yet (segment_max_sum)
        return softmax_from_max_sum<V>(x, y, n, max, sum, params);
    constexpr std::size_t B = kBlock * V::N;
    const double scale = with_temperature<V>(params, [](const auto& z) { return z.scale(); });
    for (std::size_t b = 0, i = 0; i < n; ++b, i += B) {
        const std::size_t len = (n - i < B) ? n - i : B;
        if (refs[b] == neg_inf<T>()) {
            fill_strided<typename V::S>(y + i, 1, len, T(0));
            continue;
        }
        const auto vf = Factor<V>::of(
            std::exp(scaled_difference(static_cast<double>(refs[b]), max, scale)) / sum);
        map_row<V>(y + i, y + i, len, [vf](typename V::reg v) { return vf.apply(v); }, nullptr);
    }
}

// log_softmax's last pass: y = (x - max) * s - log_sum, in this order (x - max
// is exact for the entries that matter, and the log is rounded once).
template <class V, class Z>
void shift_row(const typename V::S* x, typename V::S* y, std::size_t n, typename V::T max,
               typename V::T log_sum, StreamedRows<V>* stream, const Z& z) {
    const auto vm = V::set1(max);
    const auto vl = V::set1(log_sum);
    if (z.halves())
        return map_row<V>(
            x, y, n,
            [vm, vl, &z](typename V::reg v) { return z.template shifted_as<true>(v, vm, vl); },
            stream);
    map_row<V>(
        x, y, n,
        [vm, vl, &z](typename V::reg v) { return z.template shifted_as<false>(v, vm, vl); },
        stream);
}

// log_softmax over a segment, as log_softmax_rows does it for a whole row.
template <class V>
void log_softmax_segment(const typename V::S* x, typename V::S* y, std::size_t n, double max,
                         double sum, const SoftmaxParams& params) {
    using T = typename V::T;
    StreamedRows<V> out;
    with_temperature<V>(params, [&](const auto& z) {
        shift_row<V>(x, y, n, static_cast<T>(max), static_cast<T>(std::log(sum)),
                     params.from_memory ? &out : nullptr, z);
    });
    if (params.from_memory) out.finish();
}

// Rows longer than kLongRowBytes (about L1) are done block by block, so x is
// read from memory once: per block, its maximum and then exp(x - running max)
// while the block is in L1 (segment_max_sum over the whole row); a second
// pass scales each block by exp(block's reference - row max) / sum.

template <class V, class Z>
void softmax_long_row(const typename V::S* x, typename V::S* y, std::size_t n,
                      const SoftmaxParams& params, const Z& z) {
    using T = typename V::T;
    Scratch<T> refs((n + kBlock * V::N - 1) / (kBlock * V::N));  // one per block
    const MaxSum ms = segment_stats<V>(x, n, y, refs.data, z);
    if (ms.special || !(ms.max > static_cast<double>(neg_inf<T>())))  // (or only -inf)
        return softmax_special(y, 1, n);
    softmax_segment_scale<V>(x, y, n, refs.data, ms.max, ms.sum, params);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
