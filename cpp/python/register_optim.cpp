// The optimiser updates for mlpgrad.optim: private module functions that update one parameter array in
// place from its gradient and its state arrays (_sgd_update, _adam_update), or every parameter array of a
// network in one call (_sgd_step, _adam_step: what optim.SGD.step and optim.Adam.step call, one call per
// step instead of one per array) (mlpgrad/optim/). They take CPython's fast calling convention
// (fast_call.hpp), check every array before writing any, and release the GIL for large updates.
// register_optim() adds them to the module.
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
// Held as py::object: a default-constructed py::array would allocate an empty NumPy array.
struct UpdateArrays {
    DType dtype = DType::float64;
    py::object param, grad;
    std::array<py::object, 2> state;  // velocity, or m and v
};

// The Python names of one update's arrays in messages: "param", "grad", "velocity" for the per-array
// functions; "params[i]", "grads[i]", "velocities[i]" for the whole-step ones. Built only for a message.
struct ArrayNames {
    const char* param;
    const char* grad;
    std::size_t index = mlpgrad::detail::no_index;

    std::string operator()(const char* what) const { return mlpgrad::detail::argument_name(what, index); }
};

using npy_api = py::detail::npy_api;
constexpr int written_flags = c_contiguous_and_aligned | npy_api::NPY_ARRAY_WRITEABLE_;

// NumPy's float32 and float64 descriptors (built-in singletons), looked up once and kept.
PyObject* float_descriptor(DType d) {
    static PyObject* const f32 = py::dtype::of<float>().release().ptr();
    static PyObject* const f64 = py::dtype::of<double>().release().ptr();
    return d == DType::float32 ? f32 : f64;
}

// The common case in a few loads, without building a name: `obj` is an ndarray with the flags and, when
// `like` is given, its descriptor object and shape. Anything else takes the named checks below, which
// accept what this misses (an equivalent descriptor) and raise for the rest.
const py::detail::PyArray_Proxy* plainly_fine(PyObject* obj, int flags, const py::detail::PyArray_Proxy* like) {
    if (!npy_api::get().PyArray_Check_(obj)) return nullptr;
    const auto* p = py::detail::array_proxy(obj);
    if ((p->flags & flags) != flags) return nullptr;
    if (like == nullptr) return p;
    if (p->descr != like->descr || p->nd != like->nd) return nullptr;
    for (int d = 0; d < p->nd; ++d)
        if (p->dimensions[d] != like->dimensions[d]) return nullptr;
    return p;
}

py::array update_array(py::handle obj, const std::string& what) {
    py::array a = require_ndarray(obj, what, "the update is made in place in the caller's arrays, never in a copy");
    require_layout(a, what);
    return a;
}

py::object require_like_param(py::handle obj, const UpdateArrays& u, const ArrayNames& names, const char* what,
                              bool written) {
    if (plainly_fine(obj.ptr(), written ? written_flags : c_contiguous_and_aligned, py::detail::array_proxy(u.param.ptr())))
        return py::reinterpret_borrow<py::object>(obj);
    const py::array param = py::reinterpret_borrow<py::array>(u.param);
    py::array a = update_array(obj, names(what));
    const DType d = float_dtype(a, names(what));
    if (d != u.dtype)
        throw py::type_error(names(what) + " has dtype " + dtype_name(d) + " but " + names(names.param) + " has " +
                             dtype_name(u.dtype) + "; an update's arrays must share one dtype");
    const bool same_shape = a.ndim() == param.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), param.shape());
    if (!same_shape)
        throw py::value_error(names(what) + " has shape " + shape_string(a) + " but " + names(names.param) +
                              " has shape " + shape_string(param) + "; expected the same shape");
    if (written && !a.writeable())
        throw py::value_error(names(what) + " is read-only; the update writes it in place");
    return a;
}

