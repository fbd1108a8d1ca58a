// mlpgrad.Gradients: caller-visible NumPy arrays plus the core's views of them, validated once at
// construction so that passing one as `out=` costs almost nothing per call.
#pragma once

#include <mlpgrad/gradients.hpp>

#include <algorithm>
#include <functional>
#include <optional>
#include <variant>

#include "arguments.hpp"
#include "array_guard.hpp"
#include "checks.hpp"

namespace mlpgrad_python {

template <class T>
struct TypedViews {
    mlpgrad::GradientsView<T> single;      // used when batch is empty
    mlpgrad::BatchGradientsView<T> batch;  // used when batch is set, or for parameter-only gradients (empty x)
};

class GradientsObject {
  public:
    // Wraps (never copies) the caller's arrays. Checks dtypes, layout, writeability, shapes that chain, and
    // that no two arrays overlap. x=None makes parameter-only gradients (for the batch calls, any batch size).
    GradientsObject(py::object weights, py::object alpha, py::object x, py::object z, py::object u) {
        if (!py::isinstance<py::list>(weights) && !py::isinstance<py::tuple>(weights))
            throw py::type_error("Gradients: weights must be a list of 2-D numpy arrays, got " + type_name(weights));
        const char* why = "gradients are written into the caller's arrays, never into a copy";
        const auto weight_items = items_of(weights);
        for (std::size_t t = 0; t < weight_items.size(); ++t)
            weights_.push_back(require_ndarray(weight_items[t], name("weights", t), why));
        alpha_ = require_ndarray(alpha, "out.alpha", why);
        if (x.is_none()) {
            if (!z.is_none() || !u.is_none())
                throw py::value_error("Gradients: parameter-only gradients (x=None) are for the batch calls, which "
                                      "keep no z and u; pass z=None, u=None");
        } else {
            x_ = require_ndarray(x, "out.x", why);
        }
        if (z.is_none() != u.is_none()) throw py::value_error("Gradients: z and u must be both given or both None");
        if (!z.is_none()) {
            for (const char* field : {"z", "u"}) {
                py::object seq = std::string(field) == "z" ? z : u;
                if (!py::isinstance<py::list>(seq) && !py::isinstance<py::tuple>(seq))
                    throw py::type_error(std::string("Gradients: ") + field + " must be a list of 1-D numpy arrays or None, got " +
                                         type_name(seq));
                auto& dest = std::string(field) == "z" ? z_ : u_;
                dest.emplace();
                const auto items = items_of(seq);
                for (std::size_t t = 0; t < items.size(); ++t)
                    dest->push_back(require_ndarray(items[t], name(field, t), why));
            }
        }
        validate();
        build_views();
        span_ = overall_span();
        guard_arrays();
    }

    // Arrays the binding has just allocated to fit a network: nothing to check.
    struct Fresh {};
    static constexpr Fresh fresh{};
    GradientsObject(Fresh, std::vector<py::array> weights, py::array alpha, std::optional<py::array> x,
                    std::optional<std::vector<py::array>> z, std::optional<std::vector<py::array>> u, DType dtype,
                    std::vector<std::size_t> widths, std::optional<std::size_t> batch)
        : weights_(std::move(weights)), alpha_(std::move(alpha)), x_(std::move(x)), z_(std::move(z)), u_(std::move(u)),
          dtype_(dtype), widths_(std::move(widths)), batch_(batch) {
        build_views();
        span_ = overall_span();
        guard_arrays();
    }

    DType dtype() const { return dtype_; }
    const std::vector<std::size_t>& widths() const { return widths_; }
    std::optional<std::size_t> batch() const { return batch_; }
    // No input gradient (.x is None): filled by the batch calls, for any batch size, skipping W^{[1]ᵀ} ∂U^1.
    bool parameter_only() const { return !x_; }
    bool has_intermediates() const { return z_.has_value(); }

    template <class T>
    const TypedViews<T>& views() const {
        return std::get<TypedViews<T>>(views_);
    }

    py::list weights() const { return as_list(weights_); }
    py::array alpha() const { return alpha_; }
    py::object x() const { return x_ ? py::object(*x_) : py::object(py::none()); }
    py::object z() const { return z_ ? py::object(as_list(*z_)) : py::object(py::none()); }
    py::object u() const { return u_ ? py::object(as_list(*u_)) : py::object(py::none()); }

    std::vector<NamedArray> named_arrays() const {
        std::vector<NamedArray> out;
        for (std::size_t t = 0; t < weights_.size(); ++t) out.push_back({name("weights", t), weights_[t]});
        out.push_back({"out.alpha", alpha_});
        if (x_) out.push_back({"out.x", *x_});
        if (z_)
            for (std::size_t t = 0; t < z_->size(); ++t) out.push_back({name("z", t), (*z_)[t]});
        if (u_)
            for (std::size_t t = 0; t < u_->size(); ++t) out.push_back({name("u", t), (*u_)[t]});
        return out;
    }

