// L-BFGS and its Moré–Thuente line search: the search ends at a step with sufficient decrease and
// curvature on Moré and Thuente's own test functions; L-BFGS reaches the minimisers of standard problems,
// honours its limits and stopping tests, recovers from a failed line search, is the same bits on every run,
// and refuses bad options and calls.
#include "test_support.hpp"

#include <mlpgrad/optim/lbfgs.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

namespace mlpgrad_test {
namespace {

using mlpgrad::optim::LbfgsOptions;
using mlpgrad::optim::LbfgsTask;
using mlpgrad::optim::MoreThuenteSearch;
using Status = MoreThuenteSearch::Status;

// φ and φ' of Moré and Thuente's table 1-3 functions (the paper's §5): (value, derivative) at a.
std::pair<double, double> phi1(double a) {  // −a / (a² + β), β = 2
    const double beta = 2, d = a * a + beta;
    return {-a / d, (a * a - beta) / (d * d)};
}
std::pair<double, double> phi2(double a) {  // (a + β)^5 − 2 (a + β)^4, β = 0.004
    const double beta = 0.004, t = a + beta;
    return {std::pow(t, 5) - 2 * std::pow(t, 4), 5 * std::pow(t, 4) - 8 * std::pow(t, 3)};
}
std::pair<double, double> phi3(double a) {  // φ₀(a) + 2(1 − β)/(lπ) · sin(lπa/2), β = 0.01, l = 39
    const double beta = 0.01, l = 39, pi = 3.14159265358979323846;
    const double p0 = a <= 1 - beta ? 1 - a : a >= 1 + beta ? a - 1 : (a - 1) * (a - 1) / (2 * beta) + beta / 2;
    const double d0 = a <= 1 - beta ? -1 : a >= 1 + beta ? 1 : (a - 1) / beta;
    return {p0 + 2 * (1 - beta) / (l * pi) * std::sin(l * pi * a / 2), d0 + (1 - beta) * std::cos(l * pi * a / 2)};
}

// Runs the search from first_step; checks both conditions at the step it converges to, and that step and
// the number of evaluations against those of SciPy's MINPACK-2 translation (scipy.optimize._dcsrch), which
// for φ1 are also the paper's table 1 (6, 3, 1, 4 evaluations).
template <class Phi>
void expect_search(Phi phi, double ftol, double gtol, double xtol, double first_step, double expected_step,
                   int expected_evaluations) {
    MoreThuenteSearch search(ftol, gtol, xtol, 0, 1e10);
    const auto [f0, g0] = phi(0.0);
    double stp = first_step;
    ASSERT_EQ(search.start(stp, f0, g0), Status::evaluate);
    Status status = Status::evaluate;
    int evaluations = 0;
    while (status == Status::evaluate && evaluations < 50) {
        const auto [f, g] = phi(stp);
        ++evaluations;
        status = search.next(stp, f, g);
        if (status == Status::converged) {
            EXPECT_LE(f, f0 + ftol * stp * g0) << "sufficient decrease at stp = " << stp;
            EXPECT_LE(std::fabs(g), gtol * std::fabs(g0)) << "curvature at stp = " << stp;
        }
    }
    EXPECT_EQ(status, Status::converged) << "first step " << first_step;
    EXPECT_NEAR(stp, expected_step, 1e-12 * expected_step) << "first step " << first_step;
    EXPECT_EQ(evaluations, expected_evaluations) << "first step " << first_step;
}

TEST(MoreThuenteSearch, TakesMinpack2sStepsOnThePapersFunctions) {
    const double first[4] = {1e-3, 1e-1, 1e1, 1e3};
    const double step1[4] = {1.365, 1.4413720790892741, 10.0, 36.88760696396662};
    const int evals1[4] = {6, 3, 1, 4};
    const double step2[4] = {1.596000000186075, 1.5960000000049348, 1.5959999997572032, 1.595999998872531};
    const int evals2[4] = {12, 8, 8, 11};
    const double step3[4] = {0.9999996797968318, 0.9999988033548208, 0.9999999876178056, 0.9999999017146377};
    const int evals3[4] = {12, 12, 10, 13};
    const double step1b[4] = {0.341, 0.5, 10.0, 36.88760696396662};  // L-BFGS-B's constants
    const int evals1b[4] = {5, 2, 1, 4};
    for (int i = 0; i < 4; ++i) {
        expect_search(phi1, 1e-3, 0.1, 0.1, first[i], step1[i], evals1[i]);
        expect_search(phi2, 0.1, 0.1, 1e-10, first[i], step2[i], evals2[i]);
        expect_search(phi3, 0.1, 0.1, 1e-10, first[i], step3[i], evals3[i]);
        expect_search(phi1, 1e-3, 0.9, 0.1, first[i], step1b[i], evals1b[i]);
    }
}

TEST(MoreThuenteSearch, RefusesToStartUphillOrOutsideItsRange) {
    MoreThuenteSearch search;
    EXPECT_EQ(search.start(1.0, 0.0, 1.0), Status::error);   // φ'(0) > 0
    EXPECT_EQ(search.start(1.0, 0.0, 0.0), Status::error);   // φ'(0) = 0
    EXPECT_EQ(search.start(-1.0, 0.0, -1.0), Status::error);  // stp < stpmin
    EXPECT_EQ(search.start(1e11, 0.0, -1.0), Status::error);  // stp > stpmax
    EXPECT_EQ(search.start(std::nan(""), 0.0, -1.0), Status::error);
}

// The n-dimensional Rosenbrock function, f and ∇f.
double rosenbrock(const double* x, double* g, std::size_t n) {
    double f = 0;
    for (std::size_t i = 0; i < n; ++i) g[i] = 0;
    for (std::size_t i = 0; i + 1 < n; ++i) {
        const double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
        f += 100 * a * a + b * b;
        g[i] += -400 * x[i] * a - 2 * b;
        g[i + 1] += 200 * a;
    }
    return f;
}

TEST(Lbfgs, MinimisesRosenbrock) {
    for (std::size_t n : {2, 10, 50}) {
        std::vector<double> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = i % 2 == 0 ? -1.2 : 1.0;
        LbfgsOptions options;
        options.gtol = 1e-8;
        options.ftol = 0;
        const auto result = mlpgrad::optim::minimize_lbfgs(
            [&](const double* x, double* g) { return rosenbrock(x, g, n); }, x.data(), n, options, 2000, 15000);
        EXPECT_EQ(result.task, LbfgsTask::converged_gradient) << "n = " << n;
        for (double v : x) EXPECT_NEAR(v, 1.0, 1e-6) << "n = " << n;
        EXPECT_LT(result.f, 1e-12);
        EXPECT_LE(result.evaluations, 2 * result.iterations + 20);
    }
}

TEST(Lbfgs, TakesOneNewtonStepOnAScaledIdentityQuadraticAfterTheFirst) {
    // f = ½ c ‖x − 1‖²: after the first step, H₀ = (sᵀy/yᵀy) I = I/c is the exact inverse Hessian.
    const std::size_t n = 5;
    const double c = 3;
    std::vector<double> x(n, 4.0);
    LbfgsOptions options;
    options.gtol = 1e-12;
    const auto result = mlpgrad::optim::minimize_lbfgs(
        [&](const double* x, double* g) {
            double f = 0;
            for (std::size_t i = 0; i < n; ++i) {
                f += 0.5 * c * (x[i] - 1) * (x[i] - 1);
                g[i] = c * (x[i] - 1);
            }
            return f;
        },
        x.data(), n, options, 100, 100);
    EXPECT_EQ(result.task, LbfgsTask::converged_gradient);
    EXPECT_LE(result.iterations, 3u);
    for (double v : x) EXPECT_NEAR(v, 1.0, 1e-12);
}

TEST(Lbfgs, StopsAtItsLimitsAndOnTheRelativeReduction) {
    const std::size_t n = 10;
    auto fun = [&](const double* x, double* g) { return rosenbrock(x, g, n); };
    std::vector<double> x(n, -1.0);
    LbfgsOptions options;
    options.gtol = 0;
    auto r = mlpgrad::optim::minimize_lbfgs(fun, x.data(), n, options, 7, 15000);
    EXPECT_EQ(r.task, LbfgsTask::new_iterate);
    EXPECT_EQ(r.iterations, 7u);
    std::fill(x.begin(), x.end(), -1.0);
    r = mlpgrad::optim::minimize_lbfgs(fun, x.data(), n, options, 15000, 9);
    EXPECT_EQ(r.task, LbfgsTask::new_iterate);
    EXPECT_GT(r.evaluations, 9u);
    std::fill(x.begin(), x.end(), -1.0);
    r = mlpgrad::optim::minimize_lbfgs(fun, x.data(), n, options, 15000, 15000);
    EXPECT_EQ(r.task, LbfgsTask::converged_reduction);
    std::vector<double> g(n);
    EXPECT_DOUBLE_EQ(r.f, rosenbrock(x.data(), g.data(), n));  // x is the iterate of r.f
}

TEST(Lbfgs, StopsAtOnceWhereTheGradientIsSmallEnough) {
    std::vector<double> x{1.0, 1.0};
    const double g[2] = {0.0, 0.0};
    mlpgrad::optim::Lbfgs run(2, LbfgsOptions{});
    EXPECT_EQ(run.iterate(x.data(), 0.0, g), LbfgsTask::converged_gradient);
    EXPECT_EQ(x, (std::vector<double>{1.0, 1.0}));
    EXPECT_TRUE(run.finished());
    EXPECT_THROW(run.iterate(x.data(), 0.0, g), std::logic_error);
}

TEST(Lbfgs, AWrongGradientEndsTheRunAtTheLastIterate) {
    // ∇f has the wrong sign: no step along −∇f decreases f, so the first search fails, without pairs.
    const std::size_t n = 3;
    std::vector<double> x{1.0, -2.0, 0.5};
    const std::vector<double> start = x;
    const auto r = mlpgrad::optim::minimize_lbfgs(
        [&](const double* x, double* g) {
            double f = 0;
            for (std::size_t i = 0; i < n; ++i) {
                f += x[i] * x[i];
                g[i] = -2 * x[i];
            }
            return f;
        },
        x.data(), n, LbfgsOptions{}, 100, 1000);
    EXPECT_EQ(r.task, LbfgsTask::line_search_failed);
    EXPECT_EQ(r.iterations, 0u);
    EXPECT_EQ(x, start);
    EXPECT_LE(r.evaluations, 21u);
}

TEST(Lbfgs, AFailedSearchWithPairsForgetsThemAndEndsOnAnEvaluatedIterate) {
    // After 6 evaluations the gradient's sign flips: the next searches go uphill and fail, with pairs in
    // memory (then L-BFGS forgets them and tries −∇f) and without (then the run ends). x must be an iterate
    // that was evaluated, and f the value there.
    const std::size_t n = 2;
    std::vector<double> x{3.0, 1.0};
    std::vector<std::vector<double>> evaluated;
    mlpgrad::optim::Lbfgs run(n, LbfgsOptions{});
    auto fun = [&](const double* x, double* g) {
        evaluated.emplace_back(x, x + n);
        const double sign = evaluated.size() > 6 ? -1.0 : 1.0;
        g[0] = sign * 2 * x[0];
        g[1] = sign * 20 * x[1];
        return x[0] * x[0] + 10 * x[1] * x[1];
    };
    std::vector<double> g(n);
    double f = fun(x.data(), g.data());
    bool forgot = false;
    LbfgsTask task = LbfgsTask::evaluate;
    for (int calls = 0; calls < 1000; ++calls) {
        const std::size_t pairs_before = run.pairs();
        task = run.iterate(x.data(), f, g.data());
        forgot = forgot || (pairs_before > 0 && run.pairs() == 0);
        if (task == LbfgsTask::evaluate)
            f = fun(x.data(), g.data());
        else if (task != LbfgsTask::new_iterate)
            break;
    }
    EXPECT_EQ(task, LbfgsTask::line_search_failed);
    EXPECT_TRUE(forgot);
    EXPECT_NE(std::find(evaluated.begin(), evaluated.end(), x), evaluated.end());
    EXPECT_DOUBLE_EQ(run.value(), x[0] * x[0] + 10 * x[1] * x[1]);
}

TEST(Lbfgs, ANonFiniteTrialValueFailsTheSearchAndKeepsTheIterate) {
    // f = Σ (x − log x): NaN for x < 0. The first step is short (1/‖d‖), later trial steps may leave the
    // domain; the run must stay on finite iterates and reach x = 1.
    const std::size_t n = 4;
    std::vector<double> x{4.0, 0.3, 2.0, 9.0};
    const auto r = mlpgrad::optim::minimize_lbfgs(
        [&](const double* x, double* g) {
            double f = 0;
            for (std::size_t i = 0; i < n; ++i) {
                f += x[i] - std::log(x[i]);
                g[i] = 1 - 1 / x[i];
            }
            return f;
        },
        x.data(), n, LbfgsOptions{}, 200, 1000);
    EXPECT_TRUE(std::isfinite(r.f));
    for (double v : x) EXPECT_GT(v, 0.0);
    for (double v : x) EXPECT_NEAR(v, 1.0, 1e-3);
}

TEST(Lbfgs, IsTheSameBitsOnEveryRun) {
    const std::size_t n = 30;
    std::vector<double> first;
    for (int run = 0; run < 3; ++run) {
        std::vector<double> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(double(i));
        mlpgrad::optim::minimize_lbfgs([&](const double* x, double* g) { return rosenbrock(x, g, n); }, x.data(), n,
                                       LbfgsOptions{}, 60, 1000);
        if (run == 0) first = x;
        EXPECT_EQ(x, first);
    }
}

TEST(Lbfgs, RefusesBadOptionsAndAStartThatIsNotFinite) {
    LbfgsOptions o;
    o.memory = 0;
    EXPECT_THROW(mlpgrad::optim::Lbfgs(3, o), std::invalid_argument);
    o = LbfgsOptions{};
    o.gtol = -1;
    EXPECT_THROW(mlpgrad::optim::Lbfgs(3, o), std::invalid_argument);
    o = LbfgsOptions{};
    o.ftol = std::nan("");
    EXPECT_THROW(mlpgrad::optim::Lbfgs(3, o), std::invalid_argument);
    o = LbfgsOptions{};
    o.max_line_search = 0;
    EXPECT_THROW(mlpgrad::optim::Lbfgs(3, o), std::invalid_argument);
    EXPECT_THROW(mlpgrad::optim::Lbfgs(0, LbfgsOptions{}), std::invalid_argument);

    mlpgrad::optim::Lbfgs run(2, LbfgsOptions{});
    std::vector<double> x{1.0, 2.0};
    const double g_inf[2] = {1.0, INFINITY};
    const double g[2] = {1.0, 1.0};
    EXPECT_THROW(run.iterate(x.data(), 1.0, g_inf), std::invalid_argument);
    EXPECT_THROW(run.iterate(x.data(), std::nan(""), g), std::invalid_argument);
    EXPECT_EQ(x, (std::vector<double>{1.0, 2.0}));
    EXPECT_EQ(run.iterate(x.data(), 1.0, g), LbfgsTask::evaluate);  // a refused start leaves the run unstarted
}

}  // namespace
}  // namespace mlpgrad_test
