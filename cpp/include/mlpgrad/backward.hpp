// The backward pass of the notes: ∂ŷ/∂z^T = α, then for t = T..1
//   ∂ŷ/∂u^t = ∂ŷ/∂z^t ∘ σ'(u^t),  ∂ŷ/∂W^{[t]} = ∂ŷ/∂u^t (z^{t-1})ᵀ,  ∂ŷ/∂z^{t-1} = W^{[t]ᵀ} ∂ŷ/∂u^t,
// all scaled by dy (the gradient of dy·ŷ, i.e. a chain-rule seed from a loss).
#pragma once

#include <algorithm>
#include <stdexcept>

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

namespace unchecked {

// backward() without its shape checks, for callers that checked `out` with require_fits() once and reuse it.
template <class T>
void backward(const Network<T>& net, Tape<T>& tape, T dy, const GradientsView<T>& out) {
    const std::size_t T_ = net.depth();
    const bool keep = !out.z.empty();
    T* const dz_scratch = tape.scratch(0);
    T* const du_scratch = tape.scratch(1);

    // ∂/∂α = dy z^T, and the base case ∂/∂z^T = dy α.
    const auto zT = tape.z(T_);
    const auto alpha = net.alpha();
    T* dz = keep ? out.z[T_].data : (T_ == 0 ? out.x.data : dz_scratch);
    for (std::size_t k = 0; k < zT.size; ++k) {
        out.alpha[k] = dy * zT[k];
        dz[k] = dy * alpha[k];
    }

    for (std::size_t t = T_; t >= 1; --t) {
        const std::size_t K = net.width(t), K_prev = net.width(t - 1);
        T* du = keep ? out.u[t - 1].data : du_scratch;
        dispatch(net.activation(t - 1), [&](auto a) {
            kernels::hadamard_derivative<decltype(a)::value>(dz, tape.u(t).data, tape.z(t).data, du, K);
        });
        // dz is dead now; ∂/∂z^{t-1} goes to the caller's buffer or reuses the scratch.
        dz = keep ? out.z[t - 1].data : (t == 1 ? out.x.data : dz_scratch);
        std::fill(dz, dz + K_prev, T(0));
        kernels::outer_product_and_transpose_matvec_accumulate(net.weight(t - 1), du, tape.z(t - 1).data,
                                                               out.weights[t - 1], dz, tape.scratch(2));
    }
    if (keep) std::copy(out.z[0].begin(), out.z[0].end(), out.x.data);  // ∂/∂x = ∂/∂z^0
}

}  // namespace unchecked

// Writes the gradients of dy·ŷ at the forward pass recorded on `tape` into `out` (overwriting it).
// Throws std::invalid_argument (before writing anything) if `out` does not fit `net` or shares memory with
// the tape or the network's parameters, and
// std::logic_error if `tape` holds no forward pass of `net`. Cost: one pass over each weight and each
// weight gradient, linear in the number of edges.
template <class T>
void backward(const Network<T>& net, Tape<T>& tape, T dy, const GradientsView<T>& out) {
    require_fits(net, out);
    detail::require_no_aliasing(net, tape, out);
    require_recorded(net, tape);
    unchecked::backward(net, tape, dy, out);
}

// ŷ and the gradients of dy·ŷ in one call; the tape keeps the forward pass.
template <class T>
T value_and_grad(const Network<T>& net, VectorView<const T> x, Tape<T>& tape, T dy, const GradientsView<T>& out) {
    require_fits(net, out);  // fail before the tape changes
    detail::require_no_aliasing(net, tape, out);
    const T yhat = forward(net, x, tape);
    unchecked::backward(net, tape, dy, out);
    return yhat;
}

}  // namespace mlpgrad
