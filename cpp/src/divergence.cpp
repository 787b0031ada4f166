// The drivers of the entropy and the KL divergence (fastsoftmax/divergence.hpp).
#include "fastsoftmax/divergence.hpp"

#include <vector>

#include "fastsoftmax/dispatch.hpp"
#include "layout/copy.hpp"
#include "layout/lines.hpp"

namespace fastsoftmax {
namespace {

// A contiguous line of an operand: the line itself when its axis stride is
// 1, else a copy in buf.
template <class T>
const T* line_in(const T* p, std::ptrdiff_t stride, std::size_t n, std::vector<T>& buf) {
    if (stride == 1) return p;
    buf.resize(n);
    layout::copy_line_in(p, stride, n, buf.data());
    return buf.data();
}

// Runs f(contiguous grad line) on the grad line at p, through buf when its
// axis stride is not 1.
template <class T, class F>
void line_out(T* p, std::ptrdiff_t stride, std::size_t n, std::vector<T>& buf, F&& f) {
    if (stride == 1) return f(p);
    buf.resize(n);
    f(buf.data());
    layout::copy_line_out(buf.data(), n, p, stride);
}

}  // namespace

template <class T>
void entropy_lines(const std::vector<std::size_t>& shape, std::size_t axis,
                   const Strided<const T>& x, double temperature, const Strided<double>& value,
                   const Strided<T>* grad, double gscale) {
    const layout::Operand operands[3] = {
        {layout::Holds::elements, x.strides.data()},
        {layout::Holds::strided_line_values, value.strides.data()},
        {layout::Holds::elements, grad ? grad->strides.data() : x.strides.data()}};
    const Kernels<T>& k = kernels_of<T>(active_kernels());
    const double inv = 1.0 / temperature;
    layout::walk_lines<T>(shape, axis, operands, grad ? 3 : 2, x.data,
                          [&](const T* line, std::size_t n, const std::ptrdiff_t* off, T*,
                              const std::ptrdiff_t* axis_stride) {
                              if (!grad) {
                                  value.data[off[1]] = k.entropy_row(line, n, inv, nullptr, gscale);
                                  return;
                              }
                              thread_local std::vector<T> gbuf;
                              line_out(grad->data + off[2], axis_stride[2], n, gbuf, [&](T* g) {
                                  value.data[off[1]] = k.entropy_row(line, n, inv, g, gscale);
                              });
                          });
}

template <class T>
void kl_div_lines(const std::vector<std::size_t>& shape, std::size_t axis,
                  const Strided<const T>& x, const Strided<const T>& target, KlTarget kind,
                  double temperature, const Strided<double>& value, const Strided<T>* grad,
                  double gscale) {
    const layout::Operand operands[4] = {
        {layout::Holds::elements, x.strides.data()},
        {layout::Holds::elements, target.strides.data()},
        {layout::Holds::strided_line_values, value.strides.data()},
        {layout::Holds::elements, grad ? grad->strides.data() : x.strides.data()}};
    const Kernels<T>& k = kernels_of<T>(active_kernels());
    const double inv = 1.0 / temperature;
    layout::walk_lines<T>(
        shape, axis, operands, grad ? 4 : 3, x.data,
        [&](const T* line, std::size_t n, const std::ptrdiff_t* off, T*,
            const std::ptrdiff_t* axis_stride) {
            thread_local std::vector<T> tbuf, gbuf;
            const T* t = line_in(target.data + off[1], axis_stride[1], n, tbuf);
            if (!grad) {
                value.data[off[2]] = k.kl_div_row(line, t, n, kind, inv, nullptr, gscale);
                return;
            }
            line_out(grad->data + off[3], axis_stride[3], n, gbuf, [&](T* g) {
                value.data[off[2]] = k.kl_div_row(line, t, n, kind, inv, g, gscale);
            });
        });
}

#define FASTSOFTMAX_DIVERGENCE(T)                                                             \
    template void entropy_lines<T>(const std::vector<std::size_t>&, std::size_t,              \
                                   const Strided<const T>&, double, const Strided<double>&,   \
                                   const Strided<T>*, double);                                \
    template void kl_div_lines<T>(const std::vector<std::size_t>&, std::size_t,               \
                                  const Strided<const T>&, const Strided<const T>&, KlTarget, \
                                  double, const Strided<double>&, const Strided<T>*, double);
FASTSOFTMAX_DIVERGENCE(float)
FASTSOFTMAX_DIVERGENCE(double)
FASTSOFTMAX_DIVERGENCE(bfloat16)
FASTSOFTMAX_DIVERGENCE(float16)
#undef FASTSOFTMAX_DIVERGENCE

}  // namespace fastsoftmax
