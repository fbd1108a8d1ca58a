// A minimal program embedding mlpgrad, built by the consumer projects next to this file (CI checks that
// add_subdirectory and FetchContent give a working mlpgrad::mlpgrad target).
#include <mlpgrad/mlpgrad.hpp>

#include <cstdio>
#include <vector>

int main() {
    // ŷ = α relu(W x) with W = [1 2], α = (2), x = (1, 1): u = 3, ŷ = 6, ∂ŷ/∂W = α x = (2, 2), ∂ŷ/∂x = α W = (2, 4).
    const std::vector<double> W = {1, 2}, alpha = {2}, x = {1, 1};
    const mlpgrad::Network<double> net({{W.data(), 1, 2}}, {alpha.data(), 1}, mlpgrad::Activation::relu);
    mlpgrad::Tape<double> tape;
    mlpgrad::Gradients<double> g(net.widths());
    const double yhat = mlpgrad::value_and_grad(net, {x.data(), 2}, tape, 1.0, g.view());
    const bool ok = yhat == 6 && g.weights(0).data[0] == 2 && g.weights(0).data[1] == 2 && g.alpha()[0] == 3 &&
                    g.x()[0] == 2 && g.x()[1] == 4;
    std::printf("mlpgrad consumer: yhat = %g, dW = (%g, %g), dx = (%g, %g): %s\n", yhat, g.weights(0).data[0],
                g.weights(0).data[1], g.x()[0], g.x()[1], ok ? "OK" : "WRONG");
    return ok ? 0 : 1;
}
