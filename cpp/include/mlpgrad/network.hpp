// Network<T>: a validated, non-owning description of the notes' network (weights, α, activations).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "activations.hpp"
#include "views.hpp"

namespace mlpgrad {

// weights[t] is the notes' W^{[t+1]}, shape (K_{t+1}, K_t); alpha has K_T entries.
// The caller's memory is read through const views and must outlive the Network; it is never written,
// so any number of threads may compute with one Network, each with its own Tape.
template <class T>
class Network {
  public:
    using value_type = T;

    Network(std::vector<MatrixView<const T>> weights, VectorView<const T> alpha,
            std::vector<Activation> activations)
        : weights_(std::move(weights)), alpha_(alpha), activations_(std::move(activations)) {
        if (activations_.size() != weights_.size())
            throw std::invalid_argument("activation has " + std::to_string(activations_.size()) +
                                        " names but the network has " + std::to_string(weights_.size()) +
                                        " layers");
        for (std::size_t t = 0; t < activations_.size(); ++t)
            if (!is_known(activations_[t]))
                detail::throw_unknown_activation(activations_[t], ("activation[" + std::to_string(t) + "]").c_str());
        widths_.reserve(weights_.size() + 1);
        widths_.push_back(weights_.empty() ? alpha_.size : weights_[0].cols);
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
        if (alpha_.size == 0) throw std::invalid_argument("alpha is empty; every width must be at least 1");
        detail::require_size(alpha_, widths_.back(), "alpha");
        max_width_ = 0;
        for (auto k : widths_) max_width_ = k > max_width_ ? k : max_width_;
    }

    // One activation for every layer.
    Network(std::vector<MatrixView<const T>> weights, VectorView<const T> alpha, Activation activation)
        : Network(weights, alpha, std::vector<Activation>(weights.size(), activation)) {}

    std::size_t depth() const { return weights_.size(); }                   // T
    const std::vector<std::size_t>& widths() const { return widths_; }      // K_0..K_T
    std::size_t width(std::size_t t) const { return widths_[t]; }           // K_t
    std::size_t max_width() const { return max_width_; }
    const MatrixView<const T>& weight(std::size_t t) const { return weights_[t]; }  // W^{[t+1]}
    VectorView<const T> alpha() const { return alpha_; }
    Activation activation(std::size_t t) const { return activations_[t]; }  // σ of layer t+1
    const std::vector<Activation>& activations() const { return activations_; }

    // Number of weights, Σ_t K_{t+1} K_t: the cost of a pass is linear in it (the notes' Question 1).
    std::size_t edge_count() const {
        std::size_t n = 0;
        for (const auto& w : weights_) n += w.size();
        return n;
    }

  private:
    std::vector<MatrixView<const T>> weights_;
    VectorView<const T> alpha_;
    std::vector<Activation> activations_;
    std::vector<std::size_t> widths_;
    std::size_t max_width_ = 0;
};

}  // namespace mlpgrad
