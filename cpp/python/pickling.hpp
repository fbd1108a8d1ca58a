// What pickling MLP (mlp_pickling.hpp) and Gradients (register_gradients.cpp) share.
//
// Both define __reduce_ex__ themselves, for every protocol: under protocols 0 and 1 the default,
// copyreg._reduce_ex, would call pybind11's base type, whose constructor throws a C++ exception through
// CPython (std::terminate). The reduction is the one object.__reduce_ex__ gives under protocol 2, so
// pickles of every protocol >= 2 are byte for byte what they were, and old ones load.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "checks.hpp"
#include "fast_call.hpp"

namespace mlpgrad_python {

inline FastSignature<0> reduce_sig{"__reduce__", {}, 0, 0};
inline FastSignature<1> reduce_ex_sig{"__reduce_ex__", {"protocol"}, 1, 1};

inline void require_protocol(PyObject* protocol) {
    if (!PyLong_Check(protocol))
        throw py::type_error("__reduce_ex__() argument protocol must be an int, got " + type_name(protocol));
}

// A state item as __setstate__ may view it. Arrays restored from out-of-band buffers (pickle protocol 5, as
// Dask sends them) view those buffers at whatever offset a message frame put them, often not aligned for their
// dtype; such an array was made by the unpickler, so copying it (only then) into aligned memory loses nobody's
// data. Exact ndarrays and exact tuples/lists of them only: no user code runs here.
inline py::object aligned_state_item(py::handle item) {
    if (Py_TYPE(item.ptr()) == py::detail::npy_api::get().PyArray_Type_) {
        auto a = py::reinterpret_borrow<py::array>(item);
        if (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) return std::move(a);
        return py::module_::import("numpy").attr("array")(a, py::arg("copy") = true, py::arg("order") = "C");
    }
    const bool tuple = PyTuple_CheckExact(item.ptr()), list = PyList_CheckExact(item.ptr());
    if (!tuple && !list) return py::reinterpret_borrow<py::object>(item);
    const Py_ssize_t n = tuple ? PyTuple_GET_SIZE(item.ptr()) : PyList_GET_SIZE(item.ptr());
    py::list items;
    bool copied = false;
    for (Py_ssize_t i = 0; i < n; ++i) {
        py::handle x = tuple ? PyTuple_GET_ITEM(item.ptr(), i) : PyList_GET_ITEM(item.ptr(), i);
        py::object y = aligned_state_item(x);
        copied |= y.ptr() != x.ptr();
        items.append(std::move(y));
    }
    if (!copied) return py::reinterpret_borrow<py::object>(item);
    if (tuple) return py::tuple(items);
    return std::move(items);
}

}  // namespace mlpgrad_python
