// Forward and backward for a batch of B examples. Every pass over a weight matrix serves the whole
// batch (a matrix-matrix product), not B matrix-vector products.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "gradients.hpp"
#include "kernels.hpp"
#include "network.hpp"

namespace mlpgrad {

// Caller-owned record of a batch forward pass. Feature-major: Z(t) is (K_t × B), so each row holds one
// unit for every example and the kernels' inner loops are contiguous.
template <class T>
class BatchTape {
  public:
    BatchTape() = default;

    // Sizes the tape for widths K_0..K_T and B examples; allocates only when it needs more room.
    // Strong guarantee: if the allocation throws (std::bad_alloc, or std::length_error for sizes that do
    // not fit in size_t), the tape is exactly as it was, its previous record included.
    void reset(const std::vector<std::size_t>& widths, std::size_t batch) {
        if (batch == batch_ && widths == widths_ && !widths.empty()) {
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
        const std::size_t max_rows = detail::checked_product(max_width, batch);
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
        max_rows_ = max_rows;
        recorded_ = false;
    }

    std::size_t batch() const { return batch_; }
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

    // True if [p, p + n) shares memory with the tape (see Tape::overlaps).
    bool overlaps(const T* p, std::size_t n) const {
        return detail::overlaps(p, n, storage_.data(), storage_.size());
    }

  private:
    std::vector<std::size_t> widths_;
    std::vector<std::size_t> offsets_;
    aligned_vector<T> storage_;
    std::size_t batch_ = 0;
    std::size_t max_rows_ = 0;
    bool recorded_ = false;
};

// ŷ_b for each row b of X (B × K_0), written to yhat (B); records the pass on `tape`. X may live in the
// tape (it is then copied first); yhat may not (std::invalid_argument), since it is written while the tape
// is read.
template <class T>
void forward_batch(const Network<T>& net, MatrixView<const T> X, BatchTape<T>& tape, VectorView<T> yhat) {
    detail::require_shape(X, X.rows, net.width(0), "X");
    detail::require_size(yhat, X.rows, "yhat");
    if (tape.overlaps(yhat.data, yhat.size))
        throw std::invalid_argument("yhat overlaps the batch tape's storage; it needs memory of its own");
    if (tape.overlaps(X.data, X.size())) {
        const std::vector<T> copy(X.data, X.data + X.size());
        return forward_batch(net, MatrixView<const T>(copy.data(), X.rows, X.cols), tape, yhat);
    }
    const std::size_t B = X.rows, T_ = net.depth();
    tape.reset(net.widths(), B);
    kernels::transpose(X, tape.Z(0));
    for (std::size_t t = 0; t < T_; ++t) {
        dispatch(net.activation(t), [&](auto a) {
            kernels::matmul_activate<decltype(a)::value>(net.weight(t), tape.Z(t), tape.U(t + 1), tape.Z(t + 1));
        });
    }
    // ŷᵀ = αᵀ Z^T, a (1 × K_T)(K_T × B) product: the blocked GEMM keeps the sum over k accurate.
    kernels::gemm(kernels::Operand<T>{net.alpha().data, 0, 1}, 1, MatrixView<const T>(tape.Z(T_)), net.width(T_),
                  MatrixView<T>(yhat.data, 1, B));
    tape.mark_recorded();
}

namespace unchecked {

// backward_batch() without its shape checks, for callers that validated `out` and `dy` themselves.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, VectorView<const T> dy,
                    const BatchGradientsView<T>& out) {
    const std::size_t B = tape.batch(), T_ = net.depth();
    // ∂/∂α_k = Σ_b dy_b Z^T[k, b]; base case ∂/∂Z^T[k, b] = α_k dy_b.
    const auto ZT = tape.Z(T_);
    MatrixView<T> dZ = tape.scratch(0, T_);
    for (std::size_t k = 0; k < ZT.rows; ++k) {
        out.alpha[k] = kernels::dot(dy.data, ZT.row(k), B);
        T* row = dZ.row(k);
        const T a = net.alpha()[k];
        for (std::size_t b = 0; b < B; ++b) row[b] = a * dy[b];
    }
    for (std::size_t t = T_; t >= 1; --t) {
        // ∂/∂U^t = ∂/∂Z^t ∘ σ'(U^t), into the second scratch matrix.
        MatrixView<T> dU = tape.scratch(1, t);
        const auto U = tape.U(t), Z = tape.Z(t);
        dispatch(net.activation(t - 1), [&](auto a) {
            kernels::hadamard_derivative<decltype(a)::value>(dZ.data, U.data, Z.data, dU.data, U.size());
        });
        // ∂/∂W^t = ∂/∂U^t (Z^{t-1})ᵀ summed over the batch, from Z^{t-1} in example-major order.
        MatrixView<T> Z_prev_transposed = tape.scratch_transposed(t - 1);
        kernels::transpose(tape.Z(t - 1), Z_prev_transposed);
        kernels::batch_outer_product(dU, Z_prev_transposed, out.weights[t - 1]);
        // ∂/∂Z^{t-1} = W^{tᵀ} ∂/∂U^t.
        dZ = tape.scratch(0, t - 1);
        kernels::transpose_matmul(net.weight(t - 1), dU, dZ);
    }
    kernels::transpose(dZ, out.x);
}

}  // namespace unchecked

// Gradients of Σ_b dy_b ŷ_b at the batch recorded on `tape`: parameter gradients summed over the batch,
// out.x row b = dy_b ∂ŷ_b/∂x_b. Checks every shape, and that no gradient buffer shares memory with the
// tape or the network's parameters, before writing anything. dy may live anywhere (it is copied first
// if it shares memory with what the pass writes).
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, VectorView<const T> dy,
                    const BatchGradientsView<T>& out) {
    if (!tape.recorded() || tape.widths() != net.widths())
        throw std::logic_error("backward_batch() needs a forward_batch() of this network on the same tape first");
    require_fits(net, out, tape.batch());
    detail::require_size(dy, tape.batch(), "dy");
    detail::require_no_aliasing(net, tape, out);
    bool dy_is_written = tape.overlaps(dy.data, dy.size);
    detail::for_each_buffer(out, [&](const T* p, std::size_t n, const char*, std::size_t) {
        dy_is_written = dy_is_written || detail::overlaps(dy.data, dy.size, p, n);
    });
    if (dy_is_written) {
        const std::vector<T> copy(dy.begin(), dy.end());
        unchecked::backward_batch(net, tape, VectorView<const T>(copy.data(), copy.size()), out);
        return;
    }
    unchecked::backward_batch(net, tape, dy, out);
}

}  // namespace mlpgrad
