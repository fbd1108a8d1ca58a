// mlpgrad._core: the Python binding, in one place. MLP views the caller's NumPy weights (never copies
// them), writes gradients into caller arrays, and releases the GIL while the core computes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/mlpgrad.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <thread>
#include <unordered_map>

#include "checks.hpp"
#include "gradients_object.hpp"

namespace mlpgrad_python {
namespace {

using mlpgrad::Activation;

// Below this many multiply-adds a call is cheaper than releasing and re-taking the GIL.
constexpr std::size_t gil_release_threshold = 4096;

// Per-thread scratch: each Python thread gets its own tapes, so one MLP serves many threads at once and
// forward()/backward() pairs stay paired within a thread.
template <class T>
struct ThreadState {
    mlpgrad::Tape<T> tape;
    mlpgrad::BatchTape<T> batch_tape;
};

template <class T>
class Model {
  public:
    explicit Model(mlpgrad::Network<T> net) : net(std::move(net)) {}

    ThreadState<T>& state() {
        std::lock_guard<std::mutex> lock(mutex_);
        auto& slot = states_[std::this_thread::get_id()];
        if (!slot) slot = std::make_unique<ThreadState<T>>();
        return *slot;
    }
    // nullptr when this thread has not computed with the model yet.
    ThreadState<T>* find_state() {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = states_.find(std::this_thread::get_id());
        return it == states_.end() ? nullptr : it->second.get();
    }

    const mlpgrad::Network<T> net;

  private:
    std::mutex mutex_;
    std::unordered_map<std::thread::id, std::unique_ptr<ThreadState<T>>> states_;
};

// Releases the GIL for the lifetime of the object when the call is big enough to be worth it.
class MaybeReleaseGil {
  public:
    explicit MaybeReleaseGil(std::size_t work) {
        if (work >= gil_release_threshold) release_.emplace();
    }

  private:
    std::optional<py::gil_scoped_release> release_;
};

py::handle numpy_asarray() {
    static py::handle f = py::object(py::module_::import("numpy").attr("asarray")).release();  // leaked on purpose
    return f;
}

// A read-only input (x, X, dy) as a C-contiguous array of T: used as is when it already is one,
// otherwise converted once. Refuses what is not a real number.
template <class T>
py::array_t<T> as_input(py::handle obj, const std::string& what) {
    if (py::isinstance<py::array>(obj)) {
        auto a = py::reinterpret_borrow<py::array>(obj);
        if (a.dtype().equal(py::dtype::of<T>()) && is_c_contiguous_and_aligned(a)) return py::array_t<T>(a);
    }
    py::array a;
    try {
        a = numpy_asarray()(obj);
    } catch (py::error_already_set& e) {
        throw py::type_error(what + " could not be read as an array of real numbers: " + std::string(e.what()));
    }
    const char kind = a.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
        throw py::type_error(what + " has dtype " + dtype_string(a) + "; expected real numbers");
    return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

double as_real(py::handle obj, const char* what) {
    if (PyComplex_Check(obj.ptr()) || !PyNumber_Check(obj.ptr()) || py::isinstance<py::array>(obj))
        throw py::type_error(std::string(what) + " must be a real number, got " + type_name(obj));
    const double v = PyFloat_AsDouble(obj.ptr());
    if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return v;
}

template <class T>
py::array_t<T> zeros(std::vector<py::ssize_t> shape) {
    py::array_t<T> a(shape);
    if (a.size()) std::memset(a.mutable_data(), 0, static_cast<std::size_t>(a.nbytes()));
    return a;
}

template <class T>
py::array_t<T> read_only_copy(mlpgrad::VectorView<const T> v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size), v.data);
    a.attr("flags").attr("writeable") = false;
    return a;
}

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
        for (std::size_t t = 0; t < py::len(weights); ++t)
            weights_.push_back(require_ndarray(weights[py::int_(t)], "weights[" + std::to_string(t) + "]", why));
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
        activations_ = parse_activations(activation, weights_.size());

        if (dtype_ == DType::float32)
            model_ = make_model<float>();
        else
            model_ = make_model<double>();
        static std::atomic<std::uint64_t> next_id{1};
        id_ = next_id++;
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

