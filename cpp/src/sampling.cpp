// One token per row from the distribution of Hugging Face transformers'
// chain TemperatureLogitsWarper -> TopKLogitsWarper -> TopPLogitsWarper ->
// MinPLogitsWarper (min_tokens_to_keep = 1), by selection instead of sorting:
//   z = x / T (float64);
//   top-k: keep z >= the k-th largest z (ties at it kept, as TopK's `<`);
//   top-p: in the order (z descending, index descending), keep a token while
//     the probability before it is < p, i.e. up to the first whose inclusive
//     sum reaches p (TopP removes cumsum <= 1 - p in ascending order): a
//     quickselect on the probability mass, after the tokens whose total is
//     surely below 1 - p are dropped;
//   min-p: keep p_i >= min_p * max p;
//   draw u (philox_uniform) and take the first kept token, in index order,
//     whose cumulative weight exceeds u * total.
// The exponentials exp(z - max) come from the active target's exp kernel.
#include "fastsoftmax/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>
#include <vector>

#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"

namespace fastsoftmax {

namespace {

// hi:lo = a * b, 128 bits
inline void mulhilo(std::uint64_t a, std::uint64_t b, std::uint64_t& hi, std::uint64_t& lo) {
#if defined(__SIZEOF_INT128__)
    __extension__ typedef unsigned __int128 u128;
    const u128 p = static_cast<u128>(a) * b;
    hi = static_cast<std::uint64_t>(p >> 64);
    lo = static_cast<std::uint64_t>(p);
#else  // (32-bit halves)
    const std::uint64_t a0 = a & 0xFFFFFFFFu, a1 = a >> 32, b0 = b & 0xFFFFFFFFu, b1 = b >> 32;
    const std::uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const std::uint64_t mid = (p00 >> 32) + (p01 & 0xFFFFFFFFu) + (p10 & 0xFFFFFFFFu);
    lo = (mid << 32) | (p00 & 0xFFFFFFFFu);
    hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

}  // namespace

void philox4x64(const std::uint64_t counter[4], const std::uint64_t key[2], std::uint64_t out[4]) {
    constexpr std::uint64_t kM0 = 0xD2E7470EE14C6C93ULL, kM1 = 0xCA5A826395121157ULL;
    constexpr std::uint64_t kW0 = 0x9E3779B97F4A7C15ULL, kW1 = 0xBB67AE8584CAA73BULL;
    std::uint64_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    std::uint64_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += kW0;
            k1 += kW1;
        }
        std::uint64_t hi0, lo0, hi1, lo1;
        mulhilo(kM0, c[0], hi0, lo0);
        mulhilo(kM1, c[2], hi1, lo1);
        const std::uint64_t next[4] = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
        std::copy(next, next + 4, c);
    }
    std::copy(c, c + 4, out);
}

