// register_threads(m): mlpgrad's thread settings for the batch calls (register_threads.cpp, threads.hpp).
#pragma once

#include <pybind11/pybind11.h>

namespace mlpgrad_python {

void register_threads(pybind11::module_& m);

}  // namespace mlpgrad_python
