// Converting the caller's read-only inputs (x, X, dy, optimiser options) into what the kernels read: an
// aligned, C-contiguous array of T, or a real number; anything else is a TypeError or ValueError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "arguments.hpp"
#include "checks.hpp"

namespace mlpgrad_python {

inline py::handle numpy_asarray() {
    static py::handle f = py::object(py::module_::import("numpy").attr("asarray")).release();  // leaked on purpose
    return f;
}

// A read-only input (x, X, dy) as a C-contiguous, aligned array of T: used as is when it already is one,
// otherwise converted once. Refuses what is not a real number.
template <class T>
py::array_t<T> as_input(py::handle obj, const char* what) {
    // Fast path, no conversion machinery: already a C-contiguous, aligned array of T.
    if (py::array_t<T, py::array::c_style>::check_(obj) &&
        is_c_contiguous_and_aligned(py::reinterpret_borrow<py::array>(obj)))
        return py::reinterpret_borrow<py::array_t<T>>(obj);
    py::array a;
    try {
        a = numpy_asarray()(obj);
    } catch (py::error_already_set& e) {
        raise_chained(e, PyExc_TypeError, std::string(what) + " could not be read as an array of real numbers");
    }
    const char kind = a.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
        throw py::type_error(std::string(what) + " has dtype " + dtype_string(a) + "; expected real numbers");
    // The kernels load whole elements of T, so the copy must be aligned as well as C-ordered (pybind11's
    // array_t<T, c_style> conversion asks NumPy for C order only and passes a misaligned array through).
    // Not ensure(): it swallows the error of a conversion that fails (MemoryError for a huge array).
    using api = py::detail::npy_api;
    constexpr int flags = api::NPY_ARRAY_ENSUREARRAY_ | api::NPY_ARRAY_FORCECAST_ | api::NPY_ARRAY_C_CONTIGUOUS_ |
                          api::NPY_ARRAY_ALIGNED_;
    PyObject* converted =  // steals the dtype reference
        api::get().PyArray_FromAny_(a.ptr(), py::dtype::of<T>().release().ptr(), 0, 0, flags, nullptr);
    if (!converted) throw py::error_already_set();
    return py::reinterpret_steal<py::array_t<T>>(converted);
}

// numpy.complex64 and numpy.clongdouble are not Python complex subclasses, and float() of them only warns
// and drops the imaginary part. Floats (numpy.float64 included) never get here.
inline bool is_numpy_complex_scalar(py::handle obj) {
    if (PyFloat_Check(obj.ptr())) return false;
    static py::handle complexfloating =
        py::object(py::module_::import("numpy").attr("complexfloating")).release();  // leaked on purpose
    return PyObject_TypeCheck(obj.ptr(), reinterpret_cast<PyTypeObject*>(complexfloating.ptr()));
}

// A scalar seed such as dy: a Python or NumPy real number, or a 0-d array of one; `fallback` when absent.
inline double as_real(py::handle obj, const char* what, double fallback) {
    if (!obj) return fallback;
    if (PyFloat_CheckExact(obj.ptr())) return PyFloat_AS_DOUBLE(obj.ptr());
    if (py::isinstance<py::array>(obj) || py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
        auto a = as_input<double>(obj, what);
        if (a.ndim() != 0)
            throw py::value_error(std::string(what) + " must be a scalar, got an array of shape " + shape_string(a));
        return *a.data();
    }
    if (PyComplex_Check(obj.ptr()) || !PyNumber_Check(obj.ptr()) || is_numpy_complex_scalar(obj))
        throw py::type_error(std::string(what) + " must be a real number, got " + type_name(obj));
    const double v = PyFloat_AsDouble(obj.ptr());
    if (v == -1.0 && PyErr_Occurred()) {
        py::error_already_set e;
        if (e.matches(PyExc_OverflowError))  // e.g. an int beyond the float range
            raise_chained(e, PyExc_ValueError, std::string(what) + " is out of the range of a float");
        raise_chained(e, PyExc_TypeError, std::string(what) + " could not be read as a real number");
    }
    return v;
}

// A flag such as new_gradients(x=...): True or False only (an int or None is more likely a misplaced batch
// size than a flag); `fallback` when absent.
inline bool as_flag(py::handle obj, const char* what, bool fallback) {
    if (!obj) return fallback;
    if (!PyBool_Check(obj.ptr()))
        throw py::type_error(std::string(what) + " must be True or False, got " + type_name(obj));
    return obj.ptr() == Py_True;
}

}  // namespace mlpgrad_python
