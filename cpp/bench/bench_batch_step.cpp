// The step of bench_batch_step.hpp on whichever mlpgrad headers this file is compiled against. For the
// baseline, CMake defines MLPGRAD_BENCH_BASELINE and mlpgrad=mlpgrad_baseline (so that the two builds'
// inline functions and templates cannot be merged by the linker).
#include <mlpgrad/mlpgrad.hpp>

#include "bench_batch_step.hpp"
#include "bench_timing.hpp"

#include <cmath>
#include <random>

namespace mlpgrad_bench {
namespace {

template <class T>
class TypedStep final : public Step {
  public:
    TypedStep(const BatchCase& c, std::size_t threads) {
        std::mt19937_64 rng(2024);
        std::normal_distribution<double> normal(0.0, 1.0);
        const auto fill = [&](std::vector<T>& v, std::size_t n, double scale) {
            v.resize(n);
            for (auto& x : v) x = static_cast<T>(scale * normal(rng));
        };
        const std::size_t depth = c.widths.size() - 1, B = c.batch, m = c.outputs;
        weights_.resize(depth);
        biases_.resize(depth);
        std::vector<mlpgrad::MatrixView<const T>> views;
        mlpgrad::NetworkOptions<T> options;
        for (std::size_t t = 0; t < depth; ++t) {
            fill(weights_[t], c.widths[t + 1] * c.widths[t], 1.0 / std::sqrt(double(c.widths[t])));
            views.push_back({weights_[t].data(), c.widths[t + 1], c.widths[t]});
            if (c.biases) {
                fill(biases_[t], c.widths[t + 1], 0.1);
                options.biases.push_back({biases_[t].data(), c.widths[t + 1]});
            }
        }
        if (c.biases) {
            fill(output_bias_, m, 0.1);
            options.output_bias = {output_bias_.data(), m};
        }
        fill(alpha_, c.widths[depth] * m, 1.0);
        fill(X_, B * c.widths[0], 1.0);
        fill(dY_, B * m, 1.0);
        Yhat_.resize(B * m);
        net_ = std::make_unique<mlpgrad::Network<T>>(
            views, mlpgrad::MatrixView<const T>(alpha_.data(), c.widths[depth], m), mlpgrad::Activation::relu,
            options);
        grads_ = c.input_gradient ? std::make_unique<mlpgrad::BatchGradients<T>>(*net_, B)
                                  : std::make_unique<mlpgrad::BatchGradients<T>>(*net_);
#ifndef MLPGRAD_BENCH_BASELINE
        if (threads > 1) pool_ = std::make_unique<mlpgrad::parallel::ThreadPool>(threads);
#else
        (void)threads;
#endif
    }

    void run() override {
        const mlpgrad::MatrixView<const T> X(X_.data(), Yhat_.size() / net_->outputs(), net_->width(0));
        const mlpgrad::MatrixView<T> Yhat(Yhat_.data(), X.rows, net_->outputs());
        const mlpgrad::MatrixView<const T> dY(dY_.data(), X.rows, net_->outputs());
#ifndef MLPGRAD_BENCH_BASELINE
        mlpgrad::forward_batch(*net_, X, tape_, Yhat, pool_.get());
        mlpgrad::backward_batch(*net_, tape_, dY, grads_->view(), pool_.get());
#else
        mlpgrad::forward_batch(*net_, X, tape_, Yhat);
        mlpgrad::backward_batch(*net_, tape_, dY, grads_->view());
#endif
        sink = static_cast<double>(Yhat_[0]) + static_cast<double>(grads_->view().weights[0].data[0]);
    }

  private:
    std::vector<std::vector<T>> weights_, biases_;
    std::vector<T> alpha_, output_bias_, X_, dY_, Yhat_;
    std::unique_ptr<mlpgrad::Network<T>> net_;
    std::unique_ptr<mlpgrad::BatchGradients<T>> grads_;
    mlpgrad::BatchTape<T> tape_;
#ifndef MLPGRAD_BENCH_BASELINE
    std::unique_ptr<mlpgrad::parallel::ThreadPool> pool_;
#endif
};

std::unique_ptr<Step> make(const BatchCase& c, std::size_t threads) {
    if (c.is_double) return std::make_unique<TypedStep<double>>(c, threads);
    return std::make_unique<TypedStep<float>>(c, threads);
}

}  // namespace

#ifdef MLPGRAD_BENCH_BASELINE
std::unique_ptr<Step> make_baseline_step(const BatchCase& c) { return make(c, 1); }
#else
std::unique_ptr<Step> make_current_step(const BatchCase& c, std::size_t threads) { return make(c, threads); }
#ifndef MLPGRAD_BENCH_HAS_BASELINE
std::unique_ptr<Step> make_baseline_step(const BatchCase&) { return nullptr; }
#endif
#endif

}  // namespace mlpgrad_bench