// Checks the arrays (types, dtype, shapes, layout, writeability); overlaps are the core's check. With
// `first` (the first parameter of a whole step), the parameter must have its dtype.
UpdateArrays check_arrays(py::handle param, py::handle grad,
                          std::initializer_list<std::pair<const char*, py::handle>> state,
                          const ArrayNames& names = {"param", "grad"}, const UpdateArrays* first = nullptr) {
    UpdateArrays u;
    const auto* p = plainly_fine(param.ptr(), written_flags, nullptr);
    if (p && (p->descr == float_descriptor(DType::float32) || p->descr == float_descriptor(DType::float64))) {
        u.param = py::reinterpret_borrow<py::object>(param);
        u.dtype = p->descr == float_descriptor(DType::float32) ? DType::float32 : DType::float64;
    } else {
        const py::array a = update_array(param, names(names.param));
        u.dtype = float_dtype(a, names(names.param));
        if (!a.writeable()) throw py::value_error(names(names.param) + " is read-only; the update writes it in place");
        u.param = a;
    }
    if (first && u.dtype != first->dtype)
        throw py::type_error(names(names.param) + " has dtype " + dtype_name(u.dtype) + " but " +
                             std::string(names.param) + "[0] has " + dtype_name(first->dtype) +
                             "; a step's arrays must share one dtype");
    u.grad = require_like_param(grad, u, names, names.grad, false);
    std::size_t k = 0;
    for (const auto& [name, obj] : state) u.state[k++] = require_like_param(obj, u, names, name, true);
    return u;
}

// The elements of a checked array (C-contiguous) as one vector.
template <class T>
mlpgrad::VectorView<T> flat(const py::object& a) {
    const auto* p = py::detail::array_proxy(a.ptr());
    std::size_t n = 1;
    for (int d = 0; d < p->nd; ++d) n *= static_cast<std::size_t>(p->dimensions[d]);
    return {reinterpret_cast<T*>(p->data), n};
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
FastSignature<8> sgd_step_sig{
    "_sgd_step", {"params", "grads", "velocities", "lr", "momentum", "nesterov", "weight_decay", "step"}, 8, 8};
FastSignature<11> adam_step_sig{
    "_adam_step",
    {"params", "grads", "m", "v", "lr", "beta1", "beta2", "eps", "weight_decay", "decoupled", "step"},
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
            MaybeReleaseGil gil(flat<T>(u.param).size);
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
            MaybeReleaseGil gil(flat<T>(u.param).size);
            mlpgrad::optim::adam_update<T>(flat<T>(u.param), flat<T>(u.grad), flat<T>(u.state[0]), flat<T>(u.state[1]),
                                           options, step);
        };
        u.dtype == DType::float32 ? run(float{}) : run(double{});
        return py::none();
    });
}

// The items of a step's tuple (or list) of arrays, `count` of them (count 0: any number).
std::vector<py::handle> step_items(py::handle obj, const char* what, std::size_t count) {
    if (!PyTuple_Check(obj.ptr()) && !PyList_Check(obj.ptr()))
        throw py::type_error(std::string(what) + " must be a tuple of numpy.ndarray, got " + type_name(obj));
    std::vector<py::handle> items = items_of(obj);
    if (count && items.size() != count)
        throw py::value_error(std::string(what) + " holds " + std::to_string(items.size()) + " arrays but params holds " +
                              std::to_string(count) + "; expected one per parameter");
    return items;
}

// Every parameter's arrays of a whole step, checked: the same checks as the per-array functions, with the
// arrays named by their place in the tuples, and one dtype for all.
std::vector<UpdateArrays> check_step(py::handle params, py::handle grads,
                                     std::initializer_list<std::pair<const char*, py::handle>> states) {
    const std::vector<py::handle> p = step_items(params, "params", 0);
    if (p.empty()) throw py::value_error("params holds no arrays; a step updates at least one parameter");
    const std::vector<py::handle> g = step_items(grads, "grads", p.size());
    std::vector<std::vector<py::handle>> s;
    for (const auto& [name, obj] : states) s.push_back(step_items(obj, name, p.size()));
    std::vector<UpdateArrays> arrays;
    arrays.reserve(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
        const ArrayNames names{"params", "grads", i};
        const UpdateArrays* first = arrays.empty() ? nullptr : &arrays.front();
        if (s.empty()) {
            arrays.push_back(check_arrays(p[i], g[i], {}, names, first));
        } else if (s.size() == 1) {
            arrays.push_back(check_arrays(p[i], g[i], {{states.begin()->first, s[0][i]}}, names, first));
        } else {
            arrays.push_back(check_arrays(p[i], g[i], {{states.begin()[0].first, s[0][i]}, {states.begin()[1].first, s[1][i]}},
                                          names, first));
        }
    }
    return arrays;
}

