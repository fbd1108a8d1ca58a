// The output layer of a batch with m > 1 outputs: ŷ_b = αᵀ z^T_b, ∂α = Σ_b z^T_b dy_bᵀ and the operand
// dYᵀ of the base case ∂Z^T = α dYᵀ, on the feature-major tape (Z^T is K_T × B).
//
// Why not the products as they are written: Ŷ = (Z^T)ᵀ α (B × m) and ∂α = Z^T dY (K_T × m) have only m
// columns, fewer than the micro-kernel's nr, so every tile would be an edge tile, and (Z^T)ᵀ would be read
// across rows. Transposed, the batch is the long, contiguous dimension of every operand:
//   Ŷᵀ = αᵀ Z^T (m × B) on the packed GEMM, then one small transpose;
//   ∂αᵀ = dYᵀ (Z^T)ᵀ (m × K_T) on the packed GEMM for m ≥ mr, then transposed; for fewer outputs (a tile
//   of m < mr rows wastes most of the micro-kernel), dot products of contiguous rows (kernels::dot_rows);
//   dYᵀ is transposed once and also feeds the base case, whose packing then reads rows, not columns.
// Measured for a 64-100-10 network at B = 1347 (digits), float64, one core: Ŷ 129 → 92 µs and ∂α 140 → 95
// µs against the small GEMM and dot_rows; at m = 3, dot_rows is the faster for ∂α (56-63 against 64-67 µs).
// Every sum over k or over b is blocked (the GEMM's depth blocks, kernels::block_length), so float32 keeps
// its bound; each path is fixed by m, and the GEMM gives the same bits for any pool.
#pragma once

#include <cstddef>
#include <limits>

#include "gemm/gemm.hpp"
#include "kernels.hpp"
#include "views.hpp"

namespace mlpgrad {
namespace output_layer {

// Whether Ŷᵀ = αᵀ Z^T reads αᵀ in place rather than packed: for m < 3 mr outputs. Packing pads m rows to a
// multiple of mr, which the in-place kernels for the last rows do not; from 4 mr on, packed is as fast or faster.
// Measured (one core, K_T × B = 100 × 1347, 256 × 256 and 512 × 64; in place ÷ packed time): m = 2-10
// 0.59-0.90, 12 1.00, 16 0.83-0.96, 24 1.07, 48 1.00-1.07, 100 1.05. The same bits either way.
template <class T>
constexpr bool alpha_in_place(std::size_t m) {
    return m < 3 * gemm::RegisterBlock<T>::mr;
}

// Ŷ (B × m) = (Z^T)ᵀ α for Z^T (K_T × B), α (K_T × m): Ŷᵀ = αᵀ Z^T into `scratch` (m × B), then transposed.
template <class T>
void forward(MatrixView<const T> ZT, MatrixView<const T> alpha, MatrixView<T> scratch, MatrixView<T> Yhat,
             const gemm::Settings<T>& settings) {
    gemm::Settings<T> s = settings;
    if (alpha_in_place<T>(alpha.cols)) s.pack_a_transposed_min_columns = std::numeric_limits<std::size_t>::max();
    gemm::multiply(gemm::transposed(alpha), gemm::operand(ZT), scratch, gemm::Update::overwrite, gemm::Store{}, s);
    kernels::transpose(MatrixView<const T>(scratch), Yhat);
}

// Whether ∂α runs on the packed GEMM (through a transposed m × K_T scratch) for m outputs.
template <class T>
constexpr bool packed_alpha_gradient(std::size_t m) {
    return m >= gemm::RegisterBlock<T>::mr;
}

// ∂α (K_T × m, row-major in `dalpha`) = Z^T dY from dYᵀ (m × B). Packed: ∂αᵀ = dYᵀ (Z^T)ᵀ into `scratch`
// (m × K_T), then transposed. Otherwise row k of ∂α is Z^T[k, :] against every row of dYᵀ, four rows of dYᵀ
// per pass over the row of Z^T.
template <class T>
void alpha_gradient(MatrixView<const T> ZT, MatrixView<const T> dY_transposed, T* dalpha, MatrixView<T> scratch,
                    const gemm::Settings<T>& settings) {
    constexpr std::size_t R = 4;
    const std::size_t m = dY_transposed.rows, B = ZT.cols;
    if (packed_alpha_gradient<T>(m)) {
        gemm::multiply(gemm::operand(dY_transposed), gemm::transposed(ZT), scratch, gemm::Update::overwrite,
                       gemm::Store{}, settings);
        kernels::transpose(MatrixView<const T>(scratch), MatrixView<T>(dalpha, ZT.rows, m));
        return;
    }
    for (std::size_t k = 0; k < ZT.rows; ++k) {
        T* out = dalpha + k * m;
        std::size_t j = 0;
        for (; j + R <= m; j += R) kernels::dot_rows<R>(dY_transposed.row(j), B, ZT.row(k), B, out + j);
        for (; j < m; ++j) kernels::dot_rows<1>(dY_transposed.row(j), B, ZT.row(k), B, out + j);
    }
}

}  // namespace output_layer
}  // namespace mlpgrad
