// The floor for issue 17 part 1's AVX2 target at 6 to 64 classes: the
// leanest softmax written for float32 rows of kN classes laid end to end
// (rows a multiple of 8, `out=`), at the library's
// accuracy and with its arithmetic, outside the library (AVX2 + FMA), timed
// against fastsoftmax, 81c4564 and np.exp by bench/floor_cols.py, which
// compiles this file.
//
// The arithmetic is the library's column kernel (softmax_cols): per row the
// maximum, e = exp(x - max) by vexp_sub (the exact difference, 0 below
// exp_floor), the pairs of e summed in double (ExpSum), 1/sum as two floats
// by wide_reciprocal, e * (hi + lo) rounded once (Factor). What it leaves out
// is all that the library's tiles carry for other calls: run-time row
// lengths and strides, tails of rows and of batches, temperatures, other
// types. Its row length is a constant, so every loop below is unrolled and
// every address is a constant offset.
//
// Each group of 8 rows is transposed (the library's 8 x 8 transpose) into a
// tile of kN vectors on the stack, one row per lane, computed there and
// transposed back (block_at: where kN is not a multiple of 8, the last block
// overlaps the one before; below 8 classes, each row's vector reaches into
// the next row); or (kTiles false, kN a multiple of 8) each row is done
// along its length (the library's row kernels: row_max, row_store_exp_sum,
// the scaling).
#include <immintrin.h>

#include <cstddef>
#include <limits>

#include "arch/avx2/vec.hpp"
#include "generic/blocks.hpp"
#include "generic/temperature.hpp"
#include "generic/vec_math.hpp"

using namespace fastsoftmax::avx2;
using V = F32;
using reg = V::reg;

namespace {

// The 8 x 8 blocks of a group's columns: at 0, 8, ..., and where kN is not a
// multiple of 8, one more at kN - 8 that overlaps the one before (its
// columns are computed twice, the same values both times). Below 8 classes,
// one block at 0 that reads past each row into the next (and past the
// group: the caller pads the arrays by 8 elements).
template <std::size_t kN>
constexpr std::size_t block_at(std::size_t b) {
    return kN < 8 ? 0 : (b + 1) * 8 > kN ? kN - 8 : b * 8;
}
template <std::size_t kN>
constexpr std::size_t kBlocks = kN < 8 ? 1 : (kN + 7) / 8;

template <std::size_t kN>
void by_tiles(const float* x, float* y, std::size_t rows) {
    static_assert(kN >= 4, "rows of at least 4 (the stores below run in row order)");
    constexpr std::size_t N = V::N;
    const reg nan = V::set1(std::numeric_limits<float>::quiet_NaN());
    alignas(64) float t[(kN < 8 ? 8 : kN) * N];
    for (std::size_t r = 0; r + N <= rows; r += N) {
        const float* xr = x + r * kN;
        float* yr = y + r * kN;
        for (std::size_t b = 0; b < kBlocks<kN>; ++b) {
            const std::size_t c = block_at<kN>(b);
            V::transpose(xr + c, kN, t + c * N, N);
        }
        reg m0 = V::load(t), m1 = V::load(t + N);
        for (std::size_t i = 2; i + 1 < kN; i += 2) {
            m0 = V::max(m0, V::load(t + i * N));
            m1 = V::max(m1, V::load(t + (i + 1) * N));
        }
        if (kN % 2) m0 = V::max(m0, V::load(t + (kN - 1) * N));
        const reg m = V::max(m0, m1);
        const auto bad = V::not_finite(m);
        const reg ref = V::select(bad, V::zero(), m), lo = exp_floor<V>(ref);
        ExpSum<V> sum;
        for (std::size_t i = 0; i + 1 < kN; i += 2) {
            const reg e0 = vexp_sub<V>(V::load(t + i * N), ref, lo);
            const reg e1 = vexp_sub<V>(V::load(t + (i + 1) * N), ref, lo);
            V::store(t + i * N, e0);
            V::store(t + (i + 1) * N, e1);
            sum.add2(e0, e1);
        }
        if (kN % 2) {
            const reg e = vexp_sub<V>(V::load(t + (kN - 1) * N), ref, lo);
            V::store(t + (kN - 1) * N, e);
            sum.add(e);
            sum.flush();
        }
        reg hi, lo2;
        V::wide_reciprocal(sum.wide, hi, lo2);
        const Factor<V> inv{V::select(bad, nan, hi), V::select(bad, nan, lo2)};
        for (std::size_t i = 0; i < kN; ++i) V::store(t + i * N, inv.apply(V::load(t + i * N)));
        for (std::size_t b = 0; b < kBlocks<kN>; ++b) {
            const std::size_t c = block_at<kN>(b);
            reg in[8], out[8];
            for (std::size_t j = 0; j < 8; ++j) in[j] = V::load(t + (c + j) * N);
            V::transpose8(in, out);
            // (row order: below 8 classes each row's store runs into the next
            // row, whose own store comes after it)
            for (std::size_t j = 0; j < 8; ++j) V::store(yr + j * kN + c, out[j]);
        }
    }
}

template <std::size_t kN>
void by_rows(const float* x, float* y, std::size_t rows) {
    const Unscaled<V> z;
    for (std::size_t r = 0; r < rows; ++r, x += kN, y += kN) {
        const float m = row_max<V>(x, kN);
        // (the rows here are finite: the library's special rows are left out)
        const double s = row_store_exp_sum<V>(x, y, kN, m, z);
        const Factor<V> inv = Factor<V>::reciprocal(s);
        for (std::size_t i = 0; i < kN; i += V::N) V::store(y + i, inv.apply(V::load(y + i)));
    }
}

template <bool kTiles>
int dispatch(const float* x, float* y, std::size_t rows, std::size_t n) {
    switch (n) {
#define FLOOR_CASE(K)                \
    case K:                          \
        if (kTiles) {                \
            by_tiles<K>(x, y, rows); \
        } else {                     \
            if (K % 8) return 1;     \
            by_rows<K>(x, y, rows);  \
        }                            \
        return 0;
        FLOOR_CASE(6)
        FLOOR_CASE(7)
        FLOOR_CASE(8)
        FLOOR_CASE(9)
        FLOOR_CASE(10)
        FLOOR_CASE(11)
        FLOOR_CASE(12)
        FLOOR_CASE(13)
        FLOOR_CASE(14)
        FLOOR_CASE(15)
        FLOOR_CASE(16)
        FLOOR_CASE(24)
        FLOOR_CASE(32)
        FLOOR_CASE(48)
        FLOOR_CASE(64)
#undef FLOOR_CASE
        default:
            return 1;
    }
}

}  // namespace

// softmax of `rows` rows of n classes (6 to 16, 24, 32, 48 or 64) at x into
// y; tiles: 1 by tiles of 8 rows, 0 row by row. Rows: a multiple of 8
// (tiles); x and y: 8 elements of room past the array (below 8 classes,
// the tiles' reads and writes). Returns 1 (nothing written) for another n,
// and row by row for n not a multiple of 8.
extern "C" int softmax_cols_f32(const float* x, float* y, std::size_t rows, std::size_t n,
                                int tiles) {
    return tiles ? dispatch<true>(x, y, rows, n) : dispatch<false>(x, y, rows, n);
}
