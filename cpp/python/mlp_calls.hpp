// The per-call work of mlpgrad.MLP (declared in mlp_object.hpp): forward, backward, value_and_grad, the batch
// calls and new_gradients, each for the network's dtype. Every argument is checked, and every allocation
// made, before the core reads the network or writes `out`; the GIL is released while it computes.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <mlpgrad/mlpgrad.hpp>

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "aligned_arrays.hpp"
#include "checks.hpp"
#include "threads.hpp"
#include "conversions.hpp"
#include "gil.hpp"
#include "gradients_object.hpp"
#include "mlp_object.hpp"
#include "thread_state.hpp"

namespace mlpgrad_python {

template <class T>
py::array_t<T> zeros(std::vector<py::ssize_t> shape) {
    py::array_t<T> a(shape);
    if (a.size()) std::memset(a.mutable_data(), 0, static_cast<std::size_t>(a.nbytes()));
    return a;
}

template <class T>
py::array_t<T> read_only_copy(mlpgrad::VectorView<const T> v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size), v.data);
    a.attr("flags").attr("writeable") = false;
    return a;
}

inline py::object MLP::forward(py::handle x) {
    return visit([&](auto& m) -> py::object {
        if (vector_output_) return vector_forward_impl(m, x);
        return py::float_(forward_impl(m, x));
    });
}

inline py::list MLP::recorded(bool want_z) {
    return visit([&](auto& m) { return recorded_impl(m, want_z); });
}

inline py::object MLP::backward(py::handle dy, py::handle out) {
    return visit([&](auto& m) { return backward_impl(m, dy, out); });
}

inline py::object MLP::value_and_grad(py::handle x, py::handle dy, py::handle out) {
    return visit([&](auto& m) {
        return vector_output_ ? vector_value_and_grad_impl(m, x, dy, out) : value_and_grad_impl(m, x, dy, out);
    });
}

inline py::object MLP::new_gradients(py::handle batch, py::handle x) {
    const auto b = parse_batch(batch);
    const bool with_x = as_flag(x, "x", true);
    if (!with_x && !b)
        throw py::value_error("x=False needs batch=B: single-example gradients always hold dŷ/dx (the backward pass "
                              "computes it on the way); parameter-only gradients are for the batch calls, "
                              "net.new_gradients(batch=B, x=False), and fit any batch size");
    if (b) require_batch_fits(*b, "batch");
    return visit([&](auto& m) { return new_gradients_impl(m, b, with_x); });
}

inline py::object MLP::forward_batch(py::handle X) {
    return visit([&](auto& m) { return batch_impl(m, X, py::handle(), py::handle(), BatchCall::forward); });
}

inline py::object MLP::value_and_grad_batch(py::handle X, py::handle dy, py::handle out) {
    return visit([&](auto& m) { return batch_impl(m, X, dy, out, BatchCall::value_and_grad); });
}

inline py::object MLP::backward_batch(py::handle dy, py::handle out) {
    return visit([&](auto& m) { return batch_impl(m, py::handle(), dy, out, BatchCall::backward); });
}

template <class T>
py::array_t<T> MLP::as_x(Model<T>& m, py::handle x) {
    auto a = as_input<T>(x, "x");
    if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != m.net.width(0))
        throw py::value_error("x has shape " + shape_string(a) + " but the network expects " +
                              shape_string({m.net.width(0)}));
    return a;
}

template <class T>
double MLP::forward_impl(Model<T>& m, py::handle x) {
    auto xa = as_x(m, x);
    auto& tape = m.state().tape;
    require_unchanged(nullptr);
    const auto pool = single_example_pool();
    MaybeReleaseGil gil(work(0));
    return mlpgrad::forward(m.net, {xa.data(), m.net.width(0)}, tape, pool.get());
}

// For m outputs: ŷ as a new array of shape (m,).
template <class T>
py::object MLP::vector_forward_impl(Model<T>& m, py::handle x) {
    auto xa = as_x(m, x);
    py::array_t<T> yhat(static_cast<py::ssize_t>(m.net.outputs()));
    auto& tape = m.state().tape;
    require_unchanged(nullptr);
    const auto pool = single_example_pool();
    {
        MaybeReleaseGil gil(work(0));
        mlpgrad::forward(m.net, {xa.data(), m.net.width(0)}, tape, {yhat.mutable_data(), m.net.outputs()}, pool.get());
    }
    return std::move(yhat);
}

