// What pickling MLP (mlp_pickling.hpp) and Gradients (register_gradients.cpp) share.
//
// Both define __reduce_ex__ themselves, for every protocol: under protocols 0 and 1 the default,
// copyreg._reduce_ex, would call pybind11's base type, whose constructor throws a C++ exception through
// CPython (std::terminate). The reduction is the one object.__reduce_ex__ gives under protocol 2, so
// pickles of every protocol >= 2 are byte for byte what they were, and old ones load.
#pragma once

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

}  // namespace mlpgrad_python
