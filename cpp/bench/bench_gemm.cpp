// mlpgrad_bench_gemm: the packed GEMM (mlpgrad/gemm) on the three products of a batch layer, in GFLOP/s and
// as a fraction of the FMA peak of one core measured in the same run (mlpgrad/gemm/peak.hpp).
//
//   mlpgrad_bench_gemm [--repeats 9] [--run-ms 30] [--threads 2]       the products at the shapes of the
//                                                                       784-256-256 and 64-64-64-64 networks
//   mlpgrad_bench_gemm --sweep        time against size at 1 and N threads: where threads start to pay
//   mlpgrad_bench_gemm --pack-a       A packed against A read in place, against the number of columns
//   mlpgrad_bench_gemm --dispatch     what a pool run costs on the critical path, with its workers awake
//                                     and asleep, and the per-thread work that pays for it
//   mlpgrad_bench_gemm --step         whole batch steps (forward_batch + backward_batch, ReLU, no biases)
//                                     of 784-256-256-1 and 256×5 at B = 256 and 32: % of peak on one
//                                     thread, and the speed-up of --threads threads over one
//
// Products of a layer with W (K_out × K_in) and a batch of B on feature-major tapes:
//   forward  U = W Z     (K_out × K_in)·(K_in × B), with the epilogue Z = relu(U)
//   dW       ∂W = ∂U Zᵀ  (K_out × B)·(B × K_in), Zᵀ read by the packing
//   dZ       ∂Z = Wᵀ ∂U  (K_in × K_out)·(K_out × B), Wᵀ read in place
// Each figure is the median over --repeats runs of about --run-ms each (and the best run); the peak is the
// best of 7 runs of 12 independent FMA chains.
#include <mlpgrad/batch.hpp>
#include <mlpgrad/gemm/gemm.hpp>
#include <mlpgrad/gemm/peak.hpp>
#include <mlpgrad/parallel/thread_pool.hpp>

#include "bench_timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using mlpgrad::MatrixView;
namespace gemm = mlpgrad::gemm;

using mlpgrad_bench::clobber_memory;
using mlpgrad_bench::sink;

struct Options {
    int repeats = 9;
    double run_ms = 30.0;
    std::size_t threads = 2;
    enum { products, sweep, pack_a, dispatch, step } mode = products;
};

[[noreturn]] void usage(const char* argv0, const std::string& error) {
    if (!error.empty()) std::fprintf(stderr, "%s: error: %s\n", argv0, error.c_str());
    std::fprintf(error.empty() ? stdout : stderr,
                 "usage: %s [--sweep | --pack-a | --dispatch | --step] [--repeats N] [--run-ms MS] [--threads N]\n"
                 "  GFLOP/s of mlpgrad's packed GEMM on the products of batch layers, against the FMA peak\n"
                 "  measured in the same run (defaults: --repeats 9 --run-ms 30 --threads 2).\n",
                 argv0);
    std::exit(error.empty() ? 0 : 2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") usage(argv[0], "");
        if (arg == "--sweep") {
            o.mode = Options::sweep;
            continue;
        }
        if (arg == "--pack-a") {
            o.mode = Options::pack_a;
            continue;
        }
        if (arg == "--step") {
            o.mode = Options::step;
            continue;
        }
        if (arg == "--dispatch") {
            o.mode = Options::dispatch;
            continue;
        }
        if (arg != "--repeats" && arg != "--run-ms" && arg != "--threads") usage(argv[0], "unknown argument '" + arg + "'");
        if (i + 1 >= argc) usage(argv[0], arg + " needs a value");
        const std::string value = argv[++i];
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        if (value.empty() || *end != '\0' || !(v > 0)) usage(argv[0], arg + ": expected a positive number, got '" + value + "'");
        if (arg == "--repeats") o.repeats = static_cast<int>(v);
        if (arg == "--run-ms") o.run_ms = v;
        if (arg == "--threads") o.threads = static_cast<std::size_t>(v);
    }
    return o;
}

// One-thread figures are timed in the process's CPU time (std::clock: no other thread runs then), so that
// time the scheduler gives to other processes on a shared machine does not count; several threads are
// timed in wall-clock time, which is what a caller waits.
enum class Time { cpu, wall };

double now_ns(Time t) {
    if (t == Time::cpu) return 1e9 * static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// std::clock as a std::chrono clock, for the peak probe.
struct ProcessCpuClock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<ProcessCpuClock>;
    static constexpr bool is_steady = true;
    static time_point now() { return time_point(duration(static_cast<rep>(now_ns(Time::cpu)))); }
};

struct Timing {
    double median_ns, best_ns;
};

