// The packed GEMM (mlpgrad/gemm) and the thread pool (mlpgrad/parallel): every edge path against a long-double
// triple loop, all transpositions, accumulate mode, float32 accuracy over K = 65,536, results bit-for-bit
// identical for any thread count, concurrent callers, and the pool's error handling (the epilogues:
// test_gemm_epilogues.cpp).
#include "gemm_test_support.hpp"

#include <mlpgrad/gemm/gemm.hpp>
#include <mlpgrad/gemm/peak.hpp>
#include <mlpgrad/parallel/thread_pool.hpp>

#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/wait.h>
#include <unistd.h>
#define MLPGRAD_TEST_HAS_FORK 1
#endif
#if defined(__SANITIZE_THREAD__)
#define MLPGRAD_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MLPGRAD_TEST_TSAN 1
#endif
#endif

namespace mlpgrad_test {
namespace {

// C0 + A B (C0 may be null: zero) in long double, and Σ_k |A(i,k) B(k,j)| for the error bound.
template <class T>
void reference(gemm::Operand<T> A, gemm::Operand<T> B, const T* C0, std::vector<long double>& exact,
               std::vector<long double>& magnitude) {
    const std::size_t M = A.rows, N = B.cols, K = A.cols;
    exact.assign(M * N, 0);
    magnitude.assign(M * N, 0);
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            long double s = C0 ? C0[i * N + j] : 0, a = C0 ? std::fabs(static_cast<long double>(C0[i * N + j])) : 0;
            for (std::size_t k = 0; k < K; ++k) {
                const long double p = static_cast<long double>(*A.at(i, k)) * static_cast<long double>(*B.at(k, j));
                s += p;
                a += std::fabs(p);
            }
            exact[i * N + j] = s;
            magnitude[i * N + j] = a;
        }
}

// |C − exact| ≤ (K + 2) · u · Σ|a b| elementwise: the classical bound for any summation order (+1 for the
// added C, +1 for the final rounding). A wrong element, a missed or doubled term, fails it.
template <class T>
::testing::AssertionResult within_bound(const std::vector<T>& C, const std::vector<long double>& exact,
                                        const std::vector<long double>& magnitude, std::size_t K) {
    const long double u = std::numeric_limits<T>::epsilon() / 2;
    for (std::size_t i = 0; i < C.size(); ++i) {
        const long double err = std::fabs(static_cast<long double>(C[i]) - exact[i]);
        const long double bound = (K + 2) * u * magnitude[i] + std::numeric_limits<T>::denorm_min();
        if (!(err <= bound))
            return ::testing::AssertionFailure() << "element " << i << ": got " << static_cast<double>(C[i])
                                                 << ", exact " << static_cast<double>(exact[i]) << ", error "
                                                 << static_cast<double>(err) << " > bound " << static_cast<double>(bound);
    }
    return ::testing::AssertionSuccess();
}

// Small blocks so that every loop of the driver runs several times on small products.
gemm::Blocking tiny_blocking(std::size_t mr, std::size_t nr) { return {mr, nr, 8, 2 * mr, 2 * nr}; }

template <class T>
void check_product(std::size_t M, std::size_t N, std::size_t K, bool ta, bool tb, const gemm::Settings<T>& s,
                   gemm::Update update, std::uint64_t seed) {
    Random rng(seed);
    const auto A = random_stored<T>(M, K, ta, rng), B = random_stored<T>(K, N, tb, rng);
    const std::vector<T> C0 = random_vector<T>(rng, M * N);
    std::vector<T> C = C0;
    gemm::multiply(A.operand(), B.operand(), MatrixView<T>(C.data(), M, N), update, gemm::Store{}, s);
    std::vector<long double> exact, magnitude;
    reference<T>(A.operand(), B.operand(), update == gemm::Update::accumulate ? C0.data() : nullptr, exact, magnitude);
    EXPECT_TRUE(within_bound(C, exact, magnitude, K))
        << "M=" << M << " N=" << N << " K=" << K << " A" << (ta ? "ᵀ" : "") << " B" << (tb ? "ᵀ" : "")
        << (update == gemm::Update::accumulate ? " accumulate" : "");
}

const std::vector<std::size_t> edge_sizes = {1, 2, 5, 7, 15, 17, 63, 65, 127, 129, 1000};

template <class T>
void check_every_edge_path(bool pack_a) {
    const auto s = gemm_settings<T>(pack_a);
    std::uint64_t seed = 1;
    for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        for (std::size_t n : edge_sizes) {
            check_product<T>(n, 17, 5, ta, tb, s, gemm::Update::overwrite, ++seed);    // M
            check_product<T>(7, n, 17, ta, tb, s, gemm::Update::overwrite, ++seed);    // N
            check_product<T>(17, 7, n, ta, tb, s, gemm::Update::overwrite, ++seed);    // K
        }
        for (std::size_t m : {63, 129})
            for (std::size_t n : {65, 127}) check_product<T>(m, n, 257, ta, tb, s, gemm::Update::overwrite, ++seed);
    }
}

