// mlpgrad::dag: a DAG built from an MLP against the dense Network, random DAGs against central finite
// differences, batches against single examples, every promised construction error, threads sharing a Graph.
#include "test_support.hpp"

#include <mlpgrad/dag.hpp>

#include <cstring>
#include <numeric>
#include <thread>

namespace mlpgrad_test {
namespace {

using mlpgrad::MatrixView;
using mlpgrad::VectorView;
namespace dag = mlpgrad::dag;

template <class I>
VectorView<const I> index_view(const std::vector<I>& v) {
    return {v.data(), v.size()};
}

// A DAG that owns its arrays; graph() views them. `order` lists the non-input nodes topologically.
template <class T, class I = std::int64_t>
struct OwnedDag {
    std::size_t n_nodes = 0, n_inputs = 0, m = 1;
    std::vector<I> src, dst, outputs;
    std::vector<T> weights, alpha, biases;
    std::vector<Activation> activations;
    std::vector<std::size_t> order;

    dag::Graph<T> graph() const {
        return dag::Graph<T>(n_nodes, n_inputs, index_view(src), index_view(dst), cview(weights), index_view(outputs),
                             MatrixView<const T>(alpha.data(), outputs.size(), m), activations,
                             biases.empty() ? VectorView<const T>{} : cview(biases));
    }
};

struct DagShape {
    std::size_t n_inputs, n_hidden, max_indegree, n_outputs, m;
    bool biases, per_node_activation;
    Activation activation;
};

// Uniform in 0..n-1.
inline std::size_t pick(Random& rng, std::size_t n) {
    return std::min(n - 1, static_cast<std::size_t>((rng.uniform() + 1.0) / 2.0 * static_cast<double>(n)));
}
template <class V>
void shuffle(Random& rng, V& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[pick(rng, i)]);
}

// Hidden node ids are shuffled (ids need not be topological), every 7th hidden node has no in-edges
// (unreachable from the inputs, like what only it feeds), sources are any earlier node (skip connections
// of any length), one edge in five is doubled (parallel edges), and the edge list is shuffled.
template <class T, class I = std::int64_t>
OwnedDag<T, I> random_dag(const DagShape& s, std::uint64_t seed) {
    Random rng(seed);
    OwnedDag<T, I> d;
    d.n_inputs = s.n_inputs;
    d.n_nodes = s.n_inputs + s.n_hidden;
    d.m = s.m;
    d.order.resize(s.n_hidden);
    std::iota(d.order.begin(), d.order.end(), s.n_inputs);
    shuffle(rng, d.order);
    struct E {
        std::size_t s, t;
        T w;
    };
    std::vector<E> edges;
    for (std::size_t r = 0; r < s.n_hidden; ++r) {
        const std::size_t degree = r % 7 == 6 ? 0 : pick(rng, s.max_indegree + 1);
        const std::size_t earlier = s.n_inputs + r;
        if (earlier == 0) continue;
        const double scale = std::sqrt(3.0 / static_cast<double>(std::max<std::size_t>(degree, 1)));
        for (std::size_t k = 0; k < degree; ++k) {
            const std::size_t j = pick(rng, earlier);
            const std::size_t source = j < s.n_inputs ? j : d.order[j - s.n_inputs];
            edges.push_back({source, d.order[r], static_cast<T>(scale * rng.uniform())});
            if (pick(rng, 5) == 0) edges.push_back({source, d.order[r], static_cast<T>(scale * rng.uniform())});
        }
    }
    shuffle(rng, edges);
    for (const E& e : edges) {
        d.src.push_back(static_cast<I>(e.s));
        d.dst.push_back(static_cast<I>(e.t));
        d.weights.push_back(e.w);
    }
    std::vector<std::size_t> candidates(d.n_nodes);
    std::iota(candidates.begin(), candidates.end(), std::size_t(0));
    shuffle(rng, candidates);
    for (std::size_t k = 0; k < std::min(s.n_outputs, d.n_nodes); ++k) d.outputs.push_back(static_cast<I>(candidates[k]));
    d.alpha = random_vector<T>(rng, d.outputs.size() * s.m);
    if (s.per_node_activation) {
        const auto all = all_activations();
        for (std::size_t v = 0; v < d.n_nodes; ++v) d.activations.push_back(all[pick(rng, all.size())]);
    } else {
        d.activations = {s.activation};
    }
    if (s.biases) d.biases = random_vector<T>(rng, d.n_nodes, 0.5);
    return d;
}

// Owning buffers for dag::GradientsView, prefilled with garbage that the backward pass must overwrite.
template <class T>
struct DagGrads {
    std::vector<T> weights, alpha, x, biases, z, u;
    DagGrads(const dag::Graph<T>& g, bool with_biases)
        : weights(g.n_edges(), T(1e30)), alpha(g.n_outputs() * g.output_dim(), T(1e30)), x(g.n_inputs(), T(1e30)),
          biases(with_biases ? g.n_nodes() : 0, T(1e30)), z(g.n_nodes(), T(1e30)), u(g.n_nodes(), T(1e30)) {}
    dag::GradientsView<T> view(const dag::Graph<T>& g) {
        return {mview(weights), MatrixView<T>(alpha.data(), g.n_outputs(), g.output_dim()), mview(x),
                biases.empty() ? VectorView<T>{} : mview(biases), mview(z), mview(u)};
    }
};

// ---- A DAG built from an MLP is the MLP -------------------------------------------------------------------

class DagFromMlp : public ::testing::TestWithParam<DtypeActivation> {};

template <class T>
void check_from_mlp(const std::vector<std::size_t>& widths, Activation a, std::uint64_t seed) {
    const OwnedNet<T> onet = random_net<T>(widths, a, seed);
    const mlpgrad::Network<T> net = onet.network();
    const dag::MlpGraphArrays<T> arrays(net);
    const dag::Graph<T> g = arrays.graph();
    const double tol = 4 * Tolerance<T>::value;
    Random rng(seed + 1);
    const std::vector<T> x = random_vector<T>(rng, widths[0]);
    const T dy = T(0.625);

    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> expected(net.widths());
    const T yhat = mlpgrad::value_and_grad(net, cview(x), tape, dy, expected.view());
    dag::Tape<T> dtape;
    DagGrads<T> got(g, false);
    const T dag_yhat = dag::value_and_grad(g, cview(x), dtape, dy, got.view(g));
    EXPECT_TRUE(all_close(&dag_yhat, &yhat, 1, tol));

    std::vector<T> dW, dz, du;
    for (std::size_t t = 0; t < net.depth(); ++t) {
        const auto w = expected.weights(t);
        dW.insert(dW.end(), w.data, w.data + w.size());
    }
    for (std::size_t t = 0; t <= net.depth(); ++t) {
        const auto z = expected.view().z[t];
        dz.insert(dz.end(), z.begin(), z.end());
        if (t == 0)
            du.insert(du.end(), widths[0], T(0));  // inputs carry no u
        else
            du.insert(du.end(), expected.view().u[t - 1].begin(), expected.view().u[t - 1].end());
    }
    EXPECT_TRUE(all_close(got.weights, dW, tol));
    EXPECT_TRUE(all_close(got.alpha, to_vector(expected.alpha()), tol));
    EXPECT_TRUE(all_close(got.x, to_vector(expected.x()), tol));
    EXPECT_TRUE(all_close(got.z, dz, tol));
    EXPECT_TRUE(all_close(got.u, du, tol));

    // Batch: the dense Network's batch kernels against the DAG's, B across the vector tiles.
    const std::size_t B = 37, K0 = widths[0];
    const std::vector<T> X = random_vector<T>(rng, B * K0), dY = random_vector<T>(rng, B);
    mlpgrad::BatchTape<T> btape;
    std::vector<T> y_net(B), dx_net(B * K0), dalpha_net(widths.back());
    std::vector<std::vector<T>> dW_net;
    mlpgrad::BatchGradientsView<T> nout;
    for (std::size_t t = 0; t < net.depth(); ++t) dW_net.emplace_back(net.weight(t).size());
    for (std::size_t t = 0; t < net.depth(); ++t) nout.weights.push_back({dW_net[t].data(), widths[t + 1], widths[t]});
    nout.alpha = mview(dalpha_net);
    nout.x = {dx_net.data(), B, K0};
    mlpgrad::forward_batch(net, MatrixView<const T>(X.data(), B, K0), btape, mview(y_net));
    mlpgrad::backward_batch(net, btape, cview(dY), nout);

    dag::BatchTape<T> dbtape;
    std::vector<T> y_dag(B), dx_dag(B * K0, T(1e30)), dalpha_dag(widths.back(), T(1e30)), dw_dag(g.n_edges(), T(1e30));
    dag::value_and_grad_batch(g, MatrixView<const T>(X.data(), B, K0), dbtape, MatrixView<T>(y_dag.data(), B, 1),
                              MatrixView<const T>(dY.data(), B, 1),
                              {mview(dw_dag), MatrixView<T>(dalpha_dag.data(), widths.back(), 1),
                               MatrixView<T>(dx_dag.data(), B, K0), {}});
    std::vector<T> dW_net_flat;
    for (const auto& w : dW_net) dW_net_flat.insert(dW_net_flat.end(), w.begin(), w.end());
    const double batch_tol = 16 * Tolerance<T>::value;
    EXPECT_TRUE(all_close(y_dag, y_net, batch_tol));
    EXPECT_TRUE(all_close(dw_dag, dW_net_flat, batch_tol));
    EXPECT_TRUE(all_close(dalpha_dag, dalpha_net, batch_tol));
    EXPECT_TRUE(all_close(dx_dag, dx_net, batch_tol));
}

TEST_P(DagFromMlp, EqualsTheDenseNetwork) {
    const auto [dtype, activation] = GetParam();
    with_dtype(dtype, [&, activation = activation](auto t) {
        using T = decltype(t);
        check_from_mlp<T>({5, 7, 6, 3}, activation, 11);
        check_from_mlp<T>({33, 40, 1}, activation, 12);
        check_from_mlp<T>({4}, activation, 13);  // T = 0: ŷ = αᵀx
    });
}

INSTANTIATE_TEST_SUITE_P(AllActivations, DagFromMlp, all_dtype_activations(), param_name);

// ---- Random DAGs against central finite differences -------------------------------------------------------

template <class T>
struct FiniteDifference;
template <>
struct FiniteDifference<double> {
    static constexpr double step = 1e-5, tol = 1e-7;
};
template <>
struct FiniteDifference<float> {
    static constexpr double step = 1e-2, tol = 3e-3;
};

// The sign of every u, which decides which linear piece of a ReLU graph a point is on.
template <class T>
std::vector<bool> kink_pattern(const dag::Tape<T>& tape) {
    std::vector<bool> p;
    for (std::size_t i = 0; i < tape.n_nodes(); ++i) p.push_back(tape.u()[i] >= T(0));
    return p;
}

// Σ_j dy_j ŷ_j in long double, straight from the definition, in the generator's topological order.
template <class T, class I>
long double definition_value(const OwnedDag<T, I>& d, const std::vector<T>& x, const std::vector<T>& dy) {
    std::vector<long double> z(d.n_nodes, 0);
    for (std::size_t i = 0; i < d.n_inputs; ++i) z[i] = x[i];
    for (std::size_t v : d.order) {
        long double u = d.biases.empty() ? 0 : d.biases[v];
        for (std::size_t e = 0; e < d.src.size(); ++e)
            if (static_cast<std::size_t>(d.dst[e]) == v) u += static_cast<long double>(d.weights[e]) * z[d.src[e]];
        const Activation a = d.activations[d.activations.size() == 1 ? 0 : v];
        z[v] = mlpgrad::activate(a, u);
    }
    long double f = 0;
    for (std::size_t k = 0; k < d.outputs.size(); ++k)
        for (std::size_t j = 0; j < d.m; ++j) f += static_cast<long double>(dy[j]) * d.alpha[k * d.m + j] * z[d.outputs[k]];
    return f;
}

template <class T, class I = std::int64_t>
void check_random_dag(const DagShape& shape, std::uint64_t seed) {
    using FD = FiniteDifference<T>;
    OwnedDag<T, I> d = random_dag<T, I>(shape, seed);
    const dag::Graph<T> g = d.graph();  // views d's arrays: perturbing d perturbs g
    Random rng(seed + 7);
    std::vector<T> x = random_vector<T>(rng, d.n_inputs);
    const std::vector<T> dy = random_vector<T>(rng, d.m);
    const VectorView<const T> dy_view = cview(dy);

    dag::Tape<T> tape;
    DagGrads<T> got(g, shape.biases);
    dag::value_and_grad(g, cview(x), tape, dy_view, got.view(g));
    const auto value = [&](const dag::Tape<T>& t) {
        double f = 0;
        for (std::size_t j = 0; j < d.m; ++j) f += static_cast<double>(dy[j]) * static_cast<double>(t.yhat()[j]);
        return f;
    };
    EXPECT_NEAR(value(tape), static_cast<double>(definition_value(d, x, dy)),
                100 * Tolerance<T>::value * (1 + std::fabs(static_cast<double>(definition_value(d, x, dy)))));
    const std::vector<bool> pattern = kink_pattern(tape);

    dag::Tape<T> fd_tape;
    std::size_t parameters = 0, skipped = 0;
    auto central = [&](T& p, T analytic) -> double {
        ++parameters;
        const T original = p, plus = original + T(FD::step), minus = original - T(FD::step);
        p = plus;
        dag::forward(g, cview(x), fd_tape);
        const double f_plus = value(fd_tape);
        const bool same = kink_pattern(fd_tape) == pattern;
        p = minus;
        dag::forward(g, cview(x), fd_tape);
        const double f_minus = value(fd_tape);
        p = original;
        if (!same || kink_pattern(fd_tape) != pattern) {
            ++skipped;
            return static_cast<double>(analytic);
        }
        return (f_plus - f_minus) / (static_cast<double>(plus) - static_cast<double>(minus));
    };
    auto numeric = [&](std::vector<T>& params, const std::vector<T>& analytic) {
        std::vector<double> out;
        for (std::size_t i = 0; i < params.size(); ++i) out.push_back(central(params[i], analytic[i]));
        return out;
    };
    const auto fd_w = numeric(d.weights, got.weights);
    const auto fd_alpha = numeric(d.alpha, got.alpha);
    const auto fd_x = numeric(x, got.x);
    EXPECT_TRUE(all_close(got.weights, fd_w, FD::tol)) << "weights";
    EXPECT_TRUE(all_close(got.alpha, fd_alpha, FD::tol)) << "alpha";
    EXPECT_TRUE(all_close(got.x, fd_x, FD::tol)) << "x";
    if (shape.biases) {
        const auto fd_b = numeric(d.biases, got.biases);
        EXPECT_TRUE(all_close(got.biases, fd_b, FD::tol)) << "biases";
        for (std::size_t v = d.n_inputs; v < d.n_nodes; ++v) EXPECT_EQ(got.u[v], got.biases[v]);  // ∂/∂b = ∂/∂u
        for (std::size_t v = 0; v < d.n_inputs; ++v) EXPECT_EQ(got.biases[v], T(0));
    }
    for (std::size_t i = 0; i < d.n_inputs; ++i) {
        EXPECT_EQ(got.z[i], got.x[i]);  // ∂/∂x = ∂/∂z at the inputs
        EXPECT_EQ(got.u[i], T(0));
    }
    EXPECT_LE(2 * skipped, parameters) << "most parameters must be checked";
}

class DagFiniteDifferences : public ::testing::TestWithParam<Dtype> {};

TEST_P(DagFiniteDifferences, RandomGraphs) {
    with_dtype(GetParam(), [](auto t) {
        using T = decltype(t);
        const std::vector<DagShape> shapes = {
            {3, 20, 4, 3, 1, true, true, Activation::relu},
            {5, 60, 8, 4, 2, false, true, Activation::relu},
            {4, 40, 6, 5, 3, true, false, Activation::tanh},
            {2, 30, 3, 2, 1, true, false, Activation::relu},
            {6, 25, 8, 6, 1, false, false, Activation::softplus},
            {1, 1, 1, 1, 1, true, false, Activation::sigmoid},
            {3, 0, 0, 2, 2, false, false, Activation::identity},  // no hidden nodes: ŷ reads inputs
        };
        for (std::size_t i = 0; i < shapes.size(); ++i)
            for (std::uint64_t seed = 0; seed < 4; ++seed) {
                SCOPED_TRACE("shape " + std::to_string(i) + " seed " + std::to_string(seed));
                check_random_dag<T>(shapes[i], 100 * i + seed);
            }
        check_random_dag<T, std::int32_t>(shapes[0], 999);   // 32-bit node ids
        check_random_dag<T, std::uint32_t>(shapes[1], 998);  // unsigned ones
    });
}

INSTANTIATE_TEST_SUITE_P(BothDtypes, DagFiniteDifferences, ::testing::Values(Dtype::float32, Dtype::float64),
                         [](const auto& info) { return dtype_name(info.param); });

template <class T>
OwnedDag<T> renumbered_topologically(const OwnedDag<T>& d);

// ---- Batches are sums of single examples ------------------------------------------------------------------

template <class T>
void check_batch_is_sum_of_singles(const DagShape& shape, std::size_t B, std::uint64_t seed) {
    const OwnedDag<T> d = random_dag<T>(shape, seed);
    const dag::Graph<T> g = d.graph();
    Random rng(seed + 3);
    const std::size_t n = d.n_inputs, m = d.m, E = g.n_edges();
    const std::vector<T> X = random_vector<T>(rng, B * n), dY = random_vector<T>(rng, B * m);
    std::vector<T> yhat(B * m, T(1e30)), dX(B * n, T(1e30)), dalpha(d.alpha.size(), T(1e30)), dw(E, T(1e30)),
        db(d.n_nodes, T(1e30));
    dag::BatchTape<T> btape;
    dag::value_and_grad_batch(g, MatrixView<const T>(X.data(), B, n), btape, MatrixView<T>(yhat.data(), B, m),
                              MatrixView<const T>(dY.data(), B, m),
                              {mview(dw), MatrixView<T>(dalpha.data(), g.n_outputs(), m),
                               MatrixView<T>(dX.data(), B, n), mview(db)});

    std::vector<T> y1, dX1, dalpha1(dalpha.size(), T(0)), dw1(E, T(0)), db1(d.n_nodes, T(0));
    dag::Tape<T> tape;
    for (std::size_t b = 0; b < B; ++b) {
        DagGrads<T> one(g, true);
        dag::value_and_grad(g, VectorView<const T>(X.data() + b * n, n), tape, VectorView<const T>(dY.data() + b * m, m),
                            one.view(g));
        y1.insert(y1.end(), tape.yhat().begin(), tape.yhat().end());
        dX1.insert(dX1.end(), one.x.begin(), one.x.end());
        for (std::size_t i = 0; i < E; ++i) dw1[i] += one.weights[i];
        for (std::size_t i = 0; i < dalpha1.size(); ++i) dalpha1[i] += one.alpha[i];
        for (std::size_t i = 0; i < d.n_nodes; ++i) db1[i] += one.biases[i];
    }
    const double tol = 16 * Tolerance<T>::value;
    EXPECT_TRUE(all_close(yhat, y1, tol)) << "yhat";
    EXPECT_TRUE(all_close(dX, dX1, tol)) << "x";
    EXPECT_TRUE(all_close(dw, dw1, tol)) << "weights";
    EXPECT_TRUE(all_close(dalpha, dalpha1, tol)) << "alpha";
    EXPECT_TRUE(all_close(db, db1, tol)) << "biases";
}

TEST(DagBatch, IsTheSumOfSingleExamples) {
    const DagShape shape{4, 50, 8, 3, 2, true, true, Activation::relu};
    for (std::size_t B : {0, 1, 5, 13, 37, 70}) {
        SCOPED_TRACE("B = " + std::to_string(B));
        check_batch_is_sum_of_singles<float>(shape, B, B);
        check_batch_is_sum_of_singles<double>(shape, B, B);
    }
}

// Examples in one register tile of the batch kernels: the longest rows the batch passes prefetch.
template <class T>
constexpr std::size_t tile_examples = dag::detail::tile_vectors * mlpgrad::simd::Vec<T>::size;

// Graphs whose Z rows outgrow L2, so that the batch passes prefetch their gathers (dag/prefetch.hpp): the
// prefetching path must be as right as the plain one (prefetch changes no value, but it runs other code).
TEST(DagBatch, PrefetchingPassesAreTheSumOfSingleExamples) {
    const DagShape shape{16, 40000, 8, 3, 1, true, false, Activation::relu};
    ASSERT_TRUE(dag::detail::batch_prefetch_pays(random_dag<double>(shape, 1).graph(), tile_examples<double>));
    ASSERT_TRUE(dag::detail::batch_prefetch_pays(random_dag<float>(shape, 1).graph(), tile_examples<float>));
    for (std::size_t B : {9, 16}) {  // B = 16 is the register tile of double with AVX, 9 a partial one
        SCOPED_TRACE("B = " + std::to_string(B));
        check_batch_is_sum_of_singles<float>(shape, B, B);
        check_batch_is_sum_of_singles<double>(shape, B, B);
    }
    check_batch_is_sum_of_singles<float>(shape, tile_examples<float>, 3);
    check_batch_is_sum_of_singles<double>(shape, tile_examples<double>, 3);
}

// The prefetches pay only where the gathers miss L2 and each edge's work is short (batch_prefetch_pays):
// never for a graph in cache, nor for rows longer than a register tile.
TEST(DagBatch, PrefetchOnlyWhereItPays) {
    const DagShape small{16, 1000, 8, 3, 1, false, false, Activation::relu};
    const DagShape big{16, 40000, 8, 3, 1, false, false, Activation::relu};
    const std::size_t B = tile_examples<double>;
    EXPECT_FALSE(dag::detail::batch_prefetch_pays(random_dag<double>(small, 1).graph(), B));
    EXPECT_TRUE(dag::detail::batch_prefetch_pays(random_dag<double>(big, 1).graph(), B));
    EXPECT_FALSE(dag::detail::batch_prefetch_pays(random_dag<double>(big, 1).graph(), 4 * B));
}

// BackwardLookahead yields the sources of the slots prefetch_distance ahead of the backward pass, in its
// order (levels from the last, slots in order within each), then `none`; restart(l) puts it ahead of level l.
template <class T>
void check_backward_lookahead(const dag::Graph<T>& g) {
    std::vector<std::size_t> order;  // source positions, in the order the backward passes visit the slots
    std::vector<std::size_t> level_start;
    for (std::size_t l = g.n_levels(); l-- > 1;) {
        level_start.push_back(order.size());
        for (std::size_t i = g.in_begin(g.level_begin(l)); i < g.in_begin(g.level_begin(l + 1)); ++i)
            order.push_back(g.slot_source(i));
    }
    const std::size_t d = dag::detail::prefetch_distance;
    dag::detail::BackwardLookahead<T> ahead(g);
    for (std::size_t k = d; k < order.size(); ++k) ASSERT_EQ(ahead.next(), order[k]) << "slot " << k;
    EXPECT_EQ(ahead.next(), ahead.none);
    EXPECT_EQ(ahead.next(), ahead.none);
    for (std::size_t l : {g.n_levels() / 2, std::size_t(1)}) {
        ahead.restart(l);
        const std::size_t k0 = level_start[g.n_levels() - 1 - l] + d;
        for (std::size_t k = k0; k < std::min(order.size(), k0 + 3 * d); ++k)
            ASSERT_EQ(ahead.next(), order[k]) << "after restart(" << l << "), slot " << k;
    }
}

TEST(DagBatch, BackwardLookaheadRunsAheadOfTheBackwardPass) {
    const OwnedDag<double> d = random_dag<double>({4, 300, 8, 3, 1, false, false, Activation::relu}, 5);
    SCOPED_TRACE("levels by longest path");
    check_backward_lookahead(d.graph());
    SCOPED_TRACE("ids in topological order");
    check_backward_lookahead(renumbered_topologically(d).graph());
}

// ---- Malformed graphs and arguments -----------------------------------------------------------------------

// 0, 1 inputs; 0,1 -> 2 -> 3 -> 4, 0 -> 4; outputs 4 and 3.
struct SmallDag {
    std::size_t n_nodes = 5, n_inputs = 2;
    std::vector<std::int64_t> src{0, 1, 2, 0, 3}, dst{2, 2, 3, 4, 4}, outputs{4, 3};
    std::vector<double> weights{0.5, -1, 2, 0.25, 1}, alpha{1, -2}, biases;
    std::size_t alpha_rows = 2, alpha_cols = 1;
    std::vector<Activation> activations{Activation::tanh};

