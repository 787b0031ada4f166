// _core.logsumexp_parts, softmax_from_parts and log_softmax_from_parts: the
// mergeable (max, sum) pairs of the softmax family (fastsoftmax/parts.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "fastsoftmax/parts.hpp"

namespace fastsoftmax::bindings {
namespace {

template <class T>
py::tuple parts(const py::array& x, py::ssize_t axis, bool softmax_sums) {
    const std::size_t ax = checked_axis(x, axis);
    py::array max(py::dtype::of<double>(), reduced_shape(x, ax));
    py::array sum(py::dtype::of<double>(), reduced_shape(x, ax));
    const Strided<const T> in = as_input<T>(x, "x");
    const Strided<double> m = per_line<double>(max, x, ax, "max");
    const Strided<double> s = per_line<double>(sum, x, ax, "sum");
    {
        py::gil_scoped_release release;
        max_sum_parts<T>(shape_of(x), ax, in, m, s, softmax_sums);
    }
    return py::make_tuple(max, sum);
}

template <class T>
py::array from_parts(Op op, const py::array& x, py::ssize_t axis, py::array max, py::array sum,
                     py::object out_obj) {
    const std::size_t ax = checked_axis(x, axis);
    py::array out =
        out_obj.is_none()
            ? py::array(dtype_of<T>(), std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()))
            : out_obj.cast<py::array>();
    check_dtype<T>(out, "out");
    if (out.ndim() != x.ndim() || !std::equal(x.shape(), x.shape() + x.ndim(), out.shape()))
        throw py::value_error("out has shape " + shape_str(out) + ", expected " + shape_str(x));
    check_no_partial_overlap(x, out);
    if (spans_overlap(max, out) || spans_overlap(sum, out))
        throw Fallback("out may overlap max or sum");
    const Strided<const T> in = as_input<T>(x, "x");
    const Strided<const double> m = per_line<const double>(max, x, ax, "max");
    const Strided<const double> s = per_line<const double>(sum, x, ax, "sum");
    const Strided<T> o = as_output<T>(out, "out");
    {
        py::gil_scoped_release release;
        apply_from_max_sum<T>(op, shape_of(x), ax, in, m, s, o);
    }
    return out;
}

}  // namespace

void register_parts(py::module_& m) {
    m.def(
        "logsumexp_parts",
        [](const py::array& x, py::ssize_t axis, bool for_softmax) {
            return dispatch_float(x.dtype(), "x", [&](auto element) {
                using T = typename decltype(element)::type;
                return parts<T>(x, axis, for_softmax);
            });
        },
        py::arg("x"), py::arg("axis"), py::arg("for_softmax") = false,
        "(max, sum(exp(x - max))) per line along a non-negative axis, float64 (see "
        "fastsoftmax.logsumexp_parts)");
    const auto from = [](Op op) {
        return [op](const py::array& x, py::ssize_t axis, py::array max, py::array sum,
                    py::object out) {
            return dispatch_float(x.dtype(), "x", [&](auto element) {
                using T = typename decltype(element)::type;
                return from_parts<T>(op, x, axis, max, sum, std::move(out));
            });
        };
    };
    m.def("softmax_from_parts", from(Op::softmax), py::arg("x"), py::arg("axis"), py::arg("max"),
          py::arg("sum"), py::arg("out") = py::none(),
          "softmax of x's lines given the whole lines' merged (max, sum) pairs");
    m.def("log_softmax_from_parts", from(Op::log_softmax), py::arg("x"), py::arg("axis"),
          py::arg("max"), py::arg("sum"), py::arg("out") = py::none(),
          "log_softmax of x's lines given the whole lines' merged (max, sum) pairs");
}

}  // namespace fastsoftmax::bindings
