// fastsoftmax._core: registration only; each area lives in its own file.
#include <pybind11/pybind11.h>

#include "arrays.hpp"

namespace py = pybind11;

namespace fastsoftmax::bindings {
void register_softmax(py::module_& m);
void register_config(py::module_& m);
void register_cross_entropy(py::module_& m);
void register_parts(py::module_& m);
void register_divergence(py::module_& m);
void register_sampling(py::module_& m);
}  // namespace fastsoftmax::bindings

PYBIND11_MODULE(_core, m) {
    m.doc() =
        "fastsoftmax's compiled kernels; use the functions of the fastsoftmax package instead";
    py::register_exception<fastsoftmax::bindings::Fallback>(m, "Fallback", PyExc_ValueError);
    fastsoftmax::bindings::register_softmax(m);
    fastsoftmax::bindings::register_cross_entropy(m);
    fastsoftmax::bindings::register_parts(m);
    fastsoftmax::bindings::register_divergence(m);
    fastsoftmax::bindings::register_sampling(m);
    fastsoftmax::bindings::register_config(m);
}
