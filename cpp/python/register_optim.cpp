// The optimiser updates for mlpgrad.optim: private module functions that update one parameter array in
// place from its gradient and its state arrays (mlpgrad/optim/), called once per array per step. They take
// CPython's fast calling convention (fast_call.hpp), check every array before writing any, and release the
// GIL for large arrays. register_optim() adds them to the module.
#include "register_optim.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/optim/adam.hpp>
#include <mlpgrad/optim/sgd.hpp>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "checks.hpp"
#include "conversions.hpp"
#include "fast_call.hpp"
#include "gil.hpp"

namespace mlpgrad_python {
namespace {

// The arrays of one update: the parameter (written), its gradient (read) and the optimiser's state arrays
// (written), all of one float dtype and one shape, C-contiguous and aligned, never copied.
struct UpdateArrays {
    DType dtype = DType::float64;
    py::array param, grad;
    std::vector<py::array> state;
};

py::array update_array(py::handle obj, const char* what) {
    py::array a = require_ndarray(obj, what, "the update is made in place in the caller's arrays, never in a copy");
    require_layout(a, what);
    return a;
}

void require_like_param(const py::array& a, const UpdateArrays& u, const char* what, bool written) {
    const DType d = float_dtype(a, what);
    if (d != u.dtype)
        throw py::type_error(std::string(what) + " has dtype " + dtype_name(d) + " but param has " +
                             dtype_name(u.dtype) + "; an update's arrays must share one dtype");
    const bool same_shape = a.ndim() == u.param.ndim() &&
                            std::equal(a.shape(), a.shape() + a.ndim(), u.param.shape());
    if (!same_shape)
        throw py::value_error(std::string(what) + " has shape " + shape_string(a) + " but param has shape " +
                              shape_string(u.param) + "; expected the same shape");
    if (written && !a.writeable()) throw py::value_error(std::string(what) + " is read-only; the update writes it in place");
}

// Checks the arrays (types, dtype, shapes, layout, writeability); overlaps are the core's check.
UpdateArrays check_arrays(py::handle param, py::handle grad,
                          std::initializer_list<std::pair<const char*, py::handle>> state) {
    UpdateArrays u;
    u.param = update_array(param, "param");
    u.dtype = float_dtype(u.param, "param");
    if (!u.param.writeable()) throw py::value_error("param is read-only; the update writes it in place");
    u.grad = update_array(grad, "grad");
    require_like_param(u.grad, u, "grad", false);
    for (const auto& [name, obj] : state) {
        u.state.push_back(update_array(obj, name));
        require_like_param(u.state.back(), u, name, true);
    }
    return u;
}

template <class T>
mlpgrad::VectorView<T> flat(const py::array& a) {
    return {static_cast<T*>(const_cast<void*>(a.data())), static_cast<std::size_t>(a.size())};
}

bool as_flag(py::handle obj, const char* what) {
    if (!PyBool_Check(obj.ptr())) throw py::type_error(std::string(what) + " must be a bool, got " + type_name(obj));
    return obj.ptr() == Py_True;
}

std::size_t as_step(py::handle obj) {
    if (!PyLong_Check(obj.ptr()) || PyBool_Check(obj.ptr()))
        throw py::type_error("step must be an int, got " + type_name(obj));
    const unsigned long long step = PyLong_AsUnsignedLongLong(obj.ptr());
    if (step == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::value_error("step must be an int in [1, 2**64), got " + py::str(obj).cast<std::string>());
    }
    return static_cast<std::size_t>(step);
}

mlpgrad::optim::SgdOptions sgd_options(py::handle lr, py::handle momentum, py::handle nesterov,
                                       py::handle weight_decay) {
    mlpgrad::optim::SgdOptions o{as_real(lr, "lr", 0), as_real(momentum, "momentum", 0), as_flag(nesterov, "nesterov"),
                                 as_real(weight_decay, "weight_decay", 0)};
    o.validate();
    return o;
}

mlpgrad::optim::AdamOptions adam_options(py::handle lr, py::handle beta1, py::handle beta2, py::handle eps,
                                         py::handle weight_decay, py::handle decoupled) {
    mlpgrad::optim::AdamOptions o{as_real(lr, "lr", 0), as_real(beta1, "beta1", 0), as_real(beta2, "beta2", 0),
                                  as_real(eps, "eps", 0), as_real(weight_decay, "weight_decay", 0),
                                  as_flag(decoupled, "decoupled")};
    o.validate();
    return o;
}

FastSignature<8> sgd_update_sig{
    "_sgd_update", {"param", "grad", "velocity", "lr", "momentum", "nesterov", "weight_decay", "step"}, 8, 8};
FastSignature<11> adam_update_sig{
    "_adam_update",
    {"param", "grad", "m", "v", "lr", "beta1", "beta2", "eps", "weight_decay", "decoupled", "step"},
    11,
    11};
FastSignature<4> sgd_check_sig{"_sgd_check", {"lr", "momentum", "nesterov", "weight_decay"}, 4, 4};
FastSignature<6> adam_check_sig{"_adam_check", {"lr", "beta1", "beta2", "eps", "weight_decay", "decoupled"}, 6, 6};

PyObject* sgd_update(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 8> a;
        sgd_update_sig.parse(args, nargs, kwnames, a);
        const auto options = sgd_options(a[3], a[4], a[5], a[6]);
        const std::size_t step = as_step(a[7]);
        const bool momentum = options.momentum != 0;
        UpdateArrays u = momentum ? check_arrays(a[0], a[1], {{"velocity", a[2]}}) : check_arrays(a[0], a[1], {});
        if (!momentum && a[2] != Py_None)
            throw py::value_error("velocity must be None without momentum, got " + type_name(a[2]));
        auto run = [&](auto zero) {
            using T = decltype(zero);
            const auto velocity = momentum ? flat<T>(u.state[0]) : mlpgrad::VectorView<T>{};
            MaybeReleaseGil gil(static_cast<std::size_t>(u.param.size()));
            mlpgrad::optim::sgd_update<T>(flat<T>(u.param), flat<T>(u.grad), velocity, options, step);
        };
        u.dtype == DType::float32 ? run(float{}) : run(double{});
        return py::none();
    });
}

