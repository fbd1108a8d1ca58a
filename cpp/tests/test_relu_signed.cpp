// ReLU's batch tape keeps z only, with σ'(u) in its sign bit (gemm::BiasReluSigned, and TimesDerivative with
// FromSign): z is max(u, 0) with -0 exactly where u < 0 or u is NaN, and ∂U read from z's sign has the same
// bits as ∂U read from u, on whole tiles (the micro-kernel's registers) and edge tiles, A packed or in place.
#include "test_support.hpp"

#include <mlpgrad/batch.hpp>
#include <mlpgrad/gemm/gemm.hpp>

#include <array>
#include <cstring>
#include <limits>

namespace mlpgrad_test {
namespace {

namespace gemm = mlpgrad::gemm;
using mlpgrad::Activation;
using mlpgrad::MatrixView;

template <class T>
bool same_bits(T a, T b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

template <class T>
gemm::Settings<T> settings(bool pack_a) {
    gemm::Settings<T> s;
    s.pack_a_min_columns = s.pack_a_transposed_min_columns = pack_a ? 0 : std::numeric_limits<std::size_t>::max();
    return s;
}

// (M, N, K): edge tiles on the right and bottom in one depth block, and whole tiles over several depth blocks.
template <class T>
std::vector<std::array<std::size_t, 3>> shapes() {
    const gemm::Blocking b = gemm::blocking_for<T>();
    return {{23, 37, 19}, {3 * b.mr, 2 * b.nr, 2 * b.kc + 3}, {1, 1, 1}, {b.mr + 1, b.nr + 1, 5}};
}

template <class T>
void check_forward(std::size_t M, std::size_t N, std::size_t K, bool pack_a) {
    SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (pack_a ? " packed" : ""));
    Random rng(21);
    const std::vector<T> A = random_vector<T>(rng, M * K), B = random_vector<T>(rng, K * N);
    const std::vector<T> bias = random_vector<T>(rng, M);
    const gemm::Operand<T> a = gemm::operand(MatrixView<const T>(A.data(), M, K));
    const gemm::Operand<T> b = gemm::operand(MatrixView<const T>(B.data(), K, N));
    std::vector<T> plain(M * N);
    gemm::multiply(a, b, MatrixView<T>(plain.data(), M, N), gemm::Update::overwrite, gemm::Store{},
                   settings<T>(pack_a));
    for (bool with_bias : {false, true}) {
        std::vector<T> Z(M * N);
        gemm::multiply(a, b, MatrixView<T>(Z.data(), M, N), gemm::Update::overwrite,
                       gemm::BiasReluSigned<T>{with_bias ? bias.data() : nullptr}, settings<T>(pack_a));
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                const T u = plain[i * N + j] + (with_bias ? bias[i] : T(0)), z = Z[i * N + j];
                ASSERT_EQ(z, u > T(0) ? u : T(0)) << i << "," << j;  // numerically ReLU
                ASSERT_EQ(std::signbit(z), !(u >= T(0))) << i << "," << j << " u = " << u;
            }
    }
}

// ∂U = C ∘ σ'(U) from z's sign equals ∂U from u, bit for bit, and so do the bias gradient's row partials.
template <class T>
void check_backward(std::size_t M, std::size_t N, std::size_t K, bool pack_a) {
    SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (pack_a ? " packed" : ""));
    Random rng(22);
    const std::vector<T> A = random_vector<T>(rng, K * M), B = random_vector<T>(rng, K * N);
    const gemm::Operand<T> a = gemm::transposed(MatrixView<const T>(A.data(), K, M));
    const gemm::Operand<T> b = gemm::operand(MatrixView<const T>(B.data(), K, N));
    std::vector<T> U = random_vector<T>(rng, M * N), Zplain(M * N), Zsigned(M * N);
    U[0] = T(0);
    if (U.size() > 1) U[1] = -T(0);  // σ'(-0) = 1: -0 >= 0
    for (std::size_t i = 0; i < U.size(); ++i) {
        Zplain[i] = mlpgrad::activate(Activation::relu, U[i]);
        Zsigned[i] = mlpgrad::simd::relu_signed_scalar(U[i]);
    }
    const std::size_t per_row = (N + gemm::RegisterBlock<T>::nr - 1) / gemm::RegisterBlock<T>::nr;
    const std::size_t n_partials = M * per_row * gemm::RegisterBlock<T>::vector;
    std::vector<T> from_u(M * N), from_sign(M * N), partials_u(n_partials), partials_sign(n_partials);
    gemm::multiply(a, b, MatrixView<T>(from_u.data(), M, N), gemm::Update::overwrite,
                   gemm::TimesDerivative<Activation::relu, T>{{U.data(), M, N}, {Zplain.data(), M, N},
                                                              partials_u.data(), per_row},
                   settings<T>(pack_a));
    // U is not read: were it, these NaNs would show in ∂U.
    const std::vector<T> poisoned(M * N, std::numeric_limits<T>::quiet_NaN());
    gemm::multiply(a, b, MatrixView<T>(from_sign.data(), M, N), gemm::Update::overwrite,
                   gemm::TimesDerivative<Activation::relu, T, true>{{poisoned.data(), M, N}, {Zsigned.data(), M, N},
                                                                    partials_sign.data(), per_row},
                   settings<T>(pack_a));
    for (std::size_t i = 0; i < from_u.size(); ++i) ASSERT_TRUE(same_bits(from_u[i], from_sign[i])) << i;
    for (std::size_t i = 0; i < n_partials; ++i) ASSERT_TRUE(same_bits(partials_u[i], partials_sign[i])) << i;
}

