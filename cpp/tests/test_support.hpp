// Helpers shared by the C++ tests: owning networks with deterministic random values, comparisons with
// dtype-appropriate tolerances, and the (dtype, activation) test parameters.
#pragma once

#include <gtest/gtest.h>

#include <mlpgrad/mlpgrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <vector>

namespace mlpgrad_test {

using mlpgrad::Activation;

inline std::vector<Activation> all_activations() {
    std::vector<Activation> out;
    for (std::size_t i = 0; i < mlpgrad::activation_names.size(); ++i) out.push_back(static_cast<Activation>(i));
    return out;
}

inline bool has_kink(Activation a) { return a == Activation::relu || a == Activation::leaky_relu; }

enum class Dtype { float32, float64 };
inline std::string dtype_name(Dtype d) { return d == Dtype::float32 ? "float" : "double"; }

// Calls f(T{}) with T = float or double.
template <class F>
void with_dtype(Dtype d, F&& f) {
    if (d == Dtype::float32)
        f(float{});
    else
        f(double{});
}

// Typed tests over float and double, named "float" and "double" (clang's -Wpedantic wants the name generator).
using Dtypes = ::testing::Types<float, double>;
class DtypeNames {
  public:
    template <class T>
    static std::string GetName(int) {
        return std::is_same_v<T, float> ? "float" : "double";
    }
};

// Test parameter: a dtype and an activation, named like "double_relu".
using DtypeActivation = std::tuple<Dtype, Activation>;
inline std::string param_name(const ::testing::TestParamInfo<DtypeActivation>& info) {
    return dtype_name(std::get<0>(info.param)) + "_" + std::string(mlpgrad::name(std::get<1>(info.param)));
}
inline auto all_dtype_activations() {
    return ::testing::Combine(::testing::Values(Dtype::float32, Dtype::float64),
                              ::testing::ValuesIn(all_activations()));
}

// Deterministic uniform numbers in [-1, 1) (std::uniform_real_distribution differs between libraries).
class Random {
  public:
    explicit Random(std::uint64_t seed) : engine_(seed) {}
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-52 - 1.0; }

  private:
    std::mt19937_64 engine_;
};

// A network that owns its memory; network() is a Network<T> viewing it (valid while *this lives and
// its vectors are not resized). Biases and the output bias are optional (empty vectors: none).
template <class T>
struct OwnedNet {
    std::vector<std::size_t> widths;
    std::vector<Activation> activations;
    std::vector<std::vector<T>> weights;  // weights[t]: row-major (K_{t+1} x K_t), the notes' W^{[t+1]}
    std::vector<T> alpha;                 // row-major (K_T x outputs)
    std::vector<std::vector<T>> biases;   // biases[t] = b^{t+1}, or empty
    std::vector<T> output_bias;           // β (outputs entries), or empty
    std::size_t outputs = 1;              // m

    std::size_t depth() const { return widths.size() - 1; }

    mlpgrad::Network<T> network() const {
        std::vector<mlpgrad::MatrixView<const T>> w;
        for (std::size_t t = 0; t < depth(); ++t) w.push_back({weights[t].data(), widths[t + 1], widths[t]});
        mlpgrad::NetworkOptions<T> options;
        for (const auto& b : biases) options.biases.push_back({b.data(), b.size()});
        options.output_bias = {output_bias.data(), output_bias.size()};
        return mlpgrad::Network<T>(w, mlpgrad::MatrixView<const T>(alpha.data(), widths.back(), outputs), activations,
                                   options);
    }
};

template <class T>
std::vector<T> random_vector(Random& rng, std::size_t n, double scale = 1.0) {
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(scale * rng.uniform());
    return v;
}

// Weights uniform with variance gain^2 / K_t, so pre-activations stay O(1) at any width.
template <class T>
OwnedNet<T> random_net(const std::vector<std::size_t>& widths, const std::vector<Activation>& activations,
                       std::uint64_t seed, double gain = 1.0) {
    Random rng(seed);
    OwnedNet<T> n{widths, activations, {}, {}, {}, {}, 1};
    for (std::size_t t = 0; t + 1 < widths.size(); ++t)
        n.weights.push_back(random_vector<T>(rng, widths[t + 1] * widths[t], gain * std::sqrt(3.0 / widths[t])));
    n.alpha = random_vector<T>(rng, widths.back());
    return n;
}

template <class T>
OwnedNet<T> random_net(const std::vector<std::size_t>& widths, Activation a, std::uint64_t seed, double gain = 1.0) {
    return random_net<T>(widths, std::vector<Activation>(widths.size() - 1, a), seed, gain);
}

// random_net with m outputs, and biases and an output bias when asked for.
template <class T>
OwnedNet<T> random_general_net(const std::vector<std::size_t>& widths, Activation a, std::uint64_t seed,
                               std::size_t outputs, bool biases, bool output_bias) {
    OwnedNet<T> n = random_net<T>(widths, a, seed);
    Random rng(seed + 1000);
    n.outputs = outputs;
    n.alpha = random_vector<T>(rng, widths.back() * outputs);
    if (biases)
        for (std::size_t t = 1; t < widths.size(); ++t) n.biases.push_back(random_vector<T>(rng, widths[t], 0.5));
    if (output_bias) n.output_bias = random_vector<T>(rng, outputs);
    return n;
}

template <class T>
mlpgrad::VectorView<const T> cview(const std::vector<T>& v) {
    return {v.data(), v.size()};
}
template <class T>
mlpgrad::VectorView<T> mview(std::vector<T>& v) {
    return {v.data(), v.size()};
}

