// mlpgrad.MLP: a Network over the caller's NumPy arrays, with one tape per Python thread. Here: how one
// is built and checked, its properties, and the checks every call makes; the per-call work (forward,
// backward, the batch calls, new_gradients) is in mlp_calls.hpp.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/mlpgrad.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "arguments.hpp"
#include "array_guard.hpp"
#include "checks.hpp"
#include "conversions.hpp"
#include "gradients_object.hpp"
#include "instances.hpp"
#include "thread_state.hpp"

namespace mlpgrad_python {

using mlpgrad::Activation;

class MLP {
    // Calls f(Model<T>&) for this network's dtype.
    template <class F>
    decltype(auto) visit(F&& f) const {
        return std::visit([&](auto& m) -> decltype(auto) { return f(*m); }, model_);
    }

  public:
    MLP(py::object weights, py::object alpha, py::object activation) {
        if (!py::isinstance<py::list>(weights) && !py::isinstance<py::tuple>(weights))
            throw py::type_error("weights must be a list or tuple of 2-D numpy arrays, got " + type_name(weights));
        const char* why = "mlpgrad views the caller's weights and never copies them; pass np.asarray(w)";
        const auto weight_items = items_of(weights);
        for (std::size_t t = 0; t < weight_items.size(); ++t)
            weights_.push_back(require_ndarray(weight_items[t], "weights[" + std::to_string(t) + "]", why));
        alpha_ = require_ndarray(alpha, "alpha", why);

        const bool has_weights = !weights_.empty();
        dtype_ = float_dtype(has_weights ? weights_[0] : alpha_, has_weights ? "weights[0]" : "alpha");
        for (std::size_t t = 0; t < weights_.size(); ++t) {
            const std::string what = "weights[" + std::to_string(t) + "]";
            require_dtype(weights_[t], dtype_, what, "weights[0] has");
            require_ndim(weights_[t], 2, what, "(K_{t+1}, K_t)");
            require_layout(weights_[t], what);
        }
        require_dtype(alpha_, dtype_, "alpha", has_weights ? "weights[0] has" : "alpha has");
        require_ndim(alpha_, 1, "alpha", "(K_T,)");
        require_layout(alpha_, "alpha");
        for (const auto& w : weights_) guards_.emplace_back(w, ArrayGuard::layout_flags);
        guards_.emplace_back(alpha_, ArrayGuard::layout_flags);
        activations_ = parse_activations(activation, weights_.size());
        require_unchanged(nullptr);  // a user-defined activation sequence may have changed them since

        try {
            if (dtype_ == DType::float32)
                model_ = make_model<float>();
            else
                model_ = make_model<double>();
        } catch (const std::invalid_argument& e) {  // the core's shape checks; add the hint it cannot give
            std::vector<std::pair<std::size_t, std::size_t>> shapes;
            for (const auto& w : weights_)
                shapes.emplace_back(static_cast<std::size_t>(w.shape(0)), static_cast<std::size_t>(w.shape(1)));
            const auto k_out = static_cast<std::size_t>(alpha_.size());
            throw py::value_error(e.what() + transposed_hint(shapes, std::nullopt, k_out, "weights"));
        }
        static std::atomic<std::uint64_t> next_id{1};
        id_ = next_id++;
        work_per_example_ = visit([](auto& m) { return m.net.edge_count() + m.net.width(0) + 1; });
        max_batch_ = visit([this](auto& m) { return batch_limit(m); });
    }

    py::tuple widths() const {
        return visit([](auto& m) {
            const auto& K = m.net.widths();
            py::tuple out(K.size());
            for (std::size_t t = 0; t < K.size(); ++t) out[t] = py::int_(K[t]);
            return out;
        });
    }
    std::size_t depth() const { return weights_.size(); }
    py::dtype dtype() const { return dtype_ == DType::float32 ? py::dtype::of<float>() : py::dtype::of<double>(); }
    py::tuple activations() const {
        py::tuple names(activations_.size());
        for (std::size_t t = 0; t < activations_.size(); ++t) names[t] = py::str(std::string(mlpgrad::name(activations_[t])));
        return names;
    }
    py::list weights() const {
        py::list l;
        for (const auto& w : weights_) l.append(w);
        return l;
    }
    py::array alpha() const { return alpha_; }
    // f(the core's Network<T>) for this network's dtype (DAG.from_mlp reads it).
    template <class F>
    decltype(auto) core(F&& f) const {
        return visit([&](auto& m) -> decltype(auto) { return f(m.net); });
    }

