// Epilogues: what the GEMM driver does to a tile of C once it is final (after the last depth block), while
// the tile is still in L1. This fuses the elementwise passes of a batch layer into its product.
//
// An epilogue is called as epilogue(C, row, col, m, n) for the final m × n region of C at (row, col); it
// may rewrite that region of C and write the same region of its own outputs, nothing else (tiles of one
// product are finished by different threads at once).
//
// An epilogue with `static constexpr bool in_registers = true` also has tile_row(i, col, c, x): row i of a
// whole final tile, columns [col, col + nr), whose nv vectors x the micro-kernel holds in registers and
// stores to c (= &C(i, col)) afterwards. It does to x what operator() does to that row of C, in the same
// operations, so both give the same bits; the micro-kernel then calls it instead of storing the tile,
// loading it back and storing it again (microkernel.hpp). Edge tiles still take operator().
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "../activations.hpp"
#include "../kernels.hpp"
#include "../simd.hpp"
#include "../views.hpp"
#include "blocking.hpp"

namespace mlpgrad {
namespace gemm {

// C = A B (or C + A B): nothing more.
struct Store {
    template <class T>
    void operator()(MatrixView<T>, std::size_t, std::size_t, std::size_t, std::size_t) const {}
};

template <class E, class = void>
constexpr bool epilogue_in_registers = false;
template <class E>
constexpr bool epilogue_in_registers<E, std::enable_if_t<E::in_registers>> = true;

// The forward step u^{t+1} = W^{[t+1]} z^t + b^{t+1}, z^{t+1} = σ(u^{t+1}) on a batch: C (U) gets the bias of
// its row added (none when bias is null) and Z = σ(U) is written. Z may be C itself (then only σ(U) is kept).
template <Activation A, class T>
struct BiasActivation {
    const T* bias = nullptr;  // one per row of C, or null
    MatrixView<T> Z;          // same shape as C

    static constexpr bool in_registers = A == Activation::relu;

    void prefetch_row(std::size_t i, std::size_t col) const {
        constexpr std::size_t NR = RegisterBlock<T>::nr;
        T* z = Z.row(i) + col;
        for (std::size_t j = 0; j < NR; j += 64 / sizeof(T)) simd::prefetch_for_write(z + j);
    }

    // u = x (+ b_i), z = max(u, 0); x becomes z when Z is C itself.
    void tile_row(std::size_t i, std::size_t col, const T* c, simd::Vec<T> (&x)[RegisterBlock<T>::nv]) const {
        using simd::Vec;
        constexpr std::size_t V = RegisterBlock<T>::vector, NV = RegisterBlock<T>::nv;
        T* z = Z.row(i) + col;
        const auto b = Vec<T>::broadcast(bias ? bias[i] : T(0));
        MLPGRAD_UNROLL
        for (std::size_t v = 0; v < NV; ++v) {
            if (bias) x[v] = x[v] + b;
            if (z == c)
                x[v] = positive_part(x[v]);
            else
                positive_part(x[v]).store(z + v * V);
        }
    }

    void operator()(MatrixView<T> C, std::size_t row, std::size_t col, std::size_t m, std::size_t n) const {
        using simd::Vec;
        constexpr std::size_t V = RegisterBlock<T>::vector, NV = RegisterBlock<T>::nv;
        for (std::size_t i = row; i < row + m; ++i) {
            T* u = C.row(i) + col;
            T* z = Z.row(i) + col;
            if constexpr (A == Activation::relu) {
                // A whole tile row (of a tile with fewer than mr rows) in vector registers, as the micro-kernel
                // does it (the loops below cost 8-13 % of a product with K = 64-256).
                if (n == RegisterBlock<T>::nr) {
                    Vec<T> x[NV];
                    MLPGRAD_UNROLL
                    for (std::size_t v = 0; v < NV; ++v) x[v] = Vec<T>::load(u + v * V);
                    tile_row(i, col, u, x);
                    MLPGRAD_UNROLL
                    for (std::size_t v = 0; v < NV; ++v) x[v].store(u + v * V);
                    continue;
                }
            }
            if (bias) {
                const T b = bias[i];
                for (std::size_t j = 0; j < n; ++j) u[j] += b;
            }
            for (std::size_t j = 0; j < n; ++j) z[j] = activation_traits<A>::apply(u[j]);
        }
    }
};

// The forward step for ReLU as the batch tape records it: C becomes Z = relu_signed(U + b) (simd.hpp), which
// is max(U + b, 0) with -0 where u < 0, so that σ'(u) = [u ≥ 0] is Z's sign bit and U need not be stored:
// one K × B array written instead of two (a 100 × 1347 float64 layer: 40-50 µs of ~450 in cache, ~270 µs
// when the tape has left the caches). Only the sign of some zeros differs from BiasActivation's Z.
template <class T>
struct BiasReluSigned {
    const T* bias = nullptr;  // one per row of C, or null

