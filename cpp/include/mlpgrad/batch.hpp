// Forward and backward for a batch of B examples. Every pass over a weight matrix serves the whole
// batch: the three products of a layer, U = W Z, ∂W = ∂U Zᵀ and ∂Z = Wᵀ ∂U, run on the packed GEMM
// (gemm/gemm.hpp) with σ, the bias and σ' fused into their epilogues, optionally on a caller's thread pool.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "batch_output.hpp"
#include "gemm/gemm.hpp"
#include "gradients.hpp"
#include "kernels.hpp"
#include "forward.hpp"
#include "network.hpp"
#include "parallel/thread_pool.hpp"

namespace mlpgrad {

// Caller-owned record of a batch forward pass. Feature-major: Z(t) and U(t) are (K_t × B), so each row
// holds one unit for every example and the epilogues' loops are contiguous. The input is kept as given,
// example-major (X(), B × K_0): the GEMM reads it transposed for U^1 = W^{[1]} Z^0 and as it lies for
// ∂W^{[1]} = ∂U^1 Z^{0ᵀ}, so it is copied, not transposed. The tape also owns the GEMM's packing buffers.
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
        // The scratch matrices also hold Ŷᵀ and dYᵀ (m × B) and ∂αᵀ (m × K_T) of the output layer
        // (batch_output.hpp).
        const std::size_t max_rows =
            std::max(detail::checked_product(std::max(max_width, outputs), batch),
                     detail::checked_product(outputs, widths.empty() ? std::size_t(0) : widths.back()));
        const std::size_t partials =
            detail::checked_product(max_width, detail::checked_product(partials_per_row(batch), gemm::RegisterBlock<T>::vector));
        const std::size_t n = detail::checked_sum(
            detail::checked_sum(detail::checked_product(2, offsets.back()), detail::checked_product(2, max_rows)),
            partials);
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

    MatrixView<T> X() { return {storage_.data(), batch_, widths_[0]}; }                             // Z^0ᵀ
    MatrixView<T> Z(std::size_t t) { return {storage_.data() + offsets_[t], widths_[t], batch_}; }  // t = 1..T
    // For a ReLU layer forward_batch writes Z only, with -0 where u < 0 (gemm::BiasReluSigned), not U.
    MatrixView<T> U(std::size_t t) {                                                                // t = 1..T
        return {storage_.data() + offsets_.back() + offsets_[t], widths_[t], batch_};
    }
    // Two (K_t × B) scratch matrices for ∂ŷ/∂U of two consecutive layers.
    MatrixView<T> scratch(std::size_t which, std::size_t t) {
        return {storage_.data() + 2 * offsets_.back() + which * max_rows_, widths_[t], batch_};
    }
    // An (m × B) scratch matrix for Ŷᵀ or dYᵀ; shares memory with scratch(which, ·).
    MatrixView<T> scratch_outputs(std::size_t which) {
        return {storage_.data() + 2 * offsets_.back() + which * max_rows_, outputs_, batch_};
    }
    // An (m × K_T) scratch matrix for ∂αᵀ; shares memory with scratch(which, ·).
    MatrixView<T> scratch_alpha_transposed(std::size_t which) {
        return {storage_.data() + 2 * offsets_.back() + which * max_rows_, outputs_, widths_.back()};
    }
    // Room for the bias gradients' partial row sums (gemm::TimesDerivative): K_t × partials_per_row(B) vectors.
    T* row_partials() { return storage_.data() + 2 * offsets_.back() + 2 * max_rows_; }
    static std::size_t partials_per_row(std::size_t batch) {
        return (batch + gemm::RegisterBlock<T>::nr - 1) / gemm::RegisterBlock<T>::nr;
    }

    // The GEMM's packing buffers; not part of the record (a failed reserve leaves the record as it was).
    gemm::Workspace<T>& workspace() { return workspace_; }

    // True if [p, p + n) shares memory with the tape (see Tape::overlaps).
    bool overlaps(const T* p, std::size_t n) const {
        return detail::overlaps(p, n, storage_.data(), storage_.size());
    }