template <class F>
double run_ns(F& f, long n, Time t) {
    const double t0 = now_ns(t);
    for (long i = 0; i < n; ++i) {
        f();
        clobber_memory();
    }
    return now_ns(t) - t0;
}

template <class F>
Timing time_calls(F f, const Options& o, Time t) {
    const double target = o.run_ms * 1e6;
    run_ns(f, 1, t);
    long n = 1;
    double elapsed = run_ns(f, n, t);
    while (elapsed < target) {
        const double scale = elapsed > 0 ? 1.2 * target / elapsed : 100.0;
        n = std::max(2 * n, std::min(100 * n, static_cast<long>(n * scale)));
        elapsed = run_ns(f, n, t);
    }
    std::vector<double> per_call;
    for (int r = 0; r < o.repeats; ++r) per_call.push_back(run_ns(f, n, t) / static_cast<double>(n));
    std::sort(per_call.begin(), per_call.end());
    const std::size_t m = per_call.size() / 2;
    return {per_call.size() % 2 ? per_call[m] : 0.5 * (per_call[m - 1] + per_call[m]), per_call.front()};
}

// Single calls timed one by one, median and best of `count` (a busy machine preempts long runs; the best
// call is the one that ran undisturbed). `idle_first`: sleep 2 ms before each call (a pool's workers asleep).
template <class F>
Timing single_calls(F call, int count, bool idle_first) {
    using clock = std::chrono::steady_clock;
    std::vector<double> ns;
    call();
    for (int r = 0; r < count; ++r) {
        if (idle_first) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        const auto t0 = clock::now();
        call();
        clobber_memory();
        ns.push_back(std::chrono::duration<double, std::nano>(clock::now() - t0).count());
    }
    std::sort(ns.begin(), ns.end());
    return {ns[ns.size() / 2], ns.front()};
}

template <class T>
std::vector<T> random_values(std::size_t n, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(u(rng));
    return v;
}

// The operands of one layer's three products, W (K_out × K_in) and a batch of B.
template <class T>
struct Layer {
    std::size_t K_out, K_in, B;
    std::vector<T> W, Z, U, Z_out, dU, dW, dZ;
    Layer(std::size_t k_out, std::size_t k_in, std::size_t b, std::mt19937_64& rng)
        : K_out(k_out), K_in(k_in), B(b), W(random_values<T>(k_out * k_in, rng)), Z(random_values<T>(k_in * b, rng)),
          U(k_out * b), Z_out(k_out * b), dU(random_values<T>(k_out * b, rng)), dW(k_out * k_in), dZ(k_in * b) {}

    MatrixView<const T> w() const { return {W.data(), K_out, K_in}; }
    MatrixView<const T> z() const { return {Z.data(), K_in, B}; }
    MatrixView<const T> du() const { return {dU.data(), K_out, B}; }

    void forward(const gemm::Settings<T>& s) {
        const gemm::BiasActivation<mlpgrad::Activation::relu, T> relu{nullptr, {Z_out.data(), K_out, B}};
        gemm::multiply(gemm::operand(w()), gemm::operand(z()), MatrixView<T>(U.data(), K_out, B),
                       gemm::Update::overwrite, relu, s);
    }
    void weight_gradient(const gemm::Settings<T>& s) {
        gemm::multiply(gemm::operand(du()), gemm::transposed(z()), MatrixView<T>(dW.data(), K_out, K_in),
                       gemm::Update::overwrite, gemm::Store{}, s);
    }
    void input_gradient(const gemm::Settings<T>& s) {
        gemm::multiply(gemm::transposed(w()), gemm::operand(du()), MatrixView<T>(dZ.data(), K_in, B),
                       gemm::Update::overwrite, gemm::Store{}, s);
    }
    double flops() const { return 2.0 * double(K_out) * double(K_in) * double(B); }
};

template <class T>
const char* dtype_name() {
    return sizeof(T) == 4 ? "float" : "double";
}

struct Network {
    const char* name;
    std::vector<std::size_t> widths;
};