double philox_uniform(std::uint64_t seed, std::uint64_t row, std::uint64_t draw) {
    const std::uint64_t counter[4] = {row, draw, 0, 0}, key[2] = {seed, 0};
    std::uint64_t out[4];
    philox4x64(counter, key, out);
    return static_cast<double>(out[0] >> 11) * 0x1.0p-53;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Token {
    double z;  // x / T
    double e;  // exp(z - max)
    std::int64_t index;
};

// The chain's order: z descending, ties by index descending (TopP's stable
// ascending sort puts the lower index first, so it goes first).
inline bool before(const Token& a, const Token& b) {
    return a.z > b.z || (a.z == b.z && a.index > b.index);
}

// Quickselect by mass over tokens[0, n) (any order): moves to the front the
// tokens kept when `need` is the weight still to cover, i.e. every token whose
// weight before it (in the chain's order) is < need, and returns their number.
std::size_t select_by_mass(Token* tokens, std::size_t n, double need) {
    std::size_t lo = 0, hi = n;
    while (lo < hi) {
        // pivot: the median of three (by the chain's order), moved to hi - 1
        const std::size_t mid = lo + (hi - lo) / 2;
        Token* a = tokens + lo;
        Token* b = tokens + mid;
        Token* c = tokens + hi - 1;
        if (before(*b, *a)) std::swap(*a, *b);
        if (before(*c, *b)) std::swap(*b, *c);
        if (before(*b, *a)) std::swap(*a, *b);
        std::swap(*b, tokens[hi - 1]);
        const Token pivot = tokens[hi - 1];
        // [lo, m): before the pivot
        const std::size_t m = static_cast<std::size_t>(
            std::partition(tokens + lo, tokens + hi - 1,
                           [&](const Token& t) { return before(t, pivot); }) -
            tokens);
        std::swap(tokens[m], tokens[hi - 1]);  // the pivot at m
        double above = 0;
        for (std::size_t i = lo; i < m; ++i) above += tokens[i].e;
        if (above >= need) {
            hi = m;  // the last kept token is before the pivot
            continue;
        }
        need -= above + pivot.e;  // [lo, m] kept
        lo = m + 1;
        if (need <= 0) return lo;  // the pivot was the last
    }
    return lo;  // (rounding: every token kept)
}

// The last token top-p keeps, as its (z, index) key: a token is kept when its
// key comes no later in the chain's order. live(i): not removed before top-p.
// z, e and index: the tokens left by top-k. Few tokens are sorted; many are first binned by z - max
// (1024 bins over 64 units), the bins whose whole mass lies before p * total kept or dropped at
// once, and the selection runs in the one bin that holds the boundary.
template <class Live>
Token top_p_boundary(const double* z, const double* e, const std::int64_t* index, std::size_t n,
                     double m, double total, double p, Live live, std::vector<Token>& work) {
    const double need = p * total;
    work.clear();
    const auto at = [&](std::size_t i) { return Token{z[i], e[i], index[i]}; };
    if (n <= 512) {
        for (std::size_t i = 0; i < n; ++i)
            if (live(i)) work.push_back(at(i));
        std::sort(work.begin(), work.end(), before);
        double run = 0;
        for (const Token& t : work) {
            run += t.e;
            if (run >= need) return t;
        }
        return work.back();
    }
    constexpr std::size_t kBins = 1024;
    constexpr double kScale = kBins / 64.0;
    const auto bin = [&](std::size_t i) {
        const double d = (m - z[i]) * kScale;  // >= 0
        return d < kBins - 1 ? static_cast<std::size_t>(d) : kBins - 1;
    };
    double mass[kBins] = {};
    for (std::size_t i = 0; i < n; ++i)
        if (live(i)) mass[bin(i)] += e[i];
    double before_bin = 0;
    std::size_t b = 0;
    for (; b < kBins && before_bin + mass[b] < need; ++b) before_bin += mass[b];
    if (b == kBins) return {-kInf, 0.0, -1};  // (rounding: every token kept)
    for (std::size_t i = 0; i < n; ++i)
        if (live(i) && bin(i) == b) work.push_back(at(i));
    const std::size_t kept = select_by_mass(work.data(), work.size(), need - before_bin);
    Token last = work[0];
    for (std::size_t i = 1; i < kept; ++i)
        if (before(last, work[i])) last = work[i];
    return last;
}

template <class T>
void sample_row(const Kernels<double>& k, const T* x, std::size_t n, std::size_t row,
                const SampleOptions& o, std::int64_t* token, double* logprob, double* probs,
                std::vector<double>& buf, std::vector<std::int64_t>& idx,
                std::vector<Token>& work) {
    buf.resize(2 * n);
    double* z = buf.data();
    double* e = z + n;
    // z, its maximum and its NaNs, four lanes at a time (no chain of one
    // maximum through every element)
    const bool unit = o.temperature == 1;
    double lanes[4] = {-kInf, -kInf, -kInf, -kInf};
    std::size_t nans[4] = {0, 0, 0, 0};
    const auto take = [&](std::size_t i, std::size_t l) {  // element i into lane l
        double v = static_cast<double>(to_compute(x[i]));
        v = unit ? v : v / o.temperature;
        z[i] = v;
        nans[l] += v != v;
        lanes[l] = v > lanes[l] ? v : lanes[l];
    };
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (std::size_t l = 0; l < 4; ++l) take(i + l, l);
    for (; i < n; ++i) take(i, 0);
    const double m = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
    const bool nan = nans[0] + nans[1] + nans[2] + nans[3] != 0;
    if (nan) throw BadRow(row, "a NaN");
    if (m == kInf) throw BadRow(row, "a +inf in logits / temperature");
    if (m == -kInf) throw BadRow(row, "only -inf");
    // top-k: the k-th largest z, duplicates counted; the tokens at or above it
    // are moved to the front of z (their indices to idx)
    std::size_t c = n;
    idx.resize(n);
    std::int64_t* index = idx.data();
    if (o.top_k > 0 && o.top_k < n) {
        std::priority_queue<double, std::vector<double>, std::greater<double>> heap;
        for (std::size_t i = 0; i < n; ++i) {
            if (heap.size() < o.top_k)
                heap.push(z[i]);
            else if (z[i] > heap.top()) {
                heap.pop();
                heap.push(z[i]);
            }
        }
        const double floor = heap.top();
        c = 0;
        for (std::size_t i = 0; i < n; ++i)
            if (z[i] >= floor) {
                z[c] = z[i];
                index[c++] = static_cast<std::int64_t>(i);
            }
    } else {
        for (std::size_t i = 0; i < n; ++i) index[i] = static_cast<std::int64_t>(i);
    }
    for (std::size_t j = 0; j < c; ++j) e[j] = z[j] - m;
    k.exp(e, e, c);
    const auto live = [&](std::size_t j) { return e[j] > 0; };  // (not -inf)
    Token last{-kInf, 0.0, -1};  // top-p's boundary (none: every token is kept)
    if (o.top_p < 1) {
        double total = 0;
        for (std::size_t j = 0; j < c; ++j) total += e[j];
        last = top_p_boundary(z, e, index, c, m, total, o.top_p, live, work);
    }
    // kept: through top-k, top-p (its key no later than the boundary) and min-p
    // (e = p / max p >= min_p)
    const auto kept = [&](std::size_t j) {
        return live(j) &&
               (last.index < 0 || z[j] > last.z || (z[j] == last.z && index[j] >= last.index)) &&
               e[j] >= o.min_p;
    };
    double total = 0;
    for (std::size_t j = 0; j < c; ++j)
        if (kept(j)) total += e[j];
    const double target = philox_uniform(o.seed, o.first_row + row, 0) * total;
    std::size_t pick = 0;
    double run = 0;
    for (std::size_t j = 0; j < c; ++j) {  // (in index order)
        if (!kept(j)) continue;
        pick = j;  // (rounding: the last kept)
        run += e[j];
        if (run > target) break;
    }
    *token = index[pick];
    if (logprob) *logprob = (z[pick] - m) - std::log(total);
    if (probs) {
        std::fill(probs, probs + n, 0.0);
        for (std::size_t j = 0; j < c; ++j)
            if (kept(j)) probs[index[j]] = e[j] / total;
    }
}

}  // namespace

