// mlpgrad_bench_dag: backpropagation on DAGs in the core, without Python.
//   1. Random DAGs of in-degree 8 (every non-input node draws 8 sources uniformly from the nodes before it,
//      "uniform", or at a distance 1 + Exp(1024) behind it, "local", as bench --dag does; edges listed by
//      destination), E from 1e4 to 1e7: ns per edge of value_and_grad for one example and for a batch, the
//      log-log slope of time against E (the notes' Question 1: linear means slope 1), and a checksum of the
//      gradients (the bits of ∂w and ∂x). Built with -DMLPGRAD_BENCH_BASELINE_INCLUDE=<the cpp/include of
//      another build>, it times that build's passes too, alternating run by run in one process, prints the
//      ratios baseline ÷ current (above 1: the current headers are faster) and whether both give the same bits.
//   2. The dense network of K = 256, T = 4 (ReLU) as a Network and as a DAG (dag::MlpGraphArrays), side by side:
//      value_and_grad for one example and for a batch, and the ratio DAG / dense.
//   With --floor, part 1 also times the memory traffic alone (MemoryFloor below) on the same graphs, side by
//   side with the passes, and its slope: what the caches and memory make of the graph's access pattern.
//
//   mlpgrad_bench_dag [--max-edges 10000000] [--min-edges 10000] [--batch 16] [--repeats 7] [--run-ms 50]
//                     [--dags-only] [--double-only] [--cpu-time] [--floor]
//
// --cpu-time times the process's CPU time instead of the wall clock (the passes run on one thread): on a
// machine shared with other work it leaves out the time spent waiting for a core, not the caches and memory
// bandwidth the others take. Each number is the median over --repeats timed runs, each of n calls sized to last about --run-ms; in part 2
// the two implementations alternate run by run, so both see the same machine load.
#include <mlpgrad/dag.hpp>
#include <mlpgrad/mlpgrad.hpp>

#include "bench_dag_pass.hpp"
#include "bench_timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using mlpgrad_bench::clobber_memory;
using mlpgrad_bench::sink;

struct Options {
    std::size_t max_edges = 10000000, min_edges = 10000, batch = 16;
    int repeats = 7;
    double run_ms = 50.0;
    bool dags_only = false, double_only = false, cpu_time = false, floor = false;
};

[[noreturn]] void usage(const char* argv0, const std::string& error) {
    if (!error.empty()) std::fprintf(stderr, "%s: error: %s\n", argv0, error.c_str());
    std::fprintf(error.empty() ? stdout : stderr,
                 "usage: %s [--max-edges E] [--min-edges E] [--batch B] [--repeats N] [--run-ms MS] [--dags-only]\n"
                 "          [--double-only] [--cpu-time] [--floor]\n"
                 "  ns per edge of dag::value_and_grad on random DAGs of in-degree 8, uniform and local (E = min-edges\n"
                 "  .. max-edges by factors of 10, one example and a batch of B), the log-log slope of time against E,\n"
                 "  and a DAG built from an MLP (K = 256, T = 4) against the dense Network, unless --dags-only;\n"
                 "  --floor also times the passes' memory traffic alone on the same graphs\n"
                 "  (defaults: --max-edges 10000000 --min-edges 10000 --batch 16 --repeats 7 --run-ms 50).\n",
                 argv0);
    std::exit(error.empty() ? 0 : 2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") usage(argv[0], "");
        if (arg == "--dags-only" || arg == "--double-only" || arg == "--cpu-time" || arg == "--floor") {
            (arg == "--dags-only"     ? o.dags_only
             : arg == "--double-only" ? o.double_only
             : arg == "--cpu-time"    ? o.cpu_time
                                      : o.floor) = true;
            continue;
        }
        if (arg != "--max-edges" && arg != "--min-edges" && arg != "--batch" && arg != "--repeats" && arg != "--run-ms")
            usage(argv[0], "unknown argument '" + arg + "'");
        if (i + 1 >= argc) usage(argv[0], arg + " needs a value");
        const std::string text = argv[++i];
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !(v >= 1)) usage(argv[0], arg + ": expected a number >= 1, got '" + text + "'");
        if (arg == "--max-edges") o.max_edges = static_cast<std::size_t>(v);
        if (arg == "--min-edges") o.min_edges = static_cast<std::size_t>(v);
        if (arg == "--batch") o.batch = static_cast<std::size_t>(v);
        if (arg == "--repeats") o.repeats = static_cast<int>(v);
        if (arg == "--run-ms") o.run_ms = v;
    }
    return o;
}

using clock_type = std::chrono::steady_clock;

bool use_cpu_time = false;  // --cpu-time

