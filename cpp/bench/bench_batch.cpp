// mlpgrad_bench_batch: a batch training step (forward_batch + backward_batch, parameter gradients only unless
// --input-gradient 1) over a grid of small networks, in µs per step. Built with
// -DMLPGRAD_BENCH_BASELINE_INCLUDE=<the cpp/include of another build> (e.g. a `git worktree` of an older
// commit), it times that build's step too, alternating the two run by run in one process, and prints the
// ratio baseline ÷ current (above 1: the current headers are faster).
//
//   mlpgrad_bench_batch [--nets 64-100,64-64-64-64,32-32,10-100] [--outputs 1,10] [--batches 32,64,200,1000]
//                       [--dtypes float,double] [--biases 0,1] [--input-gradient 0] [--threads 1]
//                       [--repeats 7] [--run-ms 10] [--steps N]
//
// A net K_0-K_1-...-K_T has ReLU layers of those widths; --outputs gives m. Each cell is the median over
// --repeats runs of n steps (n sized so that a run lasts about --run-ms); with a baseline, the runs of the two
// builds alternate (which one goes first alternates too), so both see the same load. --steps N fixes n (no
// calibration), so that both builds run 3 + repeats · N steps: for instruction counts under valgrind.
#include "bench_batch_step.hpp"
#include "bench_timing.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using mlpgrad_bench::BatchCase;
using mlpgrad_bench::Step;

struct Options {
    std::vector<std::vector<std::size_t>> nets = {{64, 100}, {64, 64, 64, 64}, {32, 32}, {10, 100}};
    std::vector<std::size_t> outputs = {1, 10}, batches = {32, 64, 200, 1000}, biases = {0, 1};
    std::vector<std::string> dtypes = {"float", "double"};
    bool input_gradient = false;
    std::size_t threads = 1;
    int repeats = 7;
    double run_ms = 10.0;
    std::size_t steps = 0;  // 0: calibrated from --run-ms
};

[[noreturn]] void usage(const char* argv0, const std::string& error) {
    if (!error.empty()) std::fprintf(stderr, "%s: error: %s\n", argv0, error.c_str());
    std::fprintf(error.empty() ? stdout : stderr,
                 "usage: %s [--nets K-K-...,...] [--outputs M,...] [--batches B,...] [--dtypes float,double]\n"
                 "          [--biases 0,1] [--input-gradient 0|1] [--threads N] [--repeats N] [--run-ms MS] [--steps N]\n"
                 "  Times forward_batch + backward_batch in us per step over the grid (ReLU layers), against the\n"
                 "  baseline headers too when built with MLPGRAD_BENCH_BASELINE_INCLUDE.\n",
                 argv0);
    std::exit(error.empty() ? 0 : 2);
}

std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(separator, start), text.size());
        parts.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return parts;
}

std::size_t natural(const char* argv0, const std::string& what, const std::string& text, long least) {
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < least)
        usage(argv0, what + ": expected an integer ≥ " + std::to_string(least) + ", got '" + text + "'");
    return static_cast<std::size_t>(v);
}

std::vector<std::size_t> naturals(const char* argv0, const std::string& what, const std::string& text, long least) {
    std::vector<std::size_t> out;
    for (const auto& part : split(text, ',')) out.push_back(natural(argv0, what, part, least));
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") usage(argv[0], "");
        if (i + 1 >= argc) usage(argv[0], arg + " needs a value");
        const std::string value = argv[++i];
        if (arg == "--nets") {
            o.nets.clear();
            for (const auto& net : split(value, ',')) {
                std::vector<std::size_t> widths;
                for (const auto& w : split(net, '-')) widths.push_back(natural(argv[0], "--nets", w, 1));
                if (widths.size() < 2) usage(argv[0], "--nets: a net needs at least K_0-K_1, got '" + net + "'");
                o.nets.push_back(widths);
            }
        } else if (arg == "--outputs") {
            o.outputs = naturals(argv[0], arg, value, 1);
        } else if (arg == "--batches") {
            o.batches = naturals(argv[0], arg, value, 1);
        } else if (arg == "--biases") {
            o.biases = naturals(argv[0], arg, value, 0);
        } else if (arg == "--dtypes") {
            o.dtypes = split(value, ',');
            for (const auto& d : o.dtypes)
                if (d != "float" && d != "double") usage(argv[0], "--dtypes: float or double, got '" + d + "'");
        } else if (arg == "--input-gradient") {
            o.input_gradient = natural(argv[0], arg, value, 0) != 0;
        } else if (arg == "--threads") {
            o.threads = natural(argv[0], arg, value, 1);
        } else if (arg == "--repeats") {
            o.repeats = static_cast<int>(natural(argv[0], arg, value, 1));
        } else if (arg == "--steps") {
            o.steps = natural(argv[0], arg, value, 1);
        } else if (arg == "--run-ms") {
            char* end = nullptr;
            o.run_ms = std::strtod(value.c_str(), &end);
            if (*end != '\0' || !(o.run_ms > 0)) usage(argv[0], "--run-ms: expected a positive number, got '" + value + "'");
        } else {
            usage(argv[0], "unknown argument '" + arg + "'");
        }
    }
    return o;
}

