// L-BFGS (D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large scale optimization",
// Math. Programming 45, 1989) over x ∈ ℝⁿ in double precision, stepping as SciPy's L-BFGS-B does when no
// variable has a bound, which is what scikit-learn's MLP "lbfgs" solver runs:
//   - the direction d = −H∇f, H the BFGS inverse built from the last m pairs (s, y) on H₀ = (sᵀy / yᵀy)·I
//     of the newest pair (the two-loop recursion; L-BFGS-B solves with the same matrix in compact form);
//     with no pairs d = −∇f;
//   - the Moré–Thuente line search (line_search.hpp) with L-BFGS-B's constants, first trial step
//     min(1/‖d‖₂, 1e10) on the first iteration and 1 afterwards, at most max_line_search evaluations;
//   - a pair is skipped when sᵀy ≤ ε·(−∇fᵀs); a failed line search steps back to the last iterate and,
//     with pairs, forgets them all and tries again along −∇f, without, ends the run;
//   - it stops when ‖∇f‖_∞ ≤ gtol or (f_k − f_{k+1}) ≤ ftol·max(|f_k|, |f_{k+1}|, 1).
// Its iterates equal SciPy's to rounding; the arithmetic differs (two-loop recursion against compact form).
//
// Memory: 2·m·n + 4·n doubles, allocated by the constructor, nothing afterwards. One thread; for a given
// build the iterates are the same bits on every run.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernels.hpp"
#include "line_search.hpp"
#include "update.hpp"

namespace mlpgrad {
namespace optim {

struct LbfgsOptions {
    std::size_t memory = 10;               // m: the pairs (s, y) kept
    double ftol = 2.2204460492503131e-09;  // the relative reduction of f at which the run stops
    double gtol = 1e-5;                    // the ‖∇f‖_∞ at which the run stops
    std::size_t max_line_search = 20;      // evaluations of f per line search

    // Throws std::invalid_argument naming the first option out of its range.
    void validate() const {
        if (memory == 0) throw std::invalid_argument("memory must be at least 1, got 0");
        detail::require_in_range(ftol, "ftol", 0);
        detail::require_in_range(gtol, "gtol", 0);
        if (max_line_search == 0) throw std::invalid_argument("max_line_search must be at least 1, got 0");
    }
};

// What iterate() asks for or reports.
enum class LbfgsTask {
    evaluate = 1,             // evaluate f and ∇f at x and call iterate() with them
    new_iterate = 2,          // x is a new iterate (f, ∇f: the last evaluation); call iterate() to go on
    converged_gradient = 3,   // ‖∇f‖_∞ ≤ gtol at x
    converged_reduction = 4,  // the relative reduction of f fell to ftol; x is the last iterate
    line_search_failed = 5,   // no step along −∇f satisfied the line search; x is the last iterate
};

inline const char* task_message(LbfgsTask task) {
    switch (task) {
        case LbfgsTask::evaluate: return "evaluate f and its gradient at x";
        case LbfgsTask::new_iterate: return "new iterate";
        case LbfgsTask::converged_gradient: return "CONVERGENCE: NORM OF GRADIENT <= GTOL";
        case LbfgsTask::converged_reduction: return "CONVERGENCE: RELATIVE REDUCTION OF F <= FTOL";
        case LbfgsTask::line_search_failed: return "ABNORMAL: LINE SEARCH FAILED";
    }
    return "unknown task";
}

class Lbfgs {
public:
    Lbfgs(std::size_t n, const LbfgsOptions& options) : options_(options), n_(n) {
        options.validate();
        if (n == 0) throw std::invalid_argument("n must be at least 1, got 0");
        s_.resize(options.memory * n);
        y_.resize(options.memory * n);
        rho_.resize(options.memory);
        alpha_.resize(options.memory);
        g_.resize(n);
        d_.resize(n);
        x_old_.resize(n);
        g_old_.resize(n);
    }

    std::size_t size() const { return n_; }
    std::size_t iterations() const { return iterations_; }
    double value() const { return f_; }                 // f at the last iterate
    const double* gradient() const { return g_.data(); }  // ∇f at the last iterate
    std::size_t pairs() const { return count_; }
    bool finished() const { return state_ == State::finished; }

