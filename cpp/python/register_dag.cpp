// mlpgrad.DAG and mlpgrad.DAGGradients, the Python classes: fast-call method tables (the per-call methods,
// __init__, the pickling hooks), read-only properties and __repr__. The objects are dag_object.hpp and
// dag_gradients_object.hpp, the calls dag_calls.hpp.
#include "register_dag.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <string>

#include "dag_calls.hpp"
#include "dag_gradients_object.hpp"
#include "dag_object.hpp"
#include "fast_call.hpp"
#include "instances.hpp"
#include "mlp_pickling.hpp"
#include "pickling.hpp"

namespace mlpgrad_python {
namespace {

FastSignature<1> forward_sig{"forward", {"x"}, 1, 1};
FastSignature<3> value_and_grad_sig{"value_and_grad", {"x", "dy", "out"}, 2, 1};
FastSignature<1> forward_batch_sig{"forward_batch", {"X"}, 1, 1};
FastSignature<3> value_and_grad_batch_sig{"value_and_grad_batch", {"X", "dy", "out"}, 2, 1};
FastSignature<2> new_gradients_sig{"new_gradients", {"batch", "x"}, 1, 0};
FastSignature<1> from_mlp_sig{"from_mlp", {"net"}, 1, 1};
FastSignature<8> dag_init_sig{
    "DAG", {"n_inputs", "src", "dst", "weights", "outputs", "alpha", "activation", "biases"}, 7, 6};
FastSignature<0> dag_getstate_sig{"DAG.__getstate__", {}, 0, 0};
FastSignature<1> dag_setstate_sig{"DAG.__setstate__", {"state"}, 1, 1};
FastSignature<6> dag_gradients_init_sig{"DAGGradients", {"weights", "alpha", "x", "biases", "z", "u"}, 6, 2};

// The DAG's own __reduce__, to tell whether a subclass overrides it (set at import).
PyObject* dag_reduce_descriptor = nullptr;

DAG build_dag(PyObject* const* a) {
    return DAG(borrowed_or(a[0], {}), borrowed_or(a[1], {}), borrowed_or(a[2], {}), borrowed_or(a[3], {}),
               borrowed_or(a[4], {}), borrowed_or(a[5], {}), borrowed_or(a[6], py::str("relu")),
               borrowed_or(a[7], py::none()));
}

PyObject* dag_init(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 8> a;
        dag_init_sig.parse(args, nargs, kwnames, a);
        construct_in_place<DAG>(self, "DAG.__init__", [&] { return build_dag(a.data()); });
        return py::none();
    });
}

template <std::size_t N, class F>
PyObject* call_dag(FastSignature<N>& sig, PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                   F&& method) {
    return fast_call([&] {
        std::array<PyObject*, N> a;
        sig.parse(args, nargs, kwnames, a);
        return method(self_of<DAG>(self), a);
    });
}

PyObject* forward(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_dag(forward_sig, self, args, nargs, kwnames, [](DAG& d, auto& a) { return d.forward(a[0]); });
}
PyObject* value_and_grad(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_dag(value_and_grad_sig, self, args, nargs, kwnames,
                    [](DAG& d, auto& a) { return d.value_and_grad(a[0], a[1], a[2]); });
}
PyObject* forward_batch(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_dag(forward_batch_sig, self, args, nargs, kwnames,
                    [](DAG& d, auto& a) { return d.forward_batch(a[0]); });
}
PyObject* value_and_grad_batch(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_dag(value_and_grad_batch_sig, self, args, nargs, kwnames,
                    [](DAG& d, auto& a) { return d.value_and_grad_batch(a[0], a[1], a[2]); });
}
PyObject* new_gradients(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_dag(new_gradients_sig, self, args, nargs, kwnames,
                    [](DAG& d, auto& a) { return d.new_gradients(a[0], a[1]); });
}

// A staticmethod: the fast-call function ignores its (null) self.
PyObject* from_mlp(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 1> a;
        from_mlp_sig.parse(args, nargs, kwnames, a);
        return py::cast(DAG::from_mlp(a[0]));
    });
}

// Pickling: the state is (1, n_inputs, src, dst, weights, outputs, alpha, activation, biases), rebuilt by
// __setstate__ through the checks of DAG(...); the reduction is the one object.__reduce_ex__(2) gives, for
// every protocol (pickling.hpp says why).
PyObject* dag_getstate(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 0> a;
        dag_getstate_sig.parse(args, nargs, kwnames, a);
        return py::object(self_of<DAG>(self).getstate());
    });
}

