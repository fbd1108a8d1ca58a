// mlpgrad.DAG: a dag::Graph over the caller's NumPy arrays (weights, alpha, biases viewed, never copied), with
// one tape per Python thread. Here: how one is built and checked, its properties and the checks every call
// makes; the per-call work is in dag_calls.hpp. The structure (src, dst, outputs) is read once, at
// construction, into the graph's own layout (levels and CSR), so those arrays are converted, not viewed.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/dag.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "arguments.hpp"
#include "array_guard.hpp"
#include "checks.hpp"
#include "conversions.hpp"
#include "dag_gradients_object.hpp"
#include "thread_state.hpp"

namespace mlpgrad_python {

template <class T>
struct DagThreadState {
    mlpgrad::dag::Tape<T> tape;
    mlpgrad::dag::BatchTape<T> batch_tape;
};

template <class T>
using DagModel = Model<T, mlpgrad::dag::Graph<T>, DagThreadState<T>>;

// The most nodes (and edges) a Graph lays out (32-bit CSR slots, graph.hpp).
inline constexpr std::uint64_t max_dag_count = std::numeric_limits<std::uint32_t>::max();

// src, dst, outputs: any 1-D array-like of integers (a size-0 one of any real dtype), as a fresh C-contiguous
// int64 array. Values are checked against the graph later; only those int64 cannot hold are refused here.
inline py::array_t<std::int64_t> as_node_ids(py::handle obj, const char* what) {
    py::array a;
    try {
        a = numpy_asarray()(obj);
    } catch (py::error_already_set& e) {
        raise_chained(e, PyExc_TypeError, std::string(what) + " could not be read as an array of node ids");
    }
    const char kind = a.dtype().kind();
    if (a.ndim() != 1)
        throw py::value_error(std::string(what) + " must be 1-D (one node id per entry), got shape " + shape_string(a));
    if (kind != 'i' && kind != 'u' && !(a.size() == 0 && (kind == 'f' || kind == 'b')))
        throw py::type_error(std::string(what) + " has dtype " + dtype_string(a) + "; expected integer node ids");
    if (kind == 'u' && a.itemsize() == 8) {
        const auto u = py::array_t<std::uint64_t, py::array::forcecast>::ensure(a);
        if (!u) throw py::error_already_set();
        for (py::ssize_t k = 0; k < u.size(); ++k)
            if (u.at(k) > max_dag_count)
                throw py::value_error(std::string(what) + "[" + std::to_string(k) + "] is node " +
                                      std::to_string(u.at(k)) + " but at most " + std::to_string(max_dag_count) +
                                      " nodes are supported");
    }
    using api = py::detail::npy_api;
    constexpr int flags = api::NPY_ARRAY_FORCECAST_ | api::NPY_ARRAY_C_CONTIGUOUS_ | api::NPY_ARRAY_ALIGNED_ |
                          api::NPY_ARRAY_ENSUREARRAY_;
    PyObject* converted =  // steals the dtype reference
        api::get().PyArray_FromAny_(a.ptr(), py::dtype::of<std::int64_t>().release().ptr(), 0, 0, flags, nullptr);
    if (!converted) throw py::error_already_set();
    const auto view = py::reinterpret_steal<py::array_t<std::int64_t>>(converted);
    py::array_t<std::int64_t> ids(view.size());  // our own copy, whatever the caller does to theirs later
    if (view.size()) std::memcpy(ids.mutable_data(), view.data(), static_cast<std::size_t>(view.nbytes()));
    ids.attr("flags").attr("writeable") = false;  // the graph was built from them: they stay as they were
    return ids;
}

class DAG {
    template <class F>
    decltype(auto) visit(F&& f) const {
        return std::visit([&](auto& m) -> decltype(auto) { return f(*m); }, model_);
    }

  public:
    DAG(py::object n_inputs, py::object src, py::object dst, py::object weights, py::object outputs, py::object alpha,
        py::object activation, py::object biases);

    // A DAG over fresh copies of an MLP's arrays: nodes layer by layer, edges in row-major order of each W^{[t]}.
    static DAG from_mlp(py::handle net);

    std::size_t n_nodes() const { return n_nodes_; }
    std::size_t n_inputs() const { return n_inputs_; }
    std::size_t n_edges() const { return static_cast<std::size_t>(weights_.size()); }
    py::array src() const { return src_; }
    py::array dst() const { return dst_; }
    py::array outputs() const { return outputs_; }
    py::array weights() const { return weights_; }
    py::array alpha() const { return alpha_; }
    py::object biases() const { return biases_ ? py::object(*biases_) : py::object(py::none()); }
    py::tuple output_shape() const { return alpha_.ndim() == 2 ? py::tuple(py::make_tuple(alpha_.shape(1))) : py::tuple(); }
    py::dtype dtype() const { return dtype_ == DType::float32 ? py::dtype::of<float>() : py::dtype::of<double>(); }
    // The activation as given: one name for every node, or a tuple of one name per node.
    py::object activation() const;
    std::string repr() const {
        return "mlpgrad.DAG(n_nodes=" + std::to_string(n_nodes_) + ", n_inputs=" + std::to_string(n_inputs_) +
               ", n_edges=" + std::to_string(n_edges()) + ", n_outputs=" + std::to_string(alpha_.shape(0)) +
               ", dtype=" + dtype_name(dtype_) + ")";
    }
    py::tuple getstate() const {
        return py::make_tuple(1, n_inputs_, src_, dst_, weights_, outputs_, alpha_, activation(), biases());
    }

