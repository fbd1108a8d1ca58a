// mlpgrad.MLP's Python class: the fast-call method table (the per-call methods, __init__ and the pickling
// hooks), the read-only properties and __repr__. The object is mlp_object.hpp, its calls mlp_calls.hpp.
#include "register_mlp.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <utility>

#include "fast_call.hpp"
#include "instances.hpp"
#include "mlp_calls.hpp"
#include "mlp_model_io.hpp"
#include "mlp_object.hpp"
#include "mlp_pickling.hpp"
#include "pickling.hpp"

namespace mlpgrad_python {
namespace {

// The per-call methods, in CPython's fast calling convention (fast_call.hpp says why).
FastSignature<1> forward_sig{"forward", {"x"}, 1, 1};
FastSignature<2> backward_sig{"backward", {"dy", "out"}, 1, 0};
FastSignature<3> value_and_grad_sig{"value_and_grad", {"x", "dy", "out"}, 2, 1};
FastSignature<1> forward_batch_sig{"forward_batch", {"X"}, 1, 1};
FastSignature<3> value_and_grad_batch_sig{"value_and_grad_batch", {"X", "dy", "out"}, 2, 1};
FastSignature<2> backward_batch_sig{"backward_batch", {"dy", "out"}, 1, 0};
FastSignature<2> new_gradients_sig{"new_gradients", {"batch", "x"}, 1, 0};
// The constructor too: one clear TypeError for a wrong keyword or argument count (not pybind11's overload
// listing with every weight printed), and no silent second __init__ (instances.hpp).
FastSignature<5> mlp_init_sig{"MLP", {"weights", "alpha", "activation", "biases", "output_bias"}, 3, 2};

PyObject* mlp_init(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 5> a;
        mlp_init_sig.parse(args, nargs, kwnames, a);
        construct_in_place<MLP>(self, "MLP.__init__", [&] {
            return MLP(borrowed_or(a[0], {}), borrowed_or(a[1], {}), borrowed_or(a[2], py::str("relu")),
                       borrowed_or(a[3], py::none()), borrowed_or(a[4], py::none()));
        });
        return py::none();
    });
}

template <std::size_t N, class F>
PyObject* call_mlp(FastSignature<N>& sig, PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                   F&& method) {
    return fast_call([&] {
        std::array<PyObject*, N> a;
        sig.parse(args, nargs, kwnames, a);
        return method(self_of<MLP>(self), a);
    });
}

PyObject* forward(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_mlp(forward_sig, self, args, nargs, kwnames, [](MLP& net, auto& a) { return net.forward(a[0]); });
}
PyObject* backward(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_mlp(backward_sig, self, args, nargs, kwnames,
                    [](MLP& net, auto& a) { return net.backward(a[0], a[1]); });
}
PyObject* value_and_grad(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_mlp(value_and_grad_sig, self, args, nargs, kwnames,
                    [](MLP& net, auto& a) { return net.value_and_grad(a[0], a[1], a[2]); });
}
PyObject* forward_batch(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_mlp(forward_batch_sig, self, args, nargs, kwnames,
                    [](MLP& net, auto& a) { return net.forward_batch(a[0]); });
}
PyObject* value_and_grad_batch(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_mlp(value_and_grad_batch_sig, self, args, nargs, kwnames,
                    [](MLP& net, auto& a) { return net.value_and_grad_batch(a[0], a[1], a[2]); });
}
PyObject* new_gradients(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_mlp(new_gradients_sig, self, args, nargs, kwnames,
                    [](MLP& net, auto& a) { return net.new_gradients(a[0], a[1]); });
}
PyObject* backward_batch(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_mlp(backward_batch_sig, self, args, nargs, kwnames,
                    [](MLP& net, auto& a) { return net.backward_batch(a[0], a[1]); });
}

