// Error paths: std::invalid_argument whose message starts with the offending argument's name for bad
// shapes, std::logic_error for a backward pass without a forward pass, and no writes before a throw.
#include "test_support.hpp"

#include <limits>

namespace mlpgrad_test {
namespace {

using mlpgrad::MatrixView;
using mlpgrad::VectorView;
using M = MatrixView<const double>;
using V = VectorView<const double>;

const std::vector<double> storage(64, 0.5);  // enough memory for any shape below
const double* mem = storage.data();

TEST(NetworkErrors, LayersThatDoNotChain) {
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({M(mem, 4, 3), M(mem, 2, 5)}, V(mem, 2), Activation::relu); }, "weights[1]"));
}

TEST(NetworkErrors, ZeroWidth) {
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({M(mem, 0, 3)}, V(mem, 0), Activation::relu); }, "weights[0]"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({M(mem, 2, 3), M(mem, 2, 0)}, V(mem, 2), Activation::relu); }, "weights[1]"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({}, V(mem, 0), std::vector<Activation>{}); }, "alpha"));
}

TEST(NetworkErrors, NullViews) {
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({M(nullptr, 2, 3)}, V(mem, 2), Activation::tanh); }, "weights[0]"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({M(mem, 2, 3)}, V(nullptr, 2), Activation::tanh); }, "alpha"));
}

TEST(NetworkErrors, AlphaOfTheWrongLength) {
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({M(mem, 2, 3)}, V(mem, 3), Activation::relu); }, "alpha"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] { mlpgrad::Network<double>({M(mem, 2, 3), M(mem, 4, 2)}, V(mem, 2), Activation::relu); }, "alpha"));
}

TEST(NetworkErrors, WrongNumberOfActivations) {
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [] {
            mlpgrad::Network<double>({M(mem, 2, 3), M(mem, 4, 2)}, V(mem, 4), std::vector<Activation>{Activation::relu});
        },
        "activation"));
}

TEST(NetworkErrors, ActivationOutsideTheEnumeration) {
    const auto unknown = static_cast<Activation>(17);
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { (void)mlpgrad::name(unknown); }, "the activation"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::Network<double>({M(mem, 2, 3), M(mem, 4, 2)}, V(mem, 4), {Activation::relu, unknown}); },
        "activation[1]"));
    EXPECT_EQ(mlpgrad::name(Activation::identity), "identity");
}

TEST(GradientsErrors, NoWidths) {
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([] { mlpgrad::Gradients<double> g({}); }, "widths"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([] { mlpgrad::Gradients<float> g({}, false); }, "widths"));
    const mlpgrad::Gradients<double> depth0({5});  // K_0 alone is a valid (depth-0) network
    EXPECT_EQ(depth0.alpha().size, 5u);
    EXPECT_EQ(depth0.x().size, 5u);
}

TEST(NetworkErrors, ValidNetworkReportsItsShape) {
    const mlpgrad::Network<double> net({M(mem, 4, 3), M(mem, 2, 4)}, V(mem, 2), {Activation::tanh, Activation::relu});
    EXPECT_EQ(net.depth(), 2u);
    EXPECT_EQ(net.widths(), (std::vector<std::size_t>{3, 4, 2}));
    EXPECT_EQ(net.max_width(), 4u);
    EXPECT_EQ(net.edge_count(), 12u + 8u);
    EXPECT_EQ(net.activation(1), Activation::relu);
    const mlpgrad::Network<double> depth0({}, V(mem, 5), std::vector<Activation>{});
    EXPECT_EQ(depth0.widths(), (std::vector<std::size_t>{5}));
}

// A 3 -> 4 -> 2 network, its input, and gradient buffers prefilled with a sentinel.
struct Fixture {
    OwnedNet<double> onet = random_net<double>({3, 4, 2}, Activation::tanh, 41);
    mlpgrad::Network<double> net = onet.network();
    std::vector<double> x = {0.1, -0.2, 0.3};
    static constexpr double sentinel = 42.0;
    mlpgrad::Gradients<double> g{net.widths()};
    Fixture() { fill(g.view()); }

    static void fill(const mlpgrad::GradientsView<double>& v) {
        for (auto& m : v.weights) std::fill(m.data, m.data + m.size(), sentinel);
        std::fill(v.alpha.begin(), v.alpha.end(), sentinel);
        std::fill(v.x.begin(), v.x.end(), sentinel);
        for (auto& z : v.z) std::fill(z.begin(), z.end(), sentinel);
        for (auto& u : v.u) std::fill(u.begin(), u.end(), sentinel);
    }
    static bool untouched(const mlpgrad::GradientsView<double>& v) {
        auto all = [](auto b, auto e) { return std::all_of(b, e, [](double d) { return d == sentinel; }); };
        bool ok = all(v.alpha.begin(), v.alpha.end()) && all(v.x.begin(), v.x.end());
        for (auto& m : v.weights) ok = ok && all(m.data, m.data + m.size());
        for (auto& z : v.z) ok = ok && all(z.begin(), z.end());
        for (auto& u : v.u) ok = ok && all(u.begin(), u.end());
        return ok;
    }
};