template <class Views>
std::size_t total_size(const Views& views) {
    std::size_t n = 0;
    for (const auto& v : views) n += v.param.size;
    return n;
}

PyObject* sgd_step(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 8> a;
        sgd_step_sig.parse(args, nargs, kwnames, a);
        const auto options = sgd_options(a[3], a[4], a[5], a[6]);
        const std::size_t step = as_step(a[7]);
        const bool momentum = options.momentum != 0;
        if (!momentum && a[2] != Py_None)
            throw py::value_error("velocities must be None without momentum, got " + type_name(a[2]));
        const std::vector<UpdateArrays> arrays =
            momentum ? check_step(a[0], a[1], {{"velocities", a[2]}}) : check_step(a[0], a[1], {});
        auto run = [&](auto zero) {
            using T = decltype(zero);
            std::vector<mlpgrad::optim::SgdArrays<T>> views;
            views.reserve(arrays.size());
            for (const UpdateArrays& u : arrays)
                views.push_back({flat<T>(u.param), flat<T>(u.grad),
                                 momentum ? flat<T>(u.state[0]) : mlpgrad::VectorView<T>{}});
            MaybeReleaseGil gil(total_size(views));  // once for the whole step
            mlpgrad::optim::sgd_step<T>(views, options, step);
        };
        arrays.front().dtype == DType::float32 ? run(float{}) : run(double{});
        return py::none();
    });
}

PyObject* adam_step(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return fast_call([&]() -> py::object {
        std::array<PyObject*, 11> a;
        adam_step_sig.parse(args, nargs, kwnames, a);
        const auto options = adam_options(a[4], a[5], a[6], a[7], a[8], a[9]);
        const std::size_t step = as_step(a[10]);
        const std::vector<UpdateArrays> arrays = check_step(a[0], a[1], {{"m", a[2]}, {"v", a[3]}});
        auto run = [&](auto zero) {
            using T = decltype(zero);
            std::vector<mlpgrad::optim::AdamArrays<T>> views;
            views.reserve(arrays.size());
            for (const UpdateArrays& u : arrays)
                views.push_back({flat<T>(u.param), flat<T>(u.grad), flat<T>(u.state[0]), flat<T>(u.state[1])});
            MaybeReleaseGil gil(total_size(views));
            mlpgrad::optim::adam_step<T>(views, options, step);
        };
        arrays.front().dtype == DType::float32 ? run(float{}) : run(double{});
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
    {"_sgd_step", as_cfunction(&sgd_step), fast_call_flags,
     "_sgd_step(params, grads, velocities, lr, momentum, nesterov, weight_decay, step, /)\n--\n\n"
     "_sgd_update of every array of `params` (a tuple) from the matching one of `grads` (and `velocities`, a "
     "tuple, or None without momentum) in one call: every array checked before any is written, the GIL "
     "released once. Private: use mlpgrad.optim.SGD."},
    {"_adam_step", as_cfunction(&adam_step), fast_call_flags,
     "_adam_step(params, grads, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step, /)\n--\n\n"
     "_adam_update of every array of `params` (a tuple) with the matching ones of `grads`, `m` and `v` in one "
     "call: every array checked before any is written, the GIL released once. Private: use mlpgrad.optim.Adam."},
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
    sgd_step_sig.intern();
    adam_step_sig.intern();
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
