// Pickling an MLP: its state is (format version 1, weights tuple, alpha, activation names tuple) for the notes'
// network, or (2, weights tuple, alpha, activation names tuple, biases tuple or None, output_bias or None) for
// one with biases, an output bias or m outputs (MLP::getstate), rebuilt by __setstate__ through the same checks
// as MLP(...); its __reduce_ex__ is pickling.hpp's, for every protocol.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "fast_call.hpp"
#include "instances.hpp"
#include "mlp_object.hpp"
#include "pickling.hpp"

namespace mlpgrad_python {

inline constexpr long pickle_format_version = 2;  // the newest; version 1 is still read (and written)

// Filled in at module import (register_mlp.cpp): MLP's own __reduce__, to tell whether a subclass overrides it.
inline PyObject* mlp_reduce_descriptor = nullptr;

inline FastSignature<0> getstate_sig{"MLP.__getstate__", {}, 0, 0};
inline FastSignature<1> setstate_sig{"MLP.__setstate__", {"state"}, 1, 1};

inline PyObject* mlp_getstate(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 0> a;
        getstate_sig.parse(args, nargs, kwnames, a);
        return py::object(self_of<MLP>(self).getstate());
    });
}

// The version (1 or 2) as an exact integer (never a cast that fails on 2**80), with the number of items it
// has; anything else is refused with ValueError.
inline long require_format_version(py::handle state) {
    const std::string expected = "; expected format version 1: (1, weights, alpha, activation names), or format "
                                 "version 2: (2, weights, alpha, activation names, biases, output_bias)";
    const Py_ssize_t size = PyTuple_GET_SIZE(state.ptr());
    if (size != 4 && size != 6)
        throw py::value_error("unsupported mlpgrad.MLP pickle state of " + std::to_string(size) + " items" + expected);
    py::handle version = PyTuple_GET_ITEM(state.ptr(), 0);
    if (!PyLong_Check(version.ptr()))
        throw py::value_error("unsupported mlpgrad.MLP pickle state: its format version is a " + type_name(version) +
                              expected);
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(version.ptr(), &overflow);
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0 || v < 1 || v > pickle_format_version)
        throw py::value_error("unsupported mlpgrad.MLP pickle state: format version " + text_of(version) + expected);
    if (size != (v == 1 ? 4 : 6))
        throw py::value_error("unsupported mlpgrad.MLP pickle state: format version " + std::to_string(v) + expected +
                              " (this state has " + std::to_string(size) + " items)");
    return static_cast<long>(v);
}

inline PyObject* mlp_setstate(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 1> a;
        setstate_sig.parse(args, nargs, kwnames, a);
        py::handle state = a[0];
        if (!PyTuple_Check(state.ptr()))
            throw py::type_error("MLP.__setstate__() argument state must be a tuple (format version, weights, alpha, "
                                 "activation names[, biases, output_bias]), got " + type_name(state));
        auto item = [&](Py_ssize_t i) { return aligned_state_item(PyTuple_GET_ITEM(state.ptr(), i)); };
        construct_in_place<MLP>(self, "MLP.__setstate__", [&] {
            if (require_format_version(state) == 1) return MLP(item(1), item(2), item(3));
            return MLP(item(1), item(2), item(3), item(4), item(5));
        });
        return py::none();
    });
}

inline py::object mlp_reduction(PyObject* self) {
    self_of<MLP>(self);  // TypeError for an uninitialised instance, before anything else
    return newobj_reduction(self);
}

inline PyObject* mlp_reduce(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 0> a;
        reduce_sig.parse(args, nargs, kwnames, a);
        return mlp_reduction(self);
    });
}

inline PyObject* mlp_reduce_ex(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        std::array<PyObject*, 1> a;
        reduce_ex_sig.parse(args, nargs, kwnames, a);
        return reduce_ex(self, a[0], mlp_reduce_descriptor, [&] { return mlp_reduction(self); });
    });
}

}  // namespace mlpgrad_python
