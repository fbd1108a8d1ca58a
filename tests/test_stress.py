"""Thread stress: 8 threads hammering one MLP (and several MLPs that share weight arrays) with a random mix
of every call -- single and batch, with and without ``out=``, forward/backward pairs, error paths,
construction -- each result compared bit for bit with a serial run of the same call (the kernels sum in a
fixed order, so concurrency must not change a single bit). The networks are big enough that every call
releases the GIL, so the C++ code really runs in parallel.

What is safe concurrently (README "Reliability"): any number of threads calling any methods of one MLP or
of MLPs sharing weights, each thread with its own ``out`` buffers. Not safe: writing the weights while
another thread computes with them, or sharing one ``out`` Gradients between concurrent calls (data races
the caller must avoid; not tested here because their outcome is undefined).

MLPGRAD_STRESS_ROUNDS sets the calls per thread (default 80; .ci/reliability.sh runs more).
"""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import mlpgrad
from conftest import make_inputs, make_network

ROUNDS = int(os.environ.get("MLPGRAD_STRESS_ROUNDS", "80"))
N_THREADS = 8
WIDTHS = (40, 96, 64, 12)  # ~11k multiply-adds per example: above the GIL-release threshold
ACTS = ["tanh", "relu", "softplus"]
OPS = ("value_and_grad", "value_and_grad_out", "batch", "batch_out", "forward_backward", "forward_batch",
       "error", "construct")


def run_threads(n, target, timeout=300):
    """target(i) in n threads started together; re-raises the first failure; returns the results."""
    barrier = threading.Barrier(n, timeout=60)
    results, errors = [None] * n, []

    def wrap(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, e))

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "threads did not finish (deadlock?)"
    if errors:
        i, e = errors[0]
        raise AssertionError(f"thread {i} failed: {type(e).__name__}: {e}") from e
    return results


def bits(*arrays):
    """Every value as bytes: results compare bit for bit."""
    return b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)


def grad_bits(g):
    parts = list(g.weights) + [g.alpha, g.x] + (list(g.z) + list(g.u) if g.z is not None else [])
    return bits(*parts)


class Workload:
    """A fixed random plan of calls per thread, runnable on any MLP; returns the bits of every result."""

    def __init__(self, seed, dtype, n_threads=N_THREADS, rounds=ROUNDS):
        rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.plans = []
        for _ in range(n_threads):
            plan = []
            for _ in range(rounds):
                op = OPS[rng.integers(len(OPS))]
                b = int(rng.integers(0, 9))
                plan.append((op, make_inputs(rng, WIDTHS[0], dtype), make_inputs(rng, WIDTHS[0], dtype, batch=b),
                             rng.standard_normal(b).astype(dtype), float(rng.choice([1.0, -0.5, 2.0]))))
            self.plans.append(plan)

    def run(self, net, i, weights, alpha):
        out = net.new_gradients()
        out_b = {}
        res = []
        for op, x, X, dy_b, dy in self.plans[i]:
            if op == "value_and_grad":
                y, g = net.value_and_grad(x, dy)
                res.append(bits(np.float64(y)) + grad_bits(g))
            elif op == "value_and_grad_out":
                y, g = net.value_and_grad(x, dy, out=out)
                assert g is out
                res.append(bits(np.float64(y)) + grad_bits(g))
            elif op == "batch":
                y, g = net.value_and_grad_batch(X, dy_b)
                res.append(bits(y) + grad_bits(g))
            elif op == "batch_out":
                g = out_b.setdefault(X.shape[0], net.new_gradients(batch=X.shape[0]))
                y, g2 = net.value_and_grad_batch(X, dy_b, out=g)
                assert g2 is g
                res.append(bits(y) + grad_bits(g))
            elif op == "forward_backward":  # the pair must stay paired within this thread
                y = net.forward(x)
                z = [a.copy() for a in net.z]
                g = net.backward(dy)
                assert np.array_equal(z[0], x)
                res.append(bits(np.float64(y), *z) + grad_bits(g))
            elif op == "forward_batch":
                res.append(bits(net.forward_batch(X)))
            elif op == "error":  # raising in one thread disturbs no other
                with pytest.raises(ValueError):
                    net.value_and_grad(x[:-1])
                with pytest.raises(ValueError):
                    net.value_and_grad_batch(X, out=out)  # single-example out for a batch
                with pytest.raises(TypeError):
                    net.forward(["a"] * WIDTHS[0])
                res.append(b"error")
            else:  # constructing while others compute
                other = mlpgrad.MLP(weights, alpha, net.activations)
                res.append(bits(np.float64(other.forward(x))))
        return res


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_eight_threads_hammer_one_mlp(dtype):
    rng = np.random.default_rng(11)
    weights, alpha = make_network(rng, WIDTHS, dtype)
    work = Workload(12, dtype)
    serial = [work.run(mlpgrad.MLP(weights, alpha, ACTS), i, weights, alpha) for i in range(N_THREADS)]
    net = mlpgrad.MLP(weights, alpha, ACTS)
    snapshot = bits(*weights, alpha)
    for i, res in enumerate(run_threads(N_THREADS, lambda i: work.run(net, i, weights, alpha))):
        assert len(res) == len(serial[i])
        for k, (a, b) in enumerate(zip(res, serial[i])):
            assert a == b, f"thread {i}, call {k} ({work.plans[i][k][0]}) differs from the serial run"
    assert bits(*weights, alpha) == snapshot, "the weights were written"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_eight_threads_on_mlps_sharing_weights(dtype):
    rng = np.random.default_rng(13)
    weights, alpha = make_network(rng, WIDTHS, dtype)
    acts = [ACTS, "tanh", ["relu", "leaky_relu", "identity"], "sigmoid"]
    nets = [mlpgrad.MLP(weights, alpha, a) for a in acts]
    work = Workload(14, dtype)
    serial = [work.run(mlpgrad.MLP(weights, alpha, acts[i % len(acts)]), i, weights, alpha)
              for i in range(N_THREADS)]
    for i, res in enumerate(run_threads(N_THREADS, lambda i: work.run(nets[i % len(nets)], i, weights, alpha))):
        for k, (a, b) in enumerate(zip(res, serial[i])):
            assert a == b, f"thread {i} (net {i % len(nets)}), call {k} ({work.plans[i][k][0]}) differs"


