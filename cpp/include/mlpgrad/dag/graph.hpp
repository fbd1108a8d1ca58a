// Graph<T>: a validated, non-owning DAG over caller arrays (the notes' Question 2), laid out for the cache.
// Node v computes u_v = Σ_{e = (s → v)} w_e z_s (+ b_v), z_v = σ_v(u_v); ŷ_j = Σ_k α_{kj} z_{o_k}.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../activations.hpp"
#include "../views.hpp"

namespace mlpgrad {
namespace dag {

// A run of a level's nodes that share one activation: σ runs vectorised over [begin, end).
struct Segment {
    std::size_t begin, end;
    Activation activation;
};

// A level of n nodes (positions level_begin..level_begin + n) with one activation, node i reading sources at
// positions source_begin .. source_begin + n_sources through the weights edge_begin + i·n_sources + j: the
// block W (n × n_sources), row-major, of an MLP layer. exclusive: no other edge leaves those sources and
// none is an output, so ∂ŷ/∂Z of the sources is Wᵀ ∂ŷ/∂U alone (written, not accumulated).
struct DenseLevel {
    bool dense = false;
    std::size_t source_begin = 0, n_sources = 0, edge_begin = 0;
    bool exclusive = false;
};

// Nodes are stored at internal positions grouped by level, so that no edge joins two nodes of one level:
// the longest path from the inputs (inputs are level 0, every other node at least 1), by activation within a
// level, then by id -- or, when the ids are already a topological order (every edge from a lower id to a
// higher one), at their own ids, in runs with no edge inside (place_nodes_in_id_order says why). Incoming edges are a CSR by
// destination position, each slot holding the source position and the caller's edge index, so the forward
// pass is one gather-FMA per edge. Nothing of the caller's is copied: weights, α and biases are read through
// const views and may change between passes (an optimiser step); the structure (src, dst, outputs) may not.
template <class T>
class Graph {
  public:
    using value_type = T;

    // activations: one for every node, or one per node (entries of input nodes are ignored); biases: empty or
    // one per node (entries of input nodes are ignored); alpha: (n_outputs × m), m >= 1 outputs ŷ_j.
    template <class I>
    Graph(std::size_t n_nodes, std::size_t n_inputs, VectorView<const I> src, VectorView<const I> dst,
          VectorView<const T> weights, VectorView<const I> outputs, MatrixView<const T> alpha,
          std::vector<Activation> activations, VectorView<const T> biases = {})
        : n_nodes_(n_nodes), n_inputs_(n_inputs), weights_(weights), alpha_(alpha), biases_(biases) {
        static_assert(std::is_integral_v<I>, "src, dst and outputs hold node ids");
        check_arguments(src, dst, outputs, activations);
        const std::vector<std::size_t> level = levels_in_topological_order(src, dst);
        if (numbered_topologically(src, dst))
            place_nodes_in_id_order(src, dst, activations);
        else
            place_nodes(level, activations);
        build_incoming_csr(src, dst);
        output_positions_.resize(outputs.size);
        for (std::size_t k = 0; k < outputs.size; ++k)
            output_positions_[k] = position_[static_cast<std::size_t>(outputs[k])];
        find_dense_levels();
    }

    template <class I>
    Graph(std::size_t n_nodes, std::size_t n_inputs, VectorView<const I> src, VectorView<const I> dst,
          VectorView<const T> weights, VectorView<const I> outputs, MatrixView<const T> alpha,
          Activation activation, VectorView<const T> biases = {})
        : Graph(n_nodes, n_inputs, src, dst, weights, outputs, alpha, std::vector<Activation>{activation},
                biases) {}

    std::size_t n_nodes() const { return n_nodes_; }
    std::size_t n_inputs() const { return n_inputs_; }
    std::size_t n_edges() const { return weights_.size; }
    std::size_t n_outputs() const { return alpha_.rows; }  // output nodes o_k
    std::size_t output_dim() const { return alpha_.cols; }  // m: ŷ has m entries
    std::size_t n_levels() const { return level_begin_.size() - 1; }
    VectorView<const T> weights() const { return weights_; }
    MatrixView<const T> alpha() const { return alpha_; }
    VectorView<const T> biases() const { return biases_; }
    bool has_biases() const { return biases_.size != 0; }