TEST(Gemm, EveryEdgePathFloatPackedA) { check_every_edge_path<float>(true); }
TEST(Gemm, EveryEdgePathFloatAInPlace) { check_every_edge_path<float>(false); }
TEST(Gemm, EveryEdgePathDoublePackedA) { check_every_edge_path<double>(true); }
TEST(Gemm, EveryEdgePathDoubleAInPlace) { check_every_edge_path<double>(false); }

// The default settings (cache-derived blocks, measured pack thresholds) on the batch layers' shapes.
template <class T>
void check_layer_shapes() {
    const gemm::Settings<T> s;
    std::uint64_t seed = 100;
    for (std::size_t B : {1, 32, 129}) {
        check_product<T>(65, B, 784, false, false, s, gemm::Update::overwrite, ++seed);  // U = W Z
        check_product<T>(65, 784, B, false, true, s, gemm::Update::overwrite, ++seed);   // ∂W = ∂U Zᵀ
        check_product<T>(784, B, 65, true, false, s, gemm::Update::overwrite, ++seed);   // ∂Z = Wᵀ ∂U
    }
    check_product<T>(17, 600, 9, false, false, s, gemm::Update::overwrite, ++seed);  // A packed (N ≥ 512)
    check_product<T>(600, 140, 9, true, false, s, gemm::Update::overwrite, ++seed);  // Aᵀ packed
}
TEST(Gemm, LayerShapesFloat) { check_layer_shapes<float>(); }
TEST(Gemm, LayerShapesDouble) { check_layer_shapes<double>(); }

// Small blocks: several jc, pc and ic blocks, so the depth blocks add up in C and the loops restart.
template <class T>
void check_small_blocks() {
    for (bool pack_a : {false, true}) {
        auto s = gemm_settings<T>(pack_a);
        s.blocking = tiny_blocking(gemm::RegisterBlock<T>::mr, gemm::RegisterBlock<T>::nr);
        std::uint64_t seed = 200;
        for (int t = 0; t < 4; ++t)
            for (auto update : {gemm::Update::overwrite, gemm::Update::accumulate}) {
                check_product<T>(29, 67, 45, t & 1, t & 2, s, update, ++seed);
                check_product<T>(6, 16, 8, t & 1, t & 2, s, update, ++seed);
            }
    }
}
TEST(Gemm, SmallBlocksFloat) { check_small_blocks<float>(); }
TEST(Gemm, SmallBlocksDouble) { check_small_blocks<double>(); }

