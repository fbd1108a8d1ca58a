// mlpgrad_bench: the core itself, without Python. Times forward(), backward() and value_and_grad()
// (forward + backward) in ns per call on the notes' network, T square K x K ReLU layers with W ~ N(0, 1/K),
// for float and double, and prints the medians as a table.
//
//   mlpgrad_bench [--widths 4,8,16,32,64,256] [--depth 4] [--repeats 9] [--run-ms 20] [--threads N]
//
// --threads N (N > 1) also times value_and_grad with a pool of N threads, its runs alternating with the
// one-thread runs, and prints the speed-up. This benchmark is built with every layer split over the pool
// (MLPGRAD_SINGLE_EXAMPLE_MIN_BYTES_PER_THREAD = 1), so that the speed-up shows where a split pays: that is
// how parallel/single_example.hpp's threshold is chosen.
//
// Each measurement makes `n` calls per timed run (n sized so that a run lasts about --run-ms) and reports the
// median over --repeats runs. The work cannot be optimised away: every call is followed by a compiler barrier
// that makes all memory (the tape, the gradient buffers) observable, and ŷ and one gradient entry are written
// to a volatile sink.
#include <mlpgrad/mlpgrad.hpp>

#include "bench_timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using mlpgrad_bench::clobber_memory;
using mlpgrad_bench::sink;

struct Options {
    std::vector<std::size_t> widths = {4, 8, 16, 32, 64, 256};
    std::size_t depth = 4;
    int repeats = 9;
    double run_ms = 20.0;
    std::size_t threads = 1;
};

[[noreturn]] void usage(const char* argv0, const std::string& error) {
    if (!error.empty()) std::fprintf(stderr, "%s: error: %s\n", argv0, error.c_str());
    std::fprintf(error.empty() ? stdout : stderr,
                 "usage: %s [--widths K,K,...] [--depth T] [--repeats N] [--run-ms MS] [--threads N]\n"
                 "  Times mlpgrad's forward, backward and forward+backward (value_and_grad) in ns per call\n"
                 "  for T square K x K ReLU layers, float and double (defaults: --widths 4,8,16,32,64,256\n"
                 "  --depth 4 --repeats 9 --run-ms 20).\n",
                 argv0);
    std::exit(error.empty() ? 0 : 2);
}

long positive(const char* argv0, const char* what, const std::string& text) {
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < 1)
        usage(argv0, std::string(what) + ": expected a positive integer, got '" + text + "'");
    return v;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") usage(argv[0], "");
        const bool known = arg == "--widths" || arg == "--depth" || arg == "--repeats" || arg == "--run-ms" ||
                           arg == "--threads";
        if (!known) usage(argv[0], "unknown argument '" + arg + "'");
        if (i + 1 >= argc) usage(argv[0], arg + " needs a value");
        const std::string value = argv[++i];
        if (arg == "--widths") {
            o.widths.clear();
            std::size_t start = 0;
            while (start <= value.size()) {
                const std::size_t comma = std::min(value.find(',', start), value.size());
                const long K = positive(argv[0], "--widths", value.substr(start, comma - start));
                o.widths.push_back(static_cast<std::size_t>(K));
                start = comma + 1;
            }
        } else if (arg == "--depth") {
            o.depth = static_cast<std::size_t>(positive(argv[0], "--depth", value));
        } else if (arg == "--threads") {
            o.threads = static_cast<std::size_t>(positive(argv[0], "--threads", value));
        } else if (arg == "--repeats") {
            o.repeats = static_cast<int>(positive(argv[0], "--repeats", value));
        } else if (arg == "--run-ms") {
            char* end = nullptr;
            o.run_ms = std::strtod(value.c_str(), &end);
            if (*end != '\0' || !(o.run_ms > 0))
                usage(argv[0], "--run-ms: expected a positive number, got '" + value + "'");
        }
    }
    return o;
}

using Clock = std::chrono::steady_clock;

