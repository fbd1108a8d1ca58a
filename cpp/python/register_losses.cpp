// The fused loss kernels for mlpgrad.losses (mlpgrad/losses/): private module functions that take the arrays
// mlpgrad.losses has already validated and converted, check their layout again (a bad call is an error,
// never a crash), and write a new dy. They keep the GIL: they are short (a digits mini-batch takes ~10 µs),
// and holding it keeps the labels from changing between their check and their use.
#include "register_losses.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/losses/softmax_cross_entropy.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "checks.hpp"

namespace mlpgrad_python {
namespace {

template <class T>
py::tuple softmax_cross_entropy(const py::array& yhat, const py::array& y, const py::object& weights) {
    const std::size_t B = static_cast<std::size_t>(yhat.shape(0)), m = static_cast<std::size_t>(yhat.shape(1));
    const T* c = nullptr;
    if (!weights.is_none()) {
        const py::array w = require_ndarray(weights, "weights", "private: mlpgrad.losses passes its own array");
        require_dtype(w, dtype_of<T>(), "weights", "yhat has", "the loss takes one dtype");
        require_ndim(w, 1, "weights", "(B,)");
        require_layout(w, "weights");
        if (static_cast<std::size_t>(w.shape(0)) != B)
            throw py::value_error("weights has shape " + shape_string(w) + "; expected (" + std::to_string(B) + ",)");
        c = static_cast<const T*>(w.data());
    }
    if (y.ndim() != 1) {
        require_dtype(y, dtype_of<T>(), "y", "yhat has", "the loss takes one dtype");
        require_ndim(y, 2, "y", "(B, m)");
        require_layout(y, "y");
    } else if (!y.dtype().equal(py::dtype::of<std::ptrdiff_t>()) || !is_c_contiguous_and_aligned(y)) {
        throw py::type_error("y of shape " + shape_string(y) + " must be a C-contiguous array of numpy.intp labels, "
                             "got dtype " + dtype_string(y));
    }
    py::array_t<T> dy({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(m)});
    const mlpgrad::MatrixView<const T> Y(static_cast<const T*>(yhat.data()), B, m);
    const mlpgrad::MatrixView<T> dY(dy.mutable_data(), B, m);
    T mean;
    try {
        if (y.ndim() == 1) {
            if (static_cast<std::size_t>(y.shape(0)) != B)
                throw py::value_error("y has shape " + shape_string(y) + "; expected (" + std::to_string(B) + ",)");
            mean = mlpgrad::losses::softmax_cross_entropy(Y, static_cast<const std::ptrdiff_t*>(y.data()), c, dY);
        } else {
            const mlpgrad::MatrixView<const T> target(static_cast<const T*>(y.data()), static_cast<std::size_t>(y.shape(0)),
                                                      static_cast<std::size_t>(y.shape(1)));
            mean = mlpgrad::losses::softmax_cross_entropy(Y, target, c, dY);
        }
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    }
    return py::make_tuple(static_cast<double>(mean), dy);
}

}  // namespace

void register_losses(py::module_& m) {
    m.def(
        "_softmax_cross_entropy",
        [](py::handle yhat_obj, py::handle y_obj, py::object weights) {
            const py::array yhat = require_ndarray(yhat_obj, "yhat", "private: mlpgrad.losses passes its own array");
            const py::array y = require_ndarray(y_obj, "y", "private: mlpgrad.losses passes its own array");
            const DType dtype = float_dtype(yhat, "yhat");
            require_ndim(yhat, 2, "yhat", "(B, m)");
            require_layout(yhat, "yhat");
            return dtype == DType::float32 ? softmax_cross_entropy<float>(yhat, y, weights)
                                           : softmax_cross_entropy<double>(yhat, y, weights);
        },
        py::arg("yhat"), py::arg("y"), py::arg("weights"),
        "_softmax_cross_entropy(yhat, y, weights)\n--\n\n(mean loss, dy) of softmax cross-entropy on logits yhat "
        "(B, m), for y integer labels (B,) of dtype intp or probabilities (B, m) of yhat's dtype, and weights c_b "
        "(B,) that sum to 1 or None for 1/B (mlpgrad/losses/softmax_cross_entropy.hpp). Private: use "
        "mlpgrad.losses.softmax_cross_entropy, which checks the values.");
}

}  // namespace mlpgrad_python
