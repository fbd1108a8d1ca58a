// register_losses(m): adds the fused loss kernels for mlpgrad.losses to the module (register_losses.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace mlpgrad_python {

void register_losses(pybind11::module_& m);

}  // namespace mlpgrad_python
