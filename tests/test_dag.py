"""mlpgrad.dag: backpropagation on any DAG (the notes' Question 2) against the MLP oracle, the core and
finite differences."""

import random

import numpy as np
import pytest

import mlpgrad
from mlpgrad import dag, reference


def mlp_as_dag(weights, alpha):
    """The fully connected network as a DAG: nodes numbered layer by layer."""
    widths = [len(weights[0][0])] + [len(w) for w in weights]
    first = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    edges = [dag.Edge(int(first[t] + j), int(first[t + 1] + i), w[i][j])
             for t, w in enumerate(weights) for i in range(len(w)) for j in range(len(w[0]))]
    a = [0.0] * int(first[-1])
    a[first[-2]:first[-1]] = list(alpha)
    return int(first[-1]), list(range(widths[0])), edges, a, first


@pytest.mark.parametrize("activation", mlpgrad.ACTIVATIONS)
def test_mlp_shaped_dag_matches_the_mlp_oracle_and_the_core(activation):
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal((4, 3)), rng.standard_normal((5, 4)), rng.standard_normal((2, 5))]
    alpha, x = rng.standard_normal(2), rng.standard_normal(3)
    n, inputs, edges, a, first = mlp_as_dag([w.tolist() for w in weights], alpha.tolist())
    yhat, g = dag.value_and_grad(n, inputs, edges, a, x.tolist(), activation, dy=-1.5)
    ref_yhat, ref = reference.value_and_grad(weights, alpha, x, activation, dy=-1.5)
    core_yhat, core = mlpgrad.MLP(weights, alpha, activation).value_and_grad(x, -1.5)
    assert yhat == pytest.approx(ref_yhat, rel=1e-12) and yhat == pytest.approx(core_yhat, rel=1e-12)
    flat_ref = np.concatenate([np.ravel(w) for w in ref.weights])  # same edge order: layer, row, column
    np.testing.assert_allclose(g.edges, flat_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.x, core.x, rtol=1e-12, atol=1e-14)
    for t in range(len(weights) + 1):
        np.testing.assert_allclose(g.z[first[t]:first[t + 1]], ref.z[t], rtol=1e-12, atol=1e-14)


def test_skip_connections_and_shared_fan_out_match_finite_differences():
    # 0,1 inputs; 2 = σ(0,1); 3 = σ(0, 2) (skip from the input); 4 = σ(1, 2, 3); ŷ reads 2, 3 and 4.
    r = random.Random(7)
    spec = [(0, 2), (1, 2), (0, 3), (2, 3), (1, 4), (2, 4), (3, 4)]
    edges = [dag.Edge(s, t, r.gauss(0, 1)) for s, t in spec]
    alpha, x = [0.0, 0.0, 0.3, -0.7, 1.1], [0.4, -1.2]
    acts = ["identity", "identity", "tanh", "softplus", "sigmoid"]
    _, g = dag.value_and_grad(5, [0, 1], edges, alpha, x, acts, dy=2.0)

    def f(es, xs):
        return 2.0 * dag.value_and_grad(5, [0, 1], es, alpha, xs, acts)[0]

    h = 1e-6
    for k, e in enumerate(edges):
        plus = edges[:k] + [dag.Edge(e.source, e.target, e.weight + h)] + edges[k + 1:]
        minus = edges[:k] + [dag.Edge(e.source, e.target, e.weight - h)] + edges[k + 1:]
        assert g.edges[k] == pytest.approx((f(plus, x) - f(minus, x)) / (2 * h), rel=1e-6, abs=1e-9)
    for i in range(2):
        xp, xm = list(x), list(x)
        xp[i] += h
        xm[i] -= h
        assert g.x[i] == pytest.approx((f(edges, xp) - f(edges, xm)) / (2 * h), rel=1e-6, abs=1e-9)


def test_edges_may_come_in_any_order():
    edges = [dag.Edge(2, 3, 0.5), dag.Edge(0, 2, 2.0), dag.Edge(1, 2, -1.0)]
    yhat, g = dag.value_and_grad(4, [0, 1], edges, [0, 0, 0, 1.0], [1.0, 3.0], "identity")
    assert yhat == pytest.approx(0.5 * (2.0 - 3.0))
    assert g.edges == pytest.approx([-1.0, 0.5, 1.5])  # du_3 z_2, du_2 z_0, du_2 z_1


def test_a_cycle_is_refused():
    edges = [dag.Edge(0, 1, 1.0), dag.Edge(1, 2, 1.0), dag.Edge(2, 1, 1.0)]
    with pytest.raises(ValueError, match="cycle through node 1"):
        dag.value_and_grad(3, [0], edges, [0, 0, 1.0], [1.0])


@pytest.mark.parametrize("bad, match", [
    (dict(edges=[dag.Edge(0, 5, 1.0)]), r"edges\[0\] joins node 5"),
    (dict(edges=[dag.Edge(1, 0, 1.0)]), r"edges\[0\] enters input node 0"),
    (dict(alpha=[1.0]), "alpha has 1 entries but the graph has 2 nodes"),
    (dict(x=[1.0, 2.0]), "x has 2 entries but the graph has 1 input nodes"),
])
def test_bad_graphs_name_the_argument(bad, match):
    args = dict(n_nodes=2, inputs=[0], edges=[dag.Edge(0, 1, 1.0)], alpha=[0.0, 1.0], x=[1.0])
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        dag.value_and_grad(**args)
