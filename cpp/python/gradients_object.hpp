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
    // that no two arrays overlap. x=None makes parameter-only gradients (for the batch calls, any batch size);
    // biases and output_bias (None or arrays shaped like the network's) are for networks that have them.
    GradientsObject(py::object weights, py::object alpha, py::object x, py::object z, py::object u,
                    py::object biases, py::object output_bias) {
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
        if (!biases.is_none()) {
            if (!py::isinstance<py::list>(biases) && !py::isinstance<py::tuple>(biases))
                throw py::type_error("Gradients: biases must be a list of 1-D numpy arrays or None, got " +
                                     type_name(biases));
            biases_.emplace();
            const auto items = items_of(biases);
            for (std::size_t t = 0; t < items.size(); ++t) biases_->push_back(require_ndarray(items[t], name("biases", t), why));
        }
        if (!output_bias.is_none()) output_bias_ = require_ndarray(output_bias, "out.output_bias", why);
        validate();
        build_views();
        span_ = overall_span();
        guard_arrays();
    }

    // Arrays the binding has just allocated to fit a network: nothing to check.
    struct Fresh {};
    static constexpr Fresh fresh{};
    GradientsObject(Fresh, std::vector<py::array> weights, py::array alpha, std::optional<py::array> x,
                    std::optional<std::vector<py::array>> z, std::optional<std::vector<py::array>> u,
                    std::optional<std::vector<py::array>> biases, std::optional<py::array> output_bias, DType dtype,
                    std::vector<std::size_t> widths, std::optional<std::size_t> batch)
        : weights_(std::move(weights)), alpha_(std::move(alpha)), x_(std::move(x)), z_(std::move(z)), u_(std::move(u)),
          biases_(std::move(biases)), output_bias_(std::move(output_bias)), dtype_(dtype), widths_(std::move(widths)),
          batch_(batch) {
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
    bool has_biases() const { return biases_.has_value(); }
    bool has_output_bias() const { return output_bias_.has_value(); }
    // alpha's shape: (K_T,) for a network with one output, (K_T, m) for m outputs.
    const py::array& alpha_array() const { return alpha_; }
    const std::optional<py::array>& output_bias_array() const { return output_bias_; }

    template <class T>
    const TypedViews<T>& views() const {
        return std::get<TypedViews<T>>(views_);
    }

    py::list weights() const { return as_list(weights_); }
    py::array alpha() const { return alpha_; }
    py::object x() const { return x_ ? py::object(*x_) : py::object(py::none()); }
    py::object z() const { return z_ ? py::object(as_list(*z_)) : py::object(py::none()); }
    py::object u() const { return u_ ? py::object(as_list(*u_)) : py::object(py::none()); }
    py::object biases() const { return biases_ ? py::object(as_list(*biases_)) : py::object(py::none()); }
    py::object output_bias() const { return output_bias_ ? py::object(*output_bias_) : py::object(py::none()); }

    std::vector<NamedArray> named_arrays() const {
        std::vector<NamedArray> out;
        for (std::size_t t = 0; t < weights_.size(); ++t) out.push_back({name("weights", t), weights_[t]});
        out.push_back({"out.alpha", alpha_});
        if (x_) out.push_back({"out.x", *x_});
        if (z_)
            for (std::size_t t = 0; t < z_->size(); ++t) out.push_back({name("z", t), (*z_)[t]});
        if (u_)
            for (std::size_t t = 0; t < u_->size(); ++t) out.push_back({name("u", t), (*u_)[t]});
        if (biases_)
            for (std::size_t t = 0; t < biases_->size(); ++t) out.push_back({name("biases", t), (*biases_)[t]});
        if (output_bias_) out.push_back({"out.output_bias", *output_bias_});
        return out;
    }

    // Per call, just before the core writes (checks.hpp).
    void require_unchanged() const {
        require_outputs_unchanged(
            guards_, [this] { return named_arrays(); }, "this Gradients", "net.new_gradients()");
    }

    // Whether `r` overlaps one of these arrays: O(1) and allocation-free when `r` lies outside their
    // overall span (the usual case), a pass over the arrays otherwise.
    bool overlaps(const ByteRange& r) const {
        if (!overlap(r, span_)) return false;
        bool hit = false;
        for_each_array([&](const py::array& a) { hit = hit || overlap(r, byte_range(a)); });
        return hit;
    }

    // The id of the last network whose weights were checked not to overlap these arrays.
    std::uint64_t checked_against = 0;

  private:
    static std::string name(const char* field, std::size_t t) {
        return std::string("out.") + field + "[" + std::to_string(t) + "]";
    }
    // f(array) for every array, in the order of named_arrays().
    template <class F>
    void for_each_array(F&& f) const {
        for (const auto& w : weights_) f(w);
        f(alpha_);
        if (x_) f(*x_);
        for (const auto* list : {&z_, &u_, &biases_})
            if (*list)
                for (const auto& a : **list) f(a);
        if (output_bias_) f(*output_bias_);
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
        const std::size_t K_T = widths_.back();
        if (alpha_.ndim() != 1 && alpha_.ndim() != 2)
            throw py::value_error("out.alpha must be 1-D (K_T,) for one output or 2-D (K_T, m) for m outputs, got "
                                  "shape " + shape_string(alpha_));
        if (static_cast<std::size_t>(alpha_.shape(0)) != K_T || (alpha_.ndim() == 2 && alpha_.shape(1) == 0))
            throw py::value_error("out.alpha has shape " + shape_string(alpha_) + " but expected " +
                                  (alpha_.ndim() == 1 ? shape_string({K_T}) : "(" + std::to_string(K_T) + ", m), m >= 1") +
                                  transposed());
        if (biases_) {
            const std::size_t T_ = weights_.size();
            if (biases_->size() != T_)
                throw py::value_error("Gradients: biases must hold " + std::to_string(T_) + " arrays (one per layer), got " +
                                      std::to_string(biases_->size()));
            for (std::size_t t = 0; t < T_; ++t) require_vector((*biases_)[t], widths_[t + 1], name("biases", t));
        }
        if (output_bias_) {  // shaped like ŷ: 0-d for one output, (m,) for m
            const bool vector_output = alpha_.ndim() == 2;
            if (output_bias_->ndim() != (vector_output ? 1 : 0) ||
                (vector_output && output_bias_->shape(0) != alpha_.shape(1)))
                throw py::value_error("out.output_bias has shape " + shape_string(*output_bias_) + " but expected " +
                                      (vector_output ? shape_string({static_cast<std::size_t>(alpha_.shape(1))})
                                                     : std::string("() (a 0-d array: out.alpha is 1-D, one output)")));
        }
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
        const auto k_out = static_cast<std::size_t>(alpha_.ndim() == 2 ? alpha_.shape(0) : alpha_.size());
        return transposed_hint(shapes, k_in, k_out, "out.weights");
    }

    // K_0: x's last axis, or without x the first weight's columns (alpha's length for depth 0).
    std::size_t input_width() const {
        if (x_) return static_cast<std::size_t>(x_->shape(x_->ndim() - 1));
        if (!weights_.empty()) {
            require_ndim(weights_[0], 2, name("weights", 0), "(K_1, K_0)");
            return static_cast<std::size_t>(weights_[0].shape(1));
        }
        return static_cast<std::size_t>(alpha_.ndim() == 2 ? alpha_.shape(0) : alpha_.size());
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
        for_each_array(add);
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
        std::vector<mlpgrad::VectorView<T>> biases;
        if (biases_)
            for (const auto& a : *biases_) biases.push_back(vec(a));
        const mlpgrad::VectorView<T> output_bias = output_bias_ ? vec(*output_bias_) : mlpgrad::VectorView<T>{};
        if (batch_ || !x_) {
            v.batch.weights = std::move(weights);
            v.batch.alpha = vec(alpha_);
            v.batch.biases = std::move(biases);
            v.batch.output_bias = output_bias;
            // An empty x (0 × 0) is the core's "parameter gradients only".
            if (x_) v.batch.x = {static_cast<T*>(const_cast<void*>(x_->data())), *batch_, widths_[0]};
            return v;
        }
        v.single.weights = std::move(weights);
        v.single.alpha = vec(alpha_);
        v.single.biases = std::move(biases);
        v.single.output_bias = output_bias;
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
    std::optional<std::vector<py::array>> biases_;  // none when the network has no biases
    std::optional<py::array> output_bias_;          // none when the network has no output bias
    DType dtype_ = DType::float64;
    std::vector<std::size_t> widths_;
    std::optional<std::size_t> batch_;
    std::variant<TypedViews<float>, TypedViews<double>> views_;
    ByteRange span_{nullptr, nullptr};
    std::vector<ArrayGuard> guards_;
};

}  // namespace mlpgrad_python
