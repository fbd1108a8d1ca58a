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

inline py::handle copyreg_newobj() {
    static py::handle f = py::object(py::module_::import("copyreg").attr("__newobj__")).release();  // leaked on purpose
    return f;
}

// (copyreg.__newobj__, (type(self),), self.__getstate__()): what object.__reduce_ex__(2) gives. The caller
// checks first that self is initialised.
inline py::object newobj_reduction(PyObject* self) {
    auto state = py::reinterpret_steal<py::object>(PyObject_CallMethod(self, "__getstate__", nullptr));
    if (!state) throw py::error_already_set();
    return py::make_tuple(copyreg_newobj(), py::make_tuple(py::handle(reinterpret_cast<PyObject*>(Py_TYPE(self)))),
                          state);
}

// __reduce_ex__(protocol) as object.__reduce_ex__ does it: a subclass's own __reduce__ takes precedence over
// the class's (`own_reduce`, its descriptor); otherwise `reduction()`, the same for every protocol.
template <class Reduction>
py::object reduce_ex(PyObject* self, PyObject* protocol, PyObject* own_reduce, Reduction&& reduction) {
    require_protocol(protocol);
    auto reduce = py::reinterpret_steal<py::object>(
        PyObject_GetAttrString(reinterpret_cast<PyObject*>(Py_TYPE(self)), "__reduce__"));
    if (!reduce) throw py::error_already_set();
    if (reduce.ptr() != own_reduce) {
        auto result = py::reinterpret_steal<py::object>(PyObject_CallMethod(self, "__reduce__", nullptr));
        if (!result) throw py::error_already_set();
        return result;
    }
    return reduction();
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
