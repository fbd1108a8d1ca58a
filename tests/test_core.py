"""Values computed by the core: against the pure-Python oracle, finite differences and closed forms."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import mlpgrad
from conftest import (
    ACTIVATIONS, DTYPES, KINKED, LEAK, SENTINEL, SMOOTH, Arch, Grads, architectures, assert_close,
    assert_gradients_close, assert_value_close, build_net, hyp, dsigma, grads_of, kink_safe, make_inputs,
    make_network, min_abs_preactivation, np_forward, oracle, oracle_batch, oracle_fd, out_spec, per_layer,
    sigma, tolerance,
)

DYS = (1.0, 0.5, -2.0, 3.25, 0.0)  # exactly representable in float32


def scaled(g: Grads, c: float) -> Grads:
    return Grads(
        weights=[c * w for w in g.weights], alpha=c * g.alpha, x=c * g.x,
        z=None if g.z is None else [c * v for v in g.z],
        u=None if g.u is None else [c * v for v in g.u],
    )


# ----------------------------------------------------------------------------- module and properties
def test_module_exports():
    assert mlpgrad.ACTIVATIONS == ACTIVATIONS
    assert isinstance(mlpgrad.ACTIVATIONS, tuple)
    assert callable(mlpgrad.MLP) and callable(mlpgrad.Gradients)


@pytest.mark.parametrize("activation", ["tanh", ["relu", "sigmoid", "identity"], ("softplus", "leaky_relu", "tanh")])
def test_properties(rng, dtype, activation):
    widths = (3, 5, 2, 4)
    net, weights, alpha = build_net(rng, widths, activation, dtype)
    assert net.widths == widths and isinstance(net.widths, tuple)
    assert all(type(k) is int for k in net.widths)
    assert net.depth == 3 and type(net.depth) is int
    assert net.dtype == np.dtype(dtype) and isinstance(net.dtype, np.dtype)
    assert net.activations == per_layer(activation, 3) and isinstance(net.activations, tuple)
    assert isinstance(net.weights, list) and len(net.weights) == 3
    assert isinstance(net.alpha, np.ndarray)


# ----------------------------------------------------------------------------- core vs oracle
@given(arch=architectures(), dy=st.sampled_from(DYS))
@hyp(60)
def test_value_and_grad_matches_oracle(arch: Arch, dy):
    net, weights, alpha, rng = arch.build()
    x = make_inputs(rng, arch.widths[0], arch.dtype)
    assume(kink_safe(weights, alpha, x, arch.activations, arch.dtype))
    yhat_ref, g_ref = oracle(weights, alpha, x, arch.activations, dy)

    yhat, g = net.value_and_grad(x, dy)
    assert type(yhat) is float
    assert_value_close(yhat, yhat_ref, arch.dtype, arch.widths)
    assert_gradients_close(g, g_ref, arch.dtype, arch.widths)
    # z[0] is the gradient with respect to x
    np.testing.assert_array_equal(g.z[0], g.x)


@given(arch=architectures(), dy=st.sampled_from(DYS))
@hyp(40)
def test_forward_and_state_match_oracle(arch: Arch, dy):
    net, weights, alpha, rng = arch.build()
    x = make_inputs(rng, arch.widths[0], arch.dtype)
    assume(kink_safe(weights, alpha, x, arch.activations, arch.dtype))
    yhat_ref, g_ref = oracle(weights, alpha, x, arch.activations, dy)
    _, u_ref, z_ref = np_forward(weights, alpha, x, arch.activations)
    tol = tolerance(arch.dtype, arch.widths)

    yhat = net.forward(x)
    assert type(yhat) is float
    assert_value_close(yhat, yhat_ref, arch.dtype, arch.widths)
    z, u = net.z, net.u
    assert isinstance(z, list) and isinstance(u, list)
    assert len(z) == arch.depth + 1 and len(u) == arch.depth
    scale = 1.0 + max(float(np.max(np.abs(v))) for v in z_ref)
    for t, (got, ref) in enumerate(zip(z, z_ref)):
        assert got.dtype == arch.dtype
        assert_close(got, ref, tol, scale, f"z[{t}]")
    for t, (got, ref) in enumerate(zip(u, u_ref)):
        assert got.dtype == arch.dtype
        assert_close(got, ref, tol, scale, f"u[{t}]")
    np.testing.assert_array_equal(z[0], x)

    g = net.backward(dy)
    assert_gradients_close(g, g_ref, arch.dtype, arch.widths)
    # backward does not consume the recorded forward: a second call gives the same result
    g2 = net.backward(dy)
    assert_gradients_close(g2, grads_of(g), arch.dtype, arch.widths)
    # and the default seed is 1.0
    g1 = net.backward()
    _, g1_ref = oracle(weights, alpha, x, arch.activations, 1.0)
    assert_gradients_close(g1, g1_ref, arch.dtype, arch.widths)


@pytest.mark.parametrize("widths", [(5, 1, 7, 2, 3), (1, 8, 1), (8, 3, 6, 1), (2, 2, 2, 2, 2, 2)])
def test_per_layer_widths(rng, dtype, widths):
    acts = [ACTIVATIONS[i % len(ACTIVATIONS)] for i in range(len(widths) - 1)]
    net, weights, alpha = build_net(rng, widths, acts, dtype)
    assert net.widths == widths
    for _ in range(3):
        x = make_inputs(rng, widths[0], dtype)
        if not kink_safe(weights, alpha, x, acts, dtype):
            continue
        yhat_ref, g_ref = oracle(weights, alpha, x, acts, -1.5)
        yhat, g = net.value_and_grad(x, -1.5)
        assert_value_close(yhat, yhat_ref, dtype, widths)
        assert_gradients_close(g, g_ref, dtype, widths)
        for t in range(net.depth):
            assert g.weights[t].shape == (widths[t + 1], widths[t])
            assert g.u[t].shape == (widths[t + 1],)
        for t in range(net.depth + 1):
            assert g.z[t].shape == (widths[t],)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_vs_oracle(rng, dtype, activation):
    widths = (4, 6, 5, 3)
    net, weights, alpha = build_net(rng, widths, activation, dtype, scale=1.5)
    assert net.activations == (activation,) * 3
    checked = 0
    for _ in range(6):
        x = make_inputs(rng, widths[0], dtype)
        if not kink_safe(weights, alpha, x, activation, dtype):
            continue
        yhat_ref, g_ref = oracle(weights, alpha, x, activation, 1.0)
        yhat, g = net.value_and_grad(x)
        assert_value_close(yhat, yhat_ref, dtype, widths)
        assert_gradients_close(g, g_ref, dtype, widths)
        checked += 1
    assert checked >= 3


# ----------------------------------------------------------------------------- closed forms
ACT_POINTS = np.array([-40.0, -3.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 3.0, 40.0])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_closed_form(dtype, activation):
    """With W = I, u^1 = x exactly: check sigma and sigma' against closed forms (independent of the oracle)."""
    k = ACT_POINTS.size
    x = ACT_POINTS.astype(dtype)
    alpha = np.linspace(-1.0, 2.0, k).astype(dtype)
    net = mlpgrad.MLP([np.eye(k, dtype=dtype)], alpha, activation)
    dy = 0.5
    yhat, g = net.value_and_grad(x, dy)
    x64, a64 = x.astype(np.float64), alpha.astype(np.float64)
    s, ds = sigma(activation, x64), dsigma(activation, x64)
    tol = 1e-14 if dtype == np.float64 else 1e-6
    scale = 1.0 + np.max(np.abs(s))
    np.testing.assert_allclose(g.u[0], dy * a64 * ds, rtol=tol, atol=tol)
    np.testing.assert_allclose(g.x, dy * a64 * ds, rtol=tol, atol=tol)
    np.testing.assert_allclose(g.alpha, dy * s, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(g.weights[0], np.outer(dy * a64 * ds, x64), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(g.z[1], dy * a64, rtol=0, atol=0)
    assert yhat == pytest.approx(float(a64 @ s), rel=tol * 10, abs=tol * 10 * scale * k)
    net.forward(x)
    np.testing.assert_array_equal(net.u[0], x)
    np.testing.assert_allclose(net.z[1], s, rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ["sigmoid", "softplus", "tanh"])
def test_activation_large_inputs_are_finite(dtype, activation):
    """Saturating/large pre-activations must not overflow to inf/nan (float32 exp overflows at ~88.7)."""
    big = 1000.0 if dtype == np.float64 else 100.0
    x = np.array([-big, big], dtype=dtype)
    alpha = np.array([1.0, 1.0], dtype=dtype)
    net = mlpgrad.MLP([np.eye(2, dtype=dtype)], alpha, activation)
    yhat, g = net.value_and_grad(x)
    expected_z = {"sigmoid": [0.0, 1.0], "softplus": [0.0, big], "tanh": [-1.0, 1.0]}[activation]
    expected_dz = {"sigmoid": [0.0, 0.0], "softplus": [0.0, 1.0], "tanh": [0.0, 0.0]}[activation]
    assert np.isfinite(yhat)
    np.testing.assert_allclose(g.alpha, expected_z, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(g.u[0], expected_dz, rtol=1e-6, atol=1e-30)
    assert yhat == pytest.approx(sum(expected_z), rel=1e-6)


# ----------------------------------------------------------------------------- ReLU convention
@pytest.mark.parametrize("activation,slope", [("relu", 0.0), ("leaky_relu", LEAK)])
def test_relu_derivative_at_zero_is_one(dtype, activation, slope):
    """Notes' convention: sigma'(0) = 1. Crafted so that u is exactly 0, positive and negative."""
    W = np.array([[1.0, -1.0], [2.0, 0.5], [-1.0, -2.0]], dtype=dtype)
    x = np.array([3.0, 3.0], dtype=dtype)  # u = [0, 7.5, -9]
    alpha = np.array([2.0, -1.0, 4.0], dtype=dtype)
    net = mlpgrad.MLP([W], alpha, activation)
    dy = 1.0
    yhat, g = net.value_and_grad(x, dy)
    u = np.array([0.0, 7.5, -9.0])
    z = np.array([0.0, 7.5, slope * -9.0])
    du = alpha.astype(np.float64) * np.array([1.0, 1.0, slope])
    tol = 1e-15 if dtype == np.float64 else 1e-6
    assert yhat == pytest.approx(float(alpha.astype(np.float64) @ z), rel=tol, abs=tol)
    np.testing.assert_allclose(g.u[0], du, rtol=tol, atol=tol)
    np.testing.assert_allclose(g.weights[0], np.outer(du, x), rtol=tol, atol=tol)
    np.testing.assert_allclose(g.x, W.astype(np.float64).T @ du, rtol=tol, atol=tol)
    np.testing.assert_allclose(g.alpha, z, rtol=tol, atol=tol)
    net.forward(x)
    np.testing.assert_array_equal(net.u[0], u)


@pytest.mark.parametrize("activation", KINKED)
def test_relu_zero_input_passes_gradient(dtype, activation):
    """x = 0 makes every u exactly 0; with sigma'(0) = 1 the input gradient is W1^T diag(...) alpha, not 0."""
    rng = np.random.default_rng(5)
    widths = (3, 4, 2)
    weights, alpha = make_network(rng, widths, dtype)
    net = mlpgrad.MLP(weights, alpha, activation)
    x = np.zeros(3, dtype=dtype)
    yhat, g = net.value_and_grad(x)
    w0, w1, a = (v.astype(np.float64) for v in (weights[0], weights[1], alpha))
    assert yhat == 0.0
    du2 = a  # u^2 = W2 z^1 = 0 too, so sigma'(0) = 1 at both layers
    du1 = w1.T @ du2
    tol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(g.u[1], du2, rtol=tol, atol=tol)
    np.testing.assert_allclose(g.u[0], du1, rtol=tol, atol=tol)
    np.testing.assert_allclose(g.x, w0.T @ du1, rtol=tol, atol=tol)
    assert np.all(g.weights[0] == 0) and np.all(g.weights[1] == 0) and np.all(g.alpha == 0)
    _, g_ref = oracle(weights, alpha, x, activation)
    assert_gradients_close(g, g_ref, dtype, widths)


# ----------------------------------------------------------------------------- finite differences
@given(arch=architectures(max_depth=4, max_width=6, activations=SMOOTH, dtypes=(np.float64,)),
       dy=st.sampled_from((1.0, -0.75, 2.0)))
@hyp(25)
def test_finite_differences_smooth(arch: Arch, dy):
    net, weights, alpha, rng = arch.build()
    x = make_inputs(rng, arch.widths[0])
    _, g = net.value_and_grad(x, dy)
    fd = oracle_fd(weights, alpha, x, arch.activations, dy, eps=1e-6)
    _assert_fd(g, fd, arch.widths)


def _assert_fd(g, fd: Grads, widths, rtol=1e-6):
    scale = 1.0 + max(float(np.max(np.abs(a))) for a in list(fd.weights) + [fd.alpha, fd.x])
    for t, (got, ref) in enumerate(zip(g.weights, fd.weights)):
        assert_close(got, ref, rtol, scale, f"fd weights[{t}]")
    assert_close(g.alpha, fd.alpha, rtol, scale, "fd alpha")
    assert_close(g.x, fd.x, rtol, scale, "fd x")


def _core_fd(net, weights, alpha, x, dy, eps=1e-6) -> Grads:
    """Central differences of dy * net.forward, perturbing the caller's arrays in place (zero copy)."""
    def f():
        return dy * net.forward(x)

    def central(arr):
        out = np.zeros(arr.shape)
        flat, gflat = arr.reshape(-1), out.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            fp = f()
            flat[i] = orig - eps
            fm = f()
            flat[i] = orig
            gflat[i] = (fp - fm) / (2 * eps)
        return out

    return Grads(weights=[central(w) for w in weights], alpha=central(alpha), x=central(x), z=None, u=None)


@pytest.mark.parametrize("activation", SMOOTH + KINKED)
def test_finite_differences_core_forward(activation):
    """Analytic gradients vs central differences of the core's own forward (weights perturbed in place)."""
    rng = np.random.default_rng(11)
    widths = (4, 5, 3, 2)
    weights, alpha = make_network(rng, widths, np.float64, scale=1.3)
    net = mlpgrad.MLP(weights, alpha, activation)
    for _ in range(50):  # find an input well away from ReLU kinks
        x = make_inputs(rng, widths[0])
        if min_abs_preactivation(weights, alpha, x, activation) > 1e-2:
            break
    else:
        pytest.fail("no kink-free input found")
    _, g = net.value_and_grad(x, 1.25)
    g = grads_of(g)
    fd = _core_fd(net, weights, alpha, x, 1.25)
    _assert_fd(g, fd, widths)
    fd_ref = oracle_fd(weights, alpha, x, activation, 1.25)
    _assert_fd(g, fd_ref, widths)


def test_finite_differences_relu_away_from_kinks():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(200):
        widths = tuple(int(k) for k in rng.integers(1, 7, size=int(rng.integers(1, 5)) + 1))
        acts = [str(rng.choice(KINKED + SMOOTH)) for _ in range(len(widths) - 1)]
        weights, alpha = make_network(rng, widths)
        x = make_inputs(rng, widths[0])
        if min_abs_preactivation(weights, alpha, x, acts) < 1e-3:
            continue
        net = mlpgrad.MLP(weights, alpha, acts)
        _, g = net.value_and_grad(x, -1.0)
        _assert_fd(g, oracle_fd(weights, alpha, x, acts, -1.0), widths)
        checked += 1
        if checked == 20:
            break
    assert checked == 20


# ----------------------------------------------------------------------------- dy
@pytest.mark.parametrize("dy", [0.0, -1.0, 0.25, 7.5, np.float32(2.0), np.float64(-3.0), 2, np.array(-0.5)],
                         ids=["0", "-1", "0.25", "7.5", "np.float32", "np.float64", "int", "0d-array"])
def test_dy_scales_gradients_not_value(rng, dtype, dy):
    widths = (3, 4, 2)
    acts = ["tanh", "softplus"]
    net, weights, alpha = build_net(rng, widths, acts, dtype)
    x = make_inputs(rng, 3, dtype)
    y1, g1 = net.value_and_grad(x, 1.0)
    g1 = grads_of(g1)
    y, g = net.value_and_grad(x, dy)
    assert y == y1
    assert_gradients_close(g, scaled(g1, float(dy)), dtype, widths)
    _, g_ref = oracle(weights, alpha, x, acts, float(dy))
    assert_gradients_close(g, g_ref, dtype, widths)
    if float(dy) == 0.0:
        for a in (g.weights + [g.alpha, g.x] + g.z + g.u):
            assert not np.any(a)
    net.forward(x)
    assert_gradients_close(net.backward(dy), g_ref, dtype, widths)


def test_dy_keyword(rng):
    net, weights, alpha = build_net(rng, (3, 3), "tanh")
    x = make_inputs(rng, 3)
    _, g_pos = net.value_and_grad(x, 2.0)
    _, g_kw = net.value_and_grad(x, dy=2.0)
    assert_gradients_close(g_kw, grads_of(g_pos), np.float64, (3, 3))
    net.forward(x)
    assert_gradients_close(net.backward(dy=2.0), grads_of(g_pos), np.float64, (3, 3))


# ----------------------------------------------------------------------------- depth 0 and 1
def test_depth_zero(dtype):
    alpha = np.array([1.5, -2.0, 0.25], dtype=dtype)
    x = np.array([2.0, 0.5, -4.0], dtype=dtype)
    for act in ("relu", "tanh", [], ()):
        net = mlpgrad.MLP([], alpha, act)
        assert net.depth == 0 and net.widths == (3,) and net.activations == ()
        assert net.dtype == np.dtype(dtype) and net.weights == []
        yhat, g = net.value_and_grad(x, -2.0)
        assert yhat == 1.5 * 2.0 - 2.0 * 0.5 - 0.25 * 4.0
        assert g.weights == [] and g.u == [] and len(g.z) == 1
        np.testing.assert_array_equal(g.alpha, -2.0 * x)
        np.testing.assert_array_equal(g.x, -2.0 * alpha)
        np.testing.assert_array_equal(g.z[0], -2.0 * alpha)
        assert g.alpha.dtype == dtype and g.x.dtype == dtype
        assert net.forward(x) == yhat
        assert len(net.z) == 1 and net.u == []
        np.testing.assert_array_equal(net.z[0], x)
        np.testing.assert_array_equal(net.backward(-2.0).x, -2.0 * alpha)
        X = np.stack([x, 2 * x])
        yb, gb = net.value_and_grad_batch(X, np.array([1.0, -1.0], dtype=dtype))
        np.testing.assert_array_equal(yb, [yhat, 2 * yhat])
        np.testing.assert_array_equal(gb.alpha, x - 2 * x)
        np.testing.assert_array_equal(gb.x, np.stack([alpha, -alpha]))
        assert gb.weights == [] and gb.batch == 2


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_depth_one(rng, dtype, activation):
    widths = (5, 3)
    net, weights, alpha = build_net(rng, widths, activation, dtype)
    assert net.depth == 1 and net.activations == (activation,)
    x = make_inputs(rng, 5, dtype)
    if not kink_safe(weights, alpha, x, activation, dtype):
        x = -x
    assert kink_safe(weights, alpha, x, activation, dtype)
    yhat_ref, g_ref = oracle(weights, alpha, x, activation, 0.5)
    yhat, g = net.value_and_grad(x, 0.5)
    assert_value_close(yhat, yhat_ref, dtype, widths)
    assert_gradients_close(g, g_ref, dtype, widths)


# ----------------------------------------------------------------------------- batch
@given(arch=architectures(), batch=st.integers(0, 5), use_dy=st.booleans())
@hyp(40)
def test_batch_is_sum_of_singles(arch: Arch, batch, use_dy):
    net, weights, alpha, rng = arch.build()
    X = make_inputs(rng, arch.widths[0], arch.dtype, batch=batch)
    assume(kink_safe(weights, alpha, X, arch.activations, arch.dtype))
    dy = rng.choice(np.array(DYS), size=batch).astype(arch.dtype) if use_dy else None
    dys = np.ones(batch) if dy is None else dy.astype(np.float64)

    yb, gb = net.value_and_grad_batch(X, dy) if use_dy else net.value_and_grad_batch(X)
    assert isinstance(yb, np.ndarray) and yb.shape == (batch,)
    assert gb.x.shape == (batch, arch.widths[0])

    # vs core singles
    ref = Grads(weights=[np.zeros(w.shape) for w in weights], alpha=np.zeros(alpha.shape),
                x=np.zeros((batch, arch.widths[0])), z=None, u=None)
    for b in range(batch):
        y, g = net.value_and_grad(X[b], dys[b])
        assert_value_close(yb[b], y, arch.dtype, arch.widths)
        for t in range(arch.depth):
            ref.weights[t] += g.weights[t]
        ref.alpha += g.alpha
        ref.x[b] = g.x
    assert_gradients_close(gb, ref, arch.dtype, arch.widths, batch=batch)

    # vs the oracle's batch
    if batch:
        y_ref, g_ref = oracle_batch(weights, alpha, X, arch.activations, dy)
        assert_close(yb, y_ref, tolerance(arch.dtype, arch.widths), 1 + np.max(np.abs(y_ref)), "yhat batch")
        assert_gradients_close(gb, g_ref, arch.dtype, arch.widths, batch=batch)

    # forward_batch gives the same values
    yf = net.forward_batch(X)
    assert isinstance(yf, np.ndarray) and yf.shape == (batch,)
    assert_close(yf, yb, tolerance(arch.dtype, arch.widths), 1 + (np.max(np.abs(yb)) if batch else 0), "forward_batch")


def test_batch_empty_zeroes_out(rng, dtype):
    widths = (3, 4, 2)
    net, weights, alpha = build_net(rng, widths, "tanh", dtype)
    X = np.zeros((0, 3), dtype=dtype)
    y, g = net.value_and_grad_batch(X)
    assert y.shape == (0,) and g.batch == 0 and g.x.shape == (0, 3)
    assert all(not np.any(w) for w in g.weights) and not np.any(g.alpha)
    out = mlpgrad.Gradients(**out_spec(widths, dtype, batch=0))
    y, g = net.value_and_grad_batch(X, np.zeros(0, dtype=dtype), out=out)
    assert g is out
    for w in g.weights:
        assert not np.any(w), "B = 0 must overwrite the out buffers with zeros"
    assert not np.any(g.alpha)
    assert net.forward_batch(X).shape == (0,)


def test_batch_default_dy_is_ones(rng, dtype):
    widths = (3, 5, 2)
    net, weights, alpha = build_net(rng, widths, ["sigmoid", "identity"], dtype)
    X = make_inputs(rng, 3, dtype, batch=4)
    _, g_default = net.value_and_grad_batch(X)
    _, g_ones = net.value_and_grad_batch(X, np.ones(4, dtype=dtype))
    assert_gradients_close(g_default, grads_of(g_ones), dtype, widths, batch=4)
    _, g_list = net.value_and_grad_batch(X.tolist(), [1, 1, 1, 1])
    assert_gradients_close(g_list, grads_of(g_ones), dtype, widths, batch=4)


# ----------------------------------------------------------------------------- out, new_gradients
def test_new_gradients(rng, dtype):
    widths = (3, 5, 2)
    net, _, _ = build_net(rng, widths, "relu", dtype)
    g = net.new_gradients()
    assert isinstance(g, mlpgrad.Gradients) and g.batch is None
    assert [w.shape for w in g.weights] == [(5, 3), (2, 5)]
    assert g.alpha.shape == (2,) and g.x.shape == (3,)
    assert [v.shape for v in g.z] == [(3,), (5,), (2,)] and [v.shape for v in g.u] == [(5,), (2,)]
    for a in g.weights + [g.alpha, g.x] + g.z + g.u:
        assert a.dtype == dtype and not np.any(a) and a.flags.c_contiguous and a.flags.writeable
    gb = net.new_gradients(batch=4)
    assert gb.batch == 4 and gb.x.shape == (4, 3) and gb.z is None and gb.u is None
    for a in gb.weights + [gb.alpha, gb.x]:
        assert a.dtype == dtype and not np.any(a)
    assert net.new_gradients(batch=0).x.shape == (0, 3)


def test_out_is_overwritten_not_accumulated(rng, dtype):
    widths = (4, 3, 3)
    acts = ["tanh", "leaky_relu"]
    net, weights, alpha = build_net(rng, widths, acts, dtype)
    x = make_inputs(rng, 4, dtype)
    _, fresh = net.value_and_grad(x, 2.0)
    fresh = grads_of(fresh)
    out = mlpgrad.Gradients(**out_spec(widths, dtype))
    for _ in range(2):
        _, g = net.value_and_grad(x, 2.0, out=out)
        assert_gradients_close(g, fresh, dtype, widths)
    net.forward(x)
    for _ in range(2):
        assert_gradients_close(net.backward(2.0, out=out), fresh, dtype, widths)
    X = make_inputs(rng, 4, dtype, batch=3)
    _, fresh_b = net.value_and_grad_batch(X)
    fresh_b = grads_of(fresh_b)
    out_b = mlpgrad.Gradients(**out_spec(widths, dtype, batch=3))
    for _ in range(2):
        _, gb = net.value_and_grad_batch(X, out=out_b)
        assert_gradients_close(gb, fresh_b, dtype, widths, batch=3)
    out_new = net.new_gradients()
    for a in out_new.weights + [out_new.alpha, out_new.x] + out_new.z + out_new.u:
        a.fill(SENTINEL)
    assert_gradients_close(net.value_and_grad(x, 2.0, out=out_new)[1], fresh, dtype, widths)


def test_out_without_z_u(rng, dtype):
    widths = (3, 4, 2)
    net, weights, alpha = build_net(rng, widths, "softplus", dtype)
    x = make_inputs(rng, 3, dtype)
    _, g_ref = oracle(weights, alpha, x, "softplus", 1.5)
    out = mlpgrad.Gradients(**out_spec(widths, dtype, with_zu=False))
    assert out.z is None and out.u is None
    _, g = net.value_and_grad(x, 1.5, out=out)
    assert_gradients_close(g, g_ref, dtype, widths, check_zu=False)
    net.forward(x)
    out2 = mlpgrad.Gradients(**out_spec(widths, dtype, with_zu=False))
    assert_gradients_close(net.backward(1.5, out=out2), g_ref, dtype, widths, check_zu=False)


def test_array_like_inputs(rng):
    widths = (3, 4, 2)
    acts = ["tanh", "sigmoid"]
    for dtype in DTYPES:
        net, weights, alpha = build_net(rng, widths, acts, dtype)
        base = np.array([0.5, -1.0, 2.0], dtype=dtype)
        y0, g0 = net.value_and_grad(base)
        g0 = grads_of(g0)
        other = np.float64 if dtype == np.float32 else np.float32
        holder = np.zeros(6, dtype=dtype)
        holder[::2] = base
        for x in ([0.5, -1.0, 2.0], (0.5, -1, 2), np.array([1, -2, 4]) / 2, base.astype(other),
                  holder[::2], np.array([0.5, -1.0, 2.0], dtype=dtype)):
            before = np.array(x, copy=True)
            y, g = net.value_and_grad(x)
            assert y == pytest.approx(y0, rel=tolerance(dtype, widths), abs=tolerance(dtype, widths))
            assert_gradients_close(g, g0, dtype, widths)
            assert net.forward(x) == pytest.approx(y0, rel=tolerance(dtype, widths), abs=tolerance(dtype, widths))
            np.testing.assert_array_equal(np.asarray(x), before)
        Xl = [[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]
        yb, gb = net.value_and_grad_batch(Xl, [1.0, 0.0])
        assert yb[0] == pytest.approx(y0, rel=tolerance(dtype, widths), abs=tolerance(dtype, widths))
        assert_close(gb.alpha, g0.alpha, tolerance(dtype, widths), 1.0, "batch alpha from lists")
        assert not np.any(gb.x[1])
        Xf = np.asfortranarray(np.array(Xl, dtype=dtype))
        np.testing.assert_array_equal(net.forward_batch(Xf), net.forward_batch(np.array(Xl, dtype=dtype)))
