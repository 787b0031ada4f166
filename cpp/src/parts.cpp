// The mergeable parts of the softmax family (fastsoftmax/parts.hpp): the
// (max, sum) pair of each line by the segment kernel that long rows split
// across threads use, and softmax / log_softmax from a merged pair by the
// kernels of those segments' second pass. Lines whose axis is not
// contiguous are copied to a buffer first (the layout planner's gather).
#include "fastsoftmax/parts.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"
#include "layout/copy.hpp"
#include "layout/lines.hpp"
#include "layout/plan.hpp"

namespace fastsoftmax {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Where softmax's sums (softmax_sums) put their exponentials and block
// references: a thread's scratch, kept for lines up to kKeptScratch elements;
// longer lines take a buffer of their own, not zeroed (new T[n]).
template <class T>
class SoftmaxSumScratch {
  public:
    static constexpr std::size_t kKeptScratch = std::size_t{1} << 16;
    explicit SoftmaxSumScratch(std::size_t n) {
        const std::size_t refs = n / kMinSegmentBlock + 1;
        if (n <= kKeptScratch) {
            thread_local std::vector<T> kept_y;
            thread_local std::vector<compute_t<T>> kept_refs;
            if (kept_y.size() < n) kept_y.resize(n);
            if (kept_refs.size() < refs) kept_refs.resize(refs);
            y = kept_y.data();
            ref = kept_refs.data();
        } else {
            own_y_.reset(new T[n]);
            own_refs_.reset(new compute_t<T>[refs]);
            y = own_y_.get();
            ref = own_refs_.get();
        }
    }
    T* y;
    compute_t<T>* ref;

  private:
    std::unique_ptr<T[]> own_y_;
    std::unique_ptr<compute_t<T>[]> own_refs_;
};

// The pair of one contiguous line (see parts.hpp); softmax_sums: the sum
// taken as softmax takes it (through exponentials stored in a scratch row).
template <class T>
MaxSum line_pair(const Kernels<T>& k, const T* x, std::size_t n, const SoftmaxParams& params,
                 bool softmax_sums) {
    if (n == 0) return {-kInf, 0.0, false};
    MaxSum ms;
    if (softmax_sums && sizeof(T) == 4) {  // (see parts.hpp)
        const SoftmaxSumScratch<T> scratch(n);
        ms = k.segment_max_sum(x, n, scratch.y, scratch.ref, params);
    } else {
        ms = k.segment_max_sum(x, n, nullptr, nullptr, params);
    }
    if (!ms.special) return ms;
    bool pos_inf = false;  // special, not only -inf: a NaN or a +inf
    for (std::size_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(to_compute(x[i]));
        if (v != v) return {kNaN, kNaN, true};
        pos_inf = pos_inf || v == kInf;
    }
    return pos_inf ? MaxSum{kInf, 1.0, true} : MaxSum{-kInf, 0.0, false};
}

// op of one contiguous part of a line, given the whole line's pair.
template <class T>
void line_from_pair(const Kernels<T>& k, Op op, const T* x, T* y, std::size_t n, double max,
                    double sum, const SoftmaxParams& params) {
    using C = compute_t<T>;
    constexpr C nan = std::numeric_limits<C>::quiet_NaN(), inf = std::numeric_limits<C>::infinity();
    if (std::isfinite(max) && sum == sum) {
        if (op == Op::softmax)
            k.softmax_from_max_sum(x, y, n, max, sum, params);
        else
            k.log_softmax_segment(x, y, n, max, sum, params);
        return;
    }
    // The whole line's special answers (special_rows.hpp): softmax NaN;
    // log_softmax NaN but where the maximum is +inf with no NaN: NaN at the
    // +inf entries, -inf elsewhere. (x is read before y is written.)
    const bool pos_inf = max == kInf && sum == sum && op == Op::log_softmax;
    for (std::size_t i = 0; i < n; ++i)
        y[i] = to_storage<T>(pos_inf && to_compute(x[i]) != inf ? -inf : nan);
}

SoftmaxParams params_for(std::size_t elements, std::size_t size) {
    SoftmaxParams params;
    params.from_memory = elements * size >= kStreamBytes;
    return params;
}

std::size_t elements_of(const std::vector<std::size_t>& shape) {
    std::size_t e = 1;
    for (const std::size_t d : shape) e *= d;
    return e;
}

}  // namespace

