// Where the backward pass writes: views of caller memory (GradientsView), or owning buffers (Gradients).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "network.hpp"
#include "views.hpp"

namespace mlpgrad {

// Gradients of dy·ŷ (dy ∈ ℝ^m) for one example. z and u are optional: empty vectors mean "don't keep them".
template <class T>
struct GradientsView {
    std::vector<MatrixView<T>> weights;  // ∂/∂W^{[t+1]}, shapes of the weights
    VectorView<T> alpha;                 // ∂/∂α = z^T dyᵀ, row-major (K_T × m) like α (K_T·m entries)
    VectorView<T> x;                     // ∂/∂x
    std::vector<VectorView<T>> z;        // ∂/∂z^t, t = 0..T (or empty)
    std::vector<VectorView<T>> u;        // ∂/∂u^t, t = 1..T at index t-1 (or empty)
    std::vector<VectorView<T>> biases;   // ∂/∂b^{t+1} = ∂/∂u^{t+1}, one per layer; empty when the network has none
    VectorView<T> output_bias;           // ∂/∂β = dy (m entries); empty when the network has none

    GradientsView() = default;
    GradientsView(std::vector<MatrixView<T>> weights_, VectorView<T> alpha_, VectorView<T> x_,
                  std::vector<VectorView<T>> z_ = {}, std::vector<VectorView<T>> u_ = {},
                  std::vector<VectorView<T>> biases_ = {}, VectorView<T> output_bias_ = {})
        : weights(std::move(weights_)), alpha(alpha_), x(x_), z(std::move(z_)), u(std::move(u_)),
          biases(std::move(biases_)), output_bias(output_bias_) {}
};

// Gradients of Σ_b dy_bᵀ ŷ_b for a batch: parameter gradients summed over the batch, and x (B × K_0) with
// row b = ∂(dy_bᵀ ŷ_b)/∂x_b. An empty x (0 × 0, the default) asks for the parameter gradients only: the
// input-gradient product W^{[1]ᵀ} ∂U^1 is skipped, and the view fits any batch size.
template <class T>
struct BatchGradientsView {
    std::vector<MatrixView<T>> weights;
    VectorView<T> alpha;                // Σ_b z^T_b dy_bᵀ, row-major (K_T × m)
    MatrixView<T> x;
    std::vector<VectorView<T>> biases;  // Σ_b ∂/∂u_b^{t+1}; empty when the network has none
    VectorView<T> output_bias;          // Σ_b dy_b; empty when the network has none

    BatchGradientsView() = default;
    BatchGradientsView(std::vector<MatrixView<T>> weights_, VectorView<T> alpha_, MatrixView<T> x_,
                       std::vector<VectorView<T>> biases_ = {}, VectorView<T> output_bias_ = {})
        : weights(std::move(weights_)), alpha(alpha_), x(x_), biases(std::move(biases_)), output_bias(output_bias_) {}

