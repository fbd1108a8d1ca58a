// The backward pass of the notes: ∂ŷ/∂z^T = α, then for t = T..1
//   ∂ŷ/∂u^t = ∂ŷ/∂z^t ∘ σ'(u^t),  ∂ŷ/∂W^{[t]} = ∂ŷ/∂u^t (z^{t-1})ᵀ,  ∂ŷ/∂z^{t-1} = W^{[t]ᵀ} ∂ŷ/∂u^t,
// all for the gradient of dyᵀŷ (dy ∈ ℝ^m a chain-rule seed from a loss): ∂z^T = α dy, ∂α = z^T dyᵀ, and with
// biases ∂b^t = ∂u^t, ∂β = dy.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "forward.hpp"
#include "gradients.hpp"
#include "kernels.hpp"

namespace mlpgrad {

// Throws std::logic_error unless `tape` holds a forward pass of `net`.
template <class T>
void require_recorded(const Network<T>& net, const Tape<T>& tape) {
    if (!tape.recorded() || tape.widths() != net.widths())
        throw std::logic_error("backward() needs a forward() of this network on the same tape first");
}

namespace detail {

// dW = du z_prevᵀ and dz_prev = Wᵀ du for one layer; a large one split by columns of W over the pool's threads
// (each thread writes its columns of dW and its entries of dz_prev; `partial` is W.cols entries of scratch).
template <class T>
void layer_backward(MatrixView<const T> W, const T* du, const T* z_prev, MatrixView<T> dW, T* dz_prev, T* partial,
                    parallel::ThreadPool* pool) {
    const std::size_t parts = parallel::single_example_parts(pool, W.rows, W.cols, sizeof(T));
    if (parts == 1) {
        std::fill(dz_prev, dz_prev + W.cols, T(0));
        return kernels::outer_product_and_transpose_matvec_accumulate(W, du, z_prev, dW, dz_prev, partial);
    }
    // Boundaries on whole cache lines (no two threads write one) and whole vectors (each column is computed
    // by the kernel's vector loop or its tail as it is for the whole row).
    constexpr std::size_t align = std::max<std::size_t>(simd::Vec<T>::size, 64 / sizeof(T));
    pool->run(parts, [&](std::size_t p) {
        const auto [j0, j1] = parallel::aligned_range(p, parts, W.cols, align);
        std::fill(dz_prev + j0, dz_prev + j1, T(0));
        kernels::outer_product_and_transpose_matvec_accumulate(W, du, z_prev, dW, dz_prev, partial, j0, j1);
    });
}

}  // namespace detail

namespace unchecked {

// backward() without its checks, for callers that checked `out` with require_fits() once and reuse it.
template <class T>
void backward(const Network<T>& net, Tape<T>& tape, VectorView<const T> dy, const GradientsView<T>& out,
              parallel::ThreadPool* pool = nullptr) {
    const std::size_t T_ = net.depth(), m = net.outputs();
    const bool keep = !out.z.empty();
    T* const dz_scratch = tape.scratch(0);
    T* const du_scratch = tape.scratch(1);

    // ∂/∂α = z^T dyᵀ, and the base case ∂/∂z^T = α dy.
    const auto zT = tape.z(T_);
    T* dz = keep ? out.z[T_].data : (T_ == 0 ? out.x.data : dz_scratch);
    if (m == 1) {
        const T d = dy[0];
        const auto alpha = net.alpha();
        for (std::size_t k = 0; k < zT.size; ++k) {
            out.alpha[k] = d * zT[k];
            dz[k] = d * alpha[k];
        }
    } else {
        for (std::size_t k = 0; k < zT.size; ++k)
            for (std::size_t j = 0; j < m; ++j) out.alpha[k * m + j] = zT[k] * dy[j];
        kernels::matvec(net.alpha_matrix(), dy.data, dz);
    }
    if (net.has_output_bias()) std::copy(dy.begin(), dy.end(), out.output_bias.data);  // ∂/∂β = dy

    for (std::size_t t = T_; t >= 1; --t) {
        const std::size_t K = net.width(t);
        // ∂/∂b^t = ∂/∂u^t: written straight into the bias gradient when the caller does not keep ∂u.
        T* du = keep ? out.u[t - 1].data : (net.has_biases() ? out.biases[t - 1].data : du_scratch);
        dispatch(net.activation(t - 1), [&](auto a) {
            kernels::hadamard_derivative<decltype(a)::value>(dz, tape.u(t).data, tape.z(t).data, du, K);
        });
        if (keep && net.has_biases()) std::copy(du, du + K, out.biases[t - 1].data);
        // dz is dead now; ∂/∂z^{t-1} goes to the caller's buffer or reuses the scratch.
        dz = keep ? out.z[t - 1].data : (t == 1 ? out.x.data : dz_scratch);
        detail::layer_backward(net.weight(t - 1), du, tape.z(t - 1).data, out.weights[t - 1], dz, tape.scratch(2),
                               pool);
    }
    if (keep) std::copy(out.z[0].begin(), out.z[0].end(), out.x.data);  // ∂/∂x = ∂/∂z^0
}

// For a network with one output: the gradients of dy·ŷ.
template <class T>
void backward(const Network<T>& net, Tape<T>& tape, T dy, const GradientsView<T>& out,
              parallel::ThreadPool* pool = nullptr) {
    unchecked::backward(net, tape, VectorView<const T>(&dy, 1), out, pool);  // (qualified: no ADL to the checked one)
}

}  // namespace unchecked

// Writes the gradients of dyᵀŷ (dy: m entries) at the forward pass recorded on `tape` into `out`
// (overwriting it). Throws std::invalid_argument (before writing anything) if `out` or dy does not fit `net`
// or `out` shares memory with the tape or the network's parameters, and std::logic_error if `tape` holds no
// forward pass of `net`. dy may live anywhere (it is copied if it shares memory with what the pass writes).
// Cost: one pass over each weight and each weight gradient, linear in the number of edges. With a pool, layers
// large enough to pay (parallel/single_example.hpp) run on its threads, with the same results as on one.
template <class T>
void backward(const Network<T>& net, Tape<T>& tape, VectorView<const T> dy, const GradientsView<T>& out,
              parallel::ThreadPool* pool = nullptr) {
    require_fits(net, out);
    detail::require_size(dy, net.outputs(), "dy");
    detail::require_no_aliasing(net, tape, out);
    require_recorded(net, tape);
    if (detail::is_written(dy, tape, out)) {
        const std::vector<T> copy(dy.begin(), dy.end());
        unchecked::backward(net, tape, VectorView<const T>(copy.data(), copy.size()), out, pool);
        return;
    }
    unchecked::backward(net, tape, dy, out, pool);
}

// For a network with one output (std::invalid_argument for m > 1): the gradients of dy·ŷ.
template <class T>
void backward(const Network<T>& net, Tape<T>& tape, T dy, const GradientsView<T>& out,
              parallel::ThreadPool* pool = nullptr) {
    if (net.outputs() != 1) throw std::invalid_argument(detail::outputs_message("dy is one number", net.outputs()));
    backward(net, tape, VectorView<const T>(&dy, 1), out, pool);
}

// ŷ (into yhat, m entries) and the gradients of dyᵀŷ in one call; the tape keeps the forward pass.
template <class T>
void value_and_grad(const Network<T>& net, VectorView<const T> x, Tape<T>& tape, VectorView<const T> dy,
                    const GradientsView<T>& out, VectorView<T> yhat, parallel::ThreadPool* pool = nullptr) {
    require_fits(net, out);  // fail before the tape changes
    detail::require_size(dy, net.outputs(), "dy");
    detail::require_no_aliasing(net, tape, out);
    if (detail::is_written(dy, tape, out) || detail::overlaps(dy.data, dy.size, yhat.data, yhat.size)) {
        const std::vector<T> copy(dy.begin(), dy.end());
        return value_and_grad(net, x, tape, VectorView<const T>(copy.data(), copy.size()), out, yhat, pool);
    }
    forward(net, x, tape, yhat, pool);
    unchecked::backward(net, tape, dy, out, pool);
}

// For a network with one output (std::invalid_argument for m > 1): ŷ and the gradients of dy·ŷ.
template <class T>
T value_and_grad(const Network<T>& net, VectorView<const T> x, Tape<T>& tape, T dy, const GradientsView<T>& out,
                 parallel::ThreadPool* pool = nullptr) {
    if (net.outputs() != 1) throw std::invalid_argument(detail::outputs_message("dy is one number", net.outputs()));
    T yhat;
    value_and_grad(net, x, tape, VectorView<const T>(&dy, 1), out, VectorView<T>(&yhat, 1), pool);
    return yhat;
}

}  // namespace mlpgrad