template <class T>
void max_sum_parts(const std::vector<std::size_t>& shape, std::size_t axis,
                   const Strided<const T>& x, const Strided<double>& max,
                   const Strided<double>& sum, bool softmax_sums) {
    const layout::Operand operands[3] = {{layout::Holds::elements, x.strides.data()},
                                         {layout::Holds::strided_line_values, max.strides.data()},
                                         {layout::Holds::strided_line_values, sum.strides.data()}};
    const Kernels<T>& k = kernels_of<T>(active_kernels());
    SoftmaxParams params;                           // (a read pass: nothing is streamed out)
    if (axis < shape.size() && shape[axis] == 0) {  // no values: every pair (-inf, 0)
        std::vector<std::size_t> lines = shape;     // (walked as lines of one value that x,
        lines[axis] = 1;                            // not read, does not have)
        const layout::Operand pairs[2] = {operands[1], operands[2]};
        const layout::Plan plan = layout::plan(lines, axis, pairs, 2, layout::Options{});
        layout::for_each_line(plan, [&](const std::ptrdiff_t* off) {
            max.data[off[0]] = -kInf;
            sum.data[off[1]] = 0.0;
        });
        return;
    }
    layout::walk_lines<T>(
        shape, axis, operands, 3, x.data,
        [&](const T* line, std::size_t n, const std::ptrdiff_t* off, T*, const std::ptrdiff_t*) {
            const MaxSum ms = line_pair(k, line, n, params, softmax_sums);
            max.data[off[1]] = ms.max;
            sum.data[off[2]] = ms.sum;
        });
}

template <class T>
void apply_from_max_sum(Op op, const std::vector<std::size_t>& shape, std::size_t axis,
                        const Strided<const T>& x, const Strided<const double>& max,
                        const Strided<const double>& sum, const Strided<T>& out) {
    if (op != Op::softmax && op != Op::log_softmax)
        throw std::invalid_argument("apply_from_max_sum: softmax or log_softmax only");
    const layout::Operand operands[4] = {{layout::Holds::elements, x.strides.data()},
                                         {layout::Holds::strided_line_values, max.strides.data()},
                                         {layout::Holds::strided_line_values, sum.strides.data()},
                                         {layout::Holds::elements, out.strides.data()}};
    const Kernels<T>& k = kernels_of<T>(active_kernels());
    const SoftmaxParams params = params_for(elements_of(shape), sizeof(T));
    SoftmaxParams in_cache = params;  // (a line through the buffer)
    in_cache.from_memory = false;
    layout::walk_lines<T>(
        shape, axis, operands, 4, x.data,
        [&](const T* line, std::size_t n, const std::ptrdiff_t* off, T* buf,
            const std::ptrdiff_t* axis_stride) {
            const double m = max.data[off[1]], s = sum.data[off[2]];
            if (!buf) return line_from_pair(k, op, line, out.data + off[3], n, m, s, params);
            line_from_pair(k, op, line, buf, n, m, s,
                           in_cache);  // (in place in the buffer)
            layout::copy_line_out(buf, n, out.data + off[3], axis_stride[3]);
        });
}

#define FASTSOFTMAX_PARTS(T)                                                                   \
    template void max_sum_parts<T>(const std::vector<std::size_t>&, std::size_t,               \
                                   const Strided<const T>&, const Strided<double>&,            \
                                   const Strided<double>&, bool);                              \
    template void apply_from_max_sum<T>(Op, const std::vector<std::size_t>&, std::size_t,      \
                                        const Strided<const T>&, const Strided<const double>&, \
                                        const Strided<const double>&, const Strided<T>&);
FASTSOFTMAX_PARTS(float)
FASTSOFTMAX_PARTS(double)
FASTSOFTMAX_PARTS(bfloat16)
FASTSOFTMAX_PARTS(float16)
#undef FASTSOFTMAX_PARTS

}  // namespace fastsoftmax