PyObject* dag_setstate(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 1> a;
        dag_setstate_sig.parse(args, nargs, kwnames, a);
        PyObject* state = a[0];
        if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 9)
            throw py::type_error("DAG.__setstate__() argument state must be a tuple (1, n_inputs, src, dst, weights, "
                                 "outputs, alpha, activation, biases), got " + type_name(state));
        PyObject* version = PyTuple_GET_ITEM(state, 0);
        if (!PyLong_Check(version) || PyObject_RichCompareBool(version, py::int_(1).ptr(), Py_EQ) != 1)
            throw py::value_error("unsupported mlpgrad.DAG pickle state: format version " + text_of(version) +
                                  "; expected format version 1");
        construct_in_place<DAG>(self, "DAG.__setstate__", [&] {
            std::array<py::object, 8> held;  // (aligned_state_item: arrays from out-of-band buffers)
            std::array<PyObject*, 8> items;
            for (std::size_t i = 0; i < 8; ++i) {
                held[i] = aligned_state_item(PyTuple_GET_ITEM(state, static_cast<Py_ssize_t>(i + 1)));
                items[i] = held[i].ptr();
            }
            return build_dag(items.data());
        });
        return py::none();
    });
}

py::object dag_reduction(PyObject* self) {
    self_of<DAG>(self);  // TypeError for an uninitialised instance, before anything else
    return newobj_reduction(self);
}

PyObject* dag_reduce(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 0> a;
        reduce_sig.parse(args, nargs, kwnames, a);
        return dag_reduction(self);
    });
}

PyObject* dag_reduce_ex(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 1> a;
        reduce_ex_sig.parse(args, nargs, kwnames, a);
        return reduce_ex(self, a[0], dag_reduce_descriptor, [&] { return dag_reduction(self); });
    });
}

PyMethodDef dag_methods[] = {
    {"forward", as_cfunction(&forward), fast_call_flags,
     "forward($self, x, /)\n--\n\nŷ for one example x of shape (n_inputs,): a float, or an array of shape (m,) when "
     "alpha is 2-D (n_outputs, m)."},
    {"value_and_grad", as_cfunction(&value_and_grad), fast_call_flags,
     "value_and_grad($self, x, dy=1.0, *, out=None)\n--\n\n(ŷ, gradients of dy·ŷ) for one example (dy of shape (m,) "
     "for a vector output); written into `out` (a DAGGradients) if given, which is then the object returned."},
    {"forward_batch", as_cfunction(&forward_batch), fast_call_flags,
     "forward_batch($self, X, /)\n--\n\nŷ for each row of X (B, n_inputs): shape (B,), or (B, m) for a vector output."},
    {"value_and_grad_batch", as_cfunction(&value_and_grad_batch), fast_call_flags,
     "value_and_grad_batch($self, X, dy=None, *, out=None)\n--\n\n(ŷ, gradients of Σ_b dy_b·ŷ_b) for the rows of X; "
     "dy (B,) or (B, m) defaults to ones. Weight, alpha and bias gradients are summed over the batch; out.x row b "
     "is the gradient for example b (skipped when out has no x: dag.new_gradients(batch=B, x=False))."},
    {"new_gradients", as_cfunction(&new_gradients), fast_call_flags,
     "new_gradients($self, batch=None, *, x=True)\n--\n\nZeroed DAGGradients for this DAG (batch=B: x of shape "
     "(B, n_inputs), no z/u; x=False with batch=B: parameter-only gradients that fit any batch size)."},
    {"__init__", as_cfunction(&dag_init), fast_call_flags,
     "__init__($self, n_inputs, src, dst, weights, outputs, alpha, activation='relu', *, biases=None)\n--\n\n"
     "Checks the graph and lays it out once, in O(V + E); views (never copies) weights, alpha and biases."},
    {"__getstate__", as_cfunction(&dag_getstate), fast_call_flags,
     "__getstate__($self, /)\n--\n\n(1, n_inputs, src, dst, weights, outputs, alpha, activation, biases)."},
    {"__setstate__", as_cfunction(&dag_setstate), fast_call_flags,
     "__setstate__($self, state, /)\n--\n\nBuilds the DAG from a version-1 state, with the checks of DAG(...)."},
    {"__reduce__", as_cfunction(&dag_reduce), fast_call_flags, "__reduce__($self, /)\n--\n\nPickling support."},
    {"__reduce_ex__", as_cfunction(&dag_reduce_ex), fast_call_flags,
     "__reduce_ex__($self, protocol, /)\n--\n\nPickling support, the same reduction for every protocol."},
};

