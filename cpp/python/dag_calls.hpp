// The per-call work of mlpgrad.DAG (declared in dag_object.hpp): forward, value_and_grad, the batch calls,
// new_gradients and DAG.from_mlp, for the DAG's dtype. Every argument is checked, and every allocation made,
// before the core reads the graph or writes `out`; the GIL is released while it computes.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/dag.hpp>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "aligned_arrays.hpp"
#include "checks.hpp"
#include "conversions.hpp"
#include "dag_gradients_object.hpp"
#include "dag_object.hpp"
#include "gil.hpp"
#include "instances.hpp"
#include "mlp_calls.hpp"
#include "mlp_object.hpp"
#include "threads.hpp"

namespace mlpgrad_python {

inline py::object DAG::forward(py::handle x) {
    return visit([&](auto& m) { return single_impl(m, x, py::handle(), py::handle(), false); });
}
inline py::object DAG::value_and_grad(py::handle x, py::handle dy, py::handle out) {
    return visit([&](auto& m) { return single_impl(m, x, dy, out, true); });
}
inline py::object DAG::forward_batch(py::handle X) {
    return visit([&](auto& m) { return batch_impl(m, X, py::handle(), py::handle(), false); });
}
inline py::object DAG::value_and_grad_batch(py::handle X, py::handle dy, py::handle out) {
    return visit([&](auto& m) { return batch_impl(m, X, dy, out, true); });
}

inline py::object DAG::new_gradients(py::handle batch, py::handle x) {
    const auto b = batch_size_or_none(batch);
    const bool with_x = as_flag(x, "x", true);
    if (!with_x && !b)
        throw py::value_error("x=False needs batch=B: single-example gradients always hold dŷ/dx; parameter-only "
                              "gradients are for the batch calls, dag.new_gradients(batch=B, x=False), and fit any "
                              "batch size");
    if (b) require_batch_fits(*b, "batch");
    return dtype_ == DType::float32 ? new_gradients_impl<float>(b, with_x) : new_gradients_impl<double>(b, with_x);
}

template <class T>
py::object DAG::new_gradients_impl(std::optional<std::size_t> batch, bool with_x) {
    auto n = [](std::size_t v) { return static_cast<py::ssize_t>(v); };
    std::vector<py::ssize_t> alpha_shape(alpha_.shape(), alpha_.shape() + alpha_.ndim());
    std::optional<AlignedAllocations> aligned(std::in_place);  // every array below starts on a cache line
    std::optional<py::array> x, biases, z, u;
    if (with_x) x = batch ? zeros<T>({n(*batch), n(n_inputs_)}) : zeros<T>({n(n_inputs_)});
    if (biases_) biases = zeros<T>({n(n_nodes_)});
    if (!batch) {
        z = zeros<T>({n(n_nodes_)});
        u = zeros<T>({n(n_nodes_)});
    }
    py::array weights = zeros<T>({n(n_edges())}), alpha = zeros<T>(alpha_shape);
    aligned.reset();
    DagGradientsObject g(DagGradientsObject::fresh, std::move(weights), std::move(alpha), std::move(x),
                         std::move(biases), std::move(z), std::move(u), dtype_, with_x ? batch : std::nullopt);
    g.checked_against = id_;
    return py::cast(std::move(g));
}

// The DagGradientsObject behind `out`, checked against this DAG: TypeError/ValueError, before any write.
template <class T>
DagGradientsObject* DAG::check_out(DagModel<T>& m, py::handle out, std::optional<std::size_t> batch) {
    if (!out || out.is_none()) return nullptr;
    py::detail::instance* inst = instance_or_null<DagGradientsObject>(out.ptr());
    if (!inst)
        throw py::type_error("out must be a mlpgrad.DAGGradients (from dag.new_gradients()), got " + type_name(out));
    if (!is_initialized<DagGradientsObject>(inst))
        throw py::type_error("out is a mlpgrad.DAGGradients whose __init__ never ran");
    DagGradientsObject* g = &value_of<DagGradientsObject>(inst);
    if (g->dtype() != dtype_)
        throw py::type_error(std::string("out holds ") + dtype_name(g->dtype()) + " arrays but the DAG is " +
                             dtype_name(dtype_));
    if (g->parameter_only()) {
        if (!batch)
            throw py::value_error("out holds parameter-only gradients (out.x is None), which only the batch calls "
                                  "fill; this call needs dag.new_gradients()");
    } else if (g->batch().has_value() != batch.has_value()) {
        throw py::value_error(batch ? "out holds single-example gradients; the batch calls need "
                                      "dag.new_gradients(batch=B) or dag.new_gradients(batch=B, x=False)"
                                    : "out holds batch gradients (2-D out.x); this call needs dag.new_gradients()");
    }
    if (batch && g->batch() && *g->batch() != *batch)
        throw py::value_error("out.x has shape " + shape_string({*g->batch(), n_inputs_}) + " but X holds " +
                              std::to_string(*batch) + " examples; expected " + shape_string({*batch, n_inputs_}));
    if (g->checked_against != id_) {
        if (g->has_biases() != biases_.has_value())
            throw py::value_error(biases_ ? "out has no biases (out.biases is None) but the DAG has biases"
                                          : "out has biases but the DAG has none; pass biases=None");
        if (g->alpha_array().ndim() != alpha_.ndim())
            throw py::value_error("out.alpha has shape " + shape_string(g->alpha_array()) + " but alpha has shape " +
                                  shape_string(alpha_));
        if (batch)
            mlpgrad::dag::require_fits(m.net, g->views<T>().batch.weights, g->views<T>().batch.alpha,
                                       g->views<T>().batch.x, g->views<T>().batch.biases);
        else
            mlpgrad::dag::require_fits(m.net, g->views<T>().single);
        std::vector<NamedArray> inputs{{"weights", weights_}, {"alpha", alpha_}};
        if (biases_) inputs.push_back({"biases", *biases_});
        require_disjoint(g->named_arrays(), inputs);
        g->checked_against = id_;
    }
    return g;
}

template <class T>
DagGradientsObject& DAG::out_or_new(DagModel<T>& m, py::object& out, std::optional<std::size_t> batch) {
    if (DagGradientsObject* g = check_out(m, out, batch)) return *g;
    out = new_gradients_impl<T>(batch, true);
    return *out.cast<DagGradientsObject*>();
}

template <class T>
py::array_t<T> DAG::as_x(py::handle x) const {
    auto a = as_input<T>(x, "x");
    if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != n_inputs_)
        throw py::value_error("x has shape " + shape_string(a) + " but the DAG expects " + shape_string({n_inputs_}));
    return a;
}

