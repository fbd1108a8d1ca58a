// Helpers shared by the tests of the packed GEMM (test_gemm.cpp, test_gemm_epilogues.cpp): stored operands
// of either orientation and settings that choose the path under test.
#pragma once

#include "test_support.hpp"

#include <mlpgrad/gemm/gemm.hpp>
#include <mlpgrad/parallel/thread_pool.hpp>

#include <limits>
#include <vector>

namespace mlpgrad_test {

namespace gemm = mlpgrad::gemm;
using mlpgrad::MatrixView;
using mlpgrad::parallel::ThreadPool;

// A matrix stored row-major (or, transposed = true, stored as its transpose), viewed as an Operand.
template <class T>
struct Stored {
    std::size_t rows, cols;
    bool transposed;
    std::vector<T> data;
    gemm::Operand<T> operand() const {
        const MatrixView<const T> m(data.data(), transposed ? cols : rows, transposed ? rows : cols);
        return transposed ? gemm::transposed(m) : gemm::operand(m);
    }
};

template <class T>
Stored<T> random_stored(std::size_t rows, std::size_t cols, bool transposed, Random& rng) {
    return {rows, cols, transposed, random_vector<T>(rng, rows * cols)};
}

// Settings that force A packed or read in place whatever the shape, and split any product over `pool`.
template <class T>
gemm::Settings<T> gemm_settings(bool pack_a, ThreadPool* pool = nullptr) {
    gemm::Settings<T> s;
    s.pool = pool;
    s.pack_a_min_columns = s.pack_a_transposed_min_columns = pack_a ? 0 : std::numeric_limits<std::size_t>::max();
    s.min_flops_per_thread = 0;
    return s;
}

}  // namespace mlpgrad_test