  private:
    std::vector<std::size_t> widths_;
    std::vector<std::size_t> offsets_;
    aligned_vector<T> storage_;
    gemm::Workspace<T> workspace_;
    std::size_t batch_ = 0;
    std::size_t outputs_ = 1;
    std::size_t max_rows_ = 0;
    bool recorded_ = false;
};

namespace detail {

template <class T>
gemm::Settings<T> batch_settings(BatchTape<T>& tape, parallel::ThreadPool* pool) {
    gemm::Settings<T> s;
    s.pool = pool;
    s.workspace = &tape.workspace();
    return s;
}

// The shape and layout of a product's A, which is all gemm::workspace_size() looks at.
template <class T>
gemm::Operand<T> shape_of(std::size_t rows, std::size_t cols, bool transposed) {
    return transposed ? gemm::Operand<T>{nullptr, rows, cols, 1, rows} : gemm::Operand<T>{nullptr, rows, cols, cols, 1};
}

// Packing buffers for every product of a pass, reserved before the pass writes anything: a pass either
// fails up front (std::bad_alloc, tape and outputs untouched) or does not allocate.
template <class T>
void reserve_forward(const Network<T>& net, std::size_t B, BatchTape<T>& tape, const gemm::Settings<T>& s) {
    std::size_t need = 0;
    for (std::size_t t = 0; t < net.depth(); ++t)
        need = std::max(need, gemm::workspace_size(shape_of<T>(net.width(t + 1), net.width(t), false), B, s));
    if (net.depth() > 0 && net.outputs() > 1)  // Ŷᵀ = αᵀ Z^T (batch_output.hpp)
        need = std::max(need, gemm::workspace_size(shape_of<T>(net.outputs(), net.width(net.depth()), true), B, s));
    tape.workspace().reserve(need);
}

template <class T>
void reserve_backward(const Network<T>& net, std::size_t B, bool input_gradient, BatchTape<T>& tape,
                      const gemm::Settings<T>& s) {
    const std::size_t T_ = net.depth();
    std::size_t need = 0;
    if (T_ > 0) need = gemm::workspace_size(shape_of<T>(net.width(T_), net.outputs(), false), B, s);
    if (T_ > 0 && output_layer::packed_alpha_gradient<T>(net.outputs()))  // ∂αᵀ = dYᵀ (Z^T)ᵀ
        need = std::max(need, gemm::workspace_size(shape_of<T>(net.outputs(), B, false), net.width(T_), s));
    for (std::size_t t = 1; t <= T_; ++t) {
        need = std::max(need, gemm::workspace_size(shape_of<T>(net.width(t), B, false), net.width(t - 1), s));
        if (t > 1) need = std::max(need, gemm::workspace_size(shape_of<T>(net.width(t - 1), net.width(t), true), B, s));
    }
    if (input_gradient && T_ > 0) need = std::max(need, gemm::workspace_size(shape_of<T>(B, net.width(1), true), net.width(0), s));
    if (input_gradient && T_ == 0) need = std::max(need, gemm::workspace_size(shape_of<T>(B, net.outputs(), false), net.width(0), s));
    tape.workspace().reserve(need);
}

}  // namespace detail