    // Reverse communication. The first call passes the starting point x with f = f(x), g = ∇f(x); each
    // call after `evaluate` passes f and ∇f at the x that iterate() left; after `new_iterate` f and g are
    // not read. iterate() writes x (n doubles) and reads g (n doubles), which may not overlap. Throws
    // std::invalid_argument when f or g at the starting point is not finite, std::logic_error when called
    // after the run ended.
    LbfgsTask iterate(double* x, double f, const double* g) {
        switch (state_) {
            case State::start:
                if (!std::isfinite(f) || !all_finite(g))
                    throw std::invalid_argument("f and its gradient must be finite at the starting point, got f = " +
                                                detail::number_string(f));
                f_ = f;
                copy(g, g_.data());
                if (max_abs(g_.data()) <= options_.gtol) return finish(LbfgsTask::converged_gradient);
                return start_line_search(x);
            case State::line_search: return continue_line_search(x, f, g);
            case State::new_iterate: {
                if (max_abs(g_.data()) <= options_.gtol) return finish(LbfgsTask::converged_gradient);
                if (f_old_ - f_ <= options_.ftol * std::fmax(std::fmax(std::fabs(f_old_), std::fabs(f_)), 1.0))
                    return finish(LbfgsTask::converged_reduction);
                remember_step();
                return start_line_search(x);
            }
            case State::finished: break;
        }
        throw std::logic_error("this L-BFGS run has ended; start a new one");
    }

private:
    enum class State { start, line_search, new_iterate, finished };

    LbfgsTask finish(LbfgsTask task) {
        state_ = State::finished;
        return task;
    }

    // d = −H∇f by the two-loop recursion over the pairs, newest first.
    void compute_direction() {
        double* q = d_.data();
        for (std::size_t i = 0; i < n_; ++i) q[i] = -g_[i];
        const std::size_t m = options_.memory;
        for (std::size_t k = 0; k < count_; ++k) {
            const std::size_t j = (newest_ + m - k) % m;
            alpha_[j] = rho_[j] * dot(&s_[j * n_], q);
            axpy(-alpha_[j], &y_[j * n_], q);
        }
        if (count_ == 0) return;
        for (std::size_t i = 0; i < n_; ++i) q[i] *= gamma_;
        for (std::size_t k = count_; k-- > 0;) {
            const std::size_t j = (newest_ + m - k) % m;
            const double beta = rho_[j] * dot(&y_[j * n_], q);
            axpy(alpha_[j] - beta, &s_[j * n_], q);
        }
    }

    LbfgsTask start_line_search(double* x) {
        compute_direction();
        gd_start_ = dot(g_.data(), d_.data());
        if (!(gd_start_ < 0)) return line_search_failed(x);  // rounding made d an ascent direction
        stp_ = iterations_ == 0 ? std::fmin(1.0 / std::sqrt(dot(d_.data(), d_.data())), search_.max_step()) : 1.0;
        copy(x, x_old_.data());
        copy(g_.data(), g_old_.data());
        f_old_ = f_;
        if (search_.start(stp_, f_, gd_start_) != MoreThuenteSearch::Status::evaluate) return line_search_failed(x);
        trials_ = 1;
        move_to(x);
        state_ = State::line_search;
        return LbfgsTask::evaluate;
    }

    LbfgsTask continue_line_search(double* x, double f, const double* g) {
        const double gd = dot(g, d_.data());
        if (!std::isfinite(f) || !std::isfinite(gd)) return line_search_failed(x);
        const MoreThuenteSearch::Status status = search_.next(stp_, f, gd);
        if (status == MoreThuenteSearch::Status::evaluate) {
            if (trials_ >= options_.max_line_search) return line_search_failed(x);
            ++trials_;
            move_to(x);
            return LbfgsTask::evaluate;
        }
        if (status == MoreThuenteSearch::Status::error) return line_search_failed(x);
        f_ = f;
        copy(g, g_.data());
        gd_end_ = gd;
        ++iterations_;
        state_ = State::new_iterate;
        return LbfgsTask::new_iterate;
    }

    // Back to the last iterate; without pairs the run ends, with pairs they are forgotten and the search
    // starts again along −∇f.
    LbfgsTask line_search_failed(double* x) {
        if (state_ == State::line_search) {
            copy(x_old_.data(), x);
            copy(g_old_.data(), g_.data());
            f_ = f_old_;
        }
        if (count_ == 0) return finish(LbfgsTask::line_search_failed);
        count_ = 0;
        state_ = State::start;  // not line_search: x and g are the last iterate's again
        return start_line_search(x);
    }