double seconds_of(const std::function<void()>& f, std::size_t n) {
    const std::clock_t c0 = std::clock();
    const auto t0 = clock_type::now();
    for (std::size_t i = 0; i < n; ++i) {
        f();
        clobber_memory();
    }
    if (use_cpu_time) return double(std::clock() - c0) / CLOCKS_PER_SEC;
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
    for (int r = 0; r < o.repeats; ++r)  // in reverse order every other run: no function always follows the same one
        for (std::size_t k = 0; k < fs.size(); ++k) {
            const std::size_t i = r % 2 ? fs.size() - 1 - k : k;
            samples[i].push_back(seconds_of(fs[i], n[i]) / double(n[i]));
        }
    std::vector<double> out;
    for (const auto& s : samples) out.push_back(median(s));
    return out;
}

// window 0: every node's in_degree sources uniform over the nodes before it; else at a distance 1 + Exp(window)
// behind it (clipped at node 0), as python/mlpgrad/bench/dag.py draws them. 64 inputs, the last 16 nodes are the
// outputs, edges listed by destination.
mlpgrad_bench::DagCase random_dag(std::size_t edges, std::size_t in_degree, std::uint64_t seed, double window,
                                  std::size_t batch, bool is_double) {
    mlpgrad_bench::DagCase d;
    std::mt19937_64 rng(seed);
    d.n_inputs = 64;
    d.batch = batch;
    d.is_double = is_double;
    const std::size_t hidden = std::max<std::size_t>(1, edges / in_degree);
    d.n_nodes = d.n_inputs + hidden;
    std::uniform_real_distribution<double> w(-1.0, 1.0);
    std::exponential_distribution<double> distance(window > 0 ? 1.0 / window : 1.0);
    const double scale = std::sqrt(3.0 / double(in_degree));
    for (std::size_t v = d.n_inputs; v < d.n_nodes; ++v)
        for (std::size_t k = 0; k < in_degree; ++k) {
            const std::size_t s = window > 0 ? v - 1 - std::min<std::size_t>(v - 1, std::size_t(distance(rng)))
                                             : std::uniform_int_distribution<std::size_t>(0, v - 1)(rng);
            d.src.push_back(static_cast<std::int64_t>(s));
            d.dst.push_back(static_cast<std::int64_t>(v));
            d.weights.push_back(scale * w(rng));
        }
    for (std::size_t k = 0; k < std::min<std::size_t>(16, hidden); ++k)
        d.outputs.push_back(static_cast<std::int64_t>(d.n_nodes - 1 - k));
    d.alpha.assign(d.outputs.size(), 1.0 / double(d.outputs.size()));
    return d;
}

// The memory traffic of value_and_grad on a DAG with next to no arithmetic, as a floor for the passes: in
// their order (edges by destination, nodes ascending forward, edges descending backward) the forward pass
// reads the source's z (a row of B for a batch) per edge and writes each node's; the backward pass does per
// edge the one random access that any backward of the notes' form needs, the read-modify-write of the
// source's ∂z (for a batch also the read of its Z row, which ∂w_e = Σ_b ∂U_vb Z_sb needs: B values an edge
// are too many to keep from the forward pass), with w read and ∂w written in order. It leaves out σ, σ',
// the tapes of u and ∂u, the multiplies and, for one example, ∂w's z_s: every implementation that gathers
// forward and scatters backward moves at least this much, so its ns per edge, and its slope against E, are
// what this machine's caches and memory make of the graph's access pattern alone. The batch run prefetches
// its rows as the batch passes do (dag/prefetch.hpp: the same distance, when the same test says it pays),
// so that it keeps as many misses in flight as they do.
template <class T>
class MemoryFloor {
  public:
    using Vec = mlpgrad::simd::Vec<T>;
    MemoryFloor(const mlpgrad_bench::DagCase& c, std::size_t B)
        : B_(B), begin_(c.n_nodes + 1, 0), src_(c.src.begin(), c.src.end()), w_(c.weights.begin(), c.weights.end()),
          dw_(c.src.size()), z_(c.n_nodes * B, T(0.5)), dz_(c.n_nodes * B) {
        if (!batch_fits(B))
            throw std::invalid_argument("MemoryFloor: B = 1 or " + std::to_string(Vec::size) + " x (1, 2, 4 or 8)");
        for (const std::int64_t v : c.dst) ++begin_[static_cast<std::size_t>(v) + 1];
        for (std::size_t v = 0; v < c.n_nodes; ++v) begin_[v + 1] += begin_[v];
        while (first_ + 1 < begin_.size() && begin_[first_] == begin_[first_ + 1]) ++first_;  // past the inputs
    }

    static bool batch_fits(std::size_t B) {
        const std::size_t n = B / Vec::size;
        return B == 1 || (B % Vec::size == 0 && (n == 1 || n == 2 || n == 4 || n == 8));
    }

