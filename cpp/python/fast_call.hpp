// Methods called in a training loop bypass pybind11's dispatcher: it re-interns every keyword name on each
// call (about 2,000 instructions, more than a whole K = 16 network costs). These take CPython's
// METH_FASTCALL | METH_KEYWORDS convention directly, with names interned once.
#pragma once

#include <pybind11/pybind11.h>

#ifdef __GLIBCXX__
#include <cxxabi.h>  // abi::__forced_unwind
#endif

#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "arguments.hpp"

namespace mlpgrad_python {

namespace py = pybind11;

// A signature like f(a, b=..., *, c=...): `names` in order, the first `positional` of which may be passed
// by position, the first `required` of which must be passed. Names are interned at module import.
template <std::size_t N>
struct FastSignature {
    const char* function;
    std::array<const char*, N> names;
    std::size_t positional;
    std::size_t required;
    std::array<PyObject*, N> interned{};

    // Once per signature, by every register_* unit that uses it (pickling.hpp's are shared).
    void intern() {
        for (std::size_t i = 0; i < N; ++i)
            if (!interned[i]) interned[i] = PyUnicode_InternFromString(names[i]);  // kept for good
    }

    // Fills slots[i] (borrowed; nullptr when not given) or raises TypeError the way Python would.
    void parse(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, std::array<PyObject*, N>& slots) const {
        slots.fill(nullptr);
        const auto n_pos = static_cast<std::size_t>(PyVectorcall_NARGS(nargs));
        if (n_pos > positional)
            throw py::type_error(std::string(function) + "() takes at most " + std::to_string(positional) +
                                 " positional arguments (" + std::to_string(n_pos) + " given)");
        for (std::size_t i = 0; i < n_pos; ++i) slots[i] = args[i];
        const Py_ssize_t n_kw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        for (Py_ssize_t k = 0; k < n_kw; ++k) {
            PyObject* key = PyTuple_GET_ITEM(kwnames, k);
            std::size_t i = index_of(key);
            if (i == N) throw py::type_error(unexpected_keyword(function, key, {names.begin(), names.end()}));
            if (slots[i])
                throw py::type_error(std::string(function) + "() got multiple values for argument '" + names[i] + "'");
            slots[i] = args[n_pos + static_cast<std::size_t>(k)];
        }
        for (std::size_t i = 0; i < required; ++i)
            if (!slots[i])
                throw py::type_error(std::string(function) + "() missing required argument '" + names[i] + "'");
    }

  private:
    std::size_t index_of(PyObject* key) const {
        for (std::size_t i = 0; i < N; ++i)
            if (key == interned[i]) return i;  // the usual case: both interned
        for (std::size_t i = 0; i < N; ++i)
            if (PyUnicode_Compare(key, interned[i]) == 0) return i;
        if (PyErr_Occurred()) PyErr_Clear();
        return N;
    }
};

inline void set_python_error_from_current_exception() noexcept { py::detail::try_translate_exceptions(); }

// Runs `body` and turns any C++ exception into the Python exception pybind11 would raise. Not noexcept, and
// a forced unwind is let through (as pybind11's own dispatcher does): that is CPython ending this thread
// with pthread_exit inside Python code `body` called (an __array__ that re-takes the GIL after the
// interpreter began to exit; gil.hpp says why), which a noexcept frame would turn into std::terminate.
// No C++ exception leaves.
template <class F>
PyObject* fast_call(F&& body) {
    try {
        return body().release().ptr();
#ifdef __GLIBCXX__
    } catch (abi::__forced_unwind&) {
        throw;
#endif
    } catch (...) {
        set_python_error_from_current_exception();
        return nullptr;
    }
}

// A parsed argument (a slot filled by parse()), or `fallback` when it was not passed.
inline py::object borrowed_or(PyObject* arg, py::object fallback) {
    return arg ? py::reinterpret_borrow<py::object>(arg) : std::move(fallback);
}

// The PyMethodDef form of a fast-call function.
template <class F>
PyCFunction as_cfunction(F* f) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}
inline constexpr int fast_call_flags = METH_FASTCALL | METH_KEYWORDS;

// Adds a METH_FASTCALL | METH_KEYWORDS method to a pybind11 class. `def` must outlive the class.
inline void add_fast_method(py::handle cls, PyMethodDef& def) {
    auto descr = py::reinterpret_steal<py::object>(PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &def));
    if (!descr) throw py::error_already_set();
    py::setattr(cls, def.ml_name, descr);
}

// The same for a class method (`def.ml_flags` gains METH_CLASS): it receives the class it is called on.
inline void add_fast_classmethod(py::handle cls, PyMethodDef& def) {
    def.ml_flags |= METH_CLASS;
    auto descr =
        py::reinterpret_steal<py::object>(PyDescr_NewClassMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &def));
    if (!descr) throw py::error_already_set();
    py::setattr(cls, def.ml_name, descr);
}

}  // namespace mlpgrad_python
