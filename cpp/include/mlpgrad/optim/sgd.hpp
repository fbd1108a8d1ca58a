// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay: one fused, in-place
// pass over a parameter array, its gradient and its velocity.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "../views.hpp"
#include "update.hpp"

namespace mlpgrad {
namespace optim {

// The textbook update is PyTorch's documented algorithm for torch.optim.SGD (dampening 0, not maximising).
// Step t = 1, 2, ... with gradient g, learning rate γ, momentum μ, weight decay λ, velocity b:
//
//     g ← g + λ θ                          if λ ≠ 0
//     b ← g              if t = 1          if μ ≠ 0
//     b ← μ b + g        if t > 1
//     g ← g + μ b  (Nesterov)  or  g ← b
//     θ ← θ − γ g
//
// evaluated in T one operation at a time, in exactly this order, each result rounded to T, with the
// scalars γ, μ, λ rounded to T once; in NumPy (θ, g, b arrays of dtype T, the scalars Python floats):
//
//     if weight_decay != 0: g = g + weight_decay * theta
//     if momentum != 0:
//         b[...] = g if t == 1 else momentum * b + g
//         g = g + momentum * b if nesterov else b
//     theta -= lr * g
//
// sgd_update() is bit for bit equal to that (no fused multiply-add, no reassociation).
struct SgdOptions {
    double lr = 0;            // γ >= 0
    double momentum = 0;      // μ >= 0
    bool nesterov = false;    // needs μ > 0
    double weight_decay = 0;  // λ >= 0 (L2: added to the gradient)

    // Throws std::invalid_argument naming the first option out of its range.
    void validate() const {
        detail::require_in_range(lr, "lr", 0);
        detail::require_in_range(momentum, "momentum", 0);
        detail::require_in_range(weight_decay, "weight_decay", 0);
        if (nesterov && momentum == 0) throw std::invalid_argument("nesterov momentum needs momentum > 0");
    }
};

namespace unchecked {

MLPGRAD_SEPARATE_ROUNDING_BEGIN

namespace sgd_detail {
// One loop per combination of options, so that the loop body has no branch and vectorises.
template <bool Decay, bool Momentum, bool Nesterov, bool First, class T>
void sgd_loop(T* theta, const T* grad, T* b, std::size_t n, T lr, T mu, T lambda) {
    MLPGRAD_NO_CONTRACTION
    for (std::size_t i = 0; i < n; ++i) {
        T g = grad[i];
        if constexpr (Decay) g = g + lambda * theta[i];
        if constexpr (Momentum) {
            T velocity;
            if constexpr (First)
                velocity = g;
            else
                velocity = mu * b[i] + g;
            b[i] = velocity;
            if constexpr (Nesterov)
                g = g + mu * velocity;
            else
                g = velocity;
        }
        theta[i] = theta[i] - lr * g;
    }
}
}  // namespace sgd_detail

// sgd_update() without its checks, for callers that validated the options and the arrays themselves.
template <class T>
void sgd_update(VectorView<T> param, VectorView<const T> grad, VectorView<T> velocity, const SgdOptions& o,
                std::size_t step) {
    using sgd_detail::sgd_loop;
    const T lr = static_cast<T>(o.lr), mu = static_cast<T>(o.momentum), lambda = static_cast<T>(o.weight_decay);
    T* const theta = param.data;
    const T* const g = grad.data;
    T* const b = velocity.data;
    const std::size_t n = param.size;
    const bool decay = o.weight_decay != 0, first = step == 1;
    if (o.momentum == 0) {
        if (decay)
            sgd_loop<true, false, false, false>(theta, g, b, n, lr, mu, lambda);
        else
            sgd_loop<false, false, false, false>(theta, g, b, n, lr, mu, lambda);
        return;
    }
    // Momentum: 2 (decay) x 2 (Nesterov) x 2 (first step).
    auto run = [&](auto decay_c, auto nesterov_c) {
        constexpr bool D = decltype(decay_c)::value, N = decltype(nesterov_c)::value;
        if (first)
            sgd_loop<D, true, N, true>(theta, g, b, n, lr, mu, lambda);
        else
            sgd_loop<D, true, N, false>(theta, g, b, n, lr, mu, lambda);
    };
    using yes = std::true_type;
    using no = std::false_type;
    if (decay)
        o.nesterov ? run(yes{}, yes{}) : run(yes{}, no{});
    else
        o.nesterov ? run(no{}, yes{}) : run(no{}, no{});
}

MLPGRAD_SEPARATE_ROUNDING_END

}  // namespace unchecked

// Update t = `step` (1 for the first) of `param` in place from `grad`, keeping the velocity in `velocity`
// (param.size elements when momentum ≠ 0; unused, and may be empty, otherwise). The first step writes the
// velocity without reading it. Throws std::invalid_argument, before writing anything, for options out of
// range, step 0, sizes that differ or arrays that overlap. NaN and ±Inf propagate (IEEE arithmetic).
template <class T>
void sgd_update(VectorView<T> param, VectorView<const T> grad, VectorView<T> velocity, const SgdOptions& options,
                std::size_t step) {
    options.validate();
    detail::require_step(step);
    detail::require_same_size(grad, param.size, "grad");
    if (options.momentum != 0) {
        detail::require_same_size(velocity, param.size, "velocity");
        detail::require_disjoint<T>({{"param", param}, {"grad", grad}, {"velocity", velocity}});
    } else {
        detail::require_disjoint<T>({{"param", param}, {"grad", grad}});
    }
    unchecked::sgd_update(param, grad, velocity, options, step);
}

// The arrays of one parameter in sgd_step(): θ, its gradient and its velocity (empty without momentum).
template <class T>
struct SgdArrays {
    VectorView<T> param;
    VectorView<const T> grad;
    VectorView<T> velocity;
};

// sgd_update() of every parameter of a network in one call, each bit for bit as sgd_update() alone. Throws
// std::invalid_argument, before writing anything, for what sgd_update() refuses and for a parameter or a
// velocity that shares memory with any other array of the step (gradients may share memory with each
// other: they are only read).
template <class T>
void sgd_step(const std::vector<SgdArrays<T>>& arrays, const SgdOptions& options, std::size_t step) {
    options.validate();
    detail::require_step(step);
    const bool momentum = options.momentum != 0;
    std::vector<detail::StepArray<T>> all;
    all.reserve(3 * arrays.size());
    for (std::size_t i = 0; i < arrays.size(); ++i) {
        const SgdArrays<T>& a = arrays[i];
        mlpgrad::detail::require_size(a.grad, a.param.size, "grads", i);
        all.push_back({a.param, "params", i, true});
        all.push_back({a.grad, "grads", i, false});
        if (momentum) {
            mlpgrad::detail::require_size(a.velocity, a.param.size, "velocities", i);
            all.push_back({a.velocity, "velocities", i, true});
        }
    }
    detail::require_disjoint_writes(std::move(all));
    for (const SgdArrays<T>& a : arrays) unchecked::sgd_update(a.param, a.grad, a.velocity, options, step);
}

}  // namespace optim
}  // namespace mlpgrad
