"""The performance floors of the core (issue 4), each a ratio measured side by side in one run.

Every case times mlpgrad through its Python API (``value_and_grad(x, out=g)`` or
``value_and_grad_batch(X, dy, out=g)``) against a peer on the same weights: the NumPy implementation
(:mod:`mlpgrad.numpy_backprop`, preallocated outputs, BLAS on one thread), the machine's memory bound,
float64 (for float32), or two NumPy ufunc calls (for the call overhead).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

import mlpgrad

from ..numpy_backprop import NumpyMLP
from .peers import thread_limits
from .timing import copy_bandwidth, time_side_by_side


@dataclass
class TargetResult:
    case: str
    measure: str       # what the ratio compares
    mlpgrad_ns: float  # median ns per call of mlpgrad
    peer_ns: float     # median ns per call (or bound) of the peer
    ratio: float       # peer_ns / mlpgrad_ns: higher is better for mlpgrad
    target: float      # the floor the ratio must reach
    met: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _network(K: int, T: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((K, K)) / np.sqrt(K)).astype(dtype) for _ in range(T)]
    return weights, rng.standard_normal(K).astype(dtype), rng.standard_normal(K).astype(dtype), rng


def _single(K: int, T: int, dtype=np.float64):
    """(mlpgrad call, NumPy call) computing value_and_grad on one example into preallocated buffers."""
    weights, alpha, x, _ = _network(K, T, dtype)
    net, peer = mlpgrad.MLP(weights, alpha, "relu"), NumpyMLP(weights, alpha, "relu")
    g, gp = net.new_gradients(), peer.new_gradients()
    return (lambda: net.value_and_grad(x, out=g)), (lambda: peer.value_and_grad(x, out=gp))


def _batch(K: int, T: int, B: int, dtype=np.float64):
    weights, alpha, _, rng = _network(K, T, dtype)
    X, dy = rng.standard_normal((B, K)).astype(dtype), np.ones(B, dtype)
    net, peer = mlpgrad.MLP(weights, alpha, "relu"), NumpyMLP(weights, alpha, "relu")
    g = net.new_gradients(batch=B)
    return (lambda: net.value_and_grad_batch(X, dy, out=g)), (lambda: peer.value_and_grad_batch(X, dy))


def _result(case, measure, ours, theirs, target) -> TargetResult:
    ratio = theirs / ours
    return TargetResult(case, measure, ours, theirs, ratio, target, ratio >= target)


def run_targets(repeats: int = 7, quick: bool = False, progress=None) -> list[TargetResult]:
    """Measure every target; ``quick`` drops the K = 1024/2048 cases. ``progress(description)`` is called
    before each case."""
    step = progress or (lambda _description: None)
    results: list[TargetResult] = []
    with thread_limits(1):  # NumPy's BLAS and mlpgrad's batch calls on one thread each
        for K, target in ((16, 30.0), (64, 10.0), (256, 2.0)):
            step(f"K={K}, T=4 vs NumPy")
            ours, numpy_call = _single(K, 4)
            t = time_side_by_side({"mlpgrad": ours, "numpy": numpy_call}, repeats)
            results.append(_result(f"K={K}, T=4", "NumPy time / mlpgrad time", t["mlpgrad"], t["numpy"], target))

        if not quick:
            step("memory bandwidth probe")
            bandwidth = copy_bandwidth()
            large = {}
            for K in (1024, 2048):
                step(f"K={K}, T=4 vs NumPy and the memory bound")
                ours, numpy_call = _single(K, 4)
                t = time_side_by_side({"mlpgrad": ours, "numpy": numpy_call}, repeats, run_ns=50_000_000)
                large[K] = t["mlpgrad"]
                results.append(_result(f"K={K}, T=4", "NumPy time / mlpgrad time", t["mlpgrad"], t["numpy"], 1.5))
                # W read forward + W read backward + dW written, at the single-core copy bandwidth.
                bound_ns = 4 * K * K * 8 * 3 / bandwidth * 1e9
                results.append(_result(f"K={K}, T=4", "1.1 x memory bound / mlpgrad time", t["mlpgrad"],
                                       1.1 * bound_ns, 1.0))
            step("K=2048, T=4 float32 vs float64")
            ours32, _ = _single(2048, 4, np.float32)
            ours64, _ = _single(2048, 4, np.float64)
            t = time_side_by_side({"f32": ours32, "f64": ours64}, repeats, run_ns=50_000_000)
            results.append(_result("K=2048, T=4, float32", "0.6 x float64 time / float32 time", t["f32"],
                                   0.6 * t["f64"], 1.0))

        for K, target in ((256, 0.7), (64, 1.0)):
            step(f"batch B=64, K={K}, T=4 vs NumPy")
            ours, numpy_call = _batch(K, 4, 64)
            t = time_side_by_side({"mlpgrad": ours, "numpy": numpy_call}, repeats)
            results.append(_result(f"batch B=64, K={K}, T=4", "NumPy time / mlpgrad time", t["mlpgrad"],
                                   t["numpy"], target))

        step("K=1, T=1 vs two NumPy ufunc calls")
        ours, _ = _single(1, 1)
        a, b, c = np.ones(1), np.ones(1), np.empty(1)

        def two_ufuncs():
            np.add(a, b, out=c)
            np.add(a, b, out=c)

        t = time_side_by_side({"mlpgrad": ours, "ufuncs": two_ufuncs}, repeats)
        results.append(_result("K=1, T=1", "two np.add calls / mlpgrad call", t["mlpgrad"], t["ufuncs"], 1.0))
    return results
