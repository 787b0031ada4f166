// The fused softmax cross-entropy over rows of contiguous logits, written
// once over a vector wrapper V and compiled per target. Formulas: see
// fastsoftmax/cross_entropy.hpp.
//
// Per row:
//   1. one read of the logits (the online block walk of blocks.hpp): the
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
#include "generic/blocks.hpp"
#include "generic/ce_cols.hpp"
#include "generic/ce_row_passes.hpp"
#include "generic/ce_terms.hpp"
#include "generic/register_tiles.hpp"
#include "generic/target.hpp"
#include "generic/tiles.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// Short rows (up to kCeGroupMaxVectors vectors: most class counts, not
// vocabularies) go through in groups of kCeGroup, each step for the whole
// group: the per-row chain of reductions (max, sums, log) is latency-bound
// when done one short row at a time.
constexpr std::size_t kCeGroup = 8;
constexpr std::size_t kCeGroupMaxVectors = 16;  // longest rows grouped (vectors)

// kTies: probabilities (see ExpSplit); integer labels otherwise.
template <class V, int kCap, bool kTies, class Coef, class MakeCoef>
CeSums ce_rows(const CeRows<typename V::S>& a, const CeOptions<typename V::S>& o,
               MakeCoef make_coef) {
    using T = typename V::T;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    const Cap<V, kCap> cap(o.softcap, o.scale);
    const std::size_t n = a.n;
    const double z = o.z_loss;
    const CeCall call(o, n, a.s_ce, a.s_z);
    // the store-then-scale gradient (one exp per element) needs the logits
    // only in the read pass; soft-capping needs them again (its derivative).
    // Half-precision storage keeps the exponentials in a float scratch row
    // (kExpInOutput), up to kHalfScratchBytes a row; longer rows recompute.
    constexpr bool kStore = kCap != kCapTanh;
    constexpr bool kHalf = !kExpInOutput<V>;
    const bool store = kStore && a.grad && !a.lse && (!kHalf || n * sizeof(T) <= kHalfScratchBytes);
    const std::size_t blocks = (n + kBlock * V::N - 1) / (kBlock * V::N);
    // Short rows go through in groups (below); longer rows one at a time, so
    // that a row is still in L1 for its second look (measured: a group of 8
    // rows of 1024 float32 took 1.4x as long as single rows).
    const bool grouped = kCap != kCapTanh && !a.lse && n <= kCeGroupMaxVectors * V::N;
    Scratch<T> refs(store && !grouped ? blocks : 0);  // block references (single rows)
    // where the exponentials of row r (slot k of a group) go: its gradient
    // row, or (half precision) slot k of the scratch rows
    using E = std::conditional_t<kHalf, T, typename V::S>;
    // Half precision writes a long row's gradient from the scratch row with
    // non-temporal stores: the exp pass no longer brought its lines into cache
    // (as the float32 path's stores into g do), and reading them for ownership
    // in the scaling pass cost (256, 32000) bfloat16 1.6 ms of 3.9.
    // (not in place: there the exp pass has just read the lines it overwrites)
    const bool stream_grad = kHalf && store && static_cast<const void*>(a.grad) != a.x &&
                             n * sizeof(typename V::S) >= kLongRowBytes;
    // (the gradient from a saved lse, or half precision's longest rows: from
    // the logits, into a gradient array of at least kStreamBytes; rows past
    // kLongRowBytes only, as stream_grad: the label's entry, stored after the
    // row's, costs a line written back per row. (8192, 1024) float32 out=:
    // 1.37x slower streamed; (2048, 32000) 0.64-0.73x)
    const bool stream_recomputed = a.grad_from_memory && !store &&
                                   static_cast<const void*>(a.grad) != a.x &&
                                   n * sizeof(typename V::S) >= kLongRowBytes;
    T* const scratch = kHalf && store ? thread_scratch<T>((grouped ? kCeGroup : 1) * n) : nullptr;
    CeSums total;
    const auto x_of = [&](std::size_t r) { return a.x + static_cast<std::ptrdiff_t>(r) * a.xs; };
    const auto g_of = [&](std::size_t r) {
        return a.grad ? a.grad + static_cast<std::ptrdiff_t>(r) * a.gs : nullptr;
    };
    const auto e_of = [&](std::size_t r, std::size_t k) -> E* {
        if constexpr (kHalf)
            return scratch + k * n;
        else
            return (void)k, g_of(r);
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
        if (a.lse_out) a.lse_out[r] = 0;
        if (!ignore) total.ce += static_cast<double>(fill);
        if (typename V::S* g = g_of(r)) fill_row(g, n, to_storage<typename V::S>(fill));
        return true;
    };

    // The loss and gradient of row r from its read pass. xy = x[y] (read
    // before the gradient may overwrite it); with stored exponentials, refs
    // holds each block's reference.
    const auto finish = [&](std::size_t r, std::int64_t y, T xy, const CeStats& st,
                            const Coef& coef, const T* block_refs, const E* e) {
        const double wy = (a.label && o.weight) ? static_cast<double>(o.weight[y]) : 1.0;
        const double log_s = st.log_sum, lse = st.max + log_s;
        if (!a.lse) {
            double ce = nan, zl = z != 0 ? nan : 0;
            if (!st.special) {
                ce = a.label ? ce_label_loss(call, wy, st.label_term, log_s, st.lin)
                             : ce_target_loss(st.cs, log_s, st.lin);
                zl = z_loss_term(call, lse);
            }
            total.ce += ce;
            total.z += zl;
            if (a.loss) a.loss[r] = ce + zl;
            // (a row with NaN or +inf, or only -inf: NaN, so that a backward
            // from it gives the NaN gradient this pass gives)
            if (a.lse_out) a.lse_out[r] = st.special ? nan : lse;
        }
        typename V::S* g = g_of(r);
        if (!g) return;
        if (st.special)
            return fill_row(g, n, to_storage<typename V::S>(std::numeric_limits<T>::quiet_NaN()));
        const double scale = a.grad_scale ? a.grad_scale[r] : 1.0;
        const CeGradFactors f = a.label ? ce_label_factors(call, scale, wy, lse)
                                        : ce_target_factors(call, scale, st.cs, lse);
        if (store)
            ce_row_scale<V>(e, g, n, block_refs, st.max, f.a / st.sum, static_cast<T>(f.e), coef,
                            stream_grad);
        else
            ce_row_grad<V>(x_of(r), g, n, static_cast<T>(st.max), Factor<V>::of(f.a / st.sum),
                           static_cast<T>(f.e), cap, coef, stream_recomputed);
        if constexpr (!kTies) {  // integer labels (kTies: probabilities)
            const double d = kCap == kCapTanh ? static_cast<double>(cap.scalar_deriv(xy)) : 1.0;
            if (st.others >= 0) {  // p - 1 = -others / s: no cancellation when p is near 1
                const double cy = static_cast<double>(coef.at(static_cast<std::size_t>(y)));
                g[y] = to_storage<typename V::S>(
                    static_cast<T>(label_gradient(f, st.label_exp, st.others, st.sum, cy) * d));
            } else {
                g[y] = to_storage<typename V::S>(
                    static_cast<T>(static_cast<double>(to_compute(g[y])) - f.b * d));
            }
        }
    };

    if (!grouped) {
        const std::size_t ahead = rows_ahead<typename V::S>(n);
        for (std::size_t r = 0; r < a.rows; ++r) {
            prefetch_ahead(x_of(r), a.xs, r, a.rows, n, ahead);
            std::int64_t y;
            if (ignored(r, y)) continue;
            const typename V::S* x = x_of(r);
            const T xy = a.label ? to_compute(x[y]) : T(0);
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
                st = ce_row_stats<V, kCap, Coef, kStore, kTies, E>(x, n, cap, coef, skip, xy,
                                                                   e_of(r, 0), refs.data);
            } else {
                st = ce_row_stats<V, kCap, Coef, false, kTies>(x, n, cap, coef, skip, xy);
            }
            finish(r, y, xy, st, coef, refs.data, store ? e_of(r, 0) : nullptr);
        }
        if (stream_grad || stream_recomputed) V::stream_fence();
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
        double d[kCeGroup], ey[kCeGroup], l1p[kCeGroup];
        double u[kCeGroup] = {};  // (GCC 12 took it for unset where vlog1p is inlined)
        for (std::size_t k = 0; k < count; ++k) {
            m[k] = row_max<V>(x_of(rows[k]), n);
            if constexpr (kCap != kCapNone) m[k] = cap.scalar(m[k]);  // (the maximum of x')
        }
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
                    ? ce_stretch_lanes<V, kCap, Coef, true, kT, E>(x_of(rows[k]), e_of(rows[k], k),
                                                                   n, m[k], cap, coef, 0, st[k].lin,
                                                                   st[k].cs, skip)
                    : ce_stretch_lanes<V, kCap, Coef, false, kT, E>(
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
            finish(rows[k], ys[k], xys[k], st[k], make_coef(rows[k]), &m[k],
                   store ? e_of(rows[k], k) : nullptr);
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
        xys[count] = a.label ? to_compute(x_of(r)[y]) : T(0);
        if constexpr (kCap != kCapNone) xys[count] = cap.scalar(xys[count]);  // (x')
        if (++count == kCeGroup) group();
    }
    if (count) group();
    if (stream_grad || stream_recomputed) V::stream_fence();
    return total;
}