    bool has_input_gradient() const { return !(x.rows == 0 && x.cols == 0); }
};

namespace detail {

template <class T, class View>
void require_parameter_gradients(const Network<T>& net, const View& out) {
    if (out.weights.size() != net.depth())
        throw std::invalid_argument("out.weights has " + std::to_string(out.weights.size()) +
                                    " arrays but the network has " + std::to_string(net.depth()) + " layers");
    for (std::size_t t = 0; t < net.depth(); ++t)
        require_shape(out.weights[t], net.width(t + 1), net.width(t), "out.weights", t);
    const std::size_t K_T = net.width(net.depth()), m = net.outputs();
    if (out.alpha.size != K_T * m)
        throw std::invalid_argument("out.alpha has " + std::to_string(out.alpha.size) + " entries but expected " +
                                    std::to_string(K_T * m) + " (alpha's shape " +
                                    (m == 1 ? shape_string(K_T) : shape_string(K_T, m)) + ")");
    require_size(out.alpha, K_T * m, "out.alpha");
    if (net.has_biases()) {
        if (out.biases.size() != net.depth())
            throw std::invalid_argument("out.biases has " + std::to_string(out.biases.size()) +
                                        " vectors but the network has biases in " + std::to_string(net.depth()) +
                                        " layers");
        for (std::size_t t = 0; t < net.depth(); ++t) require_size(out.biases[t], net.width(t + 1), "out.biases", t);
    } else if (!out.biases.empty()) {
        throw std::invalid_argument("out.biases has " + std::to_string(out.biases.size()) +
                                    " vectors but the network has no biases (leave it empty)");
    }
    if (net.has_output_bias())
        require_size(out.output_bias, m, "out.output_bias");
    else if (out.output_bias.size != 0)
        throw std::invalid_argument("out.output_bias has " + std::to_string(out.output_bias.size) +
                                    " entries but the network has no output bias (leave it empty)");
}

// Calls f(data, size, name, index) for every buffer of `out` (index == no_index for single buffers).
template <class T, class F>
void for_each_buffer(const GradientsView<T>& out, F&& f) {
    for (std::size_t t = 0; t < out.weights.size(); ++t) f(out.weights[t].data, out.weights[t].size(), "out.weights", t);
    f(out.alpha.data, out.alpha.size, "out.alpha", no_index);
    f(out.x.data, out.x.size, "out.x", no_index);
    for (std::size_t t = 0; t < out.z.size(); ++t) f(out.z[t].data, out.z[t].size, "out.z", t);
    for (std::size_t t = 0; t < out.u.size(); ++t) f(out.u[t].data, out.u[t].size, "out.u", t);
    for (std::size_t t = 0; t < out.biases.size(); ++t) f(out.biases[t].data, out.biases[t].size, "out.biases", t);
    f(out.output_bias.data, out.output_bias.size, "out.output_bias", no_index);
}
template <class T, class F>
void for_each_buffer(const BatchGradientsView<T>& out, F&& f) {
    for (std::size_t t = 0; t < out.weights.size(); ++t) f(out.weights[t].data, out.weights[t].size(), "out.weights", t);
    f(out.alpha.data, out.alpha.size, "out.alpha", no_index);
    f(out.x.data, out.x.size(), "out.x", no_index);
    for (std::size_t t = 0; t < out.biases.size(); ++t) f(out.biases[t].data, out.biases[t].size, "out.biases", t);
    f(out.output_bias.data, out.output_bias.size, "out.output_bias", no_index);
}

// Throws std::invalid_argument if a gradient buffer shares memory with the tape (the backward pass reads
// the tape while it writes) or with the network's parameters (it reads them too).
template <class T, class AnyTape, class View>
void require_no_aliasing(const Network<T>& net, const AnyTape& tape, const View& out) {
    for_each_buffer(out, [&](const T* p, std::size_t n, const char* what, std::size_t index) {
        if (tape.overlaps(p, n))
            throw std::invalid_argument(argument_name(what, index) +
                                        " overlaps the tape's storage; gradients need memory of their own");
        for (std::size_t t = 0; t < net.depth(); ++t)
            if (overlaps(p, n, net.weight(t).data, net.weight(t).size()))
                throw std::invalid_argument(argument_name(what, index) + " overlaps weights[" + std::to_string(t) +
                                            "] of the network; gradients need memory of their own");
        if (overlaps(p, n, net.alpha().data, net.alpha().size))
            throw std::invalid_argument(argument_name(what, index) +
                                        " overlaps alpha of the network; gradients need memory of their own");
        for (std::size_t t = 0; t < net.depth(); ++t)
            if (overlaps(p, n, net.bias(t).data, net.bias(t).size))
                throw std::invalid_argument(argument_name(what, index) + " overlaps biases[" + std::to_string(t) +
                                            "] of the network; gradients need memory of their own");
        if (overlaps(p, n, net.output_bias().data, net.output_bias().size))
            throw std::invalid_argument(argument_name(what, index) +
                                        " overlaps output_bias of the network; gradients need memory of their own");
    });
}

// True if an input (e.g. dy) shares memory with what a backward pass writes: the tape or a gradient buffer.
template <class T, class AnyTape, class View>
bool is_written(VectorView<const T> input, const AnyTape& tape, const View& out) {
    bool written = tape.overlaps(input.data, input.size);
    for_each_buffer(out, [&](const T* p, std::size_t n, const char*, std::size_t) {
        written = written || overlaps(input.data, input.size, p, n);
    });
    return written;
}

}  // namespace detail

// Throws std::invalid_argument naming the first buffer whose shape does not fit `net`.
template <class T>
void require_fits(const Network<T>& net, const GradientsView<T>& out) {
    detail::require_parameter_gradients(net, out);
    detail::require_size(out.x, net.width(0), "out.x");
    if (out.z.empty()) {
        if (!out.u.empty()) throw std::invalid_argument("out.z and out.u must be both given or both omitted");
        return;
    }
    if (out.z.size() != net.depth() + 1 || out.u.size() != net.depth())
        throw std::invalid_argument("out.z must hold T+1 and out.u T vectors for a network of depth T = " +
                                    std::to_string(net.depth()));
    for (std::size_t t = 0; t <= net.depth(); ++t)
        detail::require_size(out.z[t], net.width(t), "out.z", t);
    for (std::size_t t = 0; t < net.depth(); ++t)
        detail::require_size(out.u[t], net.width(t + 1), "out.u", t);
}

// An empty out.x (parameter gradients only) fits any batch.
template <class T>
void require_fits(const Network<T>& net, const BatchGradientsView<T>& out, std::size_t batch) {
    detail::require_parameter_gradients(net, out);
    if (out.has_input_gradient()) detail::require_shape(out.x, batch, net.width(0), "out.x");
}

namespace detail {

// Hands out consecutive pieces of one buffer. Run once with a null base to count, then with the buffer.
template <class T>
class Carver {
  public:
    explicit Carver(T* base) : base_(base) {}
    T* take(std::size_t n) {
        T* p = base_ ? base_ + used_ : nullptr;
        used_ = checked_sum(used_, n);
        return p;
    }
    std::size_t used() const { return used_; }