TEST(TapeErrors, SizesBeyondSizeTAreRefusedAndTheTapeKeepsWorking) {
    Fixture f;
    const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
    mlpgrad::Tape<double> tape;
    const double y = mlpgrad::forward(f.net, cview(f.x), tape);
    EXPECT_THROW(tape.reset({huge, huge}), std::length_error);
    EXPECT_TRUE(tape.recorded());
    EXPECT_EQ(tape.widths(), f.net.widths());
    EXPECT_NO_THROW(mlpgrad::backward(f.net, tape, 1.0, f.g.view()));
    EXPECT_EQ(mlpgrad::forward(f.net, cview(f.x), tape), y);

    mlpgrad::BatchTape<double> batch_tape;
    EXPECT_THROW(batch_tape.reset({3, 4, 2}, huge), std::length_error);  // 4 * B wraps around
    EXPECT_THROW(batch_tape.reset({huge, 1}, 3), std::length_error);
    std::vector<double> yhat(1);
    mlpgrad::forward_batch(f.net, M(f.x.data(), 1, 3), batch_tape, mview(yhat));
    EXPECT_NEAR(yhat[0], y, Tolerance<double>::value);  // (the batch kernels sum in another order)
}

TEST(ForwardErrors, InputOfTheWrongLength) {
    Fixture f;
    mlpgrad::Tape<double> tape;
    const std::vector<double> x4 = {1, 2, 3, 4};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::forward(f.net, cview(x4), tape); }, "x"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::forward(f.net, V(nullptr, 3), tape); }, "x"));
    EXPECT_FALSE(tape.recorded());
}

TEST(BackwardErrors, WithoutForwardIsALogicError) {
    Fixture f;
    mlpgrad::Tape<double> fresh;
    EXPECT_TRUE(throws_exactly<std::logic_error>([&] { mlpgrad::backward(f.net, fresh, 1.0, f.g.view()); }));
    EXPECT_TRUE(Fixture::untouched(f.g.view()));

    // A tape sized for the network but never recorded is no better.
    mlpgrad::Tape<double> sized(f.net.widths());
    EXPECT_TRUE(throws_exactly<std::logic_error>([&] { mlpgrad::backward(f.net, sized, 1.0, f.g.view()); }));

    // Nor is a tape that recorded a different network.
    OwnedNet<double> other = random_net<double>({3, 5, 2}, Activation::relu, 42);
    mlpgrad::Tape<double> tape;
    mlpgrad::forward(other.network(), cview(f.x), tape);
    EXPECT_TRUE(throws_exactly<std::logic_error>([&] { mlpgrad::backward(f.net, tape, 1.0, f.g.view()); }));
    EXPECT_TRUE(Fixture::untouched(f.g.view()));
}

TEST(BackwardErrors, GradientBuffersOfTheWrongShape) {
    Fixture f;
    mlpgrad::Tape<double> tape;
    const double yhat = mlpgrad::forward(f.net, cview(f.x), tape);
    std::vector<double> buf(64, Fixture::sentinel);
    auto expect_named = [&](mlpgrad::GradientsView<double> bad, const std::string& name) {
        Fixture::fill(f.g.view());
        EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward(f.net, tape, 1.0, bad); }, name));
        EXPECT_TRUE(throws_exactly<std::invalid_argument>(
            [&] { mlpgrad::value_and_grad(f.net, cview(f.x), tape, 1.0, bad); }, name));
        EXPECT_TRUE(Fixture::untouched(f.g.view())) << name << ": a buffer was written before the throw";
        EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](double d) { return d == Fixture::sentinel; }));
    };
    auto good = [&] { return f.g.view(); };

    auto v = good();
    v.weights.pop_back();
    expect_named(v, "out.weights");
    v = good();
    v.weights[1] = {buf.data(), 4, 2};  // transposed
    expect_named(v, "out.weights[1]");
    v = good();
    v.alpha = {buf.data(), 3};
    expect_named(v, "out.alpha");
    v = good();
    v.x = {buf.data(), 2};
    expect_named(v, "out.x");
    v = good();
    v.x = {nullptr, 3};
    expect_named(v, "out.x");
    v = good();
    v.u.clear();
    expect_named(v, "out.z");  // z without u
    v = good();
    v.z.clear();
    expect_named(v, "out.z");  // u without z
    v = good();
    v.z.pop_back();
    expect_named(v, "out.z");
    v = good();
    v.z[1] = {buf.data(), 3};
    expect_named(v, "out.z[1]");
    v = good();
    v.u[0] = {buf.data(), 2};
    expect_named(v, "out.u[0]");

    // The failed calls left the tape's forward pass in place: backward still works, with the same ŷ.
    ASSERT_TRUE(tape.recorded());
    EXPECT_EQ(tape.yhat(), yhat);
    EXPECT_NO_THROW(mlpgrad::backward(f.net, tape, 1.0, f.g.view()));
    EXPECT_FALSE(Fixture::untouched(f.g.view()));
}

