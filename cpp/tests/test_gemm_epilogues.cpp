// The packed GEMM's epilogues (mlpgrad/gemm/epilogue.hpp): bias and σ after the forward product, σ' after the
// backward one, each bit for bit what the plain product followed by the scalar expression gives, special values
// included; and the bias gradient's row sums from the backward epilogue's partials, accurate in float32 over long
// batches and the same bits for any thread count.
#include "gemm_test_support.hpp"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace mlpgrad_test {
namespace {

// The shapes (M, N, K) of the epilogue checks: `edges` (one depth block, edge tiles on the right and the
// bottom), and whole tiles only with several depth blocks, where ReLU's epilogue runs in the micro-kernel's
// registers on sums added over the blocks.
template <class T>
std::vector<std::array<std::size_t, 3>> epilogue_shapes(std::array<std::size_t, 3> edges) {
    const gemm::Blocking b = gemm::blocking_for<T>();
    return {edges, {3 * b.mr, 2 * b.nr, 2 * b.kc + 3}};
}

// Forward epilogue: U = A B + b (per row), Z = σ(U); and with Z == C, C = σ(A B + b); A packed or in place.
template <class T>
void check_bias_activation(Activation act, std::size_t M, std::size_t N, std::size_t K, bool pack_a) {
    SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (pack_a ? " packed" : ""));
    Random rng(11);
    const auto A = random_stored<T>(M, K, false, rng), B = random_stored<T>(K, N, false, rng);
    const std::vector<T> bias = random_vector<T>(rng, M);
    std::vector<T> plain(M * N);
    gemm::multiply(A.operand(), B.operand(), MatrixView<T>(plain.data(), M, N), gemm::Update::overwrite, gemm::Store{},
                   gemm_settings<T>(pack_a));
    for (bool with_bias : {false, true})
        for (bool in_place : {false, true}) {
            std::vector<T> U(M * N), Z(M * N);
            mlpgrad::dispatch(act, [&](auto a) {
                const gemm::BiasActivation<decltype(a)::value, T> epi{with_bias ? bias.data() : nullptr,
                                                                      {in_place ? U.data() : Z.data(), M, N}};
                gemm::multiply(A.operand(), B.operand(), MatrixView<T>(U.data(), M, N), gemm::Update::overwrite, epi,
                               gemm_settings<T>(pack_a));
            });
            for (std::size_t i = 0; i < M; ++i)
                for (std::size_t j = 0; j < N; ++j) {
                    const T u = plain[i * N + j] + (with_bias ? bias[i] : T(0));
                    const T z = mlpgrad::activate(act, u);
                    // Same arithmetic as the plain product, so equal bit for bit.
                    if (in_place) {
                        ASSERT_EQ(U[i * N + j], z) << name(act) << " " << i << "," << j;
                    } else {
                        ASSERT_EQ(U[i * N + j], u) << name(act) << " " << i << "," << j;
                        ASSERT_EQ(Z[i * N + j], z) << name(act) << " " << i << "," << j;
                    }
                }
        }
}

// ... on the shapes of epilogue_shapes, A packed and read in place.
template <class T>
void check_bias_activation(Activation act) {
    for (const auto& [M, N, K] : epilogue_shapes<T>({23, 37, 19}))
        for (bool pack_a : {false, true}) check_bias_activation<T>(act, M, N, K, pack_a);
}

// Backward epilogue: C = (A B) ∘ σ'(U) with Z = σ(U), A (transposed) packed or read in place.
template <class T>
void check_times_derivative(Activation act, std::size_t M, std::size_t N, std::size_t K, bool pack_a) {
    SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (pack_a ? " packed" : ""));
    Random rng(12);
    const auto A = random_stored<T>(M, K, true, rng), B = random_stored<T>(K, N, false, rng);
    std::vector<T> U = random_vector<T>(rng, M * N), Z(M * N), plain(M * N), C(M * N);
    U[0] = T(0);  // the ReLU convention σ'(0) = 1
    for (std::size_t i = 0; i < U.size(); ++i) Z[i] = mlpgrad::activate(act, U[i]);
    gemm::multiply(A.operand(), B.operand(), MatrixView<T>(plain.data(), M, N), gemm::Update::overwrite, gemm::Store{},
                   gemm_settings<T>(pack_a));
    mlpgrad::dispatch(act, [&](auto a) {
        const gemm::TimesDerivative<decltype(a)::value, T> epi{{U.data(), M, N}, {Z.data(), M, N}};
        gemm::multiply(A.operand(), B.operand(), MatrixView<T>(C.data(), M, N), gemm::Update::overwrite, epi,
                       gemm_settings<T>(pack_a));
    });
    for (std::size_t i = 0; i < C.size(); ++i) {
        const T d = mlpgrad::dispatch(act, [&](auto a) {
            return mlpgrad::activation_traits<decltype(a)::value>::derivative(U[i], Z[i]);
        });
        ASSERT_EQ(C[i], plain[i] * d) << name(act) << " " << i;
    }
}