  private:
    T* base_;
    std::size_t used_ = 0;
};

// The shape of a network's parameters, as the owning gradient classes need it.
struct ParameterShape {
    std::vector<std::size_t> widths;
    std::size_t outputs = 1;
    bool biases = false, output_bias = false;

    template <class T>
    static ParameterShape of(const Network<T>& net) {
        return {net.widths(), net.outputs(), net.has_biases(), net.has_output_bias()};
    }
};

// Carves the parameter gradients of `shape` (weights, alpha, biases, output bias) into `view`.
template <class T, class View>
void carve_parameters(Carver<T>& c, const ParameterShape& shape, View& view) {
    const auto& K = shape.widths;
    const std::size_t T_ = K.size() - 1;
    view.weights.clear();
    view.biases.clear();
    for (std::size_t t = 0; t < T_; ++t) view.weights.push_back({c.take(checked_product(K[t + 1], K[t])), K[t + 1], K[t]});
    view.alpha = {c.take(checked_product(K[T_], shape.outputs)), K[T_] * shape.outputs};
    if (shape.biases)
        for (std::size_t t = 0; t < T_; ++t) view.biases.push_back({c.take(K[t + 1]), K[t + 1]});
    view.output_bias = shape.output_bias ? VectorView<T>{c.take(shape.outputs), shape.outputs} : VectorView<T>{};
}

inline void require_widths(const std::vector<std::size_t>& widths) {
    if (widths.empty())
        throw std::invalid_argument("widths is empty; expected K_0..K_T (at least one width), e.g. net.widths()");
}

}  // namespace detail

// Owning buffers for C++ callers who don't bring their own memory (zero-initialised).
template <class T>
class Gradients {
  public:
    // For the notes' network of these widths (no biases, one output). keep_intermediates: also keep ∂/∂z^t
    // and ∂/∂u^t. Throws std::invalid_argument for empty widths (a network has at least K_0).
    explicit Gradients(const std::vector<std::size_t>& widths, bool keep_intermediates = true) {
        detail::require_widths(widths);
        build(detail::ParameterShape{widths}, keep_intermediates);
    }
    // For `net`: with bias and output-bias gradients when it has those parameters, α's shape (K_T × m).
    explicit Gradients(const Network<T>& net, bool keep_intermediates = true) {
        build(detail::ParameterShape::of(net), keep_intermediates);
    }
    // The views point into storage_: moving keeps them valid, copying would not.
    Gradients(const Gradients&) = delete;
    Gradients& operator=(const Gradients&) = delete;
    Gradients(Gradients&&) noexcept = default;
    Gradients& operator=(Gradients&&) noexcept = default;

