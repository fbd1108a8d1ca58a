// Buffers that share memory with what a call writes. An input (x, X, dy) that lives in the tape, e.g.
// tape.z(t) of an earlier pass, is copied first, so the result equals the call with a separate copy; an
// output (gradients, ŷ) that overlaps the tape or the network's parameters is refused with
// std::invalid_argument before anything is written.
#include "test_support.hpp"

namespace mlpgrad_test {
namespace {

using mlpgrad::MatrixView;
using mlpgrad::VectorView;

template <class T>
class Aliasing : public ::testing::Test {};
TYPED_TEST_SUITE(Aliasing, Dtypes, DtypeNames);

template <class T>
std::vector<T> all_gradients(const mlpgrad::Gradients<T>& g, std::size_t depth) {
    std::vector<T> out = to_vector(g.alpha());
    for (std::size_t t = 0; t < depth; ++t) {
        const auto w = to_vector(g.weights(t));
        out.insert(out.end(), w.begin(), w.end());
    }
    const auto x = to_vector(g.x());
    out.insert(out.end(), x.begin(), x.end());
    return out;
}

// x = tape.z(1) of net1's pass, used as the input of net2 on the same tape: net2 has other widths, so
// recording it reallocates the tape (the old x would be freed memory), or the same widths (z^0 = x copies
// within the tape).
TYPED_TEST(Aliasing, InputInsideTheTapeEqualsASeparateCopy) {
    using T = TypeParam;
    const auto o1 = random_net<T>({3, 5, 4}, Activation::tanh, 11);
    for (const std::vector<std::size_t>& widths2 : {std::vector<std::size_t>{5, 7, 2}, std::vector<std::size_t>{5, 5, 4}}) {
        const auto o2 = random_net<T>(widths2, Activation::sigmoid, 12);
        const auto net1 = o1.network(), net2 = o2.network();
        Random rng(13);
        const auto x = random_vector<T>(rng, 3);
        mlpgrad::Tape<T> tape, separate_tape;
        mlpgrad::forward(net1, cview(x), tape);
        const std::vector<T> z1 = to_vector(tape.z(1));
        mlpgrad::Gradients<T> got(net2.widths()), expected(net2.widths());
        const T y_expected = mlpgrad::value_and_grad(net2, cview(z1), separate_tape, T(1), expected.view());
        EXPECT_EQ(mlpgrad::value_and_grad(net2, VectorView<const T>(tape.z(1)), tape, T(1), got.view()), y_expected);
        EXPECT_EQ(all_gradients(got, net2.depth()), all_gradients(expected, net2.depth()));
        // and z^0 itself as the input of the same network again
        EXPECT_EQ(mlpgrad::forward(net2, VectorView<const T>(tape.z(0)), tape), y_expected);
        // a u^t of the tape is an input like any other
        mlpgrad::forward(net1, cview(x), tape);
        const std::vector<T> u2 = to_vector(tape.u(2));
        mlpgrad::Tape<T> tape_for_copy;
        const auto o3 = random_net<T>({4, 3}, Activation::relu, 14);
        EXPECT_EQ(mlpgrad::forward(o3.network(), VectorView<const T>(tape.u(2)), tape),
                  mlpgrad::forward(o3.network(), cview(u2), tape_for_copy));
    }
}

TYPED_TEST(Aliasing, GradientsInsideTheTapeOrTheWeightsAreRefused) {
    using T = TypeParam;
    auto onet = random_net<T>({3, 4, 2}, Activation::tanh, 21);
    const auto net = onet.network();
    const std::vector<T> x = {T(0.1), T(-0.2), T(0.3)};
    mlpgrad::Tape<T> tape;
    mlpgrad::forward(net, cview(x), tape);
    const std::vector<T> z1 = to_vector(tape.z(1)), u1 = to_vector(tape.u(1));
    const std::vector<T> w0 = onet.weights[0], alpha = onet.alpha;
    mlpgrad::Gradients<T> g(net.widths());
    for (int which = 0; which < 4; ++which) {
        auto bad = g.view();
        std::string name;
        if (which == 0) bad.x = {tape.u(1).data, 3}, name = "out.x";
        if (which == 1) bad.weights[1] = {tape.z(0).data, 2, 4}, name = "out.weights[1]";
        if (which == 2) bad.alpha = {onet.weights[1].data(), 2}, name = "out.alpha";
        if (which == 3) bad.z[0] = {onet.weights[0].data() + 2, 3}, name = "out.z[0]";
        EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward(net, tape, T(1), bad); }, name));
        EXPECT_TRUE(throws_exactly<std::invalid_argument>(
            [&] { mlpgrad::value_and_grad(net, cview(x), tape, T(1), bad); }, name));
    }
    // nothing was written: the tape, the weights and alpha are as they were
    EXPECT_EQ(to_vector(tape.z(1)), z1);
    EXPECT_EQ(to_vector(tape.u(1)), u1);
    EXPECT_EQ(onet.weights[0], w0);
    EXPECT_EQ(onet.alpha, alpha);
    EXPECT_TRUE(tape.recorded());
}

