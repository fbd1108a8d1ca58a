// mlpgrad._core: the Python binding, in one place. MLP views the caller's NumPy weights (never copies
// them), writes gradients into caller arrays, and releases the GIL while the core computes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/mlpgrad.hpp>

#include "fast_call.hpp"
#include "gradients_object.hpp"
#include "instances.hpp"
#include "mlp_object.hpp"
#include "optim_functions.hpp"
#include "pickling.hpp"

namespace mlpgrad_python {
namespace {

// The per-call methods, in CPython's fast calling convention (fast_call.hpp says why).
FastSignature<1> forward_sig{"forward", {"x"}, 1, 1};
FastSignature<2> backward_sig{"backward", {"dy", "out"}, 1, 0};
FastSignature<3> value_and_grad_sig{"value_and_grad", {"x", "dy", "out"}, 2, 1};
FastSignature<1> forward_batch_sig{"forward_batch", {"X"}, 1, 1};
FastSignature<3> value_and_grad_batch_sig{"value_and_grad_batch", {"X", "dy", "out"}, 2, 1};
FastSignature<1> new_gradients_sig{"new_gradients", {"batch"}, 1, 0};
// Constructors too: one clear TypeError for a wrong keyword or argument count (not pybind11's overload
// listing with every weight printed), and no silent second __init__ (instances.hpp).
FastSignature<3> mlp_init_sig{"MLP", {"weights", "alpha", "activation"}, 3, 2};
FastSignature<5> gradients_init_sig{"Gradients", {"weights", "alpha", "x", "z", "u"}, 5, 3};

py::object borrowed_or(PyObject* arg, py::object fallback) {
    return arg ? py::reinterpret_borrow<py::object>(arg) : std::move(fallback);
}

PyObject* mlp_init(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 3> a;
        mlp_init_sig.parse(args, nargs, kwnames, a);
        construct_in_place<MLP>(self, "MLP.__init__", [&] {
            return MLP(borrowed_or(a[0], {}), borrowed_or(a[1], {}), borrowed_or(a[2], py::str("relu")));
        });
        return py::none();
    });
}

PyObject* gradients_init(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 5> a;
        gradients_init_sig.parse(args, nargs, kwnames, a);
        construct_in_place<GradientsObject>(self, "Gradients.__init__", [&] {
            return GradientsObject(borrowed_or(a[0], {}), borrowed_or(a[1], {}), borrowed_or(a[2], {}),
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
                    [](MLP& net, auto& a) { return net.new_gradients(a[0]); });
}

template <class F>
PyCFunction fast(F* f) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

constexpr int fast_flags = METH_FASTCALL | METH_KEYWORDS;
// Docstrings start with a text signature so that help() and inspect.signature() show the arguments.
PyMethodDef fast_methods[] = {
    {"forward", fast(&forward), fast_flags,
     "forward($self, x, /)\n--\n\nŷ for one example x of shape (K_0,); records u^t and z^t (per thread) for backward()."},
    {"backward", fast(&backward), fast_flags,
     "backward($self, dy=1.0, *, out=None)\n--\n\nGradients of dy·ŷ at this thread's last forward(); written into "
     "`out` (a Gradients) if given, and returned."},
    {"value_and_grad", fast(&value_and_grad), fast_flags,
     "value_and_grad($self, x, dy=1.0, *, out=None)\n--\n\n(ŷ, gradients of dy·ŷ) for one example x of shape (K_0,); "
     "the gradients are written into `out` (a Gradients) if given, which is then the object returned."},
    {"forward_batch", fast(&forward_batch), fast_flags,
     "forward_batch($self, X, /)\n--\n\nŷ for each row of X (B, K_0), as an array of shape (B,)."},
    {"value_and_grad_batch", fast(&value_and_grad_batch), fast_flags,
     "value_and_grad_batch($self, X, dy=None, *, out=None)\n--\n\n(ŷ of shape (B,), gradients of Σ_b dy_b·ŷ_b) for "
     "the rows of X (B, K_0); dy (B,) defaults to ones. Weight and alpha gradients are summed over the batch; "
     "out.x row b is dy_b·dŷ_b/dx_b."},
    {"new_gradients", fast(&new_gradients), fast_flags,
     "new_gradients($self, batch=None)\n--\n\nZeroed Gradients for this network (batch=B: x of shape (B, K_0) and no "
     "z/u)."},
    {"__init__", fast(&mlp_init), fast_flags,
     "__init__($self, weights, alpha, activation='relu')\n--\n\nViews (never copies) the weight arrays and alpha; "
     "checks them once. An MLP never changes once made: a second __init__ raises TypeError."},
    {"__getstate__", fast(&mlp_getstate), fast_flags,
     "__getstate__($self, /)\n--\n\n(1, weights tuple, alpha, activation names tuple): pickle format version 1."},
    {"__setstate__", fast(&mlp_setstate), fast_flags,
     "__setstate__($self, state, /)\n--\n\nBuilds the network from a version-1 state, with the checks of MLP(...)."},
    {"__reduce__", fast(&mlp_reduce), fast_flags, "__reduce__($self, /)\n--\n\nPickling support."},
    {"__reduce_ex__", fast(&mlp_reduce_ex), fast_flags,
     "__reduce_ex__($self, protocol, /)\n--\n\nPickling support, the same reduction for every protocol."},
};

PyMethodDef gradients_methods[] = {
    {"__init__", fast(&gradients_init), fast_flags,
     "__init__($self, weights, alpha, x, z=None, u=None)\n--\n\nWraps (never copies) the caller's arrays, "
     "checked once. A Gradients never changes once made: a second __init__ raises TypeError."},
    {"__reduce__", fast(&gradients_reduce), fast_flags, "__reduce__($self, /)\n--\n\nRefuses: TypeError."},
    {"__reduce_ex__", fast(&gradients_reduce_ex), fast_flags,
     "__reduce_ex__($self, protocol, /)\n--\n\nRefuses under every protocol: TypeError."},
};

// Registers what instances.hpp needs to know about a bound class.
template <class Class>
void finish_class(py::handle cls, const char* name, bool own_layout) {
    Binding<Class>::type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    Binding<Class>::name = name;
    refuse_mixed_subclasses<Class>(cls);
    guard_instance_creation(Binding<Class>::type);
    if (own_layout) give_own_layout(Binding<Class>::type);
}

}  // namespace
}  // namespace mlpgrad_python

