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
#include "threads.hpp"

namespace mlpgrad_python {

using mlpgrad::Activation;

class MLP {
    // Calls f(Model<T>&) for this network's dtype.
    template <class F>
    decltype(auto) visit(F&& f) const {
        return std::visit([&](auto& m) -> decltype(auto) { return f(*m); }, model_);
    }

  public:
    // biases and output_bias: None (none) or arrays, viewed and checked like the weights.
    MLP(py::object weights, py::object alpha, py::object activation, py::object biases = py::none(),
        py::object output_bias = py::none()) {
        if (!py::isinstance<py::list>(weights) && !py::isinstance<py::tuple>(weights))
            throw py::type_error("weights must be a list or tuple of 2-D numpy arrays, got " + type_name(weights));
        const char* why = "mlpgrad views the caller's weights and never copies them; pass np.asarray(w)";
        const auto weight_items = items_of(weights);
        for (std::size_t t = 0; t < weight_items.size(); ++t)
            weights_.push_back(require_ndarray(weight_items[t], "weights[" + std::to_string(t) + "]", why));
        alpha_ = require_ndarray(alpha, "alpha", why);
        if (!biases.is_none()) {
            if (!py::isinstance<py::list>(biases) && !py::isinstance<py::tuple>(biases))
                throw py::type_error("biases must be None or a list or tuple of 1-D numpy arrays (one per layer), got " +
                                     type_name(biases));
            biases_.emplace();
            const auto items = items_of(biases);
            for (std::size_t t = 0; t < items.size(); ++t)
                biases_->push_back(require_ndarray(items[t], "biases[" + std::to_string(t) + "]", why));
        }
        if (!output_bias.is_none()) output_bias_ = require_ndarray(output_bias, "output_bias", why);

        const bool has_weights = !weights_.empty();
        dtype_ = float_dtype(has_weights ? weights_[0] : alpha_, has_weights ? "weights[0]" : "alpha");
        for (std::size_t t = 0; t < weights_.size(); ++t) {
            const std::string what = "weights[" + std::to_string(t) + "]";
            require_dtype(weights_[t], dtype_, what, "weights[0] has");
            require_ndim(weights_[t], 2, what, "(K_{t+1}, K_t)");
            require_layout(weights_[t], what);
        }
        const std::string whose = has_weights ? "weights[0] has" : "alpha has";
        require_dtype(alpha_, dtype_, "alpha", whose);
        if (alpha_.ndim() != 1 && alpha_.ndim() != 2)
            throw py::value_error("alpha must be 1-D with shape (K_T,) for one output or 2-D with shape (K_T, m) for m "
                                  "outputs, got a " + std::to_string(alpha_.ndim()) + "-D array of shape " +
                                  shape_string(alpha_));
        require_layout(alpha_, "alpha");
        vector_output_ = alpha_.ndim() == 2;
        check_biases(whose);
        for (const auto& w : weights_) guards_.emplace_back(w, ArrayGuard::layout_flags);
        guards_.emplace_back(alpha_, ArrayGuard::layout_flags);
        if (biases_)
            for (const auto& b : *biases_) guards_.emplace_back(b, ArrayGuard::layout_flags);
        if (output_bias_) guards_.emplace_back(*output_bias_, ArrayGuard::layout_flags);
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
            const auto k_out = static_cast<std::size_t>(alpha_.shape(0));
            throw py::value_error(e.what() + transposed_hint(shapes, std::nullopt, k_out, "weights"));
        }
        static std::atomic<std::uint64_t> next_id{1};
        id_ = next_id++;
        // multiply-adds per example: every weight, x copied to z^0, and α (one output: counted as one)
        work_per_example_ = visit([](auto& m) {
            return m.net.edge_count() + m.net.width(0) + (m.net.outputs() > 1 ? m.net.alpha().size : 1);
        });
        max_batch_ = visit([this](auto& m) { return batch_limit(m); });
        single_example_splits_ = visit([](auto& m) {
            for (std::size_t t = 0; t < m.net.depth(); ++t)
                if (m.net.weight(t).size() * sizeof(m.net.weight(t).data[0]) >=
                    2 * mlpgrad::parallel::single_example_min_bytes_per_thread)
                    return true;
            return false;
        });
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
    py::object biases() const {
        if (!biases_) return py::none();
        py::list l;
        for (const auto& b : *biases_) l.append(b);
        return std::move(l);
    }
    py::object output_bias() const { return output_bias_ ? py::object(*output_bias_) : py::object(py::none()); }
    // ŷ's shape: () for one output (1-D alpha), (m,) for m outputs (2-D alpha).
    py::tuple output_shape() const {
        return vector_output_ ? py::make_tuple(alpha_.shape(1)) : py::tuple();
    }
    bool vector_output() const { return vector_output_; }
    std::size_t outputs() const { return vector_output_ ? static_cast<std::size_t>(alpha_.shape(1)) : 1; }
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