// The blocks that the cache sizes give, and blocks from small caches still computing right.
TEST(Gemm, BlockSizesFollowTheCacheFormulas) {
    const auto f = gemm::blocking_for<float>(), d = gemm::blocking_for<double>();
    const gemm::CacheSizes c;
    for (const auto& [b, size] : {std::pair{f, sizeof(float)}, std::pair{d, sizeof(double)}}) {
        EXPECT_LE(b.kc * b.nr * size, c.l1 / 2);
        EXPECT_GT((b.kc + 8) * b.nr * size, c.l1 / 2);
        EXPECT_LE(b.mc * b.kc * size, c.l2 / 2);
        EXPECT_GT((b.mc + b.mr) * b.kc * size, c.l2 / 2);
        EXPECT_EQ(b.mc % b.mr, 0u);
        EXPECT_EQ(b.nc % b.nr, 0u);
        EXPECT_LE(b.nc * b.kc * size, c.l3 / (2 * c.l3_sharers));
    }
    // Block sizes the kernel cannot use as they are (a register block not its own, kc = 0, mc and nc not
    // multiples of it) are made usable, not trusted.
    auto odd = gemm_settings<double>(false);
    odd.blocking = {1, 1, 0, 7, 3};
    check_product<double>(40, 50, 30, false, false, odd, gemm::Update::overwrite, 8);
    odd.blocking = {100, 100, 5, 1, 1};
    check_product<double>(40, 50, 30, true, true, odd, gemm::Update::accumulate, 9);
    gemm::CacheSizes small{1024, 4096, 8192, 1};
    auto s = gemm_settings<float>(true);
    s.blocking = gemm::blocking_for<float>(small);
    EXPECT_GE(s.blocking.kc, 8u);
    EXPECT_GE(s.blocking.mc, s.blocking.mr);
    check_product<float>(50, 70, 90, false, true, s, gemm::Update::overwrite, 7);
}

// Operands with no unit stride (a column-strided view) take the generic packing paths.
template <class T>
void check_generic_strides() {
    Random rng(5);
    const std::size_t M = 13, N = 19, K = 23;
    const std::vector<T> a = random_vector<T>(rng, 2 * M * K), b = random_vector<T>(rng, 3 * K * N);
    const gemm::Operand<T> A{a.data(), M, K, 2 * K, 2}, B{b.data(), K, N, 3 * N, 3};
    for (bool pack_a : {false, true}) {
        std::vector<T> C(M * N);
        gemm::multiply(A, B, MatrixView<T>(C.data(), M, N), gemm::Update::overwrite, gemm::Store{}, gemm_settings<T>(pack_a));
        std::vector<long double> exact, magnitude;
        reference<T>(A, B, nullptr, exact, magnitude);
        EXPECT_TRUE(within_bound(C, exact, magnitude, K));
    }
}
TEST(Gemm, GenericStridesFloat) { check_generic_strides<float>(); }
TEST(Gemm, GenericStridesDouble) { check_generic_strides<double>(); }

TEST(Gemm, AccumulateAddsToC) {
    for (bool pack_a : {false, true})
        for (int t = 0; t < 4; ++t) {
            check_product<float>(31, 45, 300, t & 1, t & 2, gemm_settings<float>(pack_a), gemm::Update::accumulate, 40 + t);
            check_product<double>(31, 45, 300, t & 1, t & 2, gemm_settings<double>(pack_a), gemm::Update::accumulate, 50 + t);
        }
}