    static constexpr bool in_registers = true;

    void prefetch_row(std::size_t, std::size_t) const {}

    void tile_row(std::size_t i, std::size_t, const T*, simd::Vec<T> (&x)[RegisterBlock<T>::nv]) const {
        using simd::Vec;
        const auto b = Vec<T>::broadcast(bias ? bias[i] : T(0));
        MLPGRAD_UNROLL
        for (std::size_t v = 0; v < RegisterBlock<T>::nv; ++v) x[v] = relu_signed(bias ? x[v] + b : x[v]);
    }

    void operator()(MatrixView<T> C, std::size_t row, std::size_t col, std::size_t m, std::size_t n) const {
        using simd::Vec;
        constexpr std::size_t V = RegisterBlock<T>::vector;
        for (std::size_t i = row; i < row + m; ++i) {
            T* z = C.row(i) + col;
            const auto b = Vec<T>::broadcast(bias ? bias[i] : T(0));
            std::size_t j = 0;
            for (; j + V <= n; j += V) {
                const Vec<T> u = Vec<T>::load(z + j);
                relu_signed(bias ? u + b : u).store(z + j);
            }
            for (; j < n; ++j) z[j] = simd::relu_signed_scalar(bias ? z[j] + bias[i] : z[j]);
        }
    }
};

// The backward step ∂ŷ/∂u^t = ∂ŷ/∂z^t ∘ σ'(u^t) on a batch, fused into ∂Z = Wᵀ ∂U of the layer above:
// C (∂Z) becomes ∂U = C ∘ σ'(U), with U and Z = σ(U) from the tape (same shape as C).
//
// With row_partials, it also sums each row of ∂U for the bias gradient ∂ŷ/∂b^t = Σ_b ∂ŷ/∂u^t_b, without
// a pass over memory of its own, as whole vectors: the nr columns of row i in tile column c are nv vectors
// of V lanes, added lane by lane (in order, from the first), and that vector goes to the V partials at
// row_partials[(i · partials_per_row + c) · V] (partials_per_row = ⌈N / nr⌉); sum_row_partials() adds
// them up afterwards. Each partial has a fixed place, so the sums do not depend on which thread finished
// which tile. (Summed one element at a time in scalar chains, as they were, they added 14 % to a
// 64-64-64-64-1 float32 backward_batch at B = 32; 2 % now.)
//
// FromSign (ReLU only): Z is BiasReluSigned's, and σ'(u) = [u ≥ 0] is read from its sign bit; U is not read.
template <Activation A, class T, bool FromSign = false>
struct TimesDerivative {
    static_assert(!FromSign || A == Activation::relu, "only ReLU's z keeps σ' in its sign");
    MatrixView<const T> U, Z;
    T* row_partials = nullptr;
    std::size_t partials_per_row = 0;

    static constexpr bool in_registers = A == Activation::relu;

    void prefetch_row(std::size_t i, std::size_t col) const {
        constexpr std::size_t NR = RegisterBlock<T>::nr;
        const T* s = step_source().row(i) + col;
        for (std::size_t j = 0; j < NR; j += 64 / sizeof(T)) simd::prefetch_for_read(s + j);
    }

