"""Vector outputs: alpha of shape (K_T, m) gives ŷ = αᵀ z^T (+ β) ∈ ℝ^m. forward returns an (m,) array, the
batch calls take and return (B, m), dy has ŷ's shape; a 1-D alpha keeps the scalar API exactly. Every call
against mlpgrad.reference, central differences and (where installed) PyTorch, float32 and float64.
"""
from __future__ import annotations

import numpy as np
import pytest

import mlpgrad
from conftest import ACTIVATIONS, DTYPES
from network_cases import (
    Case, all_arrays, assert_matches_torch_autograd, check_every_path, check_finite_differences, kink_safe, oracle,
    parameter_arrays, same_bits,
)

WIDTHS = (4, 5, 3)
LAYOUTS = [(False, False), (True, False), (False, True), (True, True)]
LAYOUT_IDS = ["plain", "biases", "output_bias", "both"]


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_call_against_the_reference(rng, activation, dtype, layout, outputs):
    check_every_path(Case(WIDTHS, activation, dtype, *layout, outputs=outputs), rng)


@pytest.mark.parametrize("layout", [(False, False), (True, True)], ids=["plain", "both"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_against_finite_differences(rng, activation, dtype, layout):
    check_finite_differences(Case(WIDTHS, activation, dtype, *layout, outputs=4), rng)


@pytest.mark.parametrize("widths,outputs", [((3,), 2), ((2, 9), 17), ((5, 3, 2), 40), ((1, 1), 1)])
def test_more_outputs_than_units_and_depth_0(rng, widths, outputs):
    """m larger than every width (the batch tape's dYᵀ scratch is sized by m), and depth 0 (ŷ = αᵀx + β)."""
    check_every_path(Case(widths, "softplus", np.float64, outputs=outputs), rng, batch=9)


def test_shapes_and_types(rng):
    net = Case(WIDTHS, "tanh", np.float32, outputs=3).build(rng)
    assert net.output_shape == (3,) and net.alpha.shape == (3, 3)
    assert "output_shape=(3,)" in repr(net)
    y = net.forward(np.ones(4, np.float32))
    assert y.shape == (3,) and y.dtype == np.float32 and y.flags.writeable and y.flags.c_contiguous
    g = net.new_gradients()
    assert g.alpha.shape == net.alpha.shape and g.output_bias.shape == (3,)
    gb = net.new_gradients(batch=6)
    assert gb.x.shape == (6, 4) and gb.alpha.shape == net.alpha.shape
    assert net.forward_batch(np.ones((6, 4))).shape == (6, 3)
    assert net.forward_batch(np.ones((0, 4))).shape == (0, 3)


def test_a_one_column_alpha_is_a_vector_output(rng):
    """alpha (K_T, 1) is one output of a vector network: ŷ is an array (1,), dy (1,) or (B, 1)."""
    W = [rng.standard_normal((3, 2))]
    a = rng.standard_normal(3)
    column, flat = mlpgrad.MLP(W, a[:, None].copy(), "tanh"), mlpgrad.MLP(W, a, "tanh")
    x = rng.standard_normal(2)
    assert column.output_shape == (1,) and flat.output_shape == ()
    y = column.forward(x)
    assert y.shape == (1,) and y[0] == flat.forward(x)
    _, gc = column.value_and_grad(x, np.array([0.5]))
    _, gf = flat.value_and_grad(x, 0.5)
    assert gc.alpha.shape == (3, 1) and np.array_equal(gc.alpha[:, 0], gf.alpha)
    assert np.array_equal(gc.weights[0], gf.weights[0]) and np.array_equal(gc.x, gf.x)
    with pytest.raises(ValueError, match=r"dy has shape \(\) but the network has 1 outputs"):
        column.value_and_grad(x, 0.5)
    X = rng.standard_normal((4, 2))
    yb, gbc = column.value_and_grad_batch(X, np.full((4, 1), 2.0))
    ybf, gbf = flat.value_and_grad_batch(X, np.full(4, 2.0))
    assert yb.shape == (4, 1) and np.array_equal(yb[:, 0], ybf)
    assert np.array_equal(gbc.weights[0], gbf.weights[0]) and np.array_equal(gbc.x, gbf.x)
    with pytest.raises(ValueError, match=r"dy has shape \(4,\) but X holds 4 examples of 1 outputs; expected \(4, 1\)"):
        column.value_and_grad_batch(X, np.ones(4))


def test_dy_defaults_to_ones(rng):
    net = Case(WIDTHS, "sigmoid", np.float64, outputs=3).build(rng)
    x = rng.standard_normal(4)
    _, g_default = net.value_and_grad(x)
    _, g_ones = net.value_and_grad(x, np.ones(3))
    same_bits(g_default, g_ones)
    net.forward(x)
    same_bits(net.backward(), g_ones)


def test_dy_as_a_list_or_another_dtype_is_converted(rng):
    net = Case(WIDTHS, "tanh", np.float32, outputs=3).build(rng)
    x = rng.standard_normal(4).astype(np.float32)
    _, g = net.value_and_grad(x, np.array([1.0, -2.0, 0.5], np.float32))
    _, g_list = net.value_and_grad(x, [1, -2, 0.5])
    same_bits(g, g_list)


def test_dy_that_aliases_out_is_read_before_it_is_overwritten(rng):
    """dy may be an array of `out` itself (here out.output_bias, which the backward pass sets to dy)."""
    net = Case(WIDTHS, "tanh", np.float64, biases=False, outputs=5).build(rng)
    x = rng.standard_normal(4)
    net2 = mlpgrad.MLP(net.weights, net.alpha, net.activations, output_bias=net.output_bias)
    out = net2.new_gradients()
    out.output_bias[...] = rng.standard_normal(5)
    dy = out.output_bias.copy()
    _, expected = net2.value_and_grad(x, dy)
    net2.value_and_grad(x, out.output_bias, out=out)
    same_bits(out, expected)
    # alpha's gradient (K_T × m) overlapping dy: a row of it as dy
    out.alpha[0] = dy
    _, expected = net2.value_and_grad(x, out.alpha[0].copy())
    net2.value_and_grad(x, out.alpha[0], out=out)
    same_bits(out, expected)
    # a batch of B = K_T = 3 examples: dy (B, m) the very array of alpha's gradient (K_T, m)
    X = rng.standard_normal((3, 4))
    gb = net2.new_gradients(batch=3)
    gb.alpha[...] = rng.standard_normal(gb.alpha.shape)
    _, expected = net2.value_and_grad_batch(X, gb.alpha.copy())
    net2.value_and_grad_batch(X, gb.alpha, out=gb)
    same_bits(gb, expected)


@pytest.mark.parametrize("call,dy,match", [
    ("value_and_grad", np.ones(2), r"dy has shape \(2,\) but the network has 3 outputs \(output_shape \(3,\)\); expected \(3,\)"),
    ("value_and_grad", 1.0, r"dy has shape \(\) but the network has 3 outputs"),
    ("value_and_grad", np.ones((1, 3)), r"dy has shape \(1, 3\)"),
    ("backward", np.ones(4), r"dy has shape \(4,\)"),
    ("value_and_grad", "abc", r"dy could not be read|dy has dtype"),
    ("value_and_grad_batch", np.ones(6), r"dy has shape \(6,\) but X holds 6 examples of 3 outputs; expected \(6, 3\)"),
    ("value_and_grad_batch", np.ones((6, 2)), r"dy has shape \(6, 2\)"),
    ("value_and_grad_batch", np.ones((5, 3)), r"dy has shape \(5, 3\)"),
    ("backward_batch", np.ones((6, 4)), r"dy has shape \(6, 4\) but this thread's last forward_batch\(X\) had 6 examples of 3 outputs"),
])
def test_bad_dy_is_refused_with_nothing_written(rng, call, dy, match):
    net = Case(WIDTHS, "tanh", np.float64, outputs=3).build(rng)
    x, X = rng.standard_normal(4), rng.standard_normal((6, 4))
    batch = call.endswith("batch")
    out = net.new_gradients(batch=6 if batch else None)
    for a in all_arrays(out):
        a[...] = -777.25
    net.forward(x)
    net.forward_batch(X)
    args = {"value_and_grad": (x, dy), "backward": (dy,), "value_and_grad_batch": (X, dy), "backward_batch": (dy,)}[call]
    with pytest.raises((ValueError, TypeError), match=match):
        getattr(net, call)(*args, out=out)
    assert all(np.all(a == -777.25) for a in all_arrays(out))


@pytest.mark.parametrize("alpha,error,match", [
    (np.ones((5, 3, 1)), ValueError, r"alpha must be 1-D with shape \(K_T,\) for one output or 2-D with shape \(K_T, m\)"),
    (np.ones(()), ValueError, r"alpha must be 1-D"),
    (np.ones((5, 0)), ValueError, r"alpha has 0 columns; a network has at least 1 output"),
    (np.ones((4, 3)), ValueError, r"alpha has 4 rows but expected 5"),
    (np.ones((3, 5)).T, ValueError, r"alpha of shape \(5, 3\) is not a C-contiguous"),
    (np.ones((5, 3), np.float32), TypeError, r"alpha has dtype float32 but weights\[0\] has float64"),
])
def test_bad_alpha_is_refused(alpha, error, match):
    with pytest.raises(error, match=match):
        mlpgrad.MLP([np.ones((5, 4))], alpha)


def test_out_for_another_number_of_outputs_is_refused():
    W = [np.ones((5, 4))]
    net3, net2 = mlpgrad.MLP(W, np.ones((5, 3))), mlpgrad.MLP(W, np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"out.alpha has 10 entries but expected 15 \(alpha's shape \(5, 3\)\)"):
        net3.value_and_grad(np.ones(4), out=net2.new_gradients())
    with pytest.raises(ValueError, match=r"out.alpha has 5 entries but expected 15"):
        net3.value_and_grad_batch(np.ones((2, 4)), out=mlpgrad.MLP(W, np.ones(5)).new_gradients(batch=2))
    with pytest.raises(ValueError, match=r"out.output_bias has shape \(2,\) but expected \(3,\)"):
        mlpgrad.Gradients([np.zeros((5, 4))], np.zeros((5, 3)), output_bias=np.zeros(2))
    with pytest.raises(ValueError, match=r"out.alpha must be 1-D \(K_T,\) for one output or 2-D \(K_T, m\)"):
        mlpgrad.Gradients([np.zeros((5, 4))], np.zeros((5, 3, 1)))
    with pytest.raises(ValueError, match=r"out.alpha has shape \(5, 0\) but expected \(5, m\), m >= 1"):
        mlpgrad.Gradients([np.zeros((5, 4))], np.zeros((5, 0)))


def test_threads_keep_their_own_vector_passes(rng):
    import threading

    net = Case((6, 32, 16), "tanh", np.float64, outputs=4).build(rng)
    inputs = [rng.standard_normal(6) for _ in range(4)]
    expected = [oracle(net, x, np.ones(4)) for x in inputs]
    failures = []

    def work(i):
        out = net.new_gradients()
        for _ in range(50):
            y = net.forward(inputs[i])
            net.backward(np.ones(4), out=out)
            if not np.allclose(y, expected[i][0], rtol=1e-12) or not np.allclose(out.alpha, expected[i][1]["alpha"]):
                failures.append(i)
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_against_pytorch_autograd(rng, activation, dtype):
    torch = pytest.importorskip("torch")
    case = Case((3, 6, 5), activation, dtype, outputs=4)
    for _ in range(20):
        net = case.build(rng)
        X = case.x(rng, 7)
        if kink_safe(net, X):
            break
    dY = case.dy(rng, 7)
    yhat, g = net.value_and_grad_batch(X, dY)

    assert_matches_torch_autograd(torch, net, X, dY, yhat, g, activation, dtype)