// Docstrings start with a text signature so that help() and inspect.signature() show the arguments.
PyMethodDef mlp_methods[] = {
    {"forward", as_cfunction(&forward), fast_call_flags,
     "forward($self, x, /)\n--\n\nŷ for one example x of shape (K_0,): a float for one output, an array of shape "
     "(m,) for m; records u^t and z^t (per thread) for backward()."},
    {"backward", as_cfunction(&backward), fast_call_flags,
     "backward($self, dy=1.0, *, out=None)\n--\n\nGradients of dyᵀŷ at this thread's last forward() (dy a number "
     "for one output, shape (m,) for m, default ones); written into `out` (a Gradients) if given, and returned."},
    {"value_and_grad", as_cfunction(&value_and_grad), fast_call_flags,
     "value_and_grad($self, x, dy=1.0, *, out=None)\n--\n\n(ŷ, gradients of dyᵀŷ) for one example x of shape (K_0,) "
     "(dy a number for one output, shape (m,) for m, default ones); the gradients are written into `out` (a "
     "Gradients) if given, which is then the object returned."},
    {"forward_batch", as_cfunction(&forward_batch), fast_call_flags,
     "forward_batch($self, X, /)\n--\n\nŷ for each row of X (B, K_0), as an array of shape (B,) for one output, "
     "(B, m) for m; records the pass (per thread) for backward_batch()."},
    {"value_and_grad_batch", as_cfunction(&value_and_grad_batch), fast_call_flags,
     "value_and_grad_batch($self, X, dy=None, *, out=None)\n--\n\n(ŷ of shape (B,) or (B, m), gradients of Σ_b "
     "dy_bᵀŷ_b) for the rows of X (B, K_0); dy, shaped like ŷ, defaults to ones. Weight, alpha and bias gradients "
     "are summed over the batch; out.x row b is dy_bᵀ dŷ_b/dx_b (skipped when out has no x: "
     "net.new_gradients(batch=B, x=False))."},
    {"backward_batch", as_cfunction(&backward_batch), fast_call_flags,
     "backward_batch($self, dy=None, *, out=None)\n--\n\nGradients of Σ_b dy_bᵀŷ_b at this thread's last "
     "forward_batch(X), without a second forward pass; dy, shaped like ŷ ((B,) or (B, m)), defaults to ones. Equal, "
     "bit for bit, to value_and_grad_batch(X, dy, out=out)[1]."},
    {"new_gradients", as_cfunction(&new_gradients), fast_call_flags,
     "new_gradients($self, batch=None, *, x=True)\n--\n\nZeroed Gradients for this network (batch=B: x of shape "
     "(B, K_0) and no z/u). x=False (with batch=B) makes parameter-only gradients: .x is None, the batch calls skip "
     "the input gradient and fill them for any batch size."},
    {"__init__", as_cfunction(&mlp_init), fast_call_flags,
     "__init__($self, weights, alpha, activation='relu', *, biases=None, output_bias=None)\n--\n\nViews (never "
     "copies) the weight arrays, alpha, the biases and the output bias; checks them once. An MLP never changes once "
     "made: a second __init__ raises TypeError."},
    {"__getstate__", as_cfunction(&mlp_getstate), fast_call_flags,
     "__getstate__($self, /)\n--\n\n(1, weights tuple, alpha, activation names tuple), pickle format version 1, for "
     "a network without biases or output bias and with a 1-D alpha; otherwise (2, weights tuple, alpha, activation "
     "names tuple, biases tuple or None, output_bias or None), format version 2."},
    {"__setstate__", as_cfunction(&mlp_setstate), fast_call_flags,
     "__setstate__($self, state, /)\n--\n\nBuilds the network from a version-1 or version-2 state, with the checks "
     "of MLP(...)."},
    {"__reduce__", as_cfunction(&mlp_reduce), fast_call_flags, "__reduce__($self, /)\n--\n\nPickling support."},
    {"save", as_cfunction(&mlp_save), fast_call_flags,
     "save($self, path)\n--\n\nWrites the network to `path` (written as given, or a binary file object) as a plain "
     ".npz archive that numpy.load(path, allow_pickle=False) reads: widths, activations, weights[t], alpha, "
     "biases[t], output_bias and a format version (see mlpgrad.model_io). MLP.load(path) reads it back."},
    {"__reduce_ex__", as_cfunction(&mlp_reduce_ex), fast_call_flags,
     "__reduce_ex__($self, protocol, /)\n--\n\nPickling support, the same reduction for every protocol."},
};