    // ∂u = x · [u ≥ 0], and the row's partial sum from the registers.
    void tile_row(std::size_t i, std::size_t col, const T*, simd::Vec<T> (&x)[RegisterBlock<T>::nv]) const {
        using simd::Vec;
        constexpr std::size_t V = RegisterBlock<T>::vector, NV = RegisterBlock<T>::nv, NR = RegisterBlock<T>::nr;
        const T* s = step_source().row(i) + col;
        MLPGRAD_UNROLL
        for (std::size_t v = 0; v < NV; ++v) x[v] = x[v] * relu_step(Vec<T>::load(s + v * V));
        if (row_partials) tile_row_sum(x).store(row_partials + (i * partials_per_row + col / NR) * V);
    }

    void operator()(MatrixView<T> C, std::size_t row, std::size_t col, std::size_t m, std::size_t n) const {
        using simd::Vec;
        constexpr std::size_t V = RegisterBlock<T>::vector, NV = RegisterBlock<T>::nv, NR = RegisterBlock<T>::nr;
        for (std::size_t i = row; i < row + m; ++i) {
            T* d = C.row(i) + col;
            std::size_t j = 0;
            if constexpr (A == Activation::relu) {
                // A whole tile row as the micro-kernel does it, its partial sum taken from the registers as
                // sum_row() would take it.
                if (n == NR) {
                    Vec<T> x[NV];
                    MLPGRAD_UNROLL
                    for (std::size_t v = 0; v < NV; ++v) x[v] = Vec<T>::load(d + v * V);
                    tile_row(i, col, d, x);
                    MLPGRAD_UNROLL
                    for (std::size_t v = 0; v < NV; ++v) x[v].store(d + v * V);
                    continue;
                }
                // σ'(u) = [u ≥ 0] in vector registers, the same products
                const T* s = step_source().row(i) + col;
                for (; j + V <= n; j += V) (Vec<T>::load(d + j) * relu_step(Vec<T>::load(s + j))).store(d + j);
                if constexpr (FromSign)
                    for (; j < n; ++j) d[j] *= simd::sign_clear_step_scalar(s[j]);
            }
            if constexpr (!FromSign) {
                const T *u = U.row(i) + col, *z = Z.row(i) + col;
                for (; j < n; ++j) d[j] *= activation_traits<A>::derivative(u[j], z[j]);
            }
            if (row_partials) sum_row(d, i, col, n);
        }
    }

  private:
    // Where ReLU's σ' is read: U, or Z's sign bit.
    const MatrixView<const T>& step_source() const { return FromSign ? Z : U; }
    static simd::Vec<T> relu_step(simd::Vec<T> s) { return FromSign ? sign_clear_step(s) : nonnegative_step(s); }

    // A whole tile row's partial: its nv vectors added lane by lane in order, from the first. The one
    // definition of that order, for the ReLU tiles summed from the registers and for sum_row alike.
    static simd::Vec<T> tile_row_sum(const simd::Vec<T> (&x)[RegisterBlock<T>::nv]) {
        simd::Vec<T> sum = x[0];
        MLPGRAD_UNROLL
        for (std::size_t v = 1; v < RegisterBlock<T>::nv; ++v) sum = sum + x[v];
        return sum;
    }

