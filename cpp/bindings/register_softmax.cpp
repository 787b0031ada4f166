// _core.softmax, log_softmax, logsumexp and the two backward ops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // (py::cast of a shape, in the error messages)

#include <limits>
#include <memory>
#include <string>

#include "arrays.hpp"
#include "fastsoftmax/driver.hpp"

namespace fastsoftmax::bindings {
namespace {

// The parameters of one call (SoftmaxParams, the family's parameter slot).
// temperature: checked by the Python API (positive, 1 / temperature a normal
// number of the compute type); checked again here, as the kernels assume it.
template <class T>
SoftmaxParams call_params(double temperature) {
    using C = compute_t<T>;
    SoftmaxParams p;
    p.scale = 1.0 / temperature;
    if (!(temperature > 0) || !(p.scale >= static_cast<double>(std::numeric_limits<C>::min()) &&
                                p.scale <= static_cast<double>(std::numeric_limits<C>::max())))
        throw py::value_error(
            "temperature must be positive, with 1 / temperature a normal "
            "number of the compute type, got " +
            std::string(py::str(py::float_(temperature))));
    return p;
}

void check_same_shape(const py::array& a, const py::array& b, const char* what) {
    if (a.ndim() != b.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), b.shape()))
        throw py::value_error(std::string(what) + " has shape " + shape_str(b) + ", expected " +
                              shape_str(a));
}

// where=: None, or a bool array of x's shape (the Python API broadcast it: a
// broadcast view keeps its zero strides, nothing is expanded), as the
// driver's mask operand; null for None. `out` must not share memory with it
// (checked: the Python API has proven that; else overlapping spans go back to
// it as Fallback).
std::unique_ptr<Strided<const unsigned char>> mask_of(const py::object& where, const py::array& x,
                                                      const py::array& out, bool checked) {
    if (where.is_none()) return nullptr;
    if (!py::isinstance<py::array>(where))
        throw py::type_error("where must be a numpy.ndarray of bools or None");
    const auto w = py::reinterpret_borrow<py::array>(where);  // (alive as long as `where`)
    if (!w.dtype().equal(py::dtype::of<bool>()))
        throw py::type_error("where must have dtype bool, got " + std::string(py::str(w.dtype())));
    check_same_shape(x, w, "where");
    if (!checked && spans_overlap(w, out)) throw Fallback("out may overlap where");
    return std::make_unique<Strided<const unsigned char>>(Strided<const unsigned char>{
        static_cast<const unsigned char*>(w.data()), element_strides<unsigned char>(w, "where")});
}

// y = op(x) along axis; out=None allocates a C-contiguous result.
// (x's dtype is T: the caller dispatched on it; likewise grad's in binary)
template <class T>
py::array unary(Op op, const py::array& x, py::ssize_t axis, py::object out_obj, bool checked,
                double temperature, const py::object& where) {
    const SoftmaxParams params = call_params<T>(temperature);
    const std::size_t ax = checked_axis(x, axis);
    py::array out =
        out_obj.is_none()
            ? py::array(dtype_of<T>(), std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()))
            : out_obj.cast<py::array>();
    check_dtype<T>(out, "out");
    check_same_shape(x, out, "out");
    if (!checked) check_no_partial_overlap(x, out);
    const auto mask = mask_of(where, x, out, checked);
    const Strided<const T> in = as_input<T>(x, "x");
    const Strided<T> o = as_output<T>(out, "out");
    {
        py::gil_scoped_release release;
        apply<T>(op, shape_of(x), ax, in, nullptr, o, params, mask.get());
    }
    return out;
}

// out = logsumexp(x) along axis; out has x's shape without the axis.
template <class T>
py::array reduce(const py::array& x, py::ssize_t axis, py::object out_obj, bool checked,
                 double temperature, const py::object& where) {
    const SoftmaxParams params = call_params<T>(temperature);
    const std::size_t ax = checked_axis(x, axis);
    std::vector<py::ssize_t> rshape(x.shape(), x.shape() + x.ndim());
    rshape.erase(rshape.begin() + static_cast<std::ptrdiff_t>(ax));
    py::array out =
        out_obj.is_none() ? py::array(dtype_of<T>(), rshape) : out_obj.cast<py::array>();
    check_dtype<T>(out, "out");
    if (out.ndim() != static_cast<py::ssize_t>(rshape.size()) ||
        !std::equal(rshape.begin(), rshape.end(), out.shape()))
        throw py::value_error("out has shape " + shape_str(out) + ", expected " +
                              std::string(py::str(py::tuple(py::cast(rshape)))));
    if (!checked) check_no_partial_overlap(x, out);
    const auto mask = mask_of(where, x, out, checked);
    const Strided<const T> in = as_input<T>(x, "x");
    Strided<T> o = as_output<T>(out, "out");
    o.strides.insert(o.strides.begin() + static_cast<std::ptrdiff_t>(ax), 0);
    {
        py::gil_scoped_release release;
        apply<T>(Op::logsumexp, shape_of(x), ax, in, nullptr, o, params, mask.get());
    }
    return out;
}