    const GradientsView<T>& view() const { return view_; }
    MatrixView<T> weights(std::size_t t) const { return view_.weights[t]; }
    VectorView<T> alpha() const { return view_.alpha; }
    VectorView<T> x() const { return view_.x; }
    VectorView<T> bias(std::size_t t) const { return view_.biases.at(t); }
    VectorView<T> output_bias() const { return view_.output_bias; }

  private:
    void carve(detail::Carver<T>& c, const detail::ParameterShape& shape, bool keep_intermediates) {
        const auto& K = shape.widths;
        detail::carve_parameters(c, shape, view_);
        view_.x = {c.take(K[0]), K[0]};
        view_.z.clear();
        view_.u.clear();
        if (!keep_intermediates) return;
        for (std::size_t t = 0; t < K.size(); ++t) view_.z.push_back({c.take(K[t]), K[t]});
        for (std::size_t t = 1; t < K.size(); ++t) view_.u.push_back({c.take(K[t]), K[t]});
    }
    void build(const detail::ParameterShape& shape, bool keep_intermediates) {
        detail::Carver<T> count(nullptr);
        carve(count, shape, keep_intermediates);
        storage_.assign(count.used(), T(0));
        detail::Carver<T> fill(storage_.data());
        carve(fill, shape, keep_intermediates);
    }

    std::vector<T> storage_;
    GradientsView<T> view_;
};

// Owning buffers for a batch: parameter gradients summed over the batch, and optionally ∂/∂X.
template <class T>
class BatchGradients {
  public:
    // Parameter gradients only: fits a batch of any size (the input-gradient product is skipped).
    explicit BatchGradients(const Network<T>& net) { build(detail::ParameterShape::of(net), 0, false); }
    // Also ∂/∂X for batches of exactly `batch` examples.
    BatchGradients(const Network<T>& net, std::size_t batch) { build(detail::ParameterShape::of(net), batch, true); }
    BatchGradients(const BatchGradients&) = delete;
    BatchGradients& operator=(const BatchGradients&) = delete;
    BatchGradients(BatchGradients&&) noexcept = default;
    BatchGradients& operator=(BatchGradients&&) noexcept = default;

    const BatchGradientsView<T>& view() const { return view_; }
    MatrixView<T> weights(std::size_t t) const { return view_.weights[t]; }
    VectorView<T> alpha() const { return view_.alpha; }
    MatrixView<T> x() const { return view_.x; }  // (B × K_0), or empty for parameter-only gradients
    VectorView<T> bias(std::size_t t) const { return view_.biases.at(t); }
    VectorView<T> output_bias() const { return view_.output_bias; }

  private:
    void carve(detail::Carver<T>& c, const detail::ParameterShape& shape, std::size_t batch, bool with_x) {
        detail::carve_parameters(c, shape, view_);
        const std::size_t K0 = shape.widths[0];
        view_.x = with_x ? MatrixView<T>{c.take(detail::checked_product(batch, K0)), batch, K0} : MatrixView<T>{};
    }
    void build(const detail::ParameterShape& shape, std::size_t batch, bool with_x) {
        detail::Carver<T> count(nullptr);
        carve(count, shape, batch, with_x);
        storage_.assign(count.used(), T(0));
        detail::Carver<T> fill(storage_.data());
        carve(fill, shape, batch, with_x);
    }

    std::vector<T> storage_;
    BatchGradientsView<T> view_;
};

}  // namespace mlpgrad
