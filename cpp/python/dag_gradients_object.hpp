// mlpgrad.DAGGradients: the caller-visible NumPy arrays the DAG passes write into, plus the core's views of
// them, validated once at construction (as Gradients is for MLP) so that passing one as `out=` costs little.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/dag.hpp>

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "array_guard.hpp"
#include "checks.hpp"

namespace mlpgrad_python {

template <class T>
struct DagViews {
    mlpgrad::dag::GradientsView<T> single;      // used when batch is empty and x is there
    mlpgrad::dag::BatchGradientsView<T> batch;  // used when batch is set, or parameter-only (empty x)
};

class DagGradientsObject {
  public:
    // Wraps (never copies) the caller's arrays: weights (E,), alpha (n_outputs,) or (n_outputs, m), x (n_inputs,)
    // or (B, n_inputs) or None (parameter-only, for the batch calls), biases (n_nodes,) or None, z and u
    // (n_nodes,) both or neither (single-example only). Checks dtypes, layout, writeability, that the shapes
    // agree with each other and that no two arrays overlap; the sizes a DAG fixes are checked on first use.
    DagGradientsObject(py::object weights, py::object alpha, py::object x, py::object biases, py::object z,
                       py::object u) {
        const char* why = "gradients are written into the caller's arrays, never into a copy";
        weights_ = require_ndarray(weights, "out.weights", why);
        alpha_ = require_ndarray(alpha, "out.alpha", why);
        if (!x.is_none()) x_ = require_ndarray(x, "out.x", why);
        if (!biases.is_none()) biases_ = require_ndarray(biases, "out.biases", why);
        if (z.is_none() != u.is_none()) throw py::value_error("DAGGradients: z and u must be both given or both None");
        if (!z.is_none()) {
            z_ = require_ndarray(z, "out.z", why);
            u_ = require_ndarray(u, "out.u", why);
        }
        dtype_ = float_dtype(weights_, "out.weights");
        for (const auto& na : named_arrays()) {
            require_dtype(na.array, dtype_, na.name, "out.weights has");
            require_layout(na.array, na.name);
            require_writeable(na.array, na.name);
        }
        require_ndim(weights_, 1, "out.weights", "(n_edges,)");
        if (alpha_.ndim() != 1 && alpha_.ndim() != 2)
            throw py::value_error("out.alpha must be 1-D (n_outputs,) or 2-D (n_outputs, m), got shape " +
                                  shape_string(alpha_));
        if (x_) {
            if (x_->ndim() != 1 && x_->ndim() != 2)
                throw py::value_error("out.x must be 1-D (n_inputs,) or 2-D (B, n_inputs) for a batch, got shape " +
                                      shape_string(*x_));
            if (x_->ndim() == 2) batch_ = static_cast<std::size_t>(x_->shape(0));
        }
        if (z_) {
            if (!x_ || batch_)
                throw py::value_error("DAGGradients: z and u are per example; batch and parameter-only gradients "
                                      "keep none (pass z=None, u=None)");
            require_ndim(*z_, 1, "out.z", "(n_nodes,)");
            require_ndim(*u_, 1, "out.u", "(n_nodes,)");
            if (z_->shape(0) != u_->shape(0))
                throw py::value_error("out.z has shape " + shape_string(*z_) + " but out.u has shape " +
                                      shape_string(*u_) + "; both hold one value per node");
        }
        if (biases_) require_ndim(*biases_, 1, "out.biases", "(n_nodes,)");
        require_disjoint(named_arrays(), {});
        finish();
    }

    // Arrays the binding has just allocated to fit a DAG: nothing to check.
    struct Fresh {};
    static constexpr Fresh fresh{};
    DagGradientsObject(Fresh, py::array weights, py::array alpha, std::optional<py::array> x,
                       std::optional<py::array> biases, std::optional<py::array> z, std::optional<py::array> u,
                       DType dtype, std::optional<std::size_t> batch)
        : weights_(std::move(weights)), alpha_(std::move(alpha)), x_(std::move(x)), biases_(std::move(biases)),
          z_(std::move(z)), u_(std::move(u)), dtype_(dtype), batch_(batch) {
        finish();
    }