    dag::Graph<double> graph() const {
        return dag::Graph<double>(n_nodes, n_inputs, index_view(src), index_view(dst), cview(weights),
                                  index_view(outputs), MatrixView<const double>(alpha.data(), alpha_rows, alpha_cols),
                                  activations, biases.empty() ? VectorView<const double>{} : cview(biases));
    }
};

// ---- value_and_grad is forward() then backward(), bit for bit ----------------------------------------------

// d with `extra` more output nodes at the end, node k reading the 4 consecutive nodes from 5k through 4
// consecutive weights: dense nodes (Graph::is_dense) when d's ids are topological and its edges in slot order.
template <class T>
OwnedDag<T> with_dense_outputs(OwnedDag<T> d, std::size_t extra) {
    Random rng(11);
    for (std::size_t k = 0; k < extra; ++k) {
        const std::size_t v = d.n_nodes + k;
        for (std::size_t j = 0; j < 4; ++j) {
            d.src.push_back(static_cast<std::int64_t>(5 * k + j));
            d.dst.push_back(static_cast<std::int64_t>(v));
            d.weights.push_back(static_cast<T>(rng.uniform()));
        }
        d.outputs.push_back(static_cast<std::int64_t>(v));
        for (std::size_t j = 0; j < d.m; ++j) d.alpha.push_back(static_cast<T>(rng.uniform()));
    }
    if (d.activations.size() > 1) d.activations.resize(d.n_nodes + extra, Activation::tanh);
    if (!d.biases.empty()) d.biases.resize(d.n_nodes + extra, T(0.25));
    d.n_nodes += extra;
    return d;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Where keep_gathered_pays, value_and_grad's forward pass leaves each gathered z_s in ∂w_e's place and its
// backward pass scales that by ∂ŷ/∂u_v: the same products as backward() after forward(), which gathers z_s
// again, so every gradient must have the same bits.
template <class T>
void check_value_and_grad_is_forward_then_backward(const OwnedDag<T>& d, bool keeps_gathered) {
    const dag::Graph<T> g = d.graph();
    ASSERT_EQ(dag::detail::keep_gathered_pays(g), keeps_gathered);
    Random rng(5);
    const std::vector<T> x = random_vector<T>(rng, d.n_inputs), dy = random_vector<T>(rng, d.m);
    dag::Tape<T> tape;
    DagGrads<T> fused(g, !d.biases.empty()), separate(g, !d.biases.empty());
    const T y_fused = dag::value_and_grad(g, cview(x), tape, cview(dy), fused.view(g));
    const T y_separate = dag::forward(g, cview(x), tape);
    dag::backward(g, tape, cview(dy), separate.view(g));
    EXPECT_EQ(std::memcmp(&y_fused, &y_separate, sizeof(T)), 0) << "yhat";
    EXPECT_TRUE(same_bits(fused.weights, separate.weights)) << "weights";
    EXPECT_TRUE(same_bits(fused.alpha, separate.alpha)) << "alpha";
    EXPECT_TRUE(same_bits(fused.x, separate.x)) << "x";
    EXPECT_TRUE(same_bits(fused.biases, separate.biases)) << "biases";
    EXPECT_TRUE(same_bits(fused.z, separate.z)) << "z";
    EXPECT_TRUE(same_bits(fused.u, separate.u)) << "u";
}

template <class T>
void check_value_and_grad_is_forward_then_backward() {
    // 140000 hidden nodes: z and ∂z outgrow L2 in both dtypes; 50 nodes: they do not.
    const DagShape big{16, 140000, 8, 3, 2, true, true, Activation::relu};
    const DagShape small{4, 50, 8, 3, 2, true, true, Activation::relu};
    const OwnedDag<T> shuffled = random_dag<T>(big, 2);
    {
        SCOPED_TRACE("ids shuffled, edges in any order");
        check_value_and_grad_is_forward_then_backward(shuffled, true);
    }
    {
        SCOPED_TRACE("ids topological, edges in slot order, dense nodes too");
        const OwnedDag<T> in_order = with_dense_outputs(renumbered_topologically(shuffled), 50);
        ASSERT_TRUE(in_order.graph().edges_in_slot_order());
        ASSERT_TRUE(in_order.graph().is_dense(in_order.graph().position(in_order.n_nodes - 1)));
        check_value_and_grad_is_forward_then_backward(in_order, true);
    }
    {
        SCOPED_TRACE("in cache");
        check_value_and_grad_is_forward_then_backward(random_dag<T>(small, 2), false);
    }
}

TEST(DagSingle, ValueAndGradIsForwardThenBackwardBitForBit) {
    check_value_and_grad_is_forward_then_backward<float>();
    check_value_and_grad_is_forward_then_backward<double>();
}

// value_and_grad's forward pass writes out.weights (keep_gathered_pays) before its backward pass reads dy: a dy
// that lies in out.weights must still be read as it was at the call.
template <class T>
void check_dy_inside_the_weight_gradients() {
    const OwnedDag<T> d = random_dag<T>(DagShape{16, 140000, 8, 3, 2, true, true, Activation::tanh}, 3);
    const dag::Graph<T> g = d.graph();
    ASSERT_TRUE(dag::detail::keep_gathered_pays(g));
    Random rng(6);
    const std::vector<T> x = random_vector<T>(rng, d.n_inputs), dy = random_vector<T>(rng, d.m);
    dag::Tape<T> tape;
    DagGrads<T> expected(g, true), got(g, true);
    dag::value_and_grad(g, cview(x), tape, cview(dy), expected.view(g));
    std::copy(dy.begin(), dy.end(), got.weights.begin());
    dag::value_and_grad(g, cview(x), tape, VectorView<const T>(got.weights.data(), d.m), got.view(g));
    EXPECT_TRUE(same_bits(got.weights, expected.weights)) << "weights";
    EXPECT_TRUE(same_bits(got.alpha, expected.alpha)) << "alpha";
    EXPECT_TRUE(same_bits(got.x, expected.x)) << "x";
}

TEST(DagSingle, DyInsideTheWeightGradientsIsReadAsItWasAtTheCall) {
    check_dy_inside_the_weight_gradients<float>();
    check_dy_inside_the_weight_gradients<double>();
}

template <class F>
::testing::AssertionResult refused(F&& change, const std::string& argument, const std::string& contains = "") {
    SmallDag d;
    change(d);
    std::string what;
    auto r = throws_exactly<std::invalid_argument>([&] {
        try {
            d.graph();
        } catch (const std::exception& e) {
            what = e.what();
            throw;
        }
    }, argument);
    if (r && what.find(contains) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks '" << contains << "': " << what;
    return r;
}

TEST(DagErrors, MalformedGraphsAreRefused) {
    EXPECT_NO_THROW(SmallDag{}.graph());
    EXPECT_TRUE(refused([](SmallDag& d) { d.src.pop_back(); }, "src", "expected (5,)"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.dst.push_back(4); }, "dst"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.src[1] = 7; }, "src[1]", "is node 7 but nodes are numbered 0..4"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.dst[0] = -1; }, "dst[0]", "is node -1"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.dst[2] = 1; }, "dst[2]", "input node 1"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.outputs[1] = 9; }, "outputs[1]", "is node 9"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.outputs[1] = -2; }, "outputs[1]", "is node -2"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.outputs[1] = 4; }, "outputs[1]", "repeats node 4"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.alpha_rows = 3; d.alpha.push_back(1); }, "alpha", "expected (2, 1)"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.alpha_cols = 0; }, "alpha", "no columns"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.activations.assign(3, Activation::relu); }, "activation"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.biases.assign(4, 0.0); }, "biases", "expected (5,)"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.n_inputs = 6; }, "n_inputs"));
    // A null weights view with edges: the generic view check names the argument.
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([] {
        SmallDag d;
        dag::Graph<double>(d.n_nodes, d.n_inputs, index_view(d.src), index_view(d.dst), VectorView<const double>(nullptr, 5),
                           index_view(d.outputs), MatrixView<const double>(d.alpha.data(), 2, 1), d.activations);
    }, "weights"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([] {
        SmallDag d;
        dag::Graph<double>(d.n_nodes, d.n_inputs, VectorView<const std::int64_t>(nullptr, 5), index_view(d.dst),
                           cview(d.weights), index_view(d.outputs), MatrixView<const double>(d.alpha.data(), 2, 1),
                           d.activations);
    }, "src"));
}

