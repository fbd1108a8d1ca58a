// Forward and backward over a Graph for a batch of B examples, on feature-major tapes: each edge is one
// vector FMA over the examples (forward) and one dot product plus one axpy over them (backward).
#pragma once

#include <algorithm>
#include <stdexcept>

#include "../gemm/gemm.hpp"
#include "../kernels.hpp"
#include "../parallel/thread_pool.hpp"
#include "../simd.hpp"
#include "backward.hpp"
#include "forward.hpp"
#include "graph.hpp"
#include "prefetch.hpp"
#include "tape.hpp"

namespace mlpgrad {
namespace dag {

// Gradients of Σ_b Σ_j dy_{bj} ŷ_{bj}: weights, alpha and biases summed over the batch; x is (B × n_inputs),
// row b = ∂/∂x_b. biases may be empty (skipped); so may x (parameter gradients only, for any batch size).
template <class T>
struct BatchGradientsView {
    VectorView<T> weights;
    MatrixView<T> alpha;
    MatrixView<T> x;
    VectorView<T> biases;
};

namespace detail {

constexpr std::size_t tile_vectors = 4;  // register tiles of gather_row and scatter_row: 4 vectors of examples

// Whether the batch passes prefetch their gathers (prefetch.hpp): when the Z rows outgrow L2 (prefetch_pays),
// and a row is at most one register tile of examples, so that each edge's work is too short to hide its own
// miss. Longer rows give the out-of-order window several tiles of work per edge, and prefetching all their
// lines floods the miss queue: whole-row prefetch measured 0.90x at B = 64 and 0.72-0.81x at B = 256
// (E = 1e6, double), against 1.11-1.39x at B = 4 and 1.19-1.26x at B = 16.
template <class T>
bool batch_prefetch_pays(const Graph<T>& g, std::size_t B) {
    return B <= tile_vectors * simd::Vec<T>::size && prefetch_pays(g.n_nodes(), B * sizeof(T));
}

// Below this many multiply-adds a level runs on the calling thread alone: waking the workers costs more.
constexpr std::size_t parallel_work = std::size_t(1) << 15;

// f(begin, end) over [0, n) cut into one contiguous chunk per thread of `pool`, at multiples of `grain` (the
// last chunk ends at n). Every index gets the same operations whichever chunk holds it, so results do not
// depend on the thread count. One chunk, f(0, n), without a pool or below parallel_work.
template <class F>
void for_chunks(parallel::ThreadPool* pool, std::size_t n, std::size_t grain, std::size_t work, F&& f) {
    const std::size_t units = (n + grain - 1) / grain;
    const std::size_t parts = pool && work >= parallel_work ? std::min(pool->size(), units) : 1;
    if (parts <= 1) {
        f(std::size_t(0), n);
        return;
    }
    pool->run(parts, [&](std::size_t t) {
        f(std::min(n, units * t / parts * grain), std::min(n, units * (t + 1) / parts * grain));
    });
}

// U row p = b_p + Σ_{e = (s → p)} w_e Z row s, in register tiles of `tile` vectors across the examples so the
// accumulators stay in registers for the whole gather. Prefetch: first ask for the Z rows of the sources
// prefetch_distance slots ahead (the forward pass visits the slots in order).
template <bool Prefetch, class T>
MLPGRAD_NOINLINE void gather_row(const Graph<T>& g, std::size_t p, const T* Z, std::size_t B, T* u_row) {
    using Vec = simd::Vec<T>;
    constexpr std::size_t V = Vec::size, tile = tile_vectors;
    const T* const w = g.weights().data;
    const std::size_t first = g.in_begin(p), last = g.in_begin(p + 1);
    if constexpr (Prefetch) {
        const std::size_t end = std::min(last + prefetch_distance, g.n_edges());
        for (std::size_t i = first + prefetch_distance; i < end; ++i)
            prefetch_row_for_read(Z + g.slot_source(i) * B, B * sizeof(T));
    }
    const T bias = g.bias_at(p);
    std::size_t b = 0;
    for (; b + tile * V <= B; b += tile * V) {
        Vec acc[tile];
        MLPGRAD_UNROLL
        for (std::size_t c = 0; c < tile; ++c) acc[c] = Vec::broadcast(bias);
        for (std::size_t i = first; i < last; ++i) {
            const Vec wv = Vec::broadcast(w[g.slot_edge(i)]);
            const T* z = Z + g.slot_source(i) * B + b;
            MLPGRAD_UNROLL
            for (std::size_t c = 0; c < tile; ++c) acc[c] = simd::fma(wv, Vec::load(z + c * V), acc[c]);
        }
        MLPGRAD_UNROLL
        for (std::size_t c = 0; c < tile; ++c) acc[c].store(u_row + b + c * V);
    }
    for (; b + V <= B; b += V) {
        Vec acc = Vec::broadcast(bias);
        for (std::size_t i = first; i < last; ++i)
            acc = simd::fma(Vec::broadcast(w[g.slot_edge(i)]), Vec::load(Z + g.slot_source(i) * B + b), acc);
        acc.store(u_row + b);
    }
    for (; b < B; ++b) {
        T acc = bias;
        for (std::size_t i = first; i < last; ++i) acc += w[g.slot_edge(i)] * Z[g.slot_source(i) * B + b];
        u_row[b] = acc;
    }
}

// For each in-edge e = (s → p): ∂w_e = Σ_b ∂U[p, b] Z[s, b] and ∂Z row s += w_e ∂U row p. A tile of ∂U row p
// stays in registers while every edge streams its Z and ∂Z rows past it (two loads, one store, two FMAs per
// vector, instead of a separate dot and axpy that reload it). With `ahead`, first ask for the Z and ∂Z rows of
// the sources that far ahead in the backward pass's order (∂Z for the write of its +=).
template <bool Prefetch, class T>
MLPGRAD_NOINLINE void scatter_row(const Graph<T>& g, std::size_t p, const T* Z, const T* du, T* dZ, std::size_t B,
                                  T* dw, BackwardLookahead<T>* ahead) {
    using Vec = simd::Vec<T>;
    constexpr std::size_t V = Vec::size, tile = tile_vectors;
    const T* const w = g.weights().data;
    const std::size_t first = g.in_begin(p), last = g.in_begin(p + 1);
    if constexpr (Prefetch)
        for (std::size_t i = first; i < last; ++i) {
            const std::size_t s = ahead->next();
            if (s == ahead->none) break;
            prefetch_row_for_read(Z + s * B, B * sizeof(T));
            prefetch_row_for_write(dZ + s * B, B * sizeof(T));
        }
    for (std::size_t i = first; i < last; ++i) dw[g.slot_edge(i)] = T(0);
    std::size_t b = 0;
    for (; b + tile * V <= B; b += tile * V) {
        Vec gu[tile];
        MLPGRAD_UNROLL
        for (std::size_t c = 0; c < tile; ++c) gu[c] = Vec::load(du + b + c * V);
        for (std::size_t i = first; i < last; ++i) {
            const std::size_t e = g.slot_edge(i), row = g.slot_source(i) * B + b;
            const Vec wv = Vec::broadcast(w[e]);
            Vec acc = Vec::zero();
            MLPGRAD_UNROLL
            for (std::size_t c = 0; c < tile; ++c) {
                acc = simd::fma(gu[c], Vec::load(Z + row + c * V), acc);
                simd::fma(wv, gu[c], Vec::load(dZ + row + c * V)).store(dZ + row + c * V);
            }
            dw[e] += simd::horizontal_sum(acc);
        }
    }
    if (b == B) return;
    for (std::size_t i = first; i < last; ++i) {  // the examples past the last full tile
        const std::size_t e = g.slot_edge(i), row = g.slot_source(i) * B + b;
        dw[e] += kernels::dot(du + b, Z + row, B - b);
        kernels::axpy(w[e], du + b, dZ + row, B - b);
    }
}

// scatter_row split in two for threads, each with scatter_row's arithmetic exactly, so that results are the
// same bit for bit: the ∂Z part over the examples [b0, b1) (b0 a multiple of the tile, b1 too or B) ...
template <class T>
MLPGRAD_NOINLINE void scatter_row_columns(const Graph<T>& g, std::size_t p, const T* du, T* dZ, std::size_t B,
                                          std::size_t b0, std::size_t b1) {
    using Vec = simd::Vec<T>;
    constexpr std::size_t V = Vec::size, tile = tile_vectors;
    const T* const w = g.weights().data;
    const std::size_t first = g.in_begin(p), last = g.in_begin(p + 1);
    std::size_t b = b0;
    for (; b + tile * V <= b1; b += tile * V) {
        Vec gu[tile];
        MLPGRAD_UNROLL
        for (std::size_t c = 0; c < tile; ++c) gu[c] = Vec::load(du + b + c * V);
        for (std::size_t i = first; i < last; ++i) {
            const std::size_t row = g.slot_source(i) * B + b;
            const Vec wv = Vec::broadcast(w[g.slot_edge(i)]);
            MLPGRAD_UNROLL
            for (std::size_t c = 0; c < tile; ++c)
                simd::fma(wv, gu[c], Vec::load(dZ + row + c * V)).store(dZ + row + c * V);
        }
    }
    if (b == b1) return;  // b1 = B here: the examples past the last full tile
    for (std::size_t i = first; i < last; ++i)
        kernels::axpy(w[g.slot_edge(i)], du + b, dZ + g.slot_source(i) * B + b, B - b);
}

// ... and ∂w_e = Σ_b ∂U[p, b] Z[s, b] for p's in-edges, tile by tile as scatter_row sums it.
template <class T>
MLPGRAD_NOINLINE void row_weight_gradients(const Graph<T>& g, std::size_t p, const T* Z, const T* du, std::size_t B,
                                           T* dw) {
    using Vec = simd::Vec<T>;
    constexpr std::size_t V = Vec::size, tile = tile_vectors;
    const std::size_t full = B - B % (tile * V);
    for (std::size_t i = g.in_begin(p); i < g.in_begin(p + 1); ++i) {
        const T* z = Z + g.slot_source(i) * B;
        T sum = T(0);
        for (std::size_t b = 0; b < full; b += tile * V) {
            Vec acc = Vec::zero();
            MLPGRAD_UNROLL
            for (std::size_t c = 0; c < tile; ++c) acc = simd::fma(Vec::load(du + b + c * V), Vec::load(z + b + c * V), acc);
            sum += simd::horizontal_sum(acc);
        }
        if (full != B) sum += kernels::dot(du + full, z + full, B - full);
        dw[g.slot_edge(i)] = sum;
    }
}

// The edge-by-edge backward of level l: fused (scatter_row) on one thread, prefetching through `ahead` unless
// it is null; with threads, ∂Z split over the examples and ∂w over the nodes, the same arithmetic. Returns
// whether it ran fused (and so moved `ahead` past the level).
template <class T>
bool scatter_level(const Graph<T>& g, std::size_t l, const T* Z, const T* dU, T* dZ, std::size_t B, T* dw,
                   parallel::ThreadPool* pool, BackwardLookahead<T>* ahead) {
    const std::size_t first = g.level_begin(l), last = g.level_begin(l + 1);
    const std::size_t work = (g.in_begin(last) - g.in_begin(first)) * B;
    constexpr std::size_t grain = tile_vectors * simd::Vec<T>::size;
    if (!pool || pool->size() < 2 || work < parallel_work || B < 2 * grain) {
        if (ahead)
            for (std::size_t p = first; p < last; ++p) scatter_row<true>(g, p, Z, dU + p * B, dZ, B, dw, ahead);
        else
            for (std::size_t p = first; p < last; ++p) scatter_row<false>(g, p, Z, dU + p * B, dZ, B, dw, ahead);
        return true;
    }
    for_chunks(pool, B, grain, work, [&](std::size_t b0, std::size_t b1) {
        for (std::size_t p = first; p < last; ++p) scatter_row_columns(g, p, dU + p * B, dZ, B, b0, b1);
    });
    for_chunks(pool, last - first, 1, work, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t p = first + r0; p < first + r1; ++p) row_weight_gradients(g, p, Z, dU + p * B, B, dw);
    });
    return false;
}

// A dense level's block W (rows × n_sources) of the caller's weights.
template <class T>
MatrixView<const T> dense_weights(const Graph<T>& g, std::size_t l) {
    const DenseLevel& d = g.dense_level(l);
    return {g.weights().data + d.edge_begin, g.level_begin(l + 1) - g.level_begin(l), d.n_sources};
}

// Packing buffers of every dense level's products, reserved before a pass writes anything (as the MLP's
// batch passes do): a pass either fails up front (std::bad_alloc) or does not allocate.
template <class T>
void reserve_dense(const Graph<T>& g, std::size_t B, bool backward, BatchTape<T>& tape, const gemm::Settings<T>& s) {
    std::size_t need = 0;
    for (std::size_t l = 1; l < g.n_levels(); ++l) {
        if (!g.dense_level(l).dense) continue;
        const MatrixView<const T> W = dense_weights(g, l);
        if (!backward) {
            need = std::max(need, gemm::workspace_size(gemm::Operand<T>{nullptr, W.rows, W.cols, W.cols, 1}, B, s));
            continue;
        }
        need = std::max(need, gemm::workspace_size(gemm::Operand<T>{nullptr, W.rows, B, B, 1}, W.cols, s));
        need = std::max(need, gemm::workspace_size(gemm::Operand<T>{nullptr, W.cols, W.rows, 1, W.cols}, B, s));
    }
    if (need) tape.workspace().reserve(need);
}

// A dense level (Graph::dense_level) as the MLP's packed product: U = W Z_in, Z = σ(U + b 1ᵀ) in the epilogue.
template <class T>
void dense_forward(const Graph<T>& g, std::size_t l, T* U, T* Z, std::size_t B, const gemm::Settings<T>& settings) {
    const DenseLevel& d = g.dense_level(l);
    const std::size_t first = g.level_begin(l), rows = g.level_begin(l + 1) - first;
    const T* bias = g.has_biases() ? g.biases().data + g.node_at(first) : nullptr;
    dispatch(g.segments(l).front().activation, [&](auto a) {
        gemm::multiply(gemm::operand(dense_weights(g, l)),
                       gemm::operand(MatrixView<const T>(Z + d.source_begin * B, d.n_sources, B)),
                       MatrixView<T>(U + first * B, rows, B), gemm::Update::overwrite,
                       gemm::BiasActivation<decltype(a)::value, T>{bias, MatrixView<T>(Z + first * B, rows, B)},
                       settings);
    });
}

// Its backward, from ∂ŷ/∂U of the level: ∂W = ∂U Z_inᵀ (over the batch) and ∂Z_in = Wᵀ ∂U, written, or added
// when the sources have other successors or seeds; the latter skipped when the sources are inputs whose
// gradient is not wanted. Both products as the MLP's, bit for bit the same for any thread count.
template <class T>
void dense_backward(const Graph<T>& g, std::size_t l, BatchTape<T>& tape, T* dw, bool skip_input_gradient,
                    const gemm::Settings<T>& settings) {
    const DenseLevel& d = g.dense_level(l);
    const std::size_t B = tape.batch(), first = g.level_begin(l), rows = g.level_begin(l + 1) - first, c = d.n_sources;
    const MatrixView<const T> dU(tape.dU().data + first * B, rows, B);
    const MatrixView<const T> Z_in(tape.Z().data + d.source_begin * B, c, B);
    gemm::multiply(gemm::operand(dU), gemm::transposed(Z_in), MatrixView<T>(dw + d.edge_begin, rows, c),
                   gemm::Update::overwrite, gemm::Store{}, settings);
    if (skip_input_gradient && d.source_begin + c <= g.n_inputs()) return;
    gemm::multiply(gemm::transposed(dense_weights(g, l)), gemm::operand(dU),
                   MatrixView<T>(tape.dZ().data + d.source_begin * B, c, B),
                   d.exclusive ? gemm::Update::overwrite : gemm::Update::accumulate, gemm::Store{}, settings);
}

}  // namespace detail

