// Where the backward pass writes: views of caller memory (GradientsView), or owning buffers (Gradients).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "network.hpp"
#include "views.hpp"

namespace mlpgrad {

// Gradients of dy·ŷ for one example. z and u are optional: empty vectors mean "don't keep them".
template <class T>
struct GradientsView {
    std::vector<MatrixView<T>> weights;  // ∂/∂W^{[t+1]}, shapes of the weights
    VectorView<T> alpha;                 // ∂/∂α = dy·z^T
    VectorView<T> x;                     // ∂/∂x
    std::vector<VectorView<T>> z;        // ∂/∂z^t, t = 0..T (or empty)
    std::vector<VectorView<T>> u;        // ∂/∂u^t, t = 1..T at index t-1 (or empty)
};

// Gradients of Σ_b dy_b·ŷ_b for a batch; x is (B × K_0), row b = dy_b ∂ŷ_b/∂x_b.
template <class T>
struct BatchGradientsView {
    std::vector<MatrixView<T>> weights;
    VectorView<T> alpha;
    MatrixView<T> x;
};

namespace detail {

template <class T, class View>
void require_parameter_gradients(const Network<T>& net, const View& out) {
    if (out.weights.size() != net.depth())
        throw std::invalid_argument("out.weights has " + std::to_string(out.weights.size()) +
                                    " arrays but the network has " + std::to_string(net.depth()) + " layers");
    for (std::size_t t = 0; t < net.depth(); ++t)
        require_shape(out.weights[t], net.width(t + 1), net.width(t), "out.weights", t);
    require_size(out.alpha, net.width(net.depth()), "out.alpha");
}

// Calls f(data, size, name, index) for every buffer of `out` (index == no_index for single buffers).
template <class T, class F>
void for_each_buffer(const GradientsView<T>& out, F&& f) {
    for (std::size_t t = 0; t < out.weights.size(); ++t) f(out.weights[t].data, out.weights[t].size(), "out.weights", t);
    f(out.alpha.data, out.alpha.size, "out.alpha", no_index);
    f(out.x.data, out.x.size, "out.x", no_index);
    for (std::size_t t = 0; t < out.z.size(); ++t) f(out.z[t].data, out.z[t].size, "out.z", t);
    for (std::size_t t = 0; t < out.u.size(); ++t) f(out.u[t].data, out.u[t].size, "out.u", t);
}
template <class T, class F>
void for_each_buffer(const BatchGradientsView<T>& out, F&& f) {
    for (std::size_t t = 0; t < out.weights.size(); ++t) f(out.weights[t].data, out.weights[t].size(), "out.weights", t);
    f(out.alpha.data, out.alpha.size, "out.alpha", no_index);
    f(out.x.data, out.x.size(), "out.x", no_index);
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
    });
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

template <class T>
void require_fits(const Network<T>& net, const BatchGradientsView<T>& out, std::size_t batch) {
    detail::require_parameter_gradients(net, out);
    detail::require_shape(out.x, batch, net.width(0), "out.x");
}

// Owning buffers for C++ callers who don't bring their own memory.
template <class T>
class Gradients {
  public:
    // keep_intermediates: also keep ∂/∂z^t and ∂/∂u^t.
    // Throws std::invalid_argument for empty widths (a network has at least K_0).
    explicit Gradients(const std::vector<std::size_t>& widths, bool keep_intermediates = true) {
        if (widths.empty())
            throw std::invalid_argument("widths is empty; expected K_0..K_T (at least one width), e.g. net.widths()");
        const std::size_t T_ = widths.size() - 1;
        std::size_t n = 0;
        for (std::size_t t = 0; t < T_; ++t) n += widths[t + 1] * widths[t];
        n += widths[T_] + widths[0];
        if (keep_intermediates)
            for (std::size_t t = 0; t <= T_; ++t) n += widths[t] + (t > 0 ? widths[t] : 0);
        storage_.assign(n, T(0));
        T* p = storage_.data();
        for (std::size_t t = 0; t < T_; ++t) {
            view_.weights.push_back({p, widths[t + 1], widths[t]});
            p += widths[t + 1] * widths[t];
        }
        view_.alpha = {p, widths[T_]};
        p += widths[T_];
        view_.x = {p, widths[0]};
        p += widths[0];
        if (!keep_intermediates) return;
        for (std::size_t t = 0; t <= T_; ++t) {
            view_.z.push_back({p, widths[t]});
            p += widths[t];
        }
        for (std::size_t t = 1; t <= T_; ++t) {
            view_.u.push_back({p, widths[t]});
            p += widths[t];
        }
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

  private:
    std::vector<T> storage_;
    GradientsView<T> view_;
};

}  // namespace mlpgrad