    // Pickle state: format version 1 for the notes' network (no biases, one output), which every release
    // reads and whose pickles are byte for byte what they were; version 2 adds biases and the output bias
    // (either may be None) and allows a 2-D alpha.
    py::tuple getstate() const {
        if (!biases_ && !output_bias_ && !vector_output_)
            return py::make_tuple(1, py::tuple(weights()), alpha_, activations());
        return py::make_tuple(2, py::tuple(weights()), alpha_, activations(),
                              biases_ ? py::object(py::tuple(biases())) : py::object(py::none()), output_bias());
    }
    std::string repr() const {
        std::string s = "mlpgrad.MLP(widths=" + py::str(widths()).cast<std::string>() +
                        ", activations=" + py::str(activations()).cast<std::string>() + ", dtype=" + dtype_name(dtype_);
        if (vector_output_) s += ", output_shape=" + py::str(output_shape()).cast<std::string>();
        if (biases_) s += ", biases=True";
        if (output_bias_) s += ", output_bias=True";
        return s + ")";
    }

  private:
    // dtype, shape and layout of the biases and the output bias (the core checks their lengths).
    void check_biases(const std::string& whose) const {
        const std::size_t T_ = weights_.size();
        if (biases_) {
            if (biases_->size() != T_)
                throw py::value_error("biases has " + std::to_string(biases_->size()) + " arrays but the network has " +
                                      std::to_string(T_) + " layers; give one 1-D array per layer, or None");
            for (std::size_t t = 0; t < T_; ++t) {
                const std::string what = "biases[" + std::to_string(t) + "]";
                require_dtype((*biases_)[t], dtype_, what, whose);
                require_ndim((*biases_)[t], 1, what, "(K_{t+1},)");
                require_layout((*biases_)[t], what);
            }
        }
        if (output_bias_) {
            require_dtype(*output_bias_, dtype_, "output_bias", whose);
            if (vector_output_) {
                require_ndim(*output_bias_, 1, "output_bias", "(m,), one per column of alpha");
                if (output_bias_->shape(0) != alpha_.shape(1))
                    throw py::value_error("output_bias has shape " + shape_string(*output_bias_) + " but alpha has " +
                                          std::to_string(alpha_.shape(1)) + " columns (outputs); expected " +
                                          shape_string({static_cast<std::size_t>(alpha_.shape(1))}));
            } else {
                require_ndim(*output_bias_, 0, "output_bias", "() for one output (1-D alpha), e.g. np.array(0.0)");
            }
            require_layout(*output_bias_, "output_bias");
        }
    }

    // The name of the i-th guarded array (guards_'s order: weights, alpha, biases, output bias).
    std::string parameter_name(std::size_t i) const {
        if (i < weights_.size()) return "weights[" + std::to_string(i) + "]";
        i -= weights_.size();
        if (i == 0) return "alpha";
        --i;
        if (biases_ && i < biases_->size()) return "biases[" + std::to_string(i) + "]";
        return "output_bias";
    }

