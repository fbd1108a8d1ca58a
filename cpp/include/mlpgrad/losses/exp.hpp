// e^x for x ≤ 0, four lanes at a time: the exponentials of softmax, whose arguments ŷ_k − μ are never
// positive. std::exp is a scalar call (~6 ns; 80 % of the softmax kernel); this is ~0.3 ns a value.
//
//   x = k·ln 2 + r, k = round(x / ln 2), |r| ≤ ln 2 / 2   (Cody–Waite: ln 2 in two parts, so k·ln2_hi is exact)
//   e^r = Σ_{j ≤ 13} r^j / j!                             (truncation < 1e-17 relative on |r| ≤ 0.347)
//   e^x = (e^r · 2^⌊k/2⌋) · 2^{k − ⌊k/2⌋}                 (two normal scales: one rounding, also into subnormals)
//
// Error ≤ 1 ulp against the exact value (tested against long double on 2^20 points and at the limits).
// e^0 = 1, e^{−Inf} = 0, NaN gives NaN; x < −745.2 gives 0, as it must in double. Every lane takes the
// same operations, so a value's result does not depend on its neighbours or on where a row starts.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mlpgrad {
namespace losses {
namespace detail {

#if defined(__GNUC__) || defined(__clang__)
typedef double f64x4 __attribute__((vector_size(32)));
typedef std::int64_t i64x4 __attribute__((vector_size(32)));

inline f64x4 exp_nonpositive(f64x4 x) {
    const f64x4 lowest = x < -746.0 ? f64x4{} - 746.0 : x;  // NaN stays NaN; e^{−746} rounds to 0
    const double shifter = 0x1.8p52;                          // adding it rounds to an integer in the low bits
    const f64x4 t = lowest * 1.4426950408889634 + shifter;    // x / ln 2 + shifter
    const f64x4 k = t - shifter;
    f64x4 r = lowest - k * 0x1.62e42fefa3800p-1;  // k·ln2_hi is exact: ln2_hi has 11 trailing zero bits
    r = r - k * 0x1.ef35793c76730p-45;
    f64x4 p = f64x4{} + 1.0 / 6227020800.0;  // 1/13!
    const double c[13] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                          1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,     1.0 / 24.0,     1.0 / 6.0,
                          0.5,               1.0,              1.0};
    for (double cj : c) p = p * r + cj;
    i64x4 ki;
    std::memcpy(&ki, &t, sizeof ki);
    std::int64_t shifter_bits;
    std::memcpy(&shifter_bits, &shifter, sizeof shifter_bits);
    ki = ki - shifter_bits;          // k as an integer, in [−1076, 0] (anything for NaN: p is NaN then)
    const i64x4 k1 = ki >> 1;        // ⌊k/2⌋ ∈ [−538, 0]
    const i64x4 k2 = ki - k1;        //        ∈ [−538, 0]
    const i64x4 s1_bits = (k1 + 1023) << 52, s2_bits = (k2 + 1023) << 52;
    f64x4 s1, s2;
    std::memcpy(&s1, &s1_bits, sizeof s1);
    std::memcpy(&s2, &s2_bits, sizeof s2);
    return (p * s1) * s2;
}

// e[k] = e^{y[k] − μ} for k < n, where y[k] − μ ≤ 0 (or −Inf, NaN); y and e must not overlap. T is float
// or double; y[k] − μ is rounded to T, as written, and its exponential computed in double. A short tail
// is done as the last whole vector again (the same bits for the values it repeats).
template <class T>
void exp_shifted(const T* y, T mu, T* e, std::size_t n) {
    if (sizeof(T) == sizeof(double) && n >= 4) {
        const auto vector_at = [&](std::size_t k) {
            f64x4 v;
            std::memcpy(&v, y + k, sizeof v);
            v = exp_nonpositive(v - static_cast<double>(mu));
            std::memcpy(e + k, &v, sizeof v);
        };
        std::size_t k = 0;
        for (; k + 4 <= n; k += 4) vector_at(k);
        if (k < n) vector_at(n - 4);
        return;
    }
    for (std::size_t k = 0; k < n; k += 4) {
        const std::size_t lanes = n - k < 4 ? n - k : 4;
        f64x4 v = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};  // e^{−Inf} = 0 in unused lanes
        for (std::size_t j = 0; j < lanes; ++j) v[j] = static_cast<double>(static_cast<T>(y[k + j] - mu));
        v = exp_nonpositive(v);
        for (std::size_t j = 0; j < lanes; ++j) e[k + j] = static_cast<T>(v[j]);
    }
}
#else
template <class T>
void exp_shifted(const T* y, T mu, T* e, std::size_t n) {
    for (std::size_t k = 0; k < n; ++k) e[k] = std::exp(y[k] - mu);
}
#endif

}  // namespace detail
}  // namespace losses
}  // namespace mlpgrad