template <class T>
py::array binary(Op op, const py::array& grad, const py::array& y, py::ssize_t axis,
                 py::object out_obj, bool checked, double temperature, const py::object& where) {
    const SoftmaxParams params = call_params<T>(temperature);
    // (the Python API's fast path leaves these to the binding: its general
    // path converts y, or names the mismatch)
    if (!y.dtype().equal(grad.dtype())) throw Fallback("y has another dtype than grad");
    if (y.ndim() != grad.ndim() || !std::equal(y.shape(), y.shape() + y.ndim(), grad.shape()))
        throw Fallback("y has another shape than grad");
    const std::size_t ax = checked_axis(grad, axis);
    py::array out = out_obj.is_none()
                        ? py::array(dtype_of<T>(), std::vector<py::ssize_t>(
                                                       grad.shape(), grad.shape() + grad.ndim()))
                        : out_obj.cast<py::array>();
    check_dtype<T>(out, "out");
    check_same_shape(grad, out, "out");
    if (!checked) {
        check_no_partial_overlap(grad, out);
        check_no_partial_overlap(y, out);
    }
    const auto mask = mask_of(where, grad, out, checked);
    const Strided<const T> g = as_input<T>(grad, "grad");
    const Strided<const T> yy = as_input<T>(y, "y");
    const Strided<T> o = as_output<T>(out, "out");
    {
        py::gil_scoped_release release;
        apply<T>(op, shape_of(grad), ax, g, &yy, o, params, mask.get());
    }
    return out;
}

}  // namespace

void register_softmax(py::module_& m) {
    const auto unary_op = [](Op op) {
        return [op](const py::array& x, py::ssize_t axis, py::object out, bool checked,
                    double temperature, const py::object& where) {
            return dispatch_float(x.dtype(), "x", [&](auto element) {
                using T = typename decltype(element)::type;
                return unary<T>(op, x, axis, std::move(out), checked, temperature, where);
            });
        };
    };
    const auto binary_op = [](Op op) {
        return [op](const py::array& grad, const py::array& y, py::ssize_t axis, py::object out,
                    bool checked, double temperature, const py::object& where) {
            return dispatch_float(grad.dtype(), "grad", [&](auto element) {
                using T = typename decltype(element)::type;
                return binary<T>(op, grad, y, axis, std::move(out), checked, temperature, where);
            });
        };
    };
    m.def("softmax", unary_op(Op::softmax), py::arg("x"), py::arg("axis"),
          py::arg("out") = py::none(), py::arg("overlap_checked") = false,
          py::arg("temperature") = 1.0, py::arg("where") = py::none(),
          "softmax along a non-negative axis; float32/float64 only (see fastsoftmax.softmax)");
    m.def("log_softmax", unary_op(Op::log_softmax), py::arg("x"), py::arg("axis"),
          py::arg("out") = py::none(), py::arg("overlap_checked") = false,
          py::arg("temperature") = 1.0, py::arg("where") = py::none(),
          "log_softmax along a non-negative axis");
    m.def(
        "logsumexp",
        [](const py::array& x, py::ssize_t axis, py::object out, bool checked, double temperature,
           const py::object& where) {
            return dispatch_float(x.dtype(), "x", [&](auto element) {
                using T = typename decltype(element)::type;
                return reduce<T>(x, axis, std::move(out), checked, temperature, where);
            });
        },
        py::arg("x"), py::arg("axis"), py::arg("out") = py::none(),
        py::arg("overlap_checked") = false, py::arg("temperature") = 1.0,
        py::arg("where") = py::none(),
        "logsumexp along a non-negative axis; the result drops that axis");
    m.def("softmax_backward", binary_op(Op::softmax_backward), py::arg("grad"), py::arg("y"),
          py::arg("axis"), py::arg("out") = py::none(), py::arg("overlap_checked") = false,
          py::arg("temperature") = 1.0, py::arg("where") = py::none(),
          "y * (grad - sum(grad * y))");
    m.def("log_softmax_backward", binary_op(Op::log_softmax_backward), py::arg("grad"),
          py::arg("y"), py::arg("axis"), py::arg("out") = py::none(),
          py::arg("overlap_checked") = false, py::arg("temperature") = 1.0,
          py::arg("where") = py::none(), "grad - exp(y) * sum(grad)");
}

}  // namespace fastsoftmax::bindings