    // Internal layout, for the passes.
    std::size_t position(std::size_t node) const { return position_[node]; }
    std::size_t node_at(std::size_t pos) const { return node_at_[pos]; }
    std::size_t level_begin(std::size_t level) const { return level_begin_[level]; }
    const std::vector<Segment>& segments(std::size_t level) const { return segments_[level]; }
    std::size_t in_begin(std::size_t pos) const { return in_begin_[pos]; }
    std::size_t slot_source(std::size_t slot) const { return sources_[slot]; }
    std::size_t slot_edge(std::size_t slot) const { return edges_in_slot_order() ? slot : edges_[slot]; }
    // Whether edge e sits in slot e (the caller listed the edges by destination, in the layout's node order):
    // the passes then stream the weights and their gradients in order, and no edge index is stored or read.
    bool edges_in_slot_order() const { return edges_.empty(); }
    // Whether pos's incoming edges are consecutive in the caller's weights and in source positions (a layer
    // of an MLP): then they are one dot product and one axpy, the dense kernels, not a gather.
    bool is_dense(std::size_t pos) const { return dense_[pos] != 0; }
    std::size_t output_position(std::size_t k) const { return output_positions_[k]; }
    // A level whose nodes all read the same run of sources through one row-major block of the caller's
    // weights (a layer of an MLP): the batch passes run it as the MLP's packed matrix products.
    const DenseLevel& dense_level(std::size_t level) const { return dense_levels_[level]; }
    T bias_at(std::size_t pos) const { return biases_.size ? biases_[node_at_[pos]] : T(0); }

  private:
    template <class I>
    void check_arguments(VectorView<const I> src, VectorView<const I> dst, VectorView<const I> outputs,
                         const std::vector<Activation>& activations) const {
        using std::to_string;
        const std::size_t E = weights_.size;
        if (n_inputs_ > n_nodes_)
            throw std::invalid_argument("n_inputs is " + to_string(n_inputs_) + " but the graph has only " +
                                        to_string(n_nodes_) + " nodes");
        if (n_nodes_ > max_count)
            throw std::invalid_argument("n_nodes is " + to_string(n_nodes_) + " but at most " + to_string(max_count) +
                                        " nodes are supported");
        if (E > max_count)
            throw std::invalid_argument("weights has " + to_string(E) + " edges but at most " + to_string(max_count) +
                                        " are supported");
        if (weights_.data == nullptr && E != 0) throw std::invalid_argument("weights is a null view");
        detail::require_size(src, E, "src");
        detail::require_size(dst, E, "dst");
        if (alpha_.cols == 0) throw std::invalid_argument("alpha has no columns; expected at least one output");
        detail::require_shape(alpha_, outputs.size, alpha_.cols, "alpha");
        detail::require_size(outputs, alpha_.rows, "outputs");
        if (activations.size() != 1 && activations.size() != n_nodes_)
            throw std::invalid_argument("activation has " + to_string(activations.size()) +
                                        " entries but expected 1 or one per node (" + to_string(n_nodes_) + ")");
        if (biases_.size != 0) detail::require_size(biases_, n_nodes_, "biases");
        auto node_ok = [&](I v) {
            if constexpr (std::is_signed_v<I>)
                if (v < 0) return false;
            return static_cast<std::uint64_t>(v) < n_nodes_;
        };
        for (std::size_t e = 0; e < E; ++e) {
            for (const auto& [what, v] : {std::pair<const char*, I>{"src", src[e]}, {"dst", dst[e]}})
                if (!node_ok(v))
                    throw std::invalid_argument(std::string(what) + "[" + to_string(e) + "] is node " +
                                                to_string(v) + " but nodes are numbered 0.." +
                                                to_string(static_cast<long long>(n_nodes_) - 1));
            if (static_cast<std::size_t>(dst[e]) < n_inputs_)
                throw std::invalid_argument("dst[" + to_string(e) + "] is input node " + to_string(dst[e]) +
                                            " (edge " + to_string(src[e]) + " -> " + to_string(dst[e]) +
                                            "); input nodes 0.." + to_string(n_inputs_ - 1) +
                                            " take no incoming edges");
        }
        std::vector<unsigned char> seen(n_nodes_, 0);
        for (std::size_t k = 0; k < outputs.size; ++k) {
            if (!node_ok(outputs[k]))
                throw std::invalid_argument("outputs[" + to_string(k) + "] is node " + to_string(outputs[k]) +
                                            " but nodes are numbered 0.." +
                                            to_string(static_cast<long long>(n_nodes_) - 1));
            if (seen[static_cast<std::size_t>(outputs[k])]++)
                throw std::invalid_argument("outputs[" + to_string(k) + "] repeats node " + to_string(outputs[k]) +
                                            "; each output node may appear once");
        }
    }