template <class V, int kCap>
CeSums ce_rows_capped(const CeRows<typename V::S>& a, const CeOptions<typename V::S>& o) {
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
        return ce_rows<V, kCap, false, WeightCoef<V>>(
            a, o, [&](std::size_t) { return WeightCoef<V>{o.weight}; });
    return ce_rows<V, kCap, false, OnesCoef<V>>(a, o, [](std::size_t) { return OnesCoef<V>{}; });
}

// The longest rows sent by tiles (tiles.hpp), with the column kernel of
// integer labels (ce_cols_labels): float32 with its gradient, 128 classes
// took 78 ns a row by rows and 68 by tiles with avx512, but with avx2's 8
// lanes 114 and 124; float64, 128 classes: 762 by rows and 837 by tiles.
template <class V>
constexpr std::size_t kCeTileLimit = sizeof(typename V::T) == 4 && V::N >= 16 ? 128 : 96;

// The per-example arrays of rows [r, ...) of a, for a column kernel over
// their tiles (whose logits, targets and gradient the caller sets).
template <class S>
CeCols<compute_t<S>> examples_of(const CeRows<S>& a, std::size_t r) {
    const auto off = static_cast<std::ptrdiff_t>(r);
    CeCols<compute_t<S>> c;
    c.label = a.label ? a.label + off * a.ls : nullptr;
    c.ls = a.ls;
    c.grad_scale = a.grad_scale ? a.grad_scale + r : nullptr;
    c.loss = a.loss ? a.loss + r : nullptr;
    c.lse_out = a.lse_out ? a.lse_out + r : nullptr;
    c.s_ce = a.s_ce;
    c.s_z = a.s_z;
    c.n = a.n;
    return c;
}