PyMethodDef from_mlp_def{"from_mlp", as_cfunction(&from_mlp), fast_call_flags,
                         "from_mlp(net, /)\n--\n\nThe same network as a DAG: nodes numbered layer by layer (the "
                         "inputs first), edges in row-major order of each weight matrix, layer by layer, with the "
                         "MLP's biases when it has them. The arrays are copies (the MLP's are separate matrices)."};

PyObject* dag_gradients_init(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 6> a;
        dag_gradients_init_sig.parse(args, nargs, kwnames, a);
        construct_in_place<DagGradientsObject>(self, "DAGGradients.__init__", [&] {
            return DagGradientsObject(borrowed_or(a[0], {}), borrowed_or(a[1], {}), borrowed_or(a[2], py::none()),
                                      borrowed_or(a[3], py::none()), borrowed_or(a[4], py::none()),
                                      borrowed_or(a[5], py::none()));
        });
        return py::none();
    });
}

[[noreturn]] void refuse_pickling(PyObject* self) {
    throw py::type_error(std::string("cannot pickle '") + Py_TYPE(self)->tp_name + "' object");
}

PyObject* dag_gradients_reduce(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 0> a;
        reduce_sig.parse(args, nargs, kwnames, a);
        refuse_pickling(self);
    });
}

PyObject* dag_gradients_reduce_ex(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 1> a;
        reduce_ex_sig.parse(args, nargs, kwnames, a);
        require_protocol(a[0]);
        refuse_pickling(self);
    });
}

PyMethodDef dag_gradients_methods[] = {
    {"__init__", as_cfunction(&dag_gradients_init), fast_call_flags,
     "__init__($self, weights, alpha, x=None, biases=None, z=None, u=None)\n--\n\nWraps (never copies) the caller's "
     "arrays, checked once; x=None makes parameter-only gradients for the batch calls."},
    {"__reduce__", as_cfunction(&dag_gradients_reduce), fast_call_flags, "__reduce__($self, /)\n--\n\nRefuses: TypeError."},
    {"__reduce_ex__", as_cfunction(&dag_gradients_reduce_ex), fast_call_flags,
     "__reduce_ex__($self, protocol, /)\n--\n\nRefuses under every protocol: TypeError."},
};

template <class Class, class R>
auto property(R (Class::*f)() const) {
    return initialized(f);
}

}  // namespace

