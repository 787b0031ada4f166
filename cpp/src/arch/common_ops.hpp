// Operations whose code is the same on several targets, written once over
// the wrapper's own operations. A wrapper derives from the ones it uses
// (static functions only: CRTP, so `V` is the wrapper itself); the bodies are
// compiled with each target's flags, in its own namespace, like the rest of
// its code.
#pragma once

#include <cstddef>
#include <cstring>

#include "generic/compensated.hpp"
#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// Partial loads and stores through a stack buffer, so that nothing past
// p + n is touched: for targets without masked memory operations (NEON), or
// whose masked stores are slow (AVX2's vmaskmov is microcoded on AMD cores).
template <class V>
struct BufferedPartialStore {
    template <class S, class R>
    static void store_partial(S* p, std::size_t n, R v) {
        alignas(64) S buf[V::N];
        V::store(buf, v);
        std::memcpy(p, buf, n * sizeof(S));
    }
};

template <class V>
struct BufferedPartialLoad {
    // (fill: any arithmetic value, converted as the wrapper's own would be)
    template <class S, class Fill>
    static auto load_partial(const S* p, std::size_t n, Fill fill) {
        alignas(64) S buf[V::N];
        for (std::size_t i = 0; i < V::N; ++i) buf[i] = static_cast<S>(fill);
        std::memcpy(buf, p, n * sizeof(S));
        return V::load(buf);
    }
};

// p * 2^n, 0 in the lanes of `zero_lanes`, from the target's scale_pow2 (two
// exact power-of-two factors): for targets without a scaling instruction.
template <class V>
struct ScaleOrZero {
    template <class R, class M>
    static R scale_pow2_or_zero(R p, R n, M zero_lanes) {
        return V::select(zero_lanes, V::zero(), V::scale_pow2(p, n));
    }
};

// The wide accumulator of double lanes: Neumaier's compensated summation
// per lane. The wrapper declares `struct Wide { reg sum, comp; };` (its
// register type cannot be named here: V is incomplete where this struct is
// instantiated, and a register type as a template argument loses its
// alignment attribute).
template <class V>
struct NeumaierLanes {
    static auto wide_zero() { return typename V::Wide{V::zero(), V::zero()}; }
    template <class W, class R>
    static void wide_add(W& w, R v) {
        const R t = V::add(w.sum, v);
        const auto big = V::ge(V::abs(w.sum), V::abs(v));
        const R larger = V::select(big, w.sum, v);
        const R smaller = V::select(big, v, w.sum);
        w.comp = V::add(w.comp, V::add(V::sub(larger, t), smaller));
        w.sum = t;
    }
    template <class W>
    static double wide_hsum(const W& w) {
        alignas(64) double sums[V::N], comps[V::N];
        V::store(sums, w.sum);
        V::store(comps, w.comp);
        return neumaier_total(sums, comps, V::N);
    }
    // an infinite lane makes its compensation NaN (inf - inf): ignore it then
    template <class W>
    static auto wide_round(const W& w) {
        return V::select(V::not_finite(w.sum), w.sum, V::add(w.sum, w.comp));
    }
    template <class W>
    static void wide_store(const W& w, double* lanes) {
        V::store(lanes, wide_round(w));
    }
};

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
