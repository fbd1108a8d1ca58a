// set_num_threads(n) / get_num_threads() for the binding's batch pool (threads.hpp), the exit and fork
// handlers that keep the pool safe, and the private FMA-peak probe the benchmarks compare against.
#include "register_threads.hpp"

#include <mlpgrad/gemm/peak.hpp>

#include <chrono>
#include <cstddef>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "threads.hpp"

namespace py = pybind11;

namespace mlpgrad_python {
namespace {

std::string type_name(py::handle h) { return Py_TYPE(h.ptr())->tp_name; }

// n: an int (not a bool), 1..max_threads. TypeError / ValueError name the argument and what it got.
std::size_t thread_count(py::handle n) {
    if (PyBool_Check(n.ptr()) || !PyIndex_Check(n.ptr()))
        throw py::type_error("n must be an int, got " + type_name(n));
    const py::int_ value = py::reinterpret_steal<py::int_>(PyNumber_Index(n.ptr()));
    if (!value) throw py::error_already_set();
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0 || v < 1 || v > static_cast<long long>(max_threads))
        throw py::value_error("n must be between 1 and " + std::to_string(max_threads) + ", got " +
                              py::str(value).cast<std::string>());
    return static_cast<std::size_t>(v);
}

}  // namespace

void register_threads(py::module_& m) {
    // (pybind11 keeps the docstring's pointer: a static string)
    static const std::string set_doc =
        "set_num_threads(n)\n--\n\nRun the batch calls (forward_batch, value_and_grad_batch, backward_batch) on "
        "n threads, the calling one included, from the next call on. Products too small to gain from threads "
        "stay on one thread, and results are bit for bit the same for every n. Single-example calls use them "
        "only for layers of at least 2 MiB of weights (memory-bound; smaller ones run on the calling thread). "
        "n: an int, 1 to " + std::to_string(max_threads) + ".";
    m.def("set_num_threads", [](py::handle n) { set_num_threads(thread_count(n)); }, py::arg("n"), set_doc.c_str());
    m.attr("_MAX_THREADS") = max_threads;
    m.def("get_num_threads", [] { return num_threads(); },
          "get_num_threads()\n--\n\nThe number of threads the batch calls use (see set_num_threads).");
    m.def(
        "_fma_peak_gflops",
        [](const std::string& dtype, double run_ms, int repeats) {
            if (dtype != "float32" && dtype != "float64")
                throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
            if (!(run_ms > 0) || repeats < 1) throw py::value_error("run_ms must be > 0 and repeats >= 1");
            py::gil_scoped_release release;
            const std::chrono::duration<double, std::milli> run(run_ms);
            const double flops = dtype == "float32" ? mlpgrad::gemm::fma_peak_flops<float>(run, repeats)
                                                    : mlpgrad::gemm::fma_peak_flops<double>(run, repeats);
            return flops / 1e9;
        },
        py::arg("dtype"), py::arg("run_ms") = 20.0, py::arg("repeats") = 7,
        "_fma_peak_gflops(dtype, run_ms=20.0, repeats=7)\n--\n\nOne thread's best rate of independent vector "
        "FMA chains, in GFLOP/s (mlpgrad/gemm/peak.hpp). Private: for the benchmarks.");

    // Join the workers at interpreter exit, while the interpreter is whole (threads.hpp).
    m.def("_shut_down_threads", [] { shut_down_threads(); });
    py::module_::import("atexit").attr("register")(m.attr("_shut_down_threads"));
#if defined(__unix__) || defined(__APPLE__)
    static bool fork_handler_installed = false;  // a module re-import must not install a second one
    if (!fork_handler_installed) {
        if (pthread_atfork(nullptr, nullptr, [] { forget_pool_after_fork(); }) != 0)
            throw py::import_error("mlpgrad._core: pthread_atfork failed; the batch thread pool would not be fork-safe");
        fork_handler_installed = true;
    }
#endif
}

}  // namespace mlpgrad_python
