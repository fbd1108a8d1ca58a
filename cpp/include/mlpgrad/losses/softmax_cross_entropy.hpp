// Softmax cross-entropy on logits, fused: one pass over each row of Ŷ (B × m) gives the example's loss
// ℓ_b = −Σ_k y_bk log softmax(ŷ_b)_k and its gradient dy_b = c_b (s_b softmax(ŷ_b) − y_b), s_b = Σ_k y_bk,
// where c_b is the example's weight in the mean (1/B, or w_b / Σw). mlpgrad.losses calls it; written out in
// NumPy the same loss takes ~25 passes over Ŷ, 4× this for a digits mini-batch (200 × 10).
//
// log softmax(ŷ)_k = (ŷ_k − μ) − log Σ_j e^{ŷ_j − μ} with μ the row maximum: no exponential overflows, and
// the sum is ≥ 1 (its largest term is e^0). softmax(ŷ)_k = e^{ŷ_k − μ} / Σ_j e^{ŷ_j − μ}, one exponential
// per logit. IEEE arithmetic gives the documented limits by itself: a logit far below μ (or −Inf) has
// probability 0 and contributes 0 when its target is 0 (the 0·(−Inf) term is skipped); a row holding +Inf
// or NaN, or all −Inf, has μ − μ = NaN and gives NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "../kernels.hpp"
#include "exp.hpp"
#include "../views.hpp"

namespace mlpgrad {
namespace losses {
namespace detail {

// The row maximum, NaN if the row holds one (std::max would drop a NaN that is not first).
template <class T>
T row_max(const T* y, std::size_t m) {
    T mu = y[0];
    for (std::size_t k = 1; k < m && mu == mu; ++k)
        if (!(y[k] <= mu)) mu = y[k];  // (a NaN y[k] is taken, and ends the loop)
    return mu;
}

// Σ_b c_b ℓ_b in blocks (kernels::block_length), so that a float32 mean over a long batch keeps its accuracy.
template <class T>
class BlockedSum {
  public:
    explicit BlockedSum(std::size_t n) : block_(kernels::block_length(n)) {}
    void add(T x) {
        partial_ += x;
        if (++count_ == block_) flush();
    }
    T total() {
        flush();
        return total_;
    }

  private:
    void flush() {
        total_ += partial_;
        partial_ = T(0);
        count_ = 0;
    }
    std::size_t block_, count_ = 0;
    T partial_ = T(0), total_ = T(0);
};

// A row's exponentials: e[k] = e^{ŷ_k − μ}; returns μ and Σ_j e^{ŷ_j − μ}, whose logarithm is the
// log-sum-exp less μ. softmax(ŷ)_k = e[k] / sum.
template <class T>
void exp_row(const T* y, std::size_t m, T* e, T& mu, T& sum) {
    mu = row_max(y, m);
    detail::exp_shifted(y, mu, e, m);  // y − μ ≤ 0, or NaN for a row with +Inf or NaN
    sum = T(0);
    for (std::size_t k = 0; k < m; ++k) sum += e[k];
}

template <class Label>
bool in_range(Label label, std::size_t m) {
    if constexpr (std::is_signed_v<Label>)
        if (label < 0) return false;
    return static_cast<std::size_t>(label) < m;
}

template <class T>
void require_shapes(MatrixView<const T> yhat, std::size_t target_rows, std::size_t target_cols, MatrixView<T> dY,
                    const char* target) {
    const std::size_t B = yhat.rows, m = yhat.cols;
    if (target_rows != B || target_cols != m)
        throw std::invalid_argument(std::string(target) + " does not match yhat's " + std::to_string(B) + " × " +
                                    std::to_string(m));
    if (dY.rows != B || dY.cols != m) throw std::invalid_argument("dy must have the shape of yhat");
    if (B != 0 && m == 0) throw std::invalid_argument("yhat has no classes (m = 0); a softmax needs m >= 1 logits");
    if (B * m != 0 && dY.data < yhat.data + B * m && yhat.data < dY.data + B * m)
        throw std::invalid_argument("dy overlaps yhat; it needs memory of its own");
}

}  // namespace detail

// Integer class labels (B entries), each in [0, m): std::invalid_argument before any write if one is not.
// `weights`: c_b (B entries), or null for 1/B. Writes dY (B × m, not overlapping Ŷ) and returns Σ_b c_b ℓ_b,
// the mean loss. dy_b = (softmax(ŷ_b) − e_{label}) c_b, ℓ_b = log Σ_k e^{ŷ_bk − μ} − (ŷ_b,label − μ).
template <class T, class Label>
T softmax_cross_entropy(MatrixView<const T> yhat, const Label* labels, const mlpgrad::detail::nondeduced<T>* weights,
                        MatrixView<T> dY) {
    static_assert(std::is_integral_v<Label>, "labels are integers");
    const std::size_t B = yhat.rows, m = yhat.cols;
    detail::require_shapes(yhat, B, m, dY, "labels");
    for (std::size_t b = 0; b < B; ++b)
        if (!detail::in_range(labels[b], m))
            throw std::invalid_argument("label " + std::to_string(labels[b]) + " of example " + std::to_string(b) +
                                        " is outside [0, " + std::to_string(m) + ")");
    detail::BlockedSum<T> mean(B);
    const T uniform = T(1) / T(B ? B : 1);
    for (std::size_t b = 0; b < B; ++b) {
        const T* y = yhat.row(b);
        T* d = dY.row(b);
        const std::size_t label = static_cast<std::size_t>(labels[b]);
        const T c = weights ? weights[b] : uniform;
        T mu, sum;
        detail::exp_row(y, m, d, mu, sum);
        // dy_k = (softmax_k − [k = label]) c, in one pass (subtracting 0 leaves the others as they are)
        for (std::size_t k = 0; k < m; ++k) d[k] = (d[k] / sum - T(k == label)) * c;
        mean.add((std::log(sum) - (y[label] - mu)) * c);  // ℓ_b = −log softmax(ŷ_b)_label
    }
    return mean.total();
}

// Class probabilities `target` (B × m; rows are taken as they are and need not sum to 1).
// dy_b = (s_b softmax(ŷ_b) − y_b) c_b with s_b = Σ_k y_bk; ℓ_b = −Σ_{k: y_bk ≠ 0} y_bk log softmax(ŷ_b)_k.
template <class T>
T softmax_cross_entropy(MatrixView<const T> yhat, MatrixView<const T> target, const mlpgrad::detail::nondeduced<T>* weights,
                        MatrixView<T> dY) {
    const std::size_t B = yhat.rows, m = yhat.cols;
    detail::require_shapes(yhat, target.rows, target.cols, dY, "y");
    detail::BlockedSum<T> mean(B);
    const T uniform = T(1) / T(B ? B : 1);
    for (std::size_t b = 0; b < B; ++b) {
        const T* y = yhat.row(b);
        const T* t = target.row(b);
        T* d = dY.row(b);
        const T c = weights ? weights[b] : uniform;
        T mu, sum, loss = T(0), mass = T(0);
        detail::exp_row(y, m, d, mu, sum);
        for (std::size_t k = 0; k < m; ++k) d[k] /= sum;
        const T log_sum = std::log(sum);
        for (std::size_t k = 0; k < m; ++k) {
            mass += t[k];
            if (t[k] != T(0)) loss -= t[k] * ((y[k] - mu) - log_sum);  // (0 · −Inf is skipped: 0)
        }
        for (std::size_t k = 0; k < m; ++k) d[k] = (d[k] * mass - t[k]) * c;
        mean.add(loss * c);
    }
    return mean.total();
}

}  // namespace losses
}  // namespace mlpgrad
