// Forward and backward for a batch of B examples. Every pass over a weight matrix serves the whole
// batch (a matrix-matrix product), not B matrix-vector products.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "gradients.hpp"
#include "kernels.hpp"
#include "forward.hpp"
#include "network.hpp"

namespace mlpgrad {

// Caller-owned record of a batch forward pass. Feature-major: Z(t) is (K_t × B), so each row holds one
// unit for every example and the kernels' inner loops are contiguous.
template <class T>
class BatchTape {
  public:
    BatchTape() = default;

    // Sizes the tape for widths K_0..K_T, B examples and m outputs; allocates only when it needs more room.
    // Strong guarantee: if the allocation throws (std::bad_alloc, or std::length_error for sizes that do
    // not fit in size_t), the tape is exactly as it was, its previous record included.
    void reset(const std::vector<std::size_t>& widths, std::size_t batch, std::size_t outputs = 1) {
        if (batch == batch_ && outputs == outputs_ && widths == widths_ && !widths.empty()) {
            recorded_ = false;
            return;
        }
        std::vector<std::size_t> new_widths = widths;
        std::vector<std::size_t> offsets(widths.size() + 1, 0);
        std::size_t max_width = 0;
        for (std::size_t t = 0; t < widths.size(); ++t) {
            offsets[t + 1] = detail::checked_sum(offsets[t], detail::checked_product(widths[t], batch));
            max_width = std::max(max_width, widths[t]);
        }
        // The scratch matrices also hold dYᵀ (m × B).
        const std::size_t max_rows = detail::checked_product(std::max(max_width, outputs), batch);
        const std::size_t n =
            detail::checked_sum(detail::checked_product(2, offsets.back()), detail::checked_product(3, max_rows));
        if (storage_.size() < n) {
            aligned_vector<T> storage(n);
            storage_.swap(storage);
        }
        // Everything that can throw is done: commit.
        widths_.swap(new_widths);
        offsets_.swap(offsets);
        batch_ = batch;
        outputs_ = outputs;
        max_rows_ = max_rows;
        recorded_ = false;
    }

    std::size_t batch() const { return batch_; }
    std::size_t outputs() const { return outputs_; }
    const std::vector<std::size_t>& widths() const { return widths_; }
    bool recorded() const { return recorded_; }
    void mark_recorded() { recorded_ = true; }

    MatrixView<T> Z(std::size_t t) { return {storage_.data() + offsets_[t], widths_[t], batch_}; }  // t = 0..T
    MatrixView<T> U(std::size_t t) {                                                                // t = 1..T
        return {storage_.data() + offsets_.back() + offsets_[t], widths_[t], batch_};
    }
    // Two (K_t × B) scratch matrices for ∂ŷ/∂Z and ∂ŷ/∂U.
    MatrixView<T> scratch(std::size_t which, std::size_t t) {
        return {storage_.data() + 2 * offsets_.back() + which * max_rows_, widths_[t], batch_};
    }
    // A (B × K_t) scratch matrix, for Z(t) in example-major order.
    MatrixView<T> scratch_transposed(std::size_t t) {
        return {storage_.data() + 2 * offsets_.back() + 2 * max_rows_, batch_, widths_[t]};
    }

    // An (m × B) scratch matrix for dYᵀ; shares memory with scratch_transposed().
    MatrixView<T> scratch_outputs() {
        return {storage_.data() + 2 * offsets_.back() + 2 * max_rows_, outputs_, batch_};
    }

    // True if [p, p + n) shares memory with the tape (see Tape::overlaps).
    bool overlaps(const T* p, std::size_t n) const {
        return detail::overlaps(p, n, storage_.data(), storage_.size());
    }

