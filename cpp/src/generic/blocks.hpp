// Building blocks of every kernel, written once over a vector wrapper V:
// row maxima, sums of exponentials (ExpSum, in the wide type), the two-float
// factor that scales softmax outputs (Factor), the online (max, sum) walk of a
// row block by block, element-wise maps with streaming stores, lane masks,
// vectorized logs of a few scalars, and the column (chunk) versions of the
// reductions. Generic code keeps scalars and scratch in the compute type
// V::T; pointers to the caller's arrays are in the storage type V::S.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <type_traits>

#include "fastsoftmax/kernels.hpp"
#include "generic/compensated.hpp"
#include "generic/target.hpp"
#include "generic/temperature.hpp"
#include "generic/vec_math.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

constexpr std::size_t kBlock = 64;  // vectors per block of a row (4 KiB)

template <class T>
constexpr T neg_inf() {
    return -std::numeric_limits<T>::infinity();
}

// A double factor (1/sum, for the final scaling of softmax) applied to T
// vectors. For float it is kept as hi + lo (two floats), and e * f =
// fma(e, hi, e * lo) is rounded once, as a division by the sum would be, but
// without a division per element.
template <class V>
struct Factor {
    typename V::reg hi, lo;
    static Factor of(double f) {
        using T = typename V::T;
        const T hi = static_cast<T>(f);
        return {V::set1(hi), V::set1(static_cast<T>(f - static_cast<double>(hi)))};
    }
    static Factor reciprocal(double s) { return of(1.0 / s); }
    typename V::reg apply(typename V::reg e) const {
        if constexpr (sizeof(typename V::T) == 4) return V::fmadd(e, hi, V::mul(e, lo));
        return V::mul(e, hi);  // double: rounding 1/s costs far less than the tolerance
    }
};

// ---------------------------------------------------------------- rows ----

template <class V>
typename V::T row_max(const typename V::S* x, std::size_t n) {
    using T = typename V::T;
    constexpr std::size_t N = V::N;
    auto m0 = V::set1(neg_inf<T>()), m1 = m0, m2 = m0, m3 = m0;
    std::size_t i = 0;
    for (; i + 4 * N <= n; i += 4 * N) {
        m0 = V::max(m0, V::load(x + i));
        m1 = V::max(m1, V::load(x + i + N));
        m2 = V::max(m2, V::load(x + i + 2 * N));
        m3 = V::max(m3, V::load(x + i + 3 * N));
    }
    for (; i + N <= n; i += N) m0 = V::max(m0, V::load(x + i));
    if (i < n) m1 = V::max(m1, V::load_partial(x + i, n - i, neg_inf<T>()));
    return V::hmax(V::max(V::max(m0, m1), V::max(m2, m3)));
}

// The sum of the exponentials that softmax divides by, per lane. A float
// accumulator holding the row maximum's exp(0) = 1 would round every small
// term it adds to 2^-24 (a bias of several ulp on the whole row), so in float
// each pair of vectors is added once and goes straight into the double
// accumulator. Double runs are summed in a register for up to kBlock vectors
// and folded into the compensated sum.
template <class V>
struct ExpSum {
    using reg = typename V::reg;
    static constexpr bool kPairs = sizeof(typename V::T) == 4;
    typename V::Wide wide = V::wide_zero();
    reg run = V::zero();
    std::size_t count = 0;  // vectors in run
    void add2(reg e0, reg e1) {
        if constexpr (kPairs) {
            V::wide_add(wide, V::add(e0, e1));
        } else {
            run = V::add(run, V::add(e0, e1));
            if ((count += 2) >= kBlock) flush();
        }
    }
    void add(reg e) {
        run = V::add(run, e);
        if (++count >= (kPairs ? 2 : kBlock)) flush();
    }
    void flush() {
        V::wide_add(wide, run);
        run = V::zero();
        count = 0;
    }
    double total() {
        flush();
        return V::wide_hsum(wide);
    }
};

