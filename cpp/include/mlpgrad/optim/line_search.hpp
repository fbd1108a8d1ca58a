// The Moré–Thuente line search (J. J. Moré and D. J. Thuente, "Line search algorithms with guaranteed
// sufficient decrease", ACM TOMS 20(3), 1994), as MINPACK-2's dcsrch and dcstep state it: the search
// L-BFGS-B runs, with the same constants and the same safeguards, so that lbfgs.hpp steps as SciPy does.
//
// Reverse communication: the caller owns φ(stp) = f(x + stp·d) and φ'(stp) = ∇f(x + stp·d)ᵀd, and the
// search asks for them one trial step at a time.
#pragma once

#include <algorithm>
#include <cmath>

namespace mlpgrad {
namespace optim {

class MoreThuenteSearch {
public:
    enum class Status { evaluate, converged, warning, error };

    // ftol: sufficient decrease φ(stp) ≤ φ(0) + ftol·stp·φ'(0); gtol: curvature |φ'(stp)| ≤ gtol·|φ'(0)|;
    // xtol: the relative width of the bracket at which the search gives up (with a warning).
    // L-BFGS-B's values: ftol = 1e-3, gtol = 0.9, xtol = 0.1, steps in [0, 1e10].
    MoreThuenteSearch(double ftol = 1e-3, double gtol = 0.9, double xtol = 0.1, double stpmin = 0,
                      double stpmax = 1e10)
        : ftol_(ftol), gtol_(gtol), xtol_(xtol), stpmin_(stpmin), stpmax_(stpmax) {}

    double max_step() const { return stpmax_; }

    // Starts a search at φ(0) = f0, φ'(0) = g0 < 0 with the first trial step stp. Returns evaluate (then
    // evaluate φ at stp and call next), or error when the arguments cannot start a search.
    Status start(double stp, double f0, double g0) {
        if (!(stp >= stpmin_ && stp <= stpmax_) || !(g0 < 0) || !(ftol_ >= 0) || !(gtol_ >= 0) || !(xtol_ >= 0) ||
            !(stpmin_ >= 0) || !(stpmax_ >= stpmin_))
            return Status::error;
        bracketed_ = false;
        stage_ = 1;
        finit_ = f0;
        ginit_ = g0;
        gtest_ = ftol_ * ginit_;
        width_ = stpmax_ - stpmin_;
        width1_ = width_ / 0.5;
        stx_ = 0;
        fx_ = finit_;
        gx_ = ginit_;
        sty_ = 0;
        fy_ = finit_;
        gy_ = ginit_;
        stmin_ = 0;
        stmax_ = stp + xtrapu * stp;
        return Status::evaluate;
    }

    // f = φ(stp), g = φ'(stp) at the step last asked for. Returns converged (stp satisfies both
    // conditions), warning (stp is the best step found and no better one can be), or evaluate with the
    // next trial step in stp.
    Status next(double& stp, double f, double g) {
        const double ftest = finit_ + stp * gtest_;
        if (stage_ == 1 && f <= ftest && g >= 0) stage_ = 2;
        // dcsrch's tests, in its order: a later one overrides an earlier one.
        Status status = Status::evaluate;
        if (bracketed_ && (stp <= stmin_ || stp >= stmax_)) status = Status::warning;  // rounding errors
        if (bracketed_ && stmax_ - stmin_ <= xtol_ * stmax_) status = Status::warning;   // xtol test
        if (stp == stpmax_ && f <= ftest && g <= gtest_) status = Status::warning;
        if (stp == stpmin_ && (f > ftest || g >= gtest_)) status = Status::warning;
        if (f <= ftest && std::fabs(g) <= gtol_ * -ginit_) status = Status::converged;
        if (status != Status::evaluate) return status;

        if (stage_ == 1 && f <= fx_ && f > ftest) {
            // The modified function ψ(stp) = φ(stp) − φ(0) − ftol·stp·φ'(0), until ψ has a bracketed minimiser.
            double fm = f - stp * gtest_, fxm = fx_ - stx_ * gtest_, fym = fy_ - sty_ * gtest_;
            double gm = g - gtest_, gxm = gx_ - gtest_, gym = gy_ - gtest_;
            step(stx_, fxm, gxm, sty_, fym, gym, stp, fm, gm, bracketed_, stmin_, stmax_);
            fx_ = fxm + stx_ * gtest_;
            fy_ = fym + sty_ * gtest_;
            gx_ = gxm + gtest_;
            gy_ = gym + gtest_;
        } else {
            step(stx_, fx_, gx_, sty_, fy_, gy_, stp, f, g, bracketed_, stmin_, stmax_);
        }
        if (bracketed_) {  // bisect when the bracket did not shrink enough
            if (std::fabs(sty_ - stx_) >= 0.66 * width1_) stp = stx_ + 0.5 * (sty_ - stx_);
            width1_ = width_;
            width_ = std::fabs(sty_ - stx_);
            stmin_ = std::min(stx_, sty_);
            stmax_ = std::max(stx_, sty_);
        } else {
            stmin_ = stp + xtrapl * (stp - stx_);
            stmax_ = stp + xtrapu * (stp - stx_);
        }
        stp = std::min(std::max(stp, stpmin_), stpmax_);
        if ((bracketed_ && (stp <= stmin_ || stp >= stmax_)) || (bracketed_ && stmax_ - stmin_ <= xtol_ * stmax_))
            stp = stx_;  // no progress is possible: the best step so far is the last trial
        return Status::evaluate;
    }

private:
    static constexpr double xtrapl = 1.1, xtrapu = 4.0;

