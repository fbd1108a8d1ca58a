// forward_batch/backward_batch against the single-example passes: ŷ_b = forward(x_b), parameter gradients
// = Σ_b of the single-example gradients of dy_b·ŷ_b, row b of ∂/∂X = dy_b ∂ŷ_b/∂x_b. For every activation
// in float and double, batch sizes 0, 1 and across the batch kernels' example blocks (16 doubles, 32 floats).
#include "test_support.hpp"

namespace mlpgrad_test {
namespace {

// The batch kernels sum in a different order than the single-example ones.
template <class T>
constexpr double batch_tol = 4 * Tolerance<T>::value;

template <class T>
struct BatchResult {
    std::vector<T> yhat;
    std::vector<std::vector<T>> dW;
    std::vector<T> dalpha, dX;
};

template <class T>
BatchResult<T> run_batch(const mlpgrad::Network<T>& net, const std::vector<T>& X, const std::vector<T>& dy,
                         mlpgrad::BatchTape<T>& tape) {
    const std::size_t B = dy.size(), K0 = net.width(0), T_ = net.depth();
    // Prefilled with garbage: backward_batch must overwrite every entry, also for B = 0.
    BatchResult<T> r{std::vector<T>(B, T(1e30)), {}, std::vector<T>(net.width(T_), T(1e30)),
                     std::vector<T>(B * K0, T(1e30))};
    mlpgrad::forward_batch(net, mlpgrad::MatrixView<const T>(X.data(), B, K0), tape, mview(r.yhat));
    mlpgrad::BatchGradientsView<T> out;
    for (std::size_t t = 0; t < T_; ++t) r.dW.emplace_back(net.weight(t).size(), T(1e30));
    for (std::size_t t = 0; t < T_; ++t) out.weights.push_back({r.dW[t].data(), net.width(t + 1), net.width(t)});
    out.alpha = mview(r.dalpha);
    out.x = {r.dX.data(), B, K0};
    mlpgrad::backward_batch(net, tape, cview(dy), out);
    return r;
}

template <class T>
void check_batch_is_sum_of_singles(const OwnedNet<T>& onet, const std::vector<std::size_t>& batch_sizes,
                                   std::uint64_t seed) {
    const mlpgrad::Network<T> net = onet.network();
    const std::size_t K0 = net.width(0), T_ = net.depth();
    mlpgrad::BatchTape<T> shared_tape;  // reused across batch sizes, growing and shrinking
    for (std::size_t B : batch_sizes) {
        SCOPED_TRACE("B = " + std::to_string(B));
        Random rng(seed + B);
        const std::vector<T> X = random_vector<T>(rng, B * K0), dy = random_vector<T>(rng, B, 2.0);
        const BatchResult<T> r = run_batch(net, X, dy, shared_tape);

        // Σ_b over single examples, accumulated in double.
        std::vector<double> yhat(B), dalpha(net.width(T_)), dX(B * K0);
        std::vector<std::vector<double>> dW;
        for (std::size_t t = 0; t < T_; ++t) dW.emplace_back(net.weight(t).size());
        mlpgrad::Tape<T> tape;
        mlpgrad::Gradients<T> g(net.widths(), false);
        for (std::size_t b = 0; b < B; ++b) {
            yhat[b] = mlpgrad::value_and_grad(net, {X.data() + b * K0, K0}, tape, dy[b], g.view());
            for (std::size_t t = 0; t < T_; ++t)
                for (std::size_t i = 0; i < dW[t].size(); ++i) dW[t][i] += g.weights(t).data[i];
            for (std::size_t k = 0; k < dalpha.size(); ++k) dalpha[k] += g.alpha()[k];
            for (std::size_t j = 0; j < K0; ++j) dX[b * K0 + j] = g.x()[j];
        }
        EXPECT_TRUE(all_close(r.yhat, yhat, batch_tol<T>)) << "yhat";
        for (std::size_t t = 0; t < T_; ++t) EXPECT_TRUE(all_close(r.dW[t], dW[t], batch_tol<T>)) << "dW[" << t << "]";
        EXPECT_TRUE(all_close(r.dalpha, dalpha, batch_tol<T>)) << "dalpha";
        EXPECT_TRUE(all_close(r.dX, dX, batch_tol<T>)) << "dX";

        // A fresh tape gives bit-for-bit the same results as the reused one.
        mlpgrad::BatchTape<T> fresh;
        const BatchResult<T> f = run_batch(net, X, dy, fresh);
        EXPECT_EQ(f.yhat, r.yhat);
        EXPECT_EQ(f.dW, r.dW);
        EXPECT_EQ(f.dalpha, r.dalpha);
        EXPECT_EQ(f.dX, r.dX);
    }
}

class BatchIsSumOfSingles : public ::testing::TestWithParam<DtypeActivation> {
  protected:
    void check(const std::vector<std::size_t>& widths, const std::vector<std::size_t>& batch_sizes,
               std::uint64_t seed) {
        const Activation activation = std::get<1>(GetParam());
        with_dtype(std::get<0>(GetParam()), [&](auto zero) {
            using T = decltype(zero);
            check_batch_is_sum_of_singles(random_net<T>(widths, activation, seed), batch_sizes, seed);
        });
    }
};

TEST_P(BatchIsSumOfSingles, PerLayerWidths) { check({5, 19, 6, 2}, {70, 1, 33, 0, 5, 16, 2, 32}, 31); }
TEST_P(BatchIsSumOfSingles, Depth0) { check({4}, {0, 3, 40}, 32); }
TEST_P(BatchIsSumOfSingles, Depth1) { check({3, 17}, {1, 17, 65}, 33); }
TEST_P(BatchIsSumOfSingles, WidthOne) { check({1, 1, 1}, {1, 9, 34}, 34); }

INSTANTIATE_TEST_SUITE_P(AllActivations, BatchIsSumOfSingles, all_dtype_activations(), param_name);

TEST(BatchIsSumOfSinglesMixed, OneActivationPerLayer) {
    const std::vector<std::size_t> widths = {3, 8, 9, 7, 8, 6, 2};
    check_batch_is_sum_of_singles(random_net<double>(widths, all_activations(), 35), {0, 1, 20, 50}, 36);
    check_batch_is_sum_of_singles(random_net<float>(widths, all_activations(), 35), {0, 1, 20, 50}, 36);
}

}  // namespace
}  // namespace mlpgrad_test