// For m outputs: dy of shape (m,), or ones (the gradient of Σ_j ŷ_j) when not given.
template <class T>
py::array_t<T> MLP::as_dy(py::handle dy_obj) {
    const std::size_t n = outputs();
    if (!dy_obj || dy_obj.is_none()) {
        py::array_t<T> ones(static_cast<py::ssize_t>(n));
        std::fill(ones.mutable_data(), ones.mutable_data() + n, T(1));
        return ones;
    }
    auto dy = as_input<T>(dy_obj, "dy");
    if (dy.ndim() != 1 || static_cast<std::size_t>(dy.shape(0)) != n)
        throw py::value_error("dy has shape " + shape_string(dy) + " but the network has " + std::to_string(n) +
                              " outputs (output_shape " + shape_string({n}) + "); expected " + shape_string({n}));
    return dy;
}

// `out` checked and ready, or fresh zeroed gradients stored into `out`.
template <class T>
GradientsObject& MLP::out_or_new(Model<T>& m, py::object& out, std::optional<std::size_t> batch) {
    if (GradientsObject* g = check_out(m, out, batch)) return *g;
    out = new_gradients_impl(m, batch);
    return *out.cast<GradientsObject*>();
}

// Every argument is checked before anything runs, so a bad one leaves the tape and `out` untouched.
template <class T>
py::object MLP::value_and_grad_impl(Model<T>& m, py::handle x, py::handle dy_obj, py::handle out_obj) {
    const T dy = static_cast<T>(as_real(dy_obj, "dy", 1.0));
    auto xa = as_x(m, x);
    py::object out = py::reinterpret_borrow<py::object>(out_obj);
    const GradientsObject& g = out_or_new(m, out, std::nullopt);
    const auto& view = g.template views<T>().single;
    auto& tape = m.state().tape;
    require_unchanged(&g);
    const auto pool = single_example_pool();
    double yhat;
    {
        MaybeReleaseGil gil(work(0));
        yhat = mlpgrad::forward(m.net, {xa.data(), m.net.width(0)}, tape, pool.get());
        mlpgrad::unchecked::backward(m.net, tape, dy, view, pool.get());
    }
    return py::make_tuple(yhat, out);
}

// For m outputs: (ŷ of shape (m,), gradients of dyᵀŷ).
template <class T>
py::object MLP::vector_value_and_grad_impl(Model<T>& m, py::handle x, py::handle dy_obj, py::handle out_obj) {
    auto dy = as_dy<T>(dy_obj);
    auto xa = as_x(m, x);
    py::object out = py::reinterpret_borrow<py::object>(out_obj);
    const GradientsObject& g = out_or_new(m, out, std::nullopt);
    read_apart(dy, g);
    const auto& view = g.template views<T>().single;
    const std::size_t n = m.net.outputs();
    py::array_t<T> yhat(static_cast<py::ssize_t>(n));
    auto& tape = m.state().tape;
    require_unchanged(&g);
    const auto pool = single_example_pool();
    {
        MaybeReleaseGil gil(work(0));
        mlpgrad::forward(m.net, {xa.data(), m.net.width(0)}, tape, {yhat.mutable_data(), n}, pool.get());
        mlpgrad::unchecked::backward(m.net, tape, mlpgrad::VectorView<const T>{dy.data(), n}, view, pool.get());
    }
    return py::make_tuple(std::move(yhat), out);
}

template <class T>
py::list MLP::recorded_impl(Model<T>& m, bool want_z) {
    ThreadState<T>* s = m.find_state();
    if (!s || !s->tape.recorded())
        throw std::runtime_error("no forward pass recorded in this thread yet; call net.forward(x) first");
    py::list l;
    const std::size_t T_ = m.net.depth();
    if (want_z)
        for (std::size_t t = 0; t <= T_; ++t) l.append(read_only_copy<T>(std::as_const(s->tape).z(t)));
    else
        for (std::size_t t = 1; t <= T_; ++t) l.append(read_only_copy<T>(std::as_const(s->tape).u(t)));
    return l;
}

