// _core.cross_entropy: the fused loss and gradient. The Python layer
// (fastsoftmax/_cross_entropy.py) has normalized every argument; the checks
// here guard the C++ boundary (shapes, dtypes, lengths), so that no call can
// read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // (py::cast of a shape, in the error messages)

#include <cmath>
#include <cstdint>
#include <string>

#include "arrays.hpp"
#include "fastsoftmax/cross_entropy.hpp"

namespace fastsoftmax::bindings {
namespace {

std::vector<py::ssize_t> dims_of(const py::array& a) {
    return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

void expect_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const char* what) {
    if (dims_of(a) != shape)
        throw py::value_error(std::string(what) + " has shape " + shape_str(a) + ", expected " +
                              std::string(py::str(py::tuple(py::cast(shape)))));
}

// A per-example operand (labels, lse): its strides, with 0 inserted at the class axis.
template <class E>
Strided<const E> per_example(const py::array& a, std::size_t axis, const char* what) {
    Strided<const E> c = as_input<E>(a, what);
    c.strides.insert(c.strides.begin() + static_cast<std::ptrdiff_t>(axis), 0);
    return c;
}

// A C-contiguous float64 array of `count` elements (the per-example losses and scales).
double* contiguous_f64(const py::array& a, std::size_t count, const char* what) {
    if (!a.dtype().equal(py::dtype::of<double>()) || !(a.flags() & py::array::c_style) ||
        static_cast<std::size_t>(a.size()) != count)
        throw py::value_error(std::string(what) + " must be a C-contiguous float64 array of " +
                              std::to_string(count) + " elements");
    return static_cast<double*>(const_cast<void*>(a.data()));
}

// obj as an array, or a null handle when obj is None. (A default-constructed
// py::array is a new empty array: seven of them took 0.65 us of a 1.6 us call.)
py::array array_or_null(const py::object& obj) {
    return obj.is_none() ? py::reinterpret_borrow<py::array>(py::handle()) : obj.cast<py::array>();
}

std::string index_str(const std::vector<std::size_t>& idx) {
    std::string s = "(";
    for (std::size_t i = 0; i < idx.size(); ++i)
        s += std::to_string(idx[i]) + (idx.size() == 1 ? "," : i + 1 < idx.size() ? ", " : "");
    return s + ")";
}

template <class T>
double run(const py::array& logits, std::size_t axis, const py::object& labels_obj,
           const py::object& target_obj, const py::object& lse_obj, const py::object& grad_obj,
           const py::object& scale_obj, const py::object& loss_obj, const py::object& lse_out_obj,
           Reduction reduction, const py::object& weight_obj, double smoothing, double z_loss,
           double softcap, std::int64_t ignore_index,
           double temperature) {  // (logits' dtype is T: dispatched on)
    if (axis >= static_cast<std::size_t>(logits.ndim()))
        throw py::value_error("axis " + std::to_string(axis) + " is out of range");
    const std::vector<py::ssize_t> shape = dims_of(logits);
    std::vector<py::ssize_t> ex_shape = shape;
    ex_shape.erase(ex_shape.begin() + static_cast<std::ptrdiff_t>(axis));
    std::size_t examples = 1;
    for (py::ssize_t s : ex_shape) examples *= static_cast<std::size_t>(s);
    const auto n = static_cast<std::size_t>(shape[axis]);

    using C = compute_t<T>;  // of the weights and the lse (float for half precision)
    CeOptions<T> o;
    o.smoothing = smoothing;
    o.z_loss = z_loss;
    o.softcap = static_cast<C>(softcap);
    if (!(temperature > 0) || !std::isfinite(temperature))
        throw py::value_error("temperature must be positive and finite");
    o.scale = static_cast<C>(1 / temperature);
    if (!(o.scale > 0) || !std::isfinite(o.scale))
        throw py::value_error("1 / temperature is not a normal number of the compute type");
    o.ignore_index = ignore_index;
    o.weight_sum = static_cast<double>(n);
    const py::array weight = array_or_null(weight_obj);
    if (weight) {
        check_dtype<C>(weight, "weight");
        if (weight.ndim() != 1 || static_cast<std::size_t>(weight.shape(0)) != n ||
            !(weight.flags() & py::array::c_style))
            throw py::value_error("weight must be a contiguous array of " + std::to_string(n) +
                                  " class weights");
        element_strides<C>(weight, "weight");
        o.weight = static_cast<const C*>(weight.data());
        double w = 0;
        for (std::size_t c = 0; c < n; ++c) w += static_cast<double>(o.weight[c]);
        o.weight_sum = w;
    }

    const Strided<const T> x = as_input<T>(logits, "logits");
    const py::array labels = array_or_null(labels_obj), target = array_or_null(target_obj),
                    lse = array_or_null(lse_obj), scale = array_or_null(scale_obj),
                    loss = array_or_null(loss_obj), lse_out = array_or_null(lse_out_obj);
    py::array grad = array_or_null(grad_obj);
    if (!labels == !target) throw py::value_error("pass exactly one of labels and target");
    const bool has_labels = static_cast<bool>(labels), has_target = !has_labels;
    const bool has_lse = static_cast<bool>(lse);
    Strided<const std::int64_t> lab;
    Strided<const T> tgt;
    Strided<const C> ls;
    if (has_labels) {
        check_dtype<std::int64_t>(labels, "labels");
        expect_shape(labels, ex_shape, "labels");
        lab = per_example<std::int64_t>(labels, axis, "labels");
    } else {
        check_dtype<T>(target, "target");
        expect_shape(target, shape, "target");
        tgt = as_input<T>(target, "target");
    }
    if (has_lse) {
        check_dtype<C>(lse, "lse");
        expect_shape(lse, ex_shape, "lse");
        ls = per_example<C>(lse, axis, "lse");
    }
    Strided<T> g;
    if (grad) {
        check_dtype<T>(grad, "grad");
        expect_shape(grad, shape, "grad");
        g = as_output<T>(grad, "grad");
        check_no_partial_overlap(logits, grad);
        // the kernels read target, labels, weight and lse while writing grad
        // (only the logits may be grad itself): no overlap at all
        const auto apart = [&](const py::array& a) {
            if (spans_overlap(a, grad))
                throw Fallback("grad may overlap labels, target, weight or lse");
        };
        if (has_target) apart(target);
        if (has_labels) apart(labels);
        if (o.weight) apart(weight);
        if (has_lse) apart(lse);
    }
    const double* sc = nullptr;
    double *lo = nullptr, *lse_rows = nullptr;
    if (scale) sc = contiguous_f64(scale, examples, "grad_scale");
    if (loss) {
        if (!loss.writeable()) throw py::value_error("loss is read-only");
        lo = contiguous_f64(loss, examples, "loss");
    }
    if (lse_out) {
        if (!lse_out.writeable()) throw py::value_error("lse_out is read-only");
        if (has_lse) throw py::value_error("pass at most one of lse and lse_out");
        lse_rows = contiguous_f64(lse_out, examples, "lse_out");
    }

    const std::vector<std::size_t> ushape = shape_of(logits);
    double result = 0;
    try {
        py::gil_scoped_release release;
        result = cross_entropy<T>(ushape, axis, x, has_labels ? &lab : nullptr,
                                  has_target ? &tgt : nullptr, has_lse ? &ls : nullptr, g, sc, lo,
                                  lse_rows, reduction, o);
    } catch (const BadLabel& bad) {
        throw py::value_error("label " + std::to_string(bad.value) + " at position " +
                              index_str(bad.index) + " is outside [0, " + std::to_string(n) +
                              ") and is not ignore_index (" + std::to_string(ignore_index) + ")");
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    }
    return result;
}

}  // namespace

void register_cross_entropy(py::module_& m) {
    m.def(
        "cross_entropy",
        [](const py::array& logits, std::size_t axis, py::object labels, py::object target,
           py::object lse, py::object grad, py::object grad_scale, py::object loss,
           py::object lse_out, const std::string& reduction, py::object weight, double smoothing,
           double z_loss, double softcap, std::int64_t ignore_index, double temperature) {
            Reduction red;
            if (reduction == "none")
                red = Reduction::none;
            else if (reduction == "sum")
                red = Reduction::sum;
            else if (reduction == "mean")
                red = Reduction::mean;
            else
                throw py::value_error("unknown reduction '" + reduction + "'");
            return dispatch_float(logits.dtype(), "logits", [&](auto element) {
                using T = typename decltype(element)::type;
                return run<T>(logits, axis, labels, target, lse, grad, grad_scale, loss, lse_out,
                              red, weight, smoothing, z_loss, softcap, ignore_index, temperature);
            });
        },
        py::arg("logits"), py::arg("axis"), py::arg("labels"), py::arg("target"), py::arg("lse"),
        py::arg("grad"), py::arg("grad_scale"), py::arg("loss"), py::arg("lse_out"),
        py::arg("reduction"), py::arg("weight"), py::arg("label_smoothing"), py::arg("z_loss"),
        py::arg("softcap"), py::arg("ignore_index"), py::arg("temperature") = 1.0,
        "fused softmax cross-entropy (see fastsoftmax.cross_entropy); returns the reduced loss");
}

}  // namespace fastsoftmax::bindings
