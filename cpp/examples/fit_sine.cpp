// Example: fit sin(x) on [-π, π] with mlpgrad, by plain stochastic gradient descent.
//
// The network is the notes' ŷ = αᵀ σ(W² σ(W¹ x)) with per-layer widths 1 → 16 → 16 (σ = tanh) and a
// linear read-out α. It has no biases, so it is an odd function of x, like sin. Training minimises
// ½(ŷ - y)² one example at a time: forward() records the pass on a Tape, backward() with the seed
// dy = ∂loss/∂ŷ = ŷ - y writes ∂loss/∂W and ∂loss/∂α into a Gradients object, and the program steps its
// own weight arrays, which the Network views (no copies).
//
// Exits with status 1 if the final loss is not clearly below the initial one, so CI can run it.
#include <mlpgrad/mlpgrad.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

namespace {

constexpr double pi = 3.14159265358979323846;

// Uniform in [-scale, scale). std::mt19937's output is fixed by the standard (its distributions are not),
// so the run is the same with any standard library.
double uniform(std::mt19937& rng, double scale) { return scale * (2.0 * (rng() / 4294967296.0) - 1.0); }

// Mean squared error over a fixed grid, forward passes only.
double loss(const mlpgrad::Network<double>& net, mlpgrad::Tape<double>& tape) {
    constexpr int n = 201;
    double sum = 0.0;
    for (int i = 0; i < n; ++i) {
        const double x = -pi + 2.0 * pi * i / (n - 1);
        const double err = mlpgrad::forward(net, {&x, 1}, tape) - std::sin(x);
        sum += err * err;
    }
    return sum / n;
}

}  // namespace

int main() {
    std::printf("mlpgrad %d.%d.%d: fitting sin(x) on [-pi, pi]\n", MLPGRAD_VERSION_MAJOR, MLPGRAD_VERSION_MINOR,
                MLPGRAD_VERSION_PATCH);

    // Widths K_0 = 1 (x), K_1 = 16, K_2 = 16; weights[t] is row-major K_{t+1} × K_t; α has K_2 entries.
    const std::vector<std::size_t> widths = {1, 16, 16};
    std::mt19937 rng(2024);
    std::vector<std::vector<double>> weights;
    for (std::size_t t = 0; t + 1 < widths.size(); ++t) {
        std::vector<double> w(widths[t + 1] * widths[t]);
        for (double& v : w) v = uniform(rng, std::sqrt(3.0 / widths[t]));  // variance 1/K_t
        weights.push_back(std::move(w));
    }
    std::vector<double> alpha(widths.back());
    for (double& v : alpha) v = uniform(rng, std::sqrt(3.0 / widths.back()));

    // The Network views the vectors above: updating them in place updates the network.
    std::vector<mlpgrad::MatrixView<const double>> views;
    for (std::size_t t = 0; t + 1 < widths.size(); ++t) views.push_back({weights[t].data(), widths[t + 1], widths[t]});
    const mlpgrad::Network<double> net(views, {alpha.data(), alpha.size()}, mlpgrad::Activation::tanh);
    std::printf("network: widths 1 -> 16 -> 16, tanh, %zu weights + %zu read-out\n", net.edge_count(), alpha.size());

    // Training set: 64 points of sin on [-π, π].
    std::vector<double> xs(64);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = -pi + 2.0 * pi * (i + 0.5) / xs.size();

    mlpgrad::Tape<double> tape;  // one per thread of computation; reused, so no allocation per step
    mlpgrad::Gradients<double> grads(net.widths(), /*keep_intermediates=*/false);
    const double learning_rate = 0.01;
    const int epochs = 300, report_every = 30;

    const double initial = loss(net, tape);
    std::printf("epoch %4d  loss %.6f\n", 0, initial);
    std::vector<std::size_t> order(xs.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (int epoch = 1; epoch <= epochs; ++epoch) {
        for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);  // shuffle
        for (std::size_t i : order) {
            const double x = xs[i];
            const double yhat = mlpgrad::forward(net, {&x, 1}, tape);
            const double dy = yhat - std::sin(x);  // ∂/∂ŷ of ½(ŷ - y)²
            mlpgrad::backward(net, tape, dy, grads.view());
            for (std::size_t t = 0; t < weights.size(); ++t) {
                const double* g = grads.weights(t).data;
                for (std::size_t k = 0; k < weights[t].size(); ++k) weights[t][k] -= learning_rate * g[k];
            }
            for (std::size_t k = 0; k < alpha.size(); ++k) alpha[k] -= learning_rate * grads.alpha()[k];
        }
        if (epoch % report_every == 0) std::printf("epoch %4d  loss %.6f\n", epoch, loss(net, tape));
    }

    const double final_loss = loss(net, tape);
    const bool learned = final_loss < 0.05 * initial;
    std::printf("loss %.6f -> %.6f (%.1fx lower): %s\n", initial, final_loss, initial / final_loss,
                learned ? "OK" : "FAILED, expected at least 20x lower");
    return learned ? 0 : 1;
}
