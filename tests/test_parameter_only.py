"""Parameter-only gradients (``new_gradients(batch=B, x=False)``, ``Gradients(weights, alpha)``) and
``net.backward_batch``: bit-for-bit equal to the full batch gradients, any batch size, clear errors."""
import threading

import numpy as np
import pytest

import mlpgrad
from conftest import (
    ACTIVATIONS, SENTINEL, assert_close, build_net, iter_arrays, make_inputs, make_network, oracle_batch, out_spec,
    tolerance,
)

WIDTHS = (5, 7, 4, 3)
BATCHES = (1, 2, 5, 17, 64)


def same_parameter_bits(got, expected):
    assert len(got.weights) == len(expected.weights)
    for a, b in zip(got.weights, expected.weights):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(got.alpha, expected.alpha)


def same_bits(got, expected):
    same_parameter_bits(got, expected)
    assert np.array_equal(got.x, expected.x) and got.batch == expected.batch


def parameter_only_spec(widths, dtype):
    spec = out_spec(widths, dtype, batch=1, with_zu=False)
    del spec["x"]
    return spec


def untouched(g):
    return all(np.all(a == SENTINEL) for a in iter_arrays(g))


@pytest.fixture(params=ACTIVATIONS)
def activation(request):
    return request.param


# ----------------------------------------------------------------------------- backward_batch
@pytest.mark.parametrize("B", BATCHES)
def test_backward_batch_equals_value_and_grad_batch(rng, dtype, activation, B):
    net, _, _ = build_net(rng, WIDTHS, activation, dtype)
    X = make_inputs(rng, WIDTHS[0], dtype, batch=B)
    dy = rng.standard_normal(B).astype(dtype)
    for d in (None, dy):
        yhat, expected = net.value_and_grad_batch(X, d)
        assert np.array_equal(net.forward_batch(X), yhat)
        same_bits(net.backward_batch(d), expected)
        out = net.new_gradients(batch=B)
        assert net.backward_batch(d, out=out) is out
        same_bits(out, expected)
        same_bits(net.backward_batch(dy=d, out=out), expected)  # the tape is not used up by a backward pass


def test_backward_batch_uses_the_last_batch_forward_pass(rng, dtype):
    net, _, _ = build_net(rng, WIDTHS, "tanh", dtype)
    X1, X2 = (make_inputs(rng, WIDTHS[0], dtype, batch=B) for B in (3, 6))
    net.forward_batch(X1)
    _, from_vgb = net.value_and_grad_batch(X2)  # records its forward pass too
    same_bits(net.backward_batch(), from_vgb)
    net.forward(X1[0])  # the single-example tape is another tape
    same_bits(net.backward_batch(), from_vgb)
    with pytest.raises(ValueError):
        net.forward_batch(X1[:, :2])  # refused before the tape is touched
    same_bits(net.backward_batch(), from_vgb)


def test_backward_batch_before_any_batch_forward_pass(rng, dtype):
    net, _, _ = build_net(rng, WIDTHS, "relu", dtype)
    net.forward(make_inputs(rng, WIDTHS[0], dtype))
    out = mlpgrad.Gradients(**out_spec(WIDTHS, dtype, batch=2))
    with pytest.raises(RuntimeError, match=r"backward_batch\(\) needs a batch forward pass first.*forward_batch"):
        net.backward_batch(out=out)
    with pytest.raises(RuntimeError, match="forward_batch"):
        net.backward_batch(np.ones(2, dtype))
    assert untouched(out)