  private:
    std::vector<std::size_t> widths_;
    std::vector<std::size_t> offsets_;
    aligned_vector<T> storage_;
    std::size_t batch_ = 0;
    std::size_t outputs_ = 1;
    std::size_t max_rows_ = 0;
    bool recorded_ = false;
};

// Ŷ (B × m): row b is ŷ_b = αᵀ z^T_b + β for row b of X (B × K_0); records the pass on `tape`. X may live
// in the tape (it is then copied first); Ŷ may not (std::invalid_argument), since it is written while the
// tape is read.
template <class T>
void forward_batch(const Network<T>& net, MatrixView<const T> X, BatchTape<T>& tape, MatrixView<T> Yhat) {
    detail::require_shape(X, X.rows, net.width(0), "X");
    detail::require_shape(Yhat, X.rows, net.outputs(), "yhat");
    if (tape.overlaps(Yhat.data, Yhat.size()))
        throw std::invalid_argument("yhat overlaps the batch tape's storage; it needs memory of its own");
    if (tape.overlaps(X.data, X.size())) {
        const std::vector<T> copy(X.data, X.data + X.size());
        return forward_batch(net, MatrixView<const T>(copy.data(), X.rows, X.cols), tape, Yhat);
    }
    const std::size_t B = X.rows, T_ = net.depth(), K_T = net.width(T_), m = net.outputs();
    tape.reset(net.widths(), B, m);
    kernels::transpose(X, tape.Z(0));
    for (std::size_t t = 0; t < T_; ++t) {
        const T* bias = net.has_biases() ? net.bias(t).data : nullptr;
        dispatch(net.activation(t), [&](auto a) {
            kernels::matmul_activate<decltype(a)::value>(net.weight(t), tape.Z(t), bias, tape.U(t + 1), tape.Z(t + 1));
        });
    }
    // Ŷ = (Z^T)ᵀ α: for one output ŷᵀ = αᵀ Z^T, a (1 × K_T)(K_T × B) product; for m, (B × K_T)(K_T × m) with
    // (Z^T)ᵀ read in place. The blocked GEMM keeps the sum over k accurate.
    const MatrixView<const T> ZT = tape.Z(T_);
    if (m == 1)
        kernels::gemm(kernels::Operand<T>{net.alpha().data, 0, 1}, 1, ZT, K_T, MatrixView<T>(Yhat.data, 1, B));
    else
        kernels::gemm(kernels::Operand<T>{ZT.data, 1, B}, B, net.alpha_matrix(), K_T, Yhat);
    if (net.has_output_bias())
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t j = 0; j < m; ++j) Yhat.row(b)[j] += net.output_bias()[j];
    tape.mark_recorded();
}

// ŷ_b for a network with one output (std::invalid_argument for m > 1), written to yhat (B).
template <class T>
void forward_batch(const Network<T>& net, MatrixView<const T> X, BatchTape<T>& tape, VectorView<T> yhat) {
    detail::require_shape(X, X.rows, net.width(0), "X");
    detail::require_size(yhat, X.rows, "yhat");
    if (net.outputs() != 1) throw std::invalid_argument(detail::outputs_message("yhat is a vector", net.outputs()));
    forward_batch(net, X, tape, MatrixView<T>(yhat.data, yhat.size, 1));
}

