"""Random DAGs for the tests of mlpgrad.DAG (test_dag_binding.py, test_dag_robustness.py): each graph in the
form the binding takes and in the form of the pure-Python oracle mlpgrad.dag, hidden node ids shuffled; the
dtype's tolerance; and the list of graph shapes the tests run over (CASES, make_case)."""
from __future__ import annotations

import numpy as np
from conftest import ACTIVATIONS

import mlpgrad
from mlpgrad import dag as oracle_dag


def tol(dtype):
    return 2e-4 if dtype == np.float32 else 1e-10


def assert_close(got, ref, dtype, what):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    np.testing.assert_allclose(got, ref, rtol=tol(dtype), atol=tol(dtype) * scale, err_msg=what)


# ----------------------------------------------------------------------------- random DAGs
class RandomDag:
    """A random DAG and the same graph for the oracle: hidden node ids shuffled (so ids are not a topological
    order), in-degrees 0..max_in_degree from any earlier node (skip connections), parallel edges, edges listed
    in random order, several output nodes, optional biases (for the oracle: edges from an extra input fixed
    at 1) and a vector output (for the oracle: alpha contracted with dy)."""

    def __init__(self, rng, n_inputs=3, n_hidden=8, max_in_degree=4, n_outputs=3, m=None, biases=False,
                 activation="tanh", dtype=np.float64, parallel=True, topological_ids=False):
        self.n_inputs, n = n_inputs, n_inputs + n_hidden
        hidden = np.arange(n_hidden) if topological_ids else rng.permutation(n_hidden)
        order = list(range(n_inputs)) + list(n_inputs + hidden)  # topological order → ids
        src, dst = [], []
        for i in range(n_inputs, n):
            for _ in range(int(rng.integers(0, max_in_degree + 1)) if i else 0):
                src.append(order[int(rng.integers(0, i))])
                dst.append(order[i])
            if parallel and src and rng.random() < 0.3 and dst[-1] == order[i]:
                src.append(src[-1])
                dst.append(dst[-1])
        perm = rng.permutation(len(src))
        self.src = np.array(src, dtype=np.int64)[perm]
        self.dst = np.array(dst, dtype=np.int64)[perm]
        self.n_nodes = max([n_inputs, *(self.src + 1), *(self.dst + 1)]) if len(src) else n_inputs
        self.n_nodes = max(self.n_nodes, max(order[-n_outputs:]) + 1)
        self.outputs = np.array(order[-n_outputs:][::-1], dtype=np.int64)
        self.weights = rng.standard_normal(len(src)).astype(dtype)
        shape = (n_outputs,) if m is None else (n_outputs, m)
        self.alpha = rng.standard_normal(shape).astype(dtype)
        self.biases = rng.standard_normal(self.n_nodes).astype(dtype) if biases else None
        self.activation = activation
        self.dtype = dtype

    @classmethod
    def layered(cls, rng, widths, *, biases=False, skip=False, hidden_output=False, dtype=np.float64):
        """An MLP's graph (nodes layer by layer, edges row-major): every level a dense block. skip adds an
        edge from input 0 to the last node (its level is no longer dense; level 1's sources gain an edge);
        hidden_output makes a node of layer 1 an output too (a seed on the sources of layer 2)."""
        g = cls.__new__(cls)
        first = np.concatenate([[0], np.cumsum(widths)])
        src, dst = [], []
        for t in range(len(widths) - 1):
            for i in range(widths[t + 1]):
                for j in range(widths[t]):
                    src.append(first[t] + j)
                    dst.append(first[t + 1] + i)
        if skip:
            src.append(0)
            dst.append(first[-1] - 1)
        g.n_inputs, g.n_nodes = widths[0], int(first[-1])
        g.src, g.dst = np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)
        outputs = list(range(first[-2], first[-1])) + ([int(first[1])] if hidden_output else [])
        g.outputs = np.array(outputs, dtype=np.int64)
        g.weights = (rng.standard_normal(len(src)) / np.sqrt(max(widths))).astype(dtype)
        g.alpha = rng.standard_normal(len(outputs)).astype(dtype)
        g.biases = rng.standard_normal(g.n_nodes).astype(dtype) if biases else None
        g.activation, g.dtype = "tanh", dtype
        return g

    def dag(self):
        return mlpgrad.DAG(self.n_inputs, self.src, self.dst, self.weights, self.outputs, self.alpha,
                           self.activation, biases=self.biases)

    def oracle(self, x, dy=1.0):
        """ŷ and (weights, alpha, x, biases, z, u) gradients of dy·ŷ from mlpgrad.dag, in float64."""
        f = np.float64
        n = self.n_nodes
        const = n  # the bias input
        inputs = list(range(self.n_inputs)) + ([const] if self.biases is not None else [])
        edges = [oracle_dag.Edge(int(s), int(t), float(w)) for s, t, w in zip(self.src, self.dst, self.weights)]
        if self.biases is not None:
            edges += [oracle_dag.Edge(const, v, float(self.biases[v])) for v in range(self.n_inputs, n)]
        total = n + (self.biases is not None)
        alpha = np.asarray(self.alpha, dtype=f)
        dy_vec = np.atleast_1d(np.asarray(dy, dtype=f))
        seed = alpha @ dy_vec if alpha.ndim == 2 else alpha * dy_vec[0]
        a = [0.0] * total
        for k, v in enumerate(self.outputs):
            a[int(v)] = float(seed[k])
        xs = [float(v) for v in x] + ([1.0] if self.biases is not None else [])
        act = self.activation if isinstance(self.activation, str) else list(self.activation) + ["identity"]
        yhat_seeded, g = oracle_dag.value_and_grad(total, inputs, edges, a, xs, act)
        z_out = np.array(g.alpha, dtype=f)[self.outputs]  # ∂(seed·z)/∂a = z
        yhat = z_out @ alpha if alpha.ndim == 2 else float(z_out @ alpha)
        d_alpha = np.outer(z_out, dy_vec) if alpha.ndim == 2 else z_out * dy_vec[0]
        E = len(self.src)
        d_biases = None
        if self.biases is not None:
            d_biases = np.zeros(n)
            d_biases[self.n_inputs:] = g.edges[E:]
        return yhat, dict(weights=np.array(g.edges[:E]), alpha=d_alpha, x=np.array(g.x[:self.n_inputs]),
                          biases=d_biases, z=np.array(g.z[:n]), u=np.array(g.u[:n]))