// Sub-interpreters are refused (ImportError) before pybind11 runs: on CPython 3.11 its module init deadlocks
// in one (PyGILState_Ensure takes the main interpreter's thread state, whose GIL this thread already holds),
// and pybind11's type registry and this module's cached objects (numpy.asarray, interned names, the method
// table) belong to the main interpreter. PYBIND11_MODULE's entry point is renamed here and called by the
// real PyInit__core below, which checks the interpreter first.
#define PyInit__core mlpgrad_pybind11_PyInit__core
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
        .def_property_readonly("weights", initialized(&GradientsObject::weights), "d/dW[t] for each layer, shaped like the weights.")
        .def_property_readonly("alpha", initialized(&GradientsObject::alpha), "d/d alpha, shape (K_T,).")
        .def_property_readonly("x", initialized(&GradientsObject::x),
                               "d/dx, shape (K_0,); for a batch (B, K_0), row b is dy_b * dŷ_b/dx_b.")
        .def_property_readonly("z", initialized(&GradientsObject::z), "d/dz^t for t = 0..T (z[0] equals x), or None for a batch.")
        .def_property_readonly("u", initialized(&GradientsObject::u), "d/du^t for t = 1..T (at index t-1), or None for a batch.")
        .def_property_readonly(
            "batch", [](py::handle self) -> py::object {
                const auto& g = self_of<GradientsObject>(self.ptr());
                return g.batch() ? py::object(py::int_(*g.batch())) : py::object(py::none());
            },
            "B for batch gradients, None for single-example gradients.")
        .def_property_readonly(
            "dtype", [](py::handle self) {
                const auto& g = self_of<GradientsObject>(self.ptr());
                return g.dtype() == DType::float32 ? py::dtype::of<float>() : py::dtype::of<double>();
            },
            "The arrays' dtype.")
        .def("__repr__", [](py::handle self) {
            const auto& g = self_of<GradientsObject>(self.ptr());
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
        .def_property_readonly("widths", initialized(&MLP::widths), "(K_0, ..., K_T).")
        .def_property_readonly("depth", initialized(&MLP::depth), "T, the number of weight matrices.")
        .def_property_readonly("dtype", initialized(&MLP::dtype), "float32 or float64: the weights' dtype.")
        .def_property_readonly("activations", initialized(&MLP::activations), "One activation name per layer.")
        .def_property_readonly("weights", initialized(&MLP::weights), "The very weight arrays passed in (not copies).")
        .def_property_readonly("alpha", initialized(&MLP::alpha), "The very alpha array passed in (not a copy).")
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
    mlp_init_sig.intern();
    gradients_init_sig.intern();
    getstate_sig.intern();
    setstate_sig.intern();
    reduce_sig.intern();
    reduce_ex_sig.intern();
    for (auto& def : fast_methods) add_fast_method(m.attr("MLP"), def);
    for (auto& def : gradients_methods) add_fast_method(m.attr("Gradients"), def);
    mlp_reduce_descriptor = py::object(m.attr("MLP").attr("__dict__")["__reduce__"]).release().ptr();  // kept for good
    finish_class<MLP>(m.attr("MLP"), "mlpgrad.MLP", /*own_layout=*/true);
    finish_class<GradientsObject>(m.attr("Gradients"), "mlpgrad.Gradients", /*own_layout=*/false);
    register_optim_functions(m);
}
#undef PyInit__core

extern "C" PYBIND11_EXPORT PyObject* PyInit__core() {
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "mlpgrad._core cannot be imported in a sub-interpreter (it keeps process-wide state "
                        "tied to the main interpreter); import mlpgrad in the main interpreter");
        return nullptr;
    }
    return mlpgrad_pybind11_PyInit__core();
}