    py::object forward(py::handle x);
    py::object value_and_grad(py::handle x, py::handle dy, py::handle out);
    py::object forward_batch(py::handle X);
    py::object value_and_grad_batch(py::handle X, py::handle dy, py::handle out);
    py::object new_gradients(py::handle batch, py::handle x);

  private:
    template <class T>
    std::unique_ptr<DagModel<T>> make_model() const {
        auto ids = [](const py::array_t<std::int64_t>& a) {
            return mlpgrad::VectorView<const std::int64_t>{a.data(), static_cast<std::size_t>(a.size())};
        };
        const mlpgrad::VectorView<const T> w{static_cast<const T*>(weights_.data()), n_edges()};
        const mlpgrad::MatrixView<const T> alpha{static_cast<const T*>(alpha_.data()),
                                                 static_cast<std::size_t>(alpha_.shape(0)), output_dim()};
        const mlpgrad::VectorView<const T> b =
            biases_ ? mlpgrad::VectorView<const T>{static_cast<const T*>(biases_->data()),
                                                  static_cast<std::size_t>(biases_->size())}
                    : mlpgrad::VectorView<const T>{};
        // Node ids, a cycle, outputs: the core's own checks (std::invalid_argument -> ValueError).
        return std::make_unique<DagModel<T>>(
            mlpgrad::dag::Graph<T>(n_nodes_, n_inputs_, ids(src_), ids(dst_), w, ids(outputs_), alpha, activations_, b));
    }

    std::size_t output_dim() const { return alpha_.ndim() == 2 ? static_cast<std::size_t>(alpha_.shape(1)) : 1; }
    bool vector_output() const { return alpha_.ndim() == 2; }
    std::size_t work(std::size_t batch) const { return (n_edges() + n_nodes_) * (batch ? batch : 1); }

    void require_batch_fits(std::size_t batch, const char* what) const {
        if (batch > max_batch_)
            throw py::value_error(std::string(what) + " of " + std::to_string(batch) + " examples is too large for a DAG of " +
                                  std::to_string(n_nodes_) + " nodes: its buffers would exceed " +
                                  std::to_string(max_buffer_bytes) + " bytes (at most " + std::to_string(max_batch_) +
                                  " examples per call)");
    }

    template <class T>
    DagGradientsObject* check_out(DagModel<T>& m, py::handle out, std::optional<std::size_t> batch);
    void require_unchanged(const DagGradientsObject* out) const;
    template <class T>
    py::array_t<T> as_x(py::handle x) const;
    template <class T>
    py::array_t<T> as_dy(py::handle dy, std::optional<std::size_t> batch) const;
    template <class T>
    DagGradientsObject& out_or_new(DagModel<T>& m, py::object& out, std::optional<std::size_t> batch);
    template <class T>
    py::object new_gradients_impl(std::optional<std::size_t> batch, bool with_x);
    template <class T>
    py::object single_impl(DagModel<T>& m, py::handle x, py::handle dy, py::handle out, bool with_grad);
    template <class T>
    py::object batch_impl(DagModel<T>& m, py::handle X, py::handle dy, py::handle out, bool with_grad);

