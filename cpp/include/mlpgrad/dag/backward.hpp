// The backward pass over a Graph, the notes' recursion with "layer t-1" read as "the predecessors of v":
// in reverse level order, ∂ŷ/∂u_v = ∂ŷ/∂z_v σ_v'(u_v); for each edge e = (s → v), ∂ŷ/∂w_e = ∂ŷ/∂u_v z_s and
// ∂ŷ/∂z_s += w_e ∂ŷ/∂u_v; ∂ŷ/∂z_{o_k} starts at Σ_j α_{kj} dy_j. All scaled by dy (the gradient of dy·ŷ).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../gemm/blocking.hpp"
#include "../kernels.hpp"
#include "forward.hpp"
#include "graph.hpp"
#include "tape.hpp"

namespace mlpgrad {
namespace dag {

// Where the backward pass writes, in the caller's order: weights per edge (E), alpha (n_outputs × m), x per
// input; biases, z (∂ŷ/∂z) and u (∂ŷ/∂u) per node id, each optional (empty views are skipped).
template <class T>
struct GradientsView {
    VectorView<T> weights;
    MatrixView<T> alpha;
    VectorView<T> x;
    VectorView<T> biases;
    VectorView<T> z;
    VectorView<T> u;
};

// Throws std::invalid_argument naming the first view that does not fit `g`.
template <class T, class X>
void require_fits(const Graph<T>& g, const VectorView<T>& weights, const MatrixView<T>& alpha, const X& x,
                  const VectorView<T>& biases) {
    mlpgrad::detail::require_size(weights, g.n_edges(), "out.weights");
    mlpgrad::detail::require_shape(alpha, g.n_outputs(), g.output_dim(), "out.alpha");
    if constexpr (std::is_same_v<X, VectorView<T>>)
        mlpgrad::detail::require_size(x, g.n_inputs(), "out.x");
    if (biases.size != 0 || biases.data != nullptr) mlpgrad::detail::require_size(biases, g.n_nodes(), "out.biases");
}

template <class T>
void require_fits(const Graph<T>& g, const GradientsView<T>& out) {
    require_fits(g, out.weights, out.alpha, out.x, out.biases);
    if (out.z.size != 0 || out.z.data != nullptr) mlpgrad::detail::require_size(out.z, g.n_nodes(), "out.z");
    if (out.u.size != 0 || out.u.data != nullptr) mlpgrad::detail::require_size(out.u, g.n_nodes(), "out.u");
}

namespace detail {

// Whether value_and_grad should have its forward pass leave each gathered z_s in ∂w_e's place, for the
// backward pass to scale by ∂ŷ/∂u_v where it would gather z_s again: when z and ∂z together outgrow L2. Each
// edge's backward then gathers one random line (∂z_s) instead of two (z_s and ∂z_s), for a sequential store
// and reload of ∂w that the hardware prefetchers stream. Below, the gathers mostly hit L2 and the extra store
// per edge would only add work.
template <class T>
bool keep_gathered_pays(const Graph<T>& g, const gemm::CacheSizes& caches = {}) {
    return 2 * g.n_nodes() * sizeof(T) > caches.l2;
}

// Whether the single-example backward pass should visit each level's nodes and edges in descending order
// (see backward_pass): when its streams (a source, a weight and its gradient per edge) outgrow L2.
// In cache, descending throughout took 1.02-1.14x the time of ascending (E = 1e4, six runs).
template <class T>
bool descending_pays(const Graph<T>& g, const gemm::CacheSizes& caches = {}) {
    return g.n_edges() * (sizeof(std::uint32_t) + 2 * sizeof(T)) > caches.l2;
}

// unchecked::backward, visiting each level's nodes and edges in descending order or not.
template <bool Descending, class T>
void backward_pass(const Graph<T>& g, Tape<T>& tape, VectorView<const T> dy, const GradientsView<T>& out,
                   bool gathered_in_weights) {
    const std::size_t V = g.n_nodes();
    const T* const u = tape.u();
    const T* const z = tape.z();
    const T* const w = g.weights().data;
    T* const dz = tape.dz();
    T* const du = tape.du();
    std::fill(dz, dz + V, T(0));
    std::fill(du, du + g.n_inputs(), T(0));  // inputs have no u
    const auto alpha = g.alpha();
    for (std::size_t k = 0; k < alpha.rows; ++k) {
        const std::size_t p = g.output_position(k);
        for (std::size_t j = 0; j < alpha.cols; ++j) out.alpha.row(k)[j] = dy[j] * z[p];  // ∂/∂α_{kj} = dy_j z_{o_k}
        dz[p] = kernels::dot(alpha.row(k), dy.data, alpha.cols);                        // ∂/∂z_{o_k} = α_k · dy
    }
    for (std::size_t l = g.n_levels(); l-- > 1;) {
        // Every successor of this level is in a later one, so its ∂ŷ/∂z is complete.
        for (const Segment& s : g.segments(l))
            dispatch(s.activation, [&](auto a) {
                kernels::hadamard_derivative<decltype(a)::value>(dz + s.begin, u + s.begin, z + s.begin,
                                                                 du + s.begin, s.end - s.begin);
            });
        // With Descending (descending_pays), the level's nodes and each node's edges from the last to the
        // first: the slots, weights and their gradients are then visited in one descending run over the
        // whole pass, which the hardware prefetchers follow, instead of an ascending run per level in
        // descending order, which they lose at every level (local DAGs, levels of ~112 edges: value_and_grad
        // 1.6-1.9x slower at E = 1e6, 1e7; software prefetch of the next level's lines did not help). It sets the order
        // in which ∂z_s adds the contributions of one level's successors of s (fixed for a graph).
        const std::size_t level_first = g.level_begin(l), level_size = g.level_begin(l + 1) - level_first;
        for (std::size_t k = 0; k < level_size; ++k) {
            const std::size_t p = Descending ? level_first + level_size - 1 - k : level_first + k;
            const std::size_t first = g.in_begin(p), last = g.in_begin(p + 1);
            const T g_u = du[p];
            if (g.is_dense(p)) {
                const std::size_t e0 = g.slot_edge(first), s0 = g.slot_source(first), n = last - first;
                T* const dw = out.weights.data + e0;
                for (std::size_t i = 0; i < n; ++i) dw[i] = g_u * z[s0 + i];
                kernels::axpy(g_u, w + e0, dz + s0, n);
                continue;
            }
            if (gathered_in_weights)
                for (std::size_t j = 0; j < last - first; ++j) {
                    const std::size_t i = Descending ? last - 1 - j : first + j;
                    const std::size_t e = g.slot_edge(i), src = g.slot_source(i);
                    out.weights[e] = g_u * out.weights[e];
                    dz[src] += g_u * w[e];
                }
            else
                for (std::size_t j = 0; j < last - first; ++j) {
                    const std::size_t i = Descending ? last - 1 - j : first + j;
                    const std::size_t e = g.slot_edge(i), src = g.slot_source(i);
                    out.weights[e] = g_u * z[src];
                    dz[src] += g_u * w[e];
                }
        }
    }
    std::copy(dz, dz + g.n_inputs(), out.x.data);  // inputs sit at positions 0..n_inputs-1
    for (std::size_t p = 0; p < V; ++p) {
        const std::size_t v = g.node_at(p);
        if (out.biases.size) out.biases[v] = v < g.n_inputs() ? T(0) : du[p];  // ∂/∂b_v = ∂/∂u_v
        if (out.z.size) out.z[v] = dz[p];
        if (out.u.size) out.u[v] = du[p];
    }
}

}  // namespace detail

namespace unchecked {

// gathered_in_weights: out.weights[e] holds z_s for every edge e = (s → v) into a non-dense node, as
// unchecked::forward(..., out.weights.data) leaves it; ∂w_e = ∂ŷ/∂u_v z_s is then the same product of it.
template <class T>
void backward(const Graph<T>& g, Tape<T>& tape, VectorView<const T> dy, const GradientsView<T>& out,
              bool gathered_in_weights = false) {
    if (detail::descending_pays(g))
        detail::backward_pass<true>(g, tape, dy, out, gathered_in_weights);
    else
        detail::backward_pass<false>(g, tape, dy, out, gathered_in_weights);
}

// forward() then backward() as one pass pair, nothing else checked; see keep_gathered_pays. Its forward pass
// may then write out.weights before the backward pass reads dy, so a dy that lies in them is read from a copy.
template <class T>
T value_and_grad(const Graph<T>& g, VectorView<const T> x, Tape<T>& tape, VectorView<const T> dy,
                 const GradientsView<T>& out) {
    const bool keep_gathered = detail::keep_gathered_pays(g);
    std::vector<T> dy_copy;
    if (keep_gathered && mlpgrad::detail::overlaps(dy.data, dy.size, out.weights.data, out.weights.size)) {
        dy_copy.assign(dy.begin(), dy.end());
        dy = VectorView<const T>(dy_copy.data(), dy_copy.size());
    }
    const T yhat = unchecked::forward(g, x, tape, keep_gathered ? out.weights.data : nullptr);
    unchecked::backward(g, tape, dy, out, keep_gathered);
    return yhat;
}

}  // namespace unchecked

// Writes the gradients of Σ_j dy_j ŷ_j at the pass recorded on `tape` into `out`. Throws
// std::invalid_argument (before writing anything) if `out` or dy does not fit, std::logic_error if the tape
// holds no forward pass of a graph of this size.
template <class T>
void backward(const Graph<T>& g, Tape<T>& tape, VectorView<const T> dy, const GradientsView<T>& out) {
    require_fits(g, out);
    mlpgrad::detail::require_size(dy, g.output_dim(), "dy");
    if (!tape.recorded() || tape.n_nodes() != g.n_nodes())
        throw std::logic_error("dag::backward() needs a dag::forward() of this graph on the same tape first");
    unchecked::backward(g, tape, dy, out);
}

// ŷ and the gradients of Σ_j dy_j ŷ_j in one call; the tape keeps the forward pass.
template <class T>
T value_and_grad(const Graph<T>& g, VectorView<const T> x, Tape<T>& tape, VectorView<const T> dy,
                 const GradientsView<T>& out) {
    require_fits(g, out);  // fail before the tape changes
    mlpgrad::detail::require_size(dy, g.output_dim(), "dy");
    mlpgrad::detail::require_size(x, g.n_inputs(), "x");
    return unchecked::value_and_grad(g, x, tape, dy, out);
}

// The scalar-output form (m = 1): the gradient of dy·ŷ.
template <class T>
T value_and_grad(const Graph<T>& g, VectorView<const T> x, Tape<T>& tape, T dy, const GradientsView<T>& out) {
    return value_and_grad(g, x, tape, VectorView<const T>(&dy, 1), out);
}

}  // namespace dag
}  // namespace mlpgrad
