// AVX2 + FMA vector wrappers (8 floats, 4 doubles) for the generic algorithms.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "arch/common_ops.hpp"

namespace fastsoftmax::avx2 {

// Lane masks for partial loads and stores: lanes [0, n) set.
inline __m256i mask32(std::size_t n) {
    alignas(32) static const std::int32_t t[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                   0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 8 - n));
}
inline __m256i mask64(std::size_t n) {
    alignas(32) static const std::int64_t t[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 4 - n));
}

// Bytes [0, b) of v at p, b < 32 a multiple of 4, by pieces of 16, 8 and 4
// bytes: the partial stores. vmaskmov stores are microcoded and slow on AMD cores, and a
// store through a stack buffer and a memcpy of run-time length took a
// library call (at 10 classes, softmax's tiles spent 2.5 instructions an
// element in those calls).
inline void store_bytes(void* p, std::size_t b, __m256i v) {
    char* q = static_cast<char*>(p);
    __m128i h = _mm256_castsi256_si128(v);
    if (b & 16) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q), h);
        h = _mm256_extracti128_si256(v, 1);
        q += 16;
    }
    if (b & 8) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q), h);
        h = _mm_unpackhi_epi64(h, h);
        q += 8;
    }
    // (float lanes only come in fours of bytes; not _mm_storeu_si32, which
    // GCC has from 11 on)
    if (b & 4) _mm_store_ss(reinterpret_cast<float*>(q), _mm_castsi128_ps(h));
}

struct F32 : ScaleOrZero<F32> {
    using T = float;      // compute type (registers, scalars, scratch)
    using S = float;      // storage type (the caller's arrays)
    using Compute = F32;  // the wrapper for arrays of T
    using reg = __m256;
    using mask = __m256;  // all-ones / all-zeros lanes
    static constexpr std::size_t N = 8;
    // an underflowing multiply costs a microcode assist (see vexp)
    static constexpr bool kSlowSubnormals = true;