// K = 0: C = 0 (overwrite) or unchanged (accumulate), and the epilogue still runs. Empty C: nothing written.
TEST(Gemm, EmptyDepthAndEmptyOutputs) {
    std::vector<double> C(3 * 4, 5.0), Z(3 * 4, -1.0);
    const std::vector<double> bias = {1, 2, 3};
    const gemm::Operand<double> A{nullptr, 3, 0, 0, 1}, B{nullptr, 0, 4, 4, 1};
    gemm::multiply(A, B, MatrixView<double>(C.data(), 3, 4), gemm::Update::accumulate);
    EXPECT_EQ(C, std::vector<double>(12, 5.0));
    const gemm::BiasActivation<Activation::relu, double> epi{bias.data(), {Z.data(), 3, 4}};
    gemm::multiply(A, B, MatrixView<double>(C.data(), 3, 4), gemm::Update::overwrite, epi);
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 4; ++j) {
            EXPECT_EQ(C[i * 4 + j], bias[i]);
            EXPECT_EQ(Z[i * 4 + j], bias[i]);
        }
    // M = 0 or N = 0: null data is fine and nothing is touched.
    std::vector<float> a(5, 1.0f);
    gemm::multiply(gemm::Operand<float>{nullptr, 0, 5, 5, 1}, gemm::Operand<float>{a.data(), 5, 1, 1, 1},
                   MatrixView<float>(nullptr, 0, 1));
    gemm::multiply(gemm::Operand<float>{a.data(), 1, 5, 5, 1}, gemm::Operand<float>{nullptr, 5, 0, 0, 1},
                   MatrixView<float>(nullptr, 1, 0));
}

TEST(Gemm, BadShapesThrowBeforeWriting) {
    std::vector<float> a(6, 1.0f), b(12, 1.0f), c(8, 3.0f);
    const gemm::Operand<float> A{a.data(), 2, 3, 3, 1}, B{b.data(), 3, 4, 4, 1}, B_wrong{b.data(), 4, 3, 3, 1};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { gemm::multiply(A, B_wrong, MatrixView<float>(c.data(), 2, 3)); }, "B"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { gemm::multiply(A, B, MatrixView<float>(c.data(), 2, 3)); }, "C"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { gemm::multiply(A, B, MatrixView<float>(nullptr, 2, 4)); }, "C"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { gemm::multiply(gemm::Operand<float>{nullptr, 2, 3, 3, 1}, B, MatrixView<float>(c.data(), 2, 4)); }, "A"));
    EXPECT_EQ(c, std::vector<float>(8, 3.0f));
}

// Constant positive data over K = 65,536 in float32 (the worst case for a running sum): within
// (kc + ⌈K / kc⌉ + 1) · u · Σ|a b| of a double computation.
TEST(Gemm, Float32AccuracyOnLongConstantSignRows) {
    const std::size_t K = 65536, M = 3, N = 19;
    const float a_value = 1.1f, b_value = 0.7f;
    const std::vector<float> a(M * K, a_value), b(K * N, b_value);
    std::vector<float> C(M * N);
    gemm::multiply(gemm::operand(MatrixView<const float>(a.data(), M, K)),
                   gemm::operand(MatrixView<const float>(b.data(), K, N)), MatrixView<float>(C.data(), M, N));
    const double exact = double(K) * double(a_value) * double(b_value), magnitude = exact;
    const double u = std::numeric_limits<float>::epsilon() / 2.0;
    const std::size_t kc = gemm::blocking_for<float>().kc, blocks = (K + kc - 1) / kc;
    const double bound = double(kc + blocks + 1) * u * magnitude;
    // README's figure, 16 · √K · u · Σ|a b|, holds for every vector width (kc = 256 with AVX2: 2 · √K).
    EXPECT_LE(bound, 16.0 * std::sqrt(double(K)) * u * magnitude);
    for (float c : C) EXPECT_LE(std::fabs(double(c) - exact), bound);
    // The bound is tight enough to fail a single running sum of the same data.
    float running = 0;
    for (std::size_t k = 0; k < K; ++k) running += a_value * b_value;
    EXPECT_GT(std::fabs(double(running) - exact), bound);
}

