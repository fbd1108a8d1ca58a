// The forward pass, Eq. 1–3 of the notes: z^0 = x, u^{t+1} = W^{[t+1]} z^t, z^{t+1} = σ(u^{t+1}), ŷ = αᵀ z^T.
#pragma once

#include <algorithm>
#include <vector>

#include "kernels.hpp"
#include "network.hpp"
#include "tape.hpp"

namespace mlpgrad {

// Records u^t and z^t on `tape` (sized for `net` on first use) and returns ŷ. Cost: one pass over each
// weight, i.e. linear in the number of edges. x may live in the tape itself (e.g. tape.z(t) of an earlier
// pass): it is then copied first, since resetting the tape may free it and recording may overwrite it.
template <class T>
T forward(const Network<T>& net, VectorView<const T> x, Tape<T>& tape) {
    detail::require_size(x, net.width(0), "x");
    if (tape.overlaps(x.data, x.size)) {
        const std::vector<T> copy(x.begin(), x.end());
        return forward(net, VectorView<const T>(copy.data(), copy.size()), tape);
    }
    tape.reset(net.widths());
    std::copy(x.begin(), x.end(), tape.z(0).begin());  // z^0 = x, kept for ∂ŷ/∂W^{[1]}
    for (std::size_t t = 0; t < net.depth(); ++t) {
        const T* z_in = tape.z(t).data;
        T* u = tape.u(t + 1).data;
        T* z_out = tape.z(t + 1).data;
        dispatch(net.activation(t), [&](auto a) {
            kernels::matvec_activate<decltype(a)::value>(net.weight(t), z_in, u, z_out);
        });
    }
    const std::size_t T_ = net.depth();
    const T yhat = kernels::dot(net.alpha().data, tape.z(T_).data, net.width(T_));  // ŷ = αᵀ z^T
    tape.set_yhat(yhat);
    tape.mark_recorded();
    return yhat;
}

}  // namespace mlpgrad
