// σ and σ': the notes' ReLU convention σ'(0) = 1 (also through a whole network, single and batch),
// σ' against finite differences of σ, overflow-free sigmoid/softplus, names.
#include "test_support.hpp"

#include <cmath>
#include <cstring>
#include <limits>

namespace mlpgrad_test {
namespace {

template <class T>
class ActivationsTyped : public ::testing::Test {};
TYPED_TEST_SUITE(ActivationsTyped, Dtypes, DtypeNames);

TYPED_TEST(ActivationsTyped, ReluDerivativeIsOneAtZero) {
    using T = TypeParam;
    for (Activation a : {Activation::relu, Activation::leaky_relu}) {
        SCOPED_TRACE(std::string(mlpgrad::name(a)));
        EXPECT_EQ(mlpgrad::activation_derivative(a, T(0)), T(1));
        EXPECT_EQ(mlpgrad::activation_derivative(a, -T(0)), T(1));  // -0 >= 0
        EXPECT_EQ(mlpgrad::activation_derivative(a, std::numeric_limits<T>::denorm_min()), T(1));
        EXPECT_EQ(mlpgrad::activate(a, T(0)), T(0));
    }
    EXPECT_EQ(mlpgrad::activation_derivative(Activation::relu, -std::numeric_limits<T>::denorm_min()), T(0));
    EXPECT_EQ(mlpgrad::activation_derivative(Activation::leaky_relu, -std::numeric_limits<T>::denorm_min()), T(0.01));
    EXPECT_EQ(mlpgrad::activate(Activation::relu, T(-3)), T(0));
    EXPECT_EQ(mlpgrad::activate(Activation::leaky_relu, T(-3)), T(0.01) * T(-3));
}

// A network whose pre-activations are all exactly 0: with σ'(0) = 1 the gradient flows through every unit.
//   W1 = [[1, -1], [0.5, -0.5]], x = (2, 2):  u1 = (0, 0), z1 = (0, 0)
//   W2 = [[3, 1]]:                            u2 = (0),    z2 = (0),  ŷ = α z2 = 0 with α = (1.5)
// ∂ŷ/∂z2 = 1.5, ∂ŷ/∂u2 = 1.5, ∂ŷ/∂W2 = 1.5 z1ᵀ = (0, 0), ∂ŷ/∂z1 = W2ᵀ 1.5 = (4.5, 1.5) = ∂ŷ/∂u1,
// ∂ŷ/∂W1 = ∂ŷ/∂u1 xᵀ = [[9, 9], [3, 3]], ∂ŷ/∂x = W1ᵀ (4.5, 1.5) = (5.25, -5.25), ∂ŷ/∂α = z2 = (0).
// (With PyTorch's σ'(0) = 0 every one of these gradients would be 0.)
TYPED_TEST(ActivationsTyped, ReluConventionThroughANetwork) {
    using T = TypeParam;
    for (Activation a : {Activation::relu, Activation::leaky_relu}) {
        SCOPED_TRACE(std::string(mlpgrad::name(a)));
        OwnedNet<T> onet{{2, 2, 1}, {a, a}, {{1, -1, 0.5, -0.5}, {3, 1}}, {1.5}, {}, {}, 1};
        const auto net = onet.network();
        const std::vector<T> x = {2, 2};
        mlpgrad::Tape<T> tape;
        mlpgrad::Gradients<T> g(net.widths());
        EXPECT_EQ(mlpgrad::value_and_grad(net, cview(x), tape, T(1), g.view()), T(0));
        EXPECT_EQ(to_vector(tape.u(1)), (std::vector<T>{0, 0}));
        EXPECT_EQ(to_vector(g.weights(0)), (std::vector<T>{9, 9, 3, 3}));
        EXPECT_EQ(to_vector(g.weights(1)), (std::vector<T>{0, 0}));
        EXPECT_EQ(to_vector(g.alpha()), (std::vector<T>{0}));
        EXPECT_EQ(to_vector(g.x()), (std::vector<T>{5.25, -5.25}));
        EXPECT_EQ(to_vector(g.view().u[0]), (std::vector<T>{4.5, 1.5}));
        EXPECT_EQ(to_vector(g.view().u[1]), (std::vector<T>{1.5}));

        // The batch path follows the same convention: two copies of x, dy = (1, 2).
        const std::vector<T> X = {2, 2, 2, 2}, dy = {1, 2};
        mlpgrad::BatchTape<T> btape;
        std::vector<T> yhat(2), dW0(4), dW1(2), dalpha(1), dX(4);
        mlpgrad::forward_batch(net, mlpgrad::MatrixView<const T>(X.data(), 2, 2), btape, mview(yhat));
        mlpgrad::BatchGradientsView<T> out{{{dW0.data(), 2, 2}, {dW1.data(), 1, 2}}, mview(dalpha), {dX.data(), 2, 2}};
        mlpgrad::backward_batch(net, btape, cview(dy), out);
        EXPECT_EQ(yhat, (std::vector<T>{0, 0}));
        EXPECT_EQ(dW0, (std::vector<T>{27, 27, 9, 9}));
        EXPECT_EQ(dW1, (std::vector<T>{0, 0}));
        EXPECT_EQ(dX, (std::vector<T>{5.25, -5.25, 10.5, -10.5}));
    }
}

TYPED_TEST(ActivationsTyped, DerivativeMatchesFiniteDifferences) {
    using T = TypeParam;
    const double h = std::is_same_v<T, float> ? 1e-2 : 1e-6, tol = std::is_same_v<T, float> ? 1e-3 : 1e-8;
    for (Activation a : all_activations()) {
        SCOPED_TRACE(std::string(mlpgrad::name(a)));
        for (double u : {-6.0, -2.5, -1.0, -0.3, 0.2, 0.7, 1.5, 4.0}) {
            const T up = T(u + h), um = T(u - h);
            const double fd = (static_cast<double>(mlpgrad::activate(a, up)) - mlpgrad::activate(a, um)) /
                              (static_cast<double>(up) - um);
            EXPECT_NEAR(mlpgrad::activation_derivative(a, T(u)), fd, tol) << "u = " << u;
        }
    }
}

TYPED_TEST(ActivationsTyped, SigmoidAndSoftplusDoNotOverflow) {
    using T = TypeParam;
    const T big = std::is_same_v<T, float> ? T(500) : T(5000);  // exp(big) overflows
    using mlpgrad::activate;
    using mlpgrad::activation_derivative;
    EXPECT_EQ(activate(Activation::sigmoid, big), T(1));
    EXPECT_EQ(activate(Activation::sigmoid, -big), T(0));
    EXPECT_EQ(activate(Activation::softplus, big), big);
    EXPECT_EQ(activate(Activation::softplus, -big), T(0));
    EXPECT_EQ(activation_derivative(Activation::softplus, big), T(1));
    EXPECT_EQ(activation_derivative(Activation::softplus, -big), T(0));
    EXPECT_EQ(activation_derivative(Activation::sigmoid, big), T(0));
    EXPECT_EQ(activation_derivative(Activation::tanh, -big), T(0));
    for (Activation a : all_activations())
        for (T u : {-big, big}) {
            EXPECT_TRUE(std::isfinite(activate(a, u))) << mlpgrad::name(a);
            EXPECT_TRUE(std::isfinite(activation_derivative(a, u))) << mlpgrad::name(a);
        }
}

// ∂u = ∂z ∘ σ'(u) (kernels::hadamard_derivative, the single-example and DAG backward step) on every pair of
// special values equals the scalar d · σ'(u) bit for bit (-1 · 0 = -0; a NaN where it gives NaN, Inf · 0), on whole vectors (the
// ReLU vector path) and on the last entries.
TYPED_TEST(ActivationsTyped, HadamardDerivativeEqualsTheScalarProductBitForBit) {
    using T = TypeParam;
    using lim = std::numeric_limits<T>;
    const std::vector<T> specials = {lim::quiet_NaN(), -lim::quiet_NaN(), T(0), -T(0), lim::infinity(),
                                     -lim::infinity(), lim::denorm_min(), -lim::denorm_min(), T(1), T(-1)};
    const std::size_t S = specials.size(), n = S * S + 3;
    std::vector<T> dz(n), u(n), z(n), du(n);
    for (std::size_t k = 0; k < n; ++k) {
        dz[k] = specials[k % S];
        u[k] = specials[(k / S) % S];
    }
    for (Activation a : all_activations()) {
        for (std::size_t k = 0; k < n; ++k) z[k] = mlpgrad::activate(a, u[k]);
        mlpgrad::dispatch(a, [&](auto c) {
            mlpgrad::kernels::hadamard_derivative<decltype(c)::value>(dz.data(), u.data(), z.data(), du.data(), n);
        });
        for (std::size_t k = 0; k < n; ++k) {
            const T expected = mlpgrad::dispatch(a, [&](auto c) {
                return dz[k] * mlpgrad::activation_traits<decltype(c)::value>::derivative(u[k], z[k]);
            });
            // (A NaN's sign and payload depend on the operand order the compiler picks: NaN is all we ask.)
            if (std::isnan(expected)) ASSERT_TRUE(std::isnan(du[k])) << mlpgrad::name(a) << " " << k;
            else ASSERT_EQ(0, std::memcmp(&du[k], &expected, sizeof(T)))
                << mlpgrad::name(a) << " of dz = " << dz[k] << ", u = " << u[k] << ": got " << du[k];
        }
    }
}

TEST(Activations, NamesRoundTrip) {
    ASSERT_EQ(all_activations().size(), 6u);
    for (Activation a : all_activations()) EXPECT_EQ(mlpgrad::parse_activation(mlpgrad::name(a)), a);
    EXPECT_EQ(mlpgrad::parse_activation("leaky_relu"), Activation::leaky_relu);
}

TEST(Activations, UnknownNameThrowsListingTheKnownOnes) {
    try {
        mlpgrad::parse_activation("gelu");
        FAIL() << "did not throw";
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("'gelu'"), std::string::npos) << what;
        for (auto n : mlpgrad::activation_names) EXPECT_NE(what.find("'" + std::string(n) + "'"), std::string::npos);
    }
}

TEST(Version, HeaderMatchesTheCMakeProject) {
    EXPECT_EQ(MLPGRAD_VERSION_MAJOR, MLPGRAD_PROJECT_VERSION_MAJOR);
    EXPECT_EQ(MLPGRAD_VERSION_MINOR, MLPGRAD_PROJECT_VERSION_MINOR);
    EXPECT_EQ(MLPGRAD_VERSION_PATCH, MLPGRAD_PROJECT_VERSION_PATCH);
}

}  // namespace
}  // namespace mlpgrad_test
