// Optimiser updates: bit for bit equal to the textbook formulas evaluated one rounded operation at a time
// (the reference below forces each product through memory, so no compiler can fuse it into an FMA), for
// every option, several steps, float and double; and the error paths, which write nothing.
#include "test_support.hpp"

#include <cstring>
#include <random>

namespace mlpgrad_test {
namespace {

using mlpgrad::optim::AdamOptions;
using mlpgrad::optim::SgdOptions;

// x rounded to T by a store: a product passed through here cannot be contracted with the add that uses it.
template <class T>
T rounded(T x) {
    volatile T stored = x;
    return stored;
}

template <class T>
void reference_sgd(std::vector<T>& theta, const std::vector<T>& grad, std::vector<T>& b, const SgdOptions& o,
                   std::size_t step) {
    const T lr = T(o.lr), mu = T(o.momentum), lambda = T(o.weight_decay);
    for (std::size_t i = 0; i < theta.size(); ++i) {
        T g = grad[i];
        if (o.weight_decay != 0) g = g + rounded(lambda * theta[i]);
        if (o.momentum != 0) {
            b[i] = step == 1 ? g : rounded(mu * b[i]) + g;
            g = o.nesterov ? g + rounded(mu * b[i]) : b[i];
        }
        theta[i] = theta[i] - rounded(lr * g);
    }
}

template <class T>
void reference_adam(std::vector<T>& theta, const std::vector<T>& grad, std::vector<T>& m, std::vector<T>& v,
                    const AdamOptions& o, std::size_t step) {
    const double t = static_cast<double>(step);
    const T lr = T(o.lr), b1 = T(o.beta1), b2 = T(o.beta2), eps = T(o.eps), lambda = T(o.weight_decay);
    const T c1 = T(1 - o.beta1), c2 = T(1 - o.beta2);
    const T bc1 = T(1 - std::pow(o.beta1, t)), bc2 = T(1 - std::pow(o.beta2, t));
    const T decay = T(1 - rounded(o.lr * o.weight_decay));
    for (std::size_t i = 0; i < theta.size(); ++i) {
        T g = grad[i];
        if (o.weight_decay != 0) {
            if (o.decoupled)
                theta[i] = theta[i] * decay;
            else
                g = g + rounded(lambda * theta[i]);
        }
        m[i] = rounded(b1 * m[i]) + rounded(c1 * g);
        v[i] = rounded(b2 * v[i]) + rounded(c2 * rounded(g * g));
        const T m_hat = m[i] / bc1, v_hat = v[i] / bc2;
        theta[i] = theta[i] - rounded(lr * m_hat) / (std::sqrt(v_hat) + eps);
    }
}

template <class T>
::testing::AssertionResult bitwise_equal(const std::vector<T>& got, const std::vector<T>& expected) {
    for (std::size_t i = 0; i < got.size(); ++i)
        if (std::memcmp(&got[i], &expected[i], sizeof(T)) != 0)
            return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", expected "
                                                 << expected[i] << " (" << got.size() << " elements)";
    return ::testing::AssertionSuccess();
}

// 1,003 elements: every vector width's main loop and its remainder.
constexpr std::size_t n = 1003;

template <class T>
struct Arrays {
    std::vector<T> theta, grad;
    explicit Arrays(std::uint64_t seed) {
        Random rng(seed);
        theta = random_vector<T>(rng, n, 2.0);
        grad = random_vector<T>(rng, n, 0.5);
    }
};

std::vector<SgdOptions> sgd_variants() {
    std::vector<SgdOptions> out;
    for (double momentum : {0.0, 0.9})
        for (bool nesterov : {false, true})
            for (double weight_decay : {0.0, 0.01})
                if (!nesterov || momentum != 0) out.push_back({0.1, momentum, nesterov, weight_decay});
    return out;
}

std::vector<AdamOptions> adam_variants() {
    return {{1e-3, 0.9, 0.999, 1e-8, 0.0, false},
            {3e-2, 0.8, 0.99, 1e-6, 0.05, false},
            {3e-2, 0.8, 0.99, 1e-6, 0.05, true},
            {1e-2, 0.0, 0.5, 0.0, 0.0, false}};
}

template <class T>
void sgd_matches_the_textbook() {
    for (const SgdOptions& o : sgd_variants()) {
        Arrays<T> a(11);
        std::vector<T> theta = a.theta, b(n, T(0)), ref_theta = a.theta, ref_b(n, T(0));
        for (std::size_t step = 1; step <= 4; ++step) {
            Random rng(100 + step);
            const std::vector<T> grad = random_vector<T>(rng, n, 0.5);
            mlpgrad::optim::sgd_update<T>(mview(theta), cview(grad), mview(b), o, step);
            reference_sgd(ref_theta, grad, ref_b, o, step);
            SCOPED_TRACE("momentum " + std::to_string(o.momentum) + " nesterov " + std::to_string(o.nesterov) +
                         " weight_decay " + std::to_string(o.weight_decay) + " step " + std::to_string(step));
            ASSERT_TRUE(bitwise_equal(theta, ref_theta));
            ASSERT_TRUE(bitwise_equal(b, ref_b));
        }
    }
}

template <class T>
void adam_matches_the_textbook() {
    for (const AdamOptions& o : adam_variants()) {
        Arrays<T> a(12);
        std::vector<T> theta = a.theta, m(n, T(0)), v(n, T(0));
        std::vector<T> ref_theta = a.theta, ref_m(n, T(0)), ref_v(n, T(0));
        for (std::size_t step = 1; step <= 4; ++step) {
            Random rng(200 + step);
            const std::vector<T> grad = random_vector<T>(rng, n, 0.5);
            mlpgrad::optim::adam_update<T>(mview(theta), cview(grad), mview(m), mview(v), o, step);
            reference_adam(ref_theta, grad, ref_m, ref_v, o, step);
            SCOPED_TRACE("lr " + std::to_string(o.lr) + " weight_decay " + std::to_string(o.weight_decay) +
                         " decoupled " + std::to_string(o.decoupled) + " step " + std::to_string(step));
            ASSERT_TRUE(bitwise_equal(theta, ref_theta));
            ASSERT_TRUE(bitwise_equal(m, ref_m));
            ASSERT_TRUE(bitwise_equal(v, ref_v));
        }
    }
}

TEST(Optim, SgdIsTheTextbookUpdateBitForBitFloat) { sgd_matches_the_textbook<float>(); }
TEST(Optim, SgdIsTheTextbookUpdateBitForBitDouble) { sgd_matches_the_textbook<double>(); }
TEST(Optim, AdamIsTheTextbookUpdateBitForBitFloat) { adam_matches_the_textbook<float>(); }
TEST(Optim, AdamIsTheTextbookUpdateBitForBitDouble) { adam_matches_the_textbook<double>(); }

// The comparison above can tell a fused multiply-add from separate roundings: on these arrays θ − γg with
// one rounding (std::fma) differs from the textbook's two in dozens of elements, so a kernel that the compiler
// had contracted would fail it.
template <class T>
void fused_update_differs() {
    Arrays<T> a(13);
    std::vector<T> theta = a.theta, unused;
    const SgdOptions o{0.1, 0, false, 0};
    mlpgrad::optim::sgd_update<T>(mview(theta), cview(a.grad), mview(unused), o, 1);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < n; ++i) differ += theta[i] != std::fma(-T(o.lr), a.grad[i], a.theta[i]);
    EXPECT_GE(differ, 10u);  // 26 (float) and 41 (double) of the 1,003 here
}
TEST(Optim, SeparateRoundingIsDistinguishableFromFmaFloat) { fused_update_differs<float>(); }
TEST(Optim, SeparateRoundingIsDistinguishableFromFmaDouble) { fused_update_differs<double>(); }

TEST(Optim, NanAndInfinityPropagate) {
    std::vector<double> theta{1, 2, 3}, grad{std::nan(""), 1, HUGE_VAL}, m(3, 0.0), v(3, 0.0);
    mlpgrad::optim::adam_update<double>(mview(theta), cview(grad), mview(m), mview(v), AdamOptions{}, 1);
    EXPECT_TRUE(std::isnan(theta[0]));
    EXPECT_DOUBLE_EQ(theta[1], 2 - 1e-3 * (1 / (1 + 1e-8)));
    EXPECT_TRUE(std::isnan(theta[2]));  // m̂/√v̂ = Inf/Inf
    std::vector<double> p{1, 2}, g{std::nan(""), HUGE_VAL}, b(2, 0.0);
    mlpgrad::optim::sgd_update<double>(mview(p), cview(g), mview(b), SgdOptions{0.5, 0.9, false, 0}, 1);
    EXPECT_TRUE(std::isnan(p[0]) && std::isnan(b[0]));
    EXPECT_EQ(p[1], -HUGE_VAL);
}

TEST(Optim, ZeroWeightDecayNeverTouchesAnInfiniteParameter) {
    // λ = 0 skips λθ (0·Inf would be NaN): the textbook's "if λ ≠ 0".
    std::vector<double> theta{HUGE_VAL}, grad{1}, b(1), m(1), v(1);
    mlpgrad::optim::sgd_update<double>(mview(theta), cview(grad), mview(b), SgdOptions{0.1, 0.5, true, 0}, 1);
    EXPECT_EQ(theta[0], HUGE_VAL);
    mlpgrad::optim::adam_update<double>(mview(theta), cview(grad), mview(m), mview(v), AdamOptions{}, 1);
    EXPECT_EQ(theta[0], HUGE_VAL);
}

TEST(OptimErrors, OptionsOutOfRange) {
    std::vector<double> theta(4, 1.0), grad(4, 1.0), s1(4, 0.0), s2(4, 0.0);
    const std::vector<double> before = theta;
    auto sgd = [&](SgdOptions o, std::size_t step = 1) {
        return [&, o, step] { mlpgrad::optim::sgd_update<double>(mview(theta), cview(grad), mview(s1), o, step); };
    };
    auto adam = [&](AdamOptions o) {
        return [&, o] { mlpgrad::optim::adam_update<double>(mview(theta), cview(grad), mview(s1), mview(s2), o, 1); };
    };
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(sgd({-0.1, 0, false, 0}), "lr"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(sgd({std::nan(""), 0, false, 0}), "lr"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(sgd({0.1, -0.5, false, 0}), "momentum"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(sgd({0.1, 0, true, 0}), "nesterov"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(sgd({0.1, 0, false, HUGE_VAL}), "weight_decay"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(sgd({0.1, 0, false, 0}, 0), "step"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(adam({1e-3, 1.0, 0.999, 1e-8, 0, false}), "beta1"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(adam({1e-3, 0.9, -0.1, 1e-8, 0, false}), "beta2"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(adam({1e-3, 0.9, 0.999, -1, 0, false}), "eps"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(adam({1e-3, 0.9, 0.999, 1e-8, -1, true}), "weight_decay"));
    try {
        adam({1e-3, 1.0, 0.999, 1e-8, 0, false})();
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "beta1 must be a finite number in [0, 1), got 1");
    }
    EXPECT_EQ(theta, before);
}

TEST(OptimErrors, SizesAndAliasing) {
    std::vector<float> theta(8, 1.0f), grad(8, 1.0f), short_state(7, 0.0f), s1(8, 0.0f), s2(8, 0.0f);
    const std::vector<float> before = theta;
    const SgdOptions momentum{0.1, 0.9, false, 0};
    using mlpgrad::VectorView;
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::optim::sgd_update<float>(mview(theta), {grad.data(), 7}, mview(s1), momentum, 1); }, "grad"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::optim::sgd_update<float>(mview(theta), cview(grad), mview(short_state), momentum, 1); },
        "velocity"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::optim::sgd_update<float>(mview(theta), {theta.data(), 8}, mview(s1), momentum, 1); }, "param"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::optim::sgd_update<float>(mview(theta), cview(grad), {grad.data(), 8}, momentum, 2); },
        "grad"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::optim::adam_update<float>(mview(theta), cview(grad), mview(short_state), mview(s2), {}, 1); },
        "m"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::optim::adam_update<float>(mview(theta), cview(grad), mview(s1), {s1.data() + 4, 8}, {}, 1); },
        "m"));
    EXPECT_EQ(theta, before);
    // Without momentum the velocity is not used: an empty one is fine.
    mlpgrad::optim::sgd_update<float>(mview(theta), cview(grad), VectorView<float>{}, SgdOptions{0.5, 0, false, 0}, 1);
    EXPECT_EQ(theta, std::vector<float>(8, 0.5f));
}