// ... on the shapes of epilogue_shapes, A packed and read in place.
template <class T>
void check_times_derivative(Activation act) {
    for (const auto& [M, N, K] : epilogue_shapes<T>({29, 21, 33}))
        for (bool pack_a : {false, true}) check_times_derivative<T>(act, M, N, K, pack_a);
}

// Special values through the forward epilogue (U = 1 · x exactly): NaN, ±0, ±Inf and subnormals give what
// σ gives them one at a time, on whole tile rows (the vector path) and on the last, partial ones.
template <class T>
void check_epilogue_special_values(Activation act) {
    using lim = std::numeric_limits<T>;
    const std::vector<T> specials = {lim::quiet_NaN(), -lim::quiet_NaN(), T(0), -T(0), lim::infinity(),
                                     -lim::infinity(), lim::denorm_min(), -lim::denorm_min(), T(1), T(-1)};
    const std::size_t M = 3, N = 2 * gemm::RegisterBlock<T>::nr + 3;
    std::vector<T> ones(M, T(1)), x(N), U(M * N), Z(M * N);
    for (std::size_t j = 0; j < N; ++j) x[j] = specials[j % specials.size()];
    mlpgrad::dispatch(act, [&](auto a) {
        const gemm::BiasActivation<decltype(a)::value, T> epi{nullptr, {Z.data(), M, N}};
        gemm::multiply(gemm::Operand<T>{ones.data(), M, 1, 1, 1}, gemm::Operand<T>{x.data(), 1, N, N, 1},
                       MatrixView<T>(U.data(), M, N), gemm::Update::overwrite, epi);
    });
    // (U is 0 + 1 · x: -0 comes out as +0, as from any sum that starts at 0.)
    for (std::size_t i = 0; i < M * N; ++i) {
        const T expected = mlpgrad::activate(act, U[i]);
        ASSERT_TRUE(U[i] == x[i % N] || (std::isnan(U[i]) && std::isnan(x[i % N]))) << i;
        ASSERT_EQ(0, std::memcmp(&Z[i], &expected, sizeof(T))) << name(act) << " of " << U[i] << ": got " << Z[i];
    }
}

// Special values through the backward epilogue: every pair of a special ∂Z (= 1 · x exactly) and a special
// U gives d · σ'(u) as the scalar expression gives it, bit for bit (-1 · 0 = -0; NaN where it gives NaN), on whole
// vectors (the ReLU vector path) and on the last columns.
template <class T>
void check_times_derivative_special_values(Activation act) {
    using lim = std::numeric_limits<T>;
    const std::vector<T> specials = {lim::quiet_NaN(), -lim::quiet_NaN(), T(0), -T(0), lim::infinity(),
                                     -lim::infinity(), lim::denorm_min(), -lim::denorm_min(), T(1), T(-1)};
    const std::size_t S = specials.size(), M = S, N = 2 * gemm::RegisterBlock<T>::nr + 3;
    std::vector<T> ones(M, T(1)), x(N), U(M * N), Z(M * N), C(M * N);
    for (std::size_t j = 0; j < N; ++j) x[j] = specials[j % S];
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) U[i * N + j] = specials[(i + j / S) % S];  // every (x, u) pair
    for (std::size_t i = 0; i < U.size(); ++i) Z[i] = mlpgrad::activate(act, U[i]);
    mlpgrad::dispatch(act, [&](auto a) {
        const gemm::TimesDerivative<decltype(a)::value, T> epi{{U.data(), M, N}, {Z.data(), M, N}};
        gemm::multiply(gemm::Operand<T>{ones.data(), M, 1, 1, 1}, gemm::Operand<T>{x.data(), 1, N, N, 1},
                       MatrixView<T>(C.data(), M, N), gemm::Update::overwrite, epi);
    });
    for (std::size_t i = 0; i < M * N; ++i) {
        const T d = T(0) + x[i % N];  // what the product gives: a sum that starts at +0
        const T expected = mlpgrad::dispatch(act, [&](auto a) {
            return d * mlpgrad::activation_traits<decltype(a)::value>::derivative(U[i], Z[i]);
        });
        // (A NaN's sign and payload depend on the operand order the compiler picks: NaN is all we ask.)
        if (std::isnan(expected)) ASSERT_TRUE(std::isnan(C[i])) << name(act) << " " << i;
        else ASSERT_EQ(0, std::memcmp(&C[i], &expected, sizeof(T)))
            << name(act) << " of d = " << d << ", u = " << U[i] << ": got " << C[i] << ", expected " << expected;
    }
}