    // Kahn's algorithm over a CSR of successors, O(V + E); level[v] = longest path from the inputs.
    // std::invalid_argument naming the nodes of one cycle if there is one.
    template <class I>
    std::vector<std::size_t> levels_in_topological_order(VectorView<const I> src, VectorView<const I> dst) const {
        const std::size_t V = n_nodes_, E = weights_.size;
        std::vector<std::size_t> succ_begin(V + 1, 0), succ(E), indegree(V, 0);
        for (std::size_t e = 0; e < E; ++e) {
            ++succ_begin[static_cast<std::size_t>(src[e]) + 1];
            ++indegree[static_cast<std::size_t>(dst[e])];
        }
        for (std::size_t v = 0; v < V; ++v) succ_begin[v + 1] += succ_begin[v];
        {
            std::vector<std::size_t> fill(succ_begin.begin(), succ_begin.end() - 1);
            for (std::size_t e = 0; e < E; ++e) succ[fill[static_cast<std::size_t>(src[e])]++] = dst[e];
        }
        std::vector<std::size_t> level(V, 0), queue;
        queue.reserve(V);
        for (std::size_t v = 0; v < V; ++v) {
            level[v] = v < n_inputs_ ? 0 : 1;  // a non-input node without predecessors is a constant (u = b)
            if (indegree[v] == 0) queue.push_back(v);
        }
        for (std::size_t head = 0; head < queue.size(); ++head) {
            const std::size_t v = queue[head];
            for (std::size_t i = succ_begin[v]; i < succ_begin[v + 1]; ++i) {
                const std::size_t w = succ[i];
                if (level[w] < level[v] + 1) level[w] = level[v] + 1;
                if (--indegree[w] == 0) queue.push_back(w);
            }
        }
        if (queue.size() != V) throw std::invalid_argument(describe_cycle(indegree, succ_begin, succ));
        return level;
    }

    // Kahn's algorithm leaves exactly the nodes on or after a cycle, each with a predecessor among them
    // (the edge that kept its indegree above 0): walking those predecessors must revisit a node.
    std::string describe_cycle(const std::vector<std::size_t>& indegree, const std::vector<std::size_t>& succ_begin,
                               const std::vector<std::size_t>& succ) const {
        const std::size_t none = static_cast<std::size_t>(-1);
        std::vector<std::size_t> step(n_nodes_, none), path;
        std::size_t v = 0;
        while (indegree[v] == 0) ++v;
        std::vector<std::size_t> left_pred(n_nodes_, none);
        for (std::size_t s = 0; s < n_nodes_; ++s)
            if (indegree[s] != 0)
                for (std::size_t i = succ_begin[s]; i < succ_begin[s + 1]; ++i)
                    if (indegree[succ[i]] != 0) left_pred[succ[i]] = s;
        while (step[v] == none) {
            step[v] = path.size();
            path.push_back(v);
            v = left_pred[v];
        }
        // path[step[v]..] walks predecessors: print it reversed so the arrows follow the edges.
        std::string cycle = std::to_string(v);
        for (std::size_t i = path.size(); i-- > step[v];) cycle += " -> " + std::to_string(path[i]);
        return "src and dst form a cycle (" + cycle + "); backpropagation needs a directed acyclic graph";
    }

