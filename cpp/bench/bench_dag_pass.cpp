// The passes of bench_dag_pass.hpp on whichever mlpgrad headers this file is compiled against. For the
// baseline, CMake defines MLPGRAD_BENCH_BASELINE and mlpgrad=mlpgrad_baseline (so that the two builds'
// inline functions and templates cannot be merged by the linker).
#include <mlpgrad/dag.hpp>

#include "bench_dag_pass.hpp"
#include "bench_timing.hpp"

namespace mlpgrad_bench {
namespace {

template <class T>
std::uint64_t fnv1a(const std::vector<T>& v, std::uint64_t h = 1469598103934665603ull) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    return h;
}

template <class T>
class TypedDagPass final : public DagPass {
  public:
    explicit TypedDagPass(const DagCase& c)
        : src_(c.src), dst_(c.dst), outputs_(c.outputs), weights_(c.weights.begin(), c.weights.end()),
          alpha_(c.alpha.begin(), c.alpha.end()), B_(c.batch),
          graph_(c.n_nodes, c.n_inputs, view(src_), view(dst_), view(weights_), view(outputs_),
                 mlpgrad::MatrixView<const T>(alpha_.data(), alpha_.size(), 1), mlpgrad::Activation::relu),
          x_(c.n_inputs, T(0.5)), gw_(weights_.size()), ga_(alpha_.size()), gx_(c.n_inputs),
          X_(B_ * c.n_inputs, T(0.5)), Y_(B_), dY_(B_, T(1)), dX_(B_ * c.n_inputs) {}

    void single() override {
        sink = mlpgrad::dag::value_and_grad(graph_, view(x_), tape_, T(1), gradients());
    }
    void batch() override {
        mlpgrad::dag::value_and_grad_batch(graph_, mlpgrad::MatrixView<const T>(X_.data(), B_, graph_.n_inputs()),
                                           btape_, mlpgrad::MatrixView<T>(Y_.data(), B_, 1),
                                           mlpgrad::MatrixView<const T>(dY_.data(), B_, 1), batch_gradients());
        sink = Y_[0];
    }
    std::uint64_t single_checksum() override {
        std::vector<T> x(graph_.n_inputs());
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = T(0.25) + T(i % 7) / T(8);
        mlpgrad::dag::value_and_grad(graph_, view(x), tape_, T(1), gradients());
        return fnv1a(gx_, fnv1a(gw_));
    }
    std::uint64_t batch_checksum() override {
        std::vector<T> X(X_.size()), dY(B_);
        for (std::size_t i = 0; i < X.size(); ++i) X[i] = T(0.5) - T(i % 11) / T(16);
        for (std::size_t b = 0; b < B_; ++b) dY[b] = T(1) + T(b % 3);
        mlpgrad::dag::value_and_grad_batch(graph_, mlpgrad::MatrixView<const T>(X.data(), B_, graph_.n_inputs()),
                                           btape_, mlpgrad::MatrixView<T>(Y_.data(), B_, 1),
                                           mlpgrad::MatrixView<const T>(dY.data(), B_, 1), batch_gradients());
        return fnv1a(dX_, fnv1a(gw_, fnv1a(Y_)));
    }
    std::size_t n_levels() const override { return graph_.n_levels(); }
    std::size_t n_edges() const override { return graph_.n_edges(); }

  private:
    template <class U>
    static mlpgrad::VectorView<const U> view(const std::vector<U>& v) {
        return {v.data(), v.size()};
    }
    mlpgrad::dag::GradientsView<T> gradients() {
        return {{gw_.data(), gw_.size()}, {ga_.data(), ga_.size(), 1}, {gx_.data(), gx_.size()}, {}, {}, {}};
    }
    mlpgrad::dag::BatchGradientsView<T> batch_gradients() {
        return {{gw_.data(), gw_.size()}, {ga_.data(), ga_.size(), 1}, {dX_.data(), B_, graph_.n_inputs()}, {}};
    }

    std::vector<std::int64_t> src_, dst_, outputs_;
    std::vector<T> weights_, alpha_;
    std::size_t B_;
    mlpgrad::dag::Graph<T> graph_;
    std::vector<T> x_, gw_, ga_, gx_, X_, Y_, dY_, dX_;
    mlpgrad::dag::Tape<T> tape_;
    mlpgrad::dag::BatchTape<T> btape_;
};

std::unique_ptr<DagPass> make(const DagCase& c) {
    if (c.is_double) return std::make_unique<TypedDagPass<double>>(c);
    return std::make_unique<TypedDagPass<float>>(c);
}

}  // namespace

#ifdef MLPGRAD_BENCH_BASELINE
std::unique_ptr<DagPass> make_baseline_dag_pass(const DagCase& c) { return make(c); }
#else
std::unique_ptr<DagPass> make_current_dag_pass(const DagCase& c) { return make(c); }
#ifndef MLPGRAD_BENCH_HAS_BASELINE
std::unique_ptr<DagPass> make_baseline_dag_pass(const DagCase&) { return nullptr; }
#endif
#endif

}  // namespace mlpgrad_bench