    void run() {
        switch (B_ == 1 ? 0 : B_ / Vec::size) {
            case 0: run_single(); break;
            case 1: run_batch<1>(); break;
            case 2: run_batch<2>(); break;
            case 4: run_batch<4>(); break;
            default: run_batch<8>(); break;  // the constructor took no other B
        }
        sink = double(dw_[0]) + double(dz_[0]) + double(z_.back());
    }

  private:
    void run_single() {
        const std::size_t n = begin_.size() - 1;
        T* __restrict z = z_.data();
        const std::uint32_t* __restrict src = src_.data();
        for (std::size_t v = first_; v < n; ++v) {
            T acc[4] = {};  // independent sums: the reads are not one chain of dependent additions
            for (std::size_t e = begin_[v]; e < begin_[v + 1]; ++e) acc[e % 4] += z[src[e]];
            z[v] = T(0.125) * ((acc[0] + acc[1]) + (acc[2] + acc[3]));  // (a mean keeps z at 0.5: no subnormals)
        }
        std::fill(dz_.begin(), dz_.end(), T(0));
        T* __restrict dz = dz_.data();
        const T* __restrict w = w_.data();
        T* __restrict dw = dw_.data();
        for (std::size_t e = src_.size(); e-- > 0;) {
            dz[src[e]] += w[e];
            dw[e] = w[e];
        }
    }

    template <std::size_t NV>  // vectors per row: B = NV * Vec::size
    void run_batch() {
        constexpr std::size_t V = Vec::size, B = NV * V;
        const std::size_t n = begin_.size() - 1;
        T* const Z = z_.data();
        const std::uint32_t* __restrict src = src_.data();
        namespace pf = mlpgrad::dag::detail;
        const std::size_t E = src_.size(), D = pf::prefetch_distance;
        const bool prefetch = pf::prefetch_pays(n, B * sizeof(T));
        for (std::size_t v = first_; v < n; ++v) {
            Vec acc[NV];
            for (std::size_t c = 0; c < NV; ++c) acc[c] = Vec::zero();
            for (std::size_t e = begin_[v]; e < begin_[v + 1]; ++e) {
                if (prefetch && e + D < E) pf::prefetch_row_for_read(Z + std::size_t(src[e + D]) * B, B * sizeof(T));
                const T* zs = Z + std::size_t(src[e]) * B;
                for (std::size_t c = 0; c < NV; ++c) acc[c] = acc[c] + Vec::load(zs + c * V);
            }
            const Vec eighth = Vec::broadcast(T(0.125));
            for (std::size_t c = 0; c < NV; ++c) (eighth * acc[c]).store(Z + v * B + c * V);
        }
        std::fill(dz_.begin(), dz_.end(), T(0));
        T* const dZ = dz_.data();
        const T* __restrict w = w_.data();
        T* __restrict dw = dw_.data();
        Vec read = Vec::zero();
        for (std::size_t e = E; e-- > 0;) {
            if (prefetch && e >= D) {
                pf::prefetch_row_for_read(Z + std::size_t(src[e - D]) * B, B * sizeof(T));
                pf::prefetch_row_for_write(dZ + std::size_t(src[e - D]) * B, B * sizeof(T));
            }
            const std::size_t row = std::size_t(src[e]) * B;
            const Vec we = Vec::broadcast(w[e]);
            for (std::size_t c = 0; c < NV; ++c) {
                read = read + Vec::load(Z + row + c * V);
                (Vec::load(dZ + row + c * V) + we).store(dZ + row + c * V);
            }
            dw[e] = w[e];
        }
        dw[0] += mlpgrad::simd::horizontal_sum(read);  // keeps the Z reads
    }

    std::size_t B_, first_ = 0;
    std::vector<std::size_t> begin_;
    std::vector<std::uint32_t> src_;
    std::vector<T> w_, dw_;
    mlpgrad::aligned_vector<T> z_, dz_;  // rows on cache lines, as in the passes' tapes
};

// A floor for one example and one for a batch of B on graph c, owned by `floors`, timed by two more entries
// of `fs`.
template <class T>
void add_floors(const mlpgrad_bench::DagCase& c, std::size_t B, std::vector<std::unique_ptr<MemoryFloor<T>>>& floors,
                std::vector<std::function<void()>>& fs) {
    for (const std::size_t b : {std::size_t(1), B}) {
        floors.push_back(std::make_unique<MemoryFloor<T>>(c, b));
        fs.push_back([f = floors.back().get()] { f->run(); });
    }
}

// Least-squares slope of y against x.
double slope(const std::vector<double>& x, const std::vector<double>& y) {
    const double n = double(y.size());
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < y.size(); ++i) sx += x[i], sy += y[i], sxx += x[i] * x[i], sxy += x[i] * y[i];
    return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

