// Blocked summation (kernels::block_length). Every sum of K products -- u = W z, ŷ = αᵀ z and
// ∂ŷ/∂z = Wᵀ ∂ŷ/∂u for one example; W Z, Wᵀ ∂U, Σ_b ∂U Zᵀ, Σ_b dy_b Z and αᵀ Z for a batch -- stays within
// 16·√K·u·Σ|a_j b_j| of the exact value on constant-sign data in float, and a float total does not stall
// at 2^24. The blocked kernels also equal a plain long double computation at sizes around the blocks.
#include "test_support.hpp"

#include <limits>

namespace mlpgrad_test {
namespace {

using mlpgrad::MatrixView;
using mlpgrad::VectorView;
using mlpgrad::kernels::block_length;

TEST(Summation, BlocksKeepEveryProductWithin16SqrtKRoundings) {
    EXPECT_EQ(block_length(1), 256u);
    EXPECT_EQ(block_length(256), 256u);
    EXPECT_EQ(block_length(257), 128u);
    EXPECT_EQ(block_length(128 * 128), 128u);
    EXPECT_EQ(block_length(129 * 129), 256u);
    EXPECT_EQ(block_length(65536), 256u);
    EXPECT_EQ(block_length(100000000), 16384u);
    EXPECT_EQ(block_length(std::numeric_limits<std::size_t>::max()), std::size_t(1) << 32);
    // A product passes through at most b (its block) + ⌈K/b⌉ - 1 (the running total) roundings.
    for (std::size_t K = 1; K < 200000000; K += 1 + K / 7) {
        const std::size_t b = block_length(K), depth = std::min(K, b + (K + b - 1) / b - 1);
        EXPECT_LE(static_cast<double>(depth), 16.0 * std::sqrt(static_cast<double>(K))) << "K = " << K;
    }
}

// |got - exact| <= 16 √K u Σ|a_j b_j|, exact and Σ|a_j b_j| in long double.
::testing::AssertionResult within_bound(float got, const std::vector<float>& a, const std::vector<float>& b,
                                        const char* what) {
    long double exact = 0, magnitude = 0;
    for (std::size_t j = 0; j < a.size(); ++j) {
        exact += static_cast<long double>(a[j]) * b[j];
        magnitude += std::fabs(static_cast<long double>(a[j]) * b[j]);
    }
    const double u = std::numeric_limits<float>::epsilon() / 2;
    const double bound = 16 * std::sqrt(static_cast<double>(a.size())) * u * static_cast<double>(magnitude);
    const double err = std::fabs(static_cast<double>(got - exact));
    if (err <= bound) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << ": error " << err << " > bound " << bound << " ("
                                         << err / (u * static_cast<double>(magnitude)) << " u Σ|ab|)";
}

// Constant positive data, K = 65,536: every partial sum of a long chain then rounds the same way, and with
// products of 1.1f one chain is 11,084 u Σ|ab| off (2.7 times the bound) where the blocked sum is not.
TEST(Summation, Float32ConstantSignSumsStayWithinTheBound) {
    const std::size_t K = 65536;
    const std::vector<float> a(K, 0.55f), b(K, 2.0f), ones(K, 1.0f), one = {1.0f};

    // one row of W: u = w·x (single and batch)
    const mlpgrad::Network<float> row({{a.data(), 1, K}}, {one.data(), 1}, Activation::identity);
    mlpgrad::Tape<float> tape;
    EXPECT_TRUE(within_bound(mlpgrad::forward(row, cview(b), tape), a, b, "u = W z"));
    mlpgrad::BatchTape<float> batch_tape;
    std::vector<float> yhat(2), X2(2 * K, 2.0f);
    mlpgrad::forward_batch(row, MatrixView<const float>(X2.data(), 2, K), batch_tape, mview(yhat));
    EXPECT_TRUE(within_bound(yhat[0], a, b, "batch U = W Z"));

    // one column of W: ŷ = α·z over K, ∂ŷ/∂x = Wᵀ ∂ŷ/∂u over K rows (single and batch)
    const mlpgrad::Network<float> column({{a.data(), K, 1}}, cview(b), Activation::identity);
    mlpgrad::Gradients<float> g(column.widths(), false);
    EXPECT_TRUE(within_bound(mlpgrad::value_and_grad(column, cview(one), tape, 1.0f, g.view()), a, b, "ŷ = αᵀ z"));
    EXPECT_TRUE(within_bound(g.x()[0], a, b, "∂ŷ/∂x = Wᵀ ∂ŷ/∂u"));
    mlpgrad::forward_batch(column, MatrixView<const float>(ones.data(), 2, 1), batch_tape, mview(yhat));
    EXPECT_TRUE(within_bound(yhat[0], a, b, "batch ŷ = αᵀ Z"));
    std::vector<float> dW(K), dalpha(K), dX(2);
    const std::vector<float> dy2 = {1.0f, 1.0f};
    mlpgrad::backward_batch(column, batch_tape, cview(dy2), {{{dW.data(), K, 1}}, mview(dalpha), {dX.data(), 2, 1}});
    EXPECT_TRUE(within_bound(dX[0], a, b, "batch ∂X = Wᵀ ∂U"));

    // a batch of K examples: ∂α = Σ_b dy_b z_b and ∂W = Σ_b ∂u_b x_bᵀ
    const std::vector<float> w = {1.0f}, alpha = {0.55f};
    const mlpgrad::Network<float> scalar({{w.data(), 1, 1}}, cview(alpha), Activation::identity);
    std::vector<float> yK(K), dW1(1), dalpha1(1), dXK(K);
    mlpgrad::forward_batch(scalar, MatrixView<const float>(b.data(), K, 1), batch_tape, mview(yK));
    mlpgrad::backward_batch(scalar, batch_tape, cview(ones), {{{dW1.data(), 1, 1}}, mview(dalpha1), {dXK.data(), K, 1}});
    EXPECT_TRUE(within_bound(dalpha1[0], ones, b, "batch ∂α = Σ_b dy_b z_b"));
    EXPECT_TRUE(within_bound(dW1[0], a, b, "batch ∂W = Σ_b ∂u_b x_bᵀ"));
}

// The same bound for m = 2 outputs, whose ŷ = αᵀ z and ∂α = Σ_b z_b dy_bᵀ run on batch_output.hpp's kernels.
TEST(Summation, Float32VectorOutputSumsStayWithinTheBound) {
    const std::size_t K = 65536;
    const std::vector<float> a(K, 0.55f), b(K, 2.0f), ones(K, 1.0f), alpha2(2 * K, 2.0f), ones2(2 * K, 1.0f);
    mlpgrad::BatchTape<float> batch_tape;

    // ŷ_j = Σ_k α[k, j] z_k over K_T = K, z = W·1 = a
    const mlpgrad::Network<float> column({{a.data(), K, 1}}, MatrixView<const float>(alpha2.data(), K, 2),
                                         Activation::identity);
    std::vector<float> yhat(4);
    mlpgrad::forward_batch(column, MatrixView<const float>(ones.data(), 2, 1), batch_tape,
                           MatrixView<float>(yhat.data(), 2, 2));
    for (float y : yhat) EXPECT_TRUE(within_bound(y, a, b, "batch ŷ = αᵀ Z, m = 2"));

    // a batch of K examples: ∂α[0, j] = Σ_b z_b dy_bj with z_b = b_b, dy = 1
    const std::vector<float> w = {1.0f}, alpha = {0.55f, 0.55f};
    const mlpgrad::Network<float> scalar({{w.data(), 1, 1}}, MatrixView<const float>(alpha.data(), 1, 2),
                                         Activation::identity);
    std::vector<float> yK(2 * K), dW1(1), dalpha(2);
    mlpgrad::forward_batch(scalar, MatrixView<const float>(b.data(), K, 1), batch_tape, MatrixView<float>(yK.data(), K, 2));
    mlpgrad::backward_batch(scalar, batch_tape, MatrixView<const float>(ones2.data(), K, 2),
                            {{{dW1.data(), 1, 1}}, mview(dalpha), {}});
    for (float d : dalpha) EXPECT_TRUE(within_bound(d, ones, b, "batch ∂α = Σ_b z_b dy_bᵀ, m = 2"));
}

// 2^24 followed by ones: a float total in one chain stays at 2^24 (2^24 + 1 rounds back to it), the
// blocked one loses at most the ones of the first block.
TEST(Summation, Float32TotalDoesNotStallAt2To24) {
    const std::size_t K = (std::size_t(1) << 17) + 1;
    std::vector<float> x(K, 1.0f);
    x[0] = 16777216.0f;
    const std::vector<float> ones(K, 1.0f);
    const mlpgrad::Network<float> depth0({}, cview(ones), std::vector<Activation>{});
    mlpgrad::Tape<float> tape;
    EXPECT_TRUE(within_bound(mlpgrad::forward(depth0, cview(x), tape), ones, x, "forward"));
    mlpgrad::BatchTape<float> batch_tape;
    std::vector<float> yhat(1);
    mlpgrad::forward_batch(depth0, MatrixView<const float>(x.data(), 1, K), batch_tape, mview(yhat));
    EXPECT_TRUE(within_bound(yhat[0], ones, x, "forward_batch"));
    EXPECT_GT(yhat[0], 16777216.0f + static_cast<float>(K / 2));  // not stalled
}

// The blocked kernels against a plain long double computation, at widths and batch sizes that cross the
// blocks (K_out > 256 rows for the transpose-matvec, depth > 256 for every GEMM, B > 256 for Σ_b).
TEST(Summation, BlockedKernelsEqualAPlainComputation) {
    const std::vector<std::size_t> widths = {300, 260, 1};
    const std::size_t B = 300;
    const auto onet = random_net<double>(widths, Activation::identity, 51);
    const auto net = onet.network();
    Random rng(52);
    const auto X = random_vector<double>(rng, B * widths[0]), dy = random_vector<double>(rng, B);
    const std::vector<double>& W1 = onet.weights[0];
    const std::vector<double>& W2 = onet.weights[1];

    // Plain sums in long double: z1 = W1 x, ŷ = α W2 z1 (identity), ∂x = W1ᵀ (W2ᵀ α dy), ∂W1, ∂W2, ∂α.
    std::vector<long double> yhat(B), dX(B * 300), dW1(260 * 300), dW2(260), dalpha(1);
    for (std::size_t e = 0; e < B; ++e) {
        const double* x = X.data() + e * 300;
        std::vector<long double> z1(260), du1(260);
        long double u2 = 0;
        for (std::size_t i = 0; i < 260; ++i) {
            for (std::size_t j = 0; j < 300; ++j) z1[i] += static_cast<long double>(W1[i * 300 + j]) * x[j];
            u2 += static_cast<long double>(W2[i]) * z1[i];
        }
        yhat[e] = onet.alpha[0] * u2;
        dalpha[0] += dy[e] * u2;
        const long double du2 = dy[e] * onet.alpha[0];
        for (std::size_t i = 0; i < 260; ++i) {
            dW2[i] += du2 * z1[i];
            du1[i] = du2 * W2[i];
            for (std::size_t j = 0; j < 300; ++j) {
                dW1[i * 300 + j] += du1[i] * x[j];
                dX[e * 300 + j] += du1[i] * W1[i * 300 + j];
            }
        }
    }
    const double tol = 1e-13;
    std::vector<double> got_yhat(B), got_dW1(dW1.size()), got_dW2(260), got_dalpha(1), got_dX(dX.size());
    mlpgrad::BatchTape<double> batch_tape;
    mlpgrad::forward_batch(net, MatrixView<const double>(X.data(), B, 300), batch_tape, mview(got_yhat));
    mlpgrad::backward_batch(net, batch_tape, cview(dy),
                            {{{got_dW1.data(), 260, 300}, {got_dW2.data(), 1, 260}}, mview(got_dalpha), {got_dX.data(), B, 300}});
    EXPECT_TRUE(all_close(got_yhat, yhat, tol));
    EXPECT_TRUE(all_close(got_dW1, dW1, tol));
    EXPECT_TRUE(all_close(got_dW2, dW2, tol));
    EXPECT_TRUE(all_close(got_dalpha, dalpha, tol));
    EXPECT_TRUE(all_close(got_dX, dX, tol));

    // one example: the row blocks of the transpose-matvec ∂x = W1ᵀ ∂u (260 rows)
    mlpgrad::Tape<double> tape;
    mlpgrad::Gradients<double> g(net.widths());
    const double y0 = mlpgrad::value_and_grad(net, {X.data(), 300}, tape, dy[0], g.view());
    EXPECT_NEAR(y0, static_cast<double>(yhat[0]), tol * (1 + std::fabs(y0)));
    std::vector<long double> dx0(dX.begin(), dX.begin() + 300);
    EXPECT_TRUE(all_close(to_vector(g.x()), dx0, tol));
}

}  // namespace
}  // namespace mlpgrad_test
