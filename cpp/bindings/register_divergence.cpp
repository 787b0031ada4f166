// _core.entropy and _core.kl_div: one float64 value per line along an axis
// and, when asked for, the gradient with respect to x
// (fastsoftmax/divergence.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "fastsoftmax/divergence.hpp"

namespace fastsoftmax::bindings {
namespace {

std::size_t checked_line_axis(const py::array& x, py::ssize_t axis, double temperature) {
    const std::size_t ax = checked_axis(x, axis);
    if (x.shape(static_cast<py::ssize_t>(ax)) == 0)
        throw py::value_error("the axis has length 0: no distribution");
    if (!(temperature > 0) || !std::isfinite(temperature))
        throw py::value_error("temperature must be positive and finite, got " +
                              std::to_string(temperature));
    return ax;
}

// The gradient array (x's shape, C order) and its operand, when wanted.
template <class T>
py::object grad_array(const py::array& x, bool want, Strided<T>& g) {
    if (!want) return py::none();
    py::array a(dtype_of<T>(), std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    g = as_output<T>(a, "grad");
    return std::move(a);
}

template <class T>
py::tuple entropy(const py::array& x, py::ssize_t axis, double temperature, bool want_grad,
                  double gscale) {
    const std::size_t ax = checked_line_axis(x, axis, temperature);
    py::array value(py::dtype::of<double>(), reduced_shape(x, ax));
    const Strided<const T> in = as_input<T>(x, "x");
    const Strided<double> v = per_line<double>(value, x, ax, "value");
    Strided<T> g;
    py::object grad = grad_array<T>(x, want_grad, g);
    {
        py::gil_scoped_release release;
        entropy_lines<T>(shape_of(x), ax, in, temperature, v, want_grad ? &g : nullptr, gscale);
    }
    return py::make_tuple(value, grad);
}

KlTarget kl_target(const std::string& kind) {
    if (kind == "logits") return KlTarget::logits;
    if (kind == "probs") return KlTarget::probs;
    if (kind == "log_probs") return KlTarget::log_probs;
    throw py::value_error("target_kind must be 'logits', 'probs' or 'log_probs', got '" + kind +
                          "'");
}

template <class T>
py::tuple kl_div(const py::array& x, const py::array& target, py::ssize_t axis,
                 const std::string& kind, double temperature, bool want_grad, double gscale) {
    const KlTarget k = kl_target(kind);
    const std::size_t ax = checked_line_axis(x, axis, temperature);
    check_dtype<T>(target, "target");
    if (target.ndim() != x.ndim() || !std::equal(x.shape(), x.shape() + x.ndim(), target.shape()))
        throw py::value_error("target has shape " + shape_str(target) + ", expected " +
                              shape_str(x));
    py::array value(py::dtype::of<double>(), reduced_shape(x, ax));
    const Strided<const T> in = as_input<T>(x, "x");
    const Strided<const T> t = as_input<T>(target, "target");
    const Strided<double> v = per_line<double>(value, x, ax, "value");
    Strided<T> g;
    py::object grad = grad_array<T>(x, want_grad, g);
    {
        py::gil_scoped_release release;
        kl_div_lines<T>(shape_of(x), ax, in, t, k, temperature, v, want_grad ? &g : nullptr,
                        gscale);
    }
    return py::make_tuple(value, grad);
}

}  // namespace

void register_divergence(py::module_& m) {
    m.def(
        "entropy",
        [](const py::array& x, py::ssize_t axis, double temperature, bool want_grad,
           double gscale) {
            return dispatch_float(x.dtype(), "x", [&](auto element) {
                using T = typename decltype(element)::type;
                return entropy<T>(x, axis, temperature, want_grad, gscale);
            });
        },
        py::arg("x"), py::arg("axis"), py::arg("temperature"), py::arg("want_grad"),
        py::arg("grad_scale"),
        "(entropy of softmax(x / temperature) per line (float64), its gradient with respect to "
        "x times grad_scale or None) along a non-negative axis of length >= 1");
    m.def(
        "kl_div",
        [](const py::array& x, const py::array& target, py::ssize_t axis, const std::string& kind,
           double temperature, bool want_grad, double gscale) {
            return dispatch_float(x.dtype(), "x", [&](auto element) {
                using T = typename decltype(element)::type;
                return kl_div<T>(x, target, axis, kind, temperature, want_grad, gscale);
            });
        },
        py::arg("x"), py::arg("target"), py::arg("axis"), py::arg("target_kind"),
        py::arg("temperature"), py::arg("want_grad"), py::arg("grad_scale"),
        "(KL(target || softmax(x / temperature)) per line (float64), its gradient with respect "
        "to x times grad_scale or None); target of x's shape and dtype");
}

}  // namespace fastsoftmax::bindings