    static reg load(const T* p) { return _mm256_loadu_ps(p); }
    static reg load_partial(const T* p, std::size_t n, T fill) {
        const __m256i m = mask32(n);
        return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m),
                                _mm256_castsi256_ps(m));
    }
    static void store(T* p, reg v) { _mm256_storeu_ps(p, v); }
    static void store_partial(T* p, std::size_t n, reg v) {
        if (n >= N)
            store(p, v);
        else
            store_bytes(p, n * sizeof(T), _mm256_castps_si256(v));
    }
    // non-temporal store; p aligned to sizeof(reg)
    static void stream(T* p, reg v) { _mm256_stream_ps(p, v); }
    static void stream_fence() { _mm_sfence(); }
    static reg set1(T v) { return _mm256_set1_ps(v); }
    static reg zero() { return _mm256_setzero_ps(); }
    static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
    static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
    static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    static reg fnmadd(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }
    static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
    static reg abs(reg a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
    static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
    // p * 2^n for integral n in [-252, 254]: two exact power-of-two factors,
    // so subnormal results are rounded once and large n overflow to +inf.
    static reg scale_pow2(reg p, reg n) {
        const __m256i ni = _mm256_cvtps_epi32(n);
        const __m256i n1 = _mm256_srai_epi32(ni, 1);
        const __m256i n2 = _mm256_sub_epi32(ni, n1);
        const __m256i bias = _mm256_set1_epi32(127);
        const reg s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
        const reg s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
        return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    }
    static void frexp12(reg x, reg& m, reg& e) {
        // subnormals: scale by 2^23 first
        const reg sub = _mm256_cmp_ps(x, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
        x = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(8388608.0f)), sub);
        const __m256i bits = _mm256_castps_si256(x);
        const __m256i ebits =
            _mm256_and_si256(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(0xff));
        e = _mm256_cvtepi32_ps(_mm256_sub_epi32(ebits, _mm256_set1_epi32(127)));
        e = _mm256_sub_ps(e, _mm256_and_ps(sub, _mm256_set1_ps(23.0f)));
        m = _mm256_castsi256_ps(_mm256_or_si256(
            _mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000)));
    }
    static mask lt(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static mask eq(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
    static mask ge(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
    static mask not_finite(reg a) {
        return _mm256_cmp_ps(_mm256_sub_ps(a, a), _mm256_setzero_ps(), _CMP_NEQ_UQ);
    }
    static mask mask_or(mask a, mask b) { return _mm256_or_ps(a, b); }
    static mask bytes_nonzero(const unsigned char* m) {  // (8 bytes)
        std::uint64_t v;
        std::memcpy(&v, m, sizeof v);
        return lanes_of_bytes(v);
    }
    static mask bytes_nonzero_partial(const unsigned char* m, std::size_t n) {  // (n < 8)
        return lanes_of_bytes(low_bytes(m, n));
    }
    static mask lanes_of_bytes(std::uint64_t v) {  // lane k: byte k of v
        const __m256i w = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(v)));
        return _mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()));
    }
    static reg select(mask m, reg a, reg b) { return _mm256_blendv_ps(b, a, m); }
    // Integer class labels as lanes (the cross-entropy's label vector): lane l
    // is p[l] as a float, `ignored` where p[l] == ignore or l >= w, `unusable`
    // where p[l] is outside [0, n). The comparisons are made in int64; a
    // label in range is below 2^24 (the column kernels' limit on n), so its
    // low 32 bits are its value, converted exactly.
    static reg label_lanes(const std::int64_t* p, std::size_t w, std::int64_t ignore, std::size_t n,
                           T ignored, T unusable) {
        const __m256i lane = _mm256_set_epi64x(3, 2, 1, 0), ig = _mm256_set1_epi64x(ignore),
                      cls = _mm256_set1_epi64x(static_cast<long long>(n));
        const long long wl = static_cast<long long>(w < 8 ? w : 8);
        const __m256i in0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(wl), lane),
                      in1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(wl - 4), lane);
        const auto half = [&](const std::int64_t* q, __m256i in, __m256i& skip, __m256i& bad) {
            const __m256i y = _mm256_maskload_epi64(reinterpret_cast<const long long*>(q), in);
            skip = _mm256_or_si256(_mm256_cmpeq_epi64(y, ig),
                                   _mm256_xor_si256(in, _mm256_set1_epi64x(-1)));
            // in range: 0 <= y < n
            const __m256i ok = _mm256_andnot_si256(_mm256_cmpgt_epi64(_mm256_setzero_si256(), y),
                                                   _mm256_cmpgt_epi64(cls, y));
            bad = _mm256_andnot_si256(_mm256_or_si256(skip, ok), _mm256_set1_epi64x(-1));
            return y;
        };
        __m256i s0, b0, s1, b1;
        const __m256i y0 = half(p, in0, s0, b0), y1 = half(p + 4, in1, s1, b1);
        // the low 32 bits of each 64-bit lane, lanes 0-3 from the first half, 4-7 from the second
        const __m256i low = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        const auto narrow = [&](__m256i a, __m256i b) {
            return _mm256_blend_epi32(_mm256_permutevar8x32_epi32(a, low),
                                      _mm256_permutevar8x32_epi32(b, low), 0xf0);
        };
        reg v = _mm256_cvtepi32_ps(narrow(y0, y1));
        v = _mm256_blendv_ps(v, set1(unusable), _mm256_castsi256_ps(narrow(b0, b1)));
        return _mm256_blendv_ps(v, set1(ignored), _mm256_castsi256_ps(narrow(s0, s1)));
    }
    // out[j] lane i = in[i] lane j for i, j < 8: 24 shuffles, transpose's in
    // registers. (transpose keeps its own copy, its loads and stores between
    // the shuffles: written as loads, transpose8 and stores, the tiles of 10
    // to 64 classes took 1.11x to 1.17x the instructions.)
    static void transpose8(const reg* in, reg* out) {
        reg u[8];  // u[4q + j]: lane k holds element 4k + j of rows 4q .. 4q + 3
        transpose_halves(in[0], in[1], in[2], in[3], u);
        transpose_halves(in[4], in[5], in[6], in[7], u + 4);
        for (int j = 0; j < 4; ++j) {  // column 4k + j: lane k of u[j], u[4 + j]
            out[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
            out[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
        }
    }
    // dst[j * ds + i] = src[i * ss + j] for i, j < 8: 8 loads, 24 shuffles, 8 stores
    static void transpose(const T* src, std::ptrdiff_t ss, T* dst, std::ptrdiff_t ds) {
        reg u[8];  // u[4q + j]: lane k holds element 4k + j of rows 4q .. 4q + 3
        for (int q = 0; q < 2; ++q) {
            const T* r = src + 4 * q * ss;
            const reg r0 = load(r), r1 = load(r + ss), r2 = load(r + 2 * ss), r3 = load(r + 3 * ss);
            const reg t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            const reg t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            u[4 * q + 0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
            u[4 * q + 1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
            u[4 * q + 2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
            u[4 * q + 3] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
        }
        for (int j = 0; j < 4; ++j) {  // column 4k + j: lane k of u[j], u[4 + j]
            store(dst + j * ds, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
            store(dst + (4 + j) * ds, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
        }
    }
    // The short transposes (common_ops.hpp, ShortTransposeTables), n < 8:
    // rows[k] holds elements 8k .. 8k + 7 of 8 rows of n laid end to end;
    // column_of gives lane l = element j of row l, block_of the inverse. n
    // = 2 and 4 by in-lane shuffles (a column of n = 2 takes two, of n = 4
    // three, counting those it shares with the other columns); odd n by n - 1
    // blends and one permute (block_of: the n permutes shared by its calls).
    static constexpr ShortTransposeTables<8, std::int32_t> kShort{};
    static __m256i lanes(const std::int32_t* p) {
        return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
    }
    // The 64-bit quarters (0, 2, 1, 3): an involution.
    static reg swap_middle(reg v) {
        return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xd8));
    }
    // The 4 x 4 transposes of the 128-bit halves of a, b, c, d: out[j] holds
    // element j of each half's four vectors.
    static void transpose_halves(reg a, reg b, reg c, reg d, reg* out) {
        const reg t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
        const reg t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
        out[0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
        out[1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        out[2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
        out[3] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    }
    static reg column_of(const reg* rows, std::size_t n, std::size_t j) {
        if (n == 2) {  // rows 0, 1, 4, 5 | 2, 3, 6, 7, then the quarters in order
            const reg v = j == 0 ? _mm256_shuffle_ps(rows[0], rows[1], _MM_SHUFFLE(2, 0, 2, 0))
                                 : _mm256_shuffle_ps(rows[0], rows[1], _MM_SHUFFLE(3, 1, 3, 1));
            return swap_middle(v);
        }
        if (n == 4) {  // halves holding rows (0, 4), (1, 5), (2, 6), (3, 7), transposed
            reg c[4];
            transpose_halves(_mm256_permute2f128_ps(rows[0], rows[2], 0x20),
                             _mm256_permute2f128_ps(rows[0], rows[2], 0x31),
                             _mm256_permute2f128_ps(rows[1], rows[3], 0x20),
                             _mm256_permute2f128_ps(rows[1], rows[3], 0x31), c);
            return c[j];
        }
        if (n % 2 == 1) {  // the column's lanes at distinct positions: blended, then one permute
            const __m256i col = _mm256_set1_epi32(static_cast<int>(j));
            reg u = rows[0];
            for (std::size_t k = 1; k < n; ++k)
                u = _mm256_blendv_ps(
                    u, rows[k],
                    _mm256_castsi256_ps(_mm256_cmpeq_epi32(lanes(kShort.row_src[n][k]), col)));
            return _mm256_permutevar8x32_ps(u, lanes(kShort.col_lane[n][j]));
        }
        const __m256i idx = lanes(kShort.col_lane[n][j]), src = lanes(kShort.col_src[n][j]);
        reg acc = _mm256_permutevar8x32_ps(rows[0], idx);
        for (std::size_t k = 1; k < n; ++k) {
            const __m256i from_k = _mm256_cmpeq_epi32(src, _mm256_set1_epi32(static_cast<int>(k)));
            acc = _mm256_blendv_ps(acc, _mm256_permutevar8x32_ps(rows[k], idx),
                                   _mm256_castsi256_ps(from_k));
        }
        return acc;
    }
    static reg block_of(const reg* cols, std::size_t n, std::size_t k) {
        if (n == 2) {
            const reg a = swap_middle(cols[0]), b = swap_middle(cols[1]);
            return k == 0 ? _mm256_unpacklo_ps(a, b) : _mm256_unpackhi_ps(a, b);
        }
        if (n == 4) {  // halves holding rows (0, 4), (1, 5), (2, 6), (3, 7), then paired
            reg h[4];
            transpose_halves(cols[0], cols[1], cols[2], cols[3], h);
            const reg a = k % 2 == 0 ? h[0] : h[2], b = k % 2 == 0 ? h[1] : h[3];
            return k < 2 ? _mm256_permute2f128_ps(a, b, 0x20) : _mm256_permute2f128_ps(a, b, 0x31);
        }
        if (n % 2 == 1) {  // each column's lanes permuted to their positions, blended
            const __m256i src = lanes(kShort.row_src[n][k]);
            reg acc = _mm256_permutevar8x32_ps(cols[0], lanes(kShort.col_at[n][0]));
            for (std::size_t j = 1; j < n; ++j)
                acc = _mm256_blendv_ps(
                    acc, _mm256_permutevar8x32_ps(cols[j], lanes(kShort.col_at[n][j])),
                    _mm256_castsi256_ps(
                        _mm256_cmpeq_epi32(src, _mm256_set1_epi32(static_cast<int>(j)))));
            return acc;
        }
        const __m256i idx = lanes(kShort.row_lane[n][k]), src = lanes(kShort.row_src[n][k]);
        reg acc = _mm256_permutevar8x32_ps(cols[0], idx);
        for (std::size_t j = 1; j < n; ++j) {
            const __m256i from_j = _mm256_cmpeq_epi32(src, _mm256_set1_epi32(static_cast<int>(j)));
            acc = _mm256_blendv_ps(acc, _mm256_permutevar8x32_ps(cols[j], idx),
                                   _mm256_castsi256_ps(from_j));
        }
        return acc;
    }
    // Every column (block) of a group at once, n a compile-time constant (the
    // register tiles): each shuffle and permute the columns share is done
    // once, blends take immediates instead of masks built in registers, and n
    // may be 8 (the 8 x 8 transpose). (column_of's loops with n and j known
    // stayed rolled in GCC's code, rebuilding every mask and permute per
    // vector: 14.3 instructions an element for softmax of 7 classes.)
    static constexpr std::size_t kConstTransposeMax = 8;
    // ... and rows of 9 to 16 by 8 x 8 blocks (register_tiles.hpp)
    static constexpr std::size_t kWideRegisterTileMax = 16;
    template <std::size_t n>
    static void columns_of(const reg* rows, Const<n>, reg* cols) {
        static_assert(n >= 1 && n <= 8);
        if constexpr (n == 1) {
            cols[0] = rows[0];
        } else if constexpr (n == 8) {
            transpose8(rows, cols);
        } else if constexpr (n == 4) {
            transpose_halves(_mm256_permute2f128_ps(rows[0], rows[2], 0x20),
                             _mm256_permute2f128_ps(rows[0], rows[2], 0x31),
                             _mm256_permute2f128_ps(rows[1], rows[3], 0x20),
                             _mm256_permute2f128_ps(rows[1], rows[3], 0x31), cols);
        } else if constexpr (n == 2) {
            cols[0] = column_of(rows, 2, 0);
            cols[1] = column_of(rows, 2, 1);
        } else if constexpr (n % 2 == 1) {  // blended by position, then one permute
            for_constants<n>([&](auto j) {
                reg u = rows[0];
                for_constants<n - 1>([&](auto i) {
                    constexpr std::size_t k = decltype(i)::value + 1;
                    u = _mm256_blend_ps(
                        u, rows[k], static_cast<int>(kShort.row_mask[n][k][decltype(j)::value]));
                });
                cols[j] = _mm256_permutevar8x32_ps(u, lanes(kShort.col_lane[n][j]));
            });
        } else {  // (6) each vector's share permuted, blended
            for_constants<n>(
                [&](auto j) { cols[j] = by_lanes<n, true, decltype(j)::value>(rows); });
        }
    }
    template <std::size_t n>
    static void blocks_of(const reg* cols, Const<n>, reg* rows) {
        static_assert(n >= 1 && n <= 8);
        if constexpr (n == 1) {
            rows[0] = cols[0];
        } else if constexpr (n == 8) {
            transpose8(cols, rows);
        } else if constexpr (n == 4) {
            reg h[4];
            transpose_halves(cols[0], cols[1], cols[2], cols[3], h);
            rows[0] = _mm256_permute2f128_ps(h[0], h[1], 0x20);
            rows[1] = _mm256_permute2f128_ps(h[2], h[3], 0x20);
            rows[2] = _mm256_permute2f128_ps(h[0], h[1], 0x31);
            rows[3] = _mm256_permute2f128_ps(h[2], h[3], 0x31);
        } else if constexpr (n == 2) {
            const reg a = swap_middle(cols[0]), b = swap_middle(cols[1]);
            rows[0] = _mm256_unpacklo_ps(a, b);
            rows[1] = _mm256_unpackhi_ps(a, b);
        } else if constexpr (n % 2 == 1) {  // each column permuted to its positions once
            reg at[n];
            for (std::size_t j = 0; j < n; ++j)
                at[j] = _mm256_permutevar8x32_ps(cols[j], lanes(kShort.col_at[n][j]));
            for_constants<n>([&](auto k) {
                reg acc = at[0];
                for_constants<n - 1>([&](auto i) {
                    constexpr std::size_t j = decltype(i)::value + 1;
                    acc = _mm256_blend_ps(
                        acc, at[j], static_cast<int>(kShort.row_mask[n][decltype(k)::value][j]));
                });
                rows[k] = acc;
            });
        } else {
            for_constants<n>(
                [&](auto k) { rows[k] = by_lanes<n, false, decltype(k)::value>(cols); });
        }
    }
    // For even n: column `at` of the row vectors (kColumn) or block `at` of
    // the columns: every vector permuted by the same lanes, then blended.
    template <std::size_t n, bool kColumn, std::size_t at>
    static reg by_lanes(const reg* v) {
        const __m256i idx = lanes(kColumn ? kShort.col_lane[n][at] : kShort.row_lane[n][at]);
        reg acc = _mm256_permutevar8x32_ps(v[0], idx);
        for_constants<n - 1>([&](auto i) {
            constexpr std::size_t k = decltype(i)::value + 1;
            constexpr std::uint32_t mask =
                kColumn ? kShort.col_mask[n][at][k] : kShort.row_mask[n][at][k];
            acc = _mm256_blend_ps(acc, _mm256_permutevar8x32_ps(v[k], idx), static_cast<int>(mask));
        });
        return acc;
    }
    static T hmax(reg v) {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        return _mm_cvtss_f32(m);
    }

    struct Wide {
        __m256d lo, hi;
    };
    static Wide wide_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
    static void wide_add(Wide& w, reg v) {
        w.lo = _mm256_add_pd(w.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        w.hi = _mm256_add_pd(w.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    static double wide_hsum(const Wide& w) {
        const __m256d s = _mm256_add_pd(w.lo, w.hi);
        __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
        t = _mm_add_sd(t, _mm_unpackhi_pd(t, t));
        return _mm_cvtsd_f64(t);
    }
    static void wide_store(const Wide& w, double* lanes) {
        _mm256_storeu_pd(lanes, w.lo);
        _mm256_storeu_pd(lanes + 4, w.hi);
    }
    static reg wide_round(const Wide& w) {
        return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(w.lo)),
                                    _mm256_cvtpd_ps(w.hi), 1);
    }
    static void wide_reciprocal(const Wide& w, reg& hi, reg& lo) {
        const __m256d one = _mm256_set1_pd(1.0);
        const __m256d r0 = _mm256_div_pd(one, w.lo), r1 = _mm256_div_pd(one, w.hi);
        const __m128 h0 = _mm256_cvtpd_ps(r0), h1 = _mm256_cvtpd_ps(r1);
        const __m128 l0 = _mm256_cvtpd_ps(_mm256_sub_pd(r0, _mm256_cvtps_pd(h0)));
        const __m128 l1 = _mm256_cvtpd_ps(_mm256_sub_pd(r1, _mm256_cvtps_pd(h1)));
        hi = _mm256_insertf128_ps(_mm256_castps128_ps256(h0), h1, 1);
        lo = _mm256_insertf128_ps(_mm256_castps128_ps256(l0), l1, 1);
    }
};

struct F64 : ScaleOrZero<F64>, NeumaierLanes<F64> {
    using T = double;     // compute type (registers, scalars, scratch)
    using S = double;     // storage type (the caller's arrays)
    using Compute = F64;  // the wrapper for arrays of T
    using reg = __m256d;
    using mask = __m256d;
    static constexpr std::size_t N = 4;
    // an underflowing multiply costs a microcode assist (see vexp)
    static constexpr bool kSlowSubnormals = true;

    static reg load(const T* p) { return _mm256_loadu_pd(p); }
    static reg load_partial(const T* p, std::size_t n, T fill) {
        const __m256i m = mask64(n);
        return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m),
                                _mm256_castsi256_pd(m));
    }
    static void store(T* p, reg v) { _mm256_storeu_pd(p, v); }
    static void store_partial(T* p, std::size_t n, reg v) {
        if (n >= N)
            store(p, v);
        else
            store_bytes(p, n * sizeof(T), _mm256_castpd_si256(v));
    }
    static void stream(T* p, reg v) { _mm256_stream_pd(p, v); }
    static void stream_fence() { _mm_sfence(); }
    static reg set1(T v) { return _mm256_set1_pd(v); }
    static reg zero() { return _mm256_setzero_pd(); }
    static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
    static reg sub(reg a, reg b) { return _mm256_sub_pd(a, b); }
    static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
    static reg div(reg a, reg b) { return _mm256_div_pd(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
    static reg fnmadd(reg a, reg b, reg c) { return _mm256_fnmadd_pd(a, b, c); }
    static reg max(reg a, reg b) { return _mm256_max_pd(a, b); }
    static reg abs(reg a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
    static reg min(reg a, reg b) { return _mm256_min_pd(a, b); }
    // p * 2^n for integral n in [-2044, 2046].
    static reg scale_pow2(reg p, reg n) {
        const __m128i ni = _mm256_cvtpd_epi32(n);
        const __m128i n1 = _mm_srai_epi32(ni, 1);
        const __m128i n2 = _mm_sub_epi32(ni, n1);
        const __m256i bias = _mm256_set1_epi64x(1023);
        const reg s1 = _mm256_castsi256_pd(
            _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n1), bias), 52));
        const reg s2 = _mm256_castsi256_pd(
            _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n2), bias), 52));
        return _mm256_mul_pd(_mm256_mul_pd(p, s1), s2);
    }
    static void frexp12(reg x, reg& m, reg& e) {
        const reg sub = _mm256_cmp_pd(x, _mm256_set1_pd(2.2250738585072014e-308), _CMP_LT_OQ);
        x = _mm256_blendv_pd(x, _mm256_mul_pd(x, _mm256_set1_pd(4503599627370496.0)), sub);  // 2^52
        const __m256i bits = _mm256_castpd_si256(x);
        const __m256i ebits =
            _mm256_and_si256(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(0x7ff));
        // int64 -> double for small values: OR into the mantissa of 2^52, subtract 2^52
        const reg magic = _mm256_set1_pd(4503599627370496.0);
        e = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(ebits, _mm256_castpd_si256(magic))),
                          magic);
        e = _mm256_sub_pd(e, _mm256_set1_pd(1023.0));
        e = _mm256_sub_pd(e, _mm256_and_pd(sub, _mm256_set1_pd(52.0)));
        m = _mm256_castsi256_pd(
            _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000fffffffffffffLL)),
                            _mm256_set1_epi64x(0x3ff0000000000000LL)));
    }
    static mask lt(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
    static mask eq(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
    static mask ge(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
    static mask not_finite(reg a) {
        return _mm256_cmp_pd(_mm256_sub_pd(a, a), _mm256_setzero_pd(), _CMP_NEQ_UQ);
    }
    static mask mask_or(mask a, mask b) { return _mm256_or_pd(a, b); }
    static mask bytes_nonzero(const unsigned char* m) {  // (4 bytes)
        std::uint32_t v;
        std::memcpy(&v, m, sizeof v);
        return lanes_of_bytes(v);
    }
    static mask bytes_nonzero_partial(const unsigned char* m, std::size_t n) {  // (n < 4)
        return lanes_of_bytes(static_cast<std::uint32_t>(low_bytes(m, n)));
    }
    static mask lanes_of_bytes(std::uint32_t v) {  // lane k: byte k of v
        const __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(v)));
        return _mm256_castsi256_pd(_mm256_cmpgt_epi64(w, _mm256_setzero_si256()));
    }
    static reg select(mask m, reg a, reg b) { return _mm256_blendv_pd(b, a, m); }
    // dst[j * ds + i] = src[i * ss + j] for i, j < 4: 4 loads, 8 shuffles, 4 stores
    static void transpose(const T* src, std::ptrdiff_t ss, T* dst, std::ptrdiff_t ds) {
        const reg r0 = load(src), r1 = load(src + ss), r2 = load(src + 2 * ss),
                  r3 = load(src + 3 * ss);
        // lane k of u[2p + j] holds element 2k + j of rows 2p, 2p + 1
        const reg u0 = _mm256_unpacklo_pd(r0, r1), u1 = _mm256_unpackhi_pd(r0, r1);
        const reg u2 = _mm256_unpacklo_pd(r2, r3), u3 = _mm256_unpackhi_pd(r2, r3);
        store(dst, _mm256_permute2f128_pd(u0, u2, 0x20));
        store(dst + ds, _mm256_permute2f128_pd(u1, u3, 0x20));
        store(dst + 2 * ds, _mm256_permute2f128_pd(u0, u2, 0x31));
        store(dst + 3 * ds, _mm256_permute2f128_pd(u1, u3, 0x31));
    }
    static T hmax(reg v) {
        __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
        m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
        return _mm_cvtsd_f64(m);
    }

    // Double sums: Neumaier's compensated summation per lane (common_ops.hpp).
    struct Wide {
        reg sum, comp;
    };
};

// Half-precision storage (Converting, common_ops.hpp): 8 elements of 16 bits
// per float vector; partial loads and stores go through the stack.

// bfloat16: the top half of a float; narrowing rounds to nearest even.
struct Bf16Cvt {
    static __m256 widen(__m128i h) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    static __m128i narrow(__m256 v) {
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
        const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), nan);
        r = _mm256_srli_epi32(r, 16);  // <= 0xffff: packus keeps it
        return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    }
    static __m256 load(const bfloat16* p) {
        return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static void store(bfloat16* p, __m256 v) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow(v));
    }
    static void stream(bfloat16* p, __m256 v) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(p), narrow(v));
    }
};

// float16: F16C's vcvtph2ps / vcvtps2ph (round to nearest even).
struct F16Cvt {
    static __m256 load(const float16* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static void store(float16* p, __m256 v) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                         _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    static void stream(float16* p, __m256 v) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(p),
                         _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
};

struct BF16 : Converting<F32, bfloat16, Bf16Cvt> {};
struct F16 : Converting<F32, float16, F16Cvt> {};

}  // namespace fastsoftmax::avx2
