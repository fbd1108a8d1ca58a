"""Tests for mlpgrad.numpy_backprop (the NumPy speed peer) against the pure-Python oracle.

Both modules are loaded by file path from the checkout, so these tests need neither the
compiled core nor an installed package.
"""

import importlib.util
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

PKG = Path(__file__).resolve().parents[1] / "python" / "mlpgrad"


def _load(stem):
    name = f"_mlpgrad_{stem}_under_test"
    spec = importlib.util.spec_from_file_location(name, PKG / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


nb = _load("numpy_backprop")
ref = _load("reference")

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity")
DTYPES = (np.float64, np.float32)
WIDTHS = (5, 7, 4, 6)  # K_0..K_T, deliberately not square


def _net(rng, widths=WIDTHS, dtype=np.float64, scale=1.0):
    weights = [
        (scale * rng.standard_normal((widths[t + 1], widths[t])) / np.sqrt(widths[t])).astype(dtype)
        for t in range(len(widths) - 1)
    ]
    return weights, rng.standard_normal(widths[-1]).astype(dtype)


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)


def _close(actual, expected, dtype):
    expected = np.asarray(expected, dtype=np.float64)
    tol = _tol(dtype)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected,
                               rtol=tol["rtol"], atol=tol["atol"] * scale)


def _check_grads(g, r, dtype, single=True):
    assert len(g.weights) == len(r.weights)
    for gw, rw in zip(g.weights, r.weights):
        assert gw.dtype == dtype
        _close(gw, rw, dtype)
    _close(g.alpha, r.alpha, dtype)
    _close(g.x, r.x, dtype)
    if single:
        assert len(g.z) == len(r.z) and len(g.u) == len(r.u)
        for a, b in zip(g.z + g.u, r.z + r.u):
            _close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_single_matches_oracle(activation, dtype):
    rng = np.random.default_rng(ACTIVATIONS.index(activation))
    weights, alpha = _net(rng, dtype=dtype)
    x = rng.standard_normal(WIDTHS[0]).astype(dtype)
    net = nb.NumpyMLP(weights, alpha, activation)
    assert net.widths == WIDTHS and net.depth == 3 and net.dtype == dtype
    assert net.activations == (activation,) * 3
    yhat, g = net.value_and_grad(x, dy=-0.75)
    ryhat, r = ref.value_and_grad(weights, alpha, x, activation, dy=-0.75)
    assert isinstance(yhat, float)
    _close(yhat, ryhat, dtype)
    _check_grads(g, r, dtype)
    assert g.x is g.z[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_batch_matches_oracle(activation, dtype):
    rng = np.random.default_rng(100 + ACTIVATIONS.index(activation))
    weights, alpha = _net(rng, dtype=dtype)
    X = rng.standard_normal((9, WIDTHS[0])).astype(dtype)
    dy = rng.standard_normal(9)
    net = nb.NumpyMLP(weights, alpha, activation)
    yhat, g = net.value_and_grad_batch(X, dy=dy)
    ryhat, r = ref.value_and_grad_batch(weights, alpha, X, activation, dy=dy.astype(dtype))
    assert yhat.shape == (9,) and yhat.dtype == dtype
    assert g.batch == 9 and g.z is None and g.u is None and g.x.shape == X.shape
    _close(yhat, ryhat, dtype)
    _check_grads(g, r, dtype, single=False)
    # default dy is ones, and out= is overwritten rather than accumulated into
    out = net.new_gradients(batch=9)
    for arr in out.weights + [out.alpha, out.x]:
        arr.fill(np.nan)
    _, g1 = net.value_and_grad_batch(X, out=out)
    _, r1 = ref.value_and_grad_batch(weights, alpha, X, activation)
    assert g1 is out
    _check_grads(g1, r1, dtype, single=False)


def test_empty_batch():
    weights, alpha = _net(np.random.default_rng(3))
    yhat, g = nb.NumpyMLP(weights, alpha).value_and_grad_batch(np.empty((0, WIDTHS[0])))
    assert yhat.shape == (0,) and g.x.shape == (0, WIDTHS[0])
    assert all(not w.any() for w in g.weights) and not g.alpha.any()


def test_out_is_reused_and_overwritten():
    rng = np.random.default_rng(4)
    weights, alpha = _net(rng)
    net = nb.NumpyMLP(weights, alpha, "tanh")
    out = net.new_gradients()
    ids = [id(a) for a in out.weights + [out.alpha, out.x]]
    for dy in (1.0, 2.5):  # a second call with other data must not see stale state
        x = rng.standard_normal(WIDTHS[0])
        yhat, g = net.value_and_grad(x, dy=dy, out=out)
        assert g is out and [id(a) for a in g.weights + [g.alpha, g.x]] == ids
        ryhat, r = ref.value_and_grad(weights, alpha, x, "tanh", dy=dy)
        _close(yhat, ryhat, np.float64)
        _check_grads(g, r, np.float64)


def test_out_without_z_u_and_separate_x():
    rng = np.random.default_rng(5)
    weights, alpha = _net(rng)
    net = nb.NumpyMLP(weights, alpha, "sigmoid")
    full = net.new_gradients()
    out = nb.NumpyGradients([np.full_like(w, np.nan) for w in weights], np.full_like(alpha, np.nan),
                            np.full(WIDTHS[0], np.nan))
    x = rng.standard_normal(WIDTHS[0])
    _, g = net.value_and_grad(x, out=out)
    _, r = ref.value_and_grad(weights, alpha, x, "sigmoid")
    assert g.z is None and g.u is None and not full.alpha.any()  # internal scratch, not full
    _check_grads(g, r, np.float64, single=False)


def test_relu_derivative_is_one_at_zero():
    weights, alpha = _net(np.random.default_rng(6))
    x = np.zeros(WIDTHS[0])  # every u^t is exactly 0, so sigma'(0) = 1 decides everything
    for activation in ("relu", "leaky_relu"):
        _, g = nb.NumpyMLP(weights, alpha, activation).value_and_grad(x)
        np.testing.assert_array_equal(g.u[-1], alpha)
        for t in range(len(weights) - 1, 0, -1):
            np.testing.assert_array_equal(g.u[t - 1], g.z[t])
            np.testing.assert_allclose(g.z[t], weights[t].T @ g.u[t], rtol=1e-14, atol=1e-14)
        assert np.any(g.x != 0)
        _, r = ref.value_and_grad(weights, alpha, x, activation)
        _check_grads(g, r, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "softplus", "tanh"])