// The three products of every layer of `net` at batch B: one thread in CPU time (the % of peak), then one
// thread and o.threads threads in wall-clock time, run alternately (the speed-up, same conditions for both).
template <class T>
void products(const Network& net, std::size_t B, double peak, const Options& o, std::mt19937_64& rng) {
    std::vector<Layer<T>> layers;
    for (std::size_t t = 0; t + 1 < net.widths.size(); ++t) layers.emplace_back(net.widths[t + 1], net.widths[t], B, rng);
    gemm::Workspace<T> workspace;
    mlpgrad::parallel::ThreadPool one(1), many(o.threads);
    double cpu_ns = 0, wall_ns[2] = {0, 0}, total_flops = 0;
    const char* names[3] = {"forward", "dW", "dZ"};
    for (auto& L : layers) {
        for (int product = 0; product < 3; ++product) {
            auto call = [&](mlpgrad::parallel::ThreadPool& pool) {
                gemm::Settings<T> s;
                s.workspace = &workspace;
                s.pool = &pool;
                return [&L, product, s] {
                    if (product == 0) L.forward(s);
                    if (product == 1) L.weight_gradient(s);
                    if (product == 2) L.input_gradient(s);
                };
            };
            const Timing cpu = time_calls(call(one), o, Time::cpu);
            cpu_ns += cpu.median_ns;
            const double gf = L.flops() / cpu.median_ns, best = L.flops() / cpu.best_ns;
            std::printf("%-6s %-13s B=%-4zu layer %zux%-4zu %-8s %9.1f us %7.1f GFLOP/s %5.1f %% peak (best %5.1f %%)",
                        dtype_name<T>(), net.name, B, L.K_out, L.K_in, names[product], cpu.median_ns / 1e3, gf,
                        100 * gf * 1e9 / peak, 100 * best * 1e9 / peak);
            if (o.threads >= 2) {
                // Alternate short runs of both, so that load from other processes hits both alike.
                Options shorter = o;
                shorter.repeats = 1;
                std::vector<double> w1, w2;
                for (int r = 0; r < o.repeats; ++r) {
                    w1.push_back(time_calls(call(one), shorter, Time::wall).median_ns);
                    w2.push_back(time_calls(call(many), shorter, Time::wall).median_ns);
                }
                std::sort(w1.begin(), w1.end());
                std::sort(w2.begin(), w2.end());
                const double m1 = w1[w1.size() / 2], m2 = w2[w2.size() / 2];
                wall_ns[0] += m1;
                wall_ns[1] += m2;
                std::printf("  wall 1 thread %8.1f us, %zu threads %8.1f us: %4.2fx (best %4.2fx)", m1 / 1e3, o.threads,
                            m2 / 1e3, m1 / m2, w1.front() / w2.front());
            }
            std::printf("\n");
            std::fflush(stdout);
        }
        total_flops += 3 * L.flops();
    }
    const double gf = total_flops / cpu_ns;
    std::printf("%-6s %-13s B=%-4zu all products       %9.1f us %7.1f GFLOP/s %5.1f %% peak", dtype_name<T>(), net.name,
                B, cpu_ns / 1e3, gf, 100 * gf * 1e9 / peak);
    if (o.threads >= 2)
        std::printf("  wall 1 thread %8.1f us, %zu threads %8.1f us: %4.2fx", wall_ns[0] / 1e3, o.threads,
                    wall_ns[1] / 1e3, wall_ns[0] / wall_ns[1]);
    std::printf("\n\n");
}

// Square layers K × K at batch B, all three products, at 1 and o.threads threads with every product split
// (min_flops_per_thread = 0), to find where threads start to pay. Single calls back to back (the workers
// awake, as between the products of a batch step), wall-clock time, median and best.
template <class T>
void sweep(const Options& o, std::mt19937_64& rng) {
    std::printf("%-6s %5s %5s %-8s %11s %21s %21s %15s\n", "dtype", "K", "B", "product", "flops", "1 thread us (best)",
                "N threads us (best)", "speedup (best)");
    mlpgrad::parallel::ThreadPool one(1), many(o.threads);
    gemm::Workspace<T> workspace;
    const char* names[3] = {"forward", "dW", "dZ"};
    for (std::size_t B : {32, 256})
        for (std::size_t K : {16, 32, 48, 64, 96, 128, 192, 256, 384}) {
            Layer<T> L(K, K, B, rng);
            for (int product = 0; product < 3; ++product) {
                Timing t[2];
                for (int threaded = 0; threaded < 2; ++threaded) {
                    gemm::Settings<T> s;
                    s.workspace = &workspace;
                    s.pool = threaded ? &many : &one;
                    s.min_flops_per_thread = 0;
                    t[threaded] = single_calls(
                        [&] {
                            if (product == 0) L.forward(s);
                            if (product == 1) L.weight_gradient(s);
                            if (product == 2) L.input_gradient(s);
                        },
                        20 * o.repeats, false);
                }
                std::printf("%-6s %5zu %5zu %-8s %11.0f %10.2f (%8.2f) %10.2f (%8.2f) %6.2f (%6.2f)\n", dtype_name<T>(), K,
                            B, names[product], L.flops(), t[0].median_ns / 1e3, t[0].best_ns / 1e3,
                            t[1].median_ns / 1e3, t[1].best_ns / 1e3, t[0].median_ns / t[1].median_ns,
                            t[0].best_ns / t[1].best_ns);
                std::fflush(stdout);
            }
        }
}

