"""Concurrency: one MLP (or several sharing weight arrays) used from several Python threads at once."""
import threading
import time

import numpy as np
import pytest

import mlpgrad
from conftest import ACTIVATIONS, assert_gradients_close, assert_value_close, grads_of, make_inputs, make_network

WIDTHS = (48, 96, 64, 16)  # big enough that a call is not instantaneous
ACTS = ["tanh", "relu", "softplus"]
N_THREADS = 8
N_CALLS = 12


def run_threads(n, target):
    """Run target(i, barrier) in n threads started together; re-raise the first failure; return the results."""
    barrier = threading.Barrier(n, timeout=60)
    results = [None] * n
    errors = []

    def wrap(i):
        try:
            barrier.wait()
            results[i] = target(i, barrier)
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append((i, e))
            barrier.abort()

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "threads did not finish (deadlock?)"
    real = [(i, e) for i, e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if errors:
        i, e = (real or errors)[0]
        raise AssertionError(f"thread {i} failed: {type(e).__name__}: {e}") from e
    return results


@pytest.fixture
def shared(rng, dtype):
    weights, alpha = make_network(rng, WIDTHS, dtype)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    xs = [[make_inputs(rng, WIDTHS[0], dtype) for _ in range(N_CALLS)] for _ in range(N_THREADS)]
    dys = [[dtype(v) for v in rng.choice([1.0, -0.5, 2.0, 0.25], size=N_CALLS)] for _ in range(N_THREADS)]
    return net, weights, alpha, xs, dys, dtype


def compare(got, expected, dtype, batch=None):
    for (y, g), (y_ref, g_ref) in zip(got, expected):
        if batch is None:
            assert_value_close(y, y_ref, dtype, WIDTHS)
        else:
            np.testing.assert_allclose(y, y_ref, rtol=1e-10 if dtype == np.float64 else 1e-4, atol=1e-10)
        assert_gradients_close(g, g_ref, dtype, WIDTHS, batch=batch)


def test_concurrent_value_and_grad(shared):
    net, weights, alpha, xs, dys, dtype = shared
    serial = [[(y, grads_of(g)) for y, g in (net.value_and_grad(x, dy) for x, dy in zip(xs[i], dys[i]))]
              for i in range(N_THREADS)]

    def work(i, barrier):
        return [(y, grads_of(g)) for y, g in (net.value_and_grad(x, dy) for x, dy in zip(xs[i], dys[i]))]

    for i, res in enumerate(run_threads(N_THREADS, work)):
        assert len(res) == N_CALLS
        compare(res, serial[i], dtype)


def test_concurrent_value_and_grad_with_out(shared):
    net, weights, alpha, xs, dys, dtype = shared
    serial = [[(y, grads_of(g)) for y, g in (net.value_and_grad(x, dy) for x, dy in zip(xs[i], dys[i]))]
              for i in range(N_THREADS)]
    outs = [net.new_gradients() for _ in range(N_THREADS)]

    def work(i, barrier):
        res = []
        for x, dy in zip(xs[i], dys[i]):
            y, g = net.value_and_grad(x, dy, out=outs[i])
            assert g is outs[i]
            res.append((y, grads_of(g)))
        return res

    for i, res in enumerate(run_threads(N_THREADS, work)):
        compare(res, serial[i], dtype)


def test_concurrent_batches(shared, rng):
    net, weights, alpha, xs, dys, dtype = shared
    Xs = [[make_inputs(rng, WIDTHS[0], dtype, batch=int(b)) for b in rng.integers(0, 20, size=4)]
          for _ in range(N_THREADS)]
    Dys = [[rng.standard_normal(X.shape[0]).astype(dtype) for X in row] for row in Xs]
    serial = [[(y.copy(), grads_of(g)) for y, g in (net.value_and_grad_batch(X, d) for X, d in zip(Xs[i], Dys[i]))]
              for i in range(N_THREADS)]
    serial_fwd = [[net.forward_batch(X).copy() for X in Xs[i]] for i in range(N_THREADS)]

    def work(i, barrier):
        res, fwd = [], []
        for X, d in zip(Xs[i], Dys[i]):
            y, g = net.value_and_grad_batch(X, d)
            res.append((y.copy(), grads_of(g)))
            fwd.append(net.forward_batch(X).copy())
        return res, fwd

    for i, (res, fwd) in enumerate(run_threads(N_THREADS, work)):
        for (y, g), (y_ref, g_ref), X in zip(res, serial[i], Xs[i]):
            compare([(y, g)], [(y_ref, g_ref)], dtype, batch=X.shape[0])
        for a, b in zip(fwd, serial_fwd[i]):
            np.testing.assert_allclose(a, b, rtol=1e-10 if dtype == np.float64 else 1e-4, atol=1e-10)


def test_forward_backward_pairs_per_thread(shared):
    """Every thread runs forward() before any thread runs backward(): each must see its own forward."""
    net, weights, alpha, xs, dys, dtype = shared
    serial = []
    for i in range(N_THREADS):
        row = []
        for x, dy in zip(xs[i], dys[i]):
            y = net.forward(x)
            z = [a.copy() for a in net.z]
            u = [a.copy() for a in net.u]
            row.append((y, z, u, grads_of(net.backward(dy))))
        serial.append(row)

    def work(i, barrier):
        res = []
        for x, dy in zip(xs[i], dys[i]):
            y = net.forward(x)
            barrier.wait()  # all threads have overwritten "the last forward" now
            z = [a.copy() for a in net.z]
            u = [a.copy() for a in net.u]
            g = grads_of(net.backward(dy))
            barrier.wait()
            res.append((y, z, u, g))
        return res

    for i, res in enumerate(run_threads(N_THREADS, work)):
        for (y, z, u, g), (y_ref, z_ref, u_ref, g_ref), x in zip(res, serial[i], xs[i]):
            assert_value_close(y, y_ref, dtype, WIDTHS)
            assert len(z) == len(z_ref) and len(u) == len(u_ref)
            for a, b in zip(z + u, z_ref + u_ref):
                np.testing.assert_allclose(a, b, rtol=1e-10 if dtype == np.float64 else 1e-4, atol=1e-10)
            np.testing.assert_array_equal(z[0], x)  # this thread's own input
            assert_gradients_close(g, g_ref, dtype, WIDTHS)


def test_main_thread_forward_survives_other_threads(shared):
    net, weights, alpha, xs, dys, dtype = shared
    x0 = xs[0][0]
    _, g_ref = net.value_and_grad(x0, 1.0)
    g_ref = grads_of(g_ref)
    y0 = net.forward(x0)
    z0 = [a.copy() for a in net.z]

    def work(i, barrier):
        for x in xs[i]:
            net.forward(x)
            net.backward()
        return True

    assert all(run_threads(N_THREADS, work))
    for a, b in zip(net.z, z0):
        np.testing.assert_array_equal(a, b)
    assert_gradients_close(net.backward(), g_ref, dtype, WIDTHS)
    assert net.forward(x0) == y0


def test_backward_in_fresh_thread_raises(shared):
    net, weights, alpha, xs, dys, dtype = shared
    net.forward(xs[0][0])

    def work(i, barrier):
        try:
            net.backward()
        except RuntimeError:
            return "RuntimeError"
        return "no error"

    assert run_threads(3, work) == ["RuntimeError"] * 3


def test_several_mlps_sharing_weights(rng, dtype):
    weights, alpha = make_network(rng, WIDTHS, dtype)
    nets = [mlpgrad.MLP(weights, alpha, act) for act in ACTIVATIONS] + [mlpgrad.MLP(weights, alpha, ACTS)]
    for n in nets:
        assert all(n.weights[t] is weights[t] for t in range(len(weights))) and n.alpha is alpha
    n_threads = 2 * len(nets)
    xs = [[make_inputs(rng, WIDTHS[0], dtype) for _ in range(N_CALLS)] for _ in range(n_threads)]
    serial = []
    for i in range(n_threads):
        net = nets[i % len(nets)]
        row = []
        for x in xs[i]:
            y, g = net.value_and_grad(x, 0.5)
            net.forward(x)
            row.append((y, grads_of(g), grads_of(net.backward(0.5))))
        serial.append(row)

    def work(i, barrier):
        net = nets[i % len(nets)]
        row = []
        for x in xs[i]:
            y, g = net.value_and_grad(x, 0.5)
            g = grads_of(g)
            net.forward(x)
            row.append((y, g, grads_of(net.backward(0.5))))
        return row

    snapshot = [w.copy() for w in weights] + [alpha.copy()]
    for i, row in enumerate(run_threads(n_threads, work)):
        for (y, g, gb), (y_ref, g_ref, gb_ref) in zip(row, serial[i]):
            assert_value_close(y, y_ref, dtype, WIDTHS)
            assert_gradients_close(g, g_ref, dtype, WIDTHS)
            assert_gradients_close(gb, gb_ref, dtype, WIDTHS)
    for a, b in zip(weights + [alpha], snapshot):
        np.testing.assert_array_equal(a, b)


def test_gil_is_released_while_the_core_computes():
    # While one long call runs in C++, another Python thread must make progress in the middle of it:
    # with the GIL held for the whole call it could not run a single bytecode until the call returned.
    rng = np.random.default_rng(5)
    K, B = 384, 256
    net = mlpgrad.MLP([rng.standard_normal((K, K)) / np.sqrt(K) for _ in range(3)], rng.standard_normal(K))
    X = rng.standard_normal((B, K))
    out = net.new_gradients(batch=B)
    clock = time.perf_counter
    done = threading.Event()
    samples = []  # when the other thread was running

    def sampler():
        while not done.is_set():
            samples.append(clock())

    thread = threading.Thread(target=sampler)
    thread.start()
    calls = []
    for _ in range(3):
        t0 = clock()
        net.value_and_grad_batch(X, out=out)
        calls.append((t0, clock()))
    done.set()
    thread.join()
    inside = [s for t0, t1 in calls for s in samples if t0 + 0.25 * (t1 - t0) < s < t1 - 0.25 * (t1 - t0)]
    assert inside, "no other Python thread ran during the middle half of any call"