def test_backward_batch_checks_dy_and_out_before_writing(rng, dtype):
    net, weights, alpha = build_net(rng, WIDTHS, "softplus", dtype)
    net.forward_batch(make_inputs(rng, WIDTHS[0], dtype, batch=4))
    out = mlpgrad.Gradients(**out_spec(WIDTHS, dtype, batch=4))
    bad_dy = [np.ones(3, dtype), np.ones((4, 1), dtype), np.ones(5, dtype)]
    for dy in bad_dy:
        with pytest.raises(ValueError, match=r"dy has shape .* but this thread's last forward_batch\(X\) had 4 "
                                             r"examples; expected \(4,\)"):
            net.backward_batch(dy, out=out)
    with pytest.raises(TypeError, match="dy"):
        net.backward_batch("ones", out=out)
    with pytest.raises(ValueError, match=r"out.x has shape \(3, 5\) but the batch has 4 examples"):
        net.backward_batch(out=mlpgrad.Gradients(**out_spec(WIDTHS, dtype, batch=3)))
    with pytest.raises(ValueError, match="single-example gradients"):
        net.backward_batch(out=net.new_gradients())
    other = (WIDTHS[0], 6, 4, 3)  # another network's gradients
    for spec in (out_spec(other, dtype, batch=4), parameter_only_spec(other, dtype)):
        g = mlpgrad.Gradients(**spec)
        with pytest.raises(ValueError, match=r"out\.weights"):
            net.backward_batch(out=g)
        assert untouched(g)
    wrong_dtype = np.float32 if dtype == np.float64 else np.float64
    with pytest.raises(TypeError, match="out holds"):
        net.backward_batch(out=mlpgrad.Gradients(**parameter_only_spec(WIDTHS, wrong_dtype)))
    with pytest.raises(TypeError, match="out must be a mlpgrad.Gradients"):
        net.backward_batch(out={})
    with pytest.raises(TypeError):
        net.backward_batch(None, out)  # out is keyword-only
    assert untouched(out)
    assert all(w is net.weights[t] for t, w in enumerate(weights)) and net.alpha is alpha


def test_backward_batch_dy_aliasing_out(rng, dtype):
    """dy may be one of out's own arrays: it is read from a copy, as in value_and_grad_batch."""
    widths = (3, 4, 5)  # K_T = 5 = B, so dy can be out.alpha
    net, _, _ = build_net(rng, widths, "tanh", dtype)
    X = make_inputs(rng, widths[0], dtype, batch=5)
    dy = rng.standard_normal(5).astype(dtype)
    _, expected = net.value_and_grad_batch(X, dy)
    for out in (net.new_gradients(batch=5), net.new_gradients(batch=5, x=False)):
        out.alpha[...] = dy
        net.forward_batch(X)
        net.backward_batch(out.alpha, out=out)
        same_parameter_bits(out, expected)


def test_backward_batch_dy_callback_may_run_forward_batch(rng, dtype):
    """dy's __array__ runs user code: a forward_batch there (of another B) is the pass backward_batch uses."""
    net, _, _ = build_net(rng, WIDTHS, "sigmoid", dtype)
    X1, X2 = (make_inputs(rng, WIDTHS[0], dtype, batch=B) for B in (2, 7))
    dy2 = rng.standard_normal(7).astype(dtype)

    class Reenters:
        def __array__(self, dtype=None, copy=None):
            net.forward_batch(X2)
            return dy2

    net.forward_batch(X1)
    _, expected = net.value_and_grad_batch(X2, dy2)
    net.forward_batch(X1)
    same_bits(net.backward_batch(Reenters()), expected)


def test_backward_batch_threads_use_their_own_tapes(rng, dtype):
    net, _, _ = build_net(rng, WIDTHS, "leaky_relu", dtype)
    n = 4
    Xs = [make_inputs(rng, WIDTHS[0], dtype, batch=B) for B in (3, 8, 1, 17)]
    dys = [rng.standard_normal(X.shape[0]).astype(dtype) for X in Xs]
    expected = [net.value_and_grad_batch(X, dy)[1] for X, dy in zip(Xs, dys)]
    barrier = threading.Barrier(n, timeout=60)
    results, errors = [None] * n, []

    def work(i):
        try:
            outs = [net.new_gradients(batch=Xs[i].shape[0]), net.new_gradients(batch=1, x=False)]
            for _ in range(20):
                net.forward_batch(Xs[i])
                barrier.wait()  # every thread has recorded its own batch before any backward pass
                for out in outs:
                    net.backward_batch(dys[i], out=out)
                barrier.wait()
            results[i] = outs
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    for (full, parameter_only), ref in zip(results, expected):
        same_bits(full, ref)
        same_parameter_bits(parameter_only, ref)
    other = [None]
    t = threading.Thread(target=lambda: other.__setitem__(0, pytest.raises(RuntimeError, net.backward_batch)))
    t.start()
    t.join()
    assert other[0] is not None  # a new thread has recorded nothing, whatever the others did


