// The micro-kernel: one mr × nr tile of C from kc rank-1 updates, with the whole tile in vector registers.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include "../simd.hpp"
#include "blocking.hpp"
#include "epilogue.hpp"

namespace mlpgrad {
namespace gemm {

// C[r][j] (+)= Σ_{k < kc} A(r, k) b[k][j] for r < R, j < nr (R ≤ mr), where b is a packed micro-panel of
// B (nr contiguous values per k) and A(r, k) = a[r · a_row + k · a_depth]. Packed = true: a is a packed
// micro-panel of A (a_row = 1, a_depth = mr, known at compile time); false: A read in place, for products
// where packing it would cost more than it saves (see gemm.hpp). Each element of C is one lane of one
// accumulator, summed over k in order: the same arithmetic for every R and either form of A.
//
// With an epilogue (non-null; the tile is whole and final: R rows, nr columns, row0 and col0 its place in C),
// each row of the tile gets epilogue->tile_row(row0 + r, col0, c + r · ldc, x) on its nv vectors x in
// registers before they are stored (epilogue.hpp): the tile is not stored, loaded back and stored again.
//
// Out of line, the accumulator loops fully unrolled and the B values pinned in registers: otherwise GCC may
// keep accumulators on the stack or re-load B as a memory operand of every FMA (see simd.hpp).
template <class T, std::size_t R, bool Packed, class Epilogue = Store>
MLPGRAD_NOINLINE void microkernel(std::size_t kc, const T* a, std::size_t a_row, std::size_t a_depth, const T* b,
                                  T* c, std::size_t ldc, bool add, const Epilogue* epilogue = nullptr,
                                  std::size_t row0 = 0, std::size_t col0 = 0) {
    using simd::Vec;
    using RB = RegisterBlock<T>;
    constexpr std::size_t V = RB::vector, NV = RB::nv, NR = RB::nr;
    static_assert(R >= 1 && R <= RB::mr, "R rows of at most mr");
    const std::size_t row = Packed ? 1 : a_row, depth = Packed ? RB::mr : a_depth;
    // The tile of C is read (add) or written only after the kc steps: asking for its lines now hides the
    // latency of a C that has left L2 (a product with several depth blocks revisits all of C per block).
    MLPGRAD_UNROLL
    for (std::size_t r = 0; r < R; ++r) {
        simd::prefetch_for_write(c + r * ldc);
        if ((NR * sizeof(T)) > 64) simd::prefetch_for_write(c + r * ldc + NR - 1);
        if constexpr (epilogue_in_registers<Epilogue>)
            if (epilogue) epilogue->prefetch_row(row0 + r, col0);
    }
    Vec<T> acc[R][NV];
    MLPGRAD_UNROLL
    for (std::size_t r = 0; r < R; ++r) {
        MLPGRAD_UNROLL
        for (std::size_t v = 0; v < NV; ++v) acc[r][v] = Vec<T>::zero();
    }
    for (std::size_t k = 0; k < kc; ++k) {
        Vec<T> bk[NV];
        MLPGRAD_UNROLL
        for (std::size_t v = 0; v < NV; ++v) {
            bk[v] = Vec<T>::load(b + v * V);
            bk[v].pin();
        }
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) {
            const auto ar = Vec<T>::broadcast(a[r * row]);
            MLPGRAD_UNROLL
            for (std::size_t v = 0; v < NV; ++v) acc[r][v] = simd::fma(ar, bk[v], acc[r][v]);
        }
        a += depth;
        b += NR;
    }
    MLPGRAD_UNROLL
    for (std::size_t r = 0; r < R; ++r) {
        T* out = c + r * ldc;
        if (add) {
            MLPGRAD_UNROLL
            for (std::size_t v = 0; v < NV; ++v) acc[r][v] = acc[r][v] + Vec<T>::load(out + v * V);
        }
        if constexpr (epilogue_in_registers<Epilogue>)
            if (epilogue) epilogue->tile_row(row0 + r, col0, out, acc[r]);
        MLPGRAD_UNROLL
        for (std::size_t v = 0; v < NV; ++v) acc[r][v].store(out + v * V);
    }
}

// The kernel for R = m rows (1 ≤ m ≤ mr) of A read in place; packed A is zero-padded to mr rows instead.
template <class T, class Epilogue = Store>
using Microkernel = void (*)(std::size_t, const T*, std::size_t, std::size_t, const T*, T*, std::size_t, bool,
                             const Epilogue*, std::size_t, std::size_t);

namespace detail {
template <class T, class Epilogue, std::size_t... R>
Microkernel<T, Epilogue> unpacked_microkernel_of(std::size_t m, std::index_sequence<R...>) {
    static constexpr Microkernel<T, Epilogue> kernels[] = {&microkernel<T, R + 1, false, Epilogue>...};
    return kernels[std::min(m, sizeof...(R)) - 1];
}
}  // namespace detail

template <class T, class Epilogue = Store>
Microkernel<T, Epilogue> unpacked_microkernel(std::size_t m) {
    return detail::unpacked_microkernel_of<T, Epilogue>(std::max<std::size_t>(m, 1),
                                                        std::make_index_sequence<RegisterBlock<T>::mr>{});
}

}  // namespace gemm
}  // namespace mlpgrad
