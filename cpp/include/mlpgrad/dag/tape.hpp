// Caller-owned records of forward passes over a Graph: u and z per node at the graph's internal positions.
#pragma once

#include <cstddef>

#include "../gemm/gemm.hpp"
#include "../views.hpp"

namespace mlpgrad {
namespace dag {

// One tape per concurrent computation: the Graph is shared and read-only, the tape is not.
template <class T>
class Tape {
  public:
    // Sizes the tape for n_nodes nodes and m outputs (allocating only when that changes); marks it empty.
    void reset(std::size_t n_nodes, std::size_t m) {
        recorded_ = false;
        if (n_nodes_ == n_nodes && m_ == m && !storage_.empty()) return;
        n_nodes_ = n_nodes;
        m_ = m;
        storage_.assign(4 * n_nodes + m, T(0));  // u, z, then ∂ŷ/∂z and ∂ŷ/∂u scratch, then ŷ
    }
    std::size_t n_nodes() const { return n_nodes_; }
    bool recorded() const { return recorded_; }
    void mark_recorded() { recorded_ = true; }

    T* u() { return storage_.data(); }
    const T* u() const { return storage_.data(); }
    T* z() { return storage_.data() + n_nodes_; }
    const T* z() const { return storage_.data() + n_nodes_; }
    T* dz() { return storage_.data() + 2 * n_nodes_; }
    T* du() { return storage_.data() + 3 * n_nodes_; }
    VectorView<T> yhat() { return {storage_.data() + 4 * n_nodes_, m_}; }
    VectorView<const T> yhat() const { return {storage_.data() + 4 * n_nodes_, m_}; }

  private:
    aligned_vector<T> storage_;
    std::size_t n_nodes_ = 0, m_ = 0;
    bool recorded_ = false;
};

// Feature-major batch tape: row p of U and Z holds node position p for each of the B examples, so every edge
// is one vector FMA over the examples.
template <class T>
class BatchTape {
  public:
    // Sizes the tape for n_nodes nodes and B examples; allocates only when it needs more room.
    void reset(std::size_t n_nodes, std::size_t batch) {
        recorded_ = false;
        n_nodes_ = n_nodes;
        batch_ = batch;
        const std::size_t n = 4 * n_nodes * batch;
        if (storage_.size() < n) storage_.resize(n);
    }
    std::size_t n_nodes() const { return n_nodes_; }
    std::size_t batch() const { return batch_; }
    bool recorded() const { return recorded_; }
    void mark_recorded() { recorded_ = true; }

    MatrixView<T> U() { return block(0); }
    MatrixView<T> Z() { return block(1); }
    MatrixView<T> dZ() { return block(2); }  // scratch for ∂ŷ/∂Z
    MatrixView<T> dU() { return block(3); }  // scratch for ∂ŷ/∂U
    // The packing buffers of the dense levels' matrix products (gemm::multiply), kept between passes.
    gemm::Workspace<T>& workspace() { return workspace_; }

  private:
    MatrixView<T> block(std::size_t i) { return {storage_.data() + i * n_nodes_ * batch_, n_nodes_, batch_}; }
    aligned_vector<T> storage_;
    gemm::Workspace<T> workspace_;
    std::size_t n_nodes_ = 0, batch_ = 0;
    bool recorded_ = false;
};

}  // namespace dag
}  // namespace mlpgrad
