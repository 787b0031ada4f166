// neon_counts OP C ELEMENTS REPEATS: runs OP (softmax, log_softmax, logsumexp with out=;
// ce: the cross-entropy, mean, integer labels, its gradient in place on a copy of the
// logits; copy: that copy alone) on a contiguous (ELEMENTS / C, C) float32 array REPEATS
// times, one thread, on
// the active target (FASTSOFTMAX_SIMD), through the C++ API. bench/neon_counts.py counts
// its instructions under qemu-aarch64; REPEATS = 0 gives the setup's count.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fastsoftmax/cross_entropy.hpp"
#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/driver.hpp"
#include "fastsoftmax/parallel.hpp"

int main(int argc, char** argv) {
    if (argc != 5) return 2;
    const std::string op = argv[1];
    const std::size_t c = std::strtoul(argv[2], nullptr, 10);
    const std::size_t rows = std::strtoul(argv[3], nullptr, 10) / c;
    const int reps = std::atoi(argv[4]);
    fastsoftmax::set_num_threads(1);
    std::vector<float> x(rows * c), y(rows * c), scratch(rows * c);
    std::vector<std::int64_t> labels(rows);
    std::uint32_t s = 12345;
    for (auto& v : x) {
        s = s * 1664525u + 1013904223u;
        v = static_cast<float>(s >> 8) / 16777216.0f * 6.0f - 3.0f;
    }
    for (std::size_t r = 0; r < rows; ++r) labels[r] = static_cast<std::int64_t>(r * 7 % c);
    const std::vector<std::size_t> shape{rows, c};
    const std::vector<std::ptrdiff_t> st{static_cast<std::ptrdiff_t>(c), 1};
    fastsoftmax::Strided<const float> in{x.data(), st};
    double acc = 0;
    for (int i = 0; i < reps; ++i) {
        std::memcpy(scratch.data(), x.data(), x.size() * sizeof(float));
        if (op == "copy") {
            acc += scratch[0];
        } else if (op == "ce") {
            fastsoftmax::CeOptions<float> o;
            o.weight_sum = static_cast<double>(c);
            fastsoftmax::Strided<const float> xs{scratch.data(), st};
            fastsoftmax::Strided<const std::int64_t> lab{labels.data(), {1, 0}};
            fastsoftmax::Strided<float> g{scratch.data(), st};
            acc += fastsoftmax::cross_entropy<float>(shape, 1, xs, &lab, nullptr, nullptr, g,
                                                     nullptr, nullptr, nullptr,
                                                     fastsoftmax::Reduction::mean, o);
        } else {
            fastsoftmax::SoftmaxParams p;
            const auto k = op == "softmax"       ? fastsoftmax::Op::softmax
                           : op == "log_softmax" ? fastsoftmax::Op::log_softmax
                                                 : fastsoftmax::Op::logsumexp;
            // (logsumexp: one value a row, the class axis's stride ignored)
            const std::vector<std::ptrdiff_t> ost =
                k == fastsoftmax::Op::logsumexp ? std::vector<std::ptrdiff_t>{1, 0} : st;
            fastsoftmax::Strided<float> out{y.data(), ost};
            fastsoftmax::apply<float>(k, shape, 1, in, nullptr, out, p);
            acc += y[0];
        }
    }
    std::printf("%s %zu %g\n", fastsoftmax::active_kernels().name, c, acc);
    return 0;
}