TEST(DagErrors, CyclesAreNamed) {
    // 4 -> 2 closes 2 -> 3 -> 4.
    EXPECT_TRUE(refused([](SmallDag& d) { d.src.push_back(4); d.dst.push_back(2); d.weights.push_back(1); },
                        "src", "cycle (2 -> 3 -> 4 -> 2)"));
    EXPECT_TRUE(refused([](SmallDag& d) { d.src.push_back(3); d.dst.push_back(3); d.weights.push_back(1); },
                        "src", "cycle (3 -> 3)"));
}

TEST(DagErrors, PassesCheckBeforeWriting) {
    const SmallDag d;
    const dag::Graph<double> g = d.graph();
    dag::Tape<double> tape;
    const std::vector<double> x{0.5, -0.25}, bad_x{1, 2, 3};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { dag::forward(g, cview(bad_x), tape); }, "x"));
    DagGrads<double> out(g, false);
    EXPECT_TRUE(throws_exactly<std::logic_error>([&] {
        dag::backward(g, tape, VectorView<const double>(x.data(), 1), out.view(g));
    }));
    auto bad = out.view(g);
    bad.weights.size = 4;
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { dag::value_and_grad(g, cview(x), tape, 1.0, bad); },
                                                      "out.weights"));
    bad = out.view(g);
    bad.u.size = 2;
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] { dag::value_and_grad(g, cview(x), tape, 1.0, bad); }, "out.u"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] {
        dag::value_and_grad(g, cview(x), tape, VectorView<const double>(x.data(), 2), out.view(g));
    }, "dy"));
    for (double v : out.weights) EXPECT_EQ(v, 1e30);  // nothing written
    EXPECT_FALSE(tape.recorded());

    dag::BatchTape<double> btape;
    std::vector<double> X(6), Y(3), dY(3), dX(6, 1e30), dw(5, 1e30), da(2, 1e30);
    const dag::BatchGradientsView<double> bout{mview(dw), MatrixView<double>(da.data(), 2, 1),
                                               MatrixView<double>(dX.data(), 2, 2), {}};
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] {
        dag::value_and_grad_batch(g, MatrixView<const double>(X.data(), 3, 2), btape, MatrixView<double>(Y.data(), 3, 1),
                                  MatrixView<const double>(dY.data(), 3, 1), bout);
    }, "out.x"));
    EXPECT_TRUE(throws_exactly<std::invalid_argument>([&] {
        dag::forward_batch(g, MatrixView<const double>(X.data(), 2, 3), btape, MatrixView<double>(Y.data(), 2, 1));
    }, "X"));
    for (double v : dw) EXPECT_EQ(v, 1e30);
}