def test_stable_for_huge_preactivations(activation, dtype):
    rng = np.random.default_rng(7)
    weights, alpha = _net(rng, widths=(6, 6, 6), dtype=dtype, scale=400.0)  # |u| up to ~1e3
    x = rng.standard_normal(6).astype(dtype)
    net = nb.NumpyMLP(weights, alpha, activation)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value RuntimeWarnings
        yhat, g = net.value_and_grad(x)
        yb, gb = net.value_and_grad_batch(x[None, :])
    ryhat, r = ref.value_and_grad(weights, alpha, x, activation)
    assert np.isfinite(yhat) and all(np.isfinite(w).all() for w in g.weights)
    _close(yhat, ryhat, dtype)
    _check_grads(g, r, dtype)
    _close(yb[0], ryhat, dtype)
    _close(gb.x[0], r.x, dtype)


def test_per_layer_activations_and_zero_layers():
    rng = np.random.default_rng(8)
    weights, alpha = _net(rng)
    acts = ["tanh", "relu", "softplus"]
    x = rng.standard_normal(WIDTHS[0])
    yhat, g = nb.NumpyMLP(weights, alpha, acts).value_and_grad(x, dy=0.5)
    ryhat, r = ref.value_and_grad(weights, alpha, x, acts, dy=0.5)
    _close(yhat, ryhat, np.float64)
    _check_grads(g, r, np.float64)
    net0 = nb.NumpyMLP([], alpha)  # T = 0: yhat = alpha @ x
    x0 = rng.standard_normal(WIDTHS[-1])
    y0, g0 = net0.value_and_grad(x0)
    _close(y0, alpha @ x0, np.float64)
    _close(g0.x, alpha, np.float64)
    _, gb0 = net0.value_and_grad_batch(x0[None, :])
    _close(gb0.x[0], alpha, np.float64)


def _traced_peak(f):
    f()  # warm up
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        f()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_single_example_path_does_not_allocate(activation):
    K = 1024
    weights, alpha = _net(np.random.default_rng(9), widths=(K, K, K))
    x = np.random.default_rng(10).standard_normal(K)
    net = nb.NumpyMLP(weights, alpha, activation)
    out = net.new_gradients()
    # forward: no temporary as large as one length-K vector
    assert _traced_peak(lambda: net.forward(x)) < K * 8
    # forward + backward: the only scratch is the fixed-size (8192-element) iterator buffer
    # NumPy's ufunc machinery uses for the broadcast outer product; one K x K temporary
    # would be 8 MiB, i.e. far above this bound
    assert _traced_peak(lambda: net.value_and_grad(x, out=out)) < 136_000


def test_errors():
    weights, alpha = _net(np.random.default_rng(11))
    with pytest.raises(TypeError, match="weights\\[1\\]"):
        nb.NumpyMLP([weights[0], weights[1].astype(np.float32), weights[2]], alpha)
    with pytest.raises(ValueError, match="weights\\[1\\]"):
        nb.NumpyMLP([weights[0], weights[2]], alpha)
    with pytest.raises(ValueError, match="alpha"):
        nb.NumpyMLP(weights, alpha[:-1])
    with pytest.raises(ValueError, match="activation"):
        nb.NumpyMLP(weights, alpha, "gelu")
    with pytest.raises(ValueError, match="activation"):
        nb.NumpyMLP(weights, alpha, ["relu", "tanh"])
    net = nb.NumpyMLP(weights, alpha)
    with pytest.raises(ValueError, match="x"):
        net.value_and_grad(np.zeros(WIDTHS[0] + 1))
    with pytest.raises(ValueError, match="X"):
        net.value_and_grad_batch(np.zeros((2, WIDTHS[0] + 1)))
    with pytest.raises(ValueError, match="dy"):
        net.value_and_grad_batch(np.zeros((2, WIDTHS[0])), dy=[1.0])


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    activation=st.sampled_from(ACTIVATIONS),
    seed=st.integers(0, 2**32 - 1),
    dy=st.floats(-3, 3),
)
def test_property_random_shapes(widths, activation, seed, dy):
    rng = np.random.default_rng(seed)
    weights, alpha = _net(rng, widths=tuple(widths))
    x = rng.standard_normal(widths[0])
    yhat, g = nb.NumpyMLP(weights, alpha, activation).value_and_grad(x, dy=dy)
    ryhat, r = ref.value_and_grad(weights, alpha, x, activation, dy=dy)
    _close(yhat, ryhat, np.float64)
    _check_grads(g, r, np.float64)