    // dcstep: a safeguarded cubic or quadratic step from the interval [stx, sty] (stx the best step so far)
    // and the trial stp, and the updated interval.
    static void step(double& stx, double& fx, double& dx, double& sty, double& fy, double& dy, double& stp,
                     double fp, double dp, bool& bracketed, double stpmin, double stpmax) {
        const double sgnd = dp * (dx / std::fabs(dx));
        double stpf;
        if (fp > fx) {  // higher value: the minimiser is bracketed
            const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
            const double s = std::max({std::fabs(theta), std::fabs(dx), std::fabs(dp)});
            double gamma = s * std::sqrt((theta / s) * (theta / s) - (dx / s) * (dp / s));
            if (stp < stx) gamma = -gamma;
            const double p = (gamma - dx) + theta, q = ((gamma - dx) + gamma) + dp, r = p / q;
            const double stpc = stx + r * (stp - stx);
            const double stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx);
            stpf = std::fabs(stpc - stx) < std::fabs(stpq - stx) ? stpc : stpc + (stpq - stpc) / 2.0;
            bracketed = true;
        } else if (sgnd < 0.0) {  // derivatives of opposite sign: bracketed
            const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
            const double s = std::max({std::fabs(theta), std::fabs(dx), std::fabs(dp)});
            double gamma = s * std::sqrt((theta / s) * (theta / s) - (dx / s) * (dp / s));
            if (stp > stx) gamma = -gamma;
            const double p = (gamma - dp) + theta, q = ((gamma - dp) + gamma) + dx, r = p / q;
            const double stpc = stp + r * (stx - stp);
            const double stpq = stp + (dp / (dp - dx)) * (stx - stp);
            stpf = std::fabs(stpc - stp) > std::fabs(stpq - stp) ? stpc : stpq;
            bracketed = true;
        } else if (std::fabs(dp) < std::fabs(dx)) {  // same sign, the derivative's magnitude decreases
            const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
            const double s = std::max({std::fabs(theta), std::fabs(dx), std::fabs(dp)});
            double gamma = s * std::sqrt(std::max(0.0, (theta / s) * (theta / s) - (dx / s) * (dp / s)));
            if (stp > stx) gamma = -gamma;
            const double p = (gamma - dp) + theta, q = (gamma + (dx - dp)) + gamma, r = p / q;
            double stpc;
            if (r < 0.0 && gamma != 0.0)
                stpc = stp + r * (stx - stp);
            else
                stpc = stp > stx ? stpmax : stpmin;
            const double stpq = stp + (dp / (dp - dx)) * (stx - stp);
            if (bracketed) {
                stpf = std::fabs(stpc - stp) < std::fabs(stpq - stp) ? stpc : stpq;
                stpf = stp > stx ? std::min(stp + 0.66 * (sty - stp), stpf) : std::max(stp + 0.66 * (sty - stp), stpf);
            } else {
                stpf = std::fabs(stpc - stp) > std::fabs(stpq - stp) ? stpc : stpq;
                stpf = std::min(stpmax, stpf);
                stpf = std::max(stpmin, stpf);
            }
        } else {  // same sign, no decrease in magnitude
            if (bracketed) {
                const double theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp;
                const double s = std::max({std::fabs(theta), std::fabs(dy), std::fabs(dp)});
                double gamma = s * std::sqrt((theta / s) * (theta / s) - (dy / s) * (dp / s));
                if (stp > sty) gamma = -gamma;
                const double p = (gamma - dp) + theta, q = ((gamma - dp) + gamma) + dy, r = p / q;
                stpf = stp + r * (sty - stp);
            } else {
                stpf = stp > stx ? stpmax : stpmin;
            }
        }
        if (fp > fx) {
            sty = stp;
            fy = fp;
            dy = dp;
        } else {
            if (sgnd < 0.0) {
                sty = stx;
                fy = fx;
                dy = dx;
            }
            stx = stp;
            fx = fp;
            dx = dp;
        }
        stp = stpf;
    }

    double ftol_, gtol_, xtol_, stpmin_, stpmax_;
    bool bracketed_ = false;
    int stage_ = 1;
    double finit_ = 0, ginit_ = 0, gtest_ = 0, width_ = 0, width1_ = 0;
    double stx_ = 0, fx_ = 0, gx_ = 0, sty_ = 0, fy_ = 0, gy_ = 0, stmin_ = 0, stmax_ = 0;
};

}  // namespace optim
}  // namespace mlpgrad