// ---- Threads share one Graph ------------------------------------------------------------------------------

TEST(DagThreads, TwoThreadsShareAGraph) {
    const OwnedDag<double> d = random_dag<double>({16, 2000, 8, 4, 1, true, true, Activation::relu}, 5);
    const dag::Graph<double> g = d.graph();
    Random rng(6);
    const std::vector<double> x0 = random_vector<double>(rng, 16), x1 = random_vector<double>(rng, 16);
    auto run = [&](const std::vector<double>& x) {
        dag::Tape<double> tape;
        DagGrads<double> out(g, true);
        dag::value_and_grad(g, cview(x), tape, 1.0, out.view(g));
        return out.weights;
    };
    const std::vector<double> expected0 = run(x0), expected1 = run(x1);
    bool same0 = true, same1 = true;
    std::thread t0([&] { for (int i = 0; i < 30; ++i) same0 = same0 && run(x0) == expected0; });
    std::thread t1([&] { for (int i = 0; i < 30; ++i) same1 = same1 && run(x1) == expected1; });
    t0.join();
    t1.join();
    EXPECT_TRUE(same0);  // bit for bit, whatever runs alongside
    EXPECT_TRUE(same1);
}

// ---- Threads inside a batch pass: the same bits for any pool size -----------------------------------------

