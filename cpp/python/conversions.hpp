// Converting the caller's read-only inputs (x, X, dy, optimiser options) into what the kernels read: an
// aligned, C-contiguous array of T, or a real number; anything else is a TypeError or ValueError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/activations.hpp>

#include <optional>
#include <string>
#include <vector>

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

// new_gradients(batch=...): None (or absent) or an int >= 0 that fits in 64 bits.
inline std::optional<std::size_t> batch_size_or_none(py::handle batch) {
    if (!batch || batch.is_none()) return std::nullopt;
    if (!py::isinstance<py::int_>(batch) || py::isinstance<py::bool_>(batch))
        throw py::type_error("batch must be an int or None, got " + type_name(batch));
    int overflow = 0;
    const long long b = PyLong_AsLongLongAndOverflow(batch.ptr(), &overflow);
    if (b == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0 || b < 0)
        throw py::value_error("batch must be >= 0 and fit in 64 bits, got " + text_of(batch));
    return static_cast<std::size_t>(b);
}

// activation=...: one name for all `count` units (layers of an MLP, nodes of a DAG), or a sequence of `count`
// names, one per `unit`.
inline std::vector<mlpgrad::Activation> activation_list(py::handle activation, std::size_t count, const char* unit,
                                                        const char* units) {
    auto parse = [](py::handle name, const std::string& what) {
        if (!py::isinstance<py::str>(name))
            throw py::type_error(what + " must be an activation name (str), got " + type_name(name));
        try {  // a name that is not valid Unicode (a lone surrogate) is an unknown name, shown escaped
            return mlpgrad::parse_activation(utf8_text(name));
        } catch (const std::invalid_argument& e) {
            throw py::value_error(what + ": " + e.what());
        }
    };
    if (py::isinstance<py::str>(activation))
        return std::vector<mlpgrad::Activation>(count, parse(activation, "activation"));
    // bytes are a sequence too, but of ints: b"relu" is a name that was not decoded, not 4 names
    if (!py::isinstance<py::sequence>(activation) || PyBytes_Check(activation.ptr()) ||
        PyByteArray_Check(activation.ptr()))
        throw py::type_error(std::string("activation must be a name (str) or a sequence of one name per ") + unit +
                             ", got " + type_name(activation));
    auto seq = py::reinterpret_borrow<py::sequence>(activation);
    std::vector<py::object> names;
    std::size_t n = 0;
    try {  // a user-defined sequence runs user code: whatever it raises becomes a TypeError
        n = seq.size();
        for (std::size_t t = 0; t < n && t < count; ++t) names.push_back(seq[t]);
    } catch (py::error_already_set& e) {
        raise_chained(e, PyExc_TypeError, "activation could not be read as a sequence of names");
    }
    if (n != count)
        throw py::value_error("activation has " + std::to_string(n) + " names but the network has " +
                              std::to_string(count) + " " + units);
    std::vector<mlpgrad::Activation> out;
    for (std::size_t t = 0; t < count; ++t)
        out.push_back(parse(names[t], "activation[" + std::to_string(t) + "]"));
    return out;
}

}  // namespace mlpgrad_python