// A whole step (sgd_step, adam_step) over arrays of several sizes: each array bit for bit what its own
// update gives.
template <class T>
void whole_step_is_the_per_array_updates() {
    const std::vector<std::size_t> sizes{37, 1, 256, 5};
    std::mt19937 rng(7);
    std::normal_distribution<double> normal;
    const auto random_vector = [&](std::size_t n) {
        std::vector<T> x(n);
        for (T& e : x) e = T(normal(rng));
        return x;
    };
    std::vector<std::vector<T>> theta, grad;
    for (std::size_t n : sizes) {
        theta.push_back(random_vector(n));
        grad.push_back(random_vector(n));
    }
    const auto zeros = [&] {
        std::vector<std::vector<T>> z;
        for (std::size_t n : sizes) z.emplace_back(n, T(0));
        return z;
    };
    const auto same_bits = [](const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b) {
        for (std::size_t i = 0; i < a.size(); ++i)
            if (std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(T)) != 0) return false;
        return true;
    };
    const SgdOptions sgd{0.05, 0.9, true, 0.01};
    auto theta_step = theta, theta_each = theta, velocity_step = zeros(), velocity_each = zeros();
    const AdamOptions adam{0.01, 0.8, 0.99, 1e-6, 0.05, true};
    auto adam_step_theta = theta, adam_each_theta = theta, m_step = zeros(), v_step = zeros(), m_each = zeros(),
         v_each = zeros();
    for (std::size_t step = 1; step <= 3; ++step) {
        std::vector<mlpgrad::optim::SgdArrays<T>> sgd_arrays;
        std::vector<mlpgrad::optim::AdamArrays<T>> adam_arrays;
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            sgd_arrays.push_back({mview(theta_step[i]), cview(grad[i]), mview(velocity_step[i])});
            mlpgrad::optim::sgd_update<T>(mview(theta_each[i]), cview(grad[i]), mview(velocity_each[i]), sgd, step);
            adam_arrays.push_back({mview(adam_step_theta[i]), cview(grad[i]), mview(m_step[i]), mview(v_step[i])});
            mlpgrad::optim::adam_update<T>(mview(adam_each_theta[i]), cview(grad[i]), mview(m_each[i]), mview(v_each[i]),
                                           adam, step);
        }
        mlpgrad::optim::sgd_step<T>(sgd_arrays, sgd, step);
        mlpgrad::optim::adam_step<T>(adam_arrays, adam, step);
        EXPECT_TRUE(same_bits(theta_step, theta_each)) << "sgd step " << step;
        EXPECT_TRUE(same_bits(velocity_step, velocity_each)) << "sgd step " << step;
        EXPECT_TRUE(same_bits(adam_step_theta, adam_each_theta)) << "adam step " << step;
        EXPECT_TRUE(same_bits(m_step, m_each) && same_bits(v_step, v_each)) << "adam step " << step;
        EXPECT_FALSE(same_bits(theta_step, theta)) << "the step changed nothing";
    }
}

