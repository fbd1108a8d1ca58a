"""Extreme values and sizes.

* NaN and +-Inf in inputs, weights and alpha propagate as IEEE 754 arithmetic says -- no exception, no
  crash -- with the documented conventions: ReLU is max(u, 0) in the IEEE maxNum sense (ReLU(NaN) = 0 and
  ReLU'(NaN) = 0, as in the notes' "1 if a >= 0 else 0"), and a unit whose dy/du_i is exactly 0 (a ReLU
  that is off, a saturated tanh/sigmoid, an alpha_i of 0) contributes exactly 0 to its dW row and to dy/dz,
  even where its W row or z holds Inf/NaN (0 * Inf would be NaN). ``ieee_reference`` below is that
  contract in NumPy, elementwise (no BLAS).
* Overflowing magnitudes in softplus/sigmoid/tanh give the mathematically right finite values (checked
  against 80-bit long double), denormals are neither flushed to zero nor trapped.
* float32 sums over rows of K = 65,536 stay within the stated bound of a float64 computation.
* Widths and batch sizes whose buffer sizes overflow size_t/ssize_t are refused with a ValueError before
  any allocation; an allocation that fails raises MemoryError. These use "virtual" arrays (as_strided over
  one element): the binding must refuse them before reading, so they run in a subprocess where a read
  would be a crash (a test failure), not a dead test run.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import mlpgrad
from conftest import make_network, under_asan

DTYPES = (np.float32, np.float64)
ALL_ACTS = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity")
LEAK = 0.01


# ----------------------------------------------------------------------------- the IEEE contract in NumPy
def _sigma(act, u):
    with np.errstate(all="ignore"):
        if act == "relu":
            return np.where(u > 0, u, 0.0)
        if act == "leaky_relu":
            return np.where(u >= 0, u, LEAK * u)
        if act == "tanh":
            return np.tanh(u)
        if act == "sigmoid":
            e = np.exp(-np.abs(u))
            return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        if act == "softplus":
            return np.fmax(u, 0.0) + np.log1p(np.exp(-np.abs(u)))
        return u.copy()


def _dsigma(act, u, z):
    with np.errstate(all="ignore"):
        if act == "relu":
            return np.where(u >= 0, 1.0, 0.0)
        if act == "leaky_relu":
            return np.where(u >= 0, 1.0, LEAK)
        if act == "tanh":
            return 1.0 - z * z
        if act == "sigmoid":
            return z * (1.0 - z)
        if act == "softplus":
            return _sigma("sigmoid", u)
        return np.ones_like(u)


def ieee_reference(weights, alpha, x, acts, dy=1.0):
    """(yhat, dW list, dalpha, dx) in float64, elementwise IEEE arithmetic with the documented conventions."""
    W = [np.asarray(w, np.float64) for w in weights]
    a = np.asarray(alpha, np.float64)
    z = [np.asarray(x, np.float64)]
    us = []
    with np.errstate(all="ignore"):
        for w, act in zip(W, acts):
            us.append(np.sum(w * z[-1][None, :], axis=1))
            z.append(_sigma(act, us[-1]))
        yhat = float(np.sum(a * z[-1]))
        dz = dy * a
        dalpha = dy * z[-1]
        dW = [None] * len(W)
        for t in range(len(W) - 1, -1, -1):
            du = dz * _dsigma(acts[t], us[t], z[t + 1])
            off = (du == 0)[:, None]  # rows that contribute exactly 0
            dW[t] = np.where(off, 0.0, du[:, None] * z[t][None, :])
            dz = np.sum(np.where(off, 0.0, W[t] * du[:, None]), axis=0)
    return yhat, dW, dalpha, dz


def assert_ieee_equal(got, ref, dtype, what):
    """Same NaN positions, same signed infinities, finite values close."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaN pattern\n{got}\n{ref}")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref), err_msg=f"{what}: +Inf pattern\n{got}\n{ref}")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref), err_msg=f"{what}: -Inf pattern\n{got}\n{ref}")
    fin = np.isfinite(ref)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    scale = 1.0 + (np.max(np.abs(ref[fin])) if fin.any() else 0.0)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=tol, atol=tol * scale, err_msg=what)