TEST(Gemm, EpiloguesEveryActivation) {
    for (Activation a : all_activations()) {
        check_epilogue_special_values<float>(a);
        check_epilogue_special_values<double>(a);
        check_times_derivative_special_values<float>(a);
        check_times_derivative_special_values<double>(a);
    }
    for (Activation a : all_activations()) {
        check_bias_activation<float>(a);
        check_bias_activation<double>(a);
        check_times_derivative<float>(a);
        check_times_derivative<double>(a);
    }
}

// The bias gradient's row sums of ∂U from the backward epilogue's partials (TimesDerivative with row_partials,
// then sum_row_partials): whole tiles, edge tiles and a product with K = 0 (one region of all N columns),
// within (nv + 16·√(N / nr) + log2 V + 1) · u · Σ|∂U| of a long-double sum of the ∂U it wrote, and the same
// bits for 1, 2, 3 and 4 threads.
template <class T>
void check_bias_row_sums(Activation act) {
    using RB = gemm::RegisterBlock<T>;
    ThreadPool p1(1), p2(2), p3(3), p4(4);
    std::uint64_t seed = 400;
    const std::size_t V = RB::vector, NR = RB::nr;
    for (std::size_t N : {std::size_t(1), V - 1 + (V == 1), V + 1, NR, NR + 3, 3 * NR + 5, std::size_t(1000)})
        for (std::size_t K : {0, 1, 33}) {
            const std::size_t M = 13, per_row = (N + NR - 1) / NR;
            Random rng(++seed);
            const auto A = random_stored<T>(M, K, true, rng), B = random_stored<T>(K, N, false, rng);
            std::vector<T> U = random_vector<T>(rng, M * N), Z(M * N);
            for (std::size_t i = 0; i < U.size(); ++i) Z[i] = mlpgrad::activate(act, U[i]);
            std::vector<std::vector<T>> sums;
            for (ThreadPool* pool : {&p1, &p2, &p3, &p4}) {
                std::vector<T> C(M * N), partials(M * per_row * V), row_sums(M);
                mlpgrad::dispatch(act, [&](auto a) {
                    const gemm::TimesDerivative<decltype(a)::value, T> epi{
                        {U.data(), M, N}, {Z.data(), M, N}, partials.data(), per_row};
                    gemm::multiply(A.operand(), B.operand(), MatrixView<T>(C.data(), M, N), gemm::Update::overwrite,
                                   epi, gemm_settings<T>(true, pool));
                });
                gemm::sum_row_partials(partials.data(), M, per_row, row_sums.data());
                const double u = std::numeric_limits<T>::epsilon() / 2.0;
                const double roundings = double(RB::nv) + 16.0 * std::sqrt(double(per_row)) + std::log2(double(V)) + 1;
                for (std::size_t i = 0; i < M; ++i) {
                    long double exact = 0, magnitude = 0;
                    for (std::size_t j = 0; j < N; ++j) {
                        exact += C[i * N + j];
                        magnitude += std::fabs(static_cast<long double>(C[i * N + j]));
                    }
                    ASSERT_LE(std::fabs(static_cast<double>(row_sums[i] - exact)), roundings * u * double(magnitude))
                        << name(act) << " N=" << N << " K=" << K << " row " << i;
                }
                sums.push_back(row_sums);
            }
            for (std::size_t r = 1; r < sums.size(); ++r)
                ASSERT_EQ(0, std::memcmp(sums[0].data(), sums[r].data(), M * sizeof(T)))
                    << r + 1 << " threads differ from 1: " << name(act) << " N=" << N << " K=" << K;
        }
}
TEST(Gemm, BiasRowSumsFloat) {
    for (Activation a : all_activations()) check_bias_row_sums<float>(a);
}
TEST(Gemm, BiasRowSumsDouble) {
    for (Activation a : all_activations()) check_bias_row_sums<double>(a);
}

