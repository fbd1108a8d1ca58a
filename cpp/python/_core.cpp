// mlpgrad._core, the Python binding: the module itself (its version, ACTIVATIONS, the refusal of
// sub-interpreters) and one register_* call per Python class or group of functions, each in its own
// translation unit. MLP views the caller's NumPy weights (never copies them), writes gradients into caller
// arrays, and releases the GIL while the core computes.
#include <pybind11/pybind11.h>

#include <mlpgrad/mlpgrad.hpp>

#include <cstddef>
#include <string>

#include "register_dag.hpp"
#include "register_gradients.hpp"
#include "register_lbfgs.hpp"
#include "register_losses.hpp"
#include "register_mlp.hpp"
#include "register_optim.hpp"
#include "register_threads.hpp"

// Sub-interpreters are refused (ImportError) before pybind11 runs: on CPython 3.11 its module init deadlocks
// in one (PyGILState_Ensure takes the main interpreter's thread state, whose GIL this thread already holds),
// and pybind11's type registry and this module's cached objects (numpy.asarray, interned names, the method
// table) belong to the main interpreter. PYBIND11_MODULE's entry point is renamed here and called by the
// real PyInit__core below, which checks the interpreter first.
#define PyInit__core mlpgrad_pybind11_PyInit__core
PYBIND11_MODULE(_core, m) {
    using namespace mlpgrad_python;
    namespace py = pybind11;
    m.doc() = "mlpgrad's compiled core: backpropagation for dense networks on NumPy buffers, without copies.";
    m.attr("__version__") = std::to_string(MLPGRAD_VERSION_MAJOR) + "." + std::to_string(MLPGRAD_VERSION_MINOR) + "." +
                            std::to_string(MLPGRAD_VERSION_PATCH);
    py::tuple names(mlpgrad::activation_names.size());
    for (std::size_t i = 0; i < names.size(); ++i) names[i] = py::str(std::string(mlpgrad::activation_names[i]));
    m.attr("ACTIVATIONS") = names;

    register_gradients(m);
    register_lbfgs(m);
    register_losses(m);
    register_mlp(m);
    register_optim(m);
    register_threads(m);
    register_dag(m);
}
#undef PyInit__core

extern "C" PYBIND11_EXPORT PyObject* PyInit__core() {
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "mlpgrad._core cannot be imported in a sub-interpreter (it keeps process-wide state "
                        "tied to the main interpreter); import mlpgrad in the main interpreter");
        return nullptr;
    }
    return mlpgrad_pybind11_PyInit__core();
}
