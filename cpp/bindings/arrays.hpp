// Checks and conversions between NumPy arrays and the driver's Strided views.
// The Python layer has already normalized dtypes and axes; these checks guard
// the C++ boundary so that no call can read or write out of bounds.
#pragma once

#include <pybind11/gil_safe_call_once.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "fastsoftmax/half.hpp"
#include "fastsoftmax/strided.hpp"

namespace fastsoftmax::bindings {

namespace py = pybind11;

// Raised (as fastsoftmax._core.Fallback, a ValueError) when an array needs
// the Python layer's general path: its data or its strides are not aligned to
// its element size, or out may overlap an input. The fast path of the Python
// API catches it and retries there, where the exact checks and conversions
// are done.
struct Fallback : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Whether the memory spans of a and b (first to last byte) intersect.
inline bool spans_overlap(const py::array& a, const py::array& b) {
    const auto extent = [](const py::array& v, std::intptr_t& lo, std::intptr_t& hi) {
        lo = hi = reinterpret_cast<std::intptr_t>(v.data());
        for (py::ssize_t d = 0; d < v.ndim(); ++d) {
            if (v.shape(d) == 0) {
                hi = lo;  // empty: no memory
                return;
            }
            const std::intptr_t span = (v.shape(d) - 1) * v.strides(d);
            (span < 0 ? lo : hi) += span;
        }
        hi += v.itemsize();
    };
    std::intptr_t alo, ahi, blo, bhi;
    extent(a, alo, ahi);
    extent(b, blo, bhi);
    return alo < bhi && blo < ahi && alo < ahi && blo < bhi;
}

// Whether a and b are the same elements in the same order: the same data
// pointer, shape and strides (but for the strides of dimensions of length 1,
// which address nothing).
inline bool same_elements(const py::array& a, const py::array& b) {
    if (a.data() != b.data() || a.ndim() != b.ndim()) return false;
    for (py::ssize_t d = 0; d < a.ndim(); ++d)
        if (a.shape(d) != b.shape(d) || (a.shape(d) > 1 && a.strides(d) != b.strides(d)))
            return false;
    return true;
}

// Throws Fallback when out's memory may overlap a's, unless they are the same
// elements (in place).
inline void check_no_partial_overlap(const py::array& a, const py::array& out) {
    if (!same_elements(a, out) && spans_overlap(a, out))
        throw Fallback("out may overlap an input partially");
}

inline std::string shape_str(const py::array& a) {
    return py::str(py::tuple(py::cast(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()))));
}

// NumPy's dtype of ml_dtypes.bfloat16 (imported once, on first use), or
// None when ml_dtypes cannot be imported (then no array is bfloat16).
inline const py::object& bfloat16_dtype() {
    PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> storage;
    return storage
        .call_once_and_store_result([]() -> py::object {
            try {
                return py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16"));
            } catch (const py::error_already_set&) {
                return py::none();
            }
        })
        .get_stored();
}

// The NumPy dtype of storage type S.
template <class S>
py::dtype dtype_of() {
    if constexpr (std::is_same_v<S, bfloat16>) {
        const py::object& d = bfloat16_dtype();
        if (d.is_none()) throw py::type_error("bfloat16 arrays need the ml_dtypes package");
        return d.cast<py::dtype>();
    } else if constexpr (std::is_same_v<S, float16>) {
        constexpr int kNpyHalf = 23;  // NumPy's NPY_HALF (a lookup, not a parse of "float16")
        return py::dtype(kNpyHalf);
    } else {
        return py::dtype::of<S>();
    }
}

// The element type a kernel runs on, as a value: dispatch_float passes one.
template <class T>
struct Element {
    using type = T;
};

// The dtype of storage type S, kept (one object per S, as NumPy and ml_dtypes
// keep one per dtype), or None for bfloat16 without ml_dtypes.
template <class S>
const py::object& kept_dtype() {
    if constexpr (std::is_same_v<S, bfloat16>) {
        return bfloat16_dtype();  // (kept already)
    } else {
        PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> storage;
        return storage.call_once_and_store_result([] { return py::object(dtype_of<S>()); })
            .get_stored();
    }
}

// Whether an array's dtype is S's: first by identity, which settles nearly
// every call (a failed equal(), PyArray_EquivTypes, costs 30-60 ns, and
// dispatch_float made up to three of them per call for half precision).
template <class S>
bool is_dtype(const py::dtype& dtype) {
    const py::object& want = kept_dtype<S>();
    return dtype.ptr() == want.ptr() || (!want.is_none() && dtype.equal(want));
}

