// The hand-written loops: matvec (+σ), the fused outer-product/transpose-matvec of the backward pass,
// and their batch counterparts. All inner loops run over contiguous memory (row-major W, feature-major
// batch tapes), and reductions keep several independent partial sums in fixed lanes so the compiler can
// vectorise them without -ffast-math (the summation order is fixed, so results are reproducible).
#pragma once

#include <algorithm>
#include <cstddef>

#include "activations.hpp"
#include "views.hpp"

namespace mlpgrad {
namespace kernels {

// Partial sums per dot product: two 256-bit registers' worth, enough to hide FMA latency.
template <class T>
inline constexpr std::size_t lanes = 64 / sizeof(T);

template <class T, std::size_t L>
inline T pairwise_sum(const T (&acc)[L]) {
    T tmp[L];
    for (std::size_t k = 0; k < L; ++k) tmp[k] = acc[k];
    for (std::size_t half = L / 2; half > 0; half /= 2)
        for (std::size_t k = 0; k < half; ++k) tmp[k] += tmp[k + half];
    return tmp[0];
}

// out[r] = Σ_j w[r*stride + j] z[j] for r < R: R rows share each load of z.
template <std::size_t R, class T>
inline void dot_rows(const T* w, std::size_t stride, const T* z, std::size_t n, T* out) {
    constexpr std::size_t L = lanes<T>;
    T acc[R][L] = {};
    std::size_t j = 0;
    for (; j + L <= n; j += L)
        for (std::size_t r = 0; r < R; ++r)
            for (std::size_t k = 0; k < L; ++k) acc[r][k] += w[r * stride + j + k] * z[j + k];
    for (std::size_t r = 0; r < R; ++r) {
        T s = pairwise_sum(acc[r]);
        for (std::size_t jj = j; jj < n; ++jj) s += w[r * stride + jj] * z[jj];
        out[r] = s;
    }
}

template <class T>
inline T dot(const T* a, const T* b, std::size_t n) {
    T out;
    dot_rows<1>(a, 0, b, n, &out);
    return out;
}

// y += a x
template <class T>
inline void axpy(T a, const T* x, T* y, std::size_t n) {
    for (std::size_t j = 0; j < n; ++j) y[j] += a * x[j];
}

// u = W z_in and z_out = σ(u): the forward step u^{t+1} = W^{[t+1]} z^t, z^{t+1} = σ(u^{t+1}).
template <Activation A, class T>
void matvec_activate(MatrixView<const T> W, const T* z_in, T* u, T* z_out) {
    constexpr std::size_t R = 4;
    std::size_t i = 0;
    for (; i + R <= W.rows; i += R) dot_rows<R>(W.row(i), W.cols, z_in, W.cols, u + i);
    for (; i < W.rows; ++i) dot_rows<1>(W.row(i), W.cols, z_in, W.cols, u + i);
    for (std::size_t k = 0; k < W.rows; ++k) z_out[k] = activation_traits<A>::apply(u[k]);
}

// du = dz ∘ σ'(u): the notes' ∂ŷ/∂u^t = ∂ŷ/∂z^t ∘ σ'(u^t), with z = σ(u) from the tape.
template <Activation A, class T>
void hadamard_derivative(const T* dz, const T* u, const T* z, T* du, std::size_t n) {
    for (std::size_t k = 0; k < n; ++k) du[k] = dz[k] * activation_traits<A>::derivative(u[k], z[k]);
}

// dW = du z_prevᵀ (outer product) and dz_prev += Wᵀ du (transpose-matvec), in one pass over each row
// of W and dW. A row whose du_i is exactly 0 (a ReLU unit that was off) contributes exactly 0: its dW row
// is zeroed and its W row is not read.
template <class T>
void outer_product_and_transpose_matvec_accumulate(MatrixView<const T> W, const T* du, const T* z_prev,
                                                   MatrixView<T> dW, T* dz_prev) {
    const std::size_t n = W.cols;
    for (std::size_t i = 0; i < W.rows; ++i) {
        const T g = du[i];
        T* dw = dW.row(i);
        if (g == T(0)) {
            std::fill(dw, dw + n, T(0));
            continue;
        }
        const T* w = W.row(i);
        for (std::size_t j = 0; j < n; ++j) {
            dw[j] = g * z_prev[j];
            dz_prev[j] += g * w[j];
        }
    }
}

// ---- Batch kernels. Batch tapes are feature-major: row k of a (K × B) matrix holds unit k for all B
// examples, so every inner loop runs over examples, contiguously.

// U = W Z_in, Z_out = σ(U), for (K_in × B) Z_in. Each row of W is read once per block of examples
// whose partial sums live in registers.
template <Activation A, class T>
void matmul_activate(MatrixView<const detail::nondeduced<T>> W, MatrixView<const detail::nondeduced<T>> Z_in,
                     MatrixView<T> U, MatrixView<T> Z_out) {
    constexpr std::size_t C = 2 * lanes<T>;  // examples per block
    const std::size_t B = Z_in.cols;
    for (std::size_t i = 0; i < W.rows; ++i) {
        const T* w = W.row(i);
        T* u = U.row(i);
        std::size_t b0 = 0;
        for (; b0 + C <= B; b0 += C) {
            T acc[C] = {};
            for (std::size_t j = 0; j < W.cols; ++j) {
                const T wij = w[j];
                const T* z = Z_in.row(j) + b0;
                for (std::size_t k = 0; k < C; ++k) acc[k] += wij * z[k];
            }
            for (std::size_t k = 0; k < C; ++k) u[b0 + k] = acc[k];
        }
        if (b0 < B) {
            const std::size_t m = B - b0;
            T acc[C] = {};
            for (std::size_t j = 0; j < W.cols; ++j) {
                const T wij = w[j];
                const T* z = Z_in.row(j) + b0;
                for (std::size_t k = 0; k < m; ++k) acc[k] += wij * z[k];
            }
            for (std::size_t k = 0; k < m; ++k) u[b0 + k] = acc[k];
        }
        T* z_out = Z_out.row(i);
        for (std::size_t b = 0; b < B; ++b) z_out[b] = activation_traits<A>::apply(u[b]);
    }
}

// dW = dU Z_prevᵀ (summed over the batch) and dZ_prev += Wᵀ dU, one pass over each row of W and dW.
template <class T>
void batch_outer_product_and_transpose_matvec_accumulate(MatrixView<const detail::nondeduced<T>> W,
                                                         MatrixView<const detail::nondeduced<T>> dU,
                                                         MatrixView<const detail::nondeduced<T>> Z_prev,
                                                         MatrixView<T> dW, MatrixView<T> dZ_prev) {
    const std::size_t B = dU.cols;
    for (std::size_t i = 0; i < W.rows; ++i) {
        const T* w = W.row(i);
        const T* du = dU.row(i);
        T* dw = dW.row(i);
        for (std::size_t j = 0; j < W.cols; ++j) {
            dw[j] = dot(du, Z_prev.row(j), B);
            axpy(w[j], du, dZ_prev.row(j), B);
        }
    }
}

// out (cols × rows) = inᵀ for a (rows × cols) matrix; used at the batch boundary (X in, dX out).
template <class T>
void transpose(MatrixView<const detail::nondeduced<T>> in, MatrixView<T> out) {
    for (std::size_t r = 0; r < in.rows; ++r) {
        const T* src = in.row(r);
        for (std::size_t c = 0; c < in.cols; ++c) out.data[c * in.rows + r] = src[c];
    }
}

}  // namespace kernels
}  // namespace mlpgrad