    template <class I>
    static bool numbered_topologically(VectorView<const I> src, VectorView<const I> dst) {
        for (std::size_t e = 0; e < src.size; ++e)
            if (!(src[e] < dst[e])) return false;
        return true;
    }

    // When every edge goes from a lower id to a higher one, the ids are already a topological order: keep
    // them as the positions, so that a caller who lists edges by destination has the weights, their
    // gradients and the tapes read and written in order (grouping by longest path scatters them: 2.2x slower
    // per edge at E = 1e7 in bench --dag). The "levels" are then the longest runs of consecutive nodes with no
    // edge among them (cut where a node reads one of the run), which for an MLP's numbering are its layers;
    // segments are the runs of one activation within each. O(V + E).
    template <class I>
    void place_nodes_in_id_order(VectorView<const I> src, VectorView<const I> dst,
                                 const std::vector<Activation>& activations) {
        const std::size_t V = n_nodes_, none = static_cast<std::size_t>(-1);
        std::vector<std::size_t> latest_source(V, none);
        for (std::size_t e = 0; e < src.size; ++e) {
            std::size_t& l = latest_source[static_cast<std::size_t>(dst[e])];
            const auto s = static_cast<std::size_t>(src[e]);
            if (l == none || s > l) l = s;
        }
        position_.resize(V);
        node_at_.resize(V);
        for (std::size_t v = 0; v < V; ++v) position_[v] = node_at_[v] = v;
        level_begin_ = {0, n_inputs_};
        for (std::size_t v = n_inputs_; v < V; ++v)
            if (latest_source[v] != none && latest_source[v] >= level_begin_.back() && v != level_begin_.back())
                level_begin_.push_back(v);
        if (level_begin_.back() != V) level_begin_.push_back(V);
        auto act = [&](std::size_t v) { return activations[activations.size() == 1 ? 0 : v]; };
        segments_.assign(n_levels(), {});
        if (n_inputs_) segments_[0].push_back({0, n_inputs_, Activation::identity});
        for (std::size_t l = 1; l < n_levels(); ++l)
            for (std::size_t v = level_begin_[l]; v < level_begin_[l + 1]; ++v)
                if (v == level_begin_[l] || act(v) != act(v - 1))
                    segments_[l].push_back({v, v + 1, act(v)});
                else
                    segments_[l].back().end = v + 1;
    }

    // Positions by counting sort on (level, activation), stable in node id: O(V + levels).
    void place_nodes(const std::vector<std::size_t>& level, const std::vector<Activation>& activations) {
        const std::size_t V = n_nodes_, A = activation_names.size();
        std::size_t n_levels = 1;
        for (std::size_t v = 0; v < V; ++v) n_levels = level[v] + 1 > n_levels ? level[v] + 1 : n_levels;
        auto act = [&](std::size_t v) {
            return v < n_inputs_ ? Activation::identity : activations[activations.size() == 1 ? 0 : v];
        };
        auto key = [&](std::size_t v) { return level[v] * A + static_cast<std::size_t>(act(v)); };
        std::vector<std::size_t> start(n_levels * A + 1, 0);
        for (std::size_t v = 0; v < V; ++v) ++start[key(v) + 1];
        for (std::size_t k = 0; k + 1 < start.size(); ++k) start[k + 1] += start[k];
        level_begin_.resize(n_levels + 1);
        segments_.assign(n_levels, {});
        for (std::size_t l = 0; l <= n_levels; ++l) level_begin_[l] = start[l * A];
        for (std::size_t l = 0; l < n_levels; ++l)
            for (std::size_t a = 0; a < A; ++a)
                if (start[l * A + a] != start[l * A + a + 1])
                    segments_[l].push_back({start[l * A + a], start[l * A + a + 1], static_cast<Activation>(a)});
        position_.resize(V);
        node_at_.resize(V);
        for (std::size_t v = 0; v < V; ++v) {
            const std::size_t p = start[key(v)]++;
            position_[v] = p;
            node_at_[p] = v;
        }
    }

