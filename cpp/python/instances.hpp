// The Python objects behind mlpgrad.MLP and mlpgrad.Gradients: which C++ object an instance holds, how
// __init__ commits one, and the classes and calls that could read one C++ object as another.
//
// pybind11 lets a Python class derive from several bound classes; such an instance keeps one C++ object
// per bound base, and pybind11's unqualified accessors return the first one, whatever its type. So
// classes deriving from more than one bound class are refused when they are created (__init_subclass__)
// and, since a base's __init_subclass__ can be bypassed, on every use (the instance layout says so).
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <new>
#include <string>
#include <utility>

#include "fast_call.hpp"

namespace mlpgrad_python {

// The Python type pybind11 made for Class and its public name, set once at module import.
template <class Class>
struct Binding {
    static inline PyTypeObject* type = nullptr;
    static inline const char* name = "";
};

inline std::string mixed_bases_message(PyTypeObject* cls) {
    return std::string("class ") + cls->tp_name +
           " derives from more than one compiled (pybind11) class, such as both mlpgrad.MLP and "
           "mlpgrad.Gradients; an mlpgrad object holds exactly one C++ object, so mlpgrad refuses such classes: "
           "derive from one and keep the other as an attribute";
}

// The pybind11 instance behind `obj` when it is an instance of Class's type (nullptr otherwise), or
// TypeError when its class also derives from another bound class.
template <class Class>
py::detail::instance* instance_or_null(PyObject* obj) {
    PyTypeObject* type = Binding<Class>::type;
    if (Py_TYPE(obj) != type && !PyType_IsSubtype(Py_TYPE(obj), type)) return nullptr;
    auto* inst = reinterpret_cast<py::detail::instance*>(obj);
    // One bound base (and a one-pointer holder): the only value pointer is the Class object.
    if (!inst->simple_layout) throw py::type_error(mixed_bases_message(Py_TYPE(obj)));
    return inst;
}

template <class Class>
bool is_initialized(const py::detail::instance* inst) {
    return inst->simple_holder_constructed;
}

// The Class object of an instance that instance_or_null accepted and is_initialized said is built.
template <class Class>
Class& value_of(py::detail::instance* inst) {
    return *static_cast<Class*>(inst->simple_value_holder[0]);
}

// The C++ object behind `self`: TypeError for another type (an unbound method called on anything, a
// property's __get__), a class with mixed bases, or an instance made by Class.__new__ whose __init__ never ran.
template <class Class>
Class& self_of(PyObject* self) {
    py::detail::instance* inst = instance_or_null<Class>(self);
    const char* type = Py_TYPE(self)->tp_name;  // (messages are built on the error paths only)
    if (!inst) throw py::type_error(std::string("self must be a ") + Binding<Class>::name + ", got " + type);
    if (!is_initialized<Class>(inst)) throw py::type_error(std::string(type) + ".__init__ was never called");
    return value_of<Class>(inst);
}

// A const member function as a callable on `self`, through self_of's checks.
template <class Class, class R>
auto initialized(R (Class::*f)() const) {
    return [f](py::handle self) { return (self_of<Class>(self.ptr()).*f)(); };
}

// __init__ and __setstate__: builds the C++ object with `build()` (which checks every argument and may run
// user code), then commits it into `self`. Refuses (TypeError) an instance that is already initialised,
// also when user code run by build() initialised it meanwhile (a re-entrant __init__): an object never
// changes once made, and pybind11's bookkeeping (one registered value per instance) stays consistent.
template <class Class, class Build>
void construct_in_place(PyObject* self, const char* function, Build&& build) {
    auto refuse = [&](const char* when) {
        return py::type_error(std::string(function) + "() was called on an instance of " + Py_TYPE(self)->tp_name +
                              " that is already initialised" + when + "; mlpgrad objects never change once made: "
                              "make a new one instead");
    };
    py::detail::instance* inst = instance_or_null<Class>(self);
    if (!inst) throw py::type_error(std::string(function) + "() needs a " + Binding<Class>::name + ", got " +
                                    Py_TYPE(self)->tp_name);
    if (is_initialized<Class>(inst)) throw refuse("");
    auto value = std::make_unique<Class>(build());
    if (is_initialized<Class>(inst)) throw refuse(" (by a call made from one of its arguments while it ran)");
    // Commit: pybind11 registers the pointer and builds the holder; only the registration can fail
    // (MemoryError), and then nothing is kept.
    auto v_h = inst->get_value_and_holder(py::detail::get_type_info(typeid(Class)));
    v_h.value_ptr() = value.get();
    try {
        v_h.type->init_instance(inst, nullptr);
    } catch (...) {
        v_h.value_ptr() = nullptr;
        throw;
    }
    value.release();  // owned by the holder now
}

// Class.__init_subclass__: refuses a subclass that also derives from another bound class, then defers to
// the next __init_subclass__ in the new class's MRO.
template <class Class>
PyObject* init_subclass(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&] {
        const Py_ssize_t n = PyVectorcall_NARGS(nargs);
        if (n < 1 || !PyType_Check(args[0])) throw py::type_error("__init_subclass__() needs the new class");
        auto* cls = reinterpret_cast<PyTypeObject*>(args[0]);
        if (py::detail::all_type_info(cls).size() != 1) throw py::type_error(mixed_bases_message(cls));
        py::object next = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PySuper_Type))(
                              py::handle(reinterpret_cast<PyObject*>(Binding<Class>::type)), py::handle(args[0]))
                              .attr("__init_subclass__");
        auto result = py::reinterpret_steal<py::object>(
            PyObject_Vectorcall(next.ptr(), args + 1, static_cast<std::size_t>(n - 1), kwnames));
        if (!result) throw py::error_already_set();
        return result;
    });
}

