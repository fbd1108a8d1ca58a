// The binding's thread pool for the batch calls: one per process, created at the first batch call that can
// use it, sized by mlpgrad.set_num_threads(n) (the package sets the default at import: MLPGRAD_NUM_THREADS,
// else the CPUs this process may run on). The C++ core keeps no such state; the binding passes the pool to
// forward_batch / backward_batch explicitly.
//
// Every access holds the GIL (set_num_threads, the batch calls before they release it, the exit and fork
// handlers run where no other thread can), so the state needs no lock of its own -- which also means there
// is no lock for fork() to leave held in a child.
//
// Lifetimes: a batch call holds a reference to the pool while it computes, so set_num_threads() from another
// thread replaces the pool without pulling it from under that call (the old pool is joined when its last
// call ends). At interpreter exit an atexit handler drops the pool, joining its idle workers while the
// interpreter is still whole, and later batch calls run on the calling thread alone. In a child made by
// fork() the workers do not exist: the child forgets the pool (leaks it; joining would wait for threads that
// are not there) and creates its own at its first batch call.
#pragma once

#include <mlpgrad/parallel/thread_pool.hpp>

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace mlpgrad_python {

// set_num_threads() accepts 1..max_threads.
constexpr std::size_t max_threads = 1024;

namespace threads_detail {

struct PoolState {
    std::size_t threads = 1;                                // what set_num_threads() asked for
    std::shared_ptr<mlpgrad::parallel::ThreadPool> pool;    // created lazily when threads > 1
    bool shut_down = false;                                 // the interpreter is exiting
};

// Never destroyed: static destruction at exit() must not join threads (a forked child's are gone, and a
// daemon thread may still be inside a batch call); the atexit handler does the orderly part.
inline PoolState& state() {
    static PoolState* s = new PoolState;
    return *s;
}

}  // namespace threads_detail

inline std::size_t num_threads() { return threads_detail::state().threads; }

// Takes effect at the next batch call; a pool of another size is dropped now (calls using it finish on it).
inline void set_num_threads(std::size_t n) {
    auto& s = threads_detail::state();
    if (n == s.threads) return;
    s.threads = n;
    s.pool.reset();
}

// The pool for a batch call, or null (one thread, or the interpreter is exiting). The caller keeps the
// reference until its computation ends. Throws std::system_error if the worker threads cannot be started
// (then nothing is kept, and the next call tries again).
inline std::shared_ptr<mlpgrad::parallel::ThreadPool> batch_pool() {
    auto& s = threads_detail::state();
    if (s.threads <= 1 || s.shut_down) return nullptr;
    if (!s.pool) s.pool = std::make_shared<mlpgrad::parallel::ThreadPool>(s.threads);
    return s.pool;
}

// At interpreter exit (atexit, with the GIL): joins the workers unless a call still uses them.
inline void shut_down_threads() noexcept {
    auto& s = threads_detail::state();
    s.shut_down = true;
    s.pool.reset();
}

// In a child after fork() (pthread_atfork), where only the forking thread exists: forget the parent's pool.
inline void forget_pool_after_fork() noexcept {
    using Pool = std::shared_ptr<mlpgrad::parallel::ThreadPool>;
    alignas(Pool) static unsigned char graveyard[sizeof(Pool)];  // a leaked reference never runs ~ThreadPool
    new (graveyard) Pool(std::move(threads_detail::state().pool));
}

}  // namespace mlpgrad_python
