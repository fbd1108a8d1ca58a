// The hand-written loops. Single example: matvec (+σ) and the fused outer-product / transpose-matvec of
// the backward pass. Batch: a small GEMM for the thin products of the output layer (the layers' products run
// on the packed GEMM in gemm/), and the DAG's elementwise helpers. Every inner loop runs over
// contiguous memory, and each keeps a block of outputs in registers so that one load of W serves several
// rows or examples. Summation order is fixed for a given build, so results are reproducible.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "activations.hpp"
#include "simd.hpp"
#include "views.hpp"

namespace mlpgrad {
namespace kernels {

using simd::Vec;

// Every sum of n products is cut into blocks of block_length(n) terms, each summed on its own and added
// in turn to a running total: a product then passes through at most d = b + ⌈n/b⌉ - 1 roundings instead
// of n, where the block length b is 128, doubled while b < n/b (so b < 2√n + 1 and ⌈n/b⌉ ≤ b + 1), and
// d < 16·√n for every n. So the error stays below 16·√n·u·Σ|a_j b_j| for any data, constant sign included,
// and a float32 total does not stall at 2^24 (with power-of-two blocks, a sum of ones is exact). A sum of
// up to 256 terms is one block (one chain of n ≤ 256 terms is within the bound already): the common
// widths keep the unblocked kernels' speed.
inline std::size_t block_length(std::size_t n) {
    if (n <= 256) return 256;
    std::size_t block = 128;
    while (block < n / block) block *= 2;  // until block ≥ ⌊n/block⌋, compared without overflow
    return block;
}

// acc[r] += the products of row r over [j0, j1), two vector accumulators per row (j1 - j0 a multiple of V).
template <std::size_t R, class T>
inline void dot_rows_block(const T* w, std::size_t stride, const T* z, std::size_t j0, std::size_t j1,
                           Vec<T> (&acc)[R][2]) {
    constexpr std::size_t V = Vec<T>::size;
    std::size_t j = j0;
    for (; j + 2 * V <= j1; j += 2 * V) {
        const auto z0 = Vec<T>::load(z + j), z1 = Vec<T>::load(z + j + V);
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) {
            acc[r][0] = simd::fma(Vec<T>::load(w + r * stride + j), z0, acc[r][0]);
            acc[r][1] = simd::fma(Vec<T>::load(w + r * stride + j + V), z1, acc[r][1]);
        }
    }
    for (; j < j1; j += V) {  // only in the last block: blocks are whole pairs of vectors
        const auto z0 = Vec<T>::load(z + j);
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) acc[r][0] = simd::fma(Vec<T>::load(w + r * stride + j), z0, acc[r][0]);
    }
}

// out[r] = Σ_j w[r*stride + j] z[j] for r < R: the R rows share each load of z, and two partial sums per
// row hide the FMA latency. Each SIMD lane sums block_length terms per block, then the block's partial sums
// are added to the row's running total. Rows of up to 2·V·256 entries are one block, summed straight into
// the accumulators: no running total, so the common widths pay nothing for the blocking (K = 64, T = 4:
// 17 % fewer instructions in the forward pass than with a total of one block).
template <std::size_t R, class T>
inline void dot_rows(const T* w, std::size_t stride, const T* z, std::size_t n, T* out) {
    constexpr std::size_t V = Vec<T>::size;
    const std::size_t vector_end = n - n % V;
    Vec<T> acc[R][2];
    MLPGRAD_UNROLL
    for (std::size_t r = 0; r < R; ++r) acc[r][0] = acc[r][1] = Vec<T>::zero();
    if (vector_end <= 2 * V * 256) {
        dot_rows_block<R>(w, stride, z, 0, vector_end, acc);
    } else {
        const std::size_t block = 2 * V * block_length((vector_end + 2 * V - 1) / (2 * V));
        Vec<T> total[R];
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) total[r] = Vec<T>::zero();
        for (std::size_t j0 = 0; j0 < vector_end; j0 += block) {
            MLPGRAD_UNROLL
            for (std::size_t r = 0; r < R; ++r) acc[r][0] = acc[r][1] = Vec<T>::zero();
            dot_rows_block<R>(w, stride, z, j0, std::min(vector_end, j0 + block), acc);
            MLPGRAD_UNROLL
            for (std::size_t r = 0; r < R; ++r) total[r] = total[r] + (acc[r][0] + acc[r][1]);
        }
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) acc[r][0] = total[r], acc[r][1] = Vec<T>::zero();
    }
    MLPGRAD_UNROLL  // (else acc[r] is indexed at run time and all 2R accumulators live on the stack)
    for (std::size_t r = 0; r < R; ++r) {
        T s = simd::horizontal_sum(acc[r][0] + acc[r][1]);
        for (std::size_t jj = vector_end; jj < n; ++jj) s += w[r * stride + jj] * z[jj];
        out[r] = s;
    }
}