template <class F>
double run_ns(F& f, long n) {
    const auto t0 = Clock::now();
    for (long i = 0; i < n; ++i) {
        f();
        clobber_memory();
    }
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

// Calls per timed run: n such that n calls of f() take about `run_ms` (after one warm-up call: the first touch
// of the tape and the buffers).
template <class F>
long calibrate(F& f, const Options& o) {
    const double target = o.run_ms * 1e6;
    run_ns(f, 1);
    long n = 1;
    double elapsed = run_ns(f, n);
    while (elapsed < target) {
        const double scale = elapsed > 0 ? 1.2 * target / elapsed : 100.0;
        n = std::max(2 * n, std::min(100 * n, static_cast<long>(n * scale)));
        elapsed = run_ns(f, n);
    }
    return n;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Median ns per call of f() over `repeats` runs of about `run_ms` each.
template <class F>
double median_ns(F f, const Options& o) {
    const long n = calibrate(f, o);
    std::vector<double> per_call;
    for (int r = 0; r < o.repeats; ++r) per_call.push_back(run_ns(f, n) / static_cast<double>(n));
    return median(per_call);
}

// Median ns per call of f() and of g() over `repeats` runs each of the same n calls, the runs alternating
// (which goes first alternates too) so that both see the same load.
template <class F, class G>
std::pair<double, double> median_ns_alternating(F f, G g, const Options& o) {
    const long n = calibrate(f, o);
    run_ns(g, 1);
    std::vector<double> a, b;
    for (int r = 0; r < o.repeats; ++r) {
        if (r % 2) b.push_back(run_ns(g, n) / static_cast<double>(n));
        a.push_back(run_ns(f, n) / static_cast<double>(n));
        if (r % 2 == 0) b.push_back(run_ns(g, n) / static_cast<double>(n));
    }
    return {median(a), median(b)};
}

struct Row {
    const char* dtype;
    std::size_t K, T;
    double forward, backward, both;
    double both_one = 0, both_threads = 0;  // with --threads: value_and_grad on 1 and on N threads, alternating
};

template <class T>
Row measure(std::size_t K, const Options& o, std::mt19937_64& rng, const char* dtype) {
    const std::size_t depth = o.depth;
    std::normal_distribution<double> normal(0.0, 1.0);
    const double scale = 1.0 / std::sqrt(static_cast<double>(K));
    std::vector<std::vector<T>> weights(depth, std::vector<T>(K * K));
    for (auto& w : weights)
        for (auto& v : w) v = static_cast<T>(scale * normal(rng));
    std::vector<T> alpha(K), x(K);
    for (auto& v : alpha) v = static_cast<T>(normal(rng));
    for (auto& v : x) v = static_cast<T>(normal(rng));

    std::vector<mlpgrad::MatrixView<const T>> views;
    for (const auto& w : weights) views.push_back({w.data(), K, K});
    const mlpgrad::Network<T> net(views, {alpha.data(), K}, mlpgrad::Activation::relu);
    const mlpgrad::VectorView<const T> xv{x.data(), K};
    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> grads(net.widths(), /*keep_intermediates=*/false);  // ∂/∂W, ∂/∂α, ∂/∂x
    const auto& out = grads.view();
    const T dy = T(1);

    auto fwd = [&] { sink = static_cast<double>(mlpgrad::forward(net, xv, tape)); };
    auto bwd = [&] {
        mlpgrad::backward(net, tape, dy, out);
        sink = static_cast<double>(out.weights[0].data[0]);
    };
    auto both = [&] {
        sink = static_cast<double>(mlpgrad::value_and_grad(net, xv, tape, dy, out));
        sink = static_cast<double>(out.weights[0].data[0]);
    };
    Row row{dtype, K, depth, 0, 0, 0};
    row.forward = median_ns(fwd, o);
    mlpgrad::forward(net, xv, tape);  // backward() reads this forward pass from the tape
    row.backward = median_ns(bwd, o);
    row.both = median_ns(both, o);
    if (o.threads > 1) {
        mlpgrad::parallel::ThreadPool pool(o.threads);
        auto both_threads = [&] {
            sink = static_cast<double>(mlpgrad::value_and_grad(net, xv, tape, dy, out, &pool));
            sink = static_cast<double>(out.weights[0].data[0]);
        };
        std::tie(row.both_one, row.both_threads) = median_ns_alternating(both, both_threads, o);
    }
    return row;
}

void print_time(double ns) {
    if (ns >= 1e6)
        std::printf(" %10.3g ms", ns / 1e6);
    else if (ns >= 1e3)
        std::printf(" %10.3g us", ns / 1e3);
    else
        std::printf(" %10.3g ns", ns);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    std::printf("mlpgrad %d.%d.%d core benchmark: T = %zu square K x K ReLU layers, W ~ N(0, 1/K); median of %d runs\n"
                "of ~%g ms each; ns per call of forward(), backward() (of the recorded pass) and value_and_grad().\n\n",
                MLPGRAD_VERSION_MAJOR, MLPGRAD_VERSION_MINOR, MLPGRAD_VERSION_PATCH, o.depth, o.repeats, o.run_ms);
    std::printf("%-7s %5s %3s %10s %13s %13s %13s %14s", "dtype", "K", "T", "T*K^2", "forward", "backward",
                "fwd+bwd", "fwd+bwd/edge");
    if (o.threads > 1)
        std::printf("   (alternating:) %10s %10s%-3zu %9s", "1 thread", "threads=", o.threads, "speed-up");
    std::printf("\n");
    std::mt19937_64 rng(2024);
    for (const char* dtype : {"float", "double"}) {
        for (std::size_t K : o.widths) {
            const Row r = std::strcmp(dtype, "float") == 0 ? measure<float>(K, o, rng, dtype)
                                                            : measure<double>(K, o, rng, dtype);
            const double edges = static_cast<double>(r.T * r.K * r.K);
            std::printf("%-7s %5zu %3zu %10.0f", r.dtype, r.K, r.T, edges);
            print_time(r.forward);
            print_time(r.backward);
            print_time(r.both);
            std::printf(" %11.3g ns", r.both / edges);
            if (o.threads > 1) {
                std::printf("                 ");
                print_time(r.both_one);
                print_time(r.both_threads);
                std::printf(" %8.2fx", r.both_one / r.both_threads);
            }
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    return 0;
}
