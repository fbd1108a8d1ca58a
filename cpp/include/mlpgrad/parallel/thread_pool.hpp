// A small caller-owned thread pool for the batch kernels. The header-only core keeps no global state: whoever
// wants threads creates a ThreadPool and passes it (or a null pointer: the calling thread alone) explicitly.
//
// run(count, task) calls task(i) for every i < count, spread over the pool's workers and the calling thread,
// and returns when all have finished. Which thread runs which i is not fixed, so a task must compute the
// same thing whoever runs it (the GEMM driver gives each task a fixed set of output tiles).
//
// Guarantees:
//  - Exceptions never escape a worker: the first one a task throws is rethrown by run() in the caller, after
//    every task has finished or been skipped (tasks not yet started when one throws are skipped).
//  - The caller runs tasks too and waits only for workers that have started on its job: a worker the
//    scheduler has not run yet (a busy machine) is not waited for, the caller does its share instead.
//  - Two threads may call run() on one pool at once: the first gets the workers, the other runs its tasks on
//    its own thread (no waiting, no deadlock; a task that calls run() on its own pool also runs inline).
//  - The destructor stops and joins the workers; it must not run while a run() is in progress.
//  - fork(): a child process inherits the object but not its worker threads. Do not use or destroy it there
//    (joining threads that do not exist hangs); leak it and create a new pool in the child. Nothing static
//    has to be reset, so a re-created pool is all a child needs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlpgrad {
namespace parallel {

class ThreadPool {
  public:
    // A pool whose run() uses `threads` threads in all: the caller and threads - 1 workers (0 counts as 1).
    // Throws std::system_error if a thread cannot be started (then no worker is left running).
    explicit ThreadPool(std::size_t threads) {
        const std::size_t workers = threads > 1 ? threads - 1 : 0;
        workers_.reserve(workers);
        try {
            for (std::size_t w = 0; w < workers; ++w) workers_.emplace_back([this] { work(); });
        } catch (...) {
            stop_and_join();
            throw;
        }
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() { stop_and_join(); }

    // Threads that run() spreads its tasks over, the calling one included.
    std::size_t size() const { return workers_.size() + 1; }

    template <class F>
    void run(std::size_t count, F&& task) {
        using Task = std::remove_reference_t<F>;
        std::unique_lock<std::mutex> owner(busy_, std::try_to_lock);
        if (count <= 1 || workers_.empty() || !owner.owns_lock()) {
            // Inline: exceptions propagate directly and the remaining tasks are not run.
            for (std::size_t i = 0; i < count; ++i) task(i);
            return;
        }
        Job job;
        job.count = count;
        job.context = const_cast<void*>(static_cast<const void*>(&task));
        job.invoke = [](void* context, std::size_t i) { (*static_cast<Task*>(context))(i); };
        job_ = &job;
        entered_.store(0, std::memory_order_release);         // open: publishes job_ to workers that enter
        generation_.fetch_add(1, std::memory_order_release);
        { std::lock_guard<std::mutex> lock(mutex_); }          // a worker about to sleep sees it or gets woken
        wake_.notify_all();
        job.work();
        // Every task is claimed. Close the job to workers not yet in it (one the scheduler has not run yet
        // is not waited for), then wait for those in it: `job` lives on this stack frame.
        entered_.fetch_or(closed, std::memory_order_acq_rel);
        const auto finished = [this] { return entered_.load(std::memory_order_acquire) == closed; };
        if (!spin_until(finished)) {
            std::unique_lock<std::mutex> lock(mutex_);
            done_.wait(lock, finished);
        }
        if (job.error) std::rethrow_exception(job.error);
    }

  private:
    struct Job {
        void (*invoke)(void*, std::size_t) = nullptr;
        void* context = nullptr;
        std::size_t count = 0;
        std::atomic<std::size_t> next{0};
        std::atomic<bool> failed{false};
        std::mutex error_mutex;
        std::exception_ptr error;

        // Claims and runs tasks until none is left. Never throws.
        void work() noexcept {
            for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) {
                if (failed.load(std::memory_order_relaxed)) continue;
                try {
                    invoke(context, i);
                } catch (...) {
                    std::lock_guard<std::mutex> lock(error_mutex);
                    if (!error) error = std::current_exception();
                    failed.store(true, std::memory_order_relaxed);
                }
            }
        }
    };

    // Waits for a job (spinning a little first: the kernels of a batch step come back to back, and waking
    // a sleeping thread costs microseconds), enters it unless the caller has closed it, runs tasks, leaves.
    void work() {
        std::size_t seen = 0;
        for (;;) {
            const auto ready = [&] {
                return stopping_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
            };
            if (!spin_until(ready)) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, ready);
            }
            if (stopping_.load(std::memory_order_acquire)) return;
            seen = generation_.load(std::memory_order_acquire);
            // Enter: count in, unless closed (then the job may be gone: do not touch it).
            std::size_t state = entered_.load(std::memory_order_acquire);
            do {
                if (state & closed) break;
            } while (!entered_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel));
            if (state & closed) continue;
            job_->work();
            if (entered_.fetch_sub(1, std::memory_order_acq_rel) == (closed | 1)) {
                { std::lock_guard<std::mutex> lock(mutex_); }  // the caller sees the count or gets woken
                done_.notify_one();
            }
        }
    }

    // Polls `done` for up to spin_time, yielding the core to others between polls; true once it holds.
    template <class Done>
    static bool spin_until(const Done& done) {
        constexpr auto spin_time = std::chrono::microseconds(50);
        const auto until = std::chrono::steady_clock::now() + spin_time;
        for (;;) {
            if (done()) return true;
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::yield();
        }
    }

    void stop_and_join() noexcept {
        stopping_.store(true, std::memory_order_release);
        { std::lock_guard<std::mutex> lock(mutex_); }
        wake_.notify_all();
        for (auto& w : workers_)
            if (w.joinable()) w.join();
        workers_.clear();
    }

    static constexpr std::size_t closed = std::size_t(1) << (8 * sizeof(std::size_t) - 1);

    std::vector<std::thread> workers_;
    std::mutex busy_;   // held by the caller whose job the workers run
    std::mutex mutex_;  // for sleeping on wake_ and done_
    std::condition_variable wake_, done_;
    Job* job_ = nullptr;                        // the current job; read only by a worker that entered it
    std::atomic<std::size_t> generation_{0};    // one more per job
    std::atomic<std::size_t> entered_{closed};  // workers in the current job, | closed once all are claimed
    std::atomic<bool> stopping_{false};
};

}  // namespace parallel
}  // namespace mlpgrad