def check_against(got, ref, dtype, what):
    for name in ("weights", "alpha", "x", "biases", "z", "u"):
        if ref.get(name) is None:
            assert getattr(got, name) is None, f"{what}: {name}"
            continue
        assert_close(getattr(got, name), ref[name], dtype, f"{what}: {name}")


CASES = [
    dict(),
    dict(biases=True),
    dict(m=2),
    dict(m=3, biases=True, n_outputs=1),
    dict(n_inputs=1, n_hidden=20, max_in_degree=6, n_outputs=5),
    dict(n_inputs=5, n_hidden=2, max_in_degree=1, n_outputs=2, biases=True),
    dict(n_hidden=30, max_in_degree=3, n_outputs=4, activation="relu"),
    dict(n_hidden=12, activation="per-node", biases=True),
    # ids in topological order: the graph keeps them as its layout (runs of nodes without an edge inside)
    dict(n_hidden=25, max_in_degree=5, topological_ids=True, m=2),
    dict(n_hidden=25, topological_ids=True, activation="per-node", biases=True),
    dict(n_inputs=0, n_hidden=6, topological_ids=True, biases=True, n_outputs=2),
]


def make_case(rng, case, dtype):
    case = dict(case)
    per_node = case.get("activation") == "per-node"
    if per_node:
        case["activation"] = "tanh"
    g = RandomDag(rng, dtype=dtype, **case)
    if per_node:
        g.activation = tuple(ACTIVATIONS[int(i)] for i in rng.integers(0, len(ACTIVATIONS), g.n_nodes))
    return g
