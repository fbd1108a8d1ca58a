// The thread pool (mlpgrad/parallel): every task runs once, task exceptions reach the caller, nested and
// concurrent callers run without deadlock, pools come and go. (A pool in a forked child: test_gemm.cpp.)
#include <gtest/gtest.h>

#include <mlpgrad/parallel/thread_pool.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace mlpgrad_test {
namespace {

using mlpgrad::parallel::ThreadPool;

TEST(ThreadPool, RunsEveryTaskOnce) {
    for (std::size_t threads : {0, 1, 2, 3, 5}) {
        ThreadPool pool(threads);
        EXPECT_EQ(pool.size(), threads > 1 ? threads : 1);
        for (std::size_t count : {0, 1, 2, 7, 100}) {
            std::vector<std::atomic<int>> hits(count);
            pool.run(count, [&](std::size_t i) { hits[i].fetch_add(1); });
            for (std::size_t i = 0; i < count; ++i) EXPECT_EQ(hits[i].load(), 1) << threads << " " << count << " " << i;
        }
    }
}

TEST(ThreadPool, TaskExceptionsReachTheCallerAndThePoolKeepsWorking) {
    ThreadPool pool(3);
    for (int round = 0; round < 10; ++round) {
        std::atomic<int> ran{0};
        EXPECT_THROW(pool.run(50,
                              [&](std::size_t i) {
                                  ++ran;
                                  if (i == 7) throw std::runtime_error("task 7");
                              }),
                     std::runtime_error);
        EXPECT_GE(ran.load(), 1);
        std::atomic<int> after{0};
        pool.run(10, [&](std::size_t) { ++after; });
        EXPECT_EQ(after.load(), 10);
    }
}

TEST(ThreadPool, NestedRunsInline) {
    ThreadPool pool(2);
    std::atomic<int> inner{0};
    pool.run(4, [&](std::size_t) { pool.run(3, [&](std::size_t) { ++inner; }); });
    EXPECT_EQ(inner.load(), 12);
}

TEST(ThreadPool, CreatedAndDestroyedRepeatedly) {
    for (int i = 0; i < 50; ++i) {
        ThreadPool pool(1 + i % 4);
        std::atomic<int> n{0};
        if (i % 2) pool.run(8, [&](std::size_t) { ++n; });
        EXPECT_EQ(n.load(), i % 2 ? 8 : 0);
    }
}

TEST(ThreadPool, SeveralCallersAtOnce) {
    ThreadPool pool(2);
    std::atomic<long> total{0};
    auto caller = [&] {
        for (int i = 0; i < 200; ++i) pool.run(5, [&](std::size_t k) { total += long(k) + 1; });
    };
    std::thread a(caller), b(caller), c(caller);
    a.join();
    b.join();
    c.join();
    EXPECT_EQ(total.load(), 3L * 200 * 15);
}

}  // namespace
}  // namespace mlpgrad_test