// ŷ for each row b of X (B × n_inputs), written to yhat (B × m); records the pass on `tape`.
// With a pool, each level's nodes (or a dense level's rows) are split over its threads; results are the same
// bit for bit for any thread count.
template <class T>
void forward_batch(const Graph<T>& g, MatrixView<const T> X, BatchTape<T>& tape, MatrixView<T> yhat,
                   parallel::ThreadPool* pool = nullptr) {
    mlpgrad::detail::require_shape(X, X.rows, g.n_inputs(), "X");
    mlpgrad::detail::require_shape(yhat, X.rows, g.output_dim(), "yhat");
    const std::size_t B = X.rows;
    gemm::Settings<T> settings;
    settings.pool = pool;
    settings.workspace = &tape.workspace();
    detail::reserve_dense(g, B, false, tape, settings);
    tape.reset(g.n_nodes(), B);
    T* const U = tape.U().data;
    T* const Z = tape.Z().data;
    std::fill(U, U + g.n_inputs() * B, T(0));
    kernels::transpose(X, MatrixView<T>(Z, g.n_inputs(), B));
    const bool prefetch = detail::batch_prefetch_pays(g, B);
    for (std::size_t l = 1; l < g.n_levels(); ++l) {
        if (g.dense_level(l).dense) {
            detail::dense_forward(g, l, U, Z, B, settings);
            continue;
        }
        const std::size_t first = g.level_begin(l), last = g.level_begin(l + 1);
        detail::for_chunks(pool, last - first, 1, (g.in_begin(last) - g.in_begin(first)) * B,
                           [&](std::size_t r0, std::size_t r1) {
                               if (prefetch)
                                   for (std::size_t p = first + r0; p < first + r1; ++p)
                                       detail::gather_row<true>(g, p, Z, B, U + p * B);
                               else
                                   for (std::size_t p = first + r0; p < first + r1; ++p)
                                       detail::gather_row<false>(g, p, Z, B, U + p * B);
                           });
        detail::activate_level(g, l, U, Z, B);
    }
    const auto alpha = g.alpha();
    std::fill(yhat.data, yhat.data + yhat.size(), T(0));
    for (std::size_t k = 0; k < alpha.rows; ++k) {  // ŷ_{bj} += z_{o_k, b} α_{kj}
        const T* z = Z + g.output_position(k) * B;
        for (std::size_t b = 0; b < B; ++b) kernels::axpy(z[b], alpha.row(k), yhat.row(b), alpha.cols);
    }
    tape.mark_recorded();
}