TYPED_TEST(Aliasing, BatchInputsInsideTheTapeEqualASeparateCopy) {
    using T = TypeParam;
    const std::size_t B = 6;
    const auto o1 = random_net<T>({3, 4, 2}, Activation::softplus, 31), o2 = random_net<T>({4, 5, 1}, Activation::tanh, 32);
    const auto net1 = o1.network(), net2 = o2.network();
    Random rng(33);
    const auto X = random_vector<T>(rng, B * 3);
    std::vector<T> yhat(B), y_expected(B), y_got(B);
    mlpgrad::BatchTape<T> tape, separate_tape;
    mlpgrad::forward_batch(net1, MatrixView<const T>(X.data(), B, 3), tape, mview(yhat));
    // Z^1 (4 × B) read as a (B × 4) input of net2: any memory of the right size is a valid input
    const MatrixView<const T> inside(tape.Z(1).data, B, 4);
    const std::vector<T> copy(inside.data, inside.data + inside.size());
    mlpgrad::forward_batch(net2, MatrixView<const T>(copy.data(), B, 4), separate_tape, mview(y_expected));
    mlpgrad::forward_batch(net2, inside, tape, mview(y_got));
    EXPECT_EQ(y_got, y_expected);

    // dy inside the tape (a row of Z^1 of the recorded pass), or inside out: copied before the pass writes
    const std::vector<T> dy = to_vector(VectorView<T>(tape.Z(1).data, B));
    std::vector<T> dW0(20), dW1(5), dalpha(1), dX(B * 4), e0(20), e1(5), ealpha(1), eX(B * 4);
    const mlpgrad::BatchGradientsView<T> out{{{dW0.data(), 5, 4}, {dW1.data(), 1, 5}}, mview(dalpha), {dX.data(), B, 4}};
    const mlpgrad::BatchGradientsView<T> expected{{{e0.data(), 5, 4}, {e1.data(), 1, 5}}, mview(ealpha), {eX.data(), B, 4}};
    mlpgrad::backward_batch(net2, separate_tape, cview(dy), expected);
    mlpgrad::backward_batch(net2, tape, VectorView<const T>(tape.Z(1).data, B), out);
    EXPECT_EQ(dW0, e0);
    EXPECT_EQ(dX, eX);
    std::copy(dy.begin(), dy.end(), dX.begin());  // dy in out.x, which the pass overwrites
    mlpgrad::backward_batch(net2, tape, VectorView<const T>(dX.data(), B), out);
    EXPECT_EQ(dW0, e0);
    EXPECT_EQ(dX, eX);
}

TYPED_TEST(Aliasing, BatchOutputsInsideTheTapeAreRefused) {
    using T = TypeParam;
    const std::size_t B = 5;
    const auto onet = random_net<T>({3, 4, 2}, Activation::relu, 41);
    const auto net = onet.network();
    Random rng(42);
    const auto X = random_vector<T>(rng, B * 3), dy = random_vector<T>(rng, B);
    std::vector<T> yhat(B);
    mlpgrad::BatchTape<T> tape;
    mlpgrad::forward_batch(net, MatrixView<const T>(X.data(), B, 3), tape, mview(yhat));
    const std::vector<T> Z1 = to_vector(tape.Z(1));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::forward_batch(net, MatrixView<const T>(X.data(), B, 3), tape, VectorView<T>(tape.Z(1).data, B)); },
        "yhat"));
    EXPECT_TRUE(tape.recorded());
    std::vector<T> dW0(12), dW1(8), dalpha(2), dX(B * 3);
    mlpgrad::BatchGradientsView<T> out{{{dW0.data(), 4, 3}, {dW1.data(), 2, 4}}, mview(dalpha), {dX.data(), B, 3}};
    auto bad = out;
    bad.x = {tape.U(1).data, B, 3};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { mlpgrad::backward_batch(net, tape, cview(dy), bad); }, "out.x"));
    bad = out;
    bad.weights[0] = {const_cast<T*>(onet.weights[0].data()), 4, 3};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::backward_batch(net, tape, cview(dy), bad); }, "out.weights[0]"));
    EXPECT_EQ(to_vector(tape.Z(1)), Z1);
    EXPECT_NO_THROW(mlpgrad::backward_batch(net, tape, cview(dy), out));
}

}  // namespace
}  // namespace mlpgrad_test
