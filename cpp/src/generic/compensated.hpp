// Scalar Neumaier (improved Kahan) summation, used to fold per-lane partial
// sums of doubles into one value without losing the low bits.
#pragma once

#include <cmath>
#include <cstddef>

#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

struct NeumaierSum {
    double sum = 0.0;
    double comp = 0.0;
    void add(double v) {
        const double t = sum + v;
        comp += (std::fabs(sum) >= std::fabs(v)) ? (sum - t) + v : (v - t) + sum;
        sum = t;
    }
    // An infinite sum makes the compensation NaN (inf - inf): ignore it then.
    double value() const { return std::isfinite(sum) ? sum + comp : sum; }
};

// Total of n lanes of (sum, compensation) pairs.
inline double neumaier_total(const double* sums, const double* comps, std::size_t n) {
    NeumaierSum acc;
    for (std::size_t i = 0; i < n; ++i) {
        acc.add(sums[i]);
        if (std::isfinite(sums[i])) acc.add(comps[i]);
    }
    return acc.value();
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