namespace unchecked {

template <class T>
void backward_batch(const Graph<T>& g, BatchTape<T>& tape, MatrixView<const T> dy, const BatchGradientsView<T>& out,
                    parallel::ThreadPool* pool = nullptr) {
    const std::size_t B = tape.batch(), V = g.n_nodes();
    gemm::Settings<T> settings;
    settings.pool = pool;
    settings.workspace = &tape.workspace();
    detail::reserve_dense(g, B, true, tape, settings);  // before anything is written
    const T* const U = tape.U().data;
    const T* const Z = tape.Z().data;
    T* const dZ = tape.dZ().data;
    T* const dU = tape.dU().data;
    std::fill(dZ, dZ + V * B, T(0));
    std::fill(dU, dU + g.n_inputs() * B, T(0));
    const auto alpha = g.alpha();
    const std::size_t m = alpha.cols;
    for (std::size_t k = 0; k < alpha.rows; ++k) {
        const std::size_t p = g.output_position(k);
        for (std::size_t j = 0; j < m; ++j) {  // ∂/∂α_{kj} = Σ_b dy_{bj} z_{o_k, b}
            T s = T(0);
            for (std::size_t b = 0; b < B; ++b) s += dy.row(b)[j] * Z[p * B + b];
            out.alpha.row(k)[j] = s;
        }
        for (std::size_t b = 0; b < B; ++b) dZ[p * B + b] = kernels::dot(alpha.row(k), dy.row(b), m);
    }
    // Prefetch the Z and ∂Z rows of the gathers (batch_prefetch_pays); `ahead` is ready for the next level
    // unless the last one skipped it.
    const bool prefetch = detail::batch_prefetch_pays(g, B);
    detail::BackwardLookahead<T> ahead(g);
    bool ahead_ready = true;
    for (std::size_t l = g.n_levels(); l-- > 1;) {
        for (const Segment& s : g.segments(l))
            dispatch(s.activation, [&](auto a) {
                kernels::hadamard_derivative<decltype(a)::value>(dZ + s.begin * B, U + s.begin * B, Z + s.begin * B,
                                                                 dU + s.begin * B, (s.end - s.begin) * B);
            });
        if (g.dense_level(l).dense) {
            detail::dense_backward(g, l, tape, out.weights.data, !out.x.data, settings);
            ahead_ready = false;
            continue;
        }
        if (prefetch && !ahead_ready) ahead.restart(l);
        // A level split over threads leaves the lookahead behind.
        ahead_ready = detail::scatter_level(g, l, Z, dU, dZ, B, out.weights.data, pool, prefetch ? &ahead : nullptr);
    }
    if (out.x.data) kernels::transpose(MatrixView<const T>(dZ, g.n_inputs(), B), out.x);
    if (out.biases.size)
        for (std::size_t p = 0; p < V; ++p) {
            const std::size_t v = g.node_at(p);
            T s = T(0);
            for (std::size_t b = 0; b < B && v >= g.n_inputs(); ++b) s += dU[p * B + b];
            out.biases[v] = s;
        }
}

}  // namespace unchecked

