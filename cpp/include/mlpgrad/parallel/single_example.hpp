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

#include "../gemm/blocking.hpp"
#include "thread_pool.hpp"

namespace mlpgrad {
namespace parallel {

// A layer splits into one part per L2 cache of weights (CacheSizes::l2 bytes: 1 MiB here), at most one per
// thread. Below that a core's share of the layer fits in its own L2, from where one core streams it as fast
// as two would, and the split costs more than it saves: the forward pass leaves each core with rows of W and
// the backward pass wants columns, so every call moves part of W and ∂W between the cores' caches, and each
// layer pays two wake-ups of the pool. Measured (`mlpgrad_bench --widths ... --threads 2`, a build in which
// every layer splits; value_and_grad, T = 4 square K × K ReLU layers, one thread against two alternating,
// 2026-12-01, other work stopped): K ≤ 362 0.34-0.66×; K = 512 float (1 MiB a layer) 0.59-0.65×, double
// (2 MiB) 0.98-1.48×; K = 724 (2 MiB float, 4 MiB double) 1.08-1.15× and 1.10-1.51×; K = 1024 1.10-1.17×
// and 1.32-1.48×; K = 2048 1.40-1.44× and 1.17-1.62×. A macro so that a build (such as that bench) can set it.
#ifndef MLPGRAD_SINGLE_EXAMPLE_MIN_BYTES_PER_THREAD
#define MLPGRAD_SINGLE_EXAMPLE_MIN_BYTES_PER_THREAD (gemm::CacheSizes{}.l2)
#endif
inline constexpr std::size_t single_example_min_bytes_per_thread = MLPGRAD_SINGLE_EXAMPLE_MIN_BYTES_PER_THREAD;

// Parts for a layer of rows × cols weights of `weight_bytes` each: 1 without a pool, else at most one per
// thread and per single_example_min_bytes_per_thread bytes of weights.
inline std::size_t single_example_parts(const ThreadPool* pool, std::size_t rows, std::size_t cols,
                                        std::size_t weight_bytes) {
    if (pool == nullptr || pool->size() < 2) return 1;
    const std::size_t least = std::max<std::size_t>(1, single_example_min_bytes_per_thread);
    return std::max<std::size_t>(1, std::min(pool->size(), rows * cols * weight_bytes / least));
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