template <class T>
inline T dot(const T* a, const T* b, std::size_t n) {
    T out;
    dot_rows<1>(a, 0, b, n, &out);
    return out;
}

// y += a x (elementwise: no sum, so no blocking needed)
template <class T>
inline void axpy(T a, const T* x, T* y, std::size_t n) {
    constexpr std::size_t V = Vec<T>::size;
    const auto va = Vec<T>::broadcast(a);
    const std::size_t full = n - n % V;
    for (std::size_t j = 0; j < full; j += V) simd::fma(va, Vec<T>::load(x + j), Vec<T>::load(y + j)).store(y + j);
    for (std::size_t k = full; k < n; ++k) y[k] += a * x[k];
}

template <Activation A, class T>
inline void activate(const T* u, T* z, std::size_t n) {
    for (std::size_t k = 0; k < n; ++k) z[k] = activation_traits<A>::apply(u[k]);
}

// u += b (when there is a bias) and z = σ(u), row by row of a (rows × cols) matrix, b_k added to all of row k.
template <Activation A, class T>
inline void add_bias_and_activate(T* u, const T* bias, T* z, std::size_t rows, std::size_t cols) {
    if (bias == nullptr) {
        activate<A>(u, z, rows * cols);
        return;
    }
    for (std::size_t k = 0; k < rows; ++k) {
        const T b = bias[k];
        T* uk = u + k * cols;
        T* zk = z + k * cols;
        for (std::size_t j = 0; j < cols; ++j) {
            uk[j] += b;
            zk[j] = activation_traits<A>::apply(uk[j]);
        }
    }
}

// Rows of W per pass of matvec: a split of W's rows at multiples of it computes every row as a whole W does.
inline constexpr std::size_t matvec_rows_per_pass = 4;

// out = W v, four rows of W per pass over v.
template <class T>
void matvec(MatrixView<const T> W, const T* v, T* out) {
    constexpr std::size_t R = matvec_rows_per_pass;
    std::size_t i = 0;
    for (; i + R <= W.rows; i += R) dot_rows<R>(W.row(i), W.cols, v, W.cols, out + i);
    for (; i < W.rows; ++i) dot_rows<1>(W.row(i), W.cols, v, W.cols, out + i);
}

// u = W z_in + b and z_out = σ(u): the forward step u^{t+1} = W^{[t+1]} z^t + b^{t+1}, z^{t+1} = σ(u^{t+1}).
// bias may be null (no bias).
template <Activation A, class T>
void matvec_activate(MatrixView<const T> W, const T* z_in, const T* bias, T* u, T* z_out) {
    matvec(W, z_in, u);
    add_bias_and_activate<A>(u, bias, z_out, W.rows, 1);
}

// du = dz ∘ σ'(u): the notes' ∂ŷ/∂u^t = ∂ŷ/∂z^t ∘ σ'(u^t), with z = σ(u) from the tape.
// ReLU in vector registers, σ'(u) = [u ≥ 0] (simd nonnegative_step): the same products as the scalar loop.
template <Activation A, class T>
void hadamard_derivative(const T* dz, const T* u, const T* z, T* du, std::size_t n) {
    constexpr std::size_t V = Vec<T>::size;
    std::size_t k = 0;
    if constexpr (A == Activation::relu)
        for (; k + V <= n; k += V) (Vec<T>::load(dz + k) * nonnegative_step(Vec<T>::load(u + k))).store(du + k);
    for (; k < n; ++k) du[k] = dz[k] * activation_traits<A>::derivative(u[k], z[k]);
}

// For R rows: dw[r] = g[r] z (outer product rows) and dz += Σ_r g[r] w[r] (transpose-matvec), in one pass
// that loads z and dz once for all R rows.
template <std::size_t R, class T>
inline void outer_and_transpose_rows(const T* const* w, T* const* dw, const T* g, const T* z, T* dz, std::size_t n) {
    constexpr std::size_t V = Vec<T>::size;
    Vec<T> vg[R];
    for (std::size_t r = 0; r < R; ++r) vg[r] = Vec<T>::broadcast(g[r]);
    std::size_t j = 0;
    for (; j + V <= n; j += V) {
        const auto zj = Vec<T>::load(z + j);
        auto acc = Vec<T>::load(dz + j);
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) {
            (vg[r] * zj).store(dw[r] + j);
            acc = simd::fma(vg[r], Vec<T>::load(w[r] + j), acc);
        }
        acc.store(dz + j);
    }
    for (; j < n; ++j) {
        T acc = dz[j];
        for (std::size_t r = 0; r < R; ++r) {
            dw[r][j] = g[r] * z[j];
            acc += g[r] * w[r][j];
        }
        dz[j] = acc;
    }
}

