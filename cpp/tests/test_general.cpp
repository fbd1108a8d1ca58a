// The generalised network (issue 11): biases b^t, an output bias β and m outputs. Gradients of dyᵀŷ against
// central finite differences of the forward pass, for every activation in float and double; a batch equals
// the sum of its single examples (parameter-only batch gradients too); the new shapes' error messages.
#include "test_support.hpp"

namespace mlpgrad_test {
namespace {

using mlpgrad::MatrixView;
using mlpgrad::VectorView;

template <class T>
void check_general_finite_differences(OwnedNet<T> onet, std::uint64_t seed) {
    using FD = FiniteDifference<T>;
    Random rng(seed);
    std::vector<T> x = random_vector<T>(rng, onet.widths[0]);
    const std::vector<T> dy = random_vector<T>(rng, onet.outputs, 2.0);
    const mlpgrad::Network<T> net = onet.network();  // views onet's memory: perturbing onet perturbs net
    const std::size_t m = net.outputs();
    mlpgrad::Tape<T> tape, fd_tape;
    mlpgrad::Gradients<T> g(net);
    std::vector<T> yhat(m), y(m);
    mlpgrad::value_and_grad(net, cview(x), tape, cview(dy), g.view(), mview(yhat));
    CentralDifference<T> difference(net, tape, fd_tape);
    auto f = [&] {  // dyᵀŷ in double
        mlpgrad::forward(net, cview(x), fd_tape, mview(y));
        double s = 0;
        for (std::size_t j = 0; j < m; ++j) s += static_cast<double>(dy[j]) * static_cast<double>(y[j]);
        return s;
    };
    auto central = [&](T& p, T analytic) { return difference(f, p, analytic); };
    auto check = [&](std::vector<T>& params, VectorView<T> grad, const std::string& what) {
        ASSERT_EQ(params.size(), grad.size) << what;
        std::vector<double> fd;
        for (std::size_t i = 0; i < params.size(); ++i) fd.push_back(central(params[i], grad[i]));
        EXPECT_TRUE(all_close(grad.data, fd.data(), fd.size(), FD::tol)) << what;
    };
    for (std::size_t t = 0; t < net.depth(); ++t)
        check(onet.weights[t], {g.weights(t).data, g.weights(t).size()}, "∂/∂W[" + std::to_string(t) + "]");
    for (std::size_t t = 0; t < onet.biases.size(); ++t) check(onet.biases[t], g.bias(t), "∂/∂b[" + std::to_string(t) + "]");
    check(onet.alpha, g.alpha(), "∂/∂alpha");
    if (!onet.output_bias.empty()) check(onet.output_bias, g.output_bias(), "∂/∂beta");
    check(x, g.x(), "∂/∂x");
    EXPECT_LE(difference.skipped * 5, difference.parameters)
        << "too many parameters next to a kink to be a meaningful check";

    // ∂b^t = ∂u^t, ∂β = dy, and the lean (no intermediates) pass gives the same bits.
    for (std::size_t t = 0; t < onet.biases.size(); ++t) EXPECT_EQ(to_vector(g.bias(t)), to_vector(g.view().u[t]));
    if (!onet.output_bias.empty()) {
        EXPECT_EQ(to_vector(g.output_bias()), dy);
    }
    mlpgrad::Gradients<T> lean(net, false);
    std::vector<T> yhat2(m);
    mlpgrad::value_and_grad(net, cview(x), tape, cview(dy), lean.view(), mview(yhat2));
    EXPECT_EQ(yhat2, yhat);
    for (std::size_t t = 0; t < onet.biases.size(); ++t) EXPECT_EQ(to_vector(lean.bias(t)), to_vector(g.bias(t)));
    EXPECT_EQ(to_vector(lean.alpha()), to_vector(g.alpha()));
    EXPECT_EQ(to_vector(lean.x()), to_vector(g.x()));
}

struct GeneralShape {
    std::vector<std::size_t> widths;
    std::size_t outputs;
    bool biases, output_bias;
};
const std::vector<GeneralShape> general_shapes = {
    {{3, 7, 2, 5}, 3, true, true},     {{4, 6}, 1, true, true},   {{5}, 4, false, true},
    {{19, 37, 5}, 17, true, false},    {{2, 3, 3}, 2, false, false}, {{6, 5, 4}, 1, true, false},
};

class General : public ::testing::TestWithParam<DtypeActivation> {};

TEST_P(General, FiniteDifferences) {
    const Activation a = std::get<1>(GetParam());
    with_dtype(std::get<0>(GetParam()), [&](auto zero) {
        using T = decltype(zero);
        std::uint64_t seed = 100;
        for (const GeneralShape& s : general_shapes) {
            SCOPED_TRACE("widths[0] = " + std::to_string(s.widths[0]) + ", m = " + std::to_string(s.outputs));
            check_general_finite_differences(random_general_net<T>(s.widths, a, seed, s.outputs, s.biases, s.output_bias), seed + 1);
            seed += 2;
        }
    });
}

TEST_P(General, BatchIsTheSumOfSingleExamples) {
    const Activation a = std::get<1>(GetParam());
    with_dtype(std::get<0>(GetParam()), [&](auto zero) {
        using T = decltype(zero);
        std::uint64_t seed = 200;
        for (const GeneralShape& s : general_shapes)
            for (std::size_t B : {0, 1, 5, 40}) {
                SCOPED_TRACE("widths[0] = " + std::to_string(s.widths[0]) + ", m = " + std::to_string(s.outputs) +
                             ", B = " + std::to_string(B));
                check_general_batch(random_general_net<T>(s.widths, a, seed, s.outputs, s.biases, s.output_bias), B, seed + 1);
                ++seed;
            }
    });
}

INSTANTIATE_TEST_SUITE_P(AllActivations, General, all_dtype_activations(), param_name);

// A parameter-only BatchGradients fits any batch size, on the same tape, one after another.
TEST(GeneralBatch, ParameterOnlyGradientsFitAnyBatchSize) {
    const auto onet = random_general_net<double>({3, 4, 2}, Activation::tanh, 7, 2, true, true);
    const auto net = onet.network();
    mlpgrad::BatchGradients<double> params(net);
    mlpgrad::BatchTape<double> tape;
    for (std::size_t B : {1, 7, 3, 64}) {
        Random rng(B);
        const auto X = random_vector<double>(rng, B * 3), dY = random_vector<double>(rng, B * 2);
        std::vector<double> Y(B * 2);
        mlpgrad::forward_batch(net, MatrixView<const double>(X.data(), B, 3), tape, MatrixView<double>(Y.data(), B, 2));
        mlpgrad::BatchGradients<double> full(net, B);
        mlpgrad::backward_batch(net, tape, MatrixView<const double>(dY.data(), B, 2), params.view());
        mlpgrad::backward_batch(net, tape, MatrixView<const double>(dY.data(), B, 2), full.view());
        EXPECT_EQ(to_vector(params.weights(0)), to_vector(full.weights(0))) << "B = " << B;
        EXPECT_EQ(to_vector(params.bias(1)), to_vector(full.bias(1))) << "B = " << B;
        EXPECT_EQ(to_vector(params.output_bias()), to_vector(full.output_bias())) << "B = " << B;
    }
}

// The unchecked one-output overloads (the Python binding's per-call path) equal the checked ones.
TEST(GeneralBatch, UncheckedOneOutputOverloadsEqualTheCheckedOnes) {
    const auto onet = random_general_net<double>({3, 5, 2}, Activation::softplus, 12, 1, true, true);
    const auto net = onet.network();
    const std::vector<double> x = {0.5, -0.25, 1.0}, X = {0.5, -0.25, 1.0, 0.1, 0.2, 0.3}, dy = {0.75, -2.0};
    mlpgrad::Tape<double> tape;
    mlpgrad::Gradients<double> checked(net), unchecked(net);
    mlpgrad::value_and_grad(net, cview(x), tape, 0.75, checked.view());
    mlpgrad::unchecked::backward(net, tape, 0.75, unchecked.view());
    EXPECT_EQ(to_vector(unchecked.weights(0)), to_vector(checked.weights(0)));
    EXPECT_EQ(to_vector(unchecked.bias(0)), to_vector(checked.bias(0)));
    mlpgrad::BatchTape<double> batch_tape;
    std::vector<double> yhat(2);
    mlpgrad::BatchGradients<double> g1(net, 2), g2(net, 2);
    mlpgrad::forward_batch(net, MatrixView<const double>(X.data(), 2, 3), batch_tape, mview(yhat));
    mlpgrad::backward_batch(net, batch_tape, cview(dy), g1.view());
    mlpgrad::unchecked::backward_batch(net, batch_tape, cview(dy), g2.view());
    EXPECT_EQ(to_vector(g1.x()), to_vector(g2.x()));
    EXPECT_EQ(to_vector(g1.output_bias()), to_vector(g2.output_bias()));
}

// The scalar overloads keep meaning "one output"; the new shapes name the argument that does not fit.
TEST(GeneralErrors, ShapesNameTheArgument) {
    const std::vector<double> mem(128, 0.25);
    const double* p = mem.data();
    using M = MatrixView<const double>;
    using V = VectorView<const double>;
    const std::vector<M> weights = {M(p, 4, 3)};
    auto make = [&](M alpha, mlpgrad::NetworkOptions<double> o) { mlpgrad::Network<double> n(weights, alpha, Activation::relu, o); };
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { make(M(p, 3, 2), {}); }, "alpha"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { make(M(p, 4, 0), {}); }, "alpha"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { make(M(p, 4, 2), {{V(p, 3)}, {}}); }, "biases[0]"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { make(M(p, 4, 2), {{V(p, 4), V(p, 4)}, {}}); }, "biases"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { make(M(p, 4, 2), {{}, V(p, 3)}); }, "output_bias"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { make(M(p, 4, 2), {{V(nullptr, 4)}, {}}); }, "biases[0]"));

