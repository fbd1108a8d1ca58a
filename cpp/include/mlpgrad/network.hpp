// Network<T>: a validated, non-owning description of the notes' network (weights, α, activations), with
// optional biases b^t, an optional output bias β and m outputs.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "activations.hpp"
#include "views.hpp"

namespace mlpgrad {

// The optional parameters of a Network; the defaults give the notes' network.
template <class T>
struct NetworkOptions {
    std::vector<VectorView<const T>> biases;  // biases[t] = b^{t+1} (K_{t+1} entries), one per layer; empty: none
    VectorView<const T> output_bias;          // β (m entries); empty: none
};

// weights[t] is the notes' W^{[t+1]}, shape (K_{t+1}, K_t); alpha is (K_T × m), row-major, or a vector of K_T
// entries (m = 1). The network computes u^{t+1} = W^{[t+1]} z^t + b^{t+1}, z^{t+1} = σ(u^{t+1}) and
// ŷ = αᵀ z^T + β ∈ ℝ^m. The caller's memory is read through const views and must outlive the Network; it is
// never written, so any number of threads may compute with one Network, each with its own Tape.
// Every constructor throws std::invalid_argument naming the first parameter that does not fit.
template <class T>
class Network {
  public:
    using value_type = T;

    Network(std::vector<MatrixView<const T>> weights, MatrixView<const T> alpha, std::vector<Activation> activations,
            NetworkOptions<T> options = {})
        : weights_(std::move(weights)),
          alpha_(alpha),
          activations_(std::move(activations)),
          biases_(std::move(options.biases)),
          output_bias_(options.output_bias) {
        validate();
    }
    Network(std::vector<MatrixView<const T>> weights, MatrixView<const T> alpha, Activation activation,
            NetworkOptions<T> options = {})
        : Network(weights, alpha, std::vector<Activation>(weights.size(), activation), std::move(options)) {}

    // One output: α is a vector of K_T entries (the notes' network when options are left empty).
    Network(std::vector<MatrixView<const T>> weights, VectorView<const T> alpha, std::vector<Activation> activations,
            NetworkOptions<T> options = {})
        : Network(std::move(weights), MatrixView<const T>(alpha.data, alpha.size, 1), std::move(activations),
                  std::move(options)) {}
    Network(std::vector<MatrixView<const T>> weights, VectorView<const T> alpha, Activation activation,
            NetworkOptions<T> options = {})
        : Network(weights, alpha, std::vector<Activation>(weights.size(), activation), std::move(options)) {}

    std::size_t depth() const { return weights_.size(); }                   // T
    const std::vector<std::size_t>& widths() const { return widths_; }      // K_0..K_T
    std::size_t width(std::size_t t) const { return widths_[t]; }           // K_t
    std::size_t max_width() const { return max_width_; }
    std::size_t outputs() const { return alpha_.cols; }                     // m
    const MatrixView<const T>& weight(std::size_t t) const { return weights_[t]; }  // W^{[t+1]}
    // α, row-major (K_T × m): K_T·m entries (for m = 1, the notes' α).
    VectorView<const T> alpha() const { return {alpha_.data, alpha_.size()}; }
    const MatrixView<const T>& alpha_matrix() const { return alpha_; }
    Activation activation(std::size_t t) const { return activations_[t]; }  // σ of layer t+1
    const std::vector<Activation>& activations() const { return activations_; }
    bool has_biases() const { return !biases_.empty(); }
    // b^{t+1}; an empty view when the network has no biases.
    VectorView<const T> bias(std::size_t t) const { return has_biases() ? biases_[t] : VectorView<const T>{}; }
    bool has_output_bias() const { return output_bias_.size != 0; }
    VectorView<const T> output_bias() const { return output_bias_; }  // β, or empty

    // Number of weights, Σ_t K_{t+1} K_t: the cost of a pass is linear in it (the notes' Question 1).
    std::size_t edge_count() const {
        std::size_t n = 0;
        for (const auto& w : weights_) n += w.size();
        return n;
    }

  private:
    void validate() {
        if (activations_.size() != weights_.size())
            throw std::invalid_argument("activation has " + std::to_string(activations_.size()) +
                                        " names but the network has " + std::to_string(weights_.size()) +
                                        " layers");
        for (std::size_t t = 0; t < activations_.size(); ++t)
            if (!is_known(activations_[t]))
                detail::throw_unknown_activation(activations_[t], ("activation[" + std::to_string(t) + "]").c_str());
        widths_.reserve(weights_.size() + 1);
        widths_.push_back(weights_.empty() ? alpha_.rows : weights_[0].cols);
        for (std::size_t t = 0; t < weights_.size(); ++t) {
            const auto& w = weights_[t];
            const std::string what = "weights[" + std::to_string(t) + "]";
            if (w.rows == 0 || w.cols == 0)
                throw std::invalid_argument(what + " has shape " + detail::shape_string(w.rows, w.cols) +
                                            "; every width must be at least 1");
            if (w.cols != widths_.back())
                throw std::invalid_argument(what + " has shape " + detail::shape_string(w.rows, w.cols) +
                                            " but expected " + std::to_string(widths_.back()) +
                                            " columns to chain with weights[" + std::to_string(t - 1) + "]");
            if (w.data == nullptr) throw std::invalid_argument(what + " is a null view");
            widths_.push_back(w.rows);
        }
        if (alpha_.rows == 0) throw std::invalid_argument("alpha is empty; every width must be at least 1");
        if (alpha_.cols == 0) throw std::invalid_argument("alpha has 0 columns; a network has at least 1 output");
        if (alpha_.rows != widths_.back())
            throw std::invalid_argument("alpha has " + std::to_string(alpha_.rows) + " rows but expected " +
                                        std::to_string(widths_.back()) + " (K_T, the width of the last layer)");
        if (alpha_.data == nullptr) throw std::invalid_argument("alpha is a null view");
        if (!biases_.empty()) {
            if (biases_.size() != weights_.size())
                throw std::invalid_argument("biases has " + std::to_string(biases_.size()) +
                                            " vectors but the network has " + std::to_string(weights_.size()) +
                                            " layers (give one per layer, or none)");
            for (std::size_t t = 0; t < biases_.size(); ++t) detail::require_size(biases_[t], widths_[t + 1], "biases", t);
        }
        if (output_bias_.size != 0) detail::require_size(output_bias_, alpha_.cols, "output_bias");
        max_width_ = 0;
        for (auto k : widths_) max_width_ = k > max_width_ ? k : max_width_;
    }

    std::vector<MatrixView<const T>> weights_;
    MatrixView<const T> alpha_;
    std::vector<Activation> activations_;
    std::vector<VectorView<const T>> biases_;
    VectorView<const T> output_bias_;
    std::vector<std::size_t> widths_;
    std::size_t max_width_ = 0;
};

}  // namespace mlpgrad