// Calls f(Element<S>{}) with S the storage type of `dtype`, and returns what
// f returns (the same type for every S). The one list of the dtypes the
// kernels take (bfloat16 is ml_dtypes.bfloat16, matched by dtype equality,
// not by its type character). Any other dtype raises TypeError naming `what`.
template <class F>
decltype(auto) dispatch_float(const py::dtype& dtype, const char* what, F&& f) {
    const PyObject* d = dtype.ptr();  // (identity first: see is_dtype)
    if (d == kept_dtype<float>().ptr()) return f(Element<float>{});
    if (d == kept_dtype<double>().ptr()) return f(Element<double>{});
    if (d == kept_dtype<float16>().ptr()) return f(Element<float16>{});
    if (d == kept_dtype<bfloat16>().ptr()) return f(Element<bfloat16>{});
    if (is_dtype<float>(dtype)) return f(Element<float>{});  // (equal, not the same object)
    if (is_dtype<double>(dtype)) return f(Element<double>{});
    if (is_dtype<float16>(dtype)) return f(Element<float16>{});
    if (is_dtype<bfloat16>(dtype)) return f(Element<bfloat16>{});
    throw py::type_error(std::string(what) +
                         " must have dtype float32, float64, float16 or bfloat16, got " +
                         std::string(py::str(dtype)));
}

template <class T>
void check_dtype(const py::array& a, const char* what) {
    if (!is_dtype<T>(a.dtype()))
        throw py::type_error(std::string(what) + " must have dtype " +
                             std::string(py::str(dtype_of<T>())) + ", got " +
                             std::string(py::str(a.dtype())));
}

// Strides in elements; the data must be aligned to the element size, and the
// strides multiples of it (a field of a packed structured array, say, is
// not: the general path copies it). The strides that address nothing (of a
// dimension of length 1, or of an empty array) are 0, whatever they were.
template <class T>
std::vector<std::ptrdiff_t> element_strides(const py::array& a, const char* what) {
    if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) != 0)
        throw Fallback(std::string(what) + " is not aligned to its element size");
    std::vector<std::ptrdiff_t> s(static_cast<std::size_t>(a.ndim()), 0);
    if (a.size() == 0) return s;
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (a.shape(d) == 1) continue;
        if (a.strides(d) % static_cast<py::ssize_t>(sizeof(T)) != 0)
            throw Fallback(std::string(what) +
                           " has a stride that is not a multiple of its element size");
        s[static_cast<std::size_t>(d)] = a.strides(d) / static_cast<py::ssize_t>(sizeof(T));
    }
    return s;
}

template <class T>
Strided<const T> as_input(const py::array& a, const char* what) {
    return {static_cast<const T*>(a.data()), element_strides<T>(a, what)};
}

template <class T>
Strided<T> as_output(py::array& a, const char* what) {
    if (!a.writeable()) throw py::value_error(std::string(what) + " is read-only");
    return {static_cast<T*>(a.mutable_data()), element_strides<T>(a, what)};
}

// A non-negative axis of x (the Python layer normalized it), checked again here.
inline std::size_t checked_axis(const py::array& x, py::ssize_t axis) {
    if (axis < 0 || axis >= x.ndim())
        throw py::value_error("axis " + std::to_string(axis) + " is out of range for an array of " +
                              std::to_string(x.ndim()) + " dimensions");
    return static_cast<std::size_t>(axis);
}

inline std::vector<std::size_t> shape_of(const py::array& a) {
    return std::vector<std::size_t>(a.shape(), a.shape() + a.ndim());
}

// x's shape without `axis`.
inline std::vector<py::ssize_t> reduced_shape(const py::array& x, std::size_t axis) {
    std::vector<py::ssize_t> s(x.shape(), x.shape() + x.ndim());
    s.erase(s.begin() + static_cast<std::ptrdiff_t>(axis));
    return s;
}

// A float64 array of one value per line (x's shape without the axis), as a
// Strided operand of x's ndim (stride 0 along the axis).
template <class D>
Strided<D> per_line(py::array& a, const py::array& x, std::size_t axis, const char* what) {
    check_dtype<double>(a, what);
    const std::vector<py::ssize_t> want = reduced_shape(x, axis);
    if (a.ndim() != static_cast<py::ssize_t>(want.size()) ||
        !std::equal(want.begin(), want.end(), a.shape()))
        throw py::value_error(std::string(what) + " has shape " + shape_str(a) + ", expected " +
                              std::string(py::str(py::tuple(py::cast(want)))));
    Strided<D> s;
    if constexpr (std::is_const_v<D>)
        s = as_input<double>(a, what);
    else
        s = as_output<double>(a, what);
    s.strides.insert(s.strides.begin() + static_cast<std::ptrdiff_t>(axis), 0);
    return s;
}

}  // namespace fastsoftmax::bindings
