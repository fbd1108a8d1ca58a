// Threads for one example. Its passes are matrix-vector products, one pass over each W (forward) and over
// each W and ∂W (backward), so a large layer is bound by memory, and a second core adds its own share of the
// memory bandwidth. A layer splits into parts of whole rows of W for u = W z and of whole columns for the
// backward pass (∂W = ∂u zᵀ column blocks, ∂z = Wᵀ ∂u entries): each output element is computed by one
// thread with the same operations in the same order as on one thread, so the results are bit-for-bit the
// same for any number of threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include "thread_pool.hpp"

namespace mlpgrad {
namespace parallel {

// A layer of fewer weights than this per thread runs on the calling thread. Measured with
// `mlpgrad_bench --threads 2` (cpp/bench/bench.cpp, built with this set to 1 so that every layer splits:
// value_and_grad on one thread and on two, alternating, T = 4 square layers of K = 128 … 2048): see the
// numbers in README's Speed section. A macro so that a build (such as that bench) can set it.
#ifndef MLPGRAD_SINGLE_EXAMPLE_MIN_WEIGHTS_PER_THREAD
#define MLPGRAD_SINGLE_EXAMPLE_MIN_WEIGHTS_PER_THREAD (std::size_t(1) << 17)
#endif
inline constexpr std::size_t single_example_min_weights_per_thread = MLPGRAD_SINGLE_EXAMPLE_MIN_WEIGHTS_PER_THREAD;

// Parts for a layer of rows × cols weights: 1 without a pool, else at most one per thread and per
// single_example_min_weights_per_thread weights.
inline std::size_t single_example_parts(const ThreadPool* pool, std::size_t rows, std::size_t cols,
                                        std::size_t min_weights_per_thread = single_example_min_weights_per_thread) {
    if (pool == nullptr || pool->size() < 2) return 1;
    const std::size_t by_work = min_weights_per_thread ? rows * cols / min_weights_per_thread : pool->size();
    return std::max<std::size_t>(1, std::min(pool->size(), by_work));
}

// [begin, end) of part `part` of `parts` over n items, with every boundary but n a multiple of `align`
// (parts may be empty when n is small).
inline std::pair<std::size_t, std::size_t> aligned_range(std::size_t part, std::size_t parts, std::size_t n,
                                                         std::size_t align) {
    const std::size_t blocks = (n + align - 1) / align;
    const auto boundary = [&](std::size_t p) { return std::min(n, blocks * p / parts * align); };
    return {boundary(part), part + 1 == parts ? n : boundary(part + 1)};
}

}  // namespace parallel
}  // namespace mlpgrad
