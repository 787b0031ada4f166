// The entropy and the KL divergence of the softmax along one axis of N-d
// strided arrays (one value per line), and their gradients: the lines are
// walked by layout/lines.hpp (copied contiguous when the axis is strided)
// and handed to the active target's row kernels (generic/divergence_rows.hpp).
#pragma once

#include <cstddef>
#include <vector>

#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/strided.hpp"

namespace fastsoftmax {

// value: one float64 per line (its stride along `axis` ignored), written.
// grad (may be null): x's shape, written with the gradient of each line's
// value with respect to x times gscale. The axis has length >= 1;
// temperature > 0.
template <class T>
void entropy_lines(const std::vector<std::size_t>& shape, std::size_t axis,
                   const Strided<const T>& x, double temperature, const Strided<double>& value,
                   const Strided<T>* grad, double gscale);

// The same for KL(target || softmax(x / temperature)); target has x's shape.
template <class T>
void kl_div_lines(const std::vector<std::size_t>& shape, std::size_t axis,
                  const Strided<const T>& x, const Strided<const T>& target, KlTarget kind,
                  double temperature, const Strided<double>& value, const Strided<T>* grad,
                  double gscale);

}  // namespace fastsoftmax