// d renumbered so that ids follow its topological order, edges listed by destination: the graph then keeps
// the ids as its layout and reads the weights in slot order.
template <class T>
OwnedDag<T> renumbered_topologically(const OwnedDag<T>& d) {
    std::vector<std::size_t> id(d.n_nodes);
    std::iota(id.begin(), id.begin() + static_cast<std::ptrdiff_t>(d.n_inputs), std::size_t(0));
    for (std::size_t r = 0; r < d.order.size(); ++r) id[d.order[r]] = d.n_inputs + r;
    OwnedDag<T> e = d;
    std::vector<std::size_t> edges(d.src.size());
    std::iota(edges.begin(), edges.end(), std::size_t(0));
    std::stable_sort(edges.begin(), edges.end(), [&](std::size_t a, std::size_t b) {
        return id[static_cast<std::size_t>(d.dst[a])] < id[static_cast<std::size_t>(d.dst[b])];
    });
    for (std::size_t k = 0; k < edges.size(); ++k) {
        e.src[k] = static_cast<std::int64_t>(id[static_cast<std::size_t>(d.src[edges[k]])]);
        e.dst[k] = static_cast<std::int64_t>(id[static_cast<std::size_t>(d.dst[edges[k]])]);
        e.weights[k] = d.weights[edges[k]];
    }
    for (auto& o : e.outputs) o = static_cast<std::int64_t>(id[static_cast<std::size_t>(o)]);
    if (d.activations.size() > 1)
        for (std::size_t v = 0; v < d.n_nodes; ++v) e.activations[id[v]] = d.activations[v];
    if (!d.biases.empty())
        for (std::size_t v = 0; v < d.n_nodes; ++v) e.biases[id[v]] = d.biases[v];
    return e;
}