TEST(Optim, WholeStepIsThePerArrayUpdatesFloat) { whole_step_is_the_per_array_updates<float>(); }
TEST(Optim, WholeStepIsThePerArrayUpdatesDouble) { whole_step_is_the_per_array_updates<double>(); }

TEST(OptimErrors, WholeStepChecksEveryArrayBeforeWritingAny) {
    std::vector<float> a(8, 1.0f), b(8, 1.0f), c(8, 1.0f), ga(8, 1.0f), gb(8, 1.0f), va(8, 0.0f), vb(8, 0.0f);
    const auto before = std::vector<std::vector<float>>{a, b, c, va, vb};
    const auto unchanged = [&] { return std::vector<std::vector<float>>{a, b, c, va, vb} == before; };
    const SgdOptions momentum{0.1, 0.9, false, 0};
    using Arrays = std::vector<mlpgrad::optim::SgdArrays<float>>;
    const auto step = [&](const Arrays& arrays) { mlpgrad::optim::sgd_step<float>(arrays, momentum, 1); };
    // The last parameter is wrong: the first two must not have been updated.
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { step({{mview(a), cview(ga), mview(va)}, {mview(b), cview(gb), mview(vb)}, {mview(c), {ga.data(), 7}, mview(vb)}}); },
        "grads[2] has shape (7,)"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { step({{mview(a), cview(ga), mview(va)}, {mview(b), cview(gb), {vb.data(), 3}}}); }, "velocities[1]"));
    // A velocity over another parameter, a parameter over another's gradient: refused across parameters too.
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { step({{mview(a), cview(ga), mview(va)}, {mview(b), cview(gb), mview(a)}}); },
        "params[0] and velocities[1]"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { step({{mview(a), cview(ga), mview(va)}, {mview(b), cview(a), mview(vb)}}); },
        "params[0] and grads[1]"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { step({{mview(a), cview(ga), mview(va)}, {{a.data() + 4, 4}, {gb.data(), 4}, {vb.data(), 4}}}); },
        "params[0] and params[1]"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] { mlpgrad::optim::sgd_step<float>({{mview(a), cview(ga), mview(va)}}, momentum, 0); }, "step"));
    EXPECT_TRUE(unchanged());
    // Gradients are only read: two parameters may share one.
    step({{mview(a), cview(ga), mview(va)}, {mview(b), cview(ga), mview(vb)}});
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, std::vector<float>(8, 0.9f));
}

