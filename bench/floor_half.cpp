// The floor for issue 13's "half precision at <= 0.6x the float32 time": the
// simplest kernels at the library's accuracy, outside the library (contiguous
// rows, AVX-512, rows a multiple of 64 elements), timed against fastsoftmax by
// bench/floor_half.py, which compiles this file. Each output rounded once from
// float32 registers; exp: the library's own vexp_sub (the exact x - max,
// degree-6 polynomial), the sums: pairs of float vectors into double, 1/sum
// as two floats. bfloat16 is narrowed by integer round-to-nearest-even or by
// AVX512-BF16's vcvtneps2bf16 (which flushes subnormals: such vectors, rare,
// go the integer way). Results: bench/RESULTS.md, issue 13 (2026-12-06).
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "arch/avx512/vec.hpp"
#include "generic/vec_math.hpp"

using namespace fastsoftmax::avx512;
using V = F32;

// The maximum of a row (n a multiple of 64) read by ld(i): 16 floats from element i.
template <class Load>
static inline float row_max(Load ld, std::size_t n) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    for (std::size_t i = 0; i < n; i += 64) {
        m0 = _mm512_max_ps(m0, ld(i));
        m1 = _mm512_max_ps(m1, ld(i + 16));
        m2 = _mm512_max_ps(m2, ld(i + 32));
        m3 = _mm512_max_ps(m3, ld(i + 48));
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}
static inline __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline __m512 ld_bf(const uint16_t* p) {
    return widen(_mm256_loadu_si256((const __m256i*)p));
}
static inline void add_pair(__m512d& a, __m512d& b, __m512 e0, __m512 e1) {
    const __m512 s = _mm512_add_ps(e0, e1);
    a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
    b = _mm512_add_pd(
        b, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1))));
}
// exps of a row (n a multiple of 32) into e, their sum
template <class Load>
static inline double exp_row(Load ld, float* e, std::size_t n, float m) {
    const __m512 vm = _mm512_set1_ps(m), vlo = _mm512_set1_ps(exp_floor(m));
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (std::size_t i = 0; i < n; i += 64) {
        const __m512 e0 = vexp_sub<V>(ld(i), vm, vlo), e1 = vexp_sub<V>(ld(i + 16), vm, vlo);
        const __m512 e2 = vexp_sub<V>(ld(i + 32), vm, vlo), e3 = vexp_sub<V>(ld(i + 48), vm, vlo);
        _mm512_storeu_ps(e + i, e0);
        _mm512_storeu_ps(e + i + 16, e1);
        _mm512_storeu_ps(e + i + 32, e2);
        _mm512_storeu_ps(e + i + 48, e3);
        add_pair(a0, a1, e0, e1);
        add_pair(a2, a3, e2, e3);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
}
struct Inv {
    __m512 hi, lo;
};
static inline Inv inv_of(double s) {
    const double f = 1.0 / s;
    const float h = (float)f;
    return {_mm512_set1_ps(h), _mm512_set1_ps((float)(f - h))};
}
static inline __m512 scale(Inv v, __m512 e) {
    return _mm512_fmadd_ps(e, v.hi, _mm512_mul_ps(e, v.lo));
}

extern "C" void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n, int stream) {
    // (n a multiple of 64)
    stream = stream && ((uintptr_t)y % 64 == 0);
    for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
        const auto ld = [&](std::size_t i) { return _mm512_loadu_ps(x + i); };
        const float m = row_max(ld, n);
        float* e = y;
        static thread_local float* scratch = nullptr;
        if (stream) {
            if (!scratch) scratch = (float*)aligned_alloc(64, 1 << 20);
            e = scratch;
        }
        const double s = exp_row(ld, e, n, m);
        const Inv v = inv_of(s);
        if (stream) {
            for (std::size_t i = 0; i < n; i += 16)
                _mm512_stream_ps(y + i, scale(v, _mm512_load_ps(e + i)));
        } else {
            for (std::size_t i = 0; i < n; i += 16)
                _mm512_storeu_ps(y + i, scale(v, _mm512_loadu_ps(e + i)));
        }
    }
    if (stream) _mm_sfence();
}

