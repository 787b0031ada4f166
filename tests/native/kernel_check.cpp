// Runs the cases of a file written by tests/native/neon_check.py through the
// C++ API (driver.hpp's apply, cross_entropy.hpp's cross_entropy) on the
// active SIMD target, and writes their outputs for the host to check: the
// kernels of a target the host cannot run (NEON, under qemu-aarch64) against
// references computed on the host. No Python here.
//
//   kernel_check CASES OUTPUTS [THREADS]     (FASTSOFTMAX_SIMD picks the target)
//
// prints "target <name>" (and any warning about FASTSOFTMAX_SIMD) first.
// THREADS: the calls' threads (default: the CPUs it may run on); the pieces
// of a call depend on its shape only, so this changes no result.
//
// Both files are little-endian, fields packed, in this order:
//   CASES   "FSNC", u32 count, then per case:
//           u32 op (0-4: Op; 5: cross-entropy; 6-9: the element-wise exp,
//           log, log1p, tanh of a contiguous kX into kOut), u32 dtype (0 float32,
//           1 float64, 2 bfloat16, 3 float16), u32 ndim, u32 axis,
//           u64 shape[ndim], f64 temperature, f64 label_smoothing, f64 z_loss,
//           f64 softcap, i64 ignore_index, u32 reduction (0 none, 1 sum,
//           2 mean), u32 operands, then per operand:
//             u32 role (Role below), u32 memory (kOwn: its bytes follow;
//             kFresh: that many bytes of kPoison, an output's; another role:
//             the memory of that one, an output in place), u64 bytes,
//             i64 offset (elements), u32 nstrides, i64 strides[nstrides]
//             (elements), then its bytes (kOwn only);
//   OUTPUTS "FSNR", u32 count, then per case:
//           u32 status (0 ok, 1 an exception), u32 length, the message, f64
//           the cross-entropy's reduced loss, u32 outputs, then per output
//           (kOut, kLossRows, kLseRows, as given) u32 role, u64 bytes, the
//           bytes of its whole memory (the parts around a view included).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastsoftmax/cross_entropy.hpp"
#include "fastsoftmax/dispatch.hpp"
#include "fastsoftmax/driver.hpp"
#include "fastsoftmax/half.hpp"
#include "fastsoftmax/kernels.hpp"
#include "fastsoftmax/parallel.hpp"

namespace {

using fastsoftmax::bfloat16;
using fastsoftmax::compute_t;
using fastsoftmax::float16;
using fastsoftmax::Strided;

// What an operand is (the same numbers as neon_check.py's X, Y, OUT, ...).
enum Role : std::uint32_t {
    kX,          // the input (the logits; grad of the backward ops)
    kY,          // the backward ops' y
    kOut,        // the output (the cross-entropy's gradient)
    kWhere,      // the mask, one byte per element
    kLabels,     // integer labels (int64, per example)
    kTarget,     // probabilities
    kLse,        // a saved logsumexp (compute type, per example)
    kWeight,     // class weights (compute type, contiguous)
    kGradScale,  // per-example gradient factors (float64, contiguous)
    kLossRows,   // per-example losses out (float64, contiguous)
    kLseRows,    // per-example logsumexp out (float64, contiguous)
    kRoles
};
constexpr std::uint32_t kOwn = 0xffffffffu, kFresh = 0xfffffffeu;
// A fresh output's bytes: no kernel's answer (1.5e16 in float32, 203.25 in float16).
constexpr unsigned char kPoison = 0x5a;
constexpr std::uint32_t kCrossEntropy = 5, kExp = 6, kTanh = 9;

struct Operand {
    bool given = false;
    std::uint32_t shares = kOwn;       // or the role whose memory this one uses
    std::vector<unsigned char> bytes;  // (operator new's alignment suits every element type)
    std::int64_t offset = 0;
    std::vector<std::ptrdiff_t> strides;
};

struct Case {
    std::uint32_t op = 0, dtype = 0, reduction = 0;
    std::size_t axis = 0;
    std::vector<std::size_t> shape;
    double temperature = 1, smoothing = 0, z_loss = 0, softcap = 0;
    std::int64_t ignore_index = -100;
    Operand operands[kRoles];

