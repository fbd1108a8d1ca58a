// register_lbfgs(m): adds _Lbfgs, the L-BFGS run behind mlpgrad.sklearn's "lbfgs" solver (register_lbfgs.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace mlpgrad_python {

void register_lbfgs(pybind11::module_& m);

}  // namespace mlpgrad_python