SPECIALS = (np.nan, np.inf, -np.inf)


def poisoned_case(seed, dtype, acts, where, n_special=2, widths=(4, 5, 3)):
    """A small network with NaN/Inf planted in `where` ('x', 'weights', 'alpha', 'all')."""
    rng = np.random.default_rng(seed)
    weights, alpha = make_network(rng, widths, dtype)
    x = rng.standard_normal(widths[0]).astype(dtype)
    targets = {"x": [x], "weights": weights, "alpha": [alpha], "all": [x, alpha] + weights}[where]
    for _ in range(n_special):
        a = targets[rng.integers(len(targets))]
        a.reshape(-1)[rng.integers(a.size)] = rng.choice(SPECIALS)
    return weights, alpha, x, list(acts)


ACT_COMBOS = [(a, a) for a in ALL_ACTS] + [("relu", "tanh"), ("sigmoid", "softplus"), ("leaky_relu", "identity")]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("where", ["x", "weights", "alpha", "all"])
@pytest.mark.parametrize("acts", ACT_COMBOS, ids=["-".join(c) for c in ACT_COMBOS])
def test_nan_inf_single_example_follow_ieee(dtype, where, acts):
    for seed in range(4):
        weights, alpha, x, acts_l = poisoned_case(seed, dtype, acts, where, n_special=1 + seed % 3)
        net = mlpgrad.MLP(weights, alpha, acts_l)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no FP warning, no exception
            y, g = net.value_and_grad(x, 0.5)
            y_fwd = net.forward(x)
        y_ref, dW_ref, da_ref, dx_ref = ieee_reference(weights, alpha, x, acts_l, 0.5)
        what = f"seed {seed}, {where}, {acts}"
        assert_ieee_equal(y, y_ref, dtype, f"{what}: yhat")
        assert_ieee_equal(y_fwd, y_ref, dtype, f"{what}: forward")
        for t, (a, b) in enumerate(zip(g.weights, dW_ref)):
            assert_ieee_equal(a, b, dtype, f"{what}: dW[{t}]")
        assert_ieee_equal(g.alpha, da_ref, dtype, f"{what}: dalpha")
        assert_ieee_equal(g.x, dx_ref, dtype, f"{what}: dx")


def _batch_vs_reference(dtype, acts, where, seeds, widths=(4, 5, 3)):
    for seed in seeds:
        weights, alpha, x, acts_l = poisoned_case(seed, dtype, acts, where, n_special=1 + seed % 3, widths=widths)
        rng = np.random.default_rng(seed + 1000)
        X = np.stack([x, rng.standard_normal(x.size).astype(dtype), x[::-1].copy()])
        dy = np.array([0.5, -1.0, 2.0], dtype)
        net = mlpgrad.MLP(weights, alpha, acts_l)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yb, gb = net.value_and_grad_batch(X, dy)
            yf = net.forward_batch(X)
        refs = [ieee_reference(weights, alpha, X[b], acts_l, float(dy[b])) for b in range(len(X))]
        what = f"seed {seed}, {where}, {acts}"
        assert_ieee_equal(yb, [r[0] for r in refs], dtype, f"{what}: batch yhat")
        assert_ieee_equal(yf, yb, dtype, f"{what}: forward_batch")
        with np.errstate(all="ignore"):
            for t in range(len(weights)):
                assert_ieee_equal(gb.weights[t], sum(r[1][t] for r in refs), dtype, f"{what}: batch dW[{t}]")
            assert_ieee_equal(gb.alpha, sum(r[2] for r in refs), dtype, f"{what}: batch dalpha")
        assert_ieee_equal(gb.x, np.stack([r[3] for r in refs]), dtype, f"{what}: batch dX")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("where", ["x", "weights", "alpha", "all"])