TEST(BackwardErrors, BadInputLeavesBuffersAndTapeAlone) {
    Fixture f;
    mlpgrad::Tape<double> tape;
    mlpgrad::forward(f.net, cview(f.x), tape);
    const std::vector<double> z1 = to_vector(tape.z(1));
    const std::vector<double> x2 = {1, 2};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::value_and_grad(f.net, cview(x2), tape, 1.0, f.g.view()); }, "x"));
    EXPECT_TRUE(Fixture::untouched(f.g.view()));
    EXPECT_TRUE(tape.recorded());
    EXPECT_EQ(to_vector(tape.z(1)), z1);
}

TEST(BatchErrors, ShapesAndMissingForward) {
    Fixture f;
    const std::size_t B = 3;
    const std::vector<double> X(B * 3, 0.25), dy(B, 1.0), X4(B * 4, 0.25);
    std::vector<double> yhat(B), dW0(12), dW1(8), dalpha(2), dX(B * 3), big(64);
    mlpgrad::BatchGradientsView<double> out{{{dW0.data(), 4, 3}, {dW1.data(), 2, 4}}, mview(dalpha), {dX.data(), B, 3}};
    mlpgrad::BatchTape<double> tape;

    EXPECT_TRUE(throws_exactly<std::logic_error>([&] { mlpgrad::backward_batch(f.net, tape, cview(dy), out); }));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::forward_batch(f.net, M(X4.data(), B, 4), tape, mview(yhat)); }, "X"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::forward_batch(f.net, M(X.data(), B, 3), tape, {yhat.data(), 2}); }, "yhat"));
    EXPECT_FALSE(tape.recorded());

    mlpgrad::forward_batch(f.net, M(X.data(), B, 3), tape, mview(yhat));
    auto expect_named = [&](const mlpgrad::BatchGradientsView<double>& bad, const std::vector<double>& d,
                            const std::string& name) {
        std::fill(dW0.begin(), dW0.end(), Fixture::sentinel);
        EXPECT_TRUE(throws_exactly<std::invalid_argument>(
            [&] { mlpgrad::backward_batch(f.net, tape, cview(d), bad); }, name));
        EXPECT_TRUE(std::all_of(dW0.begin(), dW0.end(), [](double v) { return v == Fixture::sentinel; })) << name;
    };
    expect_named(out, std::vector<double>(B + 1, 1.0), "dy");
    auto bad = out;
    bad.x = {big.data(), B + 1, 3};
    expect_named(bad, dy, "out.x");
    bad = out;
    bad.weights[1] = {big.data(), 2, 3};
    expect_named(bad, dy, "out.weights[1]");
    bad = out;
    bad.alpha = {big.data(), 4};
    expect_named(bad, dy, "out.alpha");
    EXPECT_NO_THROW(mlpgrad::backward_batch(f.net, tape, cview(dy), out));
}

TEST(BatchErrors, TapeOfAnotherNetworkIsALogicError) {
    Fixture f;
    OwnedNet<double> other = random_net<double>({3, 6, 2}, Activation::relu, 43);
    const std::vector<double> X(6, 0.5), dy(2, 1.0);
    std::vector<double> yhat(2), dW0(12), dW1(8), dalpha(2), dX(6);
    mlpgrad::BatchTape<double> tape;
    mlpgrad::forward_batch(other.network(), M(X.data(), 2, 3), tape, mview(yhat));
    mlpgrad::BatchGradientsView<double> out{{{dW0.data(), 4, 3}, {dW1.data(), 2, 4}}, mview(dalpha), {dX.data(), 2, 3}};
    EXPECT_TRUE(throws_exactly<std::logic_error>([&] { mlpgrad::backward_batch(f.net, tape, cview(dy), out); }));
}

}  // namespace
}  // namespace mlpgrad_test
