"""mlpgrad.DAG, the core's DAG passes from Python (issue 12): DAG.from_mlp against the MLP, random DAGs against
the pure-Python oracle mlpgrad.dag and central finite differences, batch = sum of single examples, dense
levels against the gather path, unreachable nodes. Zero copy, malformed graphs, pickling and threads:
test_dag_robustness.py."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import ACTIVATIONS, DTYPES, SMOOTH, build_net

import mlpgrad
from dag_cases import CASES, RandomDag, assert_close, check_against, make_case


# ----------------------------------------------------------------------------- DAG.from_mlp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_from_mlp_equals_the_mlp(activation, dtype):
    rng = np.random.default_rng(sum(map(ord, activation)) + (dtype == np.float32))
    for widths in ([3, 1], [2, 5, 1], [4, 6, 3, 2], [1, 7, 7, 7, 3]):
        net, _, alpha = build_net(rng, widths, activation, dtype)
        d = mlpgrad.DAG.from_mlp(net)
        assert (d.n_nodes, d.n_inputs, d.n_edges) == (sum(widths), widths[0],
                                                      sum(a * b for a, b in zip(widths, widths[1:])))
        assert d.dtype == dtype and d.weights.dtype == dtype
        np.testing.assert_array_equal(d.outputs, np.arange(sum(widths) - widths[-1], sum(widths)))
        x = rng.standard_normal(widths[0]).astype(dtype)
        assert_close(d.forward(x), net.forward(x), dtype, "forward")
        y, g = d.value_and_grad(x, -1.5)
        y_ref, g_ref = net.value_and_grad(x, -1.5)
        assert_close(y, y_ref, dtype, "value_and_grad")
        assert_close(g.weights, np.concatenate([w.ravel() for w in g_ref.weights]), dtype, "weights")
        assert_close(g.alpha, g_ref.alpha, dtype, "alpha")
        assert_close(g.x, g_ref.x, dtype, "x")
        assert_close(g.z, np.concatenate(g_ref.z), dtype, "z")
        assert_close(g.u[widths[0]:], np.concatenate(g_ref.u), dtype, "u")
        X = rng.standard_normal((9, widths[0])).astype(dtype)
        dy = rng.standard_normal(9).astype(dtype)
        assert_close(d.forward_batch(X), net.forward_batch(X), dtype, "forward_batch")
        Y, gb = d.value_and_grad_batch(X, dy)
        Y_ref, gb_ref = net.value_and_grad_batch(X, dy)
        assert_close(Y, Y_ref, dtype, "value_and_grad_batch")
        assert_close(gb.weights, np.concatenate([w.ravel() for w in gb_ref.weights]), dtype, "batch weights")
        assert_close(gb.alpha, gb_ref.alpha, dtype, "batch alpha")
        assert_close(gb.x, gb_ref.x, dtype, "batch x")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_from_mlp_keeps_biases_and_vector_outputs(activation, dtype):
    rng = np.random.default_rng(sum(map(ord, activation)))
    widths = [3, 6, 5]
    W = [rng.standard_normal((k1, k0)).astype(dtype) for k0, k1 in zip(widths, widths[1:])]
    b = [rng.standard_normal(k).astype(dtype) for k in widths[1:]]
    net = mlpgrad.MLP(W, rng.standard_normal((5, 2)).astype(dtype), activation, biases=b)
    d = mlpgrad.DAG.from_mlp(net)
    assert d.output_shape == (2,) and d.biases is not None
    np.testing.assert_array_equal(d.biases, np.concatenate([np.zeros(3, dtype)] + b))
    x, dy = rng.standard_normal(3).astype(dtype), rng.standard_normal(2).astype(dtype)
    (y, g), (y_ref, g_ref) = d.value_and_grad(x, dy), net.value_and_grad(x, dy)
    assert_close(y, y_ref, dtype, "yhat")
    assert_close(g.biases[3:], np.concatenate(g_ref.biases), dtype, "biases")
    assert_close(g.alpha, g_ref.alpha, dtype, "alpha")
    X, dY = rng.standard_normal((7, 3)).astype(dtype), rng.standard_normal((7, 2)).astype(dtype)
    (Y, gb), (Y_ref, gb_ref) = d.value_and_grad_batch(X, dY), net.value_and_grad_batch(X, dY)
    assert_close(Y, Y_ref, dtype, "batch yhat")
    assert_close(gb.biases[3:], np.concatenate(gb_ref.biases), dtype, "batch biases")
    assert_close(gb.weights, np.concatenate([w.ravel() for w in gb_ref.weights]), dtype, "batch weights")
    with pytest.raises(ValueError, match="output bias, which a DAG does not model"):
        mlpgrad.DAG.from_mlp(mlpgrad.MLP(W, np.ones(5, dtype), output_bias=np.array(0.5, dtype)))


def test_from_mlp_refuses_what_is_not_an_mlp():
    with pytest.raises(TypeError, match="from_mlp.*needs a mlpgrad.MLP, got list"):
        mlpgrad.DAG.from_mlp([np.ones((2, 2))])


# ----------------------------------------------------------------------------- random DAGs vs the oracle
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_random_dags_match_the_oracle(case, dtype):
    rng = np.random.default_rng(100 + case)
    for trial in range(4):
        g = make_case(rng, CASES[case], dtype)
        d = g.dag()
        m = None if g.alpha.ndim == 1 else g.alpha.shape[1]
        x = rng.standard_normal(g.n_inputs).astype(dtype)
        dy = 0.75 if m is None else rng.standard_normal(m).astype(dtype)
        y_ref, ref = g.oracle(x, dy)
        assert_close(d.forward(x), y_ref, dtype, "forward")
        y, got = d.value_and_grad(x, dy)
        assert_close(y, y_ref, dtype, "value_and_grad")
        if m is None:
            assert isinstance(y, float)
        check_against(got, ref, dtype, f"trial {trial}")


@pytest.mark.parametrize("case", [0, 1, 2, 4, 7, 8, 9])
def test_random_dags_match_central_differences(case):
    rng = np.random.default_rng(200 + case)
    g = make_case(rng, CASES[case], np.float64)
    if not isinstance(g.activation, str):
        g.activation = tuple(a if a in SMOOTH else "tanh" for a in g.activation)
    m = None if g.alpha.ndim == 1 else g.alpha.shape[1]
    x = rng.standard_normal(g.n_inputs)
    dy = 1.25 if m is None else rng.standard_normal(m)
    d = g.dag()
    _, got = d.value_and_grad(x, dy)

    def f():
        return float(np.dot(np.atleast_1d(d.forward(x)), np.atleast_1d(dy)))

    h = 1e-6
    for name, array, grad in [("weights", g.weights, got.weights), ("alpha", g.alpha, got.alpha), ("x", x, got.x),
                              ("biases", g.biases, got.biases)]:
        if array is None:
            continue
        flat, gflat = array.reshape(-1), np.asarray(grad).reshape(-1)  # views: d reads the very arrays
        for i in range(flat.size):
            if name == "biases" and i < g.n_inputs:
                assert gflat[i] == 0.0
                continue
            keep = flat[i]
            flat[i] = keep + h
            up = f()
            flat[i] = keep - h
            down = f()
            flat[i] = keep
            assert gflat[i] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7), f"{name}[{i}]"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_batch_is_the_sum_of_single_examples(case, dtype):
    rng = np.random.default_rng(300 + case)
    g = make_case(rng, CASES[case], dtype)
    d = g.dag()
    m = None if g.alpha.ndim == 1 else g.alpha.shape[1]
    for B in (1, 5, 37):
        X = rng.standard_normal((B, g.n_inputs)).astype(dtype)
        dY = rng.standard_normal((B,) if m is None else (B, m)).astype(dtype)
        Y, gb = d.value_and_grad_batch(X, dY)
        singles = [d.value_and_grad(X[b], dY[b] if m else float(dY[b])) for b in range(B)]
        assert_close(Y, np.array([y for y, _ in singles]), dtype, "yhat")
        assert_close(d.forward_batch(X), Y, dtype, "forward_batch")
        for name in ("weights", "alpha", "biases"):
            if getattr(gb, name) is None:
                assert g.biases is None and name == "biases"
                continue
            assert_close(getattr(gb, name), sum(getattr(s, name) for _, s in singles), dtype, name)
        assert_close(gb.x, np.array([s.x for _, s in singles]), dtype, "x")
        assert gb.z is None and gb.u is None and gb.batch == B
        params = d.new_gradients(batch=B, x=False)
        assert d.value_and_grad_batch(X, dY, out=params)[1] is params and params.x is None
        for name in ("weights", "alpha", "biases"):
            if getattr(gb, name) is not None:
                np.testing.assert_array_equal(getattr(params, name), getattr(gb, name))
    Y, g_default = d.value_and_grad_batch(X)  # dy defaults to ones
    _, g_ones = d.value_and_grad_batch(X, np.ones_like(dY))
    np.testing.assert_array_equal(g_default.weights, g_ones.weights)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", [dict(), dict(biases=True), dict(skip=True), dict(hidden_output=True),
                                     dict(biases=True, skip=True, hidden_output=True)])
def test_dense_levels_match_the_gather_path_and_the_oracle(variant, dtype):
    # The batch passes run a level that is a dense block as matrix products (the MLP's kernels), with ∂Z of
    # its sources written or, when they have other successors or seeds, accumulated; one example, and the
    # oracle, take the edge-by-edge path.
    rng = np.random.default_rng(400 + len(variant))
    g = RandomDag.layered(rng, [5, 9, 17, 6, 3], dtype=dtype, **variant)
    d = g.dag()
    X = rng.standard_normal((21, g.n_inputs)).astype(dtype)
    dY = rng.standard_normal(21).astype(dtype)
    Y, gb = d.value_and_grad_batch(X, dY)
    singles = [d.value_and_grad(X[b], float(dY[b])) for b in range(21)]
    refs = [g.oracle(X[b], float(dY[b])) for b in range(21)]
    assert_close(Y, [y for y, _ in refs], dtype, "yhat")
    for name in ("weights", "alpha", "biases"):
        if g.biases is None and name == "biases":
            continue
        assert_close(getattr(gb, name), sum(getattr(s, name) for _, s in singles), dtype, name)
        assert_close(getattr(gb, name), sum(r[name] for _, r in refs), dtype, name + " (oracle)")
    assert_close(gb.x, [r["x"] for _, r in refs], dtype, "x")
    params = d.new_gradients(batch=21, x=False)  # skips ∂Z of the inputs: the same parameter gradients
    d.value_and_grad_batch(X, dY, out=params)
    np.testing.assert_array_equal(params.weights, gb.weights)


def test_unreachable_nodes_and_an_empty_graph():
    # node 3 has no incoming edge: u = b_3, z = σ(b_3); node 2 reads only node 3
    w, b = np.array([2.0]), np.array([0.0, 0.0, 0.5, -1.0])
    d = mlpgrad.DAG(2, [3], [2], w, [2, 3], np.array([1.0, 1.0]), "identity", biases=b)
    assert d.n_nodes == 4
    y, g = d.value_and_grad(np.array([5.0, 7.0]))
    assert y == 2.0 * -1.0 + 0.5 + -1.0
    np.testing.assert_array_equal(g.x, [0.0, 0.0])
    np.testing.assert_array_equal(g.biases, [0.0, 0.0, 1.0, 3.0])
    e = mlpgrad.DAG(2, [], [], np.zeros(0), [0], np.array([3.0]))  # an input read directly, no edges
    assert e.forward(np.array([2.0, 9.0])) == 6.0
    np.testing.assert_array_equal(e.value_and_grad(np.array([2.0, 9.0]))[1].x, [3.0, 0.0])
