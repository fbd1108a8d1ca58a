"""Backpropagation on any directed acyclic graph: the notes' Question 2, in plain Python.

The fully connected network is one DAG among many. On a general one, every non-input node v computes

    u_v = Σ_{(w → v)} θ_{w→v} z_w,    z_v = σ_v(u_v),    and    ŷ = Σ_v α_v z_v,

and the backward pass of the notes carries over unchanged once "layer t-1 → layer t" is read as "the
predecessors of v": visiting the nodes in reverse topological order,

    ∂ŷ/∂z_v = α_v + Σ_{(v → w)} θ_{v→w} ∂ŷ/∂u_w,    ∂ŷ/∂u_v = ∂ŷ/∂z_v σ_v'(u_v),    ∂ŷ/∂θ_{w→v} = ∂ŷ/∂u_v z_w.

Each edge is touched once forward and once backward, each node a constant number of times: the cost is
linear in the size of the graph (the notes' Question 1). Like :mod:`mlpgrad.reference`, this is an oracle
(no NumPy): it is tested against the core on MLP-shaped graphs and against finite differences on others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .reference import _activations  # (σ, σ') pairs, with the name checks and the ReLU convention

__all__ = ["Edge", "DagGradients", "value_and_grad"]


@dataclass(frozen=True)
class Edge:
    """A weighted edge ``source → target``: ``target``'s pre-activation gains ``weight · z[source]``."""

    source: int
    target: int
    weight: float


@dataclass
class DagGradients:
    """Gradients of ``dy·ŷ``: per edge (in the order given), per output weight α_v, per input, and the
    notes' intermediate vectors ∂ŷ/∂z and ∂ŷ/∂u per node (``u`` is 0 for input nodes)."""

    edges: list
    alpha: list
    x: list
    z: list
    u: list


def _topological_order(n_nodes: int, edges: Sequence[Edge]) -> list:
    """Kahn's algorithm: linear in nodes + edges; ValueError naming a node on a cycle."""
    indegree = [0] * n_nodes
    successors: list = [[] for _ in range(n_nodes)]
    for k, e in enumerate(edges):
        for end in (e.source, e.target):
            if not 0 <= end < n_nodes:
                raise ValueError(f"edges[{k}] joins node {end}, but nodes are numbered 0..{n_nodes - 1}")
        successors[e.source].append(e.target)
        indegree[e.target] += 1
    order = [v for v in range(n_nodes) if indegree[v] == 0]
    for v in order:  # `order` grows while we walk it
        for w in successors[v]:
            indegree[w] -= 1
            if indegree[w] == 0:
                order.append(w)
    if len(order) != n_nodes:
        on_cycle = next(v for v in range(n_nodes) if indegree[v] > 0)
        raise ValueError(f"the graph has a cycle through node {on_cycle}; backpropagation needs a DAG")
    return order


def value_and_grad(n_nodes: int, inputs: Sequence[int], edges: Sequence[Edge], alpha: Sequence[float],
                   x: Sequence[float], activation="relu", dy: float = 1.0):
    """ŷ and the gradients of ``dy·ŷ`` for a DAG of ``n_nodes`` nodes.

    ``inputs`` lists the input nodes (z = x there, in that order; they take no in-edges); ``alpha`` has one
    output weight per node (0 for nodes that do not feed ŷ); ``activation`` is one name for every
    non-input node or a sequence of ``n_nodes`` names (entries for input nodes are ignored), with the same
    activations and ReLU convention (σ'(0) = 1) as the rest of mlpgrad.
    """
    if len(alpha) != n_nodes:
        raise ValueError(f"alpha has {len(alpha)} entries but the graph has {n_nodes} nodes")
    if len(x) != len(inputs):
        raise ValueError(f"x has {len(x)} entries but the graph has {len(inputs)} input nodes")
    acts = _activations(activation, n_nodes)  # one (σ, σ') per node
    is_input = [False] * n_nodes
    for v in inputs:
        is_input[v] = True
    for k, e in enumerate(edges):
        if 0 <= e.target < n_nodes and is_input[e.target]:
            raise ValueError(f"edges[{k}] enters input node {e.target}; input nodes take no in-edges")
    order = _topological_order(n_nodes, edges)
    into: list = [[] for _ in range(n_nodes)]  # (edge index, source) per target
    out_of: list = [[] for _ in range(n_nodes)]  # (edge index, target) per source
    for k, e in enumerate(edges):
        into[e.target].append(k)
        out_of[e.source].append(k)

    # Forward, in topological order: every predecessor's z is ready when v is reached.
    u = [0.0] * n_nodes
    z = [0.0] * n_nodes
    for v, value in zip(inputs, x):
        z[v] = float(value)
    for v in order:
        if not is_input[v]:
            u[v] = sum(edges[k].weight * z[edges[k].source] for k in into[v])
            z[v] = acts[v][0](u[v])
    yhat = sum(a * zv for a, zv in zip(alpha, z))

    # Backward, in reverse topological order: every successor's ∂ŷ/∂u is ready when v is reached.
    dz = [0.0] * n_nodes
    du = [0.0] * n_nodes
    for v in reversed(order):
        dz[v] = dy * alpha[v] + sum(edges[k].weight * du[edges[k].target] for k in out_of[v])
        if not is_input[v]:
            du[v] = dz[v] * acts[v][1](u[v])
    grads = DagGradients(
        edges=[du[e.target] * z[e.source] for e in edges],
        alpha=[dy * zv for zv in z],
        x=[dz[v] for v in inputs],
        z=dz,
        u=du,
    )
    return yhat, grads