@pytest.mark.parametrize("acts", [("identity", "identity"), ("leaky_relu", "leaky_relu"), ("leaky_relu", "identity")])
def test_nan_inf_batch_follow_ieee(dtype, where, acts):
    """Activations whose derivative is never 0: no unit is "off", so plain IEEE arithmetic is the contract."""
    _batch_vs_reference(dtype, acts, where, range(4))


@pytest.mark.xfail(strict=True, reason=(
    "core: the batch backward (batch.hpp: the packed GEMM products ∂W = ∂U Zᵀ and ∂Z = Wᵀ ∂U) multiplies every "
    "dU[i, b], also the exact zeros of off units, so 0 * Inf/NaN in a W row or in z^{t-1} gives NaN in dW and "
    "dX where the single-example path (kernels.hpp outer_product_and_transpose_matvec_accumulate skips rows "
    "with du_i == 0) gives the documented exact 0"))
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_off_units_with_inf_contribute_zero_in_batches(dtype):
    # unit 1 of layer 1 has W row [-Inf, 1]: u = -Inf, ReLU off, du = 0; its dX contribution must be 0, not NaN
    W0 = np.array([[1.0, 2.0], [-np.inf, 1.0], [0.5, -0.5]], dtype)
    net = mlpgrad.MLP([W0, np.ones((1, 3), dtype)], np.array([2.0], dtype), "relu")
    x = np.array([1.0, 1.0], dtype)
    _, g = net.value_and_grad(x)
    assert np.all(np.isfinite(g.x)) and np.all(np.isfinite(g.weights[0]))  # the single path: exact 0s
    _, gb = net.value_and_grad_batch(x[None, :])
    np.testing.assert_array_equal(gb.x[0], g.x)
    np.testing.assert_array_equal(gb.weights[0], g.weights[0])