def test_forward_backward_pairs_interleave_without_barriers():
    """Threads run forward() ... backward() with no synchronisation at all; each backward must use its own
    thread's forward, whatever the others did in between."""
    rng = np.random.default_rng(15)
    weights, alpha = make_network(rng, WIDTHS, np.float64)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    ref = mlpgrad.MLP(weights, alpha, ACTS)
    xs = [[make_inputs(rng, WIDTHS[0]) for _ in range(ROUNDS)] for _ in range(N_THREADS)]
    expected = [[grad_bits(ref.value_and_grad(x)[1]) for x in row] for row in xs]

    def work(i):
        out = []
        for x in xs[i]:
            net.forward(x)
            for _ in range(i % 3):  # different amounts of other work between the pair
                net.forward_batch(np.stack([x, x]))
            out.append(grad_bits(net.backward()))
        return out

    for i, res in enumerate(run_threads(N_THREADS, work)):
        assert res == expected[i], f"thread {i}: a backward() used another thread's forward()"


def test_new_threads_never_see_a_dead_threads_forward():
    """The OS reuses a finished thread's id; its tapes must not be inherited (thread_state.hpp erases a
    thread's tapes when it exits): backward() in a thread that never ran forward() raises RuntimeError."""
    rng = np.random.default_rng(16)
    weights, alpha = make_network(rng, (4, 6, 2), np.float64)
    net = mlpgrad.MLP(weights, alpha, "tanh")
    outcomes = []

    def forward_only():
        net.forward(np.ones(4))

    def backward_only():
        try:
            net.backward()
            outcomes.append("no error: saw another thread's forward")
        except RuntimeError:
            outcomes.append("RuntimeError")

    for _ in range(20):
        for target in (forward_only, backward_only):
            t = threading.Thread(target=target)
            t.start()
            t.join()
    assert outcomes == ["RuntimeError"] * 20


def test_thread_churn_many_short_lived_threads():
    """Hundreds of short-lived threads, several at a time, each computing once: right results throughout."""
    rng = np.random.default_rng(17)
    weights, alpha = make_network(rng, WIDTHS, np.float32)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    x = make_inputs(rng, WIDTHS[0], np.float32)
    y_ref, g_ref = mlpgrad.MLP(weights, alpha, ACTS).value_and_grad(x)
    expected = bits(np.float64(y_ref)) + grad_bits(g_ref)
    bad = []

    def once():
        y, g = net.value_and_grad(x)
        if bits(np.float64(y)) + grad_bits(g) != expected:
            bad.append(threading.get_ident())

    for _ in range(max(10, ROUNDS * 2)):
        threads = [threading.Thread(target=once) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not bad, f"{len(bad)} threads got wrong results"