// sum_row_partials adds V rows side by side with horizontal_sum's pairwise tree written out on transposed
// vectors: the same bits as one row at a time through simd::horizontal_sum, for every row, as long as the two
// trees agree (partials of mixed magnitudes, so that another order would round differently).
template <class T>
void check_row_partials_match_horizontal_sum() {
    using Vec = mlpgrad::simd::Vec<T>;
    constexpr std::size_t V = gemm::RegisterBlock<T>::vector;
    Random rng(77);
    for (std::size_t per_row : {std::size_t(1), std::size_t(3), std::size_t(300), std::size_t(5000)}) {
        const std::size_t rows = 3 * V + 2;
        std::vector<T> partials = random_vector<T>(rng, rows * per_row * V);
        for (std::size_t i = 0; i < partials.size(); i += 3) partials[i] *= T(1 << 20);
        std::vector<T> sums(rows);
        gemm::sum_row_partials(partials.data(), rows, per_row, sums.data());
        const std::size_t block = mlpgrad::kernels::block_length(per_row);
        for (std::size_t i = 0; i < rows; ++i) {
            Vec total[1];
            gemm::detail::row_partial_totals<1>(partials.data(), i, per_row, block, total);
            const T expected = mlpgrad::simd::horizontal_sum(total[0]);
            ASSERT_EQ(0, std::memcmp(&sums[i], &expected, sizeof(T))) << "row " << i << ", per_row " << per_row;
        }
    }
}
TEST(Gemm, RowPartialSumsAreHorizontalSumsBitForBitFloat) { check_row_partials_match_horizontal_sum<float>(); }
TEST(Gemm, RowPartialSumsAreHorizontalSumsBitForBitDouble) { check_row_partials_match_horizontal_sum<double>(); }

// A float32 row sum over a batch of 2^20 with constant sign (∂U = 0.1 everywhere, σ' = 1): within
// (nv + 16·√(N / nr) + log2 V + 1) · u · Σ|∂U|, a bound that a single running sum of the same data fails.
TEST(Gemm, BiasRowSumsFloat32AccuracyOnLongBatches) {
    using RB = gemm::RegisterBlock<float>;
    const std::size_t M = 2, N = std::size_t(1) << 20, per_row = (N + RB::nr - 1) / RB::nr;
    const float value = 0.1f;
    const std::vector<float> ones(M, 1.0f), x(N, value), U(M * N, 1.0f), Z(M * N, 1.0f);
    std::vector<float> C(M * N), partials(M * per_row * RB::vector), row_sums(M);
    const gemm::TimesDerivative<Activation::relu, float> epi{{U.data(), M, N}, {Z.data(), M, N}, partials.data(), per_row};
    gemm::multiply(gemm::Operand<float>{ones.data(), M, 1, 1, 1}, gemm::Operand<float>{x.data(), 1, N, N, 1},
                   MatrixView<float>(C.data(), M, N), gemm::Update::overwrite, epi);
    gemm::sum_row_partials(partials.data(), M, per_row, row_sums.data());
    const double exact = double(N) * double(value), u = std::numeric_limits<float>::epsilon() / 2.0;
    const double bound = (double(RB::nv) + 16.0 * std::sqrt(double(per_row)) + std::log2(double(RB::vector)) + 1) * u * exact;
    for (float s : row_sums) EXPECT_LE(std::fabs(double(s) - exact), bound);
    float running = 0;
    for (std::size_t j = 0; j < N; ++j) running += value;
    EXPECT_GT(std::fabs(double(running) - exact), bound);
}

}  // namespace
}  // namespace mlpgrad_test
