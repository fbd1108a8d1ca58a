// The softmax's exponential (mlpgrad/losses/exp.hpp): within 1.25 ulp of e^x computed in long double on
// 2^20 random points of [−745, 0] and on the edges of its range; the IEEE limits; and the same bits for a
// value wherever it sits in a row (every lane takes the same operations).
#include "test_support.hpp"

#include <mlpgrad/losses/exp.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace mlpgrad_test {
namespace {

using mlpgrad::losses::detail::exp_shifted;

// e^x through exp_shifted with μ = 0 (exact: x − 0 = x).
template <class T>
void exp_nonpositive(const T* x, T* e, std::size_t n) {
    exp_shifted(x, T(0), e, n);
}

// |a − b| in units of the last place of b (the spacing of doubles at b; the smallest subnormal below 2^-1022).
double ulps(double a, long double exact) {
    const double b = static_cast<double>(exact);
    const double spacing = b == 0 ? std::numeric_limits<double>::denorm_min()
                                  : std::nextafter(std::fabs(b), INFINITY) - std::fabs(b);
    return static_cast<double>(std::fabs(static_cast<long double>(a) - exact) / spacing);
}

// Where the compiler fuses the polynomial's Horner steps into FMAs (optimised builds with FMA) each rounds
// once: worst seen 0.86 ulp on 2^21 points; unfused (no FMA, or -O0) twice: worst seen 1.13 ulp.
constexpr double max_ulps = 1.25;

TEST(ExpNonpositive, IsWithinOneAndAQuarterUlpOfTheExactValue) {
    std::mt19937_64 rng(12345);
    std::uniform_real_distribution<double> wide(-745.0, 0.0), narrow(-1.0, 0.0);
    std::vector<double> x;
    for (int i = 0; i < (1 << 19); ++i) x.push_back(wide(rng));
    for (int i = 0; i < (1 << 19); ++i) x.push_back(narrow(rng));
    for (double edge : {0.0, -0.0, -1e-300, -5e-324, -0.34657359027997264, -0.34657359027997270, -708.39,
                        -708.4, -709.78, -744.4, -745.0, -745.13, -745.1332191019411})
        x.push_back(edge);
    std::vector<double> e(x.size());
    exp_nonpositive(x.data(), e.data(), x.size());
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double u = ulps(e[i], std::exp(static_cast<long double>(x[i])));
        worst = std::max(worst, u);
        ASSERT_LE(u, max_ulps) << "x = " << x[i] << ", got " << e[i];
    }
    EXPECT_GT(worst, 0.0);  // the test compares values, not a constant
}

TEST(ExpNonpositive, GivesTheIeeeLimits) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double x[7] = {0.0, -INFINITY, nan, -746.0, -1e308, -std::numeric_limits<double>::max(), -0.0};
    double e[7];
    exp_nonpositive(x, e, 7);
    EXPECT_EQ(e[0], 1.0);
    EXPECT_EQ(e[1], 0.0);
    EXPECT_TRUE(std::isnan(e[2]));
    EXPECT_EQ(e[3], 0.0);
    EXPECT_EQ(e[4], 0.0);
    EXPECT_EQ(e[5], 0.0);
    EXPECT_EQ(e[6], 1.0);
    EXPECT_EQ(std::signbit(e[1]), false);
}

TEST(ExpNonpositive, AValueGivesTheSameBitsInEveryLaneAndRowLength) {
    const double v = -3.7512345;
    double alone;
    exp_nonpositive(&v, &alone, 1);
    for (std::size_t n = 1; n <= 9; ++n)
        for (std::size_t at = 0; at < n; ++at) {
            std::vector<double> x(n, -1.25), e(n);
            x[at] = v;
            exp_nonpositive(x.data(), e.data(), n);
            EXPECT_EQ(std::memcmp(&e[at], &alone, sizeof alone), 0) << "n = " << n << ", at " << at;
        }
}

TEST(ExpNonpositive, RoundsToFloatFromDouble) {
    const float x[3] = {-0.5f, -10.0f, -103.0f};
    float e[3];
    exp_nonpositive(x, e, 3);
    for (int i = 0; i < 3; ++i) {
        const double exact = std::exp(static_cast<double>(x[i]));
        EXPECT_LE(std::fabs(e[i] - exact), 0.5001 * (std::nextafter(static_cast<float>(exact), INFINITY) -
                                                     static_cast<float>(exact)) + 1e-45);
    }
}

}  // namespace
}  // namespace mlpgrad_test
