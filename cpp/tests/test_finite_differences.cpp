// Gradients of forward/backward against central finite differences of the forward pass alone, for every
// activation in float and double, with per-layer widths, depth 0 and 1, and both ways of calling backward
// (keeping ∂/∂z and ∂/∂u, or not).
#include "test_support.hpp"

namespace mlpgrad_test {
namespace {

template <class T>
void check_finite_differences(OwnedNet<T> onet, std::uint64_t seed) {
    using FD = FiniteDifference<T>;
    Random rng(seed);
    std::vector<T> x = random_vector<T>(rng, onet.widths[0]);
    const T dy = T(0.75);
    const mlpgrad::Network<T> net = onet.network();  // views onet's memory: perturbing onet perturbs net
    const std::size_t T_ = net.depth();

    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> g(net.widths());
    const T yhat = mlpgrad::value_and_grad(net, cview(x), tape, dy, g.view());

    mlpgrad::Tape<T> fd_tape;
    CentralDifference<T> difference(net, tape, fd_tape);
    auto f = [&] { return static_cast<double>(dy * mlpgrad::forward(net, cview(x), fd_tape)); };
    auto central = [&](T& p, T analytic) { return difference(f, p, analytic); };

    for (std::size_t t = 0; t < T_; ++t) {
        std::vector<double> fd;
        for (std::size_t i = 0; i < onet.weights[t].size(); ++i)
            fd.push_back(central(onet.weights[t][i], g.weights(t).data[i]));
        EXPECT_TRUE(all_close(g.weights(t).data, fd.data(), fd.size(), FD::tol)) << "∂/∂W[" << t << "]";
    }
    std::vector<double> fd_alpha, fd_x;
    for (std::size_t k = 0; k < onet.alpha.size(); ++k) fd_alpha.push_back(central(onet.alpha[k], g.alpha()[k]));
    for (std::size_t j = 0; j < x.size(); ++j) fd_x.push_back(central(x[j], g.x()[j]));
    EXPECT_TRUE(all_close(g.alpha().data, fd_alpha.data(), fd_alpha.size(), FD::tol)) << "∂/∂alpha";
    EXPECT_TRUE(all_close(g.x().data, fd_x.data(), fd_x.size(), FD::tol)) << "∂/∂x";
    EXPECT_LE(difference.skipped * 5, difference.parameters)
        << "too many parameters next to a kink to be a meaningful check";

    // The unperturbed network again gives the same ŷ (perturbations were undone exactly).
    EXPECT_EQ(mlpgrad::forward(net, cview(x), fd_tape), yhat);

    // Intermediates: ∂/∂z^0 is ∂/∂x and ∂/∂z^T = dy α (the base case).
    EXPECT_EQ(to_vector(g.view().z[0]), to_vector(g.x()));
    for (std::size_t k = 0; k < onet.alpha.size(); ++k) EXPECT_EQ(g.view().z[T_][k], dy * onet.alpha[k]);

    // Without intermediates (scratch on the tape instead of caller buffers): bit-for-bit the same.
    mlpgrad::Gradients<T> lean(net.widths(), /*keep_intermediates=*/false);
    EXPECT_TRUE(lean.view().z.empty());
    EXPECT_EQ(mlpgrad::value_and_grad(net, cview(x), tape, dy, lean.view()), yhat);
    for (std::size_t t = 0; t < T_; ++t) EXPECT_EQ(to_vector(lean.weights(t)), to_vector(g.weights(t)));
    EXPECT_EQ(to_vector(lean.alpha()), to_vector(g.alpha()));
    EXPECT_EQ(to_vector(lean.x()), to_vector(g.x()));
}

class FiniteDifferences : public ::testing::TestWithParam<DtypeActivation> {
  protected:
    void check(const std::vector<std::size_t>& widths, std::uint64_t seed) {
        const Activation activation = std::get<1>(GetParam());  // (C++17 lambdas cannot capture bindings)
        with_dtype(std::get<0>(GetParam()), [&](auto zero) {
            using T = decltype(zero);
            check_finite_differences(random_net<T>(widths, activation, seed), seed + 1);
        });
    }
};

TEST_P(FiniteDifferences, PerLayerWidths) { check({3, 7, 2, 5}, 11); }
TEST_P(FiniteDifferences, WiderThanSimdLanes) { check({19, 37, 5}, 12); }  // lanes: 8 doubles, 16 floats
TEST_P(FiniteDifferences, Depth0) { check({6}, 13); }
TEST_P(FiniteDifferences, Depth1) { check({5, 4}, 14); }
TEST_P(FiniteDifferences, WidthOne) { check({1, 1, 1, 1}, 15); }
TEST_P(FiniteDifferences, Deep) { check({4, 6, 6, 6, 6, 6, 3}, 16); }

INSTANTIATE_TEST_SUITE_P(AllActivations, FiniteDifferences, all_dtype_activations(), param_name);

// A different activation in every layer.
TEST(FiniteDifferencesMixed, OneActivationPerLayer) {
    const std::vector<std::size_t> widths = {3, 8, 9, 7, 8, 6, 2};
    const std::vector<Activation> acts = all_activations();
    check_finite_differences(random_net<double>(widths, acts, 21), 22);
    check_finite_differences(random_net<float>(widths, acts, 21), 22);
}

}  // namespace
}  // namespace mlpgrad_test
