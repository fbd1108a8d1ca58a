// mlpgrad_bench_dag: backpropagation on DAGs in the core, without Python.
//   1. Random DAGs of in-degree 8 (every non-input node draws 8 sources uniformly from the nodes before it;
//      edges listed by destination), E from 1e4 to 1e7: ns per edge of value_and_grad for one example and
//      for a batch, and the log-log slope of time against E (the notes' Question 1: linear means slope 1).
//   2. The dense network of K = 256, T = 4 (ReLU) as a Network and as a DAG (dag::MlpGraphArrays), side by side:
//      value_and_grad for one example and for a batch, and the ratio DAG / dense.
//
//   mlpgrad_bench_dag [--max-edges 10000000] [--batch 16] [--repeats 7] [--run-ms 50]
//
// Each number is the median over --repeats timed runs, each of n calls sized to last about --run-ms; in part 2
// the two implementations alternate run by run, so both see the same machine load.
#include <mlpgrad/dag.hpp>
#include <mlpgrad/mlpgrad.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

volatile double sink = 0.0;

inline void clobber_memory() { asm volatile("" : : : "memory"); }

struct Options {
    std::size_t max_edges = 10000000, batch = 16;
    int repeats = 7;
    double run_ms = 50.0;
};

[[noreturn]] void usage(const char* argv0, const std::string& error) {
    if (!error.empty()) std::fprintf(stderr, "%s: error: %s\n", argv0, error.c_str());
    std::fprintf(error.empty() ? stdout : stderr,
                 "usage: %s [--max-edges E] [--batch B] [--repeats N] [--run-ms MS]\n"
                 "  ns per edge of dag::value_and_grad on random DAGs of in-degree 8 (E = 1e4 .. max-edges, one\n"
                 "  example and a batch of B), the log-log slope of time against E, and a DAG built from an MLP\n"
                 "  (K = 256, T = 4) against the dense Network (defaults: --max-edges 10000000 --batch 16\n"
                 "  --repeats 7 --run-ms 50).\n",
                 argv0);
    std::exit(error.empty() ? 0 : 2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") usage(argv[0], "");
        if (arg != "--max-edges" && arg != "--batch" && arg != "--repeats" && arg != "--run-ms")
            usage(argv[0], "unknown argument '" + arg + "'");
        if (i + 1 >= argc) usage(argv[0], arg + " needs a value");
        const std::string text = argv[++i];
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !(v >= 1)) usage(argv[0], arg + ": expected a number >= 1, got '" + text + "'");
        if (arg == "--max-edges") o.max_edges = static_cast<std::size_t>(v);
        if (arg == "--batch") o.batch = static_cast<std::size_t>(v);
        if (arg == "--repeats") o.repeats = static_cast<int>(v);
        if (arg == "--run-ms") o.run_ms = v;
    }
    return o;
}

using clock_type = std::chrono::steady_clock;

