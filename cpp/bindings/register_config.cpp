// _core.simd_target, targets, set_target, build_info and the element-wise
// exp/log/log1p/tanh of the active target (for the tests of the vector math).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "arrays.hpp"
#include "build_info.hpp"
#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"

namespace fastsoftmax::bindings {
namespace {

enum class Fn { exp, log, log1p, tanh };

template <class T>
py::array elementwise(const py::array& x, Fn fn, py::object out_obj) {  // x's dtype is T
    const auto contiguous_1d = [](const py::array& a) {
        return a.ndim() == 1 &&
               (a.shape(0) <= 1 || a.strides(0) == static_cast<py::ssize_t>(sizeof(T)));
    };
    if (!contiguous_1d(x)) throw py::value_error("x must be a contiguous 1-d array");
    element_strides<T>(x, "x");  // checks the alignment
    py::array out = out_obj.is_none()
                        ? py::array(dtype_of<T>(), std::vector<py::ssize_t>{x.shape(0)})
                        : out_obj.cast<py::array>();
    check_dtype<T>(out, "out");
    if (!contiguous_1d(out) || out.shape(0) != x.shape(0) || !out.writeable())
        throw py::value_error("out must be a writeable contiguous 1-d array of x's length");
    element_strides<T>(out, "out");
    const T* in = static_cast<const T*>(x.data());
    T* o = static_cast<T*>(out.mutable_data());
    const auto n = static_cast<std::size_t>(x.shape(0));
    {
        py::gil_scoped_release release;
        const Kernels<T>& k = kernels_of<T>(active_kernels());
        (fn == Fn::exp     ? k.exp
         : fn == Fn::log   ? k.log
         : fn == Fn::log1p ? k.log1p
                           : k.tanh)(in, o, n);
    }
    return out;
}

py::array elementwise_any(const py::array& x, Fn fn, py::object out) {
    return dispatch_float(x.dtype(), "x", [&](auto element) {
        return elementwise<typename decltype(element)::type>(x, fn, std::move(out));
    });
}

}  // namespace

void register_config(py::module_& m) {
    m.def(
        "simd_target", [] { return std::string(active_kernels().name); },
        "name of the SIMD target in use");
    m.def(
        "targets",
        [] {
            py::list out;
            for (const TargetInfo& t : targets())
                out.append(py::make_tuple(t.name, t.compiled, t.supported));
            return out;
        },
        "(name, compiled, supported by this CPU) for every target, best first");
    m.def(
        "set_target",
        [](const std::string& name) {
            try {
                set_target(name);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        },
        py::arg("name"), "switch the SIMD target for the whole process");
    m.def("env_warning", &env_warning, "problem with FASTSOFTMAX_SIMD, or ''");
    m.def(
        "num_threads", [] { return num_threads(); },
        "the number of threads a call may use (see fastsoftmax.get_num_threads)");
    m.def(
        "set_num_threads",
        [](py::ssize_t n) {
            if (n < 1)
                throw py::value_error("the number of threads must be at least 1, got " +
                                      std::to_string(n));
            set_num_threads(static_cast<std::size_t>(n));
        },
        py::arg("n"), "set the number of threads calls may use (n >= 1)");
    m.def(
        "default_num_threads", [] { return default_num_threads(); },
        "the number of CPUs this process may run on (sched_getaffinity)");
    m.def(
        "build_info",
        [] {
            py::dict d;
            d["version"] = FASTSOFTMAX_VERSION;
            d["compiler"] = FASTSOFTMAX_COMPILER;
            d["build_type"] = FASTSOFTMAX_BUILD_TYPE;
            d["cxx_flags"] = FASTSOFTMAX_CXX_FLAGS;
            d["target_flags"] = FASTSOFTMAX_TARGET_FLAGS;
            return d;
        },
        "how this extension was built");
    m.def(
        "vexp",
        [](const py::array& x, py::object out) {
            return elementwise_any(x, Fn::exp, std::move(out));
        },
        py::arg("x"), py::arg("out") = py::none(),
        "our vectorized exp on a contiguous 1-d float32/float64 array (active target)");
    m.def(
        "vlog",
        [](const py::array& x, py::object out) {
            return elementwise_any(x, Fn::log, std::move(out));
        },
        py::arg("x"), py::arg("out") = py::none(),
        "our vectorized log on a contiguous 1-d float32/float64 array (active target)");
    m.def(
        "vlog1p",
        [](const py::array& x, py::object out) {
            return elementwise_any(x, Fn::log1p, std::move(out));
        },
        py::arg("x"), py::arg("out") = py::none(),
        "our vectorized log1p (the cross-entropy's) on a contiguous 1-d float32/float64 array "
        "(active target)");
    m.def(
        "vtanh",
        [](const py::array& x, py::object out) {
            return elementwise_any(x, Fn::tanh, std::move(out));
        },
        py::arg("x"), py::arg("out") = py::none(),
        "our vectorized tanh (softcap) on a contiguous 1-d float32/float64 array (active target)");
}

}  // namespace fastsoftmax::bindings