// dy as the core reads it: m values for one example, (B × m) for a batch; ones when not given. A scalar
// output takes a real number (one example) or a (B,) array; a vector output (m,) or (B, m).
template <class T>
py::array_t<T> DAG::as_dy(py::handle dy, std::optional<std::size_t> batch) const {
    const std::size_t m = output_dim(), rows = batch ? *batch : 1;
    if (!dy || dy.is_none()) {
        if (!batch && dy) throw py::type_error("dy must be a real number, got None");
        py::array_t<T> ones(static_cast<py::ssize_t>(rows * m));
        std::fill(ones.mutable_data(), ones.mutable_data() + rows * m, T(1));
        return ones;
    }
    if (!batch && !vector_output()) {
        py::array_t<T> one(1);
        *one.mutable_data() = static_cast<T>(as_real(dy, "dy", 1.0));
        return one;
    }
    auto a = as_input<T>(dy, "dy");
    std::vector<std::size_t> expected;
    if (batch) expected.push_back(*batch);
    if (vector_output()) expected.push_back(m);
    bool fits = static_cast<std::size_t>(a.ndim()) == expected.size();
    for (std::size_t d = 0; fits && d < expected.size(); ++d)
        fits = static_cast<std::size_t>(a.shape(static_cast<py::ssize_t>(d))) == expected[d];
    if (!fits)
        throw py::value_error("dy has shape " + shape_string(a) + " but expected " + shape_string(expected) +
                              (batch ? " (one row per example of X)" : " (one entry per output)"));
    return a;
}

// ŷ as Python returns it: a float (scalar output) or a fresh (m,) array.
template <class T>
py::object yhat_object(mlpgrad::VectorView<const T> yhat, bool vector_output) {
    if (!vector_output) return py::float_(static_cast<double>(yhat[0]));
    py::array_t<T> a(static_cast<py::ssize_t>(yhat.size));
    std::copy(yhat.begin(), yhat.end(), a.mutable_data());
    return std::move(a);
}

template <class T>
py::object DAG::single_impl(DagModel<T>& m, py::handle x, py::handle dy_obj, py::handle out_obj, bool with_grad) {
    py::array_t<T> dy;
    if (with_grad) dy = as_dy<T>(dy_obj, std::nullopt);
    auto xa = as_x<T>(x);
    py::object out = py::reinterpret_borrow<py::object>(out_obj);
    const DagGradientsObject* g = with_grad ? &out_or_new(m, out, std::nullopt) : nullptr;
    auto& tape = m.state().tape;
    require_unchanged(g);
    {
        MaybeReleaseGil gil(work(0));
        if (g)
            mlpgrad::dag::unchecked::value_and_grad(m.net, {xa.data(), n_inputs_}, tape, {dy.data(), output_dim()},
                                                    g->template views<T>().single);
        else
            mlpgrad::dag::forward(m.net, {xa.data(), n_inputs_}, tape);
    }
    py::object yhat = yhat_object<T>(std::as_const(tape).yhat(), vector_output());
    if (!with_grad) return yhat;
    return py::make_tuple(yhat, out);
}

