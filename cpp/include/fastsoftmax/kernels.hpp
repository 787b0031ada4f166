// ISA-free kernel interface: plain pointers, lengths and strides (in elements).
//
// Pointers must be aligned to the element size (the bindings check it).
// Every SIMD target fills one KernelTable with the same generic algorithms
// (cpp/src/generic/) compiled for its own instruction set. The driver
// (cpp/src/driver.cpp) walks an N-d array and calls these on rows (the
// reduction axis is contiguous) or on columns (the reduction axis is strided
// and another axis is contiguous).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fastsoftmax/cross_entropy.hpp"
#include "fastsoftmax/half.hpp"

namespace fastsoftmax {

using std::ptrdiff_t;
using std::size_t;

// Arrays of at least this many bytes come from and go to memory (see
// SoftmaxParams::from_memory).
constexpr std::size_t kStreamBytes = std::size_t(8) << 20;

// Rows longer than this do not stay in L1 between two passes over them
// (segments.hpp: softmax's long rows; ce_rows.hpp: the half-precision
// gradient's non-temporal stores; Kernels::masked_softmax_rows).
constexpr std::size_t kLongRowBytes = std::size_t(32) << 10;

// A row's maximum and sum(exp(x - max)), from one read pass.
struct MaxSum {
    double max;    // the row maximum (exact: a value of the row)
    double sum;    // sum(exp(x - max)), >= 1 for a finite max
    bool special;  // the maximum is not finite or a NaN was seen: use special_rows.hpp
};

// The segment kernels keep one `ref` per block of at least this many elements.
constexpr std::size_t kMinSegmentBlock = 64;

// The forward ops of Kernels::masked_log_rows.
enum class MaskedOp { log_softmax, logsumexp };

// masked_copy's flags: some entry of the line is included; an included entry
// is +-inf or NaN.
constexpr unsigned kMaskAny = 1, kMaskNonFinite = 2;

// The per-call parameters of the softmax family (its parameter slot, as
// CeOptions is the cross-entropy's): every kernel of the family takes them,
// so that a new parameter (a temperature, a mask) changes no signature.
struct SoftmaxParams {
    // The whole array (of which a kernel's rows may be a part) is at least
    // kStreamBytes: it comes from and goes to memory, so the kernels write
    // with streaming stores or do not pipeline their passes.
    bool from_memory = false;
    // The results are stored in fewer bits than they are computed in (float16,
    // bfloat16): a kernel over float scratch (a tile) then takes logs near 0
    // as log1p(s - 1), as the half-precision kernels themselves do. Set by
    // those kernels, not by the driver.
    bool narrow_output = false;
    // 1 / temperature: the family is computed for x * scale (> 0, a normal
    // number of the compute type; see generic/temperature.hpp). The backward
    // ops give the gradient with respect to x, scaled likewise.
    double scale = 1;
};

// (a - b) * scale for finite a <= b, scale > 0 (a temperature's rescaling of
// a running sum: generic/temperature.hpp), also where a - b overflows but the
// product does not. (static: each target's object keeps its own copy.)
static inline double scaled_difference(double a, double b, double scale) {
    const double d = a - b;
    return std::isinf(d) ? (a * 0.5 - b * 0.5) * (2 * scale) : d * scale;
}

// How kl_div's target is given: logits (softmax(y / T)), probabilities or
// log probabilities.
enum class KlTarget { logits, probs, log_probs };

// The kernels of one target for arrays of storage type S (float, double,
// bfloat16 or float16; the last two compute in float).
// Filled by member name (cpp/src/arch/instantiate.cpp).
template <class S>
struct Kernels {
    using C = compute_t<S>;
    using Params = const SoftmaxParams&;