template <class Class>
void refuse_mixed_subclasses(py::handle cls) {
    static PyMethodDef def{"__init_subclass__",
                           reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&init_subclass<Class>)),
                           METH_FASTCALL | METH_KEYWORDS,
                           "Refuses subclasses that also derive from another compiled class (MLP and Gradients)."};
    auto function = py::reinterpret_steal<py::object>(PyCFunction_New(&def, nullptr));
    if (!function) throw py::error_already_set();
    auto method = py::reinterpret_steal<py::object>(PyClassMethod_New(function.ptr()));
    if (!method) throw py::error_already_set();
    py::setattr(cls, "__init_subclass__", method);
}

// `obj.__class__ = other` moves an instance to any class whose layout CPython deems the same, and every bound
// class has pybind11's one layout: net.__class__ = mlpgrad.Gradients made Gradients' methods read the MLP as
// a GradientsObject. One pointer of padding gives the MLP type a layout of its own, so CPython refuses that
// assignment between the MLP family (subclasses, slotted or not) and any other bound class, Gradients and its
// subclasses included, in either direction ("object layout differs"). Only MLP is padded: two padded types
// would make a class deriving from both a layout conflict that CPython reports before __init_subclass__
// can give its clearer message. Done at import, before any instance or subclass exists.
inline void give_own_layout(PyTypeObject* cls) { cls->tp_basicsize += static_cast<Py_ssize_t>(sizeof(void*)); }

// pybind11's tp_new throws C++ exceptions through CPython's C frames (std::terminate) when it cannot lay
// out an instance: pybind11_object() itself, reachable as MLP.__base__ or through copyreg's protocol-0
// reduction, or out of memory. The guard turns them into TypeError / MemoryError. (The half-made object
// such a failure leaves is leaked, not freed: its deallocator would read the layout that is missing.)
inline newfunc pybind11_new = nullptr;

extern "C" inline PyObject* guarded_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    try {
        return pybind11_new(type, args, kwargs);
#ifdef __GLIBCXX__
    } catch (abi::__forced_unwind&) {  // a thread ended by CPython inside a finaliser: let it go (fast_call.hpp)
        throw;
#endif
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_Format(PyExc_TypeError, "cannot create '%s' instances: %s", type->tp_name, e.what());
    } catch (...) {
        PyErr_Format(PyExc_TypeError, "cannot create '%s' instances", type->tp_name);
    }
    return nullptr;
}

// Guards the tp_new of `cls` and of its base (pybind11's common base type), once each.
inline void guard_instance_creation(PyTypeObject* cls) {
    PyTypeObject* base = cls->tp_base;
    if (!pybind11_new && base->tp_new != guarded_new) pybind11_new = base->tp_new;
    for (PyTypeObject* t : {base, cls})
        if (pybind11_new && t->tp_new == pybind11_new) t->tp_new = guarded_new;
}

// What the functions above need to know about a bound class, registered once at import, after pybind11 made
// its type (register_mlp.cpp, register_gradients.cpp). Only MLP has a layout of its own (give_own_layout).
template <class Class>
void finish_class(py::handle cls, const char* name, bool own_layout) {
    Binding<Class>::type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    Binding<Class>::name = name;
    refuse_mixed_subclasses<Class>(cls);
    guard_instance_creation(Binding<Class>::type);
    if (own_layout) give_own_layout(Binding<Class>::type);
}

}  // namespace mlpgrad_python
