// The batch passes on the packed GEMM (batch.hpp over gemm/): the batch equals the sum of its single
// examples at widths and batch sizes that hit every edge path of the blocking (partial register tiles of
// 6 rows × 16 floats / 8 doubles, depth blocks of 256, A packed or read in place), with biases, vector
// outputs and parameter-only gradients; and the results are bit for bit the same for 1, 2, 3 and 4 threads,
// also with several callers sharing one pool.
#include "test_support.hpp"

#include <cstring>
#include <thread>

namespace mlpgrad_test {
namespace {

using mlpgrad::MatrixView;
using mlpgrad::VectorView;
using mlpgrad::parallel::ThreadPool;

const std::vector<std::size_t> edge_sizes = {1, 2, 5, 7, 15, 17, 63, 65, 127, 129, 1000};

// Three widths and a batch size from the edge sizes, rotating so that every size is a K_0, a hidden width,
// a K_T and a B somewhere; m outputs, biases and an output bias alternate.
struct EdgeCase {
    std::vector<std::size_t> widths;
    std::size_t B, outputs;
    bool biases, output_bias;
};
std::vector<EdgeCase> edge_cases() {
    std::vector<EdgeCase> cases;
    const std::size_t n = edge_sizes.size();
    for (std::size_t i = 0; i < n; ++i) {
        const std::vector<std::size_t> widths = {edge_sizes[i], edge_sizes[(i + 4) % n], edge_sizes[(i + 7) % n]};
        cases.push_back({widths, edge_sizes[(i + 2) % n], i % 3 == 0 ? 3u : 1u, i % 2 == 0, i % 4 == 1});
    }
    cases.push_back({{1000, 65, 1}, 1000, 1, true, true});  // depth blocks in both the forward and ∂W products
    cases.push_back({{65, 1000}, 17, 2, false, false});      // one layer, K_T = 1000
    return cases;
}

class BatchEdgePaths : public ::testing::TestWithParam<DtypeActivation> {};

TEST_P(BatchEdgePaths, BatchIsTheSumOfSingleExamples) {
    const Activation a = std::get<1>(GetParam());
    with_dtype(std::get<0>(GetParam()), [&](auto zero) {
        using T = decltype(zero);
        std::uint64_t seed = 300;
        for (const EdgeCase& c : edge_cases()) {
            SCOPED_TRACE("widths " + std::to_string(c.widths[0]) + "-" + std::to_string(c.widths[1]) +
                         (c.widths.size() > 2 ? "-" + std::to_string(c.widths[2]) : "") + ", B = " +
                         std::to_string(c.B) + ", m = " + std::to_string(c.outputs));
            check_general_batch(random_general_net<T>(c.widths, a, seed, c.outputs, c.biases, c.output_bias), c.B,
                                seed + 1);
            seed += 2;
        }
    });
}

// The tanh and ReLU variants are enough here (the per-activation code is the epilogue, tested above).
INSTANTIATE_TEST_SUITE_P(TwoActivations, BatchEdgePaths,
                         ::testing::Combine(::testing::Values(Dtype::float32, Dtype::float64),
                                            ::testing::Values(Activation::relu, Activation::tanh)),
                         param_name);

// The output layer of m > 1 outputs (batch_output.hpp: Ŷᵀ = αᵀ Z^T, ∂α from rows of Z^T and dYᵀ, dYᵀ into the
// base case) at edge sizes of m, K_T and B: vector tails of the batch and of the dot products, blocks of four
// rows of dYᵀ and their remainders; and m larger than every width and than B, so that the tape's scratch
// matrices must make room for Ŷᵀ and dYᵀ.
TEST_P(BatchEdgePaths, VectorOutputsAtEdgeSizes) {
    const Activation a = std::get<1>(GetParam());
    const std::vector<std::size_t> sizes = {1, 2, 5, 7, 15, 17, 63, 65, 127, 129};
    with_dtype(std::get<0>(GetParam()), [&](auto zero) {
        using T = decltype(zero);
        std::uint64_t seed = 500;
        const std::size_t n = sizes.size();
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t m = sizes[i], K_T = sizes[(i + 3) % n], B = sizes[(i + 6) % n];
            const std::vector<std::size_t> widths =
                i % 2 ? std::vector<std::size_t>{sizes[(i + 8) % n], K_T} : std::vector<std::size_t>{7, 5, K_T};
            SCOPED_TRACE("m = " + std::to_string(m) + ", K_T = " + std::to_string(K_T) + ", B = " + std::to_string(B));
            check_general_batch(random_general_net<T>(widths, a, seed, m, i % 3 == 0, i % 2 == 0), B, seed + 1);
            seed += 2;
        }
        SCOPED_TRACE("m = 129 > every width and B");
        check_general_batch(random_general_net<T>({2, 1}, a, seed, 129, true, true), 7, seed + 1);
    });
}

// Everything a forward and a full backward pass on `pool` write, flattened for memcmp.
template <class T>
std::vector<T> run_pass(const OwnedNet<T>& onet, const std::vector<T>& X, const std::vector<T>& dY, std::size_t B,
                        ThreadPool* pool) {
    const mlpgrad::Network<T> net = onet.network();
    const std::size_t K0 = net.width(0), m = net.outputs();
    mlpgrad::BatchTape<T> tape;
    std::vector<T> Yhat(B * m);
    mlpgrad::BatchGradients<T> g(net, B);
    mlpgrad::forward_batch(net, MatrixView<const T>(X.data(), B, K0), tape, MatrixView<T>(Yhat.data(), B, m), pool);
    mlpgrad::backward_batch(net, tape, MatrixView<const T>(dY.data(), B, m), g.view(), pool);
    std::vector<T> all = Yhat;
    const auto append = [&](const std::vector<T>& v) { all.insert(all.end(), v.begin(), v.end()); };
    for (const auto& w : g.view().weights) append(to_vector(w));
    for (const auto& b : g.view().biases) append(to_vector(b));
    append(to_vector(g.view().alpha));
    append(to_vector(g.view().output_bias));
    append(to_vector(g.view().x));
    return all;
}

struct OddShape {
    std::vector<std::size_t> widths;
    std::size_t B, outputs;
};
// Large enough that the products split into parts (checked below), odd enough that the parts' edges are
// partial tiles.
const std::vector<OddShape> odd_shapes = {{{129, 127, 65, 1}, 131, 1}, {{65, 257, 63}, 517, 3}, {{301, 67}, 1000, 5}};

template <class T>
void check_bit_identical_across_threads() {
    std::uint64_t seed = 400;
    for (const OddShape& s : odd_shapes) {
        SCOPED_TRACE("K_0 = " + std::to_string(s.widths[0]) + ", B = " + std::to_string(s.B));
        const OwnedNet<T> onet = random_general_net<T>(s.widths, Activation::tanh, seed, s.outputs, true, true);
        Random rng(seed + 1);
        const std::vector<T> X = random_vector<T>(rng, s.B * s.widths[0]), dY = random_vector<T>(rng, s.B * s.outputs);
        seed += 2;
        // The test means something only if the products do split: the forward product of the first layer
        // runs on four parts with four threads.
        ThreadPool four(4);
        mlpgrad::gemm::Settings<T> settings;
        settings.pool = &four;
        const mlpgrad::gemm::Operand<T> W0{nullptr, s.widths[1], s.widths[0], s.widths[0], 1};
        ASSERT_EQ(mlpgrad::gemm::detail::plan(W0, s.B, settings).parts(), 4u);

        const std::vector<T> serial = run_pass(onet, X, dY, s.B, nullptr);
        for (std::size_t threads = 1; threads <= 4; ++threads) {
            ThreadPool pool(threads);
            const std::vector<T> threaded = run_pass(onet, X, dY, s.B, &pool);
            ASSERT_EQ(threaded.size(), serial.size());
            EXPECT_EQ(std::memcmp(threaded.data(), serial.data(), serial.size() * sizeof(T)), 0)
                << threads << " threads differ from the calling thread alone";
        }
    }
}

TEST(BatchThreads, BitIdenticalFor1To4ThreadsFloat) { check_bit_identical_across_threads<float>(); }
TEST(BatchThreads, BitIdenticalFor1To4ThreadsDouble) { check_bit_identical_across_threads<double>(); }

// Two threads calling the batch passes at once with one shared pool (the second caller's products run inline
// while the first holds the workers), each with its own tape: both get the serial results.
TEST(BatchThreads, TwoCallersSharingOnePool) {
    const OddShape& s = odd_shapes[0];
    const OwnedNet<double> onet = random_general_net<double>(s.widths, Activation::relu, 410, s.outputs, true, false);
    Random rng(411);
    const std::vector<double> X = random_vector<double>(rng, s.B * s.widths[0]), dY = random_vector<double>(rng, s.B);
    const std::vector<double> serial = run_pass(onet, X, dY, s.B, nullptr);
    ThreadPool pool(2);
    constexpr int rounds = 4;
    std::vector<double> results[2][rounds];
    auto caller = [&](int id) {
        for (int r = 0; r < rounds; ++r) results[id][r] = run_pass(onet, X, dY, s.B, &pool);
    };
    std::thread a(caller, 0), b(caller, 1);
    a.join();
    b.join();
    for (int id = 0; id < 2; ++id)
        for (int r = 0; r < rounds; ++r) {
            ASSERT_EQ(results[id][r].size(), serial.size());
            EXPECT_EQ(std::memcmp(results[id][r].data(), serial.data(), serial.size() * sizeof(double)), 0)
                << "caller " << id << ", round " << r;
        }
}

// A tape that has seen a batch reuses its packing buffers: the next pass of the same shape reserves nothing.
TEST(BatchThreads, SteadyStateReservesNoNewWorkspace) {
    const OddShape& s = odd_shapes[1];
    const OwnedNet<float> onet = random_general_net<float>(s.widths, Activation::relu, 420, s.outputs, true, true);
    const mlpgrad::Network<float> net = onet.network();
    Random rng(421);
    const std::vector<float> X = random_vector<float>(rng, s.B * s.widths[0]), dY = random_vector<float>(rng, s.B * s.outputs);
    ThreadPool pool(2);
    mlpgrad::BatchTape<float> tape;
    std::vector<float> Yhat(s.B * s.outputs);
    mlpgrad::BatchGradients<float> g(net, s.B);
    const float* buffers = nullptr;
    for (int round = 0; round < 3; ++round) {
        mlpgrad::forward_batch(net, MatrixView<const float>(X.data(), s.B, s.widths[0]), tape,
                               MatrixView<float>(Yhat.data(), s.B, s.outputs), &pool);
        mlpgrad::backward_batch(net, tape, MatrixView<const float>(dY.data(), s.B, s.outputs), g.view(), &pool);
        const float* now = tape.workspace().reserve(0);
        if (round > 0) {
            EXPECT_EQ(now, buffers) << "round " << round << " reallocated the workspace";
        }
        buffers = now;
    }
    EXPECT_NE(buffers, nullptr);
}

}  // namespace
}  // namespace mlpgrad_test