    double forward(py::handle x) {
        return visit([&](auto& m) { return forward_impl(m, x); });
    }
    py::list recorded(bool want_z) {
        return visit([&](auto& m) { return recorded_impl(m, want_z); });
    }
    py::object backward(py::handle dy, py::object out) {
        return visit([&](auto& m) { return backward_impl(m, dy, out); });
    }
    py::tuple value_and_grad(py::handle x, py::handle dy, py::object out) {
        return visit([&](auto& m) { return value_and_grad_impl(m, x, dy, out); });
    }
    py::object new_gradients(py::object batch) {
        return visit([&](auto& m) { return new_gradients_impl(m, batch); });
    }
    py::array forward_batch(py::handle X) {
        return visit([&](auto& m) { return py::array(batch_impl(m, X, py::none(), py::none(), false)[0]); });
    }
    py::tuple value_and_grad_batch(py::handle X, py::handle dy, py::object out) {
        return visit([&](auto& m) { return batch_impl(m, X, dy, out, true); });
    }

    py::tuple getstate() const {
        return py::make_tuple(1, py::tuple(weights()), alpha_, activations());
    }
    std::string repr() const {
        return "mlpgrad.MLP(widths=" + py::str(widths()).cast<std::string>() +
               ", activations=" + py::str(activations()).cast<std::string>() + ", dtype=" + dtype_name(dtype_) + ")";
    }

  private:
    static std::vector<Activation> parse_activations(py::handle activation, std::size_t depth) {
        auto parse = [](py::handle name, const std::string& what) {
            if (!py::isinstance<py::str>(name))
                throw py::type_error(what + " must be an activation name (str), got " + type_name(name));
            try {
                return mlpgrad::parse_activation(name.cast<std::string>());
            } catch (const std::invalid_argument& e) {
                throw py::value_error(what + ": " + e.what());
            }
        };
        if (py::isinstance<py::str>(activation))
            return std::vector<Activation>(depth, parse(activation, "activation"));
        if (!py::isinstance<py::sequence>(activation))
            throw py::type_error("activation must be a name (str) or a sequence of one name per layer, got " +
                                 type_name(activation));
        auto seq = py::reinterpret_borrow<py::sequence>(activation);
        if (seq.size() != depth)
            throw py::value_error("activation has " + std::to_string(seq.size()) + " names but the network has " +
                                  std::to_string(depth) + " layers");
        std::vector<Activation> out;
        for (std::size_t t = 0; t < depth; ++t) out.push_back(parse(seq[t], "activation[" + std::to_string(t) + "]"));
        return out;
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

    std::size_t work(std::size_t batch) const {
        return visit([&](auto& m) { return (m.net.edge_count() + m.net.width(0)) * (batch ? batch : 1); });
    }

    // The GradientsObject behind `out`, checked against this network: TypeError/ValueError, before any write.
    template <class T>
    GradientsObject* check_out(Model<T>& m, py::handle out, std::optional<std::size_t> batch) {
        if (out.is_none()) return nullptr;
        if (!py::isinstance<GradientsObject>(out))
            throw py::type_error("out must be a mlpgrad.Gradients (from net.new_gradients()), got " + type_name(out));
        auto* g = out.cast<GradientsObject*>();
        if (g->dtype() != dtype_)
            throw py::type_error(std::string("out holds ") + dtype_name(g->dtype()) + " arrays but the network is " +
                                 dtype_name(dtype_));
        if (g->batch().has_value() != batch.has_value())
            throw py::value_error(batch ? "out holds single-example gradients; value_and_grad_batch needs "
                                          "net.new_gradients(batch=B)"
                                        : "out holds batch gradients (2-D out.x); this call needs net.new_gradients()");
        if (batch)
            mlpgrad::require_fits(m.net, g->views<T>().batch, *batch);
        else
            mlpgrad::require_fits(m.net, g->views<T>().single);
        g->require_still_writeable();
        if (g->checked_against != id_) {
            std::vector<NamedArray> inputs;
            for (std::size_t t = 0; t < weights_.size(); ++t) inputs.push_back({"weights[" + std::to_string(t) + "]", weights_[t]});
            inputs.push_back({"alpha", alpha_});
            require_disjoint(g->named_arrays(), inputs);
            g->checked_against = id_;
        }
        return g;
    }

    template <class T>
    py::array_t<T> as_x(Model<T>& m, py::handle x) {
        auto a = as_input<T>(x, "x");
        if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != m.net.width(0))
            throw py::value_error("x has shape " + shape_string(a) + " but the network expects " +
                                  shape_string({m.net.width(0)}));
        return a;
    }