    // The partials of row i of the region (d = its first entry): for each tile column, lane l is the sum of
    // the row's entries l, V + l, 2V + l, … in that tile column (col is a multiple of nr, or 0 with n = N for
    // a product with K = 0). An edge tile (fewer than nr columns) gets the same sums, one entry at a time.
    void sum_row(const T* d, std::size_t i, std::size_t col, std::size_t n) const {
        using simd::Vec;
        constexpr std::size_t V = RegisterBlock<T>::vector, NV = RegisterBlock<T>::nv, NR = RegisterBlock<T>::nr;
        for (std::size_t j0 = 0; j0 < n; j0 += NR) {
            T* partial = row_partials + (i * partials_per_row + (col + j0) / NR) * V;
            if (n - j0 >= NR) {
                Vec<T> x[NV];
                MLPGRAD_UNROLL
                for (std::size_t v = 0; v < NV; ++v) x[v] = Vec<T>::load(d + j0 + v * V);
                tile_row_sum(x).store(partial);
                continue;
            }
            std::fill(partial, partial + V, T(0));
            for (std::size_t j = 0; j < n - j0; ++j) partial[j % V] += d[j0 + j];
        }
    }
};

namespace detail {
// totals[r] = the per_row partial vectors of row i + r added lane by lane, in blocks of `block` (in order),
// for R rows side by side. Each sum starts from its first term, not from zero: the same value (but for the
// sign of an all-zero sum, −0 kept as it is) in fewer additions.
template <std::size_t R, class T>
void row_partial_totals(const T* partials, std::size_t i, std::size_t per_row, std::size_t block,
                        simd::Vec<T> (&totals)[R]) {
    using simd::Vec;
    constexpr std::size_t V = RegisterBlock<T>::vector;
    const T* p = partials + i * per_row * V;
    if (per_row != 0 && per_row <= block) {  // one block (a batch of up to block · nr): its sum is the total
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) totals[r] = Vec<T>::load(p + r * per_row * V);
        for (std::size_t c = 1; c < per_row; ++c) {
            MLPGRAD_UNROLL
            for (std::size_t r = 0; r < R; ++r) totals[r] = totals[r] + Vec<T>::load(p + (r * per_row + c) * V);
        }
        return;
    }
    MLPGRAD_UNROLL
    for (std::size_t r = 0; r < R; ++r) totals[r] = Vec<T>::zero();
    for (std::size_t c0 = 0; c0 < per_row; c0 += block) {
        const std::size_t c1 = per_row - c0 < block ? per_row : c0 + block;
        Vec<T> partial[R];
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) partial[r] = Vec<T>::zero();
        for (std::size_t c = c0; c < c1; ++c) {
            MLPGRAD_UNROLL
            for (std::size_t r = 0; r < R; ++r) partial[r] = partial[r] + Vec<T>::load(p + (r * per_row + c) * V);
        }
        MLPGRAD_UNROLL
        for (std::size_t r = 0; r < R; ++r) totals[r] = totals[r] + partial[r];
    }
}
}  // namespace detail

// sums[i] = the sum of row i's per_row partial vectors (V lanes each): lane by lane over the tile columns,
// in order and blocked like every other sum (kernels::block_length), then the V lanes pairwise as
// simd::horizontal_sum adds them. A row of N values passes through at most nv + 16·√(N / nr) + log2 V roundings.
template <class T>
void sum_row_partials(const T* partials, std::size_t rows, std::size_t per_row, T* sums) {
    using simd::Vec;
    constexpr std::size_t V = RegisterBlock<T>::vector;
    const std::size_t block = kernels::block_length(per_row);
    std::size_t i = 0;
    // V rows at once: their totals transposed, lane l of every row in one vector, then the same pairwise
    // tree as horizontal_sum on whole vectors (the same additions, so the same bits as one row at a time).
    for (; i + V <= rows; i += V) {
        Vec<T> lanes[V];
        detail::row_partial_totals<V>(partials, i, per_row, block, lanes);
        simd::transpose(lanes);
        MLPGRAD_UNROLL
        for (std::size_t half = V / 2; half > 0; half /= 2) {
            MLPGRAD_UNROLL
            for (std::size_t k = 0; k < half; ++k) lanes[k] = lanes[k] + lanes[k + half];
        }
        lanes[0].store(sums + i);
    }
    for (; i < rows; ++i) {
        Vec<T> total[1];
        detail::row_partial_totals<1>(partials, i, per_row, block, total);
        sums[i] = simd::horizontal_sum(total[0]);
    }
}

}  // namespace gemm
}  // namespace mlpgrad
