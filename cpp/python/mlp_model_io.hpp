// MLP.random and MLP.load (class methods) and net.save: calls into the Python module mlpgrad.model_io, where
// the initialisation and the .npz format live. NumPy does their work and none of them is called per step, so
// they are written once, in Python, and attached here so that they are MLP's own methods (also on subclasses,
// whose class they build) and `type(MLP.random(...)) is MLP`.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

#include "fast_call.hpp"
#include "instances.hpp"
#include "mlp_object.hpp"

namespace mlpgrad_python {

// mlpgrad.model_io.<function>(first, *args, **kwargs), in the vectorcall convention.
inline py::object call_model_io(const char* function, PyObject* first, PyObject* const* args, Py_ssize_t nargs,
                                PyObject* kwnames) {
    py::object f = py::module_::import("mlpgrad.model_io").attr(function);
    const auto n_pos = static_cast<std::size_t>(PyVectorcall_NARGS(nargs));
    const auto n_kw = static_cast<std::size_t>(kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    std::vector<PyObject*> forwarded{first};
    forwarded.insert(forwarded.end(), args, args + n_pos + n_kw);
    auto result = py::reinterpret_steal<py::object>(PyObject_Vectorcall(f.ptr(), forwarded.data(), 1 + n_pos, kwnames));
    if (!result) throw py::error_already_set();
    return result;
}

inline PyObject* mlp_random(PyObject* cls, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] { return call_model_io("random", cls, args, nargs, kwnames); });
}

inline PyObject* mlp_load(PyObject* cls, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] { return call_model_io("load", cls, args, nargs, kwnames); });
}

inline PyObject* mlp_save(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        self_of<MLP>(self);  // TypeError for an uninitialised instance, before any Python runs
        return call_model_io("save", self, args, nargs, kwnames);
    });
}

}  // namespace mlpgrad_python