template <class T>
std::vector<std::vector<T>> batch_pass(const dag::Graph<T>& g, std::size_t B, bool with_biases, bool with_x,
                                       mlpgrad::parallel::ThreadPool* pool) {
    Random rng(B);
    const std::size_t n = g.n_inputs(), m = g.output_dim();
    const std::vector<T> X = random_vector<T>(rng, B * n), dY = random_vector<T>(rng, B * m);
    std::vector<T> yhat(B * m), dX(B * n), dalpha(g.n_outputs() * m), dw(g.n_edges()), db(with_biases ? g.n_nodes() : 0);
    dag::BatchTape<T> tape;
    dag::value_and_grad_batch(g, MatrixView<const T>(X.data(), B, n), tape, MatrixView<T>(yhat.data(), B, m),
                              MatrixView<const T>(dY.data(), B, m),
                              {mview(dw), MatrixView<T>(dalpha.data(), g.n_outputs(), m),
                               with_x ? MatrixView<T>(dX.data(), B, n) : MatrixView<T>{},
                               db.empty() ? VectorView<T>{} : mview(db)},
                              pool);
    return {yhat, dX, dalpha, dw, db};
}

template <class T>
void check_thread_counts(const dag::Graph<T>& g, bool with_biases, const std::string& what) {
    mlpgrad::parallel::ThreadPool two(2), three(3);
    for (std::size_t B : {1, 7, 16, 37, 64, 100}) {
        for (bool with_x : {true, false}) {
            SCOPED_TRACE(what + ", B = " + std::to_string(B) + (with_x ? "" : ", no x"));
            const auto alone = batch_pass(g, B, with_biases, with_x, nullptr);
            EXPECT_TRUE(batch_pass(g, B, with_biases, with_x, &two) == alone);
            EXPECT_TRUE(batch_pass(g, B, with_biases, with_x, &three) == alone);
        }
    }
}