static inline __m256i narrow_int(__m512 v) {  // round to nearest even (no NaN here)
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
__attribute__((target("avx512bf16"))) static inline __m256i narrow_bf16(__m512 v) {
    // vcvtneps2bf16 flushes subnormals: those vectors (rare) by integers
    if (__builtin_expect(_mm512_fpclass_ps_mask(v, 0x20) != 0, 0)) return narrow_int(v);
    return (__m256i)_mm512_cvtneps_pbh(v);
}
template <bool kBf16Insn>
__attribute__((target("avx512bf16"))) static void softmax_bf16_t(const uint16_t* x, uint16_t* y,
                                                                 std::size_t rows, std::size_t n,
                                                                 int stream) {
    stream = stream && ((uintptr_t)y % 32 == 0);
    static thread_local float* e = nullptr;
    if (!e) e = (float*)aligned_alloc(64, 1 << 20);
    for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
        const auto ld = [&](std::size_t i) { return ld_bf(x + i); };
        const float m = row_max(ld, n);
        const double s = exp_row(ld, e, n, m);
        const Inv v = inv_of(s);
        for (std::size_t i = 0; i < n; i += 16) {
            const __m512 o = scale(v, _mm512_load_ps(e + i));
            const __m256i h = kBf16Insn ? narrow_bf16(o) : narrow_int(o);
            if (stream)
                _mm256_stream_si256((__m256i*)(y + i), h);
            else
                _mm256_storeu_si256((__m256i*)(y + i), h);
        }
    }
    if (stream) _mm_sfence();
}
extern "C" void softmax_bf16_int(const uint16_t* x, uint16_t* y, std::size_t rows, std::size_t n,
                                 int stream) {
    softmax_bf16_t<false>(x, y, rows, n, stream);
}
extern "C" void softmax_bf16_insn(const uint16_t* x, uint16_t* y, std::size_t rows, std::size_t n,
                                  int stream) {
    softmax_bf16_t<true>(x, y, rows, n, stream);
}

// The cross-entropy's mean loss over rows with integer labels and its gradient
// written in place over x (bfloat16): per row the maximum, exp(x - max) into a
// float scratch row with its double sum, lse = max + log(sum); the gradient
// (e / sum - [j == label]) / rows narrowed into x. Returns the mean loss.
template <bool kBf16Insn>
__attribute__((target("avx512bf16"))) static double ce_bf16_t(uint16_t* x, const int64_t* labels,
                                                              std::size_t rows, std::size_t n) {
    static thread_local float* e = nullptr;
    if (!e) e = (float*)aligned_alloc(64, 1 << 20);
    double total = 0;
    const float g = 1.0f / (float)rows;
    for (std::size_t r = 0; r < rows; ++r, x += n) {
        const auto ld = [&](std::size_t i) { return ld_bf(x + i); };
        const float m = row_max(ld, n);
        const double s = exp_row(ld, e, n, m);
        const int64_t c = labels[r];
        uint32_t bits = (uint32_t)x[c] << 16;
        float xc;
        __builtin_memcpy(&xc, &bits, 4);
        total += (double)m + std::log(s) - (double)xc;
        const Inv v = inv_of(s);
        const Inv w = {_mm512_mul_ps(v.hi, _mm512_set1_ps(g)),
                       _mm512_mul_ps(v.lo, _mm512_set1_ps(g))};
        e[c] -= (float)s;  // e/s - 1 at the label, as (e - s) / s
        for (std::size_t i = 0; i < n; i += 16) {
            const __m512 o = scale(w, _mm512_load_ps(e + i));
            const __m256i h = kBf16Insn ? narrow_bf16(o) : narrow_int(o);
            _mm256_storeu_si256((__m256i*)(x + i), h);
        }
    }
    return total / (double)rows;
}
extern "C" double ce_bf16_insn(uint16_t* x, const int64_t* labels, std::size_t rows,
                               std::size_t n) {
    return ce_bf16_t<true>(x, labels, rows, n);
}
extern "C" double ce_f32(float* x, const int64_t* labels, std::size_t rows, std::size_t n) {
    double total = 0;
    const float g = 1.0f / (float)rows;
    for (std::size_t r = 0; r < rows; ++r, x += n) {
        const auto ld = [&](std::size_t i) { return _mm512_loadu_ps(x + i); };
        const float m = row_max(ld, n);
        const float xc = x[labels[r]];
        const double s = exp_row(ld, x, n, m);
        total += (double)m + std::log(s) - (double)xc;
        const Inv v = inv_of(s);
        const Inv w = {_mm512_mul_ps(v.hi, _mm512_set1_ps(g)),
                       _mm512_mul_ps(v.lo, _mm512_set1_ps(g))};
        x[labels[r]] -= (float)s;
        for (std::size_t i = 0; i < n; i += 16)
            _mm512_storeu_ps(x + i, scale(w, _mm512_loadu_ps(x + i)));
    }
    return total / (double)rows;
}