# ----------------------------------------------------------------------------- parameter-only gradients
def test_new_gradients_parameter_only_properties(rng, dtype):
    net, _, _ = build_net(rng, WIDTHS, "relu", dtype)
    g = net.new_gradients(batch=5, x=False)
    assert g.x is None and g.batch is None and g.z is None and g.u is None and g.dtype == dtype
    assert [w.shape for w in g.weights] == [w.shape for w in net.weights] and g.alpha.shape == (WIDTHS[-1],)
    for a in g.weights + [g.alpha]:
        assert a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable and not np.any(a)
    assert repr(g) == f"mlpgrad.Gradients(widths={WIDTHS}, dtype={np.dtype(dtype).name}, x=None)"
    assert net.new_gradients(batch=5, x=True).x.shape == (5, WIDTHS[0])
    assert net.new_gradients(x=True).x.shape == (WIDTHS[0],)


@pytest.mark.parametrize("B", BATCHES)
def test_parameter_only_equals_the_full_parameter_parts(rng, dtype, activation, B):
    net, weights, alpha = build_net(rng, WIDTHS, activation, dtype)
    X = make_inputs(rng, WIDTHS[0], dtype, batch=B)
    dy = rng.standard_normal(B).astype(dtype)
    yhat, full = net.value_and_grad_batch(X, dy)
    outs = [net.new_gradients(batch=B, x=False), net.new_gradients(batch=B + 1, x=False),
            mlpgrad.Gradients(**parameter_only_spec(WIDTHS, dtype))]
    for out in outs:
        y, g = net.value_and_grad_batch(X, dy, out=out)
        assert g is out and np.array_equal(y, yhat)
        same_parameter_bits(out, full)
        assert out.x is None
        for a in iter_arrays(out):
            a[...] = SENTINEL
        net.backward_batch(dy, out=out)
        same_parameter_bits(out, full)
    # and against the pure-Python oracle
    _, ref = oracle_batch(weights, alpha, X, activation, dy)
    tol, scale = tolerance(dtype, WIDTHS), max(1.0, float(np.max(np.abs(ref.alpha))), B)
    for t, w in enumerate(outs[0].weights):
        assert_close(w, ref.weights[t], tol, scale, f"weights[{t}]")
    assert_close(outs[0].alpha, ref.alpha, tol, scale, "alpha")


def test_parameter_only_against_finite_differences(rng):
    """Σ_b dy_b ŷ_b differentiated numerically (float64, smooth activations), entry by entry."""
    widths = (3, 4, 2)
    for activation in ("tanh", "softplus", "sigmoid", "identity"):
        weights, alpha = make_network(rng, widths)
        net = mlpgrad.MLP(weights, alpha, activation)
        X = make_inputs(rng, widths[0], batch=6)
        dy = rng.standard_normal(6)
        _, g = net.value_and_grad_batch(X, dy, out=net.new_gradients(batch=1, x=False))
        eps = 1e-6

        def objective():
            return float(dy @ net.forward_batch(X))

        for param, grad in list(zip(weights, g.weights)) + [(alpha, g.alpha)]:
            for index in np.ndindex(param.shape):
                keep = param[index]
                param[index] = keep + eps
                up = objective()
                param[index] = keep - eps
                down = objective()
                param[index] = keep
                assert abs((up - down) / (2 * eps) - grad[index]) <= 1e-6 * max(1.0, abs(grad[index])), (
                    activation, index)


