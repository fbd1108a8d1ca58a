// An FMA-peak probe: the multiply-add rate one thread reaches when nothing but independent FMA chains run,
// so that a benchmark can state the physical limit of the core it measures on, in the same run.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

#include "../simd.hpp"

namespace mlpgrad {
namespace gemm {

namespace detail {

// `chains` independent dependency chains of vector FMAs, `steps` FMAs each. Enough chains cover FMA latency ×
// FMA ports (4 × 2 on current x86: 8), so the ports, not the latency, bound the rate; 12 leave registers
// for the two multiplier constants with 16 vector registers. x ← x·m + c with m just below 1 and c small
// stays normal and finite forever. Returns a lane sum so that nothing is optimised away.
template <class T, std::size_t Chains>
MLPGRAD_NOINLINE T fma_chains(std::size_t steps, T seed) {
    using simd::Vec;
    Vec<T> x[Chains];
    MLPGRAD_UNROLL
    for (std::size_t i = 0; i < Chains; ++i) x[i] = Vec<T>::broadcast(seed + T(i));
    auto m = Vec<T>::broadcast(T(0.999)), c = Vec<T>::broadcast(T(0.001));
    m.pin();
    c.pin();
    for (std::size_t s = 0; s < steps; ++s) {
        MLPGRAD_UNROLL
        for (std::size_t i = 0; i < Chains; ++i) x[i] = simd::fma(x[i], m, c);
        MLPGRAD_UNROLL
        for (std::size_t i = 0; i < Chains; ++i) x[i].pin();
    }
    Vec<T> sum = Vec<T>::zero();
    MLPGRAD_UNROLL
    for (std::size_t i = 0; i < Chains; ++i) sum = sum + x[i];
    return simd::horizontal_sum(sum);
}

}  // namespace detail

// The best FMA rate of `repeats` runs of about `run` each, in floating-point operations per second
// (one FMA lane = 2 operations), for one thread, timed by `Clock` (a std::chrono clock; a CPU-time clock
// keeps other processes on a shared machine out of the figure).
template <class T, class Clock = std::chrono::steady_clock>
double fma_peak_flops(std::chrono::duration<double> run = std::chrono::milliseconds(20), int repeats = 7) {
    using clock = Clock;
    constexpr std::size_t chains = 12;
    volatile T sink = T(0);
    std::size_t steps = 1024;
    // Grow the run until it lasts long enough to time.
    for (;;) {
        const auto t0 = clock::now();
        sink = sink + detail::fma_chains<T, chains>(steps, T(1));
        if (clock::now() - t0 >= run / 4 || steps > (std::size_t(1) << 40)) break;
        steps *= 2;
    }
    double best = 0;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = clock::now();
        sink = sink + detail::fma_chains<T, chains>(steps, T(1) + T(r));
        const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
        best = std::max(best, 2.0 * double(chains * simd::Vec<T>::size) * double(steps) / seconds);
    }
    return best;
}

}  // namespace gemm
}  // namespace mlpgrad