    // rows: `rows` rows of length n; row r starts at x + r*xs (resp. y + r*ys);
    // elements of a row are contiguous.
    void (*softmax_rows)(const S* x, ptrdiff_t xs, S* y, ptrdiff_t ys, size_t rows, size_t n,
                         Params params);
    void (*log_softmax_rows)(const S* x, ptrdiff_t xs, S* y, ptrdiff_t ys, size_t rows, size_t n,
                             Params params);
    // out[r * os] = logsumexp(row r)
    void (*logsumexp_rows)(const S* x, ptrdiff_t xs, S* out, ptrdiff_t os, size_t rows, size_t n,
                           Params params);
    void (*softmax_backward_rows)(const S* g, ptrdiff_t gs, const S* y, ptrdiff_t ys, S* o,
                                  ptrdiff_t os, size_t rows, size_t n, Params params);
    void (*log_softmax_backward_rows)(const S* g, ptrdiff_t gs, const S* y, ptrdiff_t ys, S* o,
                                      ptrdiff_t os, size_t rows, size_t n, Params params);

    // cols: `inner` independent reductions of length n, contiguous across
    // `inner`; step i of the reduction is at x + i*xs.
    void (*softmax_cols)(const S* x, ptrdiff_t xs, S* y, ptrdiff_t ys, size_t n, size_t inner,
                         Params params);
    void (*log_softmax_cols)(const S* x, ptrdiff_t xs, S* y, ptrdiff_t ys, size_t n, size_t inner,
                             Params params);
    // out[0 .. inner) is contiguous
    void (*logsumexp_cols)(const S* x, ptrdiff_t xs, S* out, size_t n, size_t inner, Params params);
    void (*softmax_backward_cols)(const S* g, ptrdiff_t gs, const S* y, ptrdiff_t ys, S* o,
                                  ptrdiff_t os, size_t n, size_t inner, Params params);
    void (*log_softmax_backward_cols)(const S* g, ptrdiff_t gs, const S* y, ptrdiff_t ys, S* o,
                                      ptrdiff_t os, size_t n, size_t inner, Params params);

    // Segments of a row split across threads (driver.cpp): the segment's
    // (max, sum) (a segment of -inf: (-inf, 0)); with y and refs (one per
    // kMinSegmentBlock elements at most), also softmax's exp(x - ref) per block.
    MaxSum (*segment_max_sum)(const S* x, size_t n, S* y, C* refs, Params params);
    // then, given the whole row's (max, sum): softmax's scaling of those y
    // (half-precision storage: y from x, the first pass having written nothing) ...
    void (*softmax_segment_scale)(const S* x, S* y, size_t n, const C* refs, double max, double sum,
                                  Params params);
    // ... or log_softmax's y = (x - max) - log(sum)
    void (*log_softmax_segment)(const S* x, S* y, size_t n, double max, double sum, Params params);
    // softmax of a contiguous part of a row from the whole row's (max, sum),
    // merged from its parts (parts.hpp): y = exp(x - max) * (1 / sum), as
    // the rows kernels scale (max finite, sum >= 1).
    void (*softmax_from_max_sum)(const S* x, S* y, size_t n, double max, double sum, Params params);

    // cross-entropy over a batch of contiguous rows (see cross_entropy.hpp);
    // labels in range, n >= 1
    CeSums (*cross_entropy_rows)(const CeRows<S>& rows, const CeOptions<S>& options);
    // ... over columns (no soft-capping, no saved lse; n < 2^24)
    CeSums (*cross_entropy_cols)(const CeCols<S>& cols, const CeOptions<S>& options);

    // One contiguous row of logits x (n >= 0), z = x * inv_t (1 / temperature,
    // representable in C)
    // (generic/divergence_rows.hpp): the entropy of softmax(z) and, with g,
    // its gradient with respect to x times gscale into g; the KL divergence
    // KL(target || softmax(z)) and, with g, its gradient likewise. An empty
    // row gives NaN.
    double (*entropy_row)(const S* x, size_t n, double inv_t, S* g, double gscale);
    double (*kl_div_row)(const S* x, const S* target, size_t n, KlTarget kind, double inv_t, S* g,
                         double gscale);

    // A line of x (n values, xs apart) into the contiguous `to`, `fill` where
    // its mask byte (ms apart) is zero (generic/masks.hpp: the driver's
    // where=); returns kMaskAny | kMaskNonFinite flags.
    unsigned (*masked_copy)(const S* x, ptrdiff_t xs, const unsigned char* m, ptrdiff_t ms, S* to,
                            size_t n, S fill);