    // Per call, just before the core writes: refuses arrays that the caller has reallocated, reshaped or made
    // read-only since construction (the views point into their old buffers). No allocation unless one was.
    void require_unchanged() const {
        for (std::size_t i = 0; i < guards_.size(); ++i) {
            if (guards_[i].unchanged()) continue;
            const NamedArray changed = named_arrays()[i];
            if (guards_[i].only_made_read_only()) require_writeable(changed.array, changed.name);  // throws
            throw py::value_error(changed.name +
                                  " was resized or reallocated after this Gradients was made (its buffer, shape, "
                                  "dtype or layout changed); make new gradients with net.new_gradients()");
        }
    }

    // Whether `r` overlaps one of these arrays: O(1) and allocation-free when `r` lies outside their
    // overall span (the usual case), a pass over the arrays otherwise.
    bool overlaps(const ByteRange& r) const {
        if (!overlap(r, span_)) return false;
        auto hit = [&](const py::array& a) { return overlap(r, byte_range(a)); };
        for (const auto& w : weights_)
            if (hit(w)) return true;
        if (hit(alpha_) || (x_ && hit(*x_))) return true;
        for (const auto* list : {&z_, &u_})
            if (*list)
                for (const auto& a : **list)
                    if (hit(a)) return true;
        return false;
    }

    // The id of the last network whose weights were checked not to overlap these arrays.
    std::uint64_t checked_against = 0;

  private:
    static std::string name(const char* field, std::size_t t) {
        return std::string("out.") + field + "[" + std::to_string(t) + "]";
    }
    static py::list as_list(const std::vector<py::array>& arrays) {
        py::list l;
        for (const auto& a : arrays) l.append(a);
        return l;
    }

    void validate() {
        // dtype: of the first weight, or of alpha for depth 0.
        const bool has_weights = !weights_.empty();
        dtype_ = float_dtype(has_weights ? weights_[0] : alpha_, has_weights ? "out.weights[0]" : "out.alpha");
        const std::string whose = has_weights ? "out.weights[0] has" : "out.alpha has";
        for (const auto& na : named_arrays()) {
            require_dtype(na.array, dtype_, na.name, whose);
            require_layout(na.array, na.name);
            require_writeable(na.array, na.name);
        }
        // Shapes: x gives K_0 (and B for a batch), each weight chains, alpha is K_T. Without x, K_0 comes from
        // the first weight's columns (or alpha for depth 0).
        if (x_ && x_->ndim() != 1 && x_->ndim() != 2)
            throw py::value_error("out.x must be 1-D (K_0,) or 2-D (B, K_0) for a batch, got shape " + shape_string(*x_));
        if (x_ && x_->ndim() == 2) {
            if (z_) throw py::value_error("Gradients: batch gradients (2-D out.x) keep no z and u; pass z=None, u=None");
            batch_ = static_cast<std::size_t>(x_->shape(0));
        }
        widths_ = {input_width()};
        for (std::size_t t = 0; t < weights_.size(); ++t) {
            const auto& w = weights_[t];
            require_ndim(w, 2, name("weights", t), "(K_{t+1}, K_t)");
            if (static_cast<std::size_t>(w.shape(1)) != widths_.back())
                throw py::value_error(name("weights", t) + " has shape " + shape_string(w) + " but expected " +
                                      std::to_string(widths_.back()) + " columns to chain with " +
                                      (t == 0 ? std::string("out.x") : name("weights", t - 1)) + transposed());
            widths_.push_back(static_cast<std::size_t>(w.shape(0)));
        }
        for (std::size_t t = 0; t < widths_.size(); ++t)
            if (widths_[t] == 0)
                throw py::value_error("Gradients: width K_" + std::to_string(t) + " is 0; every width must be at least 1");
        if (alpha_.ndim() == 1 && static_cast<std::size_t>(alpha_.shape(0)) != widths_.back())
            throw py::value_error("out.alpha has shape " + shape_string(alpha_) + " but expected " +
                                  shape_string({widths_.back()}) + transposed());
        require_vector(alpha_, widths_.back(), "out.alpha");
        if (z_) {
            const std::size_t T_ = weights_.size();
            if (z_->size() != T_ + 1 || u_->size() != T_)
                throw py::value_error("Gradients: z must hold " + std::to_string(T_ + 1) + " and u " + std::to_string(T_) +
                                      " arrays for " + std::to_string(T_) + " layers; got " + std::to_string(z_->size()) +
                                      " and " + std::to_string(u_->size()));
            for (std::size_t t = 0; t <= T_; ++t) require_vector((*z_)[t], widths_[t], name("z", t));
            for (std::size_t t = 0; t < T_; ++t) require_vector((*u_)[t], widths_[t + 1], name("u", t));
        }
        require_disjoint(named_arrays(), {});
    }