// Short rows by tiles (tiles.hpp): V::N rows (logits, and probabilities)
// transposed into tiles, ce_cols on them, the gradient transposed back. Each
// lane is computed on its own, as in ce_cols, so a row's loss does not depend
// on its batch.
template <class V>
CeSums ce_by_tiles(const CeRows<typename V::S>& a, const CeOptions<typename V::S>& o) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    alignas(64) T xt[kTileBytes / sizeof(T)];
    alignas(64) T tt[kTileBytes / sizeof(T)];
    const CeOptions<T> co = compute_options(o);
    CeSums total;
    for (std::size_t r = 0; r < a.rows; r += N) {
        const std::size_t w = (a.rows - r < N) ? a.rows - r : N;
        const auto off = static_cast<std::ptrdiff_t>(r);
        tile_in<V>(a.x + off * a.xs, a.xs, xt, N, w, a.n);
        if (a.target) tile_in<V>(a.target + off * a.ts, a.ts, tt, N, w, a.n);
        CeCols<T> c = examples_of(a, r);  // over the tiles, in the compute type
        c.x = xt;
        c.xs = N;
        c.target = a.target ? tt : nullptr;
        c.ts = N;
        c.grad = a.grad ? xt : nullptr;  // in place: ce_cols reads each entry first
        c.gs = N;
        c.inner = w;
        c.scale_in_place = xt;  // (a temperature: the tile's logits scaled where they lie)
        const CeSums s = cross_entropy_cols<typename V::Compute>(c, co);
        total.ce += s.ce;
        total.z += s.z;
        if (a.grad) tile_out<V>(xt, N, a.grad + off * a.gs, a.gs, w, a.n);
    }
    return total;
}