// Every element computed by one thread in one order: the same bits for 1, 2, 3 and 4 threads, on odd shapes.
template <class T>
void check_bit_identical_across_threads() {
    ThreadPool p1(1), p2(2), p3(3), p4(4);
    std::uint64_t seed = 300;
    const std::vector<std::array<std::size_t, 3>> shapes = {{257, 131, 301}, {7, 1000, 65}, {1000, 7, 129}, {65, 129, 1}};
    for (const auto& [M, N, K] : shapes)
        for (int t = 0; t < 4; ++t)
            for (bool pack_a : {false, true}) {
                Random rng(++seed);
                const auto A = random_stored<T>(M, K, t & 1, rng), B = random_stored<T>(K, N, t & 2, rng);
                const std::vector<T> C0 = random_vector<T>(rng, M * N);
                std::vector<std::vector<T>> results;
                for (ThreadPool* pool : {&p1, &p2, &p3, &p4}) {
                    std::vector<T> C = C0, Z(M * N);
                    const gemm::BiasActivation<Activation::tanh, T> epi{C0.data(), {Z.data(), M, N}};
                    gemm::multiply(A.operand(), B.operand(), MatrixView<T>(C.data(), M, N), gemm::Update::accumulate,
                                   epi, gemm_settings<T>(pack_a, pool));
                    C.insert(C.end(), Z.begin(), Z.end());
                    results.push_back(std::move(C));
                }
                for (std::size_t r = 1; r < results.size(); ++r)
                    ASSERT_EQ(0, std::memcmp(results[0].data(), results[r].data(), results[0].size() * sizeof(T)))
                        << r + 1 << " threads differ from 1 at M=" << M << " N=" << N << " K=" << K << " t=" << t;
            }
}
TEST(Gemm, BitIdenticalAcrossThreadCountsFloat) { check_bit_identical_across_threads<float>(); }
TEST(Gemm, BitIdenticalAcrossThreadCountsDouble) { check_bit_identical_across_threads<double>(); }

// The split: small products stay in one part; large ones get one part per thread, on the dimension with
// more tiles; never more parts than tiles.
TEST(Gemm, PartsFollowTheWorkThreshold) {
    const auto b = gemm::blocking_for<float>();
    using gemm::detail::choose_grid;
    const std::size_t threshold = 1u << 20;
    auto parts = [](gemm::detail::Grid g) { return g.pm * g.pn; };
    EXPECT_EQ(parts(choose_grid(64, 32, 64, false, 2, threshold, b, 16)), 1u);          // 262,144 flops
    EXPECT_EQ(parts(choose_grid(256, 256, 784, false, 2, threshold, b, 16)), 2u);
    EXPECT_EQ(choose_grid(256, b.nr, 4096, false, 2, threshold, b, 16).pm, 2u);          // one column of tiles
    EXPECT_EQ(choose_grid(b.mr, 784, 1024, true, 2, threshold, b, 16).pn, 2u);           // one row of tiles
    EXPECT_EQ(parts(choose_grid(b.mr, b.nr, 100000, false, 4, threshold, b, 16)), 1u);   // one tile in all
    EXPECT_EQ(parts(choose_grid(512, 512, 512, false, 4, threshold, b, 16)), 4u);
    EXPECT_EQ(parts(choose_grid(512, 512, 512, false, 4, 0, b, 16)), 4u);
    // Parts cover C exactly, on tile boundaries.
    const std::size_t M = 1000, N = 77;
    const auto g = choose_grid(M, N, 300, false, 3, 0, b, 16);
    std::vector<int> covered(M * N, 0);
    for (std::size_t i = 0; i < g.pm * g.pn; ++i) {
        const auto p = g.part(i, M, N, b);
        EXPECT_EQ(p.m0 % b.mr, 0u);
        EXPECT_EQ(p.n0 % b.nr, 0u);
        for (std::size_t r = p.m0; r < p.m1; ++r)
            for (std::size_t c = p.n0; c < p.n1; ++c) ++covered[r * N + c];
    }
    EXPECT_EQ(covered, std::vector<int>(M * N, 1));
}