    // The pair of the step just taken: s = stp·d, y = ∇f_{k+1} − ∇f_k, sᵀy from the directional derivatives
    // as L-BFGS-B forms it; skipped unless sᵀy > ε·(−∇f_kᵀs), which keeps H positive definite.
    void remember_step() {
        const double sy = stp_ == 1.0 ? gd_end_ - gd_start_ : (gd_end_ - gd_start_) * stp_;
        const double descent = stp_ == 1.0 ? -gd_start_ : -gd_start_ * stp_;
        if (sy <= std::numeric_limits<double>::epsilon() * descent) return;
        const std::size_t m = options_.memory;
        const std::size_t j = count_ == 0 ? 0 : (newest_ + 1) % m;
        double* s = &s_[j * n_];
        double* y = &y_[j * n_];
        for (std::size_t i = 0; i < n_; ++i) {
            s[i] = stp_ * d_[i];
            y[i] = g_[i] - g_old_[i];
        }
        rho_[j] = 1.0 / sy;
        gamma_ = sy / dot(y, y);
        newest_ = j;
        if (count_ < m) ++count_;
    }

    void move_to(double* x) const {
        for (std::size_t i = 0; i < n_; ++i) x[i] = x_old_[i] + stp_ * d_[i];
    }

    void copy(const double* from, double* to) const {
        for (std::size_t i = 0; i < n_; ++i) to[i] = from[i];
    }

    void axpy(double a, const double* v, double* out) const { kernels::axpy(a, v, out, n_); }

    // The library's blocked dot product (kernels.hpp): two vector accumulators, a fixed order of sums.
    double dot(const double* a, const double* b) const { return kernels::dot(a, b, n_); }

    // ‖v‖_∞ of a finite v (the start and every accepted step have a finite gradient): eight running maxima,
    // which the compiler keeps in one vector (std::fmax, NaN-aware, is a library call per element).
    double max_abs(const double* v) const {
        double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::size_t i = 0;
        for (; i + 8 <= n_; i += 8)
            for (std::size_t k = 0; k < 8; ++k) {
                const double a = std::fabs(v[i + k]);
                part[k] = a > part[k] ? a : part[k];
            }
        for (std::size_t k = 0; i < n_; ++i, ++k) part[k] = std::fabs(v[i]) > part[k] ? std::fabs(v[i]) : part[k];
        double m = 0;
        for (double p : part) m = p > m ? p : m;
        return m;
    }

    bool all_finite(const double* v) const {
        double sum = 0;  // 0·v is NaN exactly when some v is ±Inf or NaN
        for (std::size_t i = 0; i < n_; ++i) sum += 0.0 * v[i];
        return sum == 0;
    }

    LbfgsOptions options_;
    std::size_t n_;
    MoreThuenteSearch search_;
    State state_ = State::start;
    std::vector<double> s_, y_, rho_, alpha_;  // the pairs, ring buffers of m rows of n
    std::vector<double> g_, d_, x_old_, g_old_;
    std::size_t count_ = 0, newest_ = 0, iterations_ = 0, trials_ = 0;
    double gamma_ = 1, f_ = 0, f_old_ = 0, stp_ = 0, gd_start_ = 0, gd_end_ = 0;
};

struct LbfgsResult {
    LbfgsTask task;               // why the run ended; new_iterate when a limit ended it
    std::size_t iterations = 0;   // iterates taken
    std::size_t evaluations = 0;  // calls of fun
    double f = 0;                 // f at x
};

// Minimises fun from x (n doubles, overwritten with the result) with SciPy's limits: the run stops after
// max_iterations iterates, or at the first iterate after more than max_evaluations calls.
// `fun(x, g)` writes ∇f(x) into g (n doubles) and returns f(x).
template <class Function>
LbfgsResult minimize_lbfgs(Function&& fun, double* x, std::size_t n, const LbfgsOptions& options,
                           std::size_t max_iterations, std::size_t max_evaluations) {
    Lbfgs lbfgs(n, options);
    std::vector<double> g(n);
    LbfgsResult result{LbfgsTask::evaluate};
    double f = fun(static_cast<const double*>(x), g.data());
    result.evaluations = 1;
    for (;;) {
        const LbfgsTask task = lbfgs.iterate(x, f, g.data());
        if (task == LbfgsTask::evaluate) {
            f = fun(static_cast<const double*>(x), g.data());
            ++result.evaluations;
        } else if (task != LbfgsTask::new_iterate) {
            result.task = task;
            break;
        } else if (lbfgs.iterations() >= max_iterations || result.evaluations > max_evaluations) {
            result.task = task;
            break;
        }
    }
    result.iterations = lbfgs.iterations();
    result.f = lbfgs.value();
    return result;
}

}  // namespace optim
}  // namespace mlpgrad
