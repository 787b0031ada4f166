// ISA-free kernel interface: plain pointers, lengths and strides (in elements).
//
// Pointers must be aligned to the element size (the bindings check it).
// Every SIMD target fills one KernelTable with the same generic algorithms
// (cpp/src/generic/) compiled for its own instruction set. The driver
// (cpp/src/driver.cpp) walks an N-d array and calls these on rows (the
// reduction axis is contiguous) or on columns (the reduction axis is strided
// and another axis is contiguous).
#pragma once

#include <cstddef>

#include "fastsoftmax/cross_entropy.hpp"

namespace fastsoftmax {

using std::ptrdiff_t;
using std::size_t;

// Arrays of at least this many bytes come from and go to memory (the kernels
// then write with streaming stores, or do not pipeline their passes).
constexpr std::size_t kStreamBytes = std::size_t(8) << 20;

// A row's maximum and sum(exp(x - max)), from one read pass.
struct MaxSum {
    double max;    // the row maximum (exact: a value of the row)
    double sum;    // sum(exp(x - max)), >= 1 for a finite max
    bool special;  // the maximum is not finite or a NaN was seen: use special_rows.hpp
};

// The segment kernels keep one `ref` per block of at least this many elements.
constexpr std::size_t kMinSegmentBlock = 64;

template <class T>
struct Kernels {
    // rows: `rows` rows of length n; row r starts at x + r*xs (resp. y + r*ys);
    // elements of a row are contiguous. from_memory: the whole array (of
    // which these rows may be a part) is at least kStreamBytes.
    void (*softmax_rows)(const T* x, ptrdiff_t xs, T* y, ptrdiff_t ys, size_t rows, size_t n,
                         bool from_memory);
    void (*log_softmax_rows)(const T* x, ptrdiff_t xs, T* y, ptrdiff_t ys, size_t rows, size_t n,
                             bool from_memory);
    // out[r * os] = logsumexp(row r)
    void (*logsumexp_rows)(const T* x, ptrdiff_t xs, T* out, ptrdiff_t os, size_t rows, size_t n);
    void (*softmax_backward_rows)(const T* g, ptrdiff_t gs, const T* y, ptrdiff_t ys, T* o,
                                  ptrdiff_t os, size_t rows, size_t n);
    void (*log_softmax_backward_rows)(const T* g, ptrdiff_t gs, const T* y, ptrdiff_t ys, T* o,
                                      ptrdiff_t os, size_t rows, size_t n);

    // cols: `inner` independent reductions of length n, contiguous across
    // `inner`; step i of the reduction is at x + i*xs.
    void (*softmax_cols)(const T* x, ptrdiff_t xs, T* y, ptrdiff_t ys, size_t n, size_t inner);
    void (*log_softmax_cols)(const T* x, ptrdiff_t xs, T* y, ptrdiff_t ys, size_t n, size_t inner);
    // out[0 .. inner) is contiguous
    void (*logsumexp_cols)(const T* x, ptrdiff_t xs, T* out, size_t n, size_t inner);
    void (*softmax_backward_cols)(const T* g, ptrdiff_t gs, const T* y, ptrdiff_t ys, T* o,
                                  ptrdiff_t os, size_t n, size_t inner);
    void (*log_softmax_backward_cols)(const T* g, ptrdiff_t gs, const T* y, ptrdiff_t ys, T* o,
                                      ptrdiff_t os, size_t n, size_t inner);

    // Segments of a row split across threads (driver.cpp): the segment's
    // (max, sum) (a segment of -inf: (-inf, 0)); with y and refs (one per
    // kMinSegmentBlock elements at most), also softmax's exp(x - ref) per block.
    MaxSum (*segment_max_sum)(const T* x, size_t n, T* y, T* refs);
    // then, given the whole row's (max, sum): softmax's scaling of those y ...
    void (*softmax_segment_scale)(T* y, size_t n, const T* refs, double max, double sum);
    // ... or log_softmax's y = (x - max) - log(sum)
    void (*log_softmax_segment)(const T* x, T* y, size_t n, double max, double sum,
                                bool from_memory);

    // cross-entropy over a batch of contiguous rows (see cross_entropy.hpp);
    // labels in range, n >= 1
    CeSums (*cross_entropy_rows)(const CeRows<T>& rows, const CeOptions<T>& options);
    // ... over columns (no soft-capping, no saved lse; n < 2^24)
    CeSums (*cross_entropy_cols)(const CeCols<T>& cols, const CeOptions<T>& options);

    // Element-wise vector math on contiguous arrays (exposed for the ULP tests).
    void (*exp)(const T* x, T* y, size_t n);
    void (*log)(const T* x, T* y, size_t n);
    void (*tanh)(const T* x, T* y, size_t n);
};

struct KernelTable {
    const char* name;
    Kernels<float> f32;
    Kernels<double> f64;
};

// The table's kernels for element type T.
template <class T>
const Kernels<T>& kernels_of(const KernelTable& t) {
    if constexpr (sizeof(T) == sizeof(float))
        return t.f32;
    else
        return t.f64;
}

// One per compiled target; cpp/src/arch/instantiate.cpp, compiled once per target.
const KernelTable& baseline_kernels();
#if defined(FASTSOFTMAX_HAVE_AVX2)
const KernelTable& avx2_kernels();
#endif
#if defined(FASTSOFTMAX_HAVE_AVX512)
const KernelTable& avx512_kernels();
#endif
#if defined(FASTSOFTMAX_HAVE_NEON)
const KernelTable& neon_kernels();
#endif

}  // namespace fastsoftmax