    // "; did you pass W.T? ..." when the weights would chain (from out.x to out.alpha) if transposed.
    std::string transposed() const {
        std::vector<std::pair<std::size_t, std::size_t>> shapes;
        for (const auto& w : weights_) {
            if (w.ndim() != 2) return "";
            shapes.emplace_back(static_cast<std::size_t>(w.shape(0)), static_cast<std::size_t>(w.shape(1)));
        }
        const auto k_in = x_ ? std::optional<std::size_t>(static_cast<std::size_t>(x_->shape(x_->ndim() - 1))) : std::nullopt;
        return transposed_hint(shapes, k_in, static_cast<std::size_t>(alpha_.size()), "out.weights");
    }

    // K_0: x's last axis, or without x the first weight's columns (alpha's length for depth 0).
    std::size_t input_width() const {
        if (x_) return static_cast<std::size_t>(x_->shape(x_->ndim() - 1));
        if (!weights_.empty()) {
            require_ndim(weights_[0], 2, name("weights", 0), "(K_1, K_0)");
            return static_cast<std::size_t>(weights_[0].shape(1));
        }
        return static_cast<std::size_t>(alpha_.size());
    }

    static void require_vector(const py::array& a, std::size_t n, const std::string& what) {
        if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != n)
            throw py::value_error(what + " has shape " + shape_string(a) + " but expected " + shape_string({n}));
    }

    // From the lowest to the highest byte of the non-empty arrays ({nullptr, nullptr} if all are empty).
    ByteRange overall_span() const {
        ByteRange span{nullptr, nullptr};
        auto add = [&](const py::array& a) {
            const ByteRange r = byte_range(a);
            if (r.begin == r.end) return;
            if (span.begin == span.end) {
                span = r;
                return;
            }
            span.begin = std::min(span.begin, r.begin, std::less<const char*>());
            span.end = std::max(span.end, r.end, std::less<const char*>());
        };
        for (const auto& w : weights_) add(w);
        add(alpha_);
        if (x_) add(*x_);
        for (const auto* list : {&z_, &u_})
            if (*list)
                for (const auto& a : **list) add(a);
        return span;
    }

    // One guard per array, in the order of named_arrays().
    void guard_arrays() {
        for (const auto& na : named_arrays()) guards_.emplace_back(na.array, ArrayGuard::output_flags);
    }

    void build_views() {
        if (dtype_ == DType::float32)
            views_ = make_views<float>();
        else
            views_ = make_views<double>();
    }

    template <class T>
    TypedViews<T> make_views() const {
        auto vec = [](const py::array& a) {
            return mlpgrad::VectorView<T>{static_cast<T*>(const_cast<void*>(a.data())), static_cast<std::size_t>(a.size())};
        };
        TypedViews<T> v;
        std::vector<mlpgrad::MatrixView<T>> weights;
        for (const auto& w : weights_)
            weights.push_back({static_cast<T*>(const_cast<void*>(w.data())), static_cast<std::size_t>(w.shape(0)),
                               static_cast<std::size_t>(w.shape(1))});
        if (batch_ || !x_) {
            v.batch.weights = std::move(weights);
            v.batch.alpha = vec(alpha_);
            // An empty x (0 × 0) is the core's "parameter gradients only".
            if (x_) v.batch.x = {static_cast<T*>(const_cast<void*>(x_->data())), *batch_, widths_[0]};
            return v;
        }
        v.single.weights = std::move(weights);
        v.single.alpha = vec(alpha_);
        v.single.x = vec(*x_);
        if (z_) {
            for (const auto& a : *z_) v.single.z.push_back(vec(a));
            for (const auto& a : *u_) v.single.u.push_back(vec(a));
        }
        return v;
    }

    std::vector<py::array> weights_;
    py::array alpha_;
    std::optional<py::array> x_;  // none for parameter-only gradients
    std::optional<std::vector<py::array>> z_, u_;
    DType dtype_ = DType::float64;
    std::vector<std::size_t> widths_;
    std::optional<std::size_t> batch_;
    std::variant<TypedViews<float>, TypedViews<double>> views_;
    ByteRange span_{nullptr, nullptr};
    std::vector<ArrayGuard> guards_;
};

}  // namespace mlpgrad_python