// Stores exp((x - m) * s) into y (which may alias x) and returns the sum. y
// is the output (of V::S) or a scratch row of V::T (half precision, see
// kExpInOutput). z: the temperature (temperature.hpp), as in every function
// below that takes one.
template <class V, class Y, class Z>
double row_store_exp_sum(const typename V::S* x, Y* y, std::size_t n, typename V::T m, const Z& z) {
    constexpr std::size_t N = V::N;
    const auto vm = V::set1(m);
    const auto vlo = V::set1(z.floor(m));
    ExpSum<V> s0;
    std::size_t i = 0;
    for (; i + 2 * N <= n; i += 2 * N) {
        const auto e0 = z.exp_sub(V::load(x + i), vm, vlo);
        const auto e1 = z.exp_sub(V::load(x + i + N), vm, vlo);
        V::store(y + i, e0);
        V::store(y + i + N, e1);
        s0.add2(e0, e1);
    }
    for (; i < n; i += N) {
        const std::size_t w = (n - i < N) ? n - i : N;
        const auto e = z.exp_sub(V::load_partial(x + i, w, neg_inf<typename V::T>()), vm, vlo);
        V::store_partial(y + i, w, e);
        s0.add(e);
    }
    return s0.total();
}

// Whether a kernel may keep intermediate values (softmax's unnormalized
// exponentials) in its output array: only when the storage type is the
// compute type. In a half-precision output they would be rounded, and the
// result rounded again (up to 1.5 ulp off); those kernels recompute the
// exponentials from x instead (softmax_row_from_stats), so that every
// output is rounded once.
template <class V>
constexpr bool kExpInOutput = std::is_same_v<typename V::S, typename V::T>;

// Half-precision rows up to this many bytes of float exponentials keep them
// in a scratch row (L2: 1 MiB on Zen 4, with the row of x beside it) between
// the exp pass and the scaling pass; longer rows compute them twice rather
// than take the scratch row through memory. (32, 128256) bfloat16 softmax
// out=: 1.96 ms recomputing, 1.37 ms with the scratch row; float32 1.13 ms.
constexpr std::size_t kHalfScratchBytes = std::size_t(768) << 10;

// Rows up to kLongRowBytes that cross_entropy reads twice (its sums, then
// its gradient from cache), after a load of the label's logit somewhere in
// the row: at the start of a row it asks for the row about
// kPrefetchAheadBytes further on (prefetch_ahead), so that when the array
// comes from memory the lines arrive while this row's arithmetic runs
// (with its gradient, in place, float32: 8192x1024 3.4 -> 2.6 ms, 2048x4096
// 3.0 -> 2.3; arrays in cache 0.95-1.01x). Not for the other ops: in
// softmax_backward and log_softmax_backward it measured 1.1-1.15x slower,
// in log_softmax the same.
constexpr std::size_t kPrefetchAheadBytes = 4096;

// How far ahead softmax's rows from memory ask for theirs: the rows up to
// kLongRowBytes (softmax_rows_streamed, with prefetch_ahead) and the blocks of
// longer rows (AheadRowView). Zen 5, one thread, float32 out=
// (bench/out_of_cache.py against the build without): 0.82-1.01x the time at
// (8192, 1024), 0.72-0.90x at (2048, 2048), 0.61-0.68x at (512, 8192),
// softmax_long_rows_streamed 0.71-0.83x at (256, 32000) and (32, 128256),
// log_softmax's long rows 0.85-0.96x and 0.88-1.10x. Measured and not used:
// log_softmax's row groups 0.96-1.08x, the backward rows 1.06-1.38x,
// logsumexp's long rows (they store nothing) 0.90-1.21x.
constexpr std::size_t kStreamPrefetchBytes = std::size_t(32) << 10;

// How many rows of n elements of S ahead prefetch_ahead asks for, about
// `ahead_bytes` on: 0 (none) for rows past kLongRowBytes.
template <class S>
std::size_t rows_ahead(std::size_t n, std::size_t ahead_bytes = kPrefetchAheadBytes) {
    const std::size_t bytes = n * sizeof(S);
    if (bytes == 0 || bytes > kLongRowBytes) return 0;
    return std::max<std::size_t>(1, ahead_bytes / bytes);
}

// Asks for the `bytes` at p into cache, a 64-byte line at a time.
inline void prefetch_lines(const char* p, std::size_t bytes) {
    for (std::size_t k = 0; k < bytes; k += 64) __builtin_prefetch(p + k);
}