TEST(DagThreads, BatchPassesGiveTheSameBitsForAnyThreadCount) {
    // Big enough that every level crosses the work threshold for threads at the larger batches.
    const DagShape shape{16, 20000, 8, 5, 2, true, true, Activation::tanh};
    const OwnedDag<double> d = random_dag<double>(shape, 8);
    check_thread_counts(d.graph(), true, "random DAG, levels by longest path");
    check_thread_counts(renumbered_topologically(d).graph(), true, "random DAG, ids in topological order");
    const OwnedDag<float> f = random_dag<float>({8, 5000, 8, 3, 1, false, false, Activation::relu}, 9);
    check_thread_counts(f.graph(), false, "float32");
    Random rng(10);
    std::vector<std::vector<double>> W;
    std::vector<MatrixView<const double>> views;
    for (std::size_t t = 0; t < 3; ++t) W.push_back(random_vector<double>(rng, 130 * 130, 0.1));
    for (const auto& w : W) views.push_back({w.data(), 130, 130});
    const std::vector<double> alpha = random_vector<double>(rng, 130);
    const mlpgrad::Network<double> net(views, cview(alpha), Activation::relu);
    const dag::MlpGraphArrays<double> arrays(net);
    check_thread_counts(arrays.graph(), false, "from an MLP (dense levels)");
}

}  // namespace
}  // namespace mlpgrad_test
