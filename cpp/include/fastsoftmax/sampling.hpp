// Sampling one token per row of logits through Hugging Face transformers'
// chain of logits warpers, Temperature -> TopK -> TopP -> MinP
// (min_tokens_to_keep = 1), fused: no sort of the vocabulary and no
// probability array (cpp/src/sampling.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastsoftmax {

struct SampleOptions {
    double temperature = 1.0;  // > 0
    std::size_t top_k = 0;     // 0: no top-k
    double top_p = 1.0;        // in (0, 1]; 1: no top-p
    double min_p = 0.0;        // in [0, 1]; 0: no min-p
    std::uint64_t seed = 0;
    std::uint64_t first_row = 0;  // row r draws with counter first_row + r
};

// A row that has no distribution: a NaN, a +inf, or only -inf.
struct BadRow : std::invalid_argument {
    std::size_t row;
    BadRow(std::size_t r, const std::string& why) : std::invalid_argument(why), row(r) {}
};

// Philox4x64-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as
// easy as 1, 2, 3", SC 2011), the counter-based generator NumPy's Philox bit
// generator runs: out = philox(counter, key).
void philox4x64(const std::uint64_t counter[4], const std::uint64_t key[2], std::uint64_t out[4]);

// The uniform in [0, 1) of (seed, row, draw): the first word of
// philox4x64({row, draw, 0, 0}, {seed, 0}) >> 11, times 2^-53.
double philox_uniform(std::uint64_t seed, std::uint64_t row, std::uint64_t draw);

// rows of n contiguous logits (row r at x + r * stride), n >= 1: tokens[r],
// and with logprobs the token's log probability under the filtered
// distribution; with probs (rows x n, for tests), that distribution. Throws
// BadRow before anything is written.
template <class T>
void sample_rows(const T* x, std::size_t rows, std::size_t n, std::ptrdiff_t stride,
                 const SampleOptions& options, std::int64_t* tokens, double* logprobs,
                 double* probs);

}  // namespace fastsoftmax