PyObject* adam_update(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 11> a;
        adam_update_sig.parse(args, nargs, kwnames, a);
        const auto options = adam_options(a[4], a[5], a[6], a[7], a[8], a[9]);
        const std::size_t step = as_step(a[10]);
        UpdateArrays u = check_arrays(a[0], a[1], {{"m", a[2]}, {"v", a[3]}});
        auto run = [&](auto zero) {
            using T = decltype(zero);
            MaybeReleaseGil gil(static_cast<std::size_t>(u.param.size()));
            mlpgrad::optim::adam_update<T>(flat<T>(u.param), flat<T>(u.grad), flat<T>(u.state[0]), flat<T>(u.state[1]),
                                           options, step);
        };
        u.dtype == DType::float32 ? run(float{}) : run(double{});
        return py::none();
    });
}

PyObject* sgd_check(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 4> a;
        sgd_check_sig.parse(args, nargs, kwnames, a);
        sgd_options(a[0], a[1], a[2], a[3]);
        return py::none();
    });
}

PyObject* adam_check(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 6> a;
        adam_check_sig.parse(args, nargs, kwnames, a);
        adam_options(a[0], a[1], a[2], a[3], a[4], a[5]);
        return py::none();
    });
}

PyMethodDef optim_functions[] = {
    {"_sgd_update", as_cfunction(&sgd_update), fast_call_flags,
     "_sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay, step, /)\n--\n\n"
     "SGD update number `step` (from 1) of `param` in place (mlpgrad/optim/sgd.hpp); velocity None without "
     "momentum. Private: use mlpgrad.optim.SGD."},
    {"_adam_update", as_cfunction(&adam_update), fast_call_flags,
     "_adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step, /)\n--\n\n"
     "Adam (AdamW if decoupled) update number `step` (from 1) of `param` in place (mlpgrad/optim/adam.hpp). "
     "Private: use mlpgrad.optim.Adam."},
    {"_sgd_check", as_cfunction(&sgd_check), fast_call_flags,
     "_sgd_check(lr, momentum, nesterov, weight_decay, /)\n--\n\nValueError unless the SGD options are in range."},
    {"_adam_check", as_cfunction(&adam_check), fast_call_flags,
     "_adam_check(lr, beta1, beta2, eps, weight_decay, decoupled, /)\n--\n\nValueError unless the Adam options "
     "are in range."},
};

}  // namespace

void register_optim(py::module_& m) {
    sgd_update_sig.intern();
    adam_update_sig.intern();
    sgd_check_sig.intern();
    adam_check_sig.intern();
    py::object module_name = m.attr("__name__");
    for (auto& def : optim_functions) {
        auto f = py::reinterpret_steal<py::object>(PyCFunction_NewEx(&def, nullptr, module_name.ptr()));
        if (!f) throw py::error_already_set();
        m.attr(def.ml_name) = f;
    }
}

}  // namespace mlpgrad_python
