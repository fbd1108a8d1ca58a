// Adam, with L2 weight decay or decoupled weight decay (AdamW): one fused, in-place pass over a parameter
// array, its gradient and its two moment estimates.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "../views.hpp"
#include "update.hpp"

namespace mlpgrad {
namespace optim {

// The textbook update is PyTorch's documented algorithm for torch.optim.Adam (L2 weight decay) and
// torch.optim.AdamW (decoupled), without amsgrad. Step t = 1, 2, ... with gradient g, learning rate γ,
// β1, β2, ε, weight decay λ, first and second moments m and v (zero before the first step):
//
//     θ ← θ (1 − γλ)                        AdamW, if λ ≠ 0 (the documented θ − γλθ, one rounding)
//     g ← g + λ θ                           Adam, if λ ≠ 0
//     m ← β1 m + (1 − β1) g
//     v ← β2 v + (1 − β2) g²
//     m̂ ← m / (1 − β1^t)
//     v̂ ← v / (1 − β2^t)
//     θ ← θ − γ m̂ / (√v̂ + ε)
//
// evaluated in T one operation at a time in exactly this order, each result rounded to T; the scalars
// 1 − γλ, 1 − β1, 1 − β2, 1 − β1^t and 1 − β2^t are computed in double (β^t with std::pow, as Python's
// float ** int does) and, like γ, β1, β2, ε and λ, rounded to T once. In NumPy (θ, g, m, v arrays of dtype T,
// the scalars Python floats):
//
//     if weight_decay != 0:
//         if decoupled: theta *= 1 - lr * weight_decay
//         else: g = g + weight_decay * theta
//     m[...] = beta1 * m + (1 - beta1) * g
//     v[...] = beta2 * v + (1 - beta2) * (g * g)
//     m_hat = m / (1 - beta1 ** t)
//     v_hat = v / (1 - beta2 ** t)
//     theta -= lr * m_hat / (np.sqrt(v_hat) + eps)
//
// adam_update() is bit for bit equal to that (no fused multiply-add, no reassociation). Its loop vectorises
// when std::sqrt need not set errno (-fno-math-errno, as mlpgrad's own binaries are built; it changes no
// value): otherwise GCC and Clang keep a scalar square root behind an errno check.
struct AdamOptions {
    double lr = 1e-3;         // γ >= 0
    double beta1 = 0.9;       // in [0, 1)
    double beta2 = 0.999;     // in [0, 1)
    double eps = 1e-8;        // ε >= 0
    double weight_decay = 0;  // λ >= 0
    bool decoupled = false;   // AdamW: decay θ directly instead of adding λθ to the gradient