    template <class T>
    double forward_impl(Model<T>& m, py::handle x) {
        auto xa = as_x(m, x);
        auto& tape = m.state().tape;
        MaybeReleaseGil gil(work(0));
        return mlpgrad::forward(m.net, {xa.data(), m.net.width(0)}, tape);
    }

    // Every argument is checked before anything runs, so a bad one leaves the tape and `out` untouched.
    template <class T>
    py::tuple value_and_grad_impl(Model<T>& m, py::handle x, py::handle dy_obj, py::object out) {
        const T dy = static_cast<T>(as_real(dy_obj, "dy"));
        auto xa = as_x(m, x);
        GradientsObject* g = check_out(m, out, std::nullopt);
        if (!g) {
            out = new_gradients_impl(m, py::none());
            g = out.cast<GradientsObject*>();
        }
        auto& tape = m.state().tape;
        double yhat;
        {
            MaybeReleaseGil gil(work(0));
            yhat = mlpgrad::value_and_grad(m.net, {xa.data(), m.net.width(0)}, tape, dy, g->views<T>().single);
        }
        return py::make_tuple(yhat, out);
    }

    template <class T>
    py::list recorded_impl(Model<T>& m, bool want_z) {
        ThreadState<T>* s = m.find_state();
        if (!s || !s->tape.recorded())
            throw std::runtime_error("no forward pass recorded in this thread yet; call net.forward(x) first");
        py::list l;
        const std::size_t T_ = m.net.depth();
        if (want_z)
            for (std::size_t t = 0; t <= T_; ++t) l.append(read_only_copy<T>(std::as_const(s->tape).z(t)));
        else
            for (std::size_t t = 1; t <= T_; ++t) l.append(read_only_copy<T>(std::as_const(s->tape).u(t)));
        return l;
    }

    template <class T>
    py::object backward_impl(Model<T>& m, py::handle dy_obj, py::object out) {
        const T dy = static_cast<T>(as_real(dy_obj, "dy"));
        GradientsObject* g = check_out(m, out, std::nullopt);
        ThreadState<T>* s = m.find_state();
        if (!s || !s->tape.recorded())
            throw std::runtime_error("backward() needs a forward pass first: call net.forward(x) in this thread");
        if (!g) {
            out = new_gradients_impl(m, py::none());
            g = out.cast<GradientsObject*>();
        }
        const auto& view = g->views<T>().single;
        {
            MaybeReleaseGil gil(work(0));
            mlpgrad::backward(m.net, s->tape, dy, view);
        }
        return out;
    }

    template <class T>
    py::object new_gradients_impl(Model<T>& m, py::object batch_obj) {
        std::optional<std::size_t> batch;
        if (!batch_obj.is_none()) {
            if (!py::isinstance<py::int_>(batch_obj) || py::isinstance<py::bool_>(batch_obj))
                throw py::type_error("batch must be an int or None, got " + type_name(batch_obj));
            const long long b = batch_obj.cast<long long>();
            if (b < 0) throw py::value_error("batch must be >= 0, got " + std::to_string(b));
            batch = static_cast<std::size_t>(b);
        }
        const auto& K = m.net.widths();
        const std::size_t T_ = m.net.depth();
        auto n = [](std::size_t v) { return static_cast<py::ssize_t>(v); };
        py::list weights;
        for (std::size_t t = 0; t < T_; ++t) weights.append(zeros<T>({n(K[t + 1]), n(K[t])}));
        py::object x = batch ? zeros<T>({n(*batch), n(K[0])}) : zeros<T>({n(K[0])});
        py::object z = py::none(), u = py::none();
        if (!batch) {
            py::list zl, ul;
            for (std::size_t t = 0; t <= T_; ++t) zl.append(zeros<T>({n(K[t])}));
            for (std::size_t t = 1; t <= T_; ++t) ul.append(zeros<T>({n(K[t])}));
            z = zl;
            u = ul;
        }
        return py::cast(GradientsObject(weights, zeros<T>({n(K[T_])}), x, z, u));
    }