def test_one_parameter_only_out_for_every_batch_size(rng, dtype):
    net, _, _ = build_net(rng, WIDTHS, "relu", dtype)
    out = net.new_gradients(batch=64, x=False)
    arrays = list(iter_arrays(out))
    for B in (64, 1, 17, 2, 5, 64, 0):  # a short last mini-batch needs no other buffer
        X = make_inputs(rng, WIDTHS[0], dtype, batch=B)
        _, full = net.value_and_grad_batch(X)
        assert net.value_and_grad_batch(X, out=out)[1] is out
        same_parameter_bits(out, full)
        net.forward_batch(X)
        net.backward_batch(out=out)
        same_parameter_bits(out, full)
        assert all(a is b for a, b in zip(iter_arrays(out), arrays))


def test_parameter_only_depth_zero(rng, dtype):
    net = mlpgrad.MLP([], rng.standard_normal(4).astype(dtype))
    X = make_inputs(rng, 4, dtype, batch=3)
    _, full = net.value_and_grad_batch(X)
    for out in (net.new_gradients(batch=3, x=False), mlpgrad.Gradients([], np.zeros(4, dtype))):
        net.value_and_grad_batch(X, out=out)
        assert out.x is None and out.weights == []
        assert np.array_equal(out.alpha, full.alpha)


def test_parameter_only_gradients_wrap_the_callers_arrays(rng, dtype):
    """Zero copy: the arrays passed in are the arrays written, and the ones the properties return."""
    net, _, _ = build_net(rng, WIDTHS, "tanh", dtype)
    spec = parameter_only_spec(WIDTHS, dtype)
    out = mlpgrad.Gradients(spec["weights"], spec["alpha"])
    assert all(a is b for a, b in zip(out.weights, spec["weights"])) and out.alpha is spec["alpha"]
    X = make_inputs(rng, WIDTHS[0], dtype, batch=9)
    _, full = net.value_and_grad_batch(X)
    net.value_and_grad_batch(X, out=out)
    for a, b in zip(spec["weights"] + [spec["alpha"]], full.weights + [full.alpha]):
        assert np.array_equal(a, b)
    spec["alpha"].setflags(write=False)  # the per-call checks still see the caller's arrays
    with pytest.raises(ValueError, match=r"out\.alpha"):
        net.backward_batch(out=out)


def test_parameter_only_errors(rng, dtype):
    net, _, _ = build_net(rng, WIDTHS, "relu", dtype)
    for flag in (1, 0, None, "False", np.float64(0.0)):
        with pytest.raises(TypeError, match=r"x must be True or False, got "):
            net.new_gradients(batch=2, x=flag)
    with pytest.raises(TypeError):
        net.new_gradients(2, False)  # x is keyword-only
    with pytest.raises(ValueError, match=r"x=False needs batch=B"):
        net.new_gradients(x=False)
    with pytest.raises(ValueError, match=r"batch must be >= 0"):
        net.new_gradients(batch=-1, x=False)
    out = mlpgrad.Gradients(**parameter_only_spec(WIDTHS, dtype))
    x = make_inputs(rng, WIDTHS[0], dtype)
    net.forward(x)
    for call in (lambda: net.value_and_grad(x, out=out), lambda: net.backward(out=out)):
        with pytest.raises(ValueError, match=r"out holds parameter-only gradients \(out.x is None\)"):
            call()
    assert untouched(out)
    spec = out_spec(WIDTHS, dtype)  # with z and u
    del spec["x"]
    with pytest.raises(ValueError, match=r"parameter-only gradients \(x=None\).*pass z=None, u=None"):
        mlpgrad.Gradients(**spec)
    spec = parameter_only_spec(WIDTHS, dtype)
    spec["weights"][1] = np.zeros((4, 6), dtype)
    with pytest.raises(ValueError, match=r"out\.weights\[1\] has shape \(4, 6\) but expected 7 columns"):
        mlpgrad.Gradients(**spec)
    spec = parameter_only_spec(WIDTHS, dtype)
    spec["weights"][0] = np.zeros(5, dtype)
    with pytest.raises(ValueError, match=r"out\.weights\[0\]"):
        mlpgrad.Gradients(**spec)