    // The call methods take handles that are null when the argument was not passed (see fast_call.hpp).
    py::object forward(py::handle x);
    py::list recorded(bool want_z);
    py::object backward(py::handle dy, py::handle out);
    py::object value_and_grad(py::handle x, py::handle dy, py::handle out);
    py::object new_gradients(py::handle batch, py::handle x);
    py::object forward_batch(py::handle X);
    py::object value_and_grad_batch(py::handle X, py::handle dy, py::handle out);
    py::object backward_batch(py::handle dy, py::handle out);

    py::tuple getstate() const {
        return py::make_tuple(1, py::tuple(weights()), alpha_, activations());
    }
    std::string repr() const {
        return "mlpgrad.MLP(widths=" + py::str(widths()).cast<std::string>() +
               ", activations=" + py::str(activations()).cast<std::string>() + ", dtype=" + dtype_name(dtype_) + ")";
    }

  private:
    static std::vector<Activation> parse_activations(py::handle activation, std::size_t depth) {
        return activation_list(activation, depth, "layer", "layers");
    }

    template <class T>
    std::unique_ptr<Model<T>> make_model() const {
        std::vector<mlpgrad::MatrixView<const T>> views;
        for (const auto& w : weights_)
            views.push_back({static_cast<const T*>(w.data()), static_cast<std::size_t>(w.shape(0)),
                             static_cast<std::size_t>(w.shape(1))});
        mlpgrad::VectorView<const T> alpha{static_cast<const T*>(alpha_.data()), static_cast<std::size_t>(alpha_.size())};
        // Shape and chaining errors come from the core's own checks (std::invalid_argument -> ValueError).
        return std::make_unique<Model<T>>(mlpgrad::Network<T>(std::move(views), alpha, activations_));
    }

    // Sizes are checked once, here, so that no call computes a buffer size that wraps around: a thread's
    // tapes hold at most 2·ΣK + 3·max K elements per example (tape.hpp, batch.hpp). Refuses widths for
    // which one example's tape would not fit in PTRDIFF_MAX bytes; returns the largest batch that fits.
    template <class T>
    std::size_t batch_limit(const Model<T>& m) const {
        std::size_t sum = 0, max_width = 0, twice = 0, thrice = 0, per_example = 0, bytes = 0;
        bool ok = true;
        for (std::size_t k : m.net.widths()) {
            ok = ok && checked_add(sum, k, sum);
            max_width = std::max(max_width, k);
        }
        ok = ok && checked_mul(2, sum, twice) && checked_mul(3, max_width, thrice) &&
             checked_add(twice, thrice, per_example) && checked_mul(per_example, sizeof(T), bytes) &&
             bytes <= max_buffer_bytes;
        if (!ok)
            throw py::value_error("widths " + shape_string(m.net.widths()) +
                                  " are too large: the buffers of one forward pass would exceed " +
                                  std::to_string(max_buffer_bytes) + " bytes");
        return max_buffer_bytes / bytes;
    }

    // O(1), allocation-free: a batch whose tape size would overflow is refused before anything is allocated.
    void require_batch_fits(std::size_t batch, const char* what) const {
        if (batch > max_batch_)
            throw py::value_error(std::string(what) + " of " + std::to_string(batch) +
                                  " examples is too large for widths " + py::str(widths()).cast<std::string>() +
                                  ": its buffers would exceed " + std::to_string(max_buffer_bytes) +
                                  " bytes (at most " + std::to_string(max_batch_) + " examples per call)");
    }

    // Multiply-adds of one call, to decide whether releasing the GIL pays.
    std::size_t work(std::size_t batch) const { return work_per_example_ * (batch ? batch : 1); }

