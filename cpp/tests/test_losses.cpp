// The fused softmax cross-entropy (mlpgrad/losses/softmax_cross_entropy.hpp): against the formula evaluated
// in long double, labels against one-hot probabilities, sample weights, the IEEE limits the Python docs
// promise (−Inf logits, +Inf or NaN rows), and the argument errors, which write nothing.
#include "test_support.hpp"

#include <mlpgrad/losses/softmax_cross_entropy.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace mlpgrad_test {
namespace {

using mlpgrad::MatrixView;
using mlpgrad::losses::softmax_cross_entropy;

// ℓ and dy of one row in long double, straight from the definition.
template <class T>
void reference_row(const T* y, std::size_t m, std::size_t label, long double c, long double& loss, long double* dy) {
    long double mu = y[0], sum = 0;
    for (std::size_t k = 1; k < m; ++k) mu = std::max<long double>(mu, y[k]);
    for (std::size_t k = 0; k < m; ++k) sum += std::exp(static_cast<long double>(y[k]) - mu);
    loss = (std::log(sum) - (y[label] - mu)) * c;
    for (std::size_t k = 0; k < m; ++k) dy[k] = (std::exp(y[k] - mu) / sum - (k == label ? 1 : 0)) * c;
}

template <class T>
class SoftmaxCrossEntropy : public ::testing::Test {};
TYPED_TEST_SUITE(SoftmaxCrossEntropy, Dtypes, DtypeNames);

TYPED_TEST(SoftmaxCrossEntropy, IsTheDefinitionToRounding) {
    using T = TypeParam;
    const T eps = std::numeric_limits<T>::epsilon();
    std::mt19937 gen(3);
    std::normal_distribution<double> normal(0.0, 4.0);
    for (std::size_t B : {1, 7, 300}) {
        for (std::size_t m : {1, 2, 10, 33}) {
            std::vector<T> yhat(B * m), dy(B * m), weights(B);
            std::vector<std::int64_t> labels(B);
            double total = 0;
            for (auto& v : yhat) v = static_cast<T>(normal(gen));
            for (std::size_t b = 0; b < B; ++b) {
                labels[b] = static_cast<std::int64_t>(gen() % m);
                total += weights[b] = static_cast<T>(1 + gen() % 5);
            }
            for (auto& w : weights) w = static_cast<T>(w / total);
            for (const T* c : {static_cast<const T*>(nullptr), static_cast<const T*>(weights.data())}) {
                const T mean = softmax_cross_entropy(MatrixView<const T>(yhat.data(), B, m), labels.data(), c,
                                                     MatrixView<T>(dy.data(), B, m));
                long double expected_mean = 0, row_loss;
                std::vector<long double> expected(m);
                for (std::size_t b = 0; b < B; ++b) {
                    const long double cb = c ? c[b] : 1.0L / B;
                    reference_row(yhat.data() + b * m, m, static_cast<std::size_t>(labels[b]), cb, row_loss, expected.data());
                    expected_mean += row_loss;
                    for (std::size_t k = 0; k < m; ++k)
                        EXPECT_NEAR(dy[b * m + k], expected[k], 8 * eps * (std::fabs(expected[k]) + cb)) << b << ", " << k;
                }
                EXPECT_NEAR(mean, expected_mean, 16 * eps * (expected_mean + 1));
            }
        }
    }
}

TYPED_TEST(SoftmaxCrossEntropy, LabelsAndOneHotRowsGiveTheSameBits) {
    using T = TypeParam;
    const std::size_t B = 5, m = 4;
    std::vector<T> yhat(B * m), one_hot(B * m, T(0)), from_labels(B * m), from_rows(B * m);
    std::vector<std::int64_t> labels(B);
    for (std::size_t i = 0; i < yhat.size(); ++i) yhat[i] = static_cast<T>(std::sin(1.0 + 3.0 * i) * 5);
    for (std::size_t b = 0; b < B; ++b) one_hot[b * m + (labels[b] = static_cast<std::int64_t>((b * 3) % m))] = T(1);
    const MatrixView<const T> Y(yhat.data(), B, m);
    const T a = softmax_cross_entropy(Y, labels.data(), static_cast<const T*>(nullptr), MatrixView<T>(from_labels.data(), B, m));
    const T b = softmax_cross_entropy(Y, MatrixView<const T>(one_hot.data(), B, m), nullptr, MatrixView<T>(from_rows.data(), B, m));
    EXPECT_EQ(a, b);
    EXPECT_EQ(from_labels, from_rows);
}

TYPED_TEST(SoftmaxCrossEntropy, TakesTheLimitsOfIeeeArithmetic) {
    using T = TypeParam;
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    // Row 0: an impossible class (−Inf) that is not the target: probability 0, a finite loss.
    // Row 1: +Inf; row 2: NaN after the first entry; row 3: all −Inf: NaN throughout.
    std::vector<T> yhat{1, -inf, 0, 1, inf, 0, 0, 2, nan, -inf, -inf, -inf};
    std::vector<T> dy(12);
    const std::vector<std::int64_t> labels{0, 0, 1, 2};
    const T mean = softmax_cross_entropy(MatrixView<const T>(yhat.data(), 4, 3), labels.data(), static_cast<const T*>(nullptr),
                                         MatrixView<T>(dy.data(), 4, 3));
    EXPECT_TRUE(std::isnan(mean));
    EXPECT_EQ(dy[1], T(0));
    EXPECT_TRUE(std::isfinite(dy[0]) && std::isfinite(dy[2]));
    for (std::size_t i = 3; i < 12; ++i) EXPECT_TRUE(std::isnan(dy[i])) << i;
    // The impossible class alone, with one-hot rows: 0 · (−Inf) is skipped, the loss is finite.
    const std::vector<T> target{1, 0, 0};
    const T one_row = softmax_cross_entropy(MatrixView<const T>(yhat.data(), 1, 3), MatrixView<const T>(target.data(), 1, 3),
                                            nullptr, MatrixView<T>(dy.data(), 1, 3));
    EXPECT_TRUE(std::isfinite(one_row));
}

TYPED_TEST(SoftmaxCrossEntropy, RefusesBadArgumentsBeforeWriting) {
    using T = TypeParam;
    std::vector<T> yhat(6, T(1)), dy(6, T(7));
    const MatrixView<const T> Y(yhat.data(), 2, 3);
    const std::vector<std::int64_t> out_of_range{0, 3}, negative{-1, 0};
    EXPECT_THROW(softmax_cross_entropy(Y, out_of_range.data(), static_cast<const T*>(nullptr), MatrixView<T>(dy.data(), 2, 3)),
                 std::invalid_argument);
    EXPECT_THROW(softmax_cross_entropy(Y, negative.data(), static_cast<const T*>(nullptr), MatrixView<T>(dy.data(), 2, 3)),
                 std::invalid_argument);
    EXPECT_THROW(softmax_cross_entropy(Y, negative.data(), static_cast<const T*>(nullptr), MatrixView<T>(dy.data(), 3, 2)),
                 std::invalid_argument);
    const std::vector<std::int64_t> labels{0, 1};
    EXPECT_THROW(softmax_cross_entropy(Y, labels.data(), static_cast<const T*>(nullptr), MatrixView<T>(yhat.data(), 2, 3)),
                 std::invalid_argument);  // dy overlapping ŷ
    EXPECT_THROW(softmax_cross_entropy(Y, MatrixView<const T>(yhat.data(), 3, 2), nullptr, MatrixView<T>(dy.data(), 2, 3)),
                 std::invalid_argument);
    // No classes: refused before a row is read (a softmax of nothing has no row maximum).
    EXPECT_THROW(softmax_cross_entropy(MatrixView<const T>(yhat.data(), 2, 0), MatrixView<const T>(yhat.data(), 2, 0),
                                       nullptr, MatrixView<T>(dy.data(), 2, 0)),
                 std::invalid_argument);
    for (T v : dy) EXPECT_EQ(v, T(7));
}

}  // namespace
}  // namespace mlpgrad_test