// Step and tolerance of the central difference (f(p+h) - f(p-h)) / 2h: truncation error O(h²), rounding
// error O(ε/h). The tolerance is relative to the scale of the gradient (see all_close).
template <class T>
struct FiniteDifference;
template <>
struct FiniteDifference<double> {
    static constexpr double step = 1e-5, tol = 1e-7;
};
template <>
struct FiniteDifference<float> {
    static constexpr double step = 1e-2, tol = 2e-3;
};

// The on/off pattern of every unit (u >= 0), which decides which linear piece a ReLU network is on.
template <class T>
std::vector<bool> kink_pattern(const mlpgrad::Network<T>& net, const mlpgrad::Tape<T>& tape) {
    std::vector<bool> p;
    for (std::size_t t = 1; t <= net.depth(); ++t)
        for (T u : tape.u(t)) p.push_back(u >= T(0));
    return p;
}

// The central difference of f with respect to one parameter p, evaluated in T (the forward pass under test)
// and divided by the step actually taken after rounding. A ReLU network is piecewise linear: a parameter whose
// ±h steps cross a kink is skipped (its difference quotient means nothing; the analytic value is returned) and
// counted. f() must run its forward pass on the `fd_tape` given here, `tape` holds the unperturbed one.
template <class T>
class CentralDifference {
  public:
    CentralDifference(const mlpgrad::Network<T>& net, const mlpgrad::Tape<T>& tape, const mlpgrad::Tape<T>& fd_tape)
        : net_(net),
          fd_tape_(fd_tape),
          pattern_(kink_pattern(net, tape)),
          kinked_(std::any_of(net.activations().begin(), net.activations().end(), has_kink)) {}

    template <class F>
    double operator()(F&& f, T& p, T analytic) {
        ++parameters;
        const T h = T(FiniteDifference<T>::step);
        const T original = p, plus = original + h, minus = original - h;
        p = plus;
        const double f_plus = f();
        const bool same_plus = kink_pattern(net_, fd_tape_) == pattern_;
        p = minus;
        const double f_minus = f();
        const bool same_minus = kink_pattern(net_, fd_tape_) == pattern_;
        p = original;
        if (kinked_ && !(same_plus && same_minus)) {
            ++skipped;
            return static_cast<double>(analytic);
        }
        return (f_plus - f_minus) / (static_cast<double>(plus) - static_cast<double>(minus));
    }

    std::size_t parameters = 0, skipped = 0;  // differences taken, and of those skipped next to a kink

  private:
    const mlpgrad::Network<T>& net_;
    const mlpgrad::Tape<T>& fd_tape_;
    std::vector<bool> pattern_;
    bool kinked_;
};

// Tolerances relative to the scale of the compared values: rounding error, not finite-difference error.
template <class T>
struct Tolerance;
template <>
struct Tolerance<double> {
    static constexpr double value = 1e-12;
};
template <>
struct Tolerance<float> {
    static constexpr double value = 1e-5;
};

// |actual - expected| <= tol * (scale + |expected|) elementwise, where scale = max(1, max |expected|):
// an absolute tolerance sized to the array (sums with cancellation) plus a relative one.
template <class A, class E>
::testing::AssertionResult all_close(const A* actual, const E* expected, std::size_t n, double tol) {
    double scale = 1.0;
    for (std::size_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(static_cast<double>(expected[i])));
    std::size_t bad = 0;
    std::ostringstream msg;
    msg.precision(17);
    for (std::size_t i = 0; i < n; ++i) {
        const double a = static_cast<double>(actual[i]), e = static_cast<double>(expected[i]);
        if (!(std::fabs(a - e) <= tol * (scale + std::fabs(e)))) {
            if (bad < 5) msg << "\n  [" << i << "] got " << a << ", expected " << e << " (diff " << a - e << ")";
            ++bad;
        }
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << bad << " of " << n << " values differ beyond tol " << tol
                                         << " (scale " << scale << "):" << msg.str();
}

template <class A, class E>
::testing::AssertionResult all_close(const std::vector<A>& actual, const std::vector<E>& expected, double tol) {
    if (actual.size() != expected.size())
        return ::testing::AssertionFailure() << "size " << actual.size() << " != " << expected.size();
    return all_close(actual.data(), expected.data(), actual.size(), tol);
}

template <class T>
std::vector<T> to_vector(mlpgrad::VectorView<T> v) {
    return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<T> to_vector(mlpgrad::MatrixView<T> m) {
    return std::vector<T>(m.data, m.data + m.size());
}

// Expects `f()` to throw exactly E (not a subclass: std::invalid_argument is a std::logic_error) with a
// message that starts with `argument` followed by a space, i.e. that names the offending argument first
// ("x has shape (3,) but expected (4,)"). An empty `argument` checks only the type.
template <class E, class F>
::testing::AssertionResult throws_exactly(F&& f, const std::string& argument = "") {
    try {
        f();
    } catch (const std::exception& e) {
        const std::string what = e.what();
        if (typeid(e) != typeid(E))
            return ::testing::AssertionFailure() << "threw " << typeid(e).name() << " instead of " << typeid(E).name()
                                                 << ": " << what;
        if (argument.empty() || what.rfind(argument + " ", 0) == 0) return ::testing::AssertionSuccess() << what;
        return ::testing::AssertionFailure() << "message does not start with '" << argument << " ': " << what;
    }
    return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace mlpgrad_test