    // Throws std::invalid_argument naming the first option out of its range.
    void validate() const {
        detail::require_in_range(lr, "lr", 0);
        detail::require_in_range(beta1, "beta1", 0, 1);
        detail::require_in_range(beta2, "beta2", 0, 1);
        detail::require_in_range(eps, "eps", 0);
        detail::require_in_range(weight_decay, "weight_decay", 0);
    }
};

namespace unchecked {

MLPGRAD_SEPARATE_ROUNDING_BEGIN

namespace adam_detail {

template <class T>
struct AdamScalars {
    T lr, beta1, beta2, eps, lambda, one_minus_beta1, one_minus_beta2, bias_correction1, bias_correction2, decay;
};

// The scalars are copied into locals: read through a reference, they could alias the arrays written in
// the loop, and the compiler would re-load them every iteration instead of vectorising.
template <bool L2, bool Decoupled, class T>
void adam_loop(T* theta, const T* grad, T* m, T* v, std::size_t n, const AdamScalars<T> s) {
    MLPGRAD_NO_CONTRACTION
    const T lr = s.lr, beta1 = s.beta1, beta2 = s.beta2, eps = s.eps, lambda = s.lambda;
    const T one_minus_beta1 = s.one_minus_beta1, one_minus_beta2 = s.one_minus_beta2;
    const T bias_correction1 = s.bias_correction1, bias_correction2 = s.bias_correction2, decay = s.decay;
    for (std::size_t i = 0; i < n; ++i) {
        T p = theta[i];
        if constexpr (Decoupled) p = p * decay;
        T g = grad[i];
        if constexpr (L2) g = g + lambda * p;
        const T m_i = beta1 * m[i] + one_minus_beta1 * g;
        const T v_i = beta2 * v[i] + one_minus_beta2 * (g * g);
        m[i] = m_i;
        v[i] = v_i;
        const T m_hat = m_i / bias_correction1;
        const T v_hat = v_i / bias_correction2;
        theta[i] = p - lr * m_hat / (std::sqrt(v_hat) + eps);
    }
}

}  // namespace adam_detail

// adam_update() without its checks, for callers that validated the options and the arrays themselves.
template <class T>
void adam_update(VectorView<T> param, VectorView<const T> grad, VectorView<T> m, VectorView<T> v,
                 const AdamOptions& o, std::size_t step) {
    MLPGRAD_NO_CONTRACTION  // 1 − γλ is a product and a difference too
    using adam_detail::adam_loop;
    const double t = static_cast<double>(step);
    const auto r = [](double x) { return static_cast<T>(x); };
    const adam_detail::AdamScalars<T> s{r(o.lr),
                                        r(o.beta1),
                                        r(o.beta2),
                                        r(o.eps),
                                        r(o.weight_decay),
                                        r(1 - o.beta1),
                                        r(1 - o.beta2),
                                        r(1 - std::pow(o.beta1, t)),
                                        r(1 - std::pow(o.beta2, t)),
                                        r(1 - o.lr * o.weight_decay)};
    const std::size_t n = param.size;
    if (o.weight_decay == 0)
        adam_loop<false, false>(param.data, grad.data, m.data, v.data, n, s);
    else if (o.decoupled)
        adam_loop<false, true>(param.data, grad.data, m.data, v.data, n, s);
    else
        adam_loop<true, false>(param.data, grad.data, m.data, v.data, n, s);
}

MLPGRAD_SEPARATE_ROUNDING_END

}  // namespace unchecked

// Update t = `step` (1 for the first) of `param` in place from `grad`, keeping the moment estimates in `m`
// and `v` (param.size elements each, zero before the first step). Throws std::invalid_argument, before
// writing anything, for options out of range, step 0, sizes that differ or arrays that overlap. NaN and
// ±Inf propagate (IEEE arithmetic).
template <class T>
void adam_update(VectorView<T> param, VectorView<const T> grad, VectorView<T> m, VectorView<T> v,
                 const AdamOptions& options, std::size_t step) {
    options.validate();
    detail::require_step(step);
    detail::require_same_size(grad, param.size, "grad");
    detail::require_same_size(m, param.size, "m");
    detail::require_same_size(v, param.size, "v");
    detail::require_disjoint<T>({{"param", param}, {"grad", grad}, {"m", m}, {"v", v}});
    unchecked::adam_update(param, grad, m, v, options, step);
}

// The arrays of one parameter in adam_step(): θ, its gradient and its two moment estimates.
template <class T>
struct AdamArrays {
    VectorView<T> param;
    VectorView<const T> grad;
    VectorView<T> m, v;
};

// adam_update() of every parameter of a network in one call, each bit for bit as adam_update() alone.
// Throws std::invalid_argument, before writing anything, for what adam_update() refuses and for a parameter
// or a moment estimate that shares memory with any other array of the step (gradients may share memory with
// each other: they are only read).
template <class T>
void adam_step(const std::vector<AdamArrays<T>>& arrays, const AdamOptions& options, std::size_t step) {
    options.validate();
    detail::require_step(step);
    std::vector<detail::StepArray<T>> all;
    all.reserve(4 * arrays.size());
    for (std::size_t i = 0; i < arrays.size(); ++i) {
        const AdamArrays<T>& a = arrays[i];
        mlpgrad::detail::require_size(a.grad, a.param.size, "grads", i);
        mlpgrad::detail::require_size(a.m, a.param.size, "m", i);
        mlpgrad::detail::require_size(a.v, a.param.size, "v", i);
        all.push_back({a.param, "params", i, true});
        all.push_back({a.grad, "grads", i, false});
        all.push_back({a.m, "m", i, true});
        all.push_back({a.v, "v", i, true});
    }
    detail::require_disjoint_writes(std::move(all));
    for (const AdamArrays<T>& a : arrays) unchecked::adam_update(a.param, a.grad, a.m, a.v, options, step);
}

}  // namespace optim
}  // namespace mlpgrad
