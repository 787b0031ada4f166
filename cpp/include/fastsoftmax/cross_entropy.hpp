// The fused softmax cross-entropy: the ISA-free interface between the N-d
// driver (cpp/src/cross_entropy.cpp) and the per-target kernels
// (cpp/src/generic/ce_rows.hpp, ce_cols.hpp; their shared formulas in
// ce_terms.hpp).
//
// Per example (a row x of n logits, read as x * scale, scale = 1 / temperature;
// x' = softcap * tanh(x / softcap) when soft-capping, else x; lse = logsumexp(x'); eps =
// label_smoothing; w the class weights, all 1 without them, W = sum(w)):
//   integer label y: ce = (1 - eps) * w[y] * (lse - x'[y])
//                        + eps / n * sum_c w[c] * (lse - x'[c])
//   probabilities t: ce = sum_c w[c] * t'[c] * (lse - x'[c]),  t' = (1 - eps) t + eps / n
//   z-loss         :  z = z_loss * lse^2
// and the gradient with respect to x, scaled by s_ce (ce) and s_z (z):
//   d/dx'[c] = s_ce * (dce/dx'[c]) + s_z * 2 * z_loss * lse * softmax(x')[c],
//   d/dx[c]  = d/dx'[c] * (1 - tanh(x[c] / softcap)^2)    (soft-capping)
// (times scale: the driver folds it into s_ce and s_z)
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastsoftmax/half.hpp"
#include "fastsoftmax/strided.hpp"

namespace fastsoftmax {

// The operands' types: S is the storage type of the logits, the probability
// targets and the gradient (float, double, bfloat16, float16); the class
// weights, the saved lse and the cap are in its compute type (float for the
// half-precision types: a weight or an lse rounded to 8 bits would cost the
// loss its accuracy).

// Options shared by every row of a call.
template <class S>
struct CeOptions {
    using C = compute_t<S>;
    const C* weight = nullptr;  // n class weights (contiguous), or nullptr: all 1
    double weight_sum = 0;      // W
    double smoothing = 0;       // eps
    double z_loss = 0;
    C softcap = 0;  // 0: none
    C scale = 1;    // 1 / temperature: x is read as x * scale (before soft-capping)
    std::int64_t ignore_index = -100;
};

// The same options for kernels over scratch arrays of the compute type (the
// tiles of a half-precision call): the fields that are not S already are C.
template <class S>
static inline CeOptions<compute_t<S>> compute_options(const CeOptions<S>& o) {
    CeOptions<compute_t<S>> c;
    c.weight = o.weight;
    c.weight_sum = o.weight_sum;
    c.smoothing = o.smoothing;
    c.z_loss = o.z_loss;
    c.softcap = o.softcap;
    c.scale = o.scale;
    c.ignore_index = o.ignore_index;
    return c;
}

// A batch of `rows` rows of n contiguous logits, row r at x + r * xs (every
// other pointer likewise, with its own stride in elements).
template <class S>
struct CeRows {
    using C = compute_t<S>;
    const S* x = nullptr;
    std::ptrdiff_t xs = 0;
    const std::int64_t* label = nullptr;  // integer labels, already validated ...
    std::ptrdiff_t ls = 0;
    const S* target = nullptr;  // ... or probabilities (when label is nullptr)
    std::ptrdiff_t ts = 0;
    const C* lse = nullptr;  // saved logsumexp(x') per row (backward only), or nullptr
    std::ptrdiff_t lses = 0;
    S* grad = nullptr;  // nullptr: no gradient; may be x itself (in place)
    std::ptrdiff_t gs = 0;
    const double* grad_scale = nullptr;  // per-row factor of the gradient, or nullptr: 1
    double* loss = nullptr;              // per-row loss ce + z (contiguous), or nullptr
    double* lse_out = nullptr;           // per-row logsumexp(x') (contiguous), or nullptr
    double s_ce = 1, s_z = 1;            // gradient factors of the two terms (the reduction)
    std::size_t rows = 0, n = 0;
    // the gradient array is at least kStreamBytes (it goes to memory): a
    // gradient pass that recomputes the exponentials (from a saved lse)
    // writes it with non-temporal stores, where it is not x itself
    bool grad_from_memory = false;
};

// Columns: `inner` independent examples side by side (contiguous), classes
// strided: class c of example l at x[c * xs + l] (likewise target, grad).
// Integer labels only when soft-capping is off and no lse is given (the
// driver's choice); per-example arrays (grad_scale, loss) are contiguous.
// The kernel reads x as the logits already divided by the temperature,
// unless scale_in_place is set (below).
template <class S>
struct CeCols {
    const S* x = nullptr;
    std::ptrdiff_t xs = 0;
    const std::int64_t* label = nullptr;  // label of example l at label[l * ls], or ...
    std::ptrdiff_t ls = 0;
    const S* target = nullptr;  // ... probabilities
    std::ptrdiff_t ts = 0;
    S* grad = nullptr;  // nullptr: no gradient; may be x itself
    std::ptrdiff_t gs = 0;
    const double* grad_scale = nullptr;
    double* loss = nullptr;
    double* lse_out = nullptr;
    double s_ce = 1, s_z = 1;
    std::size_t n = 0, inner = 0;
    // A temperature on a tile of the caller's own (x itself, writable, n rows
    // of xs values): the kernel multiplies the logits by the options' scale,
    // as it reads them (integer labels alone) or in place first.
    S* scale_in_place = nullptr;
};

// Totals over the non-ignored rows of a batch.
struct CeSums {
    double ce = 0, z = 0;
};

enum class Reduction { none, sum, mean };

// A label outside [0, n) that is not ignore_index, found before anything was
// written: `index` is its position in the labels array.
struct BadLabel {
    std::vector<std::size_t> index;
    std::int64_t value;
};

// The whole call: validates the labels (throws BadLabel), then computes the
// loss (`loss_rows` gets per-example losses in C order for Reduction::none;
// `lse_rows`, when set, each example's logsumexp(x') in C order, for a
// backward that reads the logits once) and, when grad.data is set, the
// gradient. An ignored example's lse is 0. lse (per example) given: the
// gradient is computed from it and no loss is returned. Returns the reduced
// loss (sum or mean; 0 for none). Every operand has one stride per logits
// dimension; the per-example ones (labels, lse) have 0 on the class axis.
template <class S>
double cross_entropy(const std::vector<std::size_t>& shape, std::size_t axis,
                     const Strided<const S>& x, const Strided<const std::int64_t>* labels,
                     const Strided<const S>* target, const Strided<const compute_t<S>>* lse,
                     const Strided<S>& grad, const double* grad_scale, double* loss_rows,
                     double* lse_rows, Reduction reduction, const CeOptions<S>& options);

}  // namespace fastsoftmax
