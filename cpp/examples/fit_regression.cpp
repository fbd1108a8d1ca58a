// Example: a regression with two outputs, trained with mini-batches, biases and an output bias.
//
// Targets y(x) = (sin(πx₀)·cos(x₁) + 1, x₀x₁ − 0.5) on x ∈ [-1, 1]², uncentred on purpose: a network
// without biases maps x = 0 to ŷ = 0 and could not fit them. The network is 2 → 32 → 32 → 2 with tanh,
// u^{t+1} = W^{[t+1]} z^t + b^{t+1} and ŷ = αᵀ z^T + β (α is 32 × 2). Each step takes a mini-batch of 32
// examples: forward_batch() writes Ŷ (B × 2) and records the pass on a BatchTape, backward_batch() with the
// seed dY = ∂loss/∂Ŷ = (Ŷ − Y)/B (the mean of ½‖ŷ − y‖²) writes the parameter gradients, summed over the
// batch, into a parameter-only BatchGradients (no ∂/∂X is computed, and it fits the short last batch too),
// and the program steps its own parameter arrays, which the Network views.
//
// Exits with status 1 if the final loss is not at least 20× below the initial one, so CI can run it.
#include <mlpgrad/mlpgrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

constexpr double pi = 3.14159265358979323846;

// std::mt19937's output is fixed by the standard (its distributions are not): the same run everywhere.
double uniform(std::mt19937& rng, double scale) { return scale * (2.0 * (rng() / 4294967296.0) - 1.0); }

void target(const double* x, double* y) {
    y[0] = std::sin(pi * x[0]) * std::cos(x[1]) + 1.0;
    y[1] = x[0] * x[1] - 0.5;
}

// All of the network's parameters in one place, so that one loop steps them all.
struct Parameters {
    std::vector<std::vector<double>> weights, biases;
    std::vector<double> alpha, output_bias;
};

// Mean of ½‖ŷ − y‖² over a data set, by forward_batch.
double loss(const mlpgrad::Network<double>& net, const std::vector<double>& X, const std::vector<double>& Y,
            mlpgrad::BatchTape<double>& tape) {
    const std::size_t n = Y.size() / 2;
    std::vector<double> Yhat(Y.size());
    mlpgrad::forward_batch(net, mlpgrad::MatrixView<const double>(X.data(), n, 2), tape,
                           mlpgrad::MatrixView<double>(Yhat.data(), n, 2));
    double sum = 0.0;
    for (std::size_t i = 0; i < Y.size(); ++i) sum += 0.5 * (Yhat[i] - Y[i]) * (Yhat[i] - Y[i]);
    return sum / static_cast<double>(n);
}

}  // namespace

int main() {
    std::printf("mlpgrad %d.%d.%d: a 2-output regression with mini-batches and biases\n", MLPGRAD_VERSION_MAJOR,
                MLPGRAD_VERSION_MINOR, MLPGRAD_VERSION_PATCH);
    const std::vector<std::size_t> widths = {2, 32, 32};
    const std::size_t outputs = 2, batch = 32, n_train = 1000;
    std::mt19937 rng(7);

    Parameters p;
    for (std::size_t t = 0; t + 1 < widths.size(); ++t) {
        std::vector<double> w(widths[t + 1] * widths[t]);
        for (double& v : w) v = uniform(rng, std::sqrt(3.0 / widths[t]));  // variance 1/K_t
        p.weights.push_back(w);
        p.biases.emplace_back(widths[t + 1], 0.0);
    }
    p.alpha.resize(widths.back() * outputs);
    for (double& v : p.alpha) v = uniform(rng, std::sqrt(3.0 / widths.back()));
    p.output_bias.assign(outputs, 0.0);

    std::vector<mlpgrad::MatrixView<const double>> views;
    mlpgrad::NetworkOptions<double> options;
    for (std::size_t t = 0; t + 1 < widths.size(); ++t) {
        views.push_back({p.weights[t].data(), widths[t + 1], widths[t]});
        options.biases.push_back({p.biases[t].data(), p.biases[t].size()});
    }
    options.output_bias = {p.output_bias.data(), outputs};
    const mlpgrad::Network<double> net(views, {p.alpha.data(), widths.back(), outputs}, mlpgrad::Activation::tanh,
                                       options);
    std::printf("network: widths 2 -> 32 -> 32, tanh, biases, %zu outputs\n", net.outputs());

    std::vector<double> X(n_train * 2), Y(n_train * 2);
    for (double& v : X) v = uniform(rng, 1.0);
    for (std::size_t i = 0; i < n_train; ++i) target(&X[2 * i], &Y[2 * i]);

    mlpgrad::BatchTape<double> tape, eval_tape;  // reused: no allocation per step
    mlpgrad::BatchGradients<double> grads(net);  // parameter gradients only: any batch size
    std::vector<double> Xb(batch * 2), Yhat(batch * 2), dY(batch * 2);
    std::vector<std::size_t> order(n_train);
    for (std::size_t i = 0; i < n_train; ++i) order[i] = i;
    const double learning_rate = 0.1;
    const int epochs = 200, report_every = 25;

    const double initial = loss(net, X, Y, eval_tape);
    std::printf("epoch %4d  loss %.6f\n", 0, initial);
    for (int epoch = 1; epoch <= epochs; ++epoch) {
        for (std::size_t i = n_train; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);  // shuffle
        for (std::size_t start = 0; start < n_train; start += batch) {
            const std::size_t B = std::min(batch, n_train - start);  // the last batch is short
            for (std::size_t b = 0; b < B; ++b) std::copy_n(&X[2 * order[start + b]], 2, &Xb[2 * b]);
            mlpgrad::forward_batch(net, mlpgrad::MatrixView<const double>(Xb.data(), B, 2), tape,
                                   mlpgrad::MatrixView<double>(Yhat.data(), B, outputs));
            for (std::size_t b = 0; b < B; ++b)
                for (std::size_t j = 0; j < outputs; ++j)
                    dY[b * outputs + j] = (Yhat[b * outputs + j] - Y[2 * order[start + b] + j]) / static_cast<double>(B);
            mlpgrad::backward_batch(net, tape, mlpgrad::MatrixView<const double>(dY.data(), B, outputs), grads.view());
            auto step = [&](std::vector<double>& param, mlpgrad::VectorView<double> g) {
                for (std::size_t k = 0; k < param.size(); ++k) param[k] -= learning_rate * g[k];
            };
            for (std::size_t t = 0; t < p.weights.size(); ++t) {
                step(p.weights[t], {grads.weights(t).data, grads.weights(t).size()});
                step(p.biases[t], grads.bias(t));
            }
            step(p.alpha, grads.alpha());
            step(p.output_bias, grads.output_bias());
        }
        if (epoch % report_every == 0) std::printf("epoch %4d  loss %.6f\n", epoch, loss(net, X, Y, eval_tape));
    }

    const double final_loss = loss(net, X, Y, eval_tape);
    const bool learned = final_loss < 0.05 * initial;
    std::printf("loss %.6f -> %.6f (%.1fx lower): %s\n", initial, final_loss, initial / final_loss,
                learned ? "OK" : "FAILED, expected at least 20x lower");
    return learned ? 0 : 1;
}
