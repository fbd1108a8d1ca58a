// The dense network of the notes as a Graph: the same computation, for tests and for DAG.from_mlp.
#pragma once

#include <cstdint>
#include <vector>

#include "../network.hpp"
#include "graph.hpp"

namespace mlpgrad {
namespace dag {

// Owning arrays of a Network's graph. Nodes are numbered layer by layer (layer 0 = the inputs); the edges
// of W^{[t+1]} follow its row-major order, edge (i, j) from unit j of layer t to unit i of layer t+1, so
// the weights are the network's matrices concatenated and each node's incoming edges are dense.
template <class T>
struct MlpGraphArrays {
    std::size_t n_nodes = 0, n_inputs = 0;
    std::vector<std::int64_t> src, dst, outputs;
    std::vector<T> weights, alpha;
    std::vector<Activation> activations;  // per node

    explicit MlpGraphArrays(const Network<T>& net) {
        const auto& K = net.widths();
        std::vector<std::size_t> first(K.size() + 1, 0);  // first node id of each layer
        for (std::size_t t = 0; t < K.size(); ++t) first[t + 1] = first[t] + K[t];
        n_nodes = first.back();
        n_inputs = K[0];
        activations.assign(n_nodes, Activation::identity);
        for (std::size_t t = 0; t < net.depth(); ++t) {
            const auto& W = net.weight(t);
            for (std::size_t i = 0; i < W.rows; ++i) {
                activations[first[t + 1] + i] = net.activation(t);
                for (std::size_t j = 0; j < W.cols; ++j) {
                    src.push_back(static_cast<std::int64_t>(first[t] + j));
                    dst.push_back(static_cast<std::int64_t>(first[t + 1] + i));
                    weights.push_back(W.row(i)[j]);
                }
            }
        }
        const std::size_t T_ = net.depth();
        for (std::size_t k = 0; k < K[T_]; ++k) outputs.push_back(static_cast<std::int64_t>(first[T_] + k));
        alpha.assign(net.alpha().begin(), net.alpha().end());
    }

    // A Graph over these arrays (which must outlive it and not move).
    Graph<T> graph() const {
        return Graph<T>(n_nodes, n_inputs, VectorView<const std::int64_t>(src.data(), src.size()),
                        VectorView<const std::int64_t>(dst.data(), dst.size()),
                        VectorView<const T>(weights.data(), weights.size()),
                        VectorView<const std::int64_t>(outputs.data(), outputs.size()),
                        MatrixView<const T>(alpha.data(), alpha.size(), 1), activations);
    }
};

}  // namespace dag
}  // namespace mlpgrad
