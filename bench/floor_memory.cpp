// The floor for issue 17's arrays from memory (parts 2 and 3): the fastest
// structures written for float32 softmax out= and the cross-entropy with its
// gradient in place, at the library's accuracy, outside the library
// (contiguous rows, AVX-512, row lengths a multiple of 16), timed against
// fastsoftmax and np.copyto by bench/floor_memory.py, which compiles this
// file. The arithmetic is the library's: exp of the exact x - ref (vexp_sub),
// pairs of float vectors summed in double, one two-float factor per output.
//
// Each row goes block by block (kB elements, which stay in L1 between the
// block's maximum and its exponentials): one read of x from memory. A block's
// exponentials are taken against the row's running maximum after the block,
// ref_b, and its factor is exp(ref_b - max) / sum formed in double and split
// into two floats, so each output is rounded as exp(x - max) / sum is.
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "arch/avx512/vec.hpp"
#include "generic/vec_math.hpp"

using namespace fastsoftmax::avx512;
using V = F32;

namespace {

constexpr std::size_t kB = 2048;  // elements per block: 8 KiB

float* scratch_rows(std::size_t n) {  // two rows, kept between calls
    static thread_local float* p = nullptr;
    static thread_local std::size_t have = 0;
    if (have < 2 * n) {
        std::free(p);
        have = 2 * n + 4096;
        p = static_cast<float*>(std::aligned_alloc(64, have * sizeof(float)));
        for (std::size_t i = 0; i < have; ++i) p[i] = 0;  // (faulted in once)
    }
    return p;
}

inline float block_max(const float* x, std::size_t len) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    std::size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i < len; i += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

inline void add_pair(__m512d& a, __m512d& b, __m512 e0, __m512 e1) {
    const __m512 s = _mm512_add_ps(e0, e1);
    a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
    b = _mm512_add_pd(
        b, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1))));
}

struct Two {
    __m512 hi, lo;
    static Two of(double f) {
        const float h = static_cast<float>(f);
        return {_mm512_set1_ps(h), _mm512_set1_ps(static_cast<float>(f - h))};
    }
    __m512 apply(__m512 e) const { return _mm512_fmadd_ps(e, hi, _mm512_mul_ps(e, lo)); }
};

// Work spread over a row's blocks: `emit(i, len)` called for the part of
// another row that goes with elements [i, i + len) of this one.
struct NoEmit {
    void operator()(std::size_t, std::size_t) const {}
};

