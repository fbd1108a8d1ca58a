// _core._Lbfgs: one L-BFGS run (mlpgrad/optim/lbfgs.hpp) driven from Python by reverse communication, as
// mlpgrad._lbfgs does: iterate(x, f, g) writes the next point into x in place and says what it wants.
// It keeps the GIL: a call costs O(n) (a line-search step, ~3 µs for the 7,510 parameters of a 64-100-10
// network) or O(m·n) (a new direction, 70-100 µs there: the two-loop recursion streams the m = 10 pairs,
// 1.2 MB, twice), and holding it keeps x and g from changing between their checks and their use.
#include "register_lbfgs.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/optim/lbfgs.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "checks.hpp"

namespace mlpgrad_python {
namespace {

// `obj` as a 1-D, C-contiguous, aligned float64 array of n items, never a copy.
py::array vector_argument(py::handle obj, const char* what, std::size_t n, bool written) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(what) + " must be a numpy.ndarray of float64, got " + type_name(obj));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().equal(py::dtype::of<double>()))
        throw py::type_error(std::string(what) + " has dtype " + dtype_string(a) + "; expected float64");
    if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != n)
        throw py::value_error(std::string(what) + " has shape " + shape_string(a) + "; expected (" +
                              std::to_string(n) + ",)");
    if (!is_c_contiguous_and_aligned(a))
        throw py::value_error(std::string(what) + " is not a C-contiguous, aligned array");
    if (written && !a.writeable())
        throw py::value_error(std::string(what) + " is read-only; the next point is written into it");
    return a;
}

int iterate(mlpgrad::optim::Lbfgs& run, py::handle x_obj, double f, py::handle g_obj) {
    const std::size_t n = run.size();
    py::array x = vector_argument(x_obj, "x", n, true);
    const py::array g = vector_argument(g_obj, "g", n, false);
    auto* x_data = static_cast<double*>(x.mutable_data());
    const auto* g_data = static_cast<const double*>(g.data());
    if (x_data < g_data + n && g_data < x_data + n) throw py::value_error("x and g overlap in memory");
    try {
        return static_cast<int>(run.iterate(x_data, f, g_data));
    } catch (const std::logic_error& e) {
        if (dynamic_cast<const std::invalid_argument*>(&e) != nullptr) throw py::value_error(e.what());
        throw std::runtime_error(e.what());
    }
}

}  // namespace

void register_lbfgs(py::module_& m) {
    using mlpgrad::optim::Lbfgs;
    using mlpgrad::optim::LbfgsTask;
    py::class_<Lbfgs> cls(m, "_Lbfgs",
                          "_Lbfgs(n, memory=10, ftol=2.220446049250313e-09, gtol=1e-05, max_line_search=20)\n\n"
                          "One L-BFGS run over n float64 parameters, stepping as SciPy's L-BFGS-B does without "
                          "bounds (mlpgrad/optim/lbfgs.hpp). Private: mlpgrad._lbfgs.minimize_lbfgs drives it.");
    cls.def(py::init([](std::size_t n, std::size_t memory, double ftol, double gtol, std::size_t max_line_search) {
                mlpgrad::optim::LbfgsOptions options;
                options.memory = memory;
                options.ftol = ftol;
                options.gtol = gtol;
                options.max_line_search = max_line_search;
                try {
                    return new Lbfgs(n, options);
                } catch (const std::invalid_argument& e) {
                    throw py::value_error(e.what());
                }
            }),
            py::arg("n"), py::arg("memory") = 10, py::arg("ftol") = 2.2204460492503131e-09, py::arg("gtol") = 1e-5,
            py::arg("max_line_search") = 20);
    cls.def("iterate", &iterate, py::arg("x"), py::arg("f"), py::arg("g"),
            "iterate(x, f, g) -> task\n\nThe first call passes the starting point x with f(x) and its gradient "
            "g; each call after EVALUATE passes f and g at the x it left. Writes x in place. Returns EVALUATE, "
            "NEW_ITERATE, or a reason to stop (CONVERGED_GRADIENT, CONVERGED_REDUCTION, LINE_SEARCH_FAILED).");
    cls.def_property_readonly("iterations", &Lbfgs::iterations, "iterates taken so far");
    cls.def_property_readonly("pairs", &Lbfgs::pairs, "the (s, y) pairs in memory");
    cls.def_property_readonly("finished", &Lbfgs::finished, "whether the run has ended");
    cls.def_property_readonly("value", &Lbfgs::value, "f at the last iterate");
    cls.def_static("message", [](int task) {
        if (task < 1 || task > 5) throw py::value_error("task must be in 1..5, got " + std::to_string(task));
        return std::string(mlpgrad::optim::task_message(static_cast<LbfgsTask>(task)));
    });
    cls.attr("EVALUATE") = static_cast<int>(LbfgsTask::evaluate);
    cls.attr("NEW_ITERATE") = static_cast<int>(LbfgsTask::new_iterate);
    cls.attr("CONVERGED_GRADIENT") = static_cast<int>(LbfgsTask::converged_gradient);
    cls.attr("CONVERGED_REDUCTION") = static_cast<int>(LbfgsTask::converged_reduction);
    cls.attr("LINE_SEARCH_FAILED") = static_cast<int>(LbfgsTask::line_search_failed);
}

}  // namespace mlpgrad_python