template <class T>
py::object MLP::backward_impl(Model<T>& m, py::handle dy_obj, py::handle out_obj) {
    // One output: dy is a number; m outputs: an array (m,) (an optional, so the scalar path allocates none).
    std::optional<py::array_t<T>> dy_vector;
    T dy = T(0);
    if (vector_output_)
        dy_vector.emplace(as_dy<T>(dy_obj));
    else
        dy = static_cast<T>(as_real(dy_obj, "dy", 1.0));
    py::object out = py::reinterpret_borrow<py::object>(out_obj);
    check_out(m, out, std::nullopt);
    ThreadState<T>* s = m.find_state();
    if (!s || !s->tape.recorded())
        throw std::runtime_error("backward() needs a forward pass first: call net.forward(x) in this thread");
    const GradientsObject& g = out_or_new(m, out, std::nullopt);
    if (dy_vector) read_apart(*dy_vector, g);
    const auto& view = g.template views<T>().single;
    require_unchanged(&g);
    const auto pool = single_example_pool();
    {
        MaybeReleaseGil gil(work(0));
        if (dy_vector)
            mlpgrad::unchecked::backward(m.net, s->tape, mlpgrad::VectorView<const T>{dy_vector->data(), m.net.outputs()},
                                         view, pool.get());
        else
            mlpgrad::unchecked::backward(m.net, s->tape, dy, view, pool.get());
    }
    return out;
}

inline std::optional<std::size_t> MLP::parse_batch(py::handle batch) { return batch_size_or_none(batch); }

// with_x = false (batch set): parameter-only gradients, with no x and no batch size (they fit any).
template <class T>
py::object MLP::new_gradients_impl(Model<T>& m, std::optional<std::size_t> batch, bool with_x) {
    const auto& K = m.net.widths();
    const std::size_t T_ = m.net.depth();
    auto n = [](std::size_t v) { return static_cast<py::ssize_t>(v); };
    std::optional<AlignedAllocations> aligned(std::in_place);  // every array below starts on a cache line
    std::vector<py::array> weights;
    for (std::size_t t = 0; t < T_; ++t) weights.push_back(zeros<T>({n(K[t + 1]), n(K[t])}));
    // α's gradient is shaped like α, β's like β (0-d for one output).
    const std::size_t n_out = m.net.outputs();
    py::array alpha = vector_output_ ? zeros<T>({n(K[T_]), n(n_out)}) : zeros<T>({n(K[T_])});
    std::optional<std::vector<py::array>> biases;
    if (biases_) {
        biases.emplace();
        for (std::size_t t = 1; t <= T_; ++t) biases->push_back(zeros<T>({n(K[t])}));
    }
    std::optional<py::array> output_bias;
    if (output_bias_) output_bias = vector_output_ ? zeros<T>({n(n_out)}) : zeros<T>({});
    std::optional<py::array> x;
    if (with_x) x = batch ? zeros<T>({n(*batch), n(K[0])}) : zeros<T>({n(K[0])});
    std::optional<std::vector<py::array>> z, u;
    if (!batch) {
        z.emplace();
        u.emplace();
        for (std::size_t t = 0; t <= T_; ++t) z->push_back(zeros<T>({n(K[t])}));
        for (std::size_t t = 1; t <= T_; ++t) u->push_back(zeros<T>({n(K[t])}));
    }
    aligned.reset();
    // Fresh arrays made to fit: no need to re-check them, nor against this network.
    GradientsObject g(GradientsObject::fresh, std::move(weights), std::move(alpha), std::move(x), std::move(z),
                      std::move(u), std::move(biases), std::move(output_bias), dtype_, K,
                      with_x ? batch : std::nullopt);
    g.checked_against = id_;
    return py::cast(std::move(g));
}

// dy as given, (B,) for one output and (B, m) for m outputs, or ones when not given (then `dy` is filled here).
template <class T>
void MLP::require_batch_dy(py::array_t<T>& dy, bool given, std::size_t B, const char* examples) const {
    std::vector<std::size_t> shape{B};
    if (vector_output_) shape.push_back(outputs());
    if (!given) {
        dy = vector_output_ ? py::array_t<T>({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(outputs())})
                            : py::array_t<T>(static_cast<py::ssize_t>(B));
        std::fill(dy.mutable_data(), dy.mutable_data() + dy.size(), T(1));
        return;
    }
    bool fits = static_cast<std::size_t>(dy.ndim()) == shape.size();
    for (std::size_t d = 0; fits && d < shape.size(); ++d) fits = static_cast<std::size_t>(dy.shape(d)) == shape[d];
    if (!fits)
        throw py::value_error("dy has shape " + shape_string(dy) + " but " + examples + " " + std::to_string(B) +
                              " examples" + (vector_output_ ? " of " + std::to_string(outputs()) + " outputs" : "") +
                              "; expected " + shape_string(shape));
}

