// The threads the kernels run on: our own small pool (cpp/src/parallel.cpp),
// not OpenMP, so that a process which forks after using it (multiprocessing's
// fork start method) gets a working pool in the child, and the setting is one
// number owned by fastsoftmax (set_num_threads, FASTSOFTMAX_NUM_THREADS).
//
// Work is cut into tasks whose boundaries depend on the shape only, never on
// the number of threads, so every result is bitwise the same whatever the
// setting (and when a busy pool makes a call run on its caller alone).
#pragma once

#include <cstddef>
#include <type_traits>

namespace fastsoftmax {

// The number of threads a call may use (>= 1); the default is the number of
// CPUs this process may run on (sched_getaffinity).
std::size_t num_threads();
void set_num_threads(std::size_t n);  // n >= 1
std::size_t default_num_threads();

// Elements of work per task (about 20-60 us of kernel time): below that, a
// call stays on its caller's thread, where waking a helper would cost more
// than it saves.
constexpr std::size_t kTaskElements = std::size_t(1) << 16;

namespace detail {
using TaskFn = void (*)(void* ctx, std::size_t task);
void run_tasks(std::size_t tasks, TaskFn fn, void* ctx);
}  // namespace detail

// Calls f(i) once for every i < tasks, on up to num_threads() threads (the
// caller's among them), and returns when all calls have returned. The first
// exception thrown by a call is rethrown here (after the others finish).
template <class F>
void parallel_for(std::size_t tasks, F&& f) {
    using Fn = std::remove_reference_t<F>;
    if (tasks <= 1 || num_threads() <= 1) {
        for (std::size_t i = 0; i < tasks; ++i) f(i);
        return;
    }
    detail::run_tasks(
        tasks, [](void* ctx, std::size_t i) { (*static_cast<Fn*>(ctx))(i); },
        const_cast<void*>(static_cast<const void*>(&f)));
}

// The fixed cost of a row, in elements: short rows cost more per element
// (softmax at 10 classes: 1.3 ns per element, at 1000: 0.25), the fused
// cross-entropy's more still (its label, log1p and reduction per row).
constexpr std::size_t kRowCost = 48;
constexpr std::size_t kCrossEntropyRowCost = 160;

// Splits `units` units costing `unit_elements` elements each into tasks of
// about kTaskElements elements, each a whole number of `align` units;
// returns the units per task (>= 1). Depends on the shape only.
inline std::size_t units_per_task(std::size_t units, std::size_t unit_elements,
                                  std::size_t align = 1) {
    const std::size_t per = unit_elements == 0 ? units : kTaskElements / unit_elements;
    std::size_t u = (per + align - 1) / align * align;
    if (u == 0) u = align;
    return u < units ? u : (units == 0 ? 1 : units);
}

}  // namespace fastsoftmax