def test_off_units_with_inf_contribute_zero_single_example():
    """The documented exception, spelled out: rows of off units are exactly 0 in dW and add 0 to dx."""
    for dtype in DTYPES:
        W0 = np.array([[1.0, 2.0], [-np.inf, 1.0], [np.nan, 0.0], [0.5, -0.5]], dtype)
        net = mlpgrad.MLP([W0, np.ones((1, 4), dtype)], np.array([2.0], dtype), "relu")
        x = np.array([1.0, 1.0], dtype)
        y, g = net.value_and_grad(x)
        # u = [3, -Inf, NaN, 0]: units 1 and 2 are off (ReLU(NaN) = 0, ReLU'(NaN) = 0), unit 3 is on (u = 0)
        assert y == 2.0 * 3.0
        np.testing.assert_array_equal(g.u[0], [2.0, 0.0, 0.0, 2.0])
        np.testing.assert_array_equal(g.weights[0], [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
        np.testing.assert_array_equal(g.x, [2.0 + 1.0, 4.0 - 1.0])
        # x = Inf into an off unit: its dW row is 0, not 0 * Inf = NaN
        net2 = mlpgrad.MLP([np.array([[1.0, 0.0], [-1.0, 0.0]], dtype)], np.array([1.0, 1.0], dtype), "relu")
        y2, g2 = net2.value_and_grad(np.array([np.inf, 1.0], dtype))
        assert y2 == np.inf
        np.testing.assert_array_equal(g2.weights[0], [[np.inf, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_activations_of_nan_and_inf(dtype):
    """sigma and sigma' of NaN and +-Inf, one unit at a time (W = I would mix 0 * Inf into the sums)."""
    cases = {  # act: [(u, z, dz/du)] for u = NaN, +Inf, -Inf
        "relu": [(0.0, 0.0), (np.inf, 1.0), (0.0, 0.0)],
        "leaky_relu": [(np.nan, LEAK), (np.inf, 1.0), (-np.inf, LEAK)],
        "tanh": [(np.nan, np.nan), (1.0, 0.0), (-1.0, 0.0)],
        "sigmoid": [(np.nan, np.nan), (1.0, 0.0), (0.0, 0.0)],
        "softplus": [(np.nan, np.nan), (np.inf, 1.0), (0.0, 0.0)],
        "identity": [(np.nan, 1.0), (np.inf, 1.0), (-np.inf, 1.0)],
    }
    for act, expected in cases.items():
        net = mlpgrad.MLP([np.ones((1, 1), dtype)], np.ones(1, dtype), act)
        for u, (z, dz) in zip((np.nan, np.inf, -np.inf), expected):
            y, g = net.value_and_grad(np.array([u], dtype))
            np.testing.assert_array_equal(net.z[1], np.array([z], dtype), err_msg=f"{act}({u})")
            np.testing.assert_array_equal(g.u[0], np.array([dz], dtype), err_msg=f"{act}'({u})")
            ref = ieee_reference([np.ones((1, 1))], np.ones(1), np.array([u]), [act])
            assert_ieee_equal(y, ref[0], dtype, f"{act}({u}) yhat")
            yb = net.forward_batch(np.array([[u]], dtype))
            np.testing.assert_array_equal(yb, [y], err_msg=f"{act}({u}) batch")


def test_relu_of_negative_zero_is_positive_zero_with_derivative_one():
    for dtype in DTYPES:
        net = mlpgrad.MLP([np.ones((1, 1), dtype)], np.ones(1, dtype), "relu")
        _, g = net.value_and_grad(np.array([-0.0], dtype))
        assert net.z[1][0] == 0.0 and not np.signbit(net.z[1][0])
        assert g.u[0][0] == 1.0  # the notes: sigma'(a) = 1 for a >= 0, and -0.0 >= 0


# ----------------------------------------------------------------------------- large and small magnitudes
LONG_DOUBLE_OK = np.finfo(np.longdouble).eps < 1e-18  # 80-bit x87 or IEEE quad


def _truth(act, u):
    """sigma(u), sigma'(u) in long double (wider exponent range: exp(1000) does not overflow)."""
    u = np.longdouble(u)
    one = np.longdouble(1)
    with np.errstate(all="ignore"):
        if act == "sigmoid":
            s = one / (one + np.exp(-u))
            return s, np.exp(-np.abs(u)) / (one + np.exp(-np.abs(u))) ** 2
        if act == "tanh":
            e = np.exp(-2 * np.abs(u))
            return np.tanh(u), 4 * e / (one + e) ** 2
        if act == "softplus":
            return (u + np.log1p(np.exp(-u))) if u > 0 else np.log1p(np.exp(u)), one / (one + np.exp(-u))
    raise ValueError(act)


def _magnitudes(dtype):
    big = [1e300, 1e200, 1e30, 1e4, 1000.0, 745.0, 700.0, 100.0, 88.0, 50.0, 40.0, 30.0, 20.0, 17.0, 10.0, 1.0]
    small = [1e-5, 1e-30, 1e-300, 5e-324]
    if dtype == np.float32:
        big = [3.0e38, 1e30, 1e4, 1000.0, 104.0, 100.0, 88.0, 50.0, 20.0, 17.0, 10.0, 9.0, 5.0, 1.0]
        small = [1e-5, 1e-30, 1e-40, 1e-45]
    vals = big + small
    return np.array([v for a in vals for v in (a, -a)], dtype)


def _check_close(got, truth, dtype, what, rel):
    """Within `rel` ulps of the (rounded) truth; in the subnormal range within 2 subnormal steps."""
    t = np.asarray(truth.astype(dtype), np.float64)
    got = np.asarray(got, np.float64)
    fi = np.finfo(dtype)
    ok = np.abs(got - t) <= np.maximum(rel * fi.eps * np.abs(t), 2 * float(fi.smallest_subnormal))
    assert np.all(np.isfinite(got)), f"{what}: non-finite {got}"
    assert np.all(ok), f"{what}: got {got[~ok]} expected {t[~ok]} at u = {np.flatnonzero(~ok)}"


@pytest.mark.skipif(not LONG_DOUBLE_OK, reason="needs an extended-precision long double for the truth")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "softplus"])
def test_saturating_activations_are_finite_and_right(dtype, act):
    """Values: within 4 ulps of the truth (or of the subnormal grid). Derivatives: within 4 ulps of 1
    absolutely -- where sigma'(u) is below eps its relative accuracy is the xfail test below."""
    us = _magnitudes(dtype)
    n = len(us)
    net = mlpgrad.MLP([np.eye(n, dtype=dtype)], np.ones(n, dtype), act)
    # np.eye: every u_i = 1 * x_i + sum of 0 * (finite) = x_i exactly
    y, g = net.value_and_grad(us)
    truth = [_truth(act, u) for u in us.astype(np.float64)]
    s_true = np.array([t[0] for t in truth], np.longdouble)
    d_true = np.array([t[1] for t in truth], np.longdouble)
    _check_close(net.z[1], s_true, dtype, f"{act}(u)", 4)
    _check_close(g.alpha, s_true, dtype, f"d/dalpha = {act}(u)", 4)
    d_got = np.asarray(g.u[0], np.float64)
    assert np.all(np.isfinite(d_got))
    np.testing.assert_allclose(d_got, d_true.astype(np.float64), rtol=0,
                               atol=4 * float(np.finfo(dtype).eps), err_msg=f"{act}'(u)")
    # the batch path agrees bit for bit on sigma (same scalar code)
    yb, gb = net.value_and_grad_batch(us[None, :])
    np.testing.assert_array_equal(gb.alpha, g.alpha)
    assert np.isfinite(y) or act == "softplus"  # softplus(1e300) + ... sums to a finite or +Inf as IEEE says


@pytest.mark.skipif(not LONG_DOUBLE_OK, reason="needs an extended-precision long double for the truth")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_softplus_derivative_keeps_relative_accuracy_in_the_tails(dtype):
    """softplus' = sigmoid(u) is computed directly: accurate to a few ulps even at e^-700."""
    us = _magnitudes(dtype)
    n = len(us)
    net = mlpgrad.MLP([np.eye(n, dtype=dtype)], np.ones(n, dtype), "softplus")
    _, g = net.value_and_grad(us)
    d_true = np.array([_truth("softplus", u)[1] for u in us.astype(np.float64)], np.longdouble)
    _check_close(g.u[0], d_true, dtype, "softplus'(u)", 4)


@pytest.mark.skipif(not LONG_DOUBLE_OK, reason="needs an extended-precision long double for the truth")
@pytest.mark.xfail(strict=True, reason=(
    "core: activations.hpp computes tanh'(u) = 1 - z*z and sigmoid'(u) = z*(1 - z) from z = sigma(u); once z "
    "rounds to +-1 (|u| > ~19 for tanh, u > ~37 for sigmoid in float64; ~9 / ~17 in float32) they are exactly "
    "0 while the true values (e.g. 4e-17 at u = 20) are finite and representable: absolute error < eps, "
    "relative error 100%"))
@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_saturating_derivatives_keep_relative_accuracy(act):
    us = np.array([20.0, 25.0, 30.0, 40.0, 50.0, 100.0, 300.0, -20.0, -40.0, -300.0])
    n = len(us)
    net = mlpgrad.MLP([np.eye(n)], np.ones(n), act)
    _, g = net.value_and_grad(us)
    d_true = np.array([_truth(act, u)[1] for u in us], np.longdouble)
    _check_close(g.u[0], d_true, np.float64, f"{act}'(u)", 16)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_overflow_to_inf_is_ieee(dtype):
    """Where the true result is not representable, IEEE overflow: +-Inf, no exception, no NaN."""
    big = np.finfo(dtype).max
    net = mlpgrad.MLP([np.array([[1.0, 1.0]], dtype)], np.array([2.0], dtype), "identity")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, g = net.value_and_grad(np.array([big, big], dtype))
    assert y == np.inf and net.u[0][0] == np.inf
    np.testing.assert_array_equal(g.weights[0], [[np.inf, np.inf]])  # du * x = 2 * max overflows
    np.testing.assert_array_equal(g.x, [2.0, 2.0])
    y, _ = net.value_and_grad(np.array([-big, -big], dtype))
    assert y == -np.inf


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_denormals_are_not_flushed(dtype):
    """Gradual underflow: subnormal inputs, products and sums come out exactly as NumPy computes them."""
    tiny = np.finfo(dtype).smallest_subnormal
    s = dtype(1e-20) if dtype == np.float32 else dtype(1e-160)  # s * s is subnormal
    x = np.array([tiny, s, 3 * tiny, -tiny], dtype)
    W = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, s, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype)
    alpha = np.array([1.0, 1.0, 1.0], dtype)
    for act in ("identity", "relu", "leaky_relu"):
        net = mlpgrad.MLP([W], alpha, act)
        y, g = net.value_and_grad(x, 1.0)
        u = np.array([x[0] + x[2], s * s, x[3]], dtype)
        assert np.all(u[:2] != 0) and np.all(np.abs(u[:2]) < np.finfo(dtype).tiny)  # truly subnormal
        np.testing.assert_array_equal(net.u[0], u, err_msg=act)
        z = _sigma(act, u.astype(np.float64)).astype(dtype)
        np.testing.assert_array_equal(net.z[1], z, err_msg=act)
        assert y == float(np.sum(z, dtype=dtype))
        du = _dsigma(act, u.astype(np.float64), None).astype(dtype)
        np.testing.assert_array_equal(g.weights[0], du[:, None] * x[None, :], err_msg=act)  # subnormal products
        yb, gb = net.value_and_grad_batch(np.stack([x, x]))
        np.testing.assert_array_equal(yb, [y, y])
        np.testing.assert_array_equal(gb.weights[0], 2 * g.weights[0])
    # sigmoid/softplus/tanh of a subnormal: 0.5, log 2, the subnormal itself
    for act, expected in (("sigmoid", 0.5), ("softplus", np.log(2.0)), ("tanh", tiny)):
        net = mlpgrad.MLP([np.ones((1, 1), dtype)], np.ones(1, dtype), act)
        y = net.forward(np.array([tiny], dtype))
        assert y == pytest.approx(float(expected), rel=4 * float(np.finfo(dtype).eps), abs=0), act


# ----------------------------------------------------------------------------- float32 over long rows
K_LONG = 65_536
U32 = 2.0 ** -24  # unit roundoff of float32


def gamma(n):
    """The classical bound for any order of summation of n products: |error| <= gamma_n * sum |a_j b_j|."""
    return n * U32 / (1 - n * U32)


def _long_case(kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "constant":  # every partial sum of one long chain rounds the same way: its worst case
        return np.full(K_LONG, 0.55, np.float32), np.full(K_LONG, 2.0, np.float32)
    if kind == "positive":
        return rng.uniform(0, 1, K_LONG).astype(np.float32), rng.uniform(0, 1, K_LONG).astype(np.float32)
    if kind == "mixed_magnitudes":
        a = (rng.standard_normal(K_LONG) * 10.0 ** rng.integers(-3, 4, K_LONG)).astype(np.float32)
        return a, rng.standard_normal(K_LONG).astype(np.float32)
    return rng.standard_normal(K_LONG).astype(np.float32), rng.standard_normal(K_LONG).astype(np.float32)


def _assert_within_bound(got, a, b, what):
    """|got - exact| <= gamma_K sum |a b| (guaranteed) and <= 16 sqrt(K) u sum |a b| (what the kernels give)."""
    exact = float(np.dot(a.astype(np.float64), b.astype(np.float64)))  # exact to ~1e-16 relative: the truth
    mag = float(np.dot(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64))))
    err = abs(float(got) - exact)
    assert err <= gamma(len(a)) * mag, f"{what}: error {err:.3g} > gamma_K bound {gamma(len(a)) * mag:.3g}"
    assert err <= 16 * np.sqrt(len(a)) * U32 * mag, f"{what}: error {err:.3g} is {err / (U32 * mag):.0f} u sum|ab|"


@pytest.mark.parametrize("kind", ["normal", "positive", "constant", "mixed_magnitudes"])
def test_float32_long_rows_within_bound(kind):
    w, x = _long_case(kind, 7)
    alpha, _ = _long_case(kind, 8)
    # forward: u = w . x over K = 65,536 (one row of W)
    net = mlpgrad.MLP([w[None, :].copy()], np.ones(1, np.float32), "identity")
    y, g = net.value_and_grad(x)
    _assert_within_bound(y, w, x, "forward w.x")
    np.testing.assert_array_equal(g.weights[0][0], x)  # dW = du x with du = 1: exact
    yb = net.forward_batch(np.stack([x, x[::-1].copy()]))
    _assert_within_bound(yb[0], w, x, "forward_batch row 0")
    _assert_within_bound(yb[1], w, x[::-1], "forward_batch row 1")
    # backward: dx = W^T du over K = 65,536 rows (W of shape (K, 1)), and yhat = alpha . z over K
    col = w[:, None].copy()
    net2 = mlpgrad.MLP([col], alpha, "identity")
    y2, g2 = net2.value_and_grad(np.ones(1, np.float32))
    _assert_within_bound(y2, alpha, w, "yhat = alpha.z")
    _assert_within_bound(g2.x[0], w, alpha, "dx = W^T du")
    yb2, gb2 = net2.value_and_grad_batch(np.ones((2, 1), np.float32))
    _assert_within_bound(yb2[0], alpha, w, "batch yhat = alpha^T Z")
    _assert_within_bound(gb2.x[0, 0], w, alpha, "batch dX = W^T dU")
    np.testing.assert_array_equal(gb2.alpha, 2 * w)  # dalpha_k = sum_b dy_b z_k = 2 w_k exactly
    # sums over a batch of K examples: dalpha = sum_b dy_b z_b, dW = sum_b du_b x_b (du_b = alpha dy_b)
    net3 = mlpgrad.MLP([np.ones((1, 1), np.float32)], alpha[:1].copy(), "identity")
    _, gb3 = net3.value_and_grad_batch(x[:, None].copy(), w)
    _assert_within_bound(gb3.alpha[0], w, x, "batch dalpha = sum_b dy_b z_b")
    _assert_within_bound(gb3.weights[0][0, 0], alpha[0] * w, x, "batch dW = sum_b du_b x_b")


def test_float32_batch_sum_does_not_stall_at_2_to_24():
    """forward_batch of a depth-0 network summed K ones in one chain, which stops at 2^24 (16,777,216 + 1
    rounds back to 16,777,216). 1.5 * 2^24 ones (the issue's 10^8 fails the same way, with 4x the memory)
    must give the exact count, like the single-example forward. In a child process: ~0.6 GB."""
    res = run_isolated("""
        K = 3 * 2**23
        ones = np.ones(K, np.float32)
        net = mlpgrad.MLP([], ones)
        out = {"single": float(net.forward(ones))}
        del net
        net = mlpgrad.MLP([], ones)  # a new network: the single-example tape is freed with the first one
        out["batch"] = float(net.forward_batch(ones[None, :])[0])
        print(json.dumps(out))
    """)
    assert res == {"single": 3 * 2**23, "batch": 3 * 2**23}


# ----------------------------------------------------------------------------- sizes (in a subprocess)
PRELUDE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from numpy.lib.stride_tricks import as_strided
    import mlpgrad

    def virtual(shape, dtype=np.float64):
        # a C-contiguous array of any shape over ONE element: reading past it would crash
        base = np.zeros(1, dtype)
        strides, step = [], base.itemsize
        for k in reversed(shape):
            strides.append(step)
            step *= k
        return as_strided(base, shape=shape, strides=tuple(reversed(strides)))

    def outcome(f):
        try:
            r = f()
            return {"result": type(r).__name__}
        except BaseException as e:
            return {"error": type(e).__name__, "message": str(e)}
""")


def run_isolated(body: str) -> dict:
    """Run PRELUDE + body in a fresh interpreter; body prints one JSON object. A crash is a failure."""
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (f"the subprocess died (status {proc.returncode}): a buffer size was not "
                                  f"checked before use\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sizes_refused_before_any_allocation_or_read():
    res = run_isolated("""
        out = {}
        # one example's tape would need more than PTRDIFF_MAX bytes: refused when the MLP is made
        out["ctor"] = outcome(lambda: mlpgrad.MLP([virtual((2**60, 1), np.float32)], virtual((2**60,), np.float32)))
        # B * K_1 = 2^64 wraps to 0 in size_t: without the check the batch tape is too small and is overrun
        net = mlpgrad.MLP([virtual((2**40, 1))], virtual((2**40,)))
        X = np.zeros((2**24, 1))
        out["forward_batch"] = outcome(lambda: net.forward_batch(X))
        out["value_and_grad_batch"] = outcome(lambda: net.value_and_grad_batch(X))
        out["new_gradients"] = outcome(lambda: net.new_gradients(batch=2**24))
        small = mlpgrad.MLP([np.ones((3, 2))], np.ones(3))
        out["new_gradients_2^62"] = outcome(lambda: small.new_gradients(batch=2**62))
        out["new_gradients_2^64"] = outcome(lambda: small.new_gradients(batch=2**64))
        print(json.dumps(out))
    """)
    for case, r in res.items():
        assert r.get("error") == "ValueError", f"{case}: {r}"
        assert "too large" in r["message"] or "64 bits" in r["message"], f"{case}: {r}"



@pytest.mark.skipif(under_asan(), reason="AddressSanitizer's operator new reports out-of-memory and aborts "
                                          "instead of throwing std::bad_alloc")
def test_failed_tape_allocation_raises_memory_error():
    res = run_isolated("""
        out = {}
        # K_0 = 2^45: the per-thread tape (~2^48 bytes) cannot be allocated; raised before x is read
        wide = mlpgrad.MLP([virtual((1, 2**45))], np.ones(1))
        out["tape"] = outcome(lambda: wide.forward(virtual((2**45,))))
        out["tape_vg"] = outcome(lambda: wide.value_and_grad(virtual((2**45,))))
        print(json.dumps(out))
    """)
    for case, r in res.items():
        assert r.get("error") == "MemoryError", f"{case}: {r}"


def test_failed_allocations_raise_memory_error():
    res = run_isolated("""
        out = {}
        # gradients of a 2^40 x 1 layer (8 TiB)
        tall = mlpgrad.MLP([virtual((2**40, 1))], virtual((2**40,)))
        out["new_gradients"] = outcome(lambda: tall.new_gradients())
        out["value_and_grad"] = outcome(lambda: tall.value_and_grad(np.ones(1)))
        # converting a huge int8 X to float64 (8 TiB)
        small = mlpgrad.MLP([np.ones((3, 1))], np.ones(3))
        out["convert_X"] = outcome(lambda: small.forward_batch(virtual((2**40, 1), np.int8)))
        out["convert_x"] = outcome(lambda: small.forward(virtual((2**40,), np.int8)))
        out["batch_gradients"] = outcome(lambda: small.new_gradients(batch=2**41))
        print(json.dumps(out))
    """)
    for case, r in res.items():
        assert r.get("error") == "MemoryError", f"{case}: {r}"
        assert r["message"], case