// Ŷ (B × m): row b is ŷ_b = αᵀ z^T_b + β for row b of X (B × K_0); records the pass on `tape`. X may live
// in the tape (it is then copied first); Ŷ may not (std::invalid_argument), since it is written while the
// tape is read. The products run on `pool` (null: the calling thread alone); the results are bit for bit
// the same for any pool.
template <class T>
void forward_batch(const Network<T>& net, MatrixView<const T> X, BatchTape<T>& tape, MatrixView<T> Yhat,
                   parallel::ThreadPool* pool = nullptr) {
    detail::require_shape(X, X.rows, net.width(0), "X");
    detail::require_shape(Yhat, X.rows, net.outputs(), "yhat");
    if (tape.overlaps(Yhat.data, Yhat.size()))
        throw std::invalid_argument("yhat overlaps the batch tape's storage; it needs memory of its own");
    if (tape.overlaps(X.data, X.size())) {
        const std::vector<T> copy(X.data, X.data + X.size());
        return forward_batch(net, MatrixView<const T>(copy.data(), X.rows, X.cols), tape, Yhat, pool);
    }
    const std::size_t B = X.rows, T_ = net.depth(), K_T = net.width(T_), m = net.outputs();
    const gemm::Settings<T> settings = detail::batch_settings(tape, pool);
    detail::reserve_forward(net, B, tape, settings);
    tape.reset(net.widths(), B, m);
    const MatrixView<const T> Z0_transposed = tape.X();
    std::copy(X.data, X.data + X.size(), tape.X().data);
    for (std::size_t t = 0; t < T_; ++t) {
        // u^{t+1} = W^{[t+1]} z^t + b^{t+1} and z^{t+1} = σ(u^{t+1}), σ in the product's epilogue.
        const T* bias = net.has_biases() ? net.bias(t).data : nullptr;
        const gemm::Operand<T> Z = t == 0 ? gemm::transposed(Z0_transposed) : gemm::operand<T>(tape.Z(t));
        // ReLU keeps only Z, with σ' in its sign bit (gemm::BiasReluSigned): U^{t+1} is not written.
        dispatch(net.activation(t), [&](auto a) {
            constexpr Activation sigma = decltype(a)::value;
            if constexpr (sigma == Activation::relu)
                gemm::multiply(gemm::operand(net.weight(t)), Z, tape.Z(t + 1), gemm::Update::overwrite,
                               gemm::BiasReluSigned<T>{bias}, settings);
            else
                gemm::multiply(gemm::operand(net.weight(t)), Z, tape.U(t + 1), gemm::Update::overwrite,
                               gemm::BiasActivation<sigma, T>{bias, tape.Z(t + 1)}, settings);
        });
    }
    // Ŷ = (Z^T)ᵀ α: for one output ŷᵀ = αᵀ Z^T, a (1 × K_T)(K_T × B) product on the small blocked GEMM (one
    // row gains nothing from packing or threads); for m, Ŷᵀ = αᵀ Z^T on the packed GEMM, then transposed
    // (batch_output.hpp); a network without layers reads X as it lies.
    if (T_ == 0)
        kernels::gemm(kernels::Operand<T>{Z0_transposed.data, K_T, 1}, B, net.alpha_matrix(), K_T, Yhat);
    else if (m == 1)
        kernels::gemm(kernels::Operand<T>{net.alpha().data, 0, 1}, 1, MatrixView<const T>(tape.Z(T_)), K_T,
                      MatrixView<T>(Yhat.data, 1, B));
    else
        output_layer::forward(MatrixView<const T>(tape.Z(T_)), net.alpha_matrix(), tape.scratch_outputs(0), Yhat, settings);
    if (net.has_output_bias())
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t j = 0; j < m; ++j) Yhat.row(b)[j] += net.output_bias()[j];
    tape.mark_recorded();
}

// ŷ_b for a network with one output (std::invalid_argument for m > 1), written to yhat (B).
template <class T>
void forward_batch(const Network<T>& net, MatrixView<const T> X, BatchTape<T>& tape, VectorView<T> yhat,
                   parallel::ThreadPool* pool = nullptr) {
    detail::require_shape(X, X.rows, net.width(0), "X");
    detail::require_size(yhat, X.rows, "yhat");
    if (net.outputs() != 1) throw std::invalid_argument(detail::outputs_message("yhat is a vector", net.outputs()));
    forward_batch(net, X, tape, MatrixView<T>(yhat.data, yhat.size, 1), pool);
}