// The pool's cost on the critical path: N tasks of a fixed amount of FMA work (about `task_us` each) on
// N threads, minus one task's time alone. Warm: runs back to back (workers spinning); cold: after 2 ms
// idle (workers asleep). A split into N parts pays when each part takes longer than this overhead, so the
// per-thread threshold is overhead × the one-core GEMM rate.
void dispatch(double peak_f, const Options& o) {
    using clock = std::chrono::steady_clock;
    mlpgrad::parallel::ThreadPool pool(o.threads);
    const std::size_t n = pool.size();
    // Calibrate a task of ~20 us: FMA chains at the core's peak.
    std::size_t steps = 1000;
    for (;;) {
        const auto t0 = clock::now();
        sink = sink + gemm::detail::fma_chains<float, 12>(steps, 1.0f);
        if (std::chrono::duration<double, std::micro>(clock::now() - t0).count() > 20 || steps > (1u << 30)) break;
        steps *= 2;
    }
    auto task = [&](std::size_t) { sink = sink + gemm::detail::fma_chains<float, 12>(steps, 1.0f); };
    const Timing alone = single_calls([&] { task(0); }, 20 * o.repeats, false);
    const Timing warm = single_calls([&] { pool.run(n, task); }, 20 * o.repeats, false);
    const Timing cold = single_calls([&] { pool.run(n, task); }, 20 * o.repeats, true);
    std::printf("one task alone: %.2f us (median), %.2f us (best)\n", alone.median_ns / 1e3, alone.best_ns / 1e3);
    std::printf("%zu tasks on %zu threads, workers awake:  %.2f us (median), %.2f us (best): overhead %.2f us (best)\n",
                n, n, warm.median_ns / 1e3, warm.best_ns / 1e3, (warm.best_ns - alone.best_ns) / 1e3);
    std::printf("%zu tasks on %zu threads, workers asleep: %.2f us (median), %.2f us (best): overhead %.2f us (best)\n",
                n, n, cold.median_ns / 1e3, cold.best_ns / 1e3, (cold.best_ns - alone.best_ns) / 1e3);
    const double gemm_rate = 0.85 * peak_f;  // float GEMM at ~85 % of the FMA peak
    std::printf("per-thread work that pays for the overhead at %.0f GFLOP/s: awake %.0f flops, asleep %.0f flops\n",
                gemm_rate / 1e9, gemm_rate * (warm.best_ns - alone.best_ns) * 1e-9,
                gemm_rate * (cold.best_ns - alone.best_ns) * 1e-9);
}

// A packed against A in place, one thread, for the forward and dW products of a 256-wide layer, by B.
template <class T>
void pack_a(double peak, const Options& o, std::mt19937_64& rng) {
    std::printf("%-6s %-8s %5s %14s %14s %8s\n", "dtype", "product", "N", "packed %peak", "in place %peak", "ratio");
    gemm::Workspace<T> workspace;
    for (std::size_t B : {16, 32, 64, 128, 256, 512, 1024}) {
        Layer<T> L(256, 784, B, rng);
        for (int product = 0; product < 2; ++product) {
            double ns[2];
            for (int packed = 0; packed < 2; ++packed) {
                gemm::Settings<T> s;
                s.workspace = &workspace;
                s.pack_a_min_columns = s.pack_a_transposed_min_columns = packed ? 0 : static_cast<std::size_t>(-1);
                ns[packed] = time_calls([&] { product == 0 ? L.forward(s) : L.input_gradient(s); }, o, Time::cpu).median_ns;
            }
            const double fraction = L.flops() * 1e9 / peak;
            std::printf("%-6s %-8s %5zu %13.1f%% %13.1f%% %8.2f\n", dtype_name<T>(), product == 0 ? "forward" : "dZ", B,
                        100 * fraction / ns[1], 100 * fraction / ns[0], ns[0] / ns[1]);
            std::fflush(stdout);
        }
    }
}