    // The GradientsObject behind `out`, checked against this network: TypeError/ValueError, before any write.
    template <class T>
    GradientsObject* check_out(Model<T>& m, py::handle out, std::optional<std::size_t> batch) {
        if (!out || out.is_none()) return nullptr;
        py::detail::instance* inst = instance_or_null<GradientsObject>(out.ptr());
        if (!inst)
            throw py::type_error("out must be a mlpgrad.Gradients (from net.new_gradients()), got " + type_name(out));
        // Gradients.__new__(Gradients) makes an instance whose C++ object was never built: refuse it (O(1)).
        if (!is_initialized<GradientsObject>(inst))
            throw py::type_error("out is a mlpgrad.Gradients whose __init__ never ran");
        GradientsObject* g = &value_of<GradientsObject>(inst);
        if (g->dtype() != dtype_)
            throw py::type_error(std::string("out holds ") + dtype_name(g->dtype()) + " arrays but the network is " +
                                 dtype_name(dtype_));
        if (g->parameter_only()) {  // fits any batch; the single-example core always writes ∂x
            if (!batch)
                throw py::value_error("out holds parameter-only gradients (out.x is None), which only the batch calls "
                                      "fill; this call needs net.new_gradients()");
        } else if (g->batch().has_value() != batch.has_value()) {
            throw py::value_error(batch ? "out holds single-example gradients; the batch calls need "
                                          "net.new_gradients(batch=B) or net.new_gradients(batch=B, x=False)"
                                        : "out holds batch gradients (2-D out.x); this call needs net.new_gradients()");
        }
        if (batch && g->batch() && *g->batch() != *batch)
            throw py::value_error("out.x has shape " + shape_string({*g->batch(), m.net.width(0)}) + " but X holds " +
                                  std::to_string(*batch) + " examples; expected " +
                                  shape_string({*batch, m.net.width(0)}));
        // Shapes and aliasing can't change after construction (neither ours nor out's) without every later
        // call refusing them (require_unchanged): check them once per (network, out) pair.
        if (g->checked_against != id_) {
            if (batch)
                mlpgrad::require_fits(m.net, g->views<T>().batch, *batch);
            else
                mlpgrad::require_fits(m.net, g->views<T>().single);
            std::vector<NamedArray> inputs;
            for (std::size_t t = 0; t < weights_.size(); ++t) inputs.push_back({"weights[" + std::to_string(t) + "]", weights_[t]});
            inputs.push_back({"alpha", alpha_});
            require_disjoint(g->named_arrays(), inputs);
            g->checked_against = id_;
        }
        return g;
    }

    // Per call, after the arguments are converted and allocations are done (both may run user code: __array__,
    // __float__, a finalizer) and just before the core reads the network and writes `out`: refuses arrays that
    // were reallocated or changed in place since they were checked, which the core's views would misread.
    void require_unchanged(const GradientsObject* out) const {
        for (std::size_t i = 0; i < guards_.size(); ++i)
            if (!guards_[i].unchanged()) {
                const std::string what = i < weights_.size() ? "weights[" + std::to_string(i) + "]" : "alpha";
                throw py::value_error(what + " was resized or reallocated after the network was built (its buffer, "
                                             "shape, dtype or layout changed); build a new MLP");
            }
        if (out) out->require_unchanged();
    }

    // The per-call work, one instantiation per dtype (mlp_calls.hpp).
    template <class T>
    py::array_t<T> as_x(Model<T>& m, py::handle x);
    template <class T>
    double forward_impl(Model<T>& m, py::handle x);
    template <class T>
    GradientsObject& out_or_new(Model<T>& m, py::object& out, std::optional<std::size_t> batch);
    template <class T>
    py::object value_and_grad_impl(Model<T>& m, py::handle x, py::handle dy_obj, py::handle out_obj);
    template <class T>
    py::list recorded_impl(Model<T>& m, bool want_z);
    template <class T>
    py::object backward_impl(Model<T>& m, py::handle dy_obj, py::handle out_obj);
    static std::optional<std::size_t> parse_batch(py::handle batch);
    template <class T>
    py::object new_gradients_impl(Model<T>& m, std::optional<std::size_t> batch, bool with_x = true);
    enum class BatchCall { forward, value_and_grad, backward };
    template <class T>
    py::object batch_impl(Model<T>& m, py::handle X_obj, py::handle dy_obj, py::handle out_obj, BatchCall call);
    template <class T>
    static void require_batch_dy(py::array_t<T>& dy, bool given, std::size_t B, const char* examples);
    template <class T>
    static void read_apart(py::array_t<T>& dy, const GradientsObject& g);

    std::vector<py::array> weights_;
    py::array alpha_;
    std::vector<ArrayGuard> guards_;  // weights_ then alpha_, as validated
    std::vector<Activation> activations_;
    DType dtype_ = DType::float64;
    std::uint64_t id_ = 0;
    std::size_t work_per_example_ = 0;
    std::size_t max_batch_ = 0;  // the largest B whose batch tape fits (batch_limit)
    std::variant<std::unique_ptr<Model<float>>, std::unique_ptr<Model<double>>> model_;
};

}  // namespace mlpgrad_python