// Integer labels without smoothing, z-loss or soft-capping, rows of kN
// classes laid end to end (and their gradient): the register tiles
// (register_tiles.hpp) with ce_cols_labels' per-chunk work, V::N rows a chunk
// as in ce_by_tiles, whose sums it adds in the same order: the same bits.
template <class V, std::size_t kN>
CeSums ce_register_tiles(const CeRows<typename V::S>& a, const CeOptions<typename V::S>& o) {
    using T = typename V::T;
    using reg = typename V::reg;
    using C = typename V::Compute;
    constexpr std::size_t N = V::N, G = RegisterTile<V, kN>::kGroups;
    const CeOptions<T> co = compute_options(o);
    const CeCols<T> c = examples_of(a, 0);  // (the logits and gradient are the tiles')
    CeLabelsChunks<C, kN> k(c, co);
    CeSums total;
    // G * N rows from r (w of them) through the chunks one at a time (a
    // temperature: they scale the logits as ce_by_tiles' do)
    const auto step = [&](std::size_t r, std::size_t w, auto scaled) {
        const reg vs = C::set1(co.scale);
        RegisterTile<V, kN> t;
        t.load(a.x + r * kN, w);
        reg grad[G][kN], e[kN];
        for (std::size_t g = 0; g < G && g * N < w; ++g) {
            k.template chunk<decltype(scaled)::value>(
                r + g * N, (w - g * N < N) ? w - g * N : N,
                [&](std::size_t i) { return t.c[g][i]; }, a.grad != nullptr,
                [&](std::size_t i, reg v) { e[i] = v; }, [&](std::size_t i, reg) { return e[i]; },
                [&](std::size_t i, reg v) { grad[g][i] = v; }, vs);
            const CeSums s = k.take();  // (one chunk: ce_by_tiles' tile of V::N rows)
            total.ce += s.ce;
            total.z += s.z;
        }
        if (a.grad) RegisterTile<V, kN>::store(grad, a.grad + r * kN, w);
    };
    const auto run = [&](auto scaled) {
        for (std::size_t r = 0; r < a.rows; r += G * N)
            step(r, (a.rows - r < G * N) ? a.rows - r : G * N, scaled);
    };
    // One class, the usual call: a lane that counts has x[y] = max, so chunk
    // finds a loss of +0 and a gradient of -(s_ce * 0) + 0 = +0 (s_ce finite
    // in a plain call), unless its logit is not finite or its label unusable:
    // NaN for both; an ignored lane, 0 for both. Those answers, without
    // chunk's steps (which took 2.4x the time of these on Zen 5). The loss's
    // sum is +0 or that NaN (the same bits in any order of summation).
    if constexpr (kN == 1) {
        if (k.plain(co.scale != 1)) {
            const reg zero = C::zero(), one = C::set1(T(1)),
                      nan = C::set1(std::numeric_limits<T>::quiet_NaN());
            reg nan_lanes = zero;
            for (std::size_t r = 0; r < a.rows; r += G * N) {
                const std::size_t w = (a.rows - r < G * N) ? a.rows - r : G * N;
                RegisterTile<V, 1> t;
                t.load(a.x + r, w);
                reg grad[G][1];
                for (std::size_t g = 0; g < G; ++g) {
                    const std::size_t at = g * N, wg = w > at ? (w - at < N ? w - at : N) : 0;
                    T label_lanes[N];
                    const reg vy = k.labels(r + at, wg, 1, label_lanes);
                    const auto skip = C::eq(vy, C::set1(decltype(k)::kIgnored));
                    const auto special = C::mask_or(C::not_finite(t.c[g][0]),
                                                    C::eq(vy, C::set1(decltype(k)::kUnusable)));
                    nan_lanes = C::select(skip, nan_lanes, C::select(special, one, nan_lanes));
                    grad[g][0] = C::select(skip, zero, C::select(special, nan, zero));
                }
                if (a.grad) RegisterTile<V, 1>::store(grad, a.grad + r, w);
            }
            if (C::hmax(nan_lanes) > 0) total.ce = std::numeric_limits<double>::quiet_NaN();
            return total;
        }
    }
    // The usual call: the chunks G at a time (CeLabelsChunks::groups). Where a
    // label lies far below its row's maximum, the step is taken again, chunk
    // by chunk (before anything of it is stored or added), out of line: the
    // loop then passes nothing of its own by address, and keeps its tiles in
    // registers.
    if constexpr (kN >= 2) {
        if (k.plain(co.scale != 1)) {
            const auto again = [&](std::size_t r, std::size_t w)
                                   __attribute__((noinline)) { step(r, w, std::false_type{}); };
            // (four chunks at a time where rows are shortest: on avx512 float,
            // 0.90-0.97x the time of two from 2 to 5 classes, 1.00 at 8; with 8
            // lanes (avx2 float), 0.91x at 2 classes, 0.98-1.04x at 3 to 5)
            constexpr std::size_t kG = kN <= 3 || (N >= 16 && kN <= 5) ? 4 : G;
            for (std::size_t r = 0; r < a.rows; r += kG * N) {
                const std::size_t w = (a.rows - r < kG * N) ? a.rows - r : kG * N;
                RegisterTile<V, kN, kG> t;
                t.load(a.x + r * kN, w);
                reg grad[kG][kN];
                // (zeros past V::N, where GCC 12 saw them unset with inline-unit-growth
                // at 100: groups writes them all where a.grad is set; below, zeros
                // cost the cross-entropy 0.5 instructions an element at 2 to 8 classes)
                if constexpr (kN > N)
                    for (auto& row : grad)
                        for (reg& v : row) v = reg{};
                double sums[kG] = {};  // (GCC 12 saw sums[0] unset with kG = 1)
                bool far[kG] = {};
                k.template groups<kG>(
                    r, w, [&](std::size_t g, std::size_t i) { return t.c[g][i]; },
                    a.grad != nullptr, [&](std::size_t g, std::size_t i, reg v) { grad[g][i] = v; },
                    sums, far);
                bool any_far = false;
                for (std::size_t g = 0; g < kG && g * N < w; ++g) any_far = any_far || far[g];
                if (any_far) {
                    for (std::size_t q = 0; q < w; q += G * N)
                        again(r + q, (w - q < G * N) ? w - q : G * N);
                    continue;
                }
                for (std::size_t g = 0; g < kG && g * N < w; ++g) total.ce += sums[g];
                if (a.grad) RegisterTile<V, kN, kG>::store(grad, a.grad + r * kN, w);
            }
            return total;
        }
    }
    if (co.scale != 1)
        run(std::true_type{});
    else
        run(std::false_type{});
    return total;
}

