// mlpgrad.DAG and mlpgrad.DAGGradients (register_dag.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace mlpgrad_python {
void register_dag(pybind11::module_& m);
}  // namespace mlpgrad_python