// dy is still read while gradients are written: a dy that aliases an out array is read from a copy.
template <class T>
void MLP::read_apart(py::array_t<T>& dy, const GradientsObject& g) {
    if (!g.overlaps(byte_range(dy))) return;
    py::array_t<T> copy(std::vector<py::ssize_t>(dy.shape(), dy.shape() + dy.ndim()));
    std::memcpy(copy.mutable_data(), dy.data(), static_cast<std::size_t>(dy.nbytes()));
    dy = std::move(copy);
}

// The three batch calls, one path: forward_batch (forward pass only), value_and_grad_batch (both passes) and
// backward_batch (the backward pass at this thread's last recorded batch, from its batch tape). One call site
// per core pass keeps them inlined here, and the checks are the same by construction.
template <class T>
py::object MLP::batch_impl(Model<T>& m, py::handle X_obj, py::handle dy_obj, py::handle out_obj, BatchCall call) {
    const bool forward = call != BatchCall::backward, with_grad = call != BatchCall::forward;
    const bool given = with_grad && dy_obj && !dy_obj.is_none();
    std::optional<py::array_t<T>> X;  // (an empty py::array_t would cost an allocation)
    py::array_t<T> dy;
    mlpgrad::BatchTape<T>* recorded = nullptr;
    std::size_t B = 0;
    if (forward) {
        X.emplace(as_input<T>(X_obj, "X"));
        if (X->ndim() != 2 || static_cast<std::size_t>(X->shape(1)) != m.net.width(0))
            throw py::value_error("X has shape " + shape_string(*X) + " but the network expects (B, " +
                                  std::to_string(m.net.width(0)) + ")");
        B = static_cast<std::size_t>(X->shape(0));
        require_batch_fits(B, "X");
        if (given) dy = as_input<T>(dy_obj, "dy");
    } else {
        if (given) dy = as_input<T>(dy_obj, "dy");  // may run user code (__array__), so before the tape is read
        ThreadState<T>* s = m.find_state();
        if (!s || !s->batch_tape.recorded())
            throw std::runtime_error("backward_batch() needs a batch forward pass first: call net.forward_batch(X) "
                                     "in this thread");
        recorded = &s->batch_tape;
        B = recorded->batch();
    }
    py::object out = py::reinterpret_borrow<py::object>(out_obj);
    const GradientsObject* g = nullptr;
    if (with_grad) {
        require_batch_dy(dy, given, B, forward ? "X holds" : "this thread's last forward_batch(X) had");
        g = &out_or_new(m, out, B);
        if (given) read_apart(dy, *g);
    }
    std::optional<py::array_t<T>> yhat;  // (B,) for one output, (B, m) for m
    const std::size_t n_out = m.net.outputs();
    if (forward && vector_output_)
        yhat.emplace(std::vector<py::ssize_t>{static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(n_out)});
    else if (forward)
        yhat.emplace(static_cast<py::ssize_t>(B));
    auto& tape = forward ? m.state().batch_tape : *recorded;
    require_unchanged(g);
    // An allocation above may have run a finalizer that called forward_batch with another batch in this thread.
    if (!forward && (!tape.recorded() || tape.batch() != B))
        throw std::runtime_error("this thread's batch tape changed during backward_batch() (a callback ran "
                                 "forward_batch); call backward_batch() again");
    const auto pool = batch_pool();  // (with the GIL, which guards the pool's state; held until the pass ends)
    {
        MaybeReleaseGil gil(work(B));
        if (forward)
            mlpgrad::forward_batch(m.net, mlpgrad::MatrixView<const T>{X->data(), B, m.net.width(0)}, tape,
                                   mlpgrad::MatrixView<T>{yhat->mutable_data(), B, n_out}, pool.get());
        if (g)
            mlpgrad::unchecked::backward_batch(m.net, tape, mlpgrad::MatrixView<const T>{dy.data(), B, n_out},
                                               g->template views<T>().batch, pool.get());
    }
    if (call == BatchCall::forward) return std::move(*yhat);
    if (call == BatchCall::backward) return out;
    return py::make_tuple(std::move(*yhat), out);
}

}  // namespace mlpgrad_python
