// A small persistent thread pool. One call at a time uses it: a second
// caller (another Python thread; the GIL is released in the kernels) finds it
// busy and runs its tasks on its own thread, which gives the same results
// (the tasks do not depend on the thread count).
//
// Tasks are claimed through one atomic word holding (job generation, next
// task), so a helper that wakes late can never claim a task of a later job.
//
// After fork() the child has only the forking thread: the pool object (its
// threads, mutexes, perhaps held) is abandoned there and a new one is made
// on first use (pthread_atfork).
#include "fastsoftmax/parallel.hpp"

#if defined(__linux__)
#include <sched.h>  // sched_getaffinity, CPU_COUNT (Linux only)
#endif

#include <pthread.h>  // pthread_atfork (POSIX)

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace fastsoftmax {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Spins until done() or `us` microseconds have passed; returns done().
// Waking a sleeping thread costs tens of microseconds on a virtual machine
// (the idle vCPU must be scheduled again), as much as a whole small task:
// the helpers and the caller spin a little before they sleep.
template <class Done>
bool spin_until(Done&& done, long us) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    for (unsigned i = 1;; ++i) {
        if (done()) return true;
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return done();
    }
}

constexpr long kHelperSpinUs = 100;  // after a job: the next call often follows at once
constexpr long kCallerSpinUs = 1000;  // waiting for the helpers' last tasks

class Pool {
  public:
    Pool() = default;
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // Runs the job with up to `threads` threads (the caller's included);
    // false, without running anything, when another caller is using the pool.
    bool try_run(std::size_t tasks, std::size_t threads, detail::TaskFn fn, void* ctx) {
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        std::size_t helpers = (threads < tasks ? threads : tasks) - 1;
        std::uint32_t gen;
        {
            std::lock_guard<std::mutex> lk(m_);
            try {
                while (workers_.size() < helpers)
                    workers_.emplace_back([this, i = workers_.size()] { work(i); });
            } catch (const std::system_error&) {  // no more threads: go with those we have
                helpers = workers_.size();
            }
            gen = ++generation_;
            fn_ = fn;
            ctx_ = ctx;
            tasks_ = tasks;
            helpers_ = helpers;
            done_.store(0, std::memory_order_relaxed);
            error_ = nullptr;
            claim_.store(static_cast<std::uint64_t>(gen) << 32, std::memory_order_release);
            published_.store(gen, std::memory_order_release);
        }
        wake_.notify_all();
        run_claimed(gen, fn, ctx, tasks);
        const auto finished = [&] { return done_.load(std::memory_order_acquire) == tasks; };
        if (!spin_until(finished, kCallerSpinUs)) {
            std::unique_lock<std::mutex> lk(m_);
            finished_.wait(lk, finished);
        }
        std::lock_guard<std::mutex> lk(m_);
        if (error_) std::rethrow_exception(error_);
        return true;
    }

  private:
    void work(std::size_t index) {
        std::uint32_t seen = 0;
        for (;;) {
            spin_until([&] { return published_.load(std::memory_order_acquire) != seen; },
                       kHelperSpinUs);
            std::unique_lock<std::mutex> lk(m_);
            wake_.wait(lk, [&] { return generation_ != seen && index < helpers_; });
            seen = generation_;
            const detail::TaskFn fn = fn_;
            void* const ctx = ctx_;
            const std::size_t tasks = tasks_;
            lk.unlock();
            run_claimed(seen, fn, ctx, tasks);
        }
    }

    // Claims and runs tasks of job `gen` until none is left.
    void run_claimed(std::uint32_t gen, detail::TaskFn fn, void* ctx, std::size_t tasks) {
        std::uint64_t c = claim_.load(std::memory_order_acquire);
        while ((c >> 32) == gen && (c & 0xffffffffu) < tasks) {
            if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
            try {
                fn(ctx, static_cast<std::size_t>(c & 0xffffffffu));
            } catch (...) {
                std::lock_guard<std::mutex> lk(m_);
                if (!error_) error_ = std::current_exception();
            }
            if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks) {
                std::lock_guard<std::mutex> lk(m_);  // (a caller between its check and its wait)
                finished_.notify_all();
            }
            c = claim_.load(std::memory_order_acquire);
        }
    }

    std::mutex busy_;  // held by the caller whose job runs
    std::mutex m_;     // guards the job's description below
    std::condition_variable wake_, finished_;
    std::vector<std::thread> workers_;  // never joined: the pool lives as long as the process
    std::uint32_t generation_ = 0;
    detail::TaskFn fn_ = nullptr;
    void* ctx_ = nullptr;
    std::size_t tasks_ = 0, helpers_ = 0;
    std::exception_ptr error_;
    std::atomic<std::uint32_t> published_{0};  // generation_, read by spinning helpers
    std::atomic<std::size_t> done_{0};         // tasks finished in this job
    std::atomic<std::uint64_t> claim_{0};      // generation << 32 | next task
};

std::atomic<Pool*> g_pool{nullptr};
std::atomic<std::size_t> g_threads{0};  // 0: not set yet, use the default

void forget_pool_in_child() { g_pool.store(nullptr); }  // its threads are not in the child

Pool& pool() {
    Pool* p = g_pool.load(std::memory_order_acquire);
    if (p) return *p;
    static const int registered = pthread_atfork(nullptr, nullptr, &forget_pool_in_child);
    (void)registered;
    Pool* fresh = new Pool();
    if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;  // another thread made one first (no worker started yet)
    return *p;
}

}  // namespace

// The CPUs this process may run on: its affinity mask on Linux (as Python's
// os.sched_getaffinity); elsewhere (macOS, the BSDs) every CPU.
std::size_t default_num_threads() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return static_cast<std::size_t>(n);
    }
#endif
    const unsigned hw = std::thread::hardware_concurrency();
    return hw > 0 ? hw : 1;
}

std::size_t num_threads() {
    std::size_t n = g_threads.load(std::memory_order_relaxed);
    if (n == 0) {  // first use: the default, once (it costs a system call)
        std::size_t unset = 0;
        n = default_num_threads();
        if (!g_threads.compare_exchange_strong(unset, n, std::memory_order_relaxed)) n = unset;
    }
    return n;
}

void set_num_threads(std::size_t n) { g_threads.store(n > 0 ? n : 1, std::memory_order_relaxed); }

namespace detail {

void run_tasks(std::size_t tasks, TaskFn fn, void* ctx) {
    if (tasks >= (std::size_t(1) << 32)) {  // (the claim word holds 32 bits of task number)
        for (std::size_t i = 0; i < tasks; ++i) fn(ctx, i);
        return;
    }
    if (!pool().try_run(tasks, num_threads(), fn, ctx))
        for (std::size_t i = 0; i < tasks; ++i) fn(ctx, i);
}

}  // namespace detail
}  // namespace fastsoftmax