using Clock = std::chrono::steady_clock;

double run_ns(Step& step, long n) {
    const auto t0 = Clock::now();
    for (long i = 0; i < n; ++i) {
        step.run();
        mlpgrad_bench::clobber_memory();
    }
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string name(const std::vector<std::size_t>& widths, std::size_t m) {
    std::string s;
    for (auto w : widths) s += std::to_string(w) + "-";
    return s + std::to_string(m);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    const bool has_baseline = mlpgrad_bench::make_baseline_step(BatchCase{{1, 1}, 1, 1, false, false, false}) != nullptr;
    std::printf("# forward_batch + backward_batch (%s), ReLU, us per step, median of %d runs of ~%g ms; current on "
                "%zu thread(s)%s\n",
                o.input_gradient ? "with dX" : "parameter gradients only", o.repeats, o.run_ms, o.threads,
                has_baseline ? "; baseline on 1 thread, runs alternated; ratio = baseline / current" : "");
    std::printf("%-6s %-18s %4s %5s %12s %12s %7s\n", "dtype", "widths-m", "bias", "B", "baseline_us", "current_us",
                "ratio");
    for (const auto& dtype : o.dtypes)
        for (const auto& widths : o.nets)
            for (std::size_t m : o.outputs)
                for (std::size_t bias : o.biases)
                    for (std::size_t B : o.batches) {
                        const BatchCase c{widths, m, B, bias != 0, o.input_gradient, dtype == "double"};
                        const auto current = mlpgrad_bench::make_current_step(c, o.threads);
                        const auto baseline = mlpgrad_bench::make_baseline_step(c);
                        run_ns(*current, 3);  // warm up: first touch of the tape, buffers, pool
                        if (baseline) run_ns(*baseline, 3);
                        long n = o.steps ? static_cast<long>(o.steps) : 1;
                        for (double t = o.steps ? o.run_ms * 1e6 : run_ns(*current, n); t < o.run_ms * 1e6;
                             t = run_ns(*current, n))
                            n = std::max(2 * n, static_cast<long>(n * 1.2 * o.run_ms * 1e6 / std::max(t, 1.0)));
                        std::vector<double> now, before;
                        for (int r = 0; r < o.repeats; ++r) {
                            if (baseline && r % 2) before.push_back(run_ns(*baseline, n) / double(n));
                            now.push_back(run_ns(*current, n) / double(n));
                            if (baseline && r % 2 == 0) before.push_back(run_ns(*baseline, n) / double(n));
                        }
                        const double cur = median(now) / 1e3;
                        if (baseline) {
                            const double base = median(before) / 1e3;
                            std::printf("%-6s %-18s %4zu %5zu %12.2f %12.2f %7.3f\n", dtype.c_str(),
                                        name(widths, m).c_str(), bias, B, base, cur, base / cur);
                        } else {
                            std::printf("%-6s %-18s %4zu %5zu %12s %12.2f %7s\n", dtype.c_str(),
                                        name(widths, m).c_str(), bias, B, "-", cur, "-");
                        }
                        std::fflush(stdout);
                    }
    return 0;
}