    // Every array the network views, named, for the aliasing checks against `out`.
    std::vector<NamedArray> parameters() const {
        std::vector<NamedArray> arrays;
        for (std::size_t i = 0; i < guards_.size(); ++i) arrays.push_back({parameter_name(i), parameter(i)});
        return arrays;
    }
    const py::array& parameter(std::size_t i) const {
        if (i < weights_.size()) return weights_[i];
        i -= weights_.size();
        if (i == 0) return alpha_;
        --i;
        if (biases_ && i < biases_->size()) return (*biases_)[i];
        return *output_bias_;
    }

    static std::vector<Activation> parse_activations(py::handle activation, std::size_t depth) {
        return activation_list(activation, depth, "layer", "layers");
    }

    template <class T>
    std::unique_ptr<Model<T>> make_model() const {
        std::vector<mlpgrad::MatrixView<const T>> views;
        for (const auto& w : weights_)
            views.push_back({static_cast<const T*>(w.data()), static_cast<std::size_t>(w.shape(0)),
                             static_cast<std::size_t>(w.shape(1))});
        const auto K_T = static_cast<std::size_t>(alpha_.shape(0));
        mlpgrad::MatrixView<const T> alpha{static_cast<const T*>(alpha_.data()), K_T, outputs()};
        auto vec = [](const py::array& a) {
            return mlpgrad::VectorView<const T>{static_cast<const T*>(a.data()), static_cast<std::size_t>(a.size())};
        };
        mlpgrad::NetworkOptions<T> options;
        if (biases_)
            for (const auto& b : *biases_) options.biases.push_back(vec(b));
        if (output_bias_) options.output_bias = vec(*output_bias_);
        // Shape and chaining errors come from the core's own checks (std::invalid_argument -> ValueError).
        return std::make_unique<Model<T>>(mlpgrad::Network<T>(std::move(views), alpha, activations_, std::move(options)));
    }

    // Sizes are checked once, here, so that no call computes a buffer size that wraps around: a thread's
    // tapes hold at most 2·ΣK + 3·max(K, m) elements per example (tape.hpp, batch.hpp). Refuses widths for
    // which one example's tape would not fit in PTRDIFF_MAX bytes; returns the largest batch that fits.
    template <class T>
    std::size_t batch_limit(const Model<T>& m) const {
        std::size_t sum = 0, max_width = 0, twice = 0, thrice = 0, per_example = 0, bytes = 0;
        bool ok = true;
        for (std::size_t k : m.net.widths()) {
            ok = ok && checked_add(sum, k, sum);
            max_width = std::max(max_width, k);
        }
        max_width = std::max(max_width, m.net.outputs());  // the batch tape's scratch also holds dYᵀ (m × B)
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

    // The pool for a single-example call: only for a network with a layer that splits (the pool is not even
    // created for the others). Throws std::system_error if its threads cannot be started.
    std::shared_ptr<mlpgrad::parallel::ThreadPool> single_example_pool() const {
        return single_example_splits_ ? batch_pool() : nullptr;
    }

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
            throw py::value_error("out.x has shape " + shape_string({*g->batch(), m.net.width(0)}) +
                                  " but the batch has " + std::to_string(*batch) + " examples; expected " +
                                  shape_string({*batch, m.net.width(0)}));
        // Shapes and aliasing can't change after construction (neither ours nor out's) without every later
        // call refusing them (require_unchanged): check them once per (network, out) pair.
        if (g->checked_against != id_) {
            require_same_layout(*g);
            if (batch)
                mlpgrad::require_fits(m.net, g->views<T>().batch, *batch);
            else
                mlpgrad::require_fits(m.net, g->views<T>().single);
            require_same_output_shapes(*g);
            require_disjoint(g->named_arrays(), parameters());
            g->checked_against = id_;
        }
        return g;
    }