    DType dtype() const { return dtype_; }
    std::optional<std::size_t> batch() const { return batch_; }
    bool parameter_only() const { return !x_; }
    bool has_biases() const { return biases_.has_value(); }
    bool has_intermediates() const { return z_.has_value(); }
    const py::array& alpha_array() const { return alpha_; }

    template <class T>
    const DagViews<T>& views() const {
        return std::get<DagViews<T>>(views_);
    }

    py::array weights() const { return weights_; }
    py::array alpha() const { return alpha_; }
    static py::object or_none(const std::optional<py::array>& a) { return a ? py::object(*a) : py::object(py::none()); }
    py::object x() const { return or_none(x_); }
    py::object biases() const { return or_none(biases_); }
    py::object z() const { return or_none(z_); }
    py::object u() const { return or_none(u_); }

    std::vector<NamedArray> named_arrays() const {
        std::vector<NamedArray> out{{"out.weights", weights_}, {"out.alpha", alpha_}};
        if (x_) out.push_back({"out.x", *x_});
        if (biases_) out.push_back({"out.biases", *biases_});
        if (z_) out.push_back({"out.z", *z_});
        if (u_) out.push_back({"out.u", *u_});
        return out;
    }

    // Per call, just before the core writes (checks.hpp).
    void require_unchanged() const {
        require_outputs_unchanged(
            guards_, [this] { return named_arrays(); }, "this DAGGradients", "dag.new_gradients()");
    }

    bool overlaps(const ByteRange& r) const {
        for (const auto& na : named_arrays())
            if (overlap(r, byte_range(na.array))) return true;
        return false;
    }

    // The id of the last DAG these arrays were checked against (sizes, and no overlap with its parameters).
    std::uint64_t checked_against = 0;

  private:
    void finish() {
        if (dtype_ == DType::float32)
            views_ = make_views<float>();
        else
            views_ = make_views<double>();
        for (const auto& na : named_arrays()) guards_.emplace_back(na.array, ArrayGuard::output_flags);
    }

    template <class T>
    DagViews<T> make_views() const {
        auto data = [](const py::array& a) { return static_cast<T*>(const_cast<void*>(a.data())); };
        auto vec = [&](const std::optional<py::array>& a) {
            return a ? mlpgrad::VectorView<T>{data(*a), static_cast<std::size_t>(a->size())} : mlpgrad::VectorView<T>{};
        };
        const std::size_t n_out = static_cast<std::size_t>(alpha_.shape(0));
        const std::size_t m = alpha_.ndim() == 2 ? static_cast<std::size_t>(alpha_.shape(1)) : 1;
        const mlpgrad::MatrixView<T> alpha{data(alpha_), n_out, m};
        const mlpgrad::VectorView<T> weights{data(weights_), static_cast<std::size_t>(weights_.size())};
        DagViews<T> v;
        if (batch_ || !x_) {
            v.batch.weights = weights;
            v.batch.alpha = alpha;
            if (x_) v.batch.x = {data(*x_), *batch_, static_cast<std::size_t>(x_->shape(1))};
            v.batch.biases = vec(biases_);
            return v;
        }
        v.single = {weights, alpha, vec(x_), vec(biases_), vec(z_), vec(u_)};
        return v;
    }

    py::array weights_, alpha_;
    std::optional<py::array> x_, biases_, z_, u_;
    DType dtype_ = DType::float64;
    std::optional<std::size_t> batch_;
    std::variant<DagViews<float>, DagViews<double>> views_;
    std::vector<ArrayGuard> guards_;  // in the order of named_arrays()
};

}  // namespace mlpgrad_python