// Rows of one block, columns [j0, j1): dW rows and dz += Σ_r du_r W_r, four gathered rows at a time. A row
// whose du_i is exactly 0 (a ReLU unit that was off) contributes exactly 0: its dW row is zeroed and its W
// row is not read. Each column's sum is the same whatever the column range, for j0 a multiple of the vector
// width (then a column is in the vector loop or the tail as it is for the whole row): threads may split it.
template <class T>
void outer_product_and_transpose_rows(MatrixView<const T> W, const T* du, const T* z_prev, MatrixView<T> dW, T* dz,
                                      std::size_t row_begin, std::size_t row_end, std::size_t j0, std::size_t j1) {
    constexpr std::size_t R = 4;
    const std::size_t n = j1 - j0;
    z_prev += j0;
    dz += j0;
    const T* w[R];
    T* dw[R];
    T g[R];
    std::size_t m = 0;  // rows gathered for the next block of R
    for (std::size_t i = row_begin; i < row_end; ++i) {
        if (du[i] == T(0)) {
            std::fill(dW.row(i) + j0, dW.row(i) + j1, T(0));
            continue;
        }
        w[m] = W.row(i) + j0;
        dw[m] = dW.row(i) + j0;
        g[m] = du[i];
        if (++m == R) {
            outer_and_transpose_rows<R>(w, dw, g, z_prev, dz, n);
            m = 0;
        }
    }
    switch (m) {
        case 3: outer_and_transpose_rows<3>(w, dw, g, z_prev, dz, n); break;
        case 2: outer_and_transpose_rows<2>(w, dw, g, z_prev, dz, n); break;
        case 1: outer_and_transpose_rows<1>(w, dw, g, z_prev, dz, n); break;
        default: break;
    }
}

// dW = du z_prevᵀ (outer product) and dz_prev += Wᵀ du (transpose-matvec), in one pass over each row of
// W and dW, for the columns [j0, j1) (j0 a multiple of the vector width; the whole matrix by default). The
// sum over rows is blocked (see block_length): the first block of rows accumulates into dz_prev, each later
// one into `partial` (W.cols entries of scratch, of which [j0, j1) is used), which is then added to dz_prev.
template <class T>
void outer_product_and_transpose_matvec_accumulate(MatrixView<const T> W, const T* du, const T* z_prev,
                                                   MatrixView<T> dW, T* dz_prev, T* partial, std::size_t j0 = 0,
                                                   std::size_t j1 = std::size_t(-1)) {
    const std::size_t block = block_length(W.rows);
    j1 = std::min(j1, W.cols);
    for (std::size_t i0 = 0; i0 < W.rows; i0 += block) {
        const std::size_t i1 = std::min(W.rows, i0 + block);
        if (i0 == 0) {
            outer_product_and_transpose_rows(W, du, z_prev, dW, dz_prev, i0, i1, j0, j1);
            continue;
        }
        std::fill(partial + j0, partial + j1, T(0));
        outer_product_and_transpose_rows(W, du, z_prev, dW, partial, i0, i1, j0, j1);
        for (std::size_t j = j0; j < j1; ++j) dz_prev[j] += partial[j];
    }
}

// ---- Thin batch products (ŷ = αᵀ Z^T, ∂α = Z^T dY, ∂β). Batch tapes are feature-major: row k of a (K × B)
// matrix holds unit k for all B examples, so the inner loops run over examples, contiguously.

// A strided view of a matrix operand: element (r, k) is at data[r * row_stride + k * step]. It lets one
// micro-kernel compute both W Z (row_stride = K_in, step = 1) and Wᵀ dU (row_stride = 1, step = K_in).
template <class T>
struct Operand {
    const T* data;
    std::size_t row_stride;
    std::size_t step;
    T operator()(std::size_t r, std::size_t k) const { return data[r * row_stride + k * step]; }
};

