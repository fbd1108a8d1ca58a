// mlpgrad.Gradients' Python class: its __init__ (fast call), its read-only properties and __repr__, and
// the pickling hooks that refuse. The object itself is gradients_object.hpp.
#include "register_gradients.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>

#include "checks.hpp"
#include "fast_call.hpp"
#include "gradients_object.hpp"
#include "instances.hpp"
#include "pickling.hpp"

namespace mlpgrad_python {
namespace {

// One clear TypeError for a wrong keyword or argument count (not pybind11's overload listing with every
// array printed), and no silent second __init__ (instances.hpp).
FastSignature<7> gradients_init_sig{"Gradients", {"weights", "alpha", "x", "z", "u", "biases", "output_bias"}, 5, 2};

PyObject* gradients_init(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 7> a;
        gradients_init_sig.parse(args, nargs, kwnames, a);
        construct_in_place<GradientsObject>(self, "Gradients.__init__", [&] {
            return GradientsObject(borrowed_or(a[0], {}), borrowed_or(a[1], {}), borrowed_or(a[2], py::none()),
                                   borrowed_or(a[3], py::none()), borrowed_or(a[4], py::none()),
                                   borrowed_or(a[5], py::none()), borrowed_or(a[6], py::none()));
        });
        return py::none();
    });
}

// The TypeError object.__reduce_ex__ raises for a Gradients under protocol >= 2, under every protocol.
[[noreturn]] void refuse_pickling(PyObject* self) {
    throw py::type_error(std::string("cannot pickle '") + Py_TYPE(self)->tp_name + "' object");
}

PyObject* gradients_reduce(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 0> a;
        reduce_sig.parse(args, nargs, kwnames, a);
        refuse_pickling(self);
    });
}

PyObject* gradients_reduce_ex(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 1> a;
        reduce_ex_sig.parse(args, nargs, kwnames, a);
        require_protocol(a[0]);
        refuse_pickling(self);
    });
}

// Docstrings start with a text signature so that help() and inspect.signature() show the arguments.
PyMethodDef gradients_methods[] = {
    {"__init__", as_cfunction(&gradients_init), fast_call_flags,
     "__init__($self, weights, alpha, x=None, z=None, u=None, *, biases=None, output_bias=None)\n--\n\nWraps (never "
     "copies) the caller's arrays, checked once; x=None makes parameter-only gradients for the batch calls, fitting "
     "any batch size. biases (one 1-D array per layer) and output_bias (shaped like ŷ) are for networks that have "
     "them. A Gradients never changes once made: a second __init__ raises TypeError."},
    {"__reduce__", as_cfunction(&gradients_reduce), fast_call_flags, "__reduce__($self, /)\n--\n\nRefuses: TypeError."},
    {"__reduce_ex__", as_cfunction(&gradients_reduce_ex), fast_call_flags,
     "__reduce_ex__($self, protocol, /)\n--\n\nRefuses under every protocol: TypeError."},
};

}  // namespace

void register_gradients(py::module_& m) {
    py::class_<GradientsObject> cls(m, "Gradients", R"doc(
Gradient buffers: NumPy arrays that the backward pass writes into.

Get zeroed ones from ``net.new_gradients()`` (or ``net.new_gradients(batch=B)``), or wrap arrays of your own
with ``Gradients(weights, alpha, x=None, z=None, u=None, *, biases=None, output_bias=None)`` (they are checked once
here: one float dtype, C-contiguous, writeable, shapes that chain, no two overlapping) and pass the object as
``out=`` to write gradients in place. A network with biases or an output bias needs gradients with them (and only
then): ``biases[t]`` of shape (K_{t+1},), ``output_bias`` of ŷ's shape (0-d for one output, (m,) for m).
Without x (``x=None``, or ``net.new_gradients(batch=B, x=False)``) they are parameter-only gradients: ``.x`` and
``.batch`` are None, the batch calls skip the input-gradient product and fill them for any batch size.
)doc");
    cls.def_property_readonly("weights", initialized(&GradientsObject::weights), "d/dW[t] for each layer, shaped like the weights.")
        .def_property_readonly("alpha", initialized(&GradientsObject::alpha),
                               "d/d alpha = z^T dyᵀ, shaped like alpha: (K_T,) for one output, (K_T, m) for m.")
        .def_property_readonly("biases", initialized(&GradientsObject::biases),
                               "d/db^t = d/du^t for each layer (a batch: summed over it), or None when the network has "
                               "no biases.")
        .def_property_readonly("output_bias", initialized(&GradientsObject::output_bias),
                               "d/d beta = dy (a batch: summed over it), shaped like ŷ; None when the network has no "
                               "output bias.")
        .def_property_readonly("x", initialized(&GradientsObject::x),
                               "d/dx, shape (K_0,); for a batch (B, K_0), row b is dy_b * dŷ_b/dx_b; None for parameter-only "
                               "gradients.")
        .def_property_readonly("z", initialized(&GradientsObject::z), "d/dz^t for t = 0..T (z[0] equals x), or None for a batch.")
        .def_property_readonly("u", initialized(&GradientsObject::u), "d/du^t for t = 1..T (at index t-1), or None for a batch.")
        .def_property_readonly(
            "batch", [](py::handle self) -> py::object {
                const auto& g = self_of<GradientsObject>(self.ptr());
                return g.batch() ? py::object(py::int_(*g.batch())) : py::object(py::none());
            },
            "B for batch gradients; None for single-example and for parameter-only gradients (which fit any B).")
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
            if (g.parameter_only()) s += ", x=None";
            return s + ")";
        });

    gradients_init_sig.intern();
    reduce_sig.intern();
    reduce_ex_sig.intern();
    for (auto& def : gradients_methods) add_fast_method(cls, def);
    finish_class<GradientsObject>(cls, "mlpgrad.Gradients", /*own_layout=*/false);
}

}  // namespace mlpgrad_python