// Asks for the lines of row r + ahead (of `rows`, `stride` apart) into cache.
template <class S>
void prefetch_ahead(const S* row, std::ptrdiff_t stride, std::size_t r, std::size_t rows,
                    std::size_t n, std::size_t ahead) {
    // (no early return: GCC 12 then dropped the loop of prefetches as if it
    // did nothing)
    const std::size_t bytes = (ahead > 0 && r + ahead < rows) ? n * sizeof(S) : 0;
    prefetch_lines(reinterpret_cast<const char*>(row) +
                       static_cast<std::ptrdiff_t>(ahead * sizeof(S)) * stride,
                   bytes);
}

// A heap buffer. Not std::vector: its out-of-line members would be compiled
// with this target's flags yet shared (one copy per program) with the other
// targets' code, so a baseline CPU could run AVX-512 instructions.
template <class T>
struct Scratch {
    T* data;
    explicit Scratch(std::size_t n)
        : data(n ? static_cast<T*>(std::malloc(n * sizeof(T))) : nullptr) {
        if (n && !data) throw std::bad_alloc();
    }
    ~Scratch() { std::free(data); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

// The kernels' scratch rows (half precision's float rows, see kExpInOutput;
// softmax's rows streamed from memory): one buffer per thread, kept between
// calls and only grown (float32 softmax: up to 2 MiB), since a fresh
// allocation of 128 KiB and more is mapped and faulted in on every call
// (measured: the cross-entropy of (256, 32000) bfloat16 spent 8% of its time
// zeroing pages).
// One user at a time per thread: a kernel never calls another that uses it.
template <class T>
T* thread_scratch(std::size_t n) {
    struct Buffer {
        T* data = nullptr;
        std::size_t size = 0;
        ~Buffer() { std::free(data); }
    };
    thread_local Buffer buffer;
    if (buffer.size < n) {
        std::free(buffer.data);
        buffer.data = static_cast<T*>(std::malloc(n * sizeof(T)));
        buffer.size = buffer.data ? n : 0;
        if (!buffer.data) throw std::bad_alloc();
    }
    return buffer.data;
}

// Arrays of at least kStreamBytes come from and go to memory: their outputs
// are written with non-temporal (streaming) stores, which saves reading each
// destination line before writing it.

// Non-temporal writes of the rows of an output, one row after another. A
// row's aligned middle goes out straight away. The partial vectors at its
// two ends cannot (a non-temporal store writes a whole aligned vector), and
// an ordinary store to a line that is not in cache first reads it from
// memory and holds up the stores queued behind it: with NumPy's rows, 16
// bytes off a line, that cost 8192x1024 float32 softmax 2.6 -> 2.0 ms. So a
// row's last partial vector waits here, and when the next row starts right
// after it the two make one aligned vector, streamed whole at the end of
// that next row: not at once, since reading the vector back right after
// its two parts were stored would wait for every store queued before them.
// Rows that do not follow each other get ordinary stores at their ends. One
// per thread and batch of rows: finish() writes what still waits and fences
// the stores, before another thread may read them.
template <class V>
class StreamedRows {
    using S = typename V::S;
    using reg = typename V::reg;
    static constexpr std::size_t N = V::N;
    static constexpr std::size_t kAlign = N * sizeof(S);  // what V::stream needs

  public:
    // join_rows false: every row's ends by ordinary stores, at once (as
    // log_softmax's rows measured faster: 8192x1024 float32 out=, rows 16
    // bytes off a line, 2.4 against 2.7 ms joined).
    explicit StreamedRows(bool join_rows = true) : join_(join_rows) {}
    bool joins_rows() const { return join_; }
    // The elements of a row at y (of n) before its first aligned vector.
    static std::size_t head(const S* y, std::size_t n) {
        const auto addr = reinterpret_cast<std::uintptr_t>(y);  // aligned to sizeof(S)
        return std::min(((kAlign - addr % kAlign) % kAlign) / sizeof(S), n);
    }
    // Starts the row at y with its first h = head(y, n) elements, the first
    // lanes of values() (called only for h > 0: computing a vector of none
    // measured 5% of log_softmax): whole with the previous row's wait if that
    // ends at y.
    template <class Values>
    void begin(S* y, std::size_t h, Values values) {
        if (waiting_ > 0 && end_ == y && waiting_ + h == N) {
            V::store_partial(buf_ + waiting_, h, values());
            whole_ = y - waiting_;
            waiting_ = 0;
            return;
        }
        flush();
        if (h > 0) V::store_partial(y, h, values());
    }
    // Ends a row at `end` with its last t < N elements, the first lanes of
    // values() (called only for t > 0), which start on an aligned vector:
    // they wait for the next row.
    template <class Values>
    void end(S* end, std::size_t t, Values values) {
        flush();
        if (t == 0) return;
        V::store_partial(buf_, t, values());
        waiting_ = t;
        end_ = end;
    }
    void finish() {
        flush();
        V::stream_fence();
    }

  private:
    void flush() {
        if (whole_) V::stream(whole_, V::load(buf_));
        whole_ = nullptr;
        if (waiting_ > 0)
            V::store_partial(end_ - waiting_, waiting_, V::load_partial(buf_, waiting_, 0));
        waiting_ = 0;
    }
    alignas(64) S buf_[N] = {};
    S* whole_ = nullptr;  // where buf_ goes as one vector
    S* end_ = nullptr;    // where the waiting values end
    std::size_t waiting_ = 0;
    bool join_;
};

// One row of y written through StreamedRows a stretch at a time, beside
// other work: begin(), to(limit) as often as wanted (the whole vectors that
// end by limit), end(). at(k, w) gives the values of y[k, k + w), w <= N, in
// its first lanes.
template <class V, class At>
class RowStream {
    using S = typename V::S;
    static constexpr std::size_t N = V::N;

  public:
    RowStream(S* y, std::size_t n, At at) : y_(y), n_(n), at_(at) {}
    void begin(StreamedRows<V>& out) {
        j_ = StreamedRows<V>::head(y_, n_);
        out.begin(y_, j_, [&] { return at_(0, j_); });
    }
    // (always inlined: it runs a pair of vectors at a time inside another
    // row's loop, softmax_long_rows_streamed's, where GCC 12 left it out of
    // line)
    __attribute__((always_inline)) void to(std::size_t limit) {
        for (; j_ + 2 * N <= limit; j_ += 2 * N) {
            V::stream(y_ + j_, at_(j_, N));
            V::stream(y_ + j_ + N, at_(j_ + N, N));
        }
        if (j_ + N <= limit) {
            V::stream(y_ + j_, at_(j_, N));
            j_ += N;
        }
    }
    void end(StreamedRows<V>& out) {
        to(n_);
        out.end(y_ + n_, n_ - j_, [&] { return at_(j_, n_ - j_); });
    }

  private:
    S* y_;
    std::size_t n_;
    At at_;
    std::size_t j_ = 0;  // the next element to write
};

// The values of e[k, k + w) * f for RowStream (softmax's last pass).
template <class V>
struct ScaledBy {
    const typename V::T* e;
    Factor<V> f;
    typename V::reg operator()(std::size_t k, std::size_t w) const {
        return f.apply(w == V::N ? V::load(e + k) : V::load_partial(e + k, w, 0));
    }
};

// y[i] = op(src[i]) for i < n; src may be y, or a scratch row of V::T. With
// `stream`, y is written with non-temporal stores (StreamedRows).
template <class V, class Op, class Src>
void map_row(const Src* src, typename V::S* y, std::size_t n, Op op, StreamedRows<V>* stream) {
    constexpr std::size_t N = V::N;
    std::size_t i = 0;
    if (stream && !stream->joins_rows()) {
        const std::size_t head = StreamedRows<V>::head(y, n);
        if (head > 0) V::store_partial(y, head, op(V::load_partial(src, head, 0)));
        for (i = head; i + 2 * N <= n; i += 2 * N) {
            V::stream(y + i, op(V::load(src + i)));
            V::stream(y + i + N, op(V::load(src + i + N)));
        }
        for (; i + N <= n; i += N) V::stream(y + i, op(V::load(src + i)));
        if (i < n) V::store_partial(y + i, n - i, op(V::load_partial(src + i, n - i, 0)));
        return;
    }
    if (stream) {
        const std::size_t head = StreamedRows<V>::head(y, n);
        stream->begin(y, head, [&] { return op(V::load_partial(src, head, 0)); });
        for (i = head; i + 2 * N <= n; i += 2 * N) {
            V::stream(y + i, op(V::load(src + i)));
            V::stream(y + i + N, op(V::load(src + i + N)));
        }
        for (; i + N <= n; i += N) V::stream(y + i, op(V::load(src + i)));
        stream->end(y + n, n - i, [&] { return op(V::load_partial(src + i, n - i, 0)); });
        return;
    }
    for (; i + 4 * N <= n; i += 4 * N) {
        V::store(y + i, op(V::load(src + i)));
        V::store(y + i + N, op(V::load(src + i + N)));
        V::store(y + i + 2 * N, op(V::load(src + i + 2 * N)));
        V::store(y + i + 3 * N, op(V::load(src + i + 3 * N)));
    }
    for (; i + N <= n; i += N) V::store(y + i, op(V::load(src + i)));
    if (i < n) V::store_partial(y + i, n - i, op(V::load_partial(src + i, n - i, 0)));
}

// softmax of a row from its (max, sum): y = exp(x - max) * (1 / sum), one
// rounding per output (see kExpInOutput). max finite, sum >= 1.
template <class V, class Z>
void softmax_row_from_stats(const typename V::S* x, typename V::S* y, std::size_t n,
                            typename V::T max, double sum, StreamedRows<V>* stream, const Z& z) {
    const auto vm = V::set1(max);
    const auto vlo = V::set1(z.floor(max));
    const auto inv = Factor<V>::reciprocal(sum);
    map_row<V>(
        x, y, n, [=, &z](typename V::reg v) { return inv.apply(z.exp_sub(v, vm, vlo)); }, stream);
}

// sum(exp(x - m)) over a stretch of a row (at most kBlock*N elements, so
// the float accumulators stay short), per lane, before stretch_total.
template <class V, class Z>
typename V::reg stretch_exp_lanes(const typename V::S* x, std::size_t len, typename V::T m,
                                  const Z& z) {
    constexpr std::size_t N = V::N;
    const auto vm = V::set1(m);
    auto s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
    std::size_t i = 0;
    for (; i + 4 * N <= len; i += 4 * N) {
        s0 = V::add(s0, z.exp_diff(V::load(x + i), vm));
        s1 = V::add(s1, z.exp_diff(V::load(x + i + N), vm));
        s2 = V::add(s2, z.exp_diff(V::load(x + i + 2 * N), vm));
        s3 = V::add(s3, z.exp_diff(V::load(x + i + 3 * N), vm));
    }
    for (; i + N <= len; i += N) s0 = V::add(s0, z.exp_diff(V::load(x + i), vm));
    if (i < len) {
        s1 = V::add(s1, z.exp_diff(V::load_partial(x + i, len - i, neg_inf<typename V::T>()), vm));
    }
    return V::add(V::add(s0, s1), V::add(s2, s3));
}

// The sum of stretch_exp_lanes' lanes, in the wide type.
template <class V>
double stretch_total(typename V::reg lanes) {
    auto wide = V::wide_zero();
    V::wide_add(wide, lanes);
    return V::wide_hsum(wide);
}

// The sum of exp((x - m) * s) over a stretch, in the wide type. Half
// precision (see kExpInOutput) adds each vector to the wide sum as it is:
// a float lane that holds the maximum's exp(0) = 1 would round the small
// terms added to it to multiples of 2^-24, which a log near 0 in 8 or 11
// bits (log_softmax of a peaked row's top class) shows as several ulp.
template <class V, class Z>
double stretch_sum_exp(const typename V::S* x, std::size_t len, typename V::T m, const Z& z) {
    if constexpr (kExpInOutput<V>) {
        return stretch_total<V>(stretch_exp_lanes<V>(x, len, m, z));
    } else {
        constexpr std::size_t N = V::N;
        const auto vm = V::set1(m);
        auto wide = V::wide_zero();
        std::size_t i = 0;
        for (; i + N <= len; i += N) V::wide_add(wide, z.exp_diff(V::load(x + i), vm));
        if (i < len)
            V::wide_add(wide,
                        z.exp_diff(V::load_partial(x + i, len - i, neg_inf<typename V::T>()), vm));
        return V::wide_hsum(wide);
    }
}

template <class S>
bool has_nan(const S* x, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (const auto v = to_compute(x[i]); v != v) return true;
    return false;
}

struct SameMax {
    template <class T>
    T operator()(T m) const {
        return m;
    }
};

// A row as online_walk reads it: each block's maximum and whether it holds a
// NaN (the row's own values here; masked_rows.hpp: its included ones).
template <class V>
struct RowView {
    const typename V::S* x;
    typename V::T max(std::size_t i, std::size_t len) const { return row_max<V>(x + i, len); }
    bool has_nan(std::size_t i, std::size_t len) const {
        return fastsoftmax::FASTSOFTMAX_TARGET::has_nan(x + i, len);
    }
};

// RowView of a row from memory: before each block's maximum, the lines
// kStreamPrefetchBytes past it are asked for (the address formed as an
// integer: past the array's end those lines are never read, and prefetches
// do not fault). The hardware prefetchers alone left the block's maximum
// waiting on memory.
template <class V>
struct AheadRowView : RowView<V> {
    typename V::T max(std::size_t i, std::size_t len) const {
        const auto at = reinterpret_cast<std::uintptr_t>(this->x + i) + kStreamPrefetchBytes;
        prefetch_lines(reinterpret_cast<const char*>(at), len * sizeof(typename V::S));
        return RowView<V>::max(i, len);
    }
};

// One read of the row: per 4 KiB block, the block maximum (from memory), then
// block(b, i, len, ref) (from L1), which returns the block's sum of
// exp(x - ref) against the running maximum ref (-inf for a block of -inf
// entries, whose exponentials are 0). The running sum is rescaled only when
// the maximum grows. special: the maximum is not finite or a NaN was seen.
// map_max: the block's values are f(x) for an increasing f (cross_entropy's
// soft-capping), so their maximum is f(max x). block's sums are of
// exp((x - ref) * scale) (a temperature: temperature.hpp). The blocks'
// maxima and NaN tests come from view (RowView, or a masked row's).
// Always inlined into its caller (and so is online_max_sum): GCC 12 kept the
// cross-entropy's walk with a temperature (a MapMax) out of line, and each
// of those rows then took about 30-60 ns more, in the libm exp and log1p
// calls after it (perf: 10x their samples at T = 1, the same call counts):
// cross_entropy at (4096, 1000), T = 2, 1.13x the plain call, 1.02x inlined.
template <class V, class View, class Block, class MapMax = SameMax>
__attribute__((always_inline)) inline MaxSum online_walk(const View& view, std::size_t n,
                                                         Block&& block, MapMax map_max = {},
                                                         double scale = 1.0) {
    using T = typename V::T;
    constexpr std::size_t B = kBlock * V::N;
    T m = neg_inf<T>();
    NeumaierSum sum;
    for (std::size_t b = 0, i = 0; i < n; ++b, i += B) {
        const std::size_t len = (n - i < B) ? n - i : B;
        const T bm = map_max(view.max(i, len));
        if (!(bm > neg_inf<T>())) {  // block of -inf (or a NaN the max dropped)
            if (bm != bm || view.has_nan(i, len)) return {0, 0, true};
            block(b, i, len, neg_inf<T>());
            continue;
        }
        if (!std::isfinite(bm)) return {0, 0, true};
        if (bm > m) {
            if (sum.value() != 0.0) {
                const double f = std::exp(
                    scaled_difference(static_cast<double>(m), static_cast<double>(bm), scale));
                sum.sum *= f;
                sum.comp *= f;
            }
            m = bm;
        }
        sum.add(block(b, i, len, m));
    }
    const double s = sum.value();
    if (!std::isfinite(m) || s != s) return {0, 0, true};
    return {static_cast<double>(m), s, false};
}

// online_walk over the row x itself.
template <class V, class Block, class MapMax = SameMax>
__attribute__((always_inline)) inline MaxSum online_max_sum(const typename V::S* x, std::size_t n,
                                                            Block&& block, MapMax map_max = {},
                                                            double scale = 1.0) {
    return online_walk<V>(RowView<V>{x}, n, block, map_max, scale);
}

// (View: how the row's blocks are read, RowView or, for a row from memory,
// AheadRowView)
template <class V, template <class> class View = RowView, class Z>
MaxSum row_online_max_sum(const typename V::S* x, std::size_t n, const Z& z) {
    return online_walk<V>(
        View<V>{{x}}, n,
        [x, &z](std::size_t, std::size_t i, std::size_t len, typename V::T ref) {
            return ref == neg_inf<typename V::T>() ? 0.0 : stretch_sum_exp<V>(x + i, len, ref, z);
        },
        SameMax{}, z.scale());
}

// log(s[i]) for i < g as log1p(s[i] - 1), s - 1 formed in double: a log near 0
// (s near 1) keeps the relative accuracy that a 1-ulp result in 8 or 11 bits
// needs (the half-precision outputs; see kExpInOutput). +inf and NaN give
// themselves, as log does.
template <class V>
void logs_near_one(const double* s, typename V::T* out, std::size_t g) {
    using T = typename V::T;
    for (std::size_t i = 0; i < g; i += V::N) {
        T buf[V::N];
        for (std::size_t k = 0; k < V::N; ++k)
            buf[k] = (i + k < g) ? static_cast<T>(s[i + k] - 1.0) : T(0);
        const auto r = V::load(buf);
        V::store(buf, V::select(V::not_finite(r), r, vlog1p<V>(r)));
        for (std::size_t k = 0; k < V::N && i + k < g; ++k) out[i + k] = buf[k];
    }
}

template <class V>
void logs_of(const double* s, typename V::T* out, std::size_t g) {
    using T = typename V::T;
    if constexpr (!kExpInOutput<V>) return logs_near_one<V>(s, out, g);
    for (std::size_t i = 0; i < g; i += V::N) {
        T buf[V::N];
        for (std::size_t k = 0; k < V::N; ++k)
            buf[k] = (i + k < g) ? static_cast<T>(s[i + k]) : T(1);
        V::store(buf, vlog<V>(V::load(buf)));
        for (std::size_t k = 0; k < V::N && i + k < g; ++k) out[i + k] = buf[k];
    }
}

template <class V>
typename V::reg lane_numbers() {
    using T = typename V::T;
    static constexpr T kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static_assert(V::N <= 16);
    return V::load(kIota);
}

// Lanes [0, w) of a vector.
template <class V>
typename V::mask first_lanes(std::size_t w) {
    return V::lt(lane_numbers<V>(), V::set1(static_cast<typename V::T>(w)));
}

// The per-class coefficients of the linear terms of the loss and gradient:
// load(i) for a whole vector at class i, load_partial(i, w) with lanes past

template <class V>
typename V::mask lane_is(std::size_t j) {
    using T = typename V::T;
    return V::eq(lane_numbers<V>(), V::set1(static_cast<T>(j < V::N ? j : 16)));
}

// An ExpSplit before the sums across lanes (ce_stretch_lanes returns it;

template <class V, class Op>
void map_values(const double* in, double* out, std::size_t g, Op op) {
    using T = typename V::T;
    for (std::size_t i = 0; i < g; i += V::N) {
        T buf[V::N];
        for (std::size_t k = 0; k < V::N; ++k) buf[k] = (i + k < g) ? static_cast<T>(in[i + k]) : 0;
        V::store(buf, op(V::load(buf)));
        for (std::size_t k = 0; k < V::N && i + k < g; ++k) out[i + k] = buf[k];
    }
}

// log1p(u): w = 1 + u rounded, then log(w) * u / (w - 1), which corrects the

template <class T>
void fill_row(T* p, std::size_t n, T v) {
    for (std::size_t i = 0; i < n; ++i) p[i] = v;
}

// ------------------------------------------------------------- columns ----
//
// A "chunk" is one vector of lanes across the contiguous axis, at column
// offset c with `w` valid lanes (w == V::N except for the last chunk).

template <class V>
struct Chunk {
    std::size_t w;
    typename V::reg load(const typename V::S* p, typename V::T fill) const {
        return (w == V::N) ? V::load(p) : V::load_partial(p, w, fill);
    }
    void store(typename V::S* p, typename V::reg v) const {
        if (w == V::N)
            V::store(p, v);
        else
            V::store_partial(p, w, v);
    }
};

// A chunk of all V::N lanes: Chunk's loads and stores without the test of
// their width in every step of a column (softmax of 16 classes by tiles
// spent 4 instructions a vector on those tests and branches).
template <class V>
struct FullChunk {
    static constexpr std::size_t w = V::N;
    static typename V::reg load(const typename V::S* p, typename V::T) { return V::load(p); }
    static void store(typename V::S* p, typename V::reg v) { V::store(p, v); }
};

// f(c, chunk) for each chunk of `inner` lanes: FullChunk for the whole ones,
// Chunk for the last one if it is partial. (The same arithmetic either way.)
template <class V, class F>
void for_chunks(std::size_t inner, F f) {
    std::size_t c = 0;
    for (; c + V::N <= inner; c += V::N) f(c, FullChunk<V>{});
    if constexpr (V::N > 1)  // (one lane: never partial)
        if (c < inner) f(c, Chunk<V>{inner - c});
}

constexpr std::size_t kColBlock = 32;  // rows per float accumulator before folding

template <class V, class Ch>
typename V::reg col_max(const typename V::S* x, std::ptrdiff_t xs, std::size_t n, Ch ch) {
    using T = typename V::T;
    auto m0 = V::set1(neg_inf<T>()), m1 = m0;
    std::size_t i = 0;
    for (; i + 2 <= n; i += 2, x += 2 * xs) {
        m0 = V::max(m0, ch.load(x, neg_inf<T>()));
        m1 = V::max(m1, ch.load(x + xs, neg_inf<T>()));
    }
    if (i < n) m0 = V::max(m0, ch.load(x, neg_inf<T>()));
    return V::max(m0, m1);
}

// Sum over the column of exp((x - ref) * s), per lane. kStore: also store
// the exponentials in y, computed with exp_sub (softmax outputs).
template <class V, bool kStore, class Z, class Ch>
typename V::Wide col_sum_exp(const typename V::S* x, std::ptrdiff_t xs, typename V::S* y,
                             std::ptrdiff_t ys, std::size_t n, typename V::reg ref, Ch ch,
                             const Z& z) {
    using T = typename V::T;
    const auto ref_lo = z.floor(ref);
    if constexpr (kStore) {
        // (float: each pair through add2, which forms the sums that one add()
        // after another would; double: add() after add(), in order)
        ExpSum<V> sum;
        std::size_t i = 0;
        for (; i + 2 <= n; i += 2, x += 2 * xs, y += 2 * ys) {
            const auto e0 = z.exp_sub(ch.load(x, neg_inf<T>()), ref, ref_lo);
            const auto e1 = z.exp_sub(ch.load(x + xs, neg_inf<T>()), ref, ref_lo);
            ch.store(y, e0);
            ch.store(y + ys, e1);
            if constexpr (ExpSum<V>::kPairs) {
                sum.add2(e0, e1);
            } else {
                sum.add(e0);
                sum.add(e1);
            }
        }
        if (i < n) {
            const auto e = z.exp_sub(ch.load(x, neg_inf<T>()), ref, ref_lo);
            ch.store(y, e);
            sum.add(e);
        }
        sum.flush();
        return sum.wide;
    } else {
        auto wide = V::wide_zero();
        for (std::size_t i = 0; i < n;) {
            const std::size_t end = (n - i > kColBlock) ? i + kColBlock : n;
            auto s = V::zero();
            for (; i < end; ++i, x += xs) s = V::add(s, z.exp_diff(ch.load(x, neg_inf<T>()), ref));
            V::wide_add(wide, s);
        }
        return wide;
    }
}

// Column lanes need no scalar path: with ref = (max finite ? max : 0), as
// SciPy does, a NaN anywhere makes the lane's sum NaN, a +inf makes it +inf,
// and the formulas below give SciPy's answers lane by lane.

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