// C[r0..r0+R) × [b0..b0+C·V) = Σ_k A(r, k) X[k, b] over k < depth (+= when `accumulate`): R·C vector
// accumulators stay in registers while each row of X streams through once.
template <std::size_t R, std::size_t C, class T>
MLPGRAD_NOINLINE void gemm_block(Operand<T> A, std::size_t r0, MatrixView<const T> X, std::size_t depth,
                                 MatrixView<T> out, std::size_t b0, bool accumulate) {
    constexpr std::size_t V = Vec<T>::size;
    Vec<T> acc[R][C];
    const T* a[R];  // A(r0 + r, k), advanced by A.step for each k
    MLPGRAD_UNROLL
    for (std::size_t r = 0; r < R; ++r) {
        a[r] = A.data + (r0 + r) * A.row_stride;
        MLPGRAD_UNROLL
        for (std::size_t c = 0; c < C; ++c) acc[r][c] = Vec<T>::zero();
    }
    for (std::size_t k = 0; k < depth; ++k) {
        const T* x = X.row(k) + b0;  // (formed inside the loop: X may be empty and null when depth == 0)
        Vec<T> xv[C];
        MLPGRAD_UNROLL
        for (std::size_t c = 0; c < C; ++c) {
            xv[c] = Vec<T>::load(x + c * V);
            xv[c].pin();
        }
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) {
            const auto ar = Vec<T>::broadcast(*a[r]);
            a[r] += A.step;
            MLPGRAD_UNROLL
            for (std::size_t c = 0; c < C; ++c) acc[r][c] = simd::fma(ar, xv[c], acc[r][c]);
        }
    }
    MLPGRAD_UNROLL
    for (std::size_t r = 0; r < R; ++r) {
        MLPGRAD_UNROLL
        for (std::size_t c = 0; c < C; ++c) {
            T* o = out.row(r0 + r) + b0 + c * V;
            (accumulate ? Vec<T>::load(o) + acc[r][c] : acc[r][c]).store(o);
        }
    }
}

// Rows r0..r0+R of out, columns [b_begin, b_end): blocks of R rows × 2 vectors, then 1 vector, then scalar
// code for the last columns.
template <std::size_t R, class T>
inline void gemm_rows(Operand<T> A, std::size_t r0, MatrixView<const T> X, std::size_t depth, MatrixView<T> out,
                      std::size_t b_begin, std::size_t b_end, bool accumulate) {
    constexpr std::size_t V = Vec<T>::size;
    std::size_t b = b_begin;
    for (; b + 2 * V <= b_end; b += 2 * V) gemm_block<R, 2>(A, r0, X, depth, out, b, accumulate);
    for (; b + V <= b_end; b += V) gemm_block<R, 1>(A, r0, X, depth, out, b, accumulate);
    for (std::size_t r = r0; r < r0 + R; ++r)
        for (std::size_t bb = b; bb < b_end; ++bb) {
            T sum = T(0);
            for (std::size_t k = 0; k < depth; ++k) sum += A(r, k) * X.row(k)[bb];
            out.row(r)[bb] = accumulate ? out.row(r)[bb] + sum : sum;
        }
}

// out (rows × X.cols) = A X, A an Operand of `rows` rows and `depth` columns. The depth is cut into blocks
// (see block_length): the first block stores, each later one adds. Within a block, X is cut into panels of
// columns small enough to stay in L2 while every row of A passes over them; each block of 4 rows of A
// stays in L1 while it sweeps its panel.
template <class T>
void gemm(Operand<T> A, std::size_t rows, MatrixView<const T> X, std::size_t depth, MatrixView<T> out) {
    constexpr std::size_t V = Vec<T>::size, panel_bytes = 128 * 1024;
    const std::size_t block = block_length(depth);
    for (std::size_t k0 = 0; k0 == 0 || k0 < depth; k0 += block) {  // once when depth == 0: out = 0
        const std::size_t kc = std::min(block, depth - k0);
        const Operand<T> A_block{A.data + k0 * A.step, A.row_stride, A.step};
        const MatrixView<const T> X_block{kc ? X.row(k0) : X.data, kc, X.cols};
        const std::size_t fit = panel_bytes / (sizeof(T) * (kc ? kc : 1));
        const std::size_t panel = fit < 2 * V ? 2 * V : fit - fit % (2 * V);
        for (std::size_t b0 = 0; b0 < X.cols; b0 += panel) {
            const std::size_t b1 = std::min(X.cols, b0 + panel);
            std::size_t r = 0;
            for (; r + 4 <= rows; r += 4) gemm_rows<4>(A_block, r, X_block, kc, out, b0, b1, k0 > 0);
            for (; r < rows; ++r) gemm_rows<1>(A_block, r, X_block, kc, out, b0, b1, k0 > 0);
        }
    }
}

// out (cols × rows) = inᵀ for a (rows × cols) matrix: between the DAG's feature-major batch tape and its
// example-major X and ∂X. In 8 × 8 tiles, so that both sides touch few cache lines.
template <class T>
void transpose(MatrixView<const detail::nondeduced<T>> in, MatrixView<T> out) {
    constexpr std::size_t tile = 8;
    for (std::size_t r0 = 0; r0 < in.rows; r0 += tile) {
        const std::size_t r1 = std::min(r0 + tile, in.rows);
        for (std::size_t c0 = 0; c0 < in.cols; c0 += tile) {
            const std::size_t c1 = std::min(c0 + tile, in.cols);
            for (std::size_t r = r0; r < r1; ++r)
                for (std::size_t c = c0; c < c1; ++c) out.data[c * in.rows + r] = in.data[r * in.cols + c];
        }
    }
}

}  // namespace kernels
}  // namespace mlpgrad