void random_dags(const Options& o, bool is_double, const char* generator, double window) {
    const char* dtype = is_double ? "double" : "float";
    std::printf("\n%s random DAGs, in-degree 8, %s: value_and_grad, ns per edge, B = %zu per edge and example "
                "(median of %d runs)\n", generator, dtype, o.batch, o.repeats);
    std::vector<double> log_e, log_t[6];
    bool baseline = false;
    std::size_t floor_at = 2;  // where the floor's times are in t: after the current passes and the baseline's
    for (std::size_t E = o.min_edges; E <= o.max_edges; E *= 10) {
        const mlpgrad_bench::DagCase c = random_dag(E, 8, E, window, o.batch, is_double);
        const auto t0 = clock_type::now();
        const auto current = mlpgrad_bench::make_current_dag_pass(c);
        const double build_ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
        const auto old = mlpgrad_bench::make_baseline_dag_pass(c);
        if (E == o.min_edges) {
            baseline = old != nullptr;
            std::printf("%10s %8s %9s %10s %10s %10s %10s   %s\n", "E", "levels", "build ms", "single", "batch",
                        baseline ? "base single" : "", baseline ? "base batch" : "",
                        baseline ? "checksums of gradients (single, batch): same as the baseline's?" : "checksums");
        }
        std::vector<std::function<void()>> fs{[&] { current->single(); }, [&] { current->batch(); }};
        if (old) {
            fs.push_back([&] { old->single(); });
            fs.push_back([&] { old->batch(); });
        }
        floor_at = fs.size();
        std::vector<std::unique_ptr<MemoryFloor<double>>> floors_d;
        std::vector<std::unique_ptr<MemoryFloor<float>>> floors_f;
        if (o.floor) {
            if (is_double)
                add_floors(c, o.batch, floors_d, fs);
            else
                add_floors(c, o.batch, floors_f, fs);
        }
        const auto t = time_side_by_side(fs, o);
        const double e = double(current->n_edges()), eb = e * double(o.batch);
        const std::uint64_t cs = current->single_checksum(), cb = current->batch_checksum();
        std::printf("%10zu %8zu %9.1f %10.3f %10.3f", current->n_edges(), current->n_levels(), build_ms, t[0] / e * 1e9,
                    t[1] / eb * 1e9);
        if (old)
            std::printf(" %10.3f %10.3f   %s %s (base/current: single %.2f, batch %.2f)\n", t[2] / e * 1e9,
                        t[3] / eb * 1e9, cs == old->single_checksum() ? "same" : "DIFFERENT",
                        cb == old->batch_checksum() ? "same" : "DIFFERENT", t[2] / t[0], t[3] / t[1]);
        else
            std::printf("   %016llx %016llx\n", static_cast<unsigned long long>(cs), static_cast<unsigned long long>(cb));
        if (o.floor)
            std::printf("%10s %8s %9s %10.3f %10.3f   memory traffic alone; the passes take %.2fx and %.2fx its time\n",
                        "floor", "", "", t[floor_at] / e * 1e9, t[floor_at + 1] / eb * 1e9, t[0] / t[floor_at],
                        t[1] / t[floor_at + 1]);
        log_e.push_back(std::log(e));
        for (std::size_t i = 0; i < t.size(); ++i) log_t[i].push_back(std::log(t[i]));
    }
    if (log_e.size() < 2) return;
    std::printf("log-log slope of time against E: single %.3f, batch %.3f (target [0.9, 1.15])", slope(log_e, log_t[0]),
                slope(log_e, log_t[1]));
    if (baseline)
        std::printf("; baseline: single %.3f, batch %.3f", slope(log_e, log_t[2]), slope(log_e, log_t[3]));
    if (o.floor) {
        std::printf("; memory traffic alone: single %.3f, batch %.3f", slope(log_e, log_t[floor_at]),
                    slope(log_e, log_t[floor_at + 1]));
    }
    std::printf("\n");
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
    if (o.floor && !(MemoryFloor<float>::batch_fits(o.batch) && MemoryFloor<double>::batch_fits(o.batch))) {
        std::string fits;  // rows of 1, 2, 4 or 8 vectors of floats and of doubles
        for (std::size_t B = 1; B <= 8 * mlpgrad::simd::Vec<float>::size; ++B)
            if (MemoryFloor<float>::batch_fits(B) && MemoryFloor<double>::batch_fits(B))
                fits += (fits.empty() ? "" : ", ") + std::to_string(B);
        usage(argv[0], "--floor takes --batch " + fits + " on this build, not " + std::to_string(o.batch));
    }
    use_cpu_time = o.cpu_time;
    if (!o.dags_only) {
        if (!o.double_only) from_mlp_vs_dense<float>(o, "float");
        from_mlp_vs_dense<double>(o, "double");
    }
    for (const auto& [generator, window] : {std::pair<const char*, double>{"uniform", 0.0}, {"local", 1024.0}}) {
        if (!o.double_only) random_dags(o, false, generator, window);
        random_dags(o, true, generator, window);
    }
}