// The last list that passed is remembered (per thread) so that a repeated step skips the sort: a step over
// the same arrays passes again, and any change of an address, a size or which array is written is checked
// anew, as is a list that failed.
TEST(OptimErrors, RepeatedStepsAreCheckedAsTheirFirst) {
    std::vector<float> a(8, 1.0f), b(8, 1.0f), ga(8, 1.0f), gb(8, 1.0f), va(8, 0.0f), vb(8, 0.0f);
    const SgdOptions momentum{0.1, 0.9, false, 0};
    using Arrays = std::vector<mlpgrad::optim::SgdArrays<float>>;
    const auto step = [&](const Arrays& arrays) { mlpgrad::optim::sgd_step<float>(arrays, momentum, 2); };
    const Arrays fine{{mview(a), cview(ga), mview(va)}, {mview(b), cview(gb), mview(vb)}};
    step(fine);
    step(fine);
    const auto snapshot = std::vector<std::vector<float>>{a, b, va, vb};
    const auto unchanged = [&] { return std::vector<std::vector<float>>{a, b, va, vb} == snapshot; };
    // The same addresses with one array moved onto another, or grown into it: refused, every time.
    const Arrays moved{{mview(a), cview(ga), mview(va)}, {mview(b), cview(gb), mview(a)}};
    const Arrays grown{{{a.data(), 8}, cview(ga), {va.data(), 8}}, {{a.data() + 4, 4}, {gb.data(), 4}, {vb.data(), 4}}};
    for (int i = 0; i < 2; ++i) {
        EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { step(moved); }, "params[0] and velocities[1]"));
        EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { step(grown); }, "params[0] and params[1]"));
    }
    EXPECT_TRUE(unchanged());
    // The same addresses and sizes in the same order, differing only in which array is written: SGD's
    // (a, shared), (b, shared) passes (a gradient may be shared), Adam's a, shared, m = b, v = shared may not.
    std::vector<float> shared(8, 1.0f);
    const SgdOptions plain{0.1, 0, false, 0};
    mlpgrad::optim::sgd_step<float>({{mview(a), cview(shared), {}}, {mview(b), cview(shared), {}}}, plain, 1);
    EXPECT_TRUE(throws_exactly<std::invalid_argument>(
        [&] {
            mlpgrad::optim::adam_step<float>({{mview(a), cview(shared), mview(b), mview(shared)}},
                                             mlpgrad::optim::AdamOptions{}, 1);
        },
        "v[0] and grads[0]"));
}

}  // namespace
}  // namespace mlpgrad_test