namespace unchecked {

// backward_batch() without its checks, for callers that validated `out` and dY themselves.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, MatrixView<const T> dY,
                    const BatchGradientsView<T>& out, parallel::ThreadPool* pool = nullptr) {
    const std::size_t B = tape.batch(), T_ = net.depth(), K_T = net.width(T_), m = net.outputs();
    const gemm::Settings<T> settings = detail::batch_settings(tape, pool);
    detail::reserve_backward(net, B, out.has_input_gradient(), tape, settings);
    const MatrixView<const T> X = tape.X();
    // dYᵀ (m × B) for m > 1, in the scratch matrix that the base case below does not write.
    const bool use_dYt = T_ > 0 && m > 1 && B > 0;
    if (use_dYt) kernels::transpose(dY, tape.scratch_outputs((T_ + 1) % 2));
    const MatrixView<const T> dYt = use_dYt ? tape.scratch_outputs((T_ + 1) % 2) : MatrixView<T>{};
    if (B == 0) {  // (an empty tape may have no storage: no pointer into it is formed)
        std::fill(out.alpha.data, out.alpha.data + out.alpha.size, T(0));
    } else if (T_ > 0 && m == 1) {
        // ∂/∂α_k = Σ_b dy_b Z^T[k, b]
        const MatrixView<const T> ZT = tape.Z(T_);
        for (std::size_t k = 0; k < K_T; ++k) out.alpha[k] = kernels::dot(dY.data, ZT.row(k), B);
    } else if (use_dYt) {  // ∂/∂α = Z^T dY, from the rows of Z^T and dYᵀ (batch_output.hpp)
        // (∂αᵀ in the scratch matrix that the base case writes next)
        output_layer::alpha_gradient(MatrixView<const T>(tape.Z(T_)), dYt, out.alpha.data,
                                     tape.scratch_alpha_transposed(T_ % 2), settings);
    } else {  // ∂/∂α = X dY for a network without layers
        kernels::gemm(kernels::Operand<T>{X.data, 1, K_T}, K_T, dY, B, MatrixView<T>(out.alpha.data, K_T, m));
    }
    if (net.has_output_bias()) {  // ∂/∂β = Σ_b dY[b, :], a (1 × B)(B × m) product with a row of ones
        const T one = T(1);
        kernels::gemm(kernels::Operand<T>{&one, 0, 0}, 1, dY, B, MatrixView<T>(out.output_bias.data, 1, m));
    }
    if (T_ == 0) {  // ∂/∂X = dY αᵀ
        if (out.has_input_gradient())
            gemm::multiply(gemm::operand(dY), gemm::transposed(net.alpha_matrix()), out.x, gemm::Update::overwrite,
                           gemm::Store{}, settings);
        return;
    }
    // ∂/∂U^t for t = T..1 alternate between the tape's two scratch matrices.
    const auto dU_of = [&](std::size_t t) { return tape.scratch(t % 2, t); };
    T* const partials = net.has_biases() ? tape.row_partials() : nullptr;
    const std::size_t per_row = BatchTape<T>::partials_per_row(B);
    // C = A B with ∂/∂U^t = C ∘ σ'(U^t) in the epilogue, C = ∂/∂U^t's scratch; with biases, ∂/∂b^t = Σ_b ∂/∂U^t
    // from the epilogue's partial row sums.
    const auto times_derivative = [&](std::size_t t, gemm::Operand<T> A, gemm::Operand<T> Bop) {
        dispatch(net.activation(t - 1), [&](auto a) {
            constexpr Activation sigma = decltype(a)::value;
            const gemm::TimesDerivative<sigma, T, sigma == Activation::relu> epilogue{tape.U(t), tape.Z(t), partials,
                                                                                     per_row};
            gemm::multiply(A, Bop, dU_of(t), gemm::Update::overwrite, epilogue, settings);
        });
        if (partials) gemm::sum_row_partials(partials, net.width(t), per_row, out.biases[t - 1].data);
    };
    // Base case: ∂/∂Z^T = α dYᵀ, (K_T × m)(m × B) with dYᵀ read in place (m = 1) or from its transposed copy,
    // so ∂/∂U^T = (α dYᵀ) ∘ σ'(U^T).
    times_derivative(T_, gemm::operand(net.alpha_matrix()), use_dYt ? gemm::operand(dYt) : gemm::transposed(dY));
    for (std::size_t t = T_; t >= 1; --t) {
        const MatrixView<const T> dU = dU_of(t);
        // ∂/∂W^t = ∂/∂U^t (Z^{t-1})ᵀ summed over the batch; the packing reads Z^{t-1} transposed (Z^0ᵀ = X as is).
        const gemm::Operand<T> Z_prev_transposed = t == 1 ? gemm::operand(X) : gemm::transposed<T>(tape.Z(t - 1));
        gemm::multiply(gemm::operand(dU), Z_prev_transposed, out.weights[t - 1], gemm::Update::overwrite,
                       gemm::Store{}, settings);
        if (t == 1) break;
        // ∂/∂Z^{t-1} = W^{tᵀ} ∂/∂U^t, and ∂/∂U^{t-1} = ∂/∂Z^{t-1} ∘ σ'(U^{t-1}) in the same pass.
        times_derivative(t - 1, gemm::transposed(net.weight(t - 1)), gemm::operand(dU));
    }
    // ∂/∂X = (W^{1ᵀ} ∂/∂U^1)ᵀ = (∂/∂U^1)ᵀ W^1, written example-major straight into out.x. Parameter gradients
    // only (empty out.x): skipped.
    if (out.has_input_gradient())
        gemm::multiply(gemm::transposed<T>(dU_of(1)), gemm::operand(net.weight(0)), out.x, gemm::Update::overwrite,
                       gemm::Store{}, settings);
}

