// The one place that knows which target runs: detected once on first use,
// overridable by FASTSOFTMAX_SIMD (like SIMDJSON_FORCE_IMPLEMENTATION), and
// switchable at run time (the tests run every target in one process).
#include "fastsoftmax/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace fastsoftmax {
namespace {

struct Entry {
    const char* name;
    const KernelTable* (*table)();  // nullptr when not compiled in
    bool (*supported)();
};

bool always() { return true; }

#if defined(FASTSOFTMAX_HAVE_AVX512)
const KernelTable* avx512_table() { return &avx512_kernels(); }
bool cpu_avx512() {
    __builtin_cpu_init();
    // libgcc also checks that the OS saves the ZMM state (XGETBV).
    // FMA and AVX2 too: the target is compiled with -mfma, and a VM may mask them
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
}
#endif
#if defined(FASTSOFTMAX_HAVE_AVX2)
const KernelTable* avx2_table() { return &avx2_kernels(); }
bool cpu_avx2() {
    __builtin_cpu_init();
    // F16C: the float16 loads and stores (every AVX2 CPU has it; a VM may mask it)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#endif
#if defined(FASTSOFTMAX_HAVE_NEON)
const KernelTable* neon_table() { return &neon_kernels(); }
#endif
const KernelTable* baseline_table() { return &baseline_kernels(); }

// Best first.
const Entry kEntries[] = {
#if defined(FASTSOFTMAX_HAVE_AVX512)
    {"avx512", &avx512_table, &cpu_avx512},
#elif defined(__x86_64__) || defined(_M_X64)
    {"avx512", nullptr, nullptr},
#endif
#if defined(FASTSOFTMAX_HAVE_AVX2)
    {"avx2", &avx2_table, &cpu_avx2},
#elif defined(__x86_64__) || defined(_M_X64)
    {"avx2", nullptr, nullptr},
#endif
#if defined(FASTSOFTMAX_HAVE_NEON)
    {"neon", &neon_table, &always},  // NEON is part of every AArch64 CPU
#endif
    {"baseline", &baseline_table, &always},
};

const Entry* find(const std::string& name) {
    for (const Entry& e : kEntries)
        if (name == e.name) return &e;
    return nullptr;
}

bool usable(const Entry& e) { return e.table != nullptr && e.supported(); }

std::atomic<const KernelTable*> g_active{nullptr};
std::string g_env_warning;
std::once_flag g_init;

void init() {
    const KernelTable* best = nullptr;
    for (const Entry& e : kEntries) {
        if (usable(e)) {
            best = e.table();
            break;
        }
    }
    const char* env = std::getenv("FASTSOFTMAX_SIMD");
    if (env != nullptr && *env != '\0') {
        const std::string want(env);
        const Entry* e = find(want);
        if (e == nullptr) {
            g_env_warning = "FASTSOFTMAX_SIMD='" + want + "' is not a known target";
        } else if (!usable(*e)) {
            g_env_warning = "FASTSOFTMAX_SIMD='" + want + "' is not " +
                            (e->table ? "supported by this CPU" : "compiled into this build");
        } else {
            best = e->table();
        }
        if (!g_env_warning.empty()) g_env_warning += std::string("; using '") + best->name + "'";
    }
    g_active.store(best);
}

}  // namespace

std::vector<TargetInfo> targets() {
    std::vector<TargetInfo> out;
    for (const Entry& e : kEntries) out.push_back({e.name, e.table != nullptr, usable(e)});
    return out;
}

const KernelTable& active_kernels() {
    std::call_once(g_init, init);
    return *g_active.load(std::memory_order_relaxed);
}

void set_target(const std::string& name) {
    std::call_once(g_init, init);
    const Entry* e = find(name);
    if (e == nullptr) throw std::invalid_argument("unknown SIMD target '" + name + "'");
    if (!usable(*e))
        throw std::invalid_argument(
            "SIMD target '" + name + "' is not " +
            (e->table ? "supported by this CPU" : "compiled into this build"));
    g_active.store(e->table());
}

std::string env_warning() {
    std::call_once(g_init, init);
    return g_env_warning;
}

}  // namespace fastsoftmax