double seconds_of(const std::function<void()>& f, std::size_t n) {
    const auto t0 = clock_type::now();
    for (std::size_t i = 0; i < n; ++i) {
        f();
        clobber_memory();
    }
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Calls per run so that a run of f lasts about run_ms (at least one).
std::size_t calls_per_run(const std::function<void()>& f, double run_ms) {
    const double once = seconds_of(f, 1);
    return std::max<std::size_t>(1, static_cast<std::size_t>(run_ms * 1e-3 / std::max(once, 1e-9)));
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Median seconds per call of each of fs, alternating the functions run by run.
std::vector<double> time_side_by_side(const std::vector<std::function<void()>>& fs, const Options& o) {
    std::vector<std::size_t> n;
    for (const auto& f : fs) n.push_back(calls_per_run(f, o.run_ms));
    std::vector<std::vector<double>> samples(fs.size());
    for (int r = 0; r < o.repeats; ++r)
        for (std::size_t i = 0; i < fs.size(); ++i) samples[i].push_back(seconds_of(fs[i], n[i]) / double(n[i]));
    std::vector<double> out;
    for (const auto& s : samples) out.push_back(median(s));
    return out;
}

template <class T>
struct RandomDag {
    std::size_t n_nodes, n_inputs;
    std::vector<std::int64_t> src, dst, outputs;
    std::vector<T> weights, alpha;

    RandomDag(std::size_t edges, std::size_t in_degree, std::uint64_t seed) {
        std::mt19937_64 rng(seed);
        n_inputs = 64;
        const std::size_t hidden = std::max<std::size_t>(1, edges / in_degree);
        n_nodes = n_inputs + hidden;
        std::uniform_real_distribution<double> w(-1.0, 1.0);
        const double scale = std::sqrt(3.0 / double(in_degree));
        for (std::size_t v = n_inputs; v < n_nodes; ++v)
            for (std::size_t k = 0; k < in_degree; ++k) {
                src.push_back(static_cast<std::int64_t>(std::uniform_int_distribution<std::size_t>(0, v - 1)(rng)));
                dst.push_back(static_cast<std::int64_t>(v));
                weights.push_back(static_cast<T>(scale * w(rng)));
            }
        for (std::size_t k = 0; k < 16; ++k) outputs.push_back(static_cast<std::int64_t>(n_nodes - 1 - k));
        alpha.assign(outputs.size(), T(1) / T(outputs.size()));
    }
    mlpgrad::dag::Graph<T> graph() const {
        using mlpgrad::VectorView;
        return mlpgrad::dag::Graph<T>(n_nodes, n_inputs, VectorView<const std::int64_t>(src.data(), src.size()),
                                      VectorView<const std::int64_t>(dst.data(), dst.size()),
                                      VectorView<const T>(weights.data(), weights.size()),
                                      VectorView<const std::int64_t>(outputs.data(), outputs.size()),
                                      mlpgrad::MatrixView<const T>(alpha.data(), alpha.size(), 1),
                                      mlpgrad::Activation::relu);
    }
};

template <class T>
void random_dags(const Options& o, const char* dtype) {
    namespace dag = mlpgrad::dag;
    std::printf("\nrandom DAGs, in-degree 8, %s: value_and_grad, ns per edge (median of %d runs)\n", dtype, o.repeats);
    std::printf("%10s %8s %10s %14s   batch B = %zu ns/E\n", "E", "levels", "build ms", "single ns/E", o.batch);
    std::vector<double> log_e, log_single, log_batch;
    for (std::size_t E = 10000; E <= o.max_edges; E *= 10) {
        const RandomDag<T> d(E, 8, E);
        const auto t0 = clock_type::now();
        const dag::Graph<T> g = d.graph();
        const double build_ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
        std::vector<T> x(g.n_inputs(), T(0.5)), gw(g.n_edges()), ga(g.n_outputs()), gx(g.n_inputs());
        dag::Tape<T> tape;
        const dag::GradientsView<T> out{{gw.data(), gw.size()}, {ga.data(), ga.size(), 1}, {gx.data(), gx.size()}, {}, {}, {}};
        const std::size_t B = o.batch;
        std::vector<T> X(B * g.n_inputs(), T(0.5)), Y(B), dY(B, T(1)), dX(B * g.n_inputs());
        dag::BatchTape<T> btape;
        const dag::BatchGradientsView<T> bout{{gw.data(), gw.size()}, {ga.data(), ga.size(), 1}, {dX.data(), B, g.n_inputs()}, {}};
        const auto t = time_side_by_side(
            {[&] { sink = dag::value_and_grad(g, mlpgrad::VectorView<const T>(x.data(), x.size()), tape, T(1), out); },
             [&] {
                 dag::value_and_grad_batch(g, mlpgrad::MatrixView<const T>(X.data(), B, g.n_inputs()), btape,
                                           mlpgrad::MatrixView<T>(Y.data(), B, 1), mlpgrad::MatrixView<const T>(dY.data(), B, 1), bout);
                 sink = Y[0];
             }},
            o);
        const double e = double(g.n_edges());
        std::printf("%10zu %8zu %10.1f %14.3f %12.3f (%.3f per edge-example)\n", g.n_edges(), g.n_levels(), build_ms,
                    t[0] / e * 1e9, t[1] / e * 1e9, t[1] / e / double(B) * 1e9);
        log_e.push_back(std::log(e));
        log_single.push_back(std::log(t[0]));
        log_batch.push_back(std::log(t[1]));
    }
    // Least-squares slope of log t against log E.
    auto slope = [&](const std::vector<double>& y) {
        const double n = double(y.size());
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (std::size_t i = 0; i < y.size(); ++i) {
            sx += log_e[i], sy += y[i], sxx += log_e[i] * log_e[i], sxy += log_e[i] * y[i];
        }
        return (n * sxy - sx * sy) / (n * sxx - sx * sx);
    };
    if (log_e.size() >= 2)
        std::printf("log-log slope of time against E: single %.3f, batch %.3f (target [0.9, 1.15])\n",
                    slope(log_single), slope(log_batch));
}

template <class T>
void from_mlp_vs_dense(const Options& o, const char* dtype) {
    namespace dag = mlpgrad::dag;
    const std::size_t K = 256, depth = 4, B = 64;
    std::mt19937_64 rng(1);
    std::normal_distribution<double> normal(0.0, 1.0 / std::sqrt(double(K)));
    std::vector<std::vector<T>> W(depth, std::vector<T>(K * K));
    for (auto& w : W)
        for (auto& v : w) v = static_cast<T>(normal(rng));
    std::vector<T> alpha(K, T(1) / T(K));
    std::vector<mlpgrad::MatrixView<const T>> views;
    for (const auto& w : W) views.push_back({w.data(), K, K});
    const mlpgrad::Network<T> net(views, {alpha.data(), K}, mlpgrad::Activation::relu);
    const dag::MlpGraphArrays<T> arrays(net);
    const dag::Graph<T> g = arrays.graph();

    std::vector<T> x(K, T(0.5));
    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> grads(net.widths(), false);
    std::vector<T> gw(g.n_edges()), ga(K), gx(K);
    dag::Tape<T> dtape;
    const dag::GradientsView<T> dout{{gw.data(), gw.size()}, {ga.data(), K, 1}, {gx.data(), K}, {}, {}, {}};

    std::vector<T> X(B * K, T(0.5)), Y(B), dY(B, T(1)), dX(B * K);
    mlpgrad::BatchTape<T> btape;
    std::vector<std::vector<T>> bw(depth, std::vector<T>(K * K));
    mlpgrad::BatchGradientsView<T> bout;
    for (auto& w : bw) bout.weights.push_back({w.data(), K, K});
    bout.alpha = {ga.data(), K};
    bout.x = {dX.data(), B, K};
    dag::BatchTape<T> dbtape;
    const dag::BatchGradientsView<T> dbout{{gw.data(), gw.size()}, {ga.data(), K, 1}, {dX.data(), B, K}, {}};
    const mlpgrad::MatrixView<const T> Xv(X.data(), B, K);

    const auto t = time_side_by_side(
        {[&] { sink = mlpgrad::value_and_grad(net, mlpgrad::VectorView<const T>(x.data(), K), tape, T(1), grads.view()); },
         [&] { sink = dag::value_and_grad(g, mlpgrad::VectorView<const T>(x.data(), K), dtape, T(1), dout); },
         [&] {
             mlpgrad::forward_batch(net, Xv, btape, mlpgrad::VectorView<T>(Y.data(), B));
             mlpgrad::backward_batch(net, btape, mlpgrad::VectorView<const T>(dY.data(), B), bout);
             sink = Y[0];
         },
         [&] {
             dag::value_and_grad_batch(g, Xv, dbtape, mlpgrad::MatrixView<T>(Y.data(), B, 1),
                                       mlpgrad::MatrixView<const T>(dY.data(), B, 1), dbout);
             sink = Y[0];
         }},
        o);
    std::printf("\nfrom-MLP DAG vs dense Network, K = %zu, T = %zu, ReLU, %s: value_and_grad us per call\n", K, depth, dtype);
    std::printf("  single: dense %9.2f  DAG %9.2f  ratio %.2f (target <= 4)\n", t[0] * 1e6, t[1] * 1e6, t[1] / t[0]);
    std::printf("  B = %zu: dense %9.2f  DAG %9.2f  ratio %.2f (target <= 2)\n", B, t[2] * 1e6, t[3] * 1e6, t[3] / t[2]);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    from_mlp_vs_dense<float>(o, "float");
    from_mlp_vs_dense<double>(o, "double");
    random_dags<float>(o, "float");
    random_dags<double>(o, "double");
}