void register_dag(py::module_& m) {
    py::class_<DagGradientsObject> grads(m, "DAGGradients", R"doc(
Gradient buffers of a DAG: NumPy arrays that its backward pass writes into.

Get zeroed ones from ``dag.new_gradients()`` (or ``batch=B``, or ``batch=B, x=False``), or wrap arrays of your own
with ``DAGGradients(weights, alpha, x=None, biases=None, z=None, u=None)`` and pass the object as ``out=``.
)doc");
    grads.def_property_readonly("weights", property(&DagGradientsObject::weights), "d/dw per edge, shape (n_edges,).")
        .def_property_readonly("alpha", property(&DagGradientsObject::alpha), "d/d alpha, shaped like alpha.")
        .def_property_readonly("x", property(&DagGradientsObject::x),
                               "d/dx, shape (n_inputs,), or (B, n_inputs) for a batch; None for parameter-only gradients.")
        .def_property_readonly("biases", property(&DagGradientsObject::biases),
                               "d/db per node, shape (n_nodes,) (0 at input nodes), or None when the DAG has no biases.")
        .def_property_readonly("z", property(&DagGradientsObject::z), "d/dz per node id (single example), or None.")
        .def_property_readonly("u", property(&DagGradientsObject::u),
                               "d/du per node id (single example; 0 at input nodes), or None.")
        .def_property_readonly(
            "batch", [](py::handle self) -> py::object {
                const auto& g = self_of<DagGradientsObject>(self.ptr());
                return g.batch() ? py::object(py::int_(*g.batch())) : py::object(py::none());
            },
            "B for batch gradients; None for single-example and parameter-only gradients.")
        .def_property_readonly(
            "dtype", [](py::handle self) {
                return self_of<DagGradientsObject>(self.ptr()).dtype() == DType::float32 ? py::dtype::of<float>()
                                                                                        : py::dtype::of<double>();
            },
            "The arrays' dtype.")
        .def("__repr__", [](py::handle self) {
            const auto& g = self_of<DagGradientsObject>(self.ptr());
            std::string s = "mlpgrad.DAGGradients(n_edges=" + std::to_string(g.weights().size()) +
                            ", dtype=" + dtype_name(g.dtype());
            if (g.batch()) s += ", batch=" + std::to_string(*g.batch());
            if (g.parameter_only()) s += ", x=None";
            return s + ")";
        });
    dag_gradients_init_sig.intern();
    reduce_sig.intern();
    reduce_ex_sig.intern();
    for (auto& def : dag_gradients_methods) add_fast_method(grads, def);
    finish_class<DagGradientsObject>(grads, "mlpgrad.DAGGradients", /*own_layout=*/false);

    py::class_<DAG> cls(m, "DAG", R"doc(
Backpropagation on any directed acyclic graph, over the caller's NumPy arrays.

Nodes ``0 .. n_inputs-1`` are the inputs x; every other node v computes u_v = Σ_{e = (s → v)} w_e z_s (+ b_v) and
z_v = σ(u_v); ŷ = Σ_k α_k z_{outputs[k]} (a vector ŷ_j = Σ_k α_kj z_{outputs[k]} when alpha is 2-D). ``src``,
``dst`` (integer node ids, any order) and ``weights`` (float32 or float64) hold one entry per edge; n_nodes is
the number of inputs or one more than the largest id src, dst and outputs name, whichever is larger. Parallel
edges add; nodes no input reaches compute u = b (or 0). ``weights``, ``alpha`` and ``biases`` (None or one per
node, input entries unused) are viewed, never copied; src, dst and outputs are read once, at construction.
)doc");
    cls.def_property_readonly("n_nodes", property(&DAG::n_nodes), "Nodes, the inputs included.")
        .def_property_readonly("n_edges", property(&DAG::n_edges), "Edges (entries of weights).")
        .def_property_readonly("n_inputs", property(&DAG::n_inputs), "Input nodes (0 .. n_inputs-1).")
        .def_property_readonly("src", property(&DAG::src), "Source node per edge (a read-only int64 copy).")
        .def_property_readonly("dst", property(&DAG::dst), "Target node per edge (a read-only int64 copy).")
        .def_property_readonly("outputs", property(&DAG::outputs), "The output nodes (a read-only int64 copy).")
        .def_property_readonly("weights", property(&DAG::weights), "The very weights array passed in (not a copy).")
        .def_property_readonly("alpha", property(&DAG::alpha), "The very alpha array passed in (not a copy).")
        .def_property_readonly("biases", property(&DAG::biases), "The very biases array passed in, or None.")
        .def_property_readonly("activation", property(&DAG::activation), "One name, or a tuple of one name per node.")
        .def_property_readonly("output_shape", property(&DAG::output_shape), "() for a scalar ŷ, (m,) for 2-D alpha.")
        .def_property_readonly("dtype", property(&DAG::dtype), "float32 or float64: the weights' dtype.")
        .def("__repr__", initialized(&DAG::repr));
    for (auto* sig : {&forward_sig, &forward_batch_sig, &from_mlp_sig}) sig->intern();
    value_and_grad_sig.intern();
    value_and_grad_batch_sig.intern();
    new_gradients_sig.intern();
    dag_init_sig.intern();
    dag_getstate_sig.intern();
    dag_setstate_sig.intern();
    for (auto& def : dag_methods) add_fast_method(cls, def);
    auto from_mlp_function = py::reinterpret_steal<py::object>(PyCFunction_New(&from_mlp_def, nullptr));
    if (!from_mlp_function) throw py::error_already_set();
    auto from_mlp_static = py::reinterpret_steal<py::object>(PyStaticMethod_New(from_mlp_function.ptr()));
    if (!from_mlp_static) throw py::error_already_set();
    py::setattr(cls, "from_mlp", from_mlp_static);
    dag_reduce_descriptor = py::object(cls.attr("__dict__")["__reduce__"]).release().ptr();  // kept for good
    finish_class<DAG>(cls, "mlpgrad.DAG", /*own_layout=*/false);
    // Layouts of their own, so that CPython refuses __class__ assignment between DAG, DAGGradients, MLP and
    // Gradients (instances.hpp, give_own_layout): MLP is one pointer larger than pybind11's object, DAG two,
    // DAGGradients three.
    for (int i = 0; i < 2; ++i) give_own_layout(Binding<DAG>::type);
    for (int i = 0; i < 3; ++i) give_own_layout(Binding<DagGradientsObject>::type);
}

}  // namespace mlpgrad_python