template <class T>
void sample_rows(const T* x, std::size_t rows, std::size_t n, std::ptrdiff_t stride,
                 const SampleOptions& o, std::int64_t* tokens, double* logprobs, double* probs) {
    const Kernels<double>& k = kernels_of<double>(active_kernels());
    // (a BadRow leaves the caller's fresh outputs unreturned: nothing is written)
    const std::size_t per = units_per_task(rows, n + kRowCost);
    const std::size_t tasks = (rows + per - 1) / per;
    parallel_for(tasks, [&](std::size_t t) {
        std::vector<double> buf;
        std::vector<std::int64_t> idx;
        std::vector<Token> work;
        const std::size_t end = std::min(rows, (t + 1) * per);
        for (std::size_t r = t * per; r < end; ++r)
            sample_row(k, x + static_cast<std::ptrdiff_t>(r) * stride, n, r, o, tokens + r,
                       logprobs ? logprobs + r : nullptr, probs ? probs + r * n : nullptr, buf, idx,
                       work);
    });
}

#define FASTSOFTMAX_SAMPLE(T)                                                        \
    template void sample_rows<T>(const T*, std::size_t, std::size_t, std::ptrdiff_t, \
                                 const SampleOptions&, std::int64_t*, double*, double*);
FASTSOFTMAX_SAMPLE(float)
FASTSOFTMAX_SAMPLE(double)
FASTSOFTMAX_SAMPLE(bfloat16)
FASTSOFTMAX_SAMPLE(float16)
#undef FASTSOFTMAX_SAMPLE

}  // namespace fastsoftmax