    // softmax_backward_rows and log_softmax_backward_rows with a where= mask:
    // one byte per entry, contiguous along the row, mask rows mrs apart (0:
    // one row for all); the excluded entries add nothing to the sums and are
    // written 0 (generic/backward.hpp).
    void (*masked_softmax_backward_rows)(const S* g, ptrdiff_t gs, const S* y, ptrdiff_t ys, S* o,
                                         ptrdiff_t os, const unsigned char* m, ptrdiff_t mrs,
                                         size_t rows, size_t n, Params params);
    void (*masked_log_softmax_backward_rows)(const S* g, ptrdiff_t gs, const S* y, ptrdiff_t ys,
                                             S* o, ptrdiff_t os, const unsigned char* m,
                                             ptrdiff_t mrs, size_t rows, size_t n, Params params);

    // softmax_rows with a where= mask as above, for the rows softmax_rows
    // takes by register tiles (the rows and their mask end to end, or the
    // mask one row for all) or pipelines or streams (generic/softmax_rows.hpp):
    // an excluded entry gives 0; a row with nothing included 0; one whose
    // included entries make the plain rows' special case NaN at those and 0
    // at the others. False, having written nothing, for other row lengths and
    // layouts (rows = 0 asks, with the batches' strides). Null for
    // half-precision storage.
    bool (*masked_softmax_rows)(const S* x, ptrdiff_t xs, S* y, ptrdiff_t ys,
                                const unsigned char* m, ptrdiff_t mrs, size_t rows, size_t n,
                                Params params);

    // log_softmax or logsumexp (MaskedOp; logsumexp's rows of one value, ys
    // apart) with a where= mask as above, for the rows that log_softmax_rows
    // and logsumexp_rows take by register tiles (as masked_softmax_rows), by
    // groups or one by one (generic/softmax_rows.hpp): an excluded entry
    // gives -inf; a row whose included entries (or none) make the plain
    // rows' special case their special answer. False, having written
    // nothing, for other row lengths and layouts (rows = 0 asks, with the
    // batches' strides). Null for half-precision storage.
    bool (*masked_log_rows)(MaskedOp op, const S* x, ptrdiff_t xs, S* y, ptrdiff_t ys,
                            const unsigned char* m, ptrdiff_t mrs, size_t rows, size_t n,
                            Params params);

    // softmax of the entries of the contiguous row x (n elements, past
    // kLongRowBytes) whose mask byte is nonzero, the mask contiguous along
    // the row (generic/masked_rows.hpp); false for a row the plain kernels
    // must answer (nothing included, a NaN or +inf included, only -inf),
    // which may have written y's n outputs. Null for half-precision storage.
    bool (*masked_softmax_long_row)(const S* x, const unsigned char* m, S* y, size_t n,
                                    Params params);

    // Element-wise vector math on contiguous arrays (exposed for the ULP tests).
    void (*exp)(const S* x, S* y, size_t n);
    void (*log)(const S* x, S* y, size_t n);
    void (*log1p)(const S* x, S* y, size_t n);
    void (*tanh)(const S* x, S* y, size_t n);
};

// Contiguous integer class labels, counted before the cross-entropy writes
// anything: how many are not ignore_index, and whether any such one lies
// outside [0, classes).
struct LabelCount {
    size_t used = 0;
    bool bad = false;
};

struct KernelTable {
    const char* name;
    Kernels<float> f32;
    Kernels<double> f64;
    Kernels<bfloat16> bf16;
    Kernels<float16> f16;
    LabelCount (*count_labels)(const std::int64_t* y, size_t n, std::int64_t ignore,
                               std::int64_t classes);
};

// The table's kernels for storage type S.
template <class S>
const Kernels<S>& kernels_of(const KernelTable& t) {
    if constexpr (std::is_same_v<S, float>)
        return t.f32;
    else if constexpr (std::is_same_v<S, double>)
        return t.f64;
    else if constexpr (std::is_same_v<S, bfloat16>)
        return t.bf16;
    else
        return t.f16;
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
