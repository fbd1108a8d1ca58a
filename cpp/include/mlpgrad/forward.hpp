// The forward pass, Eq. 1–3 of the notes: z^0 = x, u^{t+1} = W^{[t+1]} z^t (+ b^{t+1}), z^{t+1} = σ(u^{t+1}),
// ŷ = αᵀ z^T (+ β).
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.hpp"
#include "network.hpp"
#include "parallel/single_example.hpp"
#include "tape.hpp"

namespace mlpgrad {
namespace detail {

// ŷ = αᵀ z^T + β (m entries) from z^T (K_T entries). For one output, a dot product; for m, a (1 × K_T)(K_T × m)
// product. Both sums over K_T are blocked (kernels::block_length).
template <class T>
void output_layer(const Network<T>& net, const T* zT, T* yhat) {
    const std::size_t K_T = net.width(net.depth()), m = net.outputs();
    if (m == 1)
        yhat[0] = kernels::dot(net.alpha().data, zT, K_T);
    else
        kernels::gemm(kernels::Operand<T>{zT, 0, 1}, 1, net.alpha_matrix(), K_T, MatrixView<T>(yhat, 1, m));
    if (net.has_output_bias())
        for (std::size_t j = 0; j < m; ++j) yhat[j] += net.output_bias()[j];
}

// For the one-output overloads called on a network with m > 1 outputs.
inline std::string outputs_message(const char* what, std::size_t m) {
    return std::string(what) + " but the network has " + std::to_string(m) +
           " outputs; use the overload that takes a view of " + std::to_string(m) + " entries";
}

}  // namespace detail

namespace detail {

// u = W z_in + b, z_out = σ(u) for one layer; a large one split by rows of W over the pool's threads.
template <Activation A, class T>
void layer_forward(MatrixView<const T> W, const T* z_in, const T* bias, T* u, T* z_out, parallel::ThreadPool* pool) {
    const std::size_t parts = parallel::single_example_parts(pool, W.rows, W.cols, sizeof(T));
    if (parts == 1) return kernels::matvec_activate<A>(W, z_in, bias, u, z_out);
    pool->run(parts, [&](std::size_t p) {
        const auto [r0, r1] = parallel::aligned_range(p, parts, W.rows, kernels::matvec_rows_per_pass);
        kernels::matvec_activate<A>(MatrixView<const T>(W.row(r0), r1 - r0, W.cols), z_in, bias ? bias + r0 : nullptr,
                                    u + r0, z_out + r0);
    });
}

// The pass itself, for an x that does not share memory with the tape.
template <class T>
void record_forward(const Network<T>& net, VectorView<const T> x, Tape<T>& tape, VectorView<T> yhat,
                    parallel::ThreadPool* pool) {
    tape.reset(net.widths());
    std::copy(x.begin(), x.end(), tape.z(0).begin());  // z^0 = x, kept for ∂ŷ/∂W^{[1]}
    for (std::size_t t = 0; t < net.depth(); ++t) {
        const T* bias = net.has_biases() ? net.bias(t).data : nullptr;
        dispatch(net.activation(t), [&](auto a) {
            layer_forward<decltype(a)::value>(net.weight(t), tape.z(t).data, bias, tape.u(t + 1).data,
                                              tape.z(t + 1).data, pool);
        });
    }
    output_layer(net, tape.z(net.depth()).data, yhat.data);
    if (net.outputs() == 1) tape.set_yhat(yhat[0]);
    tape.mark_recorded();
}

// The rare case of an x inside the tape, out of line so that it costs the common case nothing.
template <class T>
MLPGRAD_NOINLINE void record_forward_from_a_copy(const Network<T>& net, VectorView<const T> x, Tape<T>& tape,
                                                 VectorView<T> yhat, parallel::ThreadPool* pool) {
    const std::vector<T> copy(x.begin(), x.end());
    record_forward(net, VectorView<const T>(copy.data(), copy.size()), tape, yhat, pool);
}

[[noreturn]] MLPGRAD_NOINLINE inline void throw_overlaps_tape(const char* what) {
    throw std::invalid_argument(std::string(what) + " overlaps the tape's storage; it needs memory of its own");
}

}  // namespace detail

// Records u^t and z^t on `tape` (sized for `net` on first use) and writes ŷ (m entries) to yhat. Cost: one
// pass over each weight, i.e. linear in the number of edges. x may live in the tape itself (e.g. tape.z(t)
// of an earlier pass): it is then copied first, since resetting the tape may free it and recording may
// overwrite it. yhat may not (std::invalid_argument). With a pool, layers large enough to pay
// (parallel/single_example.hpp) run on its threads, with the same results as on one.
template <class T>
void forward(const Network<T>& net, VectorView<const T> x, Tape<T>& tape, VectorView<T> yhat,
             parallel::ThreadPool* pool = nullptr) {
    detail::require_size(x, net.width(0), "x");
    detail::require_size(yhat, net.outputs(), "yhat");
    if (tape.overlaps(yhat.data, yhat.size)) detail::throw_overlaps_tape("yhat");
    if (tape.overlaps(x.data, x.size))
        detail::record_forward_from_a_copy(net, x, tape, yhat, pool);
    else
        detail::record_forward(net, x, tape, yhat, pool);
}

// ŷ of a network with one output (std::invalid_argument for m > 1).
template <class T>
T forward(const Network<T>& net, VectorView<const T> x, Tape<T>& tape, parallel::ThreadPool* pool = nullptr) {
    if (net.outputs() != 1) throw std::invalid_argument(detail::outputs_message("forward(net, x, tape) returns one ŷ", net.outputs()));
    T yhat;
    forward(net, x, tape, VectorView<T>(&yhat, 1), pool);
    return yhat;
}

}  // namespace mlpgrad
