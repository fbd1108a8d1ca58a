// One example on several threads (parallel/single_example.hpp): a large layer splits by rows of W forward and
// by columns backward, and every result is bit-for-bit the one of the calling thread alone, for 2, 3 and 4
// threads, odd widths, biases, vector outputs and kept intermediates; small layers stay on the caller.
#include "test_support.hpp"

#include <cstring>
#include <mlpgrad/parallel/single_example.hpp>

namespace mlpgrad_test {
namespace {

using mlpgrad::parallel::ThreadPool;

// ŷ and every gradient of one value_and_grad, flattened, so runs compare with memcmp.
template <class T>
std::vector<T> one_call(const mlpgrad::Network<T>& net, const std::vector<T>& x, const std::vector<T>& dy,
                        bool keep, ThreadPool* pool) {
    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> g(net, keep);
    std::vector<T> yhat(net.outputs());
    mlpgrad::value_and_grad(net, cview(x), tape, cview(dy), g.view(), mview(yhat), pool);
    std::vector<T> all = yhat;
    const auto& v = g.view();
    for (const auto& w : v.weights) all.insert(all.end(), w.data, w.data + w.size());
    for (const auto& b : v.biases) all.insert(all.end(), b.begin(), b.end());
    all.insert(all.end(), v.alpha.begin(), v.alpha.end());
    all.insert(all.end(), v.output_bias.begin(), v.output_bias.end());
    all.insert(all.end(), v.x.begin(), v.x.end());
    for (const auto& z : v.z) all.insert(all.end(), z.begin(), z.end());
    for (const auto& u : v.u) all.insert(all.end(), u.begin(), u.end());
    // The tape too: backward() of a later call reads it.
    for (std::size_t t = 0; t <= net.depth(); ++t) all.insert(all.end(), tape.z(t).begin(), tape.z(t).end());
    return all;
}

template <class T>
void check_bit_identical(Activation a, std::size_t outputs, bool biases, bool keep) {
    // 1031 × 1031 and 517 × 1031 weights: 4 parts (float and double) and 2 or 4 of at least
    // single_example_min_bytes_per_thread; odd widths put the split off the vector boundaries of the rows and
    // in the matvec's last rows.
    const std::vector<std::size_t> widths = {1031, 1031, 517, 5};
    const OwnedNet<T> onet = random_general_net<T>(widths, a, 71, outputs, biases, biases);
    const mlpgrad::Network<T> net = onet.network();
    ASSERT_EQ(mlpgrad::parallel::single_example_parts(nullptr, 1031, 1031, sizeof(T)), 1u);
    Random rng(72);
    const std::vector<T> x = random_vector<T>(rng, widths[0]), dy = random_vector<T>(rng, outputs);
    const std::vector<T> serial = one_call(net, x, dy, keep, nullptr);
    for (std::size_t threads : {2, 3, 4}) {
        ThreadPool pool(threads);
        ASSERT_EQ(mlpgrad::parallel::single_example_parts(&pool, 1031, 1031, sizeof(T)), threads);
        const std::vector<T> parallel = one_call(net, x, dy, keep, &pool);
        ASSERT_EQ(parallel.size(), serial.size());
        EXPECT_EQ(std::memcmp(parallel.data(), serial.data(), serial.size() * sizeof(T)), 0)
            << threads << " threads, " << dtype_name(std::is_same_v<T, float> ? Dtype::float32 : Dtype::float64);
    }
}

TEST(SingleExampleThreads, BitIdenticalForAnyThreadCount) {
    for (Activation a : {Activation::relu, Activation::tanh, Activation::softplus}) {
        check_bit_identical<double>(a, 1, false, false);
        check_bit_identical<float>(a, 1, false, false);
    }
    check_bit_identical<double>(Activation::relu, 3, true, true);
    check_bit_identical<float>(Activation::leaky_relu, 3, true, true);
}

TEST(SingleExampleThreads, SmallLayersStayOnTheCaller) {
    ThreadPool pool(4);
    const std::size_t least = mlpgrad::parallel::single_example_min_bytes_per_thread;  // bytes
    EXPECT_EQ(least, mlpgrad::gemm::CacheSizes{}.l2);
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&pool, 64, 64, 8), 1u);
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&pool, 1, 2 * least / 8 - 1, 8), 1u);
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&pool, 1, 2 * least / 8, 8), 2u);
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&pool, 1, 2 * least / 4, 4), 2u);
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&pool, 512, 512, 4), 1u);  // 1 MiB of floats
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&pool, 512, 512, 8), 2u);  // 2 MiB of doubles
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&pool, 1, 100 * least, 1), 4u);  // at most one per thread
    ThreadPool one(1);
    EXPECT_EQ(mlpgrad::parallel::single_example_parts(&one, 1, 100 * least, 1), 1u);
}

TEST(SingleExampleThreads, AlignedRangesCoverEverythingOnce) {
    for (std::size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 517, 1031})
        for (std::size_t parts : {1, 2, 3, 4, 7})
            for (std::size_t align : {1, 4, 8, 16}) {
                std::size_t next = 0;
                for (std::size_t p = 0; p < parts; ++p) {
                    const auto [begin, end] = mlpgrad::parallel::aligned_range(p, parts, n, align);
                    EXPECT_EQ(begin, next) << n << " " << parts << " " << align;
                    EXPECT_LE(begin, end);
                    if (end != n) {
                        EXPECT_EQ(end % align, 0u);
                    }
                    next = end;
                }
                EXPECT_EQ(next, n);
            }
}

}  // namespace
}  // namespace mlpgrad_test
