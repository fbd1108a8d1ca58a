// Strided operands and the routines that pack blocks of them into the micro-kernel's contiguous panels.
// Transposition is only a pair of strides: the packing reads a transposed operand where it lies, so no
// explicit transpose pass over a tape is needed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "../simd.hpp"
#include "../views.hpp"
#include "blocking.hpp"

namespace mlpgrad {
namespace gemm {

// A read-only matrix operand: element (i, j) is data[i · row_stride + j · col_stride].
template <class T>
struct Operand {
    const T* data = nullptr;
    std::size_t rows = 0, cols = 0;
    std::size_t row_stride = 0, col_stride = 0;

    const T* at(std::size_t i, std::size_t j) const { return data + i * row_stride + j * col_stride; }
    Operand transposed() const { return {data, cols, rows, col_stride, row_stride}; }
};

// A row-major matrix as an operand, and its transpose (read in place).
template <class T>
Operand<T> operand(MatrixView<const T> m) {
    return {m.data, m.rows, m.cols, m.cols, 1};
}
template <class T>
Operand<T> transposed(MatrixView<const T> m) {
    return operand(m).transposed();
}

// Elements from one packed micro-panel of B to the next: kc · nr, and one cache line more when that is a
// multiple of 512 bytes. pack_b writes row k of every panel in turn, and panels a power of two apart put all
// those rows into one set of L1 (measured, float64 with kc = 128: 0.47 ns per packed element, 3× a memcpy).
template <class T>
constexpr std::size_t b_panel_stride(std::size_t kc) {
    constexpr std::size_t NR = RegisterBlock<T>::nr, line = 64 / sizeof(T) ? 64 / sizeof(T) : 1;
    return kc * NR + ((kc * NR * sizeof(T)) % 512 == 0 ? line : 0);
}

// B(k0.., j0..) of kc × n into ⌈n / nr⌉ micro-panels of kc × nr: dst[p · S + k · nr + j] = B(k0 + k, j0 + p ·
// nr + j) with S = b_panel_stride(kc), zero past column n so the micro-kernel always computes full tiles.
template <class T>
void pack_b(Operand<T> B, std::size_t k0, std::size_t kc, std::size_t j0, std::size_t n, T* dst) {
    using simd::Vec;
    constexpr std::size_t NR = RegisterBlock<T>::nr, V = RegisterBlock<T>::vector, NV = RegisterBlock<T>::nv;
    const std::size_t whole = n / NR, rest = n % NR, stride = b_panel_stride<T>(kc);
    if (B.col_stride == 1) {
        // Row-major B (Z for U = W Z, ∂U for ∂Z = Wᵀ ∂U): one row at a time, read front to back and dealt
        // out to the panels. (Panel by panel would read nr-wide columns of rows a power of two apart, which
        // all fall into a few sets of L1.)
        for (std::size_t k = 0; k < kc; ++k) {
            const T* src = B.at(k0 + k, j0);
            T* out = dst + k * NR;
            for (std::size_t p = 0; p < whole; ++p, src += NR, out += stride) {
                MLPGRAD_UNROLL
                for (std::size_t v = 0; v < NV; ++v) Vec<T>::load(src + v * V).store(out + v * V);
            }
            if (rest) {
                std::copy(src, src + rest, out);
                std::fill(out + rest, out + NR, T(0));
            }
        }
        return;
    }
    for (std::size_t j = 0; j < n; j += NR, dst += stride) {
        const std::size_t w = std::min(NR, n - j);
        if (B.row_stride == 1) {
            // Transposed B (Zᵀ for ∂W = ∂U Zᵀ): column j is contiguous in k. Blocks of V columns × V depths
            // are transposed in registers; the last columns and depths one value at a time.
            std::size_t jj = 0;
            for (; jj + V <= w; jj += V) {
                const T* src = B.at(k0, j0 + j + jj);
                std::size_t k = 0;
                for (; k + V <= kc; k += V) {
                    Vec<T> block[V];
                    MLPGRAD_UNROLL
                    for (std::size_t i = 0; i < V; ++i) block[i] = Vec<T>::load(src + i * B.col_stride + k);
                    simd::transpose<T>(block);
                    MLPGRAD_UNROLL
                    for (std::size_t i = 0; i < V; ++i) block[i].store(dst + (k + i) * NR + jj);
                }
                for (; k < kc; ++k)
                    for (std::size_t i = 0; i < V; ++i) dst[k * NR + jj + i] = src[i * B.col_stride + k];
            }
            for (; jj < w; ++jj) {
                const T* src = B.at(k0, j0 + j + jj);
                for (std::size_t k = 0; k < kc; ++k) dst[k * NR + jj] = src[k];
            }
        } else {
            for (std::size_t k = 0; k < kc; ++k) {
                const T* src = B.at(k0 + k, j0 + j);
                for (std::size_t jj = 0; jj < w; ++jj) dst[k * NR + jj] = src[jj * B.col_stride];
            }
        }
        if (w < NR)
            for (std::size_t k = 0; k < kc; ++k) std::fill(dst + k * NR + w, dst + (k + 1) * NR, T(0));
    }
}

// A(i0.., k0..) of m × kc into ⌈m / mr⌉ micro-panels of mr × kc: dst[p · kc · mr + k · mr + i] =
// A(i0 + p · mr + i, k0 + k), zero past row m.
template <class T>
void pack_a(Operand<T> A, std::size_t i0, std::size_t m, std::size_t k0, std::size_t kc, T* dst) {
    using simd::Vec;
    constexpr std::size_t MR = RegisterBlock<T>::mr, V = RegisterBlock<T>::vector, groups = (MR + V - 1) / V;
    for (std::size_t i = 0; i < m; i += MR, dst += kc * MR) {
        const std::size_t h = std::min(MR, m - i);
        if (A.row_stride == 1 && h == MR) {
            // Transposed A (Wᵀ for ∂Z = Wᵀ ∂U): the mr values of one k are contiguous.
            for (std::size_t k = 0; k < kc; ++k) {
                const T* src = A.at(i0 + i, k0 + k);
                MLPGRAD_UNROLL
                for (std::size_t r = 0; r < MR; ++r) dst[k * MR + r] = src[r];
            }
        } else if (A.row_stride == 1) {
            for (std::size_t k = 0; k < kc; ++k) {
                const T* src = A.at(i0 + i, k0 + k);
                std::copy(src, src + h, dst + k * MR);
                std::fill(dst + k * MR + h, dst + (k + 1) * MR, T(0));
            }
        } else if (A.col_stride == 1 && h == MR) {
            // Row-major A (W for U = W Z, ∂U for ∂W): mr rows, each read contiguously, interleaved by
            // register transposes of V rows × V depths (the last group of rows padded with zeros).
            const T* rows[MR];
            for (std::size_t r = 0; r < MR; ++r) rows[r] = A.at(i0 + i + r, k0);
            std::size_t k = 0;
            for (; k + V <= kc; k += V) {
                MLPGRAD_UNROLL
                for (std::size_t g = 0; g < groups; ++g) {
                    Vec<T> block[V];
                    MLPGRAD_UNROLL
                    for (std::size_t r = 0; r < V; ++r)
                        block[r] = g * V + r < MR ? Vec<T>::load(rows[g * V + r] + k) : Vec<T>::zero();
                    simd::transpose<T>(block);
                    constexpr std::size_t last = MR % V ? MR % V : V;  // rows in the last group
                    MLPGRAD_UNROLL
                    for (std::size_t d = 0; d < V; ++d) {
                        T lanes[V];
                        block[d].store(lanes);
                        std::memcpy(dst + (k + d) * MR + g * V, lanes, (g + 1 < groups ? V : last) * sizeof(T));
                    }
                }
            }
            for (; k < kc; ++k) {
                MLPGRAD_UNROLL
                for (std::size_t r = 0; r < MR; ++r) dst[k * MR + r] = rows[r][k];
            }
        } else {
            for (std::size_t k = 0; k < kc; ++k) {
                for (std::size_t r = 0; r < h; ++r) dst[k * MR + r] = *A.at(i0 + i + r, k0 + k);
                std::fill(dst + k * MR + h, dst + (k + 1) * MR, T(0));
            }
        }
    }
}

}  // namespace gemm
}  // namespace mlpgrad