TEST(ReluSigned, ForwardEpilogueIsReluWithTheSignOfU) {
    for (const auto& [M, N, K] : shapes<float>())
        for (bool pack_a : {false, true}) check_forward<float>(M, N, K, pack_a);
    for (const auto& [M, N, K] : shapes<double>())
        for (bool pack_a : {false, true}) check_forward<double>(M, N, K, pack_a);
}

TEST(ReluSigned, BackwardFromTheSignHasTheBitsOfBackwardFromU) {
    for (const auto& [M, N, K] : shapes<float>())
        for (bool pack_a : {false, true}) check_backward<float>(M, N, K, pack_a);
    for (const auto& [M, N, K] : shapes<double>())
        for (bool pack_a : {false, true}) check_backward<double>(M, N, K, pack_a);
}

// NaN, ±0, ±Inf and subnormals, on the vector path and on the scalar tail of a row.
template <class T>
void check_special_values() {
    using lim = std::numeric_limits<T>;
    const std::vector<T> specials = {lim::quiet_NaN(), -lim::quiet_NaN(), T(0), -T(0), lim::infinity(),
                                     -lim::infinity(), lim::denorm_min(), -lim::denorm_min(), T(1), T(-1)};
    using V = mlpgrad::simd::Vec<T>;
    for (std::size_t start = 0; start < specials.size(); ++start) {
        std::vector<T> u(V::size), z(V::size), step(V::size);
        for (std::size_t l = 0; l < V::size; ++l) u[l] = specials[(start + l) % specials.size()];
        relu_signed(V::load(u.data())).store(z.data());
        sign_clear_step(V::load(z.data())).store(step.data());
        for (std::size_t l = 0; l < V::size; ++l) {
            const T expected = u[l] >= T(0) ? u[l] + T(0) : -T(0);
            ASSERT_TRUE(same_bits(z[l], expected)) << u[l];
            ASSERT_TRUE(same_bits(z[l], mlpgrad::simd::relu_signed_scalar(u[l]))) << u[l];
            ASSERT_EQ(step[l], u[l] >= T(0) ? T(1) : T(0)) << u[l];  // ReLU's σ' with σ'(0) = 1, σ'(NaN) = 0
            ASSERT_EQ(step[l], mlpgrad::simd::sign_clear_step_scalar(z[l])) << u[l];
        }
    }
}

TEST(ReluSigned, SpecialValues) {
    check_special_values<float>();
    check_special_values<double>();
}

// The batch passes on a ReLU network with biases: the tape's Z is ≥ 0 with -0 where u < 0, and ŷ is what the
// single-example path (which keeps u) gives.
template <class T>
void check_batch_tape() {
    Random rng(23);
    const std::size_t B = 37;
    const OwnedNet<T> n = random_general_net<T>({9, 17, 13}, Activation::relu, 23, 1, true, true);
    const auto net = n.network();
    const std::vector<T> X = random_vector<T>(rng, B * 9);
    mlpgrad::BatchTape<T> tape;
    std::vector<T> yhat(B);
    mlpgrad::forward_batch(net, MatrixView<const T>(X.data(), B, 9), tape, mlpgrad::VectorView<T>(yhat.data(), B));
    std::size_t negative = 0;
    for (std::size_t t = 1; t <= 2; ++t) {
        const MatrixView<T> Z = tape.Z(t);
        for (std::size_t i = 0; i < Z.size(); ++i) {
            ASSERT_GE(Z.data[i], T(0));
            negative += std::signbit(Z.data[i]);
        }
    }
    EXPECT_GT(negative, 0u);  // the case under test: some u < 0
    for (std::size_t b = 0; b < B; ++b) {
        mlpgrad::Tape<T> single;
        const T y = mlpgrad::forward(net, mlpgrad::VectorView<const T>(X.data() + b * 9, 9), single);
        EXPECT_NEAR(yhat[b], y, 64 * std::numeric_limits<T>::epsilon() * (1 + std::abs(y))) << b;
    }
}

TEST(ReluSigned, BatchTapeKeepsTheSignAndTheValues) {
    check_batch_tape<float>();
    check_batch_tape<double>();
}

}  // namespace
}  // namespace mlpgrad_test
