// register_optim(m): adds the optimiser update functions for mlpgrad.optim to the module (register_optim.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace mlpgrad_python {

void register_optim(pybind11::module_& m);

}  // namespace mlpgrad_python