    const auto onet = random_general_net<double>({3, 4}, Activation::tanh, 8, 2, true, true);
    const auto net = onet.network();
    const std::vector<double> x = {0.1, 0.2, 0.3}, dy = {1.0, -1.0}, dy3 = {1.0, 2.0, 3.0};
    std::vector<double> y(2), y3(3);
    mlpgrad::Tape<double> tape;
    mlpgrad::Gradients<double> g(net), notes_shaped(net.widths());
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::forward(net, cview(x), tape); }, "forward(net,"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::forward(net, cview(x), tape, mview(y3)); }, "yhat"));
    mlpgrad::forward(net, cview(x), tape, mview(y));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward(net, tape, 1.0, g.view()); }, "dy"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward(net, tape, cview(dy3), g.view()); }, "dy"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::backward(net, tape, cview(dy), notes_shaped.view()); }, "out.alpha"));
    auto bad = g.view();
    bad.biases.clear();
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward(net, tape, cview(dy), bad); }, "out.biases"));
    bad = g.view();
    bad.output_bias = {};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward(net, tape, cview(dy), bad); }, "out.output_bias"));
    // gradients of a network without biases may not carry bias buffers
    const auto plain = random_general_net<double>({3, 4}, Activation::tanh, 9, 2, false, false);
    const auto plain_net = plain.network();
    mlpgrad::forward(plain_net, cview(x), tape, mview(y));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward(plain_net, tape, cview(dy), g.view()); }, "out.biases"));

    mlpgrad::BatchTape<double> batch_tape;
    std::vector<double> Y(4);
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::forward_batch(net, M(x.data(), 1, 3), batch_tape, mlpgrad::VectorView<double>(Y.data(), 1)); }, "yhat"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::forward_batch(net, M(x.data(), 1, 3), batch_tape, MatrixView<double>(Y.data(), 1, 3)); }, "yhat"));
    mlpgrad::forward_batch(net, M(x.data(), 1, 3), batch_tape, MatrixView<double>(Y.data(), 1, 2));
    mlpgrad::BatchGradients<double> gb(net, 1), gb2(net, 2);
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward_batch(net, batch_tape, cview(dy), gb.view()); }, "dy"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::backward_batch(net, batch_tape, M(dy.data(), 2, 1), gb.view()); }, "dy"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::backward_batch(net, batch_tape, M(dy.data(), 1, 2), gb2.view()); }, "out.x"));
    EXPECT_NO_THROW(mlpgrad::backward_batch(net, batch_tape, M(dy.data(), 1, 2), gb.view()));
}

}  // namespace
}  // namespace mlpgrad_test