    template <class T>
    py::tuple batch_impl(Model<T>& m, py::handle X_obj, py::handle dy_obj, py::object out, bool with_grad) {
        auto X = as_input<T>(X_obj, "X");
        if (X.ndim() != 2 || static_cast<std::size_t>(X.shape(1)) != m.net.width(0))
            throw py::value_error("X has shape " + shape_string(X) + " but the network expects (B, " +
                                  std::to_string(m.net.width(0)) + ")");
        const std::size_t B = static_cast<std::size_t>(X.shape(0));
        py::array_t<T> dy;
        GradientsObject* g = nullptr;
        if (with_grad) {
            if (dy_obj.is_none()) {
                dy = py::array_t<T>(static_cast<py::ssize_t>(B));
                std::fill(dy.mutable_data(), dy.mutable_data() + B, T(1));
            } else {
                dy = as_input<T>(dy_obj, "dy");
                if (dy.ndim() != 1 || static_cast<std::size_t>(dy.shape(0)) != B)
                    throw py::value_error("dy has shape " + shape_string(dy) + " but X holds " + std::to_string(B) +
                                          " examples; expected " + shape_string({B}));
            }
            g = check_out(m, out, B);
            if (!g) {
                out = new_gradients_impl(m, py::int_(B));
                g = out.cast<GradientsObject*>();
            }
        }
        py::array_t<T> yhat(static_cast<py::ssize_t>(B));
        auto& tape = m.state().batch_tape;
        {
            MaybeReleaseGil gil(work(B));
            mlpgrad::MatrixView<const T> Xv{X.data(), B, m.net.width(0)};
            mlpgrad::forward_batch(m.net, Xv, tape, mlpgrad::VectorView<T>{yhat.mutable_data(), B});
            if (g) mlpgrad::backward_batch(m.net, tape, mlpgrad::VectorView<const T>{dy.data(), B}, g->views<T>().batch);
        }
        return with_grad ? py::tuple(py::make_tuple(yhat, out)) : py::tuple(py::make_tuple(yhat));
    }

    std::vector<py::array> weights_;
    py::array alpha_;
    std::vector<Activation> activations_;
    DType dtype_ = DType::float64;
    std::uint64_t id_ = 0;
    std::variant<std::unique_ptr<Model<float>>, std::unique_ptr<Model<double>>> model_;
};

}  // namespace
}  // namespace mlpgrad_python