// A whole training step, forward_batch then backward_batch with parameter gradients and ∂X, of a ReLU
// network without biases: one thread in CPU time (the % of peak; flops = 2 per multiply-add of the 3T - 1
// layer products, the output layer's thin products not counted), then one thread and o.threads threads
// alternately in wall-clock time (the speed-up).
template <class T>
void step(const Network& shape, std::size_t B, double peak, const Options& o, std::mt19937_64& rng) {
    const std::vector<std::size_t>& K = shape.widths;
    std::vector<std::vector<T>> W;
    std::vector<MatrixView<const T>> views;
    for (std::size_t t = 0; t + 1 < K.size(); ++t) {
        W.push_back(random_values<T>(K[t + 1] * K[t], rng));
        for (auto& w : W.back()) w = static_cast<T>(w / std::sqrt(double(K[t])));
        views.push_back({W.back().data(), K[t + 1], K[t]});
    }
    const std::vector<T> alpha = random_values<T>(K.back(), rng), X = random_values<T>(B * K[0], rng), dy(B, T(1));
    const mlpgrad::Network<T> net(views, mlpgrad::VectorView<const T>(alpha.data(), alpha.size()),
                                  mlpgrad::Activation::relu);
    mlpgrad::BatchTape<T> tape;
    mlpgrad::BatchGradients<T> grads(net, B);
    std::vector<T> yhat(B);
    double flops = 0;
    for (std::size_t t = 0; t + 1 < K.size(); ++t) flops += 3.0 * 2.0 * double(K[t + 1] * K[t] * B);
    mlpgrad::parallel::ThreadPool one(1), many(o.threads);
    auto call = [&](mlpgrad::parallel::ThreadPool* pool) {
        return [&, pool] {
            mlpgrad::forward_batch(net, MatrixView<const T>(X.data(), B, K[0]), tape,
                                   mlpgrad::VectorView<T>(yhat.data(), B), pool);
            mlpgrad::backward_batch(net, tape, mlpgrad::VectorView<const T>(dy.data(), B), grads.view(), pool);
        };
    };
    const Timing cpu = time_calls(call(nullptr), o, Time::cpu);
    const double gf = flops / cpu.median_ns;
    std::printf("%-6s %-13s B=%-4zu step %9.1f us %7.1f GFLOP/s %5.1f %% peak (best %5.1f %%)", dtype_name<T>(),
                shape.name, B, cpu.median_ns / 1e3, gf, 100 * gf * 1e9 / peak, 100 * flops / cpu.best_ns * 1e9 / peak);
    if (o.threads >= 2) {
        Options shorter = o;
        shorter.repeats = 1;
        std::vector<double> w1, w2;
        for (int r = 0; r < o.repeats; ++r) {
            w1.push_back(time_calls(call(&one), shorter, Time::wall).median_ns);
            w2.push_back(time_calls(call(&many), shorter, Time::wall).median_ns);
        }
        std::sort(w1.begin(), w1.end());
        std::sort(w2.begin(), w2.end());
        const double m1 = w1[w1.size() / 2], m2 = w2[w2.size() / 2];
        std::printf("  wall 1 thread %8.1f us, %zu threads %8.1f us: %4.2fx (best %4.2fx)", m1 / 1e3, o.threads, m2 / 1e3,
                    m1 / m2, w1.front() / w2.front());
    }
    std::printf("\n");
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    std::mt19937_64 rng(2024);
    const double peak_f = gemm::fma_peak_flops<float, ProcessCpuClock>(),
                 peak_d = gemm::fma_peak_flops<double, ProcessCpuClock>();
    std::printf("FMA peak of one core, measured now: float %.1f GFLOP/s, double %.1f GFLOP/s (vector %u bytes)\n",
                peak_f / 1e9, peak_d / 1e9, unsigned(MLPGRAD_SIMD_BYTES));
    std::printf("median of %d runs of ~%g ms; %% peak = median GFLOP/s over the one-core peak\n\n", o.repeats, o.run_ms);
    if (o.mode == Options::sweep) {
        sweep<float>(o, rng);
        sweep<double>(o, rng);
        return 0;
    }
    if (o.mode == Options::dispatch) {
        dispatch(peak_f, o);
        return 0;
    }
    if (o.mode == Options::step) {
        const Network nets[] = {{"784-256-256-1", {784, 256, 256}}, {"256x5", {256, 256, 256, 256, 256}}};
        for (const auto& net : nets)
            for (std::size_t B : {256, 32}) {
                step<float>(net, B, peak_f, o, rng);
                step<double>(net, B, peak_d, o, rng);
            }
        return 0;
    }
    if (o.mode == Options::pack_a) {
        pack_a<float>(peak_f, o, rng);
        pack_a<double>(peak_d, o, rng);
        return 0;
    }
    const Network nets[] = {{"784-256-256", {784, 256, 256}}, {"64-64-64-64", {64, 64, 64, 64}}};
    for (const auto& net : nets)
        for (std::size_t B : {256, 32}) {
            products<float>(net, B, peak_f, o, rng);
            products<double>(net, B, peak_d, o, rng);
        }
    sink = sink + 0.0;
    return 0;
}