// exp(x - ref) of [x, x + len) into e (len a multiple of 32), their double
// sum; emit(j, 32) after each 32 elements (another row's stores, interleaved)
template <class Emit>
inline double exp_block(const float* x, float* e, std::size_t len, float ref, std::size_t at,
                        Emit& emit) {
    const __m512 vm = _mm512_set1_ps(ref), vlo = _mm512_set1_ps(exp_floor(ref));
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    for (std::size_t i = 0; i < len; i += 32) {
        const __m512 e0 = vexp_sub<V>(_mm512_loadu_ps(x + i), vm, vlo);
        const __m512 e1 = vexp_sub<V>(_mm512_loadu_ps(x + i + 16), vm, vlo);
        _mm512_storeu_ps(e + i, e0);
        _mm512_storeu_ps(e + i + 16, e1);
        add_pair(a0, a1, e0, e1);
        emit(at + i, 32);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

// One row's pass: block maxima, the exponentials into e, per block its ref
// and sum; returns the row's (max, sum) and leaves each block's factor in f.
template <class Emit>
inline void row_pass(const float* x, float* e, std::size_t n, double* refs, double* sums,
                     float& max_out, double& sum_out, Emit& emit, std::size_t prefetch) {
    float run = -INFINITY;
    const std::size_t nb = (n + kB - 1) / kB;
    for (std::size_t b = 0; b < nb; ++b) {
        const std::size_t i = b * kB, len = n - i < kB ? n - i : kB;
        if (prefetch)
            for (std::size_t k = 0; k < len; k += 16)
                _mm_prefetch(reinterpret_cast<const char*>(x + i + k + prefetch), _MM_HINT_T0);
        const float bm = block_max(x + i, len);
        if (bm > run) run = bm;
        refs[b] = run;
        sums[b] = exp_block(x + i, e + i, len, run, i, emit);
    }
    double s = 0;
    for (std::size_t b = 0; b < nb; ++b) s += sums[b] * std::exp(refs[b] - run);
    max_out = run;
    sum_out = s;
}

// log_softmax's structure for softmax: a read pass of the row block by block
// (the block's maximum, then the double sum of its exponentials against the
// running maximum, nothing stored; the sums rescaled when the maximum grows),
// then a second pass over the row, now in L2, that takes exp(x - max) again
// and writes it times the two-float 1 / sum: each output rounded as
// exp(x - max) / sum is, with two exponentials per element.
inline void two_pass_row(const float* x, float* y, std::size_t n, std::size_t prefetch,
                         int stream) {
    float run = -INFINITY;
    double sum = 0;
    for (std::size_t i = 0; i < n; i += kB) {
        const std::size_t len = n - i < kB ? n - i : kB;
        if (prefetch)
            for (std::size_t k = 0; k < len; k += 16)
                _mm_prefetch(reinterpret_cast<const char*>(x + i + k + prefetch), _MM_HINT_T0);
        const float bm = block_max(x + i, len);
        if (bm > run) {
            sum *= std::exp(static_cast<double>(run) - static_cast<double>(bm));
            run = bm;
        }
        const __m512 vm = _mm512_set1_ps(run), vlo = _mm512_set1_ps(exp_floor(run));
        __m512d a0 = _mm512_setzero_pd(), a1 = a0;
        for (std::size_t k = 0; k < len; k += 32)
            add_pair(a0, a1, vexp_sub<V>(_mm512_loadu_ps(x + i + k), vm, vlo),
                     vexp_sub<V>(_mm512_loadu_ps(x + i + k + 16), vm, vlo));
        sum += _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    }
    const Two f = Two::of(1.0 / sum);
    const __m512 vm = _mm512_set1_ps(run), vlo = _mm512_set1_ps(exp_floor(run));
    for (std::size_t i = 0; i < n; i += 16) {
        const __m512 v = f.apply(vexp_sub<V>(_mm512_loadu_ps(x + i), vm, vlo));
        if (stream)
            _mm512_stream_ps(y + i, v);
        else
            _mm512_storeu_ps(y + i, v);
    }
}

}  // namespace

// Softmax of rows (n a multiple of 32) of an array from memory:
// mode 0: the row's exponentials into a scratch row, then scaled into y (stream:
//         non-temporal stores);
// mode 1: as 0, but row r-1's scaling is done inside row r's exp loop (two
//         scratch rows taking turns), so the stores overlap the arithmetic;
// mode 2: two passes per row (two_pass_row), the second from L2.
// prefetch: elements ahead (0: none).
extern "C" void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n, int mode,
                            int stream, std::size_t prefetch) {
    float* scr = scratch_rows(n);
    const std::size_t nb = (n + kB - 1) / kB;
    std::vector<double> refs(2 * nb), sums(nb);
    std::vector<Two> f(2 * nb);
    const auto factors = [&](int slot, float m, double s) {
        for (std::size_t b = 0; b < nb; ++b)
            f[slot * nb + b] = Two::of(std::exp(refs[slot * nb + b] - m) / s);
    };
    const auto put = [&](float* dst, __m512 v) {
        if (stream)
            _mm512_stream_ps(dst, v);
        else
            _mm512_storeu_ps(dst, v);
    };
    float m;
    double s;
    if (mode == 2) {
        for (std::size_t r = 0; r < rows; ++r)
            two_pass_row(x + r * n, y + r * n, n, prefetch, stream);
    } else if (mode == 0) {
        NoEmit none;
        for (std::size_t r = 0; r < rows; ++r) {
            const float* xr = x + r * n;
            float* yr = y + r * n;
            row_pass(xr, scr, n, refs.data(), sums.data(), m, s, none, prefetch);
            factors(0, m, s);
            for (std::size_t i = 0; i < n; i += 16)
                put(yr + i, f[i / kB].apply(_mm512_load_ps(scr + i)));
        }
    } else {
        float* prev_y = nullptr;
        const float* prev_e = nullptr;
        int prev_slot = 0;
        for (std::size_t r = 0; r <= rows; ++r) {
            const int slot = static_cast<int>(r & 1);
            const auto emit = [&](std::size_t i, std::size_t len) {
                for (std::size_t k = i; k < i + len; k += 16)
                    put(prev_y + k, f[prev_slot * nb + k / kB].apply(_mm512_load_ps(prev_e + k)));
            };
            if (r == rows) {  // the last row's scaling alone
                for (std::size_t i = 0; i < n; i += 32) emit(i, 32);
                break;
            }
            float* e = scr + slot * n;
            if (prev_y) {
                row_pass(x + r * n, e, n, refs.data() + slot * nb, sums.data(), m, s, emit,
                         prefetch);
            } else {
                NoEmit none;
                row_pass(x + r * n, e, n, refs.data() + slot * nb, sums.data(), m, s, none,
                         prefetch);
            }
            factors(slot, m, s);
            prev_y = y + r * n;
            prev_e = e;
            prev_slot = slot;
        }
    }
    if (stream) _mm_sfence();
}

// The cross-entropy's mean loss over rows with integer labels, its gradient
// (softmax - onehot) / rows written over x: the exponentials go into x itself
// block by block (one read from memory), then the row, now in L1/L2, is scaled
// in place. The label's entry is -(s - e) / s, formed in double. Returns the
// mean loss.
extern "C" double ce_f32(float* x, const std::int64_t* labels, std::size_t rows, std::size_t n,
                         std::size_t prefetch) {
    const std::size_t nb = (n + kB - 1) / kB;
    std::vector<double> refs(nb), sums(nb);
    double total = 0;
    const double g = 1.0 / static_cast<double>(rows);
    NoEmit none;
    for (std::size_t r = 0; r < rows; ++r, x += n) {
        if (prefetch && n * 4 <= 32768)  // (short rows: the next row at the start of this one)
            for (std::size_t k = 0; k < n; k += 16)
                _mm_prefetch(reinterpret_cast<const char*>(x + n + k), _MM_HINT_T0);
        const std::int64_t c = labels[r];
        const float xc = x[c];
        float m;
        double s;
        row_pass(x, x, n, refs.data(), sums.data(), m, s, none, n * 4 > 32768 ? prefetch : 0);
        total += static_cast<double>(m) + std::log(s) - static_cast<double>(xc);
        const double ec = std::exp(static_cast<double>(xc) - m);
        for (std::size_t b = 0; b < nb; ++b) {
            const Two w = Two::of(std::exp(refs[b] - m) / s * g);
            const std::size_t i0 = b * kB, end = n - i0 < kB ? n : i0 + kB;
            for (std::size_t i = i0; i < end; i += 16)
                _mm512_storeu_ps(x + i, w.apply(_mm512_loadu_ps(x + i)));
        }
        x[c] = static_cast<float>(-(s - ec) / s * g);
    }
    return total * g;
}
