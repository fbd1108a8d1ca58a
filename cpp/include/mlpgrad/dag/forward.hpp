// The forward pass over a Graph, level by level: u_v = Σ_{e = (s → v)} w_e z_s (+ b_v), z_v = σ_v(u_v),
// ŷ_j = Σ_k α_{kj} z_{o_k}. Every edge is read once: the cost is O(V + E) (the notes' Question 1).
#pragma once

#include <algorithm>

#include "../kernels.hpp"
#include "graph.hpp"
#include "tape.hpp"

namespace mlpgrad {
namespace dag {
namespace detail {

// u at position p: one gather-FMA per incoming edge, or one dot product when its edges are dense. With
// `gathered`, each gathered z_s is also written to gathered[e] (dense nodes excepted), for the backward pass:
// in a loop of its own, so that the sum below is the same loop, compiled the same way, with or without it
// (GCC vectorises its products and may or may not fuse them with the adds; a loop that also stores them can
// compile otherwise and round otherwise). Its second read of each z_s hits L1.
template <class T>
T incoming_sum(const Graph<T>& g, const T* z, std::size_t p, T* gathered = nullptr) {
    const T* w = g.weights().data;
    const std::size_t first = g.in_begin(p), last = g.in_begin(p + 1);
    T u = g.bias_at(p);
    if (g.is_dense(p)) return u + kernels::dot(w + g.slot_edge(first), z + g.slot_source(first), last - first);
    if (gathered)
        for (std::size_t i = first; i < last; ++i) gathered[g.slot_edge(i)] = z[g.slot_source(i)];
    for (std::size_t i = first; i < last; ++i) u += w[g.slot_edge(i)] * z[g.slot_source(i)];
    return u;
}

// σ over each segment (one activation) of `level`, on rows of `width` values: one dispatch per segment.
template <class T>
void activate_level(const Graph<T>& g, std::size_t level, const T* u, T* z, std::size_t width) {
    for (const Segment& s : g.segments(level))
        dispatch(s.activation, [&](auto a) {
            kernels::activate<decltype(a)::value>(u + s.begin * width, z + s.begin * width,
                                                  (s.end - s.begin) * width);
        });
}

}  // namespace detail

namespace unchecked {

// The forward pass of forward() below, x unchecked; `gathered` as for detail::incoming_sum.
template <class T>
T forward(const Graph<T>& g, VectorView<const T> x, Tape<T>& tape, T* gathered = nullptr) {
    tape.reset(g.n_nodes(), g.output_dim());
    T* const u = tape.u();
    T* const z = tape.z();
    std::fill(u, u + g.n_inputs(), T(0));  // inputs carry no u (as in mlpgrad.dag)
    std::copy(x.begin(), x.end(), z);      // z = x at the inputs, positions 0..n_inputs-1
    for (std::size_t l = 1; l < g.n_levels(); ++l) {
        for (std::size_t p = g.level_begin(l); p < g.level_begin(l + 1); ++p)
            u[p] = detail::incoming_sum(g, z, p, gathered);
        detail::activate_level(g, l, u, z, 1);
    }
    const auto alpha = g.alpha();
    auto yhat = tape.yhat();
    std::fill(yhat.begin(), yhat.end(), T(0));
    for (std::size_t k = 0; k < alpha.rows; ++k)  // ŷ_j += α_{kj} z_{o_k}
        kernels::axpy(z[g.output_position(k)], alpha.row(k), yhat.data, alpha.cols);
    tape.mark_recorded();
    return yhat[0];
}

}  // namespace unchecked

// Records u and z on `tape` and returns ŷ (its first entry; all m of them are in tape.yhat()).
template <class T>
T forward(const Graph<T>& g, VectorView<const T> x, Tape<T>& tape) {
    mlpgrad::detail::require_size(x, g.n_inputs(), "x");
    return unchecked::forward(g, x, tape);
}

}  // namespace dag
}  // namespace mlpgrad