namespace unchecked {

// backward_batch() without its checks, for callers that validated `out` and dY themselves.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, MatrixView<const T> dY,
                    const BatchGradientsView<T>& out) {
    const std::size_t B = tape.batch(), T_ = net.depth(), K_T = net.width(T_), m = net.outputs();
    const MatrixView<const T> ZT = tape.Z(T_);
    MatrixView<T> dZ = tape.scratch(0, T_);
    if (m == 1) {
        // ∂/∂α_k = Σ_b dy_b Z^T[k, b]; base case ∂/∂Z^T[k, b] = α_k dy_b.
        for (std::size_t k = 0; k < K_T; ++k) {
            out.alpha[k] = kernels::dot(dY.data, ZT.row(k), B);
            T* row = dZ.row(k);
            const T a = net.alpha()[k];
            for (std::size_t b = 0; b < B; ++b) row[b] = a * dY.data[b];
        }
    } else {
        // ∂/∂α = Z^T dY, (K_T × B)(B × m); base case ∂/∂Z^T = α dYᵀ, (K_T × m)(m × B) from dYᵀ in the scratch.
        kernels::gemm(kernels::Operand<T>{ZT.data, B, 1}, K_T, dY, B, MatrixView<T>(out.alpha.data, K_T, m));
        const MatrixView<T> dY_transposed = tape.scratch_outputs();
        kernels::transpose(dY, dY_transposed);
        kernels::gemm(kernels::Operand<T>{net.alpha().data, m, 1}, K_T, MatrixView<const T>(dY_transposed), m, dZ);
    }
    if (net.has_output_bias()) {  // ∂/∂β = Σ_b dY[b, :], a (1 × B)(B × m) product with a row of ones
        const T one = T(1);
        kernels::gemm(kernels::Operand<T>{&one, 0, 0}, 1, dY, B, MatrixView<T>(out.output_bias.data, 1, m));
    }
    for (std::size_t t = T_; t >= 1; --t) {
        // ∂/∂U^t = ∂/∂Z^t ∘ σ'(U^t), into the second scratch matrix; with biases, ∂/∂b^t = Σ_b ∂/∂U^t[:, b]
        // summed in the same pass.
        MatrixView<T> dU = tape.scratch(1, t);
        const auto U = tape.U(t), Z = tape.Z(t);
        dispatch(net.activation(t - 1), [&](auto a) {
            constexpr Activation A = decltype(a)::value;
            if (net.has_biases())
                kernels::hadamard_derivative_and_row_sums<A>(dZ.data, U.data, Z.data, dU.data, U.rows, U.cols,
                                                             out.biases[t - 1].data);
            else
                kernels::hadamard_derivative<A>(dZ.data, U.data, Z.data, dU.data, U.size());
        });
        // ∂/∂W^t = ∂/∂U^t (Z^{t-1})ᵀ summed over the batch, from Z^{t-1} in example-major order.
        MatrixView<T> Z_prev_transposed = tape.scratch_transposed(t - 1);
        kernels::transpose(tape.Z(t - 1), Z_prev_transposed);
        kernels::batch_outer_product(dU, Z_prev_transposed, out.weights[t - 1]);
        if (t == 1 && !out.has_input_gradient()) return;  // parameter gradients only: no W^{[1]ᵀ} ∂U^1
        // ∂/∂Z^{t-1} = W^{tᵀ} ∂/∂U^t.
        dZ = tape.scratch(0, t - 1);
        kernels::transpose_matmul(net.weight(t - 1), dU, dZ);
    }
    if (out.has_input_gradient()) kernels::transpose(dZ, out.x);
}

// For a network with one output: dy has B entries.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, VectorView<const T> dy,
                    const BatchGradientsView<T>& out) {
    unchecked::backward_batch(net, tape, MatrixView<const T>(dy.data, dy.size, 1), out);  // (no ADL to the checked one)
}

}  // namespace unchecked

// Gradients of Σ_b dY[b]ᵀ ŷ_b (dY: B × m) at the batch recorded on `tape`: parameter gradients summed over
// the batch, and, unless out.x is empty, out.x row b = ∂(dY[b]ᵀ ŷ_b)/∂x_b. Checks every shape, and that no
// gradient buffer shares memory with the tape or the network's parameters, before writing anything. dY may
// live anywhere (it is copied first if it shares memory with what the pass writes).
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, MatrixView<const T> dY,
                    const BatchGradientsView<T>& out) {
    if (!tape.recorded() || tape.widths() != net.widths() || tape.outputs() != net.outputs())
        throw std::logic_error("backward_batch() needs a forward_batch() of this network on the same tape first");
    require_fits(net, out, tape.batch());
    detail::require_shape(dY, tape.batch(), net.outputs(), "dy");
    detail::require_no_aliasing(net, tape, out);
    if (detail::is_written(VectorView<const T>(dY.data, dY.size()), tape, out)) {
        const std::vector<T> copy(dY.data, dY.data + dY.size());
        unchecked::backward_batch(net, tape, MatrixView<const T>(copy.data(), dY.rows, dY.cols), out);
        return;
    }
    unchecked::backward_batch(net, tape, dY, out);
}

// For a network with one output (std::invalid_argument for m > 1): dy has B entries.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, VectorView<const T> dy,
                    const BatchGradientsView<T>& out) {
    if (!tape.recorded() || tape.widths() != net.widths() || tape.outputs() != net.outputs())
        throw std::logic_error("backward_batch() needs a forward_batch() of this network on the same tape first");
    require_fits(net, out, tape.batch());
    detail::require_size(dy, tape.batch(), "dy");
    if (net.outputs() != 1) throw std::invalid_argument(detail::outputs_message("dy is a vector", net.outputs()));
    backward_batch(net, tape, MatrixView<const T>(dy.data, dy.size, 1), out);
}

}  // namespace mlpgrad
