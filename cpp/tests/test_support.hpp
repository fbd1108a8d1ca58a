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

// Σ over single examples (accumulated in double) against the batch (on `pool`), full and parameter-only.
template <class T>
void check_general_batch(const OwnedNet<T>& onet, std::size_t B, std::uint64_t seed,
                         mlpgrad::parallel::ThreadPool* pool = nullptr) {
    using mlpgrad::MatrixView;
    const auto net = onet.network();
    const std::size_t K0 = net.width(0), m = net.outputs(), T_ = net.depth();
    Random rng(seed);
    const std::vector<T> X = random_vector<T>(rng, B * K0), dY = random_vector<T>(rng, B * m, 2.0);
    mlpgrad::BatchTape<T> batch_tape;
    std::vector<T> Yhat(B * m);
    mlpgrad::BatchGradients<T> gb(net, B), params(net);
    mlpgrad::forward_batch(net, MatrixView<const T>(X.data(), B, K0), batch_tape, MatrixView<T>(Yhat.data(), B, m),
                           pool);
    mlpgrad::backward_batch(net, batch_tape, MatrixView<const T>(dY.data(), B, m), gb.view(), pool);
    mlpgrad::backward_batch(net, batch_tape, MatrixView<const T>(dY.data(), B, m), params.view(), pool);

    std::vector<double> yhat, dalpha(net.alpha().size), dbeta(m), dX;
    std::vector<std::vector<double>> dW(T_), db(T_);
    for (std::size_t t = 0; t < T_; ++t) dW[t].assign(net.weight(t).size(), 0.0), db[t].assign(net.width(t + 1), 0.0);
    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> g(net, false);
    std::vector<T> y(m);
    for (std::size_t b = 0; b < B; ++b) {
        mlpgrad::value_and_grad(net, {X.data() + b * K0, K0}, tape, {dY.data() + b * m, m}, g.view(), mview(y));
        yhat.insert(yhat.end(), y.begin(), y.end());
        for (std::size_t t = 0; t < T_; ++t) {
            for (std::size_t i = 0; i < dW[t].size(); ++i) dW[t][i] += g.weights(t).data[i];
            if (net.has_biases())
                for (std::size_t i = 0; i < db[t].size(); ++i) db[t][i] += g.bias(t)[i];
        }
        for (std::size_t k = 0; k < dalpha.size(); ++k) dalpha[k] += g.alpha()[k];
        if (net.has_output_bias())
            for (std::size_t j = 0; j < m; ++j) dbeta[j] += g.output_bias()[j];
        dX.insert(dX.end(), g.x().begin(), g.x().end());
    }
    const double tol = 4 * Tolerance<T>::value;
    EXPECT_TRUE(all_close(Yhat, yhat, tol)) << "yhat";
    EXPECT_TRUE(all_close(to_vector(gb.x()), dX, tol)) << "dX";
    for (const auto* out : {&gb.view(), &params.view()}) {
        for (std::size_t t = 0; t < T_; ++t) {
            EXPECT_TRUE(all_close(to_vector(out->weights[t]), dW[t], tol)) << "dW" << t;
            if (net.has_biases()) {
                EXPECT_TRUE(all_close(to_vector(out->biases[t]), db[t], tol)) << "db" << t;
            }
        }
        EXPECT_TRUE(all_close(to_vector(out->alpha), dalpha, tol)) << "dalpha";
        if (net.has_output_bias()) {
            EXPECT_TRUE(all_close(to_vector(out->output_bias), dbeta, tol)) << "dbeta";
        }
    }
    EXPECT_FALSE(params.view().has_input_gradient());
}

}  // namespace mlpgrad_test
