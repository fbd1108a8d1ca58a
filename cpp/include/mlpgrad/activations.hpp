// Elementwise activations σ and their derivatives σ', with the notes' ReLU convention σ'(0) = 1.
#pragma once

#include <array>
#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace mlpgrad {

enum class Activation : unsigned char { relu, leaky_relu, tanh, sigmoid, softplus, identity };

inline constexpr std::array<std::string_view, 6> activation_names = {"relu",    "leaky_relu", "tanh",
                                                                     "sigmoid", "softplus",   "identity"};

namespace detail {
[[noreturn]] inline void throw_unknown_activation(Activation a, const char* what) {
    throw std::invalid_argument(std::string(what) + " is Activation(" + std::to_string(static_cast<unsigned>(a)) +
                                "), which is not one of the " + std::to_string(activation_names.size()) +
                                " known activations");
}
}  // namespace detail

inline constexpr bool is_known(Activation a) { return static_cast<std::size_t>(a) < activation_names.size(); }

// The activation's name; throws std::invalid_argument for a value outside the enumeration (e.g. a cast
// from an unchecked integer) instead of reading past activation_names.
inline constexpr std::string_view name(Activation a) {
    if (!is_known(a)) detail::throw_unknown_activation(a, "the activation");
    return activation_names[static_cast<std::size_t>(a)];
}

// Throws std::invalid_argument listing the known names.
inline Activation parse_activation(std::string_view s) {
    for (std::size_t i = 0; i < activation_names.size(); ++i)
        if (activation_names[i] == s) return static_cast<Activation>(i);
    std::string known;
    for (auto n : activation_names) known += (known.empty() ? "'" : ", '") + std::string(n) + "'";
    throw std::invalid_argument("unknown activation '" + std::string(s) + "'; expected one of " + known);
}

// σ for a compile-time activation: the kernels are instantiated per activation so σ inlines into the loops.
// `derivative(u, z)` is σ'(u) where z = σ(u) is already on the tape (tanh and sigmoid reuse it).
template <Activation A>
struct activation_traits;

template <>
struct activation_traits<Activation::relu> {
    template <class T> static T apply(T a) { return a > T(0) ? a : T(0); }
    // The notes: σ'(a) = 1 for a >= 0 (PyTorch uses 0 at a == 0).
    template <class T> static T derivative(T u, T) { return u >= T(0) ? T(1) : T(0); }
};

template <>
struct activation_traits<Activation::leaky_relu> {
    template <class T> static constexpr T slope = T(0.01);
    template <class T> static T apply(T a) { return a >= T(0) ? a : slope<T> * a; }
    template <class T> static T derivative(T u, T) { return u >= T(0) ? T(1) : slope<T>; }
};

template <>
struct activation_traits<Activation::tanh> {
    template <class T> static T apply(T a) { return std::tanh(a); }
    template <class T> static T derivative(T, T z) { return T(1) - z * z; }
};

template <>
struct activation_traits<Activation::sigmoid> {
    // Both branches only ever call exp of a non-positive number: no overflow for any a.
    template <class T> static T apply(T a) {
        if (a >= T(0)) return T(1) / (T(1) + std::exp(-a));
        const T e = std::exp(a);
        return e / (T(1) + e);
    }
    template <class T> static T derivative(T, T z) { return z * (T(1) - z); }
};

template <>
struct activation_traits<Activation::softplus> {
    // log(1 + e^a) = max(a, 0) + log1p(e^{-|a|}): exact for large |a|, no overflow.
    template <class T> static T apply(T a) { return std::fmax(a, T(0)) + std::log1p(std::exp(-std::fabs(a))); }
    template <class T> static T derivative(T u, T) { return activation_traits<Activation::sigmoid>::apply(u); }
};

template <>
struct activation_traits<Activation::identity> {
    template <class T> static T apply(T a) { return a; }
    template <class T> static T derivative(T, T) { return T(1); }
};

template <Activation A>
using activation_constant = std::integral_constant<Activation, A>;

// Calls f(activation_constant<A>{}) for the runtime activation `a`: one switch per layer, not per element.
template <class F>
decltype(auto) dispatch(Activation a, F&& f) {
    switch (a) {
        case Activation::relu: return f(activation_constant<Activation::relu>{});
        case Activation::leaky_relu: return f(activation_constant<Activation::leaky_relu>{});
        case Activation::tanh: return f(activation_constant<Activation::tanh>{});
        case Activation::sigmoid: return f(activation_constant<Activation::sigmoid>{});
        case Activation::softplus: return f(activation_constant<Activation::softplus>{});
        case Activation::identity: break;
    }
    return f(activation_constant<Activation::identity>{});
}

// Runtime-dispatched scalar forms, for tests and callers outside the hot loops.
template <class T>
T activate(Activation a, T x) {
    return dispatch(a, [x](auto c) { return activation_traits<decltype(c)::value>::apply(x); });
}
template <class T>
T activation_derivative(Activation a, T u) {
    return dispatch(a, [u](auto c) {
        using tr = activation_traits<decltype(c)::value>;
        return tr::derivative(u, tr::apply(u));
    });
}

}  // namespace mlpgrad
