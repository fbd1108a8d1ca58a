// The output layer of a batch with m > 1 outputs: ŷ_b = αᵀ z^T_b, ∂α = Σ_b z^T_b dy_bᵀ and the operand
// dYᵀ of the base case ∂Z^T = α dYᵀ, on the feature-major tape (Z^T is K_T × B).
//
// Why not the products as they are written: Ŷ = (Z^T)ᵀ α (B × m) and ∂α = Z^T dY (K_T × m) have only m
// columns, and the small GEMM (kernels::gemm) vectorises over columns, so for m below its two vectors (16
// doubles, 32 floats with AVX-512) every multiply-add was scalar, and with (Z^T)ᵀ read across rows: for a
// 64-100-10 network that was half of a training step (mlpgrad_bench_batch). Transposed, the batch is the
// long, contiguous dimension of every operand:
//   Ŷᵀ = αᵀ Z^T (m × B): rows of Z^T stream through the vector accumulators, then one small transpose;
//   ∂α[k, j] = Z^T[k, :] · dYᵀ[j, :]: dot products of contiguous rows (kernels::dot_rows, blocked sums);
//   dYᵀ is transposed once and also feeds the base case, whose packing then reads rows, not columns.
// Every sum over k or over b is blocked as before (kernels::block_length), so float32 keeps its bound.
#pragma once

#include <cstddef>

#include "kernels.hpp"
#include "views.hpp"

namespace mlpgrad {
namespace output_layer {

// Ŷ (B × m) = (Z^T)ᵀ α for Z^T (K_T × B), α (K_T × m): Ŷᵀ = αᵀ Z^T into `scratch` (m × B), then transposed.
template <class T>
void forward(MatrixView<const T> ZT, MatrixView<const T> alpha, MatrixView<T> scratch, MatrixView<T> Yhat) {
    const std::size_t m = alpha.cols;
    kernels::gemm(kernels::Operand<T>{alpha.data, 1, m}, m, ZT, ZT.rows, scratch);  // row j of αᵀ: α[k, j], step m
    kernels::transpose(MatrixView<const T>(scratch), Yhat);
}

// ∂α (K_T × m, row-major in `dalpha`) = Z^T dY from dYᵀ (m × B): row k of ∂α is Z^T[k, :] against every row of
// dYᵀ, four rows of dYᵀ per pass over the row of Z^T.
template <class T>
void alpha_gradient(MatrixView<const T> ZT, MatrixView<const T> dY_transposed, T* dalpha) {
    constexpr std::size_t R = 4;
    const std::size_t m = dY_transposed.rows, B = ZT.cols;
    for (std::size_t k = 0; k < ZT.rows; ++k) {
        T* out = dalpha + k * m;
        std::size_t j = 0;
        for (; j + R <= m; j += R) kernels::dot_rows<R>(dY_transposed.row(j), B, ZT.row(k), B, out + j);
        for (; j < m; ++j) kernels::dot_rows<1>(dY_transposed.row(j), B, ZT.row(k), B, out + j);
    }
}

}  // namespace output_layer
}  // namespace mlpgrad
