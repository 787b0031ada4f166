// _core.sample and _core.philox4x64 (fastsoftmax/sampling.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "arrays.hpp"
#include "fastsoftmax/sampling.hpp"

namespace fastsoftmax::bindings {
namespace {

// (tokens int64 (rows,), log probabilities float64 or None, probabilities or None)
template <class T>
py::tuple sample(const py::array& x, const SampleOptions& o, bool want_logprobs, bool want_probs) {
    check_dtype<T>(x, "logits");
    if (x.ndim() != 2 || x.shape(1) == 0 ||
        (x.shape(0) > 0 && x.strides(1) != static_cast<py::ssize_t>(sizeof(T))))
        throw py::value_error("logits must be 2-d with contiguous rows of at least one class");
    const auto rows = static_cast<std::size_t>(x.shape(0)),
               n = static_cast<std::size_t>(x.shape(1));
    const Strided<const T> in = as_input<T>(x, "logits");
    py::array_t<std::int64_t> tokens(static_cast<py::ssize_t>(rows));
    py::object lp = py::none(), pr = py::none();
    double* lpd = nullptr;
    double* prd = nullptr;
    if (want_logprobs) {
        py::array_t<double> a(static_cast<py::ssize_t>(rows));
        lpd = a.mutable_data();
        lp = a;
    }
    if (want_probs) {
        py::array_t<double> a({x.shape(0), x.shape(1)});
        prd = a.mutable_data();
        pr = a;
    }
    std::int64_t* tk = tokens.mutable_data();
    try {
        py::gil_scoped_release release;
        sample_rows<T>(in.data, rows, n, in.strides[0], o, tk, lpd, prd);
    } catch (const BadRow& e) {
        throw py::value_error("logits row " + std::to_string(e.row) +
                              " has no distribution to sample: " + e.what());
    }
    return py::make_tuple(tokens, lp, pr);
}

}  // namespace

void register_sampling(py::module_& m) {
    m.def(
        "sample",
        [](const py::array& x, double temperature, std::size_t top_k, double top_p, double min_p,
           std::uint64_t seed, bool want_logprobs, bool want_probs, std::uint64_t first_row) {
            if (!(temperature > 0) || !(top_p > 0 && top_p <= 1) || !(min_p >= 0 && min_p <= 1))
                throw py::value_error("temperature, top_p or min_p out of range");
            const SampleOptions o{temperature, top_k, top_p, min_p, seed, first_row};
            return dispatch_float(x.dtype(), "logits", [&](auto element) {
                using T = typename decltype(element)::type;
                return sample<T>(x, o, want_logprobs, want_probs);
            });
        },
        py::arg("logits"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"),
        py::arg("min_p"), py::arg("seed"), py::arg("want_logprobs"), py::arg("want_probs"),
        py::arg("first_row") = 0,
        "(tokens, log probabilities or None, filtered probabilities or None) of 2-d logits "
        "with contiguous rows (see fastsoftmax.sample)");
    m.def(
        "philox4x64",
        [](std::vector<std::uint64_t> counter, std::vector<std::uint64_t> key) {
            if (counter.size() != 4 || key.size() != 2)
                throw py::value_error("counter: 4 words, key: 2 words");
            std::uint64_t out[4];
            philox4x64(counter.data(), key.data(), out);
            return py::make_tuple(out[0], out[1], out[2], out[3]);
        },
        py::arg("counter"), py::arg("key"), "Philox4x64-10 of one counter (for the tests)");
}

}  // namespace fastsoftmax::bindings