    std::size_t n_nodes_ = 0, n_inputs_ = 0;
    py::array_t<std::int64_t> src_, dst_, outputs_;
    py::array weights_, alpha_;
    std::optional<py::array> biases_;
    std::vector<ArrayGuard> guards_;  // weights_, alpha_, then biases_, as validated
    std::vector<mlpgrad::Activation> activations_;  // one, or one per node
    DType dtype_ = DType::float64;
    std::uint64_t id_ = 0;
    std::size_t max_batch_ = 0;
    std::variant<std::unique_ptr<DagModel<float>>, std::unique_ptr<DagModel<double>>> model_;
};

inline DAG::DAG(py::object n_inputs, py::object src, py::object dst, py::object weights, py::object outputs,
                py::object alpha, py::object activation, py::object biases) {
    if (!PyLong_Check(n_inputs.ptr()) || PyBool_Check(n_inputs.ptr()))
        throw py::type_error("n_inputs must be an int, got " + type_name(n_inputs));
    int overflow = 0;
    const long long n_in = PyLong_AsLongLongAndOverflow(n_inputs.ptr(), &overflow);
    if (n_in == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0 || n_in < 0 || static_cast<std::uint64_t>(n_in) > max_dag_count)
        throw py::value_error("n_inputs must be between 0 and " + std::to_string(max_dag_count) + ", got " +
                              text_of(n_inputs));
    n_inputs_ = static_cast<std::size_t>(n_in);
    src_ = as_node_ids(src, "src");
    dst_ = as_node_ids(dst, "dst");
    outputs_ = as_node_ids(outputs, "outputs");

    const char* why = "mlpgrad views the caller's weights and never copies them; pass np.asarray(w)";
    weights_ = require_ndarray(weights, "weights", why);
    alpha_ = require_ndarray(alpha, "alpha", why);
    dtype_ = float_dtype(weights_, "weights");
    require_ndim(weights_, 1, "weights", "(n_edges,)");
    require_layout(weights_, "weights");
    require_dtype(alpha_, dtype_, "alpha", "weights has");
    if (alpha_.ndim() != 1 && alpha_.ndim() != 2)
        throw py::value_error("alpha must be 1-D (n_outputs,) for a scalar output or 2-D (n_outputs, m) for m outputs, "
                              "got shape " + shape_string(alpha_));
    require_layout(alpha_, "alpha");
    if (!biases.is_none()) {
        biases_ = require_ndarray(biases, "biases", why);
        require_dtype(*biases_, dtype_, "biases", "weights has");
        require_ndim(*biases_, 1, "biases", "(n_nodes,)");
        require_layout(*biases_, "biases");
    }
    const auto E = static_cast<std::size_t>(weights_.size());
    if (static_cast<std::size_t>(src_.size()) != E || static_cast<std::size_t>(dst_.size()) != E)
        throw py::value_error("src has " + std::to_string(src_.size()) + " entries and dst " +
                              std::to_string(dst_.size()) + " but weights has " + std::to_string(E) +
                              "; expected one (src, dst, weight) per edge");
    if (static_cast<std::size_t>(outputs_.size()) != static_cast<std::size_t>(alpha_.shape(0)))
        throw py::value_error("outputs has " + std::to_string(outputs_.size()) + " nodes but alpha has shape " +
                              shape_string(alpha_) + "; expected one row of alpha per output node");
    // n_nodes: the inputs and every node an edge or an output names (negative ids are the core's to refuse).
    std::int64_t highest = -1;
    for (const auto* ids : {&src_, &dst_, &outputs_})
        for (py::ssize_t k = 0; k < ids->size(); ++k) highest = std::max(highest, ids->data()[k]);
    if (highest >= 0 && static_cast<std::uint64_t>(highest) >= max_dag_count)
        throw py::value_error("a node id is " + std::to_string(highest) + " but at most " +
                              std::to_string(max_dag_count) + " nodes are supported");
    n_nodes_ = std::max(n_inputs_, static_cast<std::size_t>(highest + 1));
    if (biases_ && static_cast<std::size_t>(biases_->size()) != n_nodes_)
        throw py::value_error("biases has shape " + shape_string(*biases_) + " but the graph has " +
                              std::to_string(n_nodes_) + " nodes (the inputs and every node src, dst and outputs "
                              "name); expected " + shape_string({n_nodes_}) + ", entries of input nodes unused");
    guards_.emplace_back(weights_, ArrayGuard::layout_flags);
    guards_.emplace_back(alpha_, ArrayGuard::layout_flags);
    if (biases_) guards_.emplace_back(*biases_, ArrayGuard::layout_flags);
    if (py::isinstance<py::str>(activation))
        activations_ = activation_list(activation, 1, "node", "nodes");
    else
        activations_ = activation_list(activation, n_nodes_, "node", "nodes");
    require_unchanged(nullptr);  // a user-defined activation sequence may have changed them since

    if (dtype_ == DType::float32)
        model_ = make_model<float>();
    else
        model_ = make_model<double>();
    static std::atomic<std::uint64_t> next_id{1};
    id_ = next_id++;
    // A batch tape holds 4 rows of B values per node (dag/tape.hpp); one example's, 4 per node plus m.
    std::size_t per_example = 0;
    if (!checked_mul(4 * (dtype_ == DType::float32 ? 4 : 8), std::max<std::size_t>(n_nodes_, 1), per_example))
        throw py::value_error("the DAG is too large");
    max_batch_ = max_buffer_bytes / per_example;
}

inline py::object DAG::activation() const {
    auto name = [](mlpgrad::Activation a) { return py::str(std::string(mlpgrad::name(a))); };
    if (activations_.size() == 1) return name(activations_[0]);
    py::tuple names(activations_.size());
    for (std::size_t v = 0; v < activations_.size(); ++v) names[v] = name(activations_[v]);
    return std::move(names);
}

inline void DAG::require_unchanged(const DagGradientsObject* out) const {
    static const char* names[] = {"weights", "alpha", "biases"};
    for (std::size_t i = 0; i < guards_.size(); ++i)
        if (!guards_[i].unchanged())
            throw py::value_error(std::string(names[i]) + " was resized or reallocated after the DAG was built (its "
                                  "buffer, shape, dtype or layout changed); build a new DAG");
    if (out) out->require_unchanged();
}

}  // namespace mlpgrad_python