template <class T>
py::object DAG::batch_impl(DagModel<T>& m, py::handle X_obj, py::handle dy_obj, py::handle out_obj, bool with_grad) {
    auto X = as_input<T>(X_obj, "X");
    if (X.ndim() != 2 || static_cast<std::size_t>(X.shape(1)) != n_inputs_)
        throw py::value_error("X has shape " + shape_string(X) + " but the DAG expects (B, " +
                              std::to_string(n_inputs_) + ")");
    const std::size_t B = static_cast<std::size_t>(X.shape(0)), M = output_dim();
    require_batch_fits(B, "X");
    py::array_t<T> dy;
    py::object out = py::reinterpret_borrow<py::object>(out_obj);
    const DagGradientsObject* g = nullptr;
    if (with_grad) {
        dy = as_dy<T>(dy_obj, B);
        g = &out_or_new(m, out, B);
        if (g->overlaps(byte_range(dy))) {  // dy is still read while gradients are written: read it from a copy
            py::array_t<T> copy(static_cast<py::ssize_t>(B * M));
            std::memcpy(copy.mutable_data(), dy.data(), B * M * sizeof(T));
            dy = std::move(copy);
        }
    }
    py::array_t<T> yhat = vector_output() ? py::array_t<T>({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(M)})
                                          : py::array_t<T>(static_cast<py::ssize_t>(B));
    auto& tape = m.state().batch_tape;
    require_unchanged(g);
    const auto pool = batch_pool();  // (with the GIL, which guards the pool's state; held until the pass ends)
    {
        MaybeReleaseGil gil(work(B));
        mlpgrad::dag::forward_batch(m.net, mlpgrad::MatrixView<const T>{X.data(), B, n_inputs_}, tape,
                                    mlpgrad::MatrixView<T>{yhat.mutable_data(), B, M}, pool.get());
        if (g)
            mlpgrad::dag::unchecked::backward_batch(m.net, tape, mlpgrad::MatrixView<const T>{dy.data(), B, M},
                                                    g->template views<T>().batch, pool.get());
    }
    if (!with_grad) return std::move(yhat);
    return py::make_tuple(std::move(yhat), out);
}

// The network's arrays laid out as a graph (dag/from_mlp.hpp), copied into fresh NumPy arrays.
template <class T>
DAG dag_from_network(const mlpgrad::Network<T>& net) {
    if (net.has_output_bias())
        throw py::value_error("the MLP has an output bias, which a DAG does not model (ŷ = αᵀ z only)");
    const mlpgrad::dag::MlpGraphArrays<T> arrays(net);
    auto copy = [](const auto& v, std::vector<py::ssize_t> shape) {
        using V = typename std::decay_t<decltype(v)>::value_type;
        py::array_t<V> a(shape);
        std::copy(v.begin(), v.end(), a.mutable_data());
        return a;
    };
    const auto n = [](std::size_t v) { return static_cast<py::ssize_t>(v); };
    const std::size_t m = net.outputs(), K_T = net.width(net.depth());
    py::array alpha = copy(std::vector<T>(net.alpha_matrix().data, net.alpha_matrix().data + K_T * m),
                           m == 1 ? std::vector<py::ssize_t>{n(K_T)} : std::vector<py::ssize_t>{n(K_T), n(m)});
    py::object biases = py::none();
    if (net.has_biases()) {
        std::vector<T> b(arrays.n_inputs, T(0));  // input nodes take no bias
        for (std::size_t t = 0; t < net.depth(); ++t) b.insert(b.end(), net.bias(t).begin(), net.bias(t).end());
        biases = copy(b, {n(b.size())});
    }
    bool one_activation = true;  // then one name, as MLP(..., activation="tanh") was given
    for (std::size_t t = 1; t < net.depth(); ++t) one_activation = one_activation && net.activation(t) == net.activation(0);
    py::object names = py::str(std::string(mlpgrad::name(net.depth() ? net.activation(0) : mlpgrad::Activation::identity)));
    if (!one_activation) {
        py::tuple per_node(arrays.n_nodes);
        for (std::size_t v = 0; v < arrays.n_nodes; ++v)
            per_node[v] = py::str(std::string(mlpgrad::name(arrays.activations[v])));
        names = std::move(per_node);
    }
    return DAG(py::int_(arrays.n_inputs), copy(arrays.src, {n(arrays.src.size())}), copy(arrays.dst, {n(arrays.dst.size())}),
               copy(arrays.weights, {n(arrays.weights.size())}), copy(arrays.outputs, {n(arrays.outputs.size())}),
               alpha, names, biases);
}

inline DAG DAG::from_mlp(py::handle net) {
    if (!instance_or_null<MLP>(net.ptr()))
        throw py::type_error("DAG.from_mlp() needs a mlpgrad.MLP, got " + type_name(net));
    return self_of<MLP>(net.ptr()).core([](const auto& network) { return dag_from_network(network); });
}

}  // namespace mlpgrad_python