    static constexpr const char* new_gradients_remedy = "; make gradients for this network with net.new_gradients()";

    // out holds bias gradients exactly when the network has biases, likewise for the output bias.
    void require_same_layout(const GradientsObject& g) const {
        const char* remedy = new_gradients_remedy;
        if (g.has_biases() != biases_.has_value())
            throw py::value_error(std::string(biases_ ? "out has no bias gradients (out.biases is None) but the network "
                                                        "has biases"
                                                      : "out has bias gradients (out.biases) but the network has no "
                                                        "biases") + remedy);
        if (g.has_output_bias() != output_bias_.has_value())
            throw py::value_error(std::string(output_bias_ ? "out has no output-bias gradient (out.output_bias is None) "
                                                             "but the network has an output bias"
                                                           : "out has an output-bias gradient (out.output_bias) but "
                                                             "the network has no output bias") + remedy);
    }

    // After the core's size checks: out.alpha and out.output_bias have the very shapes of alpha and output_bias
    // (a (K_T, 1) alpha is one output of a vector network, (K_T,) the notes' one output).
    void require_same_output_shapes(const GradientsObject& g) const {
        const char* remedy = new_gradients_remedy;
        auto same_shape = [](const py::array& a, const py::array& b) {
            if (a.ndim() != b.ndim()) return false;
            for (py::ssize_t d = 0; d < a.ndim(); ++d)
                if (a.shape(d) != b.shape(d)) return false;
            return true;
        };
        if (!same_shape(g.alpha_array(), alpha_))
            throw py::value_error("out.alpha has shape " + shape_string(g.alpha_array()) + " but alpha has shape " +
                                  shape_string(alpha_) + remedy);
        if (output_bias_ && !same_shape(*g.output_bias_array(), *output_bias_))
            throw py::value_error("out.output_bias has shape " + shape_string(*g.output_bias_array()) +
                                  " but output_bias has shape " + shape_string(*output_bias_) + remedy);
    }

    // Per call, after the arguments are converted and allocations are done (both may run user code: __array__,
    // __float__, a finalizer) and just before the core reads the network and writes `out`: refuses arrays that
    // were reallocated or changed in place since they were checked, which the core's views would misread.
    void require_unchanged(const GradientsObject* out) const {
        for (std::size_t i = 0; i < guards_.size(); ++i)
            if (!guards_[i].unchanged()) {
                const std::string what = parameter_name(i);
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
    py::object vector_forward_impl(Model<T>& m, py::handle x);
    template <class T>
    py::array_t<T> as_dy(py::handle dy_obj);
    template <class T>
    py::object vector_value_and_grad_impl(Model<T>& m, py::handle x, py::handle dy_obj, py::handle out_obj);
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
    void require_batch_dy(py::array_t<T>& dy, bool given, std::size_t B, const char* examples) const;
    template <class T>
    static void read_apart(py::array_t<T>& dy, const GradientsObject& g);

    std::vector<py::array> weights_;
    py::array alpha_;
    std::optional<std::vector<py::array>> biases_;  // b^1..b^T, or none
    std::optional<py::array> output_bias_;          // β (0-d for one output, (m,) for m), or none
    bool vector_output_ = false;                    // alpha is 2-D (K_T, m): ŷ is an array of m
    std::vector<ArrayGuard> guards_;  // weights_, alpha_, biases_, output_bias_, as validated
    std::vector<Activation> activations_;
    DType dtype_ = DType::float64;
    std::uint64_t id_ = 0;
    std::size_t work_per_example_ = 0;
    std::size_t max_batch_ = 0;  // the largest B whose batch tape fits (batch_limit)
    bool single_example_splits_ = false;  // a layer large enough for threads (parallel/single_example.hpp)
    std::variant<std::unique_ptr<Model<float>>, std::unique_ptr<Model<double>>> model_;
};

}  // namespace mlpgrad_python