    template <class I>
    void build_incoming_csr(VectorView<const I> src, VectorView<const I> dst) {
        const std::size_t V = n_nodes_, E = weights_.size;
        in_begin_.assign(V + 1, 0);
        for (std::size_t e = 0; e < E; ++e) ++in_begin_[position_[static_cast<std::size_t>(dst[e])] + 1];
        for (std::size_t p = 0; p < V; ++p) in_begin_[p + 1] += in_begin_[p];
        sources_.resize(E);
        edges_.resize(E);
        bool in_order = true;
        std::vector<std::size_t> fill(in_begin_.begin(), in_begin_.end() - 1);
        for (std::size_t e = 0; e < E; ++e) {  // in the caller's order within each destination
            const std::size_t slot = fill[position_[static_cast<std::size_t>(dst[e])]]++;
            sources_[slot] = static_cast<std::uint32_t>(position_[static_cast<std::size_t>(src[e])]);
            edges_[slot] = static_cast<std::uint32_t>(e);
            in_order = in_order && slot == e;
        }
        if (in_order) std::vector<std::uint32_t>().swap(edges_);  // slot_edge(i) is i
        dense_.assign(V, 0);
        for (std::size_t p = 0; p < V; ++p) {
            bool dense = in_begin_[p + 1] - in_begin_[p] > 1;
            for (std::size_t i = in_begin_[p] + 1; dense && i < in_begin_[p + 1]; ++i)
                dense = slot_edge(i) == slot_edge(i - 1) + 1 && sources_[i] == sources_[i - 1] + 1;
            dense_[p] = dense;
        }
    }

    // O(V + E), once: which levels are dense blocks (see DenseLevel).
    void find_dense_levels() {
        dense_levels_.assign(n_levels(), {});
        std::vector<std::size_t> out_degree(n_nodes_, 0);
        for (const std::uint32_t s : sources_) ++out_degree[s];
        for (std::size_t p : output_positions_) ++out_degree[p];  // an output's ∂ŷ/∂z has a seed: not exclusive
        for (std::size_t l = 1; l < n_levels(); ++l) {
            const std::size_t first = level_begin_[l], last = level_begin_[l + 1], rows = last - first;
            const std::size_t c = in_begin_[first + 1] - in_begin_[first];
            if (segments_[l].size() != 1 || c == 0) continue;
            const std::size_t s0 = sources_[in_begin_[first]], e0 = slot_edge(in_begin_[first]);
            bool dense = true;
            for (std::size_t p = first; dense && p < last; ++p) {
                const std::size_t i = p - first;
                dense = in_begin_[p + 1] - in_begin_[p] == c && (c == 1 || dense_[p]) &&
                        sources_[in_begin_[p]] == s0 && slot_edge(in_begin_[p]) == e0 + i * c &&
                        (biases_.size == 0 || node_at_[p] == node_at_[first] + i);  // biases: one contiguous run
            }
            if (!dense) continue;
            bool exclusive = true;
            for (std::size_t s = s0; exclusive && s < s0 + c; ++s) exclusive = out_degree[s] == rows;
            dense_levels_[l] = {true, s0, c, e0, exclusive};
        }
    }

    // CSR slots hold 32-bit positions and edge indices: graphs of up to 2^32 - 1 nodes and edges.
    static constexpr std::size_t max_count = std::numeric_limits<std::uint32_t>::max();

    std::size_t n_nodes_, n_inputs_;
    VectorView<const T> weights_;
    MatrixView<const T> alpha_;
    VectorView<const T> biases_;
    std::vector<std::size_t> position_, node_at_, level_begin_, in_begin_, output_positions_;
    std::vector<std::uint32_t> sources_;  // per slot: the position of its source s
    std::vector<std::uint32_t> edges_;    // per slot: its index e in the caller's arrays; empty when e = slot
    std::vector<std::vector<Segment>> segments_;
    std::vector<unsigned char> dense_;
    std::vector<DenseLevel> dense_levels_;
};

}  // namespace dag
}  // namespace mlpgrad