template <class V>
CeSums cross_entropy_rows(const CeRows<typename V::S>& a, const CeOptions<typename V::S>& o) {
    // (one class: float only, as by the tiles below)
    const auto n = static_cast<std::ptrdiff_t>(a.n);
    CeSums s;
    if (a.label && o.softcap == 0 && o.smoothing == 0 && o.z_loss == 0 && !a.lse &&
        try_register_tiles<V>(a.n, sizeof(typename V::T) == 4 ? 1 : 2,
                              a.xs == n && (!a.grad || a.gs == n),
                              [&](auto k) { s = ce_register_tiles<V, k>(a, o); }))
        return s;
    // One class, float compute: by tiles too where their transposes exist (the row
    // paths' scalar steps cost 40-50 ns a row; 5.7 by tiles). Float64 keeps its rows:
    // its loss would change in the last bit (another order of summation).
    const bool one = a.n == 1 && HasShortTranspose<V>::value && sizeof(typename V::T) == 4;
    if (o.softcap == 0 && !a.lse && (one || tiles_pay<V>(a.n, kCeTileLimit<V>)))
        return ce_by_tiles<V>(a, o);
    if (o.softcap != 0) return ce_rows_capped<V, kCapTanh>(a, o);
    return o.scale != 1 ? ce_rows_capped<V, kCapScale>(a, o) : ce_rows_capped<V, kCapNone>(a, o);
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
