// The floor for issue 17 part 1's cross-entropy of few classes: the leanest
// kernel written for float32 rows of kN classes laid end to end (mean, integer
// labels, the gradient in place), at the library's accuracy and with its
// arithmetic, outside the library (AVX-512), timed against fastsoftmax and
// np.exp by bench/floor_few.py, which compiles this file.
//
// The arithmetic is the library's register tiles' (ce_register_tiles and
// CeLabelsChunks::chunk): rows transposed in registers (RegisterTile), per
// lane m = max, e = exp(x - m) by vexp, rest = the other classes' sum, the
// loss log1p(rest / ey) by vlog1p, summed in double per chunk of 16 rows, the
// gradient f * e (f = s_ce / (ey + rest)) and -f * rest at the label. What it
// leaves out is what the library's chunk carries for other calls: weights,
// per-example scales and losses, temperatures, the lse output, and the scalar
// formula of labels far below their row's maximum (the floor checks that no
// lane needs it). Its labels are checked and counted first by the library's
// own count_labels (the library must check them before it writes), and its
// groups of 16 rows go through each step G at a time, so that one group's
// chain of divisions and logs overlaps the next's.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "arch/avx512/vec.hpp"
#include "generic/ce_terms.hpp"
#include "generic/register_tiles.hpp"
#include "generic/vec_math.hpp"

using namespace fastsoftmax::avx512;
using V = F32;
using reg = V::reg;

namespace {

template <std::size_t kN, std::size_t G>
double ce_rows(float* x, const std::int64_t* label, std::size_t rows, float s_ce) {
    constexpr std::size_t N = V::N;
    const reg zero = V::zero(), one = V::set1(1.0f), nan = V::set1(__builtin_nanf("")),
              sce = V::set1(s_ce);
    double total = 0;
    for (std::size_t r = 0; r < rows; r += G * N) {
        const std::size_t w = (rows - r < G * N) ? rows - r : G * N;
        fastsoftmax::avx512::RegisterTile<V, kN, G> t;
        t.load(x + r * kN, w);
        reg vy[G], m[G], ref[G], e[G][kN], xy[G], ey[G], rest[G];
        for (std::size_t g = 0; g < G; ++g) {
            const std::size_t c0 = g * N, wg = w > c0 ? (w - c0 < N ? w - c0 : N) : 0;
            vy[g] = V::label_lanes(label + r + c0, wg, -100, kN, -1.0f, -2.0f);
            m[g] = t.max(g);
            ref[g] = V::select(V::not_finite(m[g]), zero, m[g]);
        }
        for (std::size_t g = 0; g < G; ++g) {
            xy[g] = zero;
            ey[g] = zero;
            reg s = zero;
            if constexpr (kN == 2) {  // one exponential: the larger's exp(0) is 1
                const auto first = V::ge(t.c[g][0], t.c[g][1]);
                const reg small = vexp<V>(V::sub(V::select(first, t.c[g][1], t.c[g][0]), ref[g]));
                e[g][0] = V::select(first, one, small);
                e[g][1] = V::select(first, small, one);
            }
            for (std::size_t i = 0; i < kN; ++i) {
                if constexpr (kN != 2) e[g][i] = vexp<V>(V::sub(t.c[g][i], ref[g]));
                const auto at_y = V::eq(vy[g], V::set1(static_cast<float>(i)));
                xy[g] = V::select(at_y, t.c[g][i], xy[g]);
                ey[g] = V::select(at_y, e[g][i], ey[g]);
                s = V::add(s, V::select(at_y, zero, e[g][i]));
            }
            rest[g] = s;
        }
        reg grad[G][kN];
        for (std::size_t g = 0; g < G; ++g) {
            const reg d = V::sub(xy[g], ref[g]);
            if (V::hmax(V::select(V::lt(d, V::set1(-60.0f)), one, zero)) > 0)
                return __builtin_nan("");  // (the library's scalar formula: not in the floor)
            const reg l1p = vlog1p<V>(V::div(rest[g], ey[g]));
            const auto skip = V::eq(vy[g], V::set1(-1.0f));
            const auto special =
                V::mask_or(V::mask_or(V::not_finite(m[g]), V::isnan(rest[g])),
                           V::mask_or(V::isnan(xy[g]), V::eq(vy[g], V::set1(-2.0f))));
            const reg loss = V::select(skip, zero, V::select(special, nan, l1p));
            auto wsum = V::wide_zero();
            V::wide_add(wsum, loss);
            total += V::wide_hsum(wsum);
            const reg f = V::div(sce, V::add(ey[g], rest[g]));
            const reg gy = V::fnmadd(f, rest[g], zero);
            for (std::size_t i = 0; i < kN; ++i) {
                const auto at_y = V::eq(vy[g], V::set1(static_cast<float>(i)));
                const reg gv = V::select(at_y, gy, V::mul(e[g][i], f));
                grad[g][i] = V::select(skip, zero, V::select(special, nan, gv));
            }
        }
        fastsoftmax::avx512::RegisterTile<V, kN, G>::store(grad, x + r * kN, w);
    }
    return total;
}

template <std::size_t G>
double dispatch(float* x, const std::int64_t* y, std::size_t rows, std::size_t n, float s_ce) {
    switch (n) {
        case 2:
            return ce_rows<2, G>(x, y, rows, s_ce);
        case 3:
            return ce_rows<3, G>(x, y, rows, s_ce);
        case 4:
            return ce_rows<4, G>(x, y, rows, s_ce);
        case 5:
            return ce_rows<5, G>(x, y, rows, s_ce);
        case 8:
            return ce_rows<8, G>(x, y, rows, s_ce);
        default:
            return __builtin_nan("");
    }
}

}  // namespace

// The mean cross-entropy of `rows` rows of n classes (2, 3, 4, 5 or 8) at x,
// the gradient written over x; groups: 1, 2 or 4 chunks of 16 rows at a time.
// NaN for labels out of range (nothing written) or a row the floor leaves out.
extern "C" double ce_few_f32(float* x, const std::int64_t* y, std::size_t rows, std::size_t n,
                             int groups) {
    // (the library's label check and count, as its driver calls it)
    const fastsoftmax::LabelCount labels =
        count_labels(y, rows, -100, static_cast<std::int64_t>(n));
    if (labels.bad) return __builtin_nan("");
    const auto count = static_cast<double>(labels.used);
    const float s_ce = static_cast<float>(1.0 / count);
    const double total = groups == 1   ? dispatch<1>(x, y, rows, n, s_ce)
                         : groups == 2 ? dispatch<2>(x, y, rows, n, s_ce)
                                       : dispatch<4>(x, y, rows, n, s_ce);
    return total / count;
}