// For a network with one output: dy has B entries.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, VectorView<const T> dy,
                    const BatchGradientsView<T>& out, parallel::ThreadPool* pool = nullptr) {
    unchecked::backward_batch(net, tape, MatrixView<const T>(dy.data, dy.size, 1), out, pool);  // (no ADL to the checked one)
}

}  // namespace unchecked

// Gradients of Σ_b dY[b]ᵀ ŷ_b (dY: B × m) at the batch recorded on `tape`: parameter gradients summed over
// the batch, and, unless out.x is empty, out.x row b = ∂(dY[b]ᵀ ŷ_b)/∂x_b. Checks every shape, and that no
// gradient buffer shares memory with the tape or the network's parameters, before writing anything. dY may
// live anywhere (it is copied first if it shares memory with what the pass writes). The products run on
// `pool` (null: the calling thread alone); the results are bit for bit the same for any pool.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, MatrixView<const T> dY,
                    const BatchGradientsView<T>& out, parallel::ThreadPool* pool = nullptr) {
    if (!tape.recorded() || tape.widths() != net.widths() || tape.outputs() != net.outputs())
        throw std::logic_error("backward_batch() needs a forward_batch() of this network on the same tape first");
    require_fits(net, out, tape.batch());
    detail::require_shape(dY, tape.batch(), net.outputs(), "dy");
    detail::require_no_aliasing(net, tape, out);
    if (detail::is_written(VectorView<const T>(dY.data, dY.size()), tape, out)) {
        const std::vector<T> copy(dY.data, dY.data + dY.size());
        unchecked::backward_batch(net, tape, MatrixView<const T>(copy.data(), dY.rows, dY.cols), out, pool);
        return;
    }
    unchecked::backward_batch(net, tape, dY, out, pool);
}

// For a network with one output (std::invalid_argument for m > 1): dy has B entries.
template <class T>
void backward_batch(const Network<T>& net, BatchTape<T>& tape, VectorView<const T> dy,
                    const BatchGradientsView<T>& out, parallel::ThreadPool* pool = nullptr) {
    if (!tape.recorded() || tape.widths() != net.widths() || tape.outputs() != net.outputs())
        throw std::logic_error("backward_batch() needs a forward_batch() of this network on the same tape first");
    require_fits(net, out, tape.batch());
    detail::require_size(dy, tape.batch(), "dy");
    if (net.outputs() != 1) throw std::invalid_argument(detail::outputs_message("dy is a vector", net.outputs()));
    backward_batch(net, tape, MatrixView<const T>(dy.data, dy.size, 1), out, pool);
}

}  // namespace mlpgrad