// Callers on several threads at once: one shared pool, and a pool each; all results equal the serial ones.
template <class T>
void check_concurrent_callers(bool shared_pool) {
    Random rng(77);
    const std::size_t M = 131, N = 67, K = 97;
    const auto A = random_stored<T>(M, K, false, rng), B = random_stored<T>(K, N, true, rng);
    std::vector<T> expected(M * N);
    gemm::multiply(A.operand(), B.operand(), MatrixView<T>(expected.data(), M, N));
    ThreadPool shared(2);
    std::atomic<int> mismatches{0};
    auto caller = [&] {
        ThreadPool own(2);
        gemm::Workspace<T> workspace;
        auto s = gemm_settings<T>(true, shared_pool ? &shared : &own);
        s.workspace = &workspace;
        for (int i = 0; i < 20; ++i) {
            std::vector<T> C(M * N);
            gemm::multiply(A.operand(), B.operand(), MatrixView<T>(C.data(), M, N), gemm::Update::overwrite,
                           gemm::Store{}, s);
            if (std::memcmp(C.data(), expected.data(), C.size() * sizeof(T)) != 0) ++mismatches;
        }
    };
    std::thread t1(caller), t2(caller);
    caller();
    t1.join();
    t2.join();
    EXPECT_EQ(mismatches.load(), 0);
}
TEST(Gemm, ConcurrentCallersSharingOnePool) {
    check_concurrent_callers<float>(true);
    check_concurrent_callers<double>(true);
}
TEST(Gemm, ConcurrentCallersWithAPoolEach) {
    check_concurrent_callers<float>(false);
    check_concurrent_callers<double>(false);
}

// A workspace reused across products of other shapes and types of update gives the same results.
TEST(Gemm, WorkspaceReuse) {
    gemm::Workspace<double> workspace;
    auto s = gemm_settings<double>(true);
    s.workspace = &workspace;
    check_product<double>(300, 200, 100, false, true, s, gemm::Update::overwrite, 61);
    check_product<double>(5, 7, 3, true, false, s, gemm::Update::accumulate, 62);
    check_product<double>(129, 65, 700, false, false, s, gemm::Update::overwrite, 63);
}

TEST(Gemm, PeakProbeMeasuresSomething) {
    const double f = gemm::fma_peak_flops<float>(std::chrono::milliseconds(2), 2);
    const double d = gemm::fma_peak_flops<double>(std::chrono::milliseconds(2), 2);
    EXPECT_TRUE(std::isfinite(f) && f > 0);
    EXPECT_TRUE(std::isfinite(d) && d > 0);
}

// After fork() the child has the parent's pool object but none of its threads; nothing static needs
// resetting, so a new pool in the child computes (the parent's is left alone there, as documented).
TEST(ThreadPool, ANewPoolWorksInAForkedChild) {
#if !defined(MLPGRAD_TEST_HAS_FORK)
    GTEST_SKIP() << "no fork() here";
#elif defined(MLPGRAD_TEST_TSAN)
    GTEST_SKIP() << "ThreadSanitizer does not support threads in a child of a multi-threaded process";
#else
    Random rng(90);
    const std::size_t M = 70, N = 50, K = 300;
    const auto A = random_stored<double>(M, K, false, rng), B = random_stored<double>(K, N, true, rng);
    ThreadPool parent_pool(2);
    std::vector<double> expected(M * N);
    gemm::multiply(A.operand(), B.operand(), MatrixView<double>(expected.data(), M, N), gemm::Update::overwrite,
                   gemm::Store{}, gemm_settings<double>(true, &parent_pool));
    const pid_t child = fork();
    ASSERT_NE(child, -1);
    if (child == 0) {
        int status = 1;
        {
            ThreadPool pool(2);
            std::vector<double> C(M * N);
            gemm::multiply(A.operand(), B.operand(), MatrixView<double>(C.data(), M, N), gemm::Update::overwrite,
                           gemm::Store{}, gemm_settings<double>(true, &pool));
            status = std::memcmp(C.data(), expected.data(), C.size() * sizeof(double)) == 0 ? 0 : 2;
        }
        _exit(status);  // not exit(): the parent's pool (no threads here) must not be destroyed
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "the child crashed";
    EXPECT_EQ(WEXITSTATUS(status), 0);
#endif
}

}  // namespace
}  // namespace mlpgrad_test
