// The N-d driver. It chooses, per call, one of three ways to feed kernels:
//   rows    - the reduction axis is contiguous in every operand: the other
//             axes are coalesced and the innermost one is passed as `rows`;
//   columns - another axis is contiguous in every operand: kernels vectorize
//             across it, one lane per independent reduction (no transpose);
//   gather  - anything else (e.g. a negative stride on the reduction axis):
//             each row is copied into a contiguous buffer and back.
#include "fastsoftmax/driver.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "nd_walk.hpp"

namespace fastsoftmax {
namespace {

using nd::coalesce;
using nd::Dim;
using nd::for_each_index;
using nd::kMaxOperands;

template <class T>
void call_rows(const Kernels<T>& k, Op op, const T* a, std::ptrdiff_t as, const T* b,
               std::ptrdiff_t bs, T* o, std::ptrdiff_t os, std::size_t rows, std::size_t n) {
    switch (op) {
        case Op::softmax:
            return k.softmax_rows(a, as, o, os, rows, n);
        case Op::log_softmax:
            return k.log_softmax_rows(a, as, o, os, rows, n);
        case Op::logsumexp:
            return k.logsumexp_rows(a, as, o, os, rows, n);
        case Op::softmax_backward:
            return k.softmax_backward_rows(a, as, b, bs, o, os, rows, n);
        case Op::log_softmax_backward:
            return k.log_softmax_backward_rows(a, as, b, bs, o, os, rows, n);
    }
}

template <class T>
void call_cols(const Kernels<T>& k, Op op, const T* a, std::ptrdiff_t as, const T* b,
               std::ptrdiff_t bs, T* o, std::ptrdiff_t os, std::size_t n, std::size_t inner) {
    switch (op) {
        case Op::softmax:
            return k.softmax_cols(a, as, o, os, n, inner);
        case Op::log_softmax:
            return k.log_softmax_cols(a, as, o, os, n, inner);
        case Op::logsumexp:
            return k.logsumexp_cols(a, as, o, n, inner);
        case Op::softmax_backward:
            return k.softmax_backward_cols(a, as, b, bs, o, os, n, inner);
        case Op::log_softmax_backward:
            return k.log_softmax_backward_cols(a, as, b, bs, o, os, n, inner);
    }
}

}  // namespace

template <class T>
void apply(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
           const Strided<const T>& in0, const Strided<const T>* in1, const Strided<T>& out) {
    const std::size_t ndim = shape.size();
    if (axis >= ndim) throw std::invalid_argument("axis out of range");
    const bool reduce = (op == Op::logsumexp);
    const std::size_t k = in1 ? 3 : 2;  // operands: in0, [in1], out (last)
    const std::size_t o = k - 1;
    const std::size_t n = shape[axis];
    const Kernels<T>& kern = kernels_of<T>(active_kernels());

    std::ptrdiff_t axis_stride[kMaxOperands] = {in0.strides[axis], in1 ? in1->strides[axis] : 0, 0};
    axis_stride[o] = reduce ? 0 : out.strides[axis];

    std::vector<Dim> dims;
    for (std::size_t d = 0; d < ndim; ++d) {
        if (d == axis) continue;
        if (shape[d] == 0) return;  // nothing to compute
        if (shape[d] == 1) continue;
        Dim dim{shape[d], {in0.strides[d], in1 ? in1->strides[d] : 0, 0}};
        dim.stride[o] = out.strides[d];
        dims.push_back(dim);
    }
    if (n == 0 && !reduce) return;

    const T* const a = in0.data;
    const T* const b = in1 ? in1->data : nullptr;
    T* const y = out.data;

    // rows: every operand (but a reduced output) is contiguous along the axis
    bool rows_ok = true;
    for (std::size_t i = 0; i < k; ++i)
        rows_ok = rows_ok && (n <= 1 || axis_stride[i] == 1 || (reduce && i == o));
    if (rows_ok) {
        std::vector<Dim> c = coalesce(dims, k);
        Dim last{1, {0, 0, 0}};
        if (!c.empty()) {
            last = c.back();
            c.pop_back();
        }
        for_each_index(c, k, [&](const std::ptrdiff_t* off) {
            call_rows(kern, op, a + off[0], last.stride[0], b ? b + off[1] : nullptr,
                      last.stride[1], y + off[o], last.stride[o], last.size, n);
        });
        return;
    }

    // columns: some other axis is contiguous in every operand
    for (std::size_t j = dims.size(); j-- > 0;) {
        bool unit = true;
        for (std::size_t i = 0; i < k; ++i) unit = unit && dims[j].stride[i] == 1;
        if (!unit) continue;
        const std::size_t inner = dims[j].size;
        std::vector<Dim> rest(dims);
        rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(j));
        for_each_index(coalesce(rest, k), k, [&](const std::ptrdiff_t* off) {
            call_cols(kern, op, a + off[0], axis_stride[0], b ? b + off[1] : nullptr,
                      axis_stride[1], y + off[o], axis_stride[o], n, inner);
        });
        return;
    }

    // gather: copy each row into contiguous buffers
    std::vector<T> buf_a(n), buf_b(b ? n : 0), buf_y(reduce ? 1 : n);
    for_each_index(coalesce(dims, k), k, [&](const std::ptrdiff_t* off) {
        for (std::size_t i = 0; i < n; ++i) {
            buf_a[i] = a[off[0] + static_cast<std::ptrdiff_t>(i) * axis_stride[0]];
            if (b) buf_b[i] = b[off[1] + static_cast<std::ptrdiff_t>(i) * axis_stride[1]];
        }
        call_rows(kern, op, buf_a.data(), 0, b ? buf_b.data() : nullptr, 0, buf_y.data(), 0, 1, n);
        if (reduce) {
            y[off[o]] = buf_y[0];
        } else {
            for (std::size_t i = 0; i < n; ++i)
                y[off[o] + static_cast<std::ptrdiff_t>(i) * axis_stride[o]] = buf_y[i];
        }
    });
}

template void apply<float>(Op, const std::vector<std::size_t>&, std::size_t,
                           const Strided<const float>&, const Strided<const float>*,
                           const Strided<float>&);
template void apply<double>(Op, const std::vector<std::size_t>&, std::size_t,
                            const Strided<const double>&, const Strided<const double>*,
                            const Strided<double>&);

}  // namespace fastsoftmax