// Class methods: they receive the class (MLP or a subclass) and build an instance of it.
PyMethodDef mlp_class_methods[] = {
    {"random", as_cfunction(&mlp_random), fast_call_flags,
     "random($cls, widths, activation='relu', *, outputs=None, biases=True, dtype='float64', seed=None)\n--\n\n"
     "A new network of widths (K_0, ..., K_T): He-normal weights for ReLU-like activations (relu, leaky_relu, "
     "softplus), Glorot-uniform for the others and for alpha; zero biases and output bias (none with biases=False). "
     "outputs=None: one output (alpha (K_T,)); outputs=m: alpha (K_T, m). dtype: numpy.float64 (the default) or "
     "numpy.float32. seed: None, an int or a numpy.random.Generator (numpy.random.default_rng). The "
     "exact distributions: mlpgrad.model_io."},
    {"load", as_cfunction(&mlp_load), fast_call_flags,
     "load($cls, path)\n--\n\nThe network net.save(path) wrote; ValueError for another format version, missing "
     "entries or inconsistent shapes (never unpickles anything)."},
};

}  // namespace

void register_mlp(py::module_& m) {
    py::class_<MLP> cls(m, "MLP", R"doc(
A dense network y = alphaᵀ σ(W[T-1] … σ(W[0] x + b[0]) … + b[T-1]) + beta over the caller's NumPy arrays.

``weights[t]`` has shape (K_{t+1}, K_t); ``alpha`` has shape (K_T,) for one output (ŷ a float) or (K_T, m) for
m outputs (ŷ an array of shape (m,)). ``biases`` (keyword, optional) is one array of shape (K_{t+1},) per layer;
``output_bias`` (keyword, optional) beta has ŷ's shape: 0-d for one output, (m,) for m. All are viewed, never
copied: an in-place update such as ``W -= lr * dW`` is seen by the next call. ``activation`` is one name for every
layer or a sequence of one name per layer (see ``mlpgrad.ACTIVATIONS``).
)doc");
    cls.def_property_readonly("widths", initialized(&MLP::widths), "(K_0, ..., K_T).")
        .def_property_readonly("depth", initialized(&MLP::depth), "T, the number of weight matrices.")
        .def_property_readonly("dtype", initialized(&MLP::dtype), "float32 or float64: the weights' dtype.")
        .def_property_readonly("activations", initialized(&MLP::activations), "One activation name per layer.")
        .def_property_readonly("weights", initialized(&MLP::weights), "The very weight arrays passed in (not copies).")
        .def_property_readonly("alpha", initialized(&MLP::alpha), "The very alpha array passed in (not a copy).")
        .def_property_readonly("biases", initialized(&MLP::biases),
                               "A list of the very bias arrays passed in (b^1..b^T), or None for a network without biases.")
        .def_property_readonly("output_bias", initialized(&MLP::output_bias),
                               "The very output-bias array passed in (beta, shaped like ŷ), or None.")
        .def_property_readonly("output_shape", initialized(&MLP::output_shape),
                               "ŷ's shape for one example: () for one output (1-D alpha), (m,) for m (2-D alpha).")
        .def_property_readonly(
            "z", [](py::handle self) { return self_of<MLP>(self.ptr()).recorded(true); },
            "z^0..z^T of this thread's last forward pass, as read-only snapshot arrays.")
        .def_property_readonly(
            "u", [](py::handle self) { return self_of<MLP>(self.ptr()).recorded(false); },
            "u^1..u^T of this thread's last forward pass, as read-only snapshot arrays.")
        .def("__repr__", initialized(&MLP::repr));

    forward_sig.intern();
    backward_sig.intern();
    value_and_grad_sig.intern();
    forward_batch_sig.intern();
    value_and_grad_batch_sig.intern();
    new_gradients_sig.intern();
    backward_batch_sig.intern();
    mlp_init_sig.intern();
    getstate_sig.intern();
    setstate_sig.intern();
    reduce_sig.intern();
    reduce_ex_sig.intern();
    for (auto& def : mlp_methods) add_fast_method(cls, def);
    for (auto& def : mlp_class_methods) add_fast_classmethod(cls, def);
    mlp_reduce_descriptor = py::object(cls.attr("__dict__")["__reduce__"]).release().ptr();  // kept for good
    finish_class<MLP>(cls, "mlpgrad.MLP", /*own_layout=*/true);
}

}  // namespace mlpgrad_python