PYBIND11_MODULE(_core, m) {
    using namespace mlpgrad_python;
    namespace py = pybind11;
    m.doc() = "mlpgrad's compiled core: backpropagation for dense networks on NumPy buffers, without copies.";
    m.attr("__version__") = std::to_string(MLPGRAD_VERSION_MAJOR) + "." + std::to_string(MLPGRAD_VERSION_MINOR) + "." +
                            std::to_string(MLPGRAD_VERSION_PATCH);
    py::tuple names(mlpgrad::activation_names.size());
    for (std::size_t i = 0; i < names.size(); ++i) names[i] = py::str(std::string(mlpgrad::activation_names[i]));
    m.attr("ACTIVATIONS") = names;

    py::class_<GradientsObject>(m, "Gradients", R"doc(
Gradient buffers: NumPy arrays that the backward pass writes into.

Get zeroed ones from ``net.new_gradients()`` (or ``net.new_gradients(batch=B)``), or wrap arrays of your own
with ``Gradients(weights, alpha, x, z=None, u=None)`` (they are checked once here: one float dtype, C-contiguous,
writeable, shapes that chain, no two overlapping) and pass the object as ``out=`` to write gradients in place.
)doc")
        .def(py::init<py::object, py::object, py::object, py::object, py::object>(), py::arg("weights"),
             py::arg("alpha"), py::arg("x"), py::arg("z") = py::none(), py::arg("u") = py::none())
        .def_property_readonly("weights", &GradientsObject::weights, "d/dW[t] for each layer, shaped like the weights.")
        .def_property_readonly("alpha", &GradientsObject::alpha, "d/d alpha, shape (K_T,).")
        .def_property_readonly("x", &GradientsObject::x,
                               "d/dx, shape (K_0,); for a batch (B, K_0), row b is dy_b * dŷ_b/dx_b.")
        .def_property_readonly("z", &GradientsObject::z, "d/dz^t for t = 0..T (z[0] equals x), or None for a batch.")
        .def_property_readonly("u", &GradientsObject::u, "d/du^t for t = 1..T (at index t-1), or None for a batch.")
        .def_property_readonly(
            "batch", [](const GradientsObject& g) -> py::object {
                return g.batch() ? py::object(py::int_(*g.batch())) : py::object(py::none());
            },
            "B for batch gradients, None for single-example gradients.")
        .def_property_readonly(
            "dtype", [](const GradientsObject& g) {
                return g.dtype() == DType::float32 ? py::dtype::of<float>() : py::dtype::of<double>();
            },
            "The arrays' dtype.")
        .def("__repr__", [](const GradientsObject& g) {
            std::string s = "mlpgrad.Gradients(widths=" + shape_string(g.widths()) + ", dtype=" + dtype_name(g.dtype());
            if (g.batch()) s += ", batch=" + std::to_string(*g.batch());
            return s + ")";
        });

    py::class_<MLP>(m, "MLP", R"doc(
A dense network y = alphaᵀ σ(W[T-1] … σ(W[0] x)) over the caller's NumPy arrays.

``weights[t]`` has shape (K_{t+1}, K_t); ``alpha`` has shape (K_T,). Both are viewed, never copied: an in-place
update such as ``W -= lr * dW`` is seen by the next call. ``activation`` is one name for every layer or a
sequence of one name per layer (see ``mlpgrad.ACTIVATIONS``).
)doc")
        .def(py::init<py::object, py::object, py::object>(), py::arg("weights"), py::arg("alpha"),
             py::arg("activation") = "relu")
        .def_property_readonly("widths", &MLP::widths, "(K_0, ..., K_T).")
        .def_property_readonly("depth", &MLP::depth, "T, the number of weight matrices.")
        .def_property_readonly("dtype", &MLP::dtype, "float32 or float64: the weights' dtype.")
        .def_property_readonly("activations", &MLP::activations, "One activation name per layer.")
        .def_property_readonly("weights", &MLP::weights, "The very weight arrays passed in (not copies).")
        .def_property_readonly("alpha", &MLP::alpha, "The very alpha array passed in (not a copy).")
        .def("forward", &MLP::forward, py::arg("x"),
             "ŷ for one example x of shape (K_0,); records u^t and z^t (per thread) for backward().")
        .def_property_readonly(
            "z", [](MLP& self) { return self.recorded(true); },
            "z^0..z^T of this thread's last forward pass, as read-only snapshot arrays.")
        .def_property_readonly(
            "u", [](MLP& self) { return self.recorded(false); },
            "u^1..u^T of this thread's last forward pass, as read-only snapshot arrays.")
        .def("backward", &MLP::backward, py::arg("dy") = 1.0, py::kw_only(), py::arg("out") = py::none(),
             "Gradients of dy·ŷ at this thread's last forward(); written into `out` if given (and returned).")
        .def("value_and_grad", &MLP::value_and_grad, py::arg("x"), py::arg("dy") = 1.0, py::kw_only(),
             py::arg("out") = py::none(), "(ŷ, gradients of dy·ŷ) for one example; gradients go into `out` if given.")
        .def("new_gradients", &MLP::new_gradients, py::arg("batch") = py::none(),
             "Zeroed Gradients for this network (batch=B: x of shape (B, K_0) and no z/u).")
        .def("forward_batch", &MLP::forward_batch, py::arg("X"), "ŷ for each row of X (B, K_0), shape (B,).")
        .def("value_and_grad_batch", &MLP::value_and_grad_batch, py::arg("X"), py::arg("dy") = py::none(),
             py::kw_only(), py::arg("out") = py::none(),
             "(ŷ of shape (B,), gradients of Σ_b dy_b·ŷ_b); dy defaults to ones.")
        .def("__repr__", &MLP::repr)
        .def(py::pickle([](const MLP& self) { return self.getstate(); },
                        [](py::tuple state) {
                            if (state.size() != 4 || !py::isinstance<py::int_>(state[0]) || state[0].cast<int>() != 1)
                                throw py::value_error("unsupported mlpgrad.MLP pickle state; expected format version 1");
                            return MLP(py::list(state[1]), state[2], state[3]);
                        }));
}
