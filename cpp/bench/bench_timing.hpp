// What the timing loops of the C++ benchmarks share: a sink the measured results are written to and a compiler
// barrier, so that the timed work can be neither optimised away nor hoisted out of the loop.
#pragma once

#include <atomic>

namespace mlpgrad_bench {

// Written with each call's result (ŷ, one gradient entry): the compiler must compute what goes into it.
inline volatile double sink = 0.0;

// The compiler must assume that every byte of memory may be read after this point (so stores into the tape and
// the gradients happen) and may have changed (so nothing is hoisted out of the timing loop).
inline void clobber_memory() {
#if defined(__GNUC__) || defined(__clang__)
    asm volatile("" : : : "memory");
#else
    std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace mlpgrad_bench
