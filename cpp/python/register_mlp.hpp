// register_mlp(m): adds the class mlpgrad.MLP to the module (register_mlp.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace mlpgrad_python {

void register_mlp(pybind11::module_& m);

}  // namespace mlpgrad_python
