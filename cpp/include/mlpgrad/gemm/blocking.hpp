// Block sizes of the packed GEMM, derived from the cache sizes (the formulas are in blocking_for()), and the
// register block of the micro-kernel, derived from the vector width.
#pragma once

#include <algorithm>
#include <cstddef>

#include "../simd.hpp"

namespace mlpgrad {
namespace gemm {

// The register block: the micro-kernel keeps an mr × nr tile of C in mr · nv vector registers, nr = nv · V.
// mr · nv accumulators + nv values of B + 1 broadcast of A must fit, and mr · nv ≥ FMA latency × FMA ports
// (4 × 2 on current x86) independent chains hide the latency. With 16 vector registers (AVX2, SSE2):
// 6 × 2 = 12 accumulators + 3 = 15 registers, 6 × 16 for float and 6 × 8 for double on AVX2. With 32
// (AVX-512VL, AArch64): 6 × 4 = 24 + 5 = 29, which loads 10 values per 24 FMAs instead of 8 per 12 (measured
// against 6 × 2 on Zen 4: README, "Batches: the packed GEMM and threads").
template <class T>
struct RegisterBlock {
    static constexpr std::size_t vector = simd::Vec<T>::size;
    static constexpr std::size_t nv = MLPGRAD_SIMD_REGISTERS >= 32 ? 4 : 2;
    static constexpr std::size_t mr = 6;
    static constexpr std::size_t nr = nv * vector;
};

// Data-cache sizes in bytes of one core (L1, L2) and of the last level (L3) with the number of cores that
// share it. The defaults are the machine mlpgrad is tuned on (AMD EPYC: 32 KiB L1d, 1 MiB L2 per core,
// 32 MiB L3 for 2 cores); smaller caches give smaller blocks, never wrong results.
struct CacheSizes {
    std::size_t l1 = 32 * 1024;
    std::size_t l2 = 1024 * 1024;
    std::size_t l3 = 32 * 1024 * 1024;
    std::size_t l3_sharers = 2;
};

// Goto's loop nest blocks C = A B as: jc over nc columns (a kc × nc panel of B, packed, stays in L3),
// pc over kc of the depth, ic over mc rows (an mc × kc block of A, packed, stays in L2), then the
// micro-kernel over mr × nr tiles, each reading one kc × nr micro-panel of B (kept in L1) and one mr × kc
// micro-panel of A.
struct Blocking {
    std::size_t mr, nr;  // the register block
    std::size_t kc;      // depth of one packed block; also the length of every in-register partial sum
    std::size_t mc;      // rows of A packed at once
    std::size_t nc;      // columns of B packed at once
};

namespace detail {
inline std::size_t round_down(std::size_t n, std::size_t multiple, std::size_t at_least) {
    return std::max(at_least, n - n % multiple);
}
}  // namespace detail

// Each level holds the block that is reused from it, using half of the level so that the operands streamed
// through it (and C) do not evict the block (the rule of thumb of the BLIS analytical model):
//   kc = (L1 / 2) / (nr · sizeof T)            the kc × nr micro-panel of B in half of L1, rounded down to 8;
//   mc = (L2 / 2) / (kc · sizeof T)            the mc × kc block of A in half of L2, rounded down to mr;
//   nc = (L3 / (2 · sharers)) / (kc · sizeof T) the kc × nc panel of B in this core's half share of L3,
//                                              rounded down to nr.
// For AVX2 and the default caches: float kc = 256, mc = 510, nc = 8192; double kc = 256, mc = 252, nc = 4096
// (BLIS's Haswell/Zen kernels use kc = 256 too); with the 6 × 4-vector block of 32 registers, kc = 128,
// mc = 1020 (float) / 510 (double), nc = 16,384 / 8,192. kc is also what keeps float32 sums accurate: each in-register
// sum has at most kc terms, and the partial sums of the K / kc blocks are added to C in order.
template <class T>
Blocking blocking_for(const CacheSizes& caches = {}) {
    using RB = RegisterBlock<T>;
    Blocking b{};
    b.mr = RB::mr;
    b.nr = RB::nr;
    b.kc = detail::round_down(caches.l1 / 2 / (RB::nr * sizeof(T)), 8, 8);
    b.mc = detail::round_down(caches.l2 / 2 / (b.kc * sizeof(T)), RB::mr, RB::mr);
    const std::size_t sharers = std::max<std::size_t>(1, caches.l3_sharers);
    b.nc = detail::round_down(caches.l3 / (2 * sharers) / (b.kc * sizeof(T)), RB::nr, RB::nr);
    return b;
}

// The depth K cut into blocks of at most kc, all of (nearly) the same length: K = 784 with kc = 256 gives
// 4 blocks of 196, not 3 of 256 and a short one of 16 that would run the micro-kernel at a fraction of its
// speed. Depends on K and kc only, so every element of C is summed in the same order whatever the threads.
struct DepthBlocks {
    std::size_t count, base, longer;  // `longer` of the blocks have base + 1 terms, the rest base
    DepthBlocks(std::size_t K, std::size_t kc) {
        count = K == 0 ? 0 : (K + kc - 1) / kc;
        base = count ? K / count : 0;
        longer = count ? K % count : 0;
    }
    std::size_t begin(std::size_t p) const { return p * base + std::min(p, longer); }
    std::size_t length(std::size_t p) const { return base + (p < longer ? 1 : 0); }
};

}  // namespace gemm
}  // namespace mlpgrad
