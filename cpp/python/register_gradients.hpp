// register_gradients(m): adds the class mlpgrad.Gradients to the module (register_gradients.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace mlpgrad_python {

void register_gradients(pybind11::module_& m);

}  // namespace mlpgrad_python