    bool has(Role r) const { return operands[r].given; }
    // The memory of operand r (its own, or the one it shares).
    std::vector<unsigned char>& memory(Role r) {
        const std::uint32_t owner = operands[r].shares == kOwn ? r : operands[r].shares;
        return operands[owner].bytes;
    }
    template <class E>
    E* data(Role r) {
        return reinterpret_cast<E*>(memory(r).data()) + operands[r].offset;
    }
    template <class E>
    Strided<E> strided(Role r) {
        return {data<E>(r), operands[r].strides};
    }
};

class Reader {
  public:
    explicit Reader(std::FILE* f) : f_(f) {}
    template <class E>
    E get() {
        E v;
        bytes(&v, sizeof v);
        return v;
    }
    void bytes(void* p, std::size_t n) {
        if (n && std::fread(p, 1, n, f_) != n) throw std::runtime_error("truncated cases file");
    }

  private:
    std::FILE* f_;
};

class Writer {
  public:
    explicit Writer(std::FILE* f) : f_(f) {}
    template <class E>
    void put(E v) {
        bytes(&v, sizeof v);
    }
    void bytes(const void* p, std::size_t n) {
        if (n && std::fwrite(p, 1, n, f_) != n) throw std::runtime_error("cannot write outputs");
    }

  private:
    std::FILE* f_;
};

Case read_case(Reader& in) {
    Case c;
    c.op = in.get<std::uint32_t>();
    if (c.op > kTanh) throw std::runtime_error("unknown op");
    c.dtype = in.get<std::uint32_t>();
    const auto ndim = in.get<std::uint32_t>();
    c.axis = in.get<std::uint32_t>();
    for (std::uint32_t d = 0; d < ndim; ++d) c.shape.push_back(in.get<std::uint64_t>());
    c.temperature = in.get<double>();
    c.smoothing = in.get<double>();
    c.z_loss = in.get<double>();
    c.softcap = in.get<double>();
    c.ignore_index = in.get<std::int64_t>();
    c.reduction = in.get<std::uint32_t>();
    const auto count = in.get<std::uint32_t>();
    for (std::uint32_t i = 0; i < count; ++i) {
        const auto role = in.get<std::uint32_t>();
        if (role >= kRoles) throw std::runtime_error("unknown operand role");
        Operand& o = c.operands[role];
        o.given = true;
        const auto memory = in.get<std::uint32_t>();
        const auto size = in.get<std::uint64_t>();
        o.offset = in.get<std::int64_t>();
        const auto nstrides = in.get<std::uint32_t>();
        for (std::uint32_t d = 0; d < nstrides; ++d) o.strides.push_back(in.get<std::int64_t>());
        if (role <= kLse && nstrides != ndim && c.op < kExp)  // (the others are contiguous)
            throw std::runtime_error("an operand without one stride per dimension");
        if (memory == kOwn) {
            o.bytes.resize(size);
            in.bytes(o.bytes.data(), size);
        } else if (memory == kFresh) {
            o.bytes.assign(size, kPoison);
        } else if (memory < kRoles && c.operands[memory].given) {
            o.shares = memory;
        } else {
            throw std::runtime_error("an operand shares the memory of one not given before it");
        }
    }
    return c;
}

// softmax, log_softmax, logsumexp and the two backward ops, as register_softmax.cpp calls them.
template <class S>
void run_family(Case& c) {
    fastsoftmax::SoftmaxParams params;
    params.scale = 1.0 / c.temperature;
    const Strided<const S> x = c.strided<const S>(kX);
    Strided<const S> y;
    if (c.has(kY)) y = c.strided<const S>(kY);
    Strided<const unsigned char> where;
    if (c.has(kWhere)) where = c.strided<const unsigned char>(kWhere);
    fastsoftmax::apply<S>(static_cast<fastsoftmax::Op>(c.op), c.shape, c.axis, x,
                          c.has(kY) ? &y : nullptr, c.strided<S>(kOut), params,
                          c.has(kWhere) ? &where : nullptr);
}

// The fused cross-entropy, with the options as register_cross_entropy.cpp fills them.
template <class S>
double run_cross_entropy(Case& c) {
    using C = compute_t<S>;
    fastsoftmax::CeOptions<S> options;
    options.smoothing = c.smoothing;
    options.z_loss = c.z_loss;
    options.softcap = static_cast<C>(c.softcap);
    options.scale = static_cast<C>(1 / c.temperature);
    options.ignore_index = c.ignore_index;
    options.weight_sum = static_cast<double>(c.shape[c.axis]);
    if (c.has(kWeight)) {
        options.weight = c.data<const C>(kWeight);
        double sum = 0;
        for (std::size_t k = 0; k < c.shape[c.axis]; ++k)
            sum += static_cast<double>(options.weight[k]);
        options.weight_sum = sum;
    }
    const Strided<const S> x = c.strided<const S>(kX);
    Strided<const std::int64_t> labels;
    Strided<const S> target;
    Strided<const C> lse;
    Strided<S> grad;
    if (c.has(kLabels)) labels = c.strided<const std::int64_t>(kLabels);
    if (c.has(kTarget)) target = c.strided<const S>(kTarget);
    if (c.has(kLse)) lse = c.strided<const C>(kLse);
    if (c.has(kOut)) grad = c.strided<S>(kOut);
    const auto optional = [&](Role r) { return c.has(r) ? c.data<double>(r) : nullptr; };
    return fastsoftmax::cross_entropy<S>(
        c.shape, c.axis, x, c.has(kLabels) ? &labels : nullptr, c.has(kTarget) ? &target : nullptr,
        c.has(kLse) ? &lse : nullptr, grad, optional(kGradScale), optional(kLossRows),
        optional(kLseRows), static_cast<fastsoftmax::Reduction>(c.reduction), options);
}

// The vector math of the ULP tests (Kernels::exp, log, log1p, tanh).
template <class S>
void run_math(Case& c) {
    const fastsoftmax::Kernels<S>& k = fastsoftmax::kernels_of<S>(fastsoftmax::active_kernels());
    void (*const math[])(const S*, S*, std::size_t) = {k.exp, k.log, k.log1p, k.tanh};
    math[c.op - kExp](c.data<const S>(kX), c.data<S>(kOut), c.shape[0]);
}

template <class S>
double run(Case& c) {
    if (c.op == kCrossEntropy) return run_cross_entropy<S>(c);
    if (c.op >= kExp && c.op <= kTanh)
        run_math<S>(c);
    else
        run_family<S>(c);
    return 0;
}

double run_any(Case& c) {
    if (c.axis >= c.shape.size()) throw std::runtime_error("axis out of range");
    switch (c.dtype) {
        case 0:
            return run<float>(c);
        case 1:
            return run<double>(c);
        case 2:
            return run<bfloat16>(c);
        case 3:
            return run<float16>(c);
    }
    throw std::runtime_error("unknown dtype");
}

void write_result(Writer& out, Case& c, std::uint32_t status, const std::string& message,
                  double value) {
    out.put(status);
    out.put(static_cast<std::uint32_t>(message.size()));
    out.bytes(message.data(), message.size());
    out.put(value);
    std::uint32_t outputs = 0;
    for (Role r : {kOut, kLossRows, kLseRows}) outputs += c.has(r);
    out.put(outputs);
    for (Role r : {kOut, kLossRows, kLseRows}) {
        if (!c.has(r)) continue;
        const std::vector<unsigned char>& m = c.memory(r);
        out.put(static_cast<std::uint32_t>(r));
        out.put(static_cast<std::uint64_t>(m.size()));
        out.bytes(m.data(), m.size());
    }
}

struct File {
    std::FILE* f;
    File(const char* path, const char* mode) : f(std::fopen(path, mode)) {
        if (!f) throw std::runtime_error(std::string("cannot open ") + path);
    }
    ~File() {
        if (f) std::fclose(f);
    }
    File(const File&) = delete;
    File& operator=(const File&) = delete;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: %s CASES OUTPUTS [THREADS]\n", argv[0]);
        return 2;
    }
    try {
        if (argc == 4) fastsoftmax::set_num_threads(std::stoul(argv[3]));
        std::printf("target %s\n", fastsoftmax::active_kernels().name);
        const std::string warning = fastsoftmax::env_warning();
        if (!warning.empty()) std::printf("warning %s\n", warning.c_str());
        std::fflush(stdout);

        File cases(argv[1], "rb"), results(argv[2], "wb");
        Reader in(cases.f);
        Writer out(results.f);
        char magic[4];
        in.bytes(magic, 4);
        if (std::memcmp(magic, "FSNC", 4) != 0) throw std::runtime_error("not a cases file");
        const auto count = in.get<std::uint32_t>();
        out.bytes("FSNR", 4);
        out.put(count);
        for (std::uint32_t i = 0; i < count; ++i) {
            Case c = read_case(in);
            std::uint32_t status = 0;
            std::string message;
            double value = 0;
            try {
                value = run_any(c);
            } catch (const fastsoftmax::BadLabel& bad) {
                status = 1;
                message = "label " + std::to_string(bad.value) + " out of range";
            } catch (const std::exception& e) {
                status = 1;
                message = e.what();
            }
            write_result(out, c, status, message, value);
        }
        if (std::fflush(results.f) != 0) throw std::runtime_error("cannot write outputs");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kernel_check: %s\n", e.what());
        return 1;
    }
    return 0;
}