// Gradients of Σ_{b,j} dy_{bj} ŷ_{bj} at the batch recorded on `tape` (dy is B × m). Checks every shape
// before writing anything. With a pool, as forward_batch: the same results for any thread count.
template <class T>
void backward_batch(const Graph<T>& g, BatchTape<T>& tape, MatrixView<const T> dy, const BatchGradientsView<T>& out,
                    parallel::ThreadPool* pool = nullptr) {
    if (!tape.recorded() || tape.n_nodes() != g.n_nodes())
        throw std::logic_error("dag::backward_batch() needs a dag::forward_batch() of this graph on the same tape first");
    require_fits(g, out.weights, out.alpha, out.x, out.biases);
    if (out.x.data || out.x.size()) mlpgrad::detail::require_shape(out.x, tape.batch(), g.n_inputs(), "out.x");
    mlpgrad::detail::require_shape(dy, tape.batch(), g.output_dim(), "dy");
    unchecked::backward_batch(g, tape, dy, out, pool);
}

// ŷ (B × m) and the batch gradients in one call; checks everything before the tape changes.
template <class T>
void value_and_grad_batch(const Graph<T>& g, MatrixView<const T> X, BatchTape<T>& tape, MatrixView<T> yhat,
                          MatrixView<const T> dy, const BatchGradientsView<T>& out,
                          parallel::ThreadPool* pool = nullptr) {
    require_fits(g, out.weights, out.alpha, out.x, out.biases);
    mlpgrad::detail::require_shape(X, X.rows, g.n_inputs(), "X");
    if (out.x.data || out.x.size()) mlpgrad::detail::require_shape(out.x, X.rows, g.n_inputs(), "out.x");
    mlpgrad::detail::require_shape(dy, X.rows, g.output_dim(), "dy");
    forward_batch(g, X, tape, yhat, pool);
    unchecked::backward_batch(g, tape, dy, out, pool);
}

}  // namespace dag
}  // namespace mlpgrad
