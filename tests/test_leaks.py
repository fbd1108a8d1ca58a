"""Leaks: memory stays flat over many calls (success and error paths), calls with ``out=`` allocate no
NumPy arrays, and a thread's tapes are freed when the thread exits.

Each case runs MLPGRAD_LEAK_CALLS calls (1,000 by default; .ci/reliability.sh runs 100,000) after a
warm-up, twice: once measuring the process's resident set size (catches C++ leaks: tapes, strings,
pybind11 objects), once under ``tracemalloc`` (catches Python objects and NumPy buffers that are never
freed, with byte precision). RSS is not meaningful under AddressSanitizer (its quarantine keeps freed
memory resident), so the RSS checks are skipped there; the ASan build still runs everything else.
"""
from __future__ import annotations

import gc
import os
import pickle
import threading
import time
import tracemalloc

import numpy as np
import pytest

import mlpgrad
from conftest import make_inputs, make_network, out_spec, under_asan

N = int(os.environ.get("MLPGRAD_LEAK_CALLS", "1000"))
WARMUP = max(200, N // 10)
WIDTHS = (16, 32, 8)
ACTS = ["tanh", "relu"]
B = 8



UNDER_ASAN = under_asan()
HAVE_PROC = os.path.exists("/proc/self/statm")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class BrokenArray:
    def __array__(self, *args, **kwargs):
        raise ZeroDivisionError("broken __array__")


def _raises(exc, fn):
    def call():
        try:
            fn()
        except exc:
            return
        raise AssertionError(f"{fn} did not raise {exc.__name__}")
    return call


def make_cases():
    rng = np.random.default_rng(5)
    weights, alpha = make_network(rng, WIDTHS, np.float64)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    fresh_net = mlpgrad.MLP(weights, alpha, ACTS)  # never runs forward: backward() raises
    x = make_inputs(rng, WIDTHS[0])
    X = make_inputs(rng, WIDTHS[0], batch=B)
    dy = rng.standard_normal(B)
    g = net.new_gradients()
    gb = net.new_gradients(batch=B)
    g32 = mlpgrad.Gradients(**out_spec(WIDTHS, np.float32))
    g_ro = mlpgrad.Gradients(**out_spec(WIDTHS, np.float64))
    g_ro.alpha.flags.writeable = False
    x_list = x.tolist()
    x32 = x.astype(np.float32)
    net.forward(x)
    state = pickle.dumps(net)
    spec = out_spec(WIDTHS, np.float64)

    def aliased_dy():  # dy that is out.alpha-sized and aliases it: read from a copy (mlp_calls.hpp)
        gb_alias.alpha[...] = 1.0
        net_b.value_and_grad_batch(X_b, gb_alias.alpha, out=gb_alias)

    w_b, a_b = make_network(rng, (16, 32, B), np.float64)
    net_b = mlpgrad.MLP(w_b, a_b, "tanh")
    X_b = make_inputs(rng, 16, batch=B)
    gb_alias = net_b.new_gradients(batch=B)

    # biases, an output bias and 3 outputs
    net_v = mlpgrad.MLP.random(WIDTHS, ACTS, outputs=3, seed=0)
    g_v, gb_v = net_v.new_gradients(), net_v.new_gradients(batch=B, x=False)
    dy_v, dY_v = np.full(3, 0.5), np.ones((B, 3))
    state_v = pickle.dumps(net_v)

    sgd = mlpgrad.optim.SGD(net, 1e-3, momentum=0.9, nesterov=True, weight_decay=1e-4)
    adam = mlpgrad.optim.Adam(net, 1e-4, weight_decay=1e-4, decoupled=True)

    return {
        "optim_sgd_step": lambda: sgd.step(gb),
        "optim_adam_step": lambda: adam.step(gb),
        "optim_construct": lambda: mlpgrad.optim.Adam(net),
        "error_optim_step": _raises(TypeError, lambda: adam.step(g32)),
        "error_optim_update": _raises(ValueError, lambda: mlpgrad._core._sgd_update(alpha, alpha, None, 0.1, 0.0,
                                                                                 False, 0.0, 1)),
        "value_and_grad": lambda: net.value_and_grad(x, 0.5),
        "value_and_grad_out": lambda: net.value_and_grad(x, 0.5, out=g),
        "value_and_grad_convert": lambda: net.value_and_grad(x32 if len(x_list) else x_list),
        "value_and_grad_list": lambda: net.value_and_grad(x_list),
        "forward_backward_out": lambda: (net.forward(x), net.backward(2.0, out=g)),
        "z_u": lambda: (net.z, net.u),
        "value_and_grad_batch": lambda: net.value_and_grad_batch(X, dy),
        "value_and_grad_batch_out": lambda: net.value_and_grad_batch(X, dy, out=gb),
        "value_and_grad_batch_aliased_dy": aliased_dy,
        "forward_batch": lambda: net.forward_batch(X),
        "new_gradients": lambda: (net.new_gradients(), net.new_gradients(batch=B)),
        "construct": lambda: mlpgrad.MLP(weights, alpha, ACTS),
        "construct_gradients": lambda: mlpgrad.Gradients(**spec),
        "pickle": lambda: pickle.loads(state),
        "vector_forward": lambda: net_v.forward(x),
        "vector_value_and_grad_out": lambda: net_v.value_and_grad(x, dy_v, out=g_v),
        "vector_backward_default_dy": lambda: (net_v.forward(x), net_v.backward()),
        "vector_batch_out": lambda: (net_v.forward_batch(X), net_v.backward_batch(dY_v, out=gb_v)),
        "vector_construct": lambda: mlpgrad.MLP(net_v.weights, net_v.alpha, ACTS, biases=net_v.biases,
                                                output_bias=net_v.output_bias),
        "vector_pickle": lambda: pickle.loads(state_v),
        "error_vector_dy": _raises(ValueError, lambda: net_v.value_and_grad(x, dy_v[:2], out=g_v)),
        "error_out_bias_layout": _raises(ValueError, lambda: net_v.value_and_grad(x, dy_v, out=g)),
        "error_construct_biases": _raises(ValueError, lambda: mlpgrad.MLP(weights, alpha, ACTS,
                                                                          biases=net_v.biases[:1])),
        # error paths
        "error_x_shape": _raises(ValueError, lambda: net.value_and_grad(x[:-1])),
        "error_x_strings": _raises(TypeError, lambda: net.forward(["a"] * WIDTHS[0])),
        "error_broken_array": _raises(TypeError, lambda: net.value_and_grad(BrokenArray())),
        "error_dy": _raises(TypeError, lambda: net.value_and_grad(x, "a")),
        "error_dy_overflow": _raises(ValueError, lambda: net.value_and_grad(x, 2**2000)),
        "error_out_dtype": _raises(TypeError, lambda: net.value_and_grad(x, out=g32)),
        "error_out_read_only": _raises(ValueError, lambda: net.value_and_grad(x, out=g_ro)),
        "error_batch_dy": _raises(ValueError, lambda: net.value_and_grad_batch(X, dy[:-1], out=gb)),
        "error_backward_without_forward": _raises(RuntimeError, lambda: fresh_net.backward()),
        "error_construct": _raises(TypeError, lambda: mlpgrad.MLP(weights, alpha.astype(np.float32), ACTS)),
        "error_construct_shape": _raises(ValueError, lambda: mlpgrad.MLP(weights[::-1], alpha, ACTS)),
        "error_new_gradients": _raises(ValueError, lambda: net.new_gradients(batch=2**64)),
    }


CASES = sorted(make_cases())


@pytest.fixture(scope="module")
def cases():
    return make_cases()


def run(fn, n):
    for _ in range(n):
        fn()


@pytest.mark.skipif(not HAVE_PROC or UNDER_ASAN, reason="needs /proc; RSS is meaningless under ASan")
@pytest.mark.parametrize("case", CASES)
def test_rss_stays_flat(cases, case):
    fn = cases[case]
    run(fn, WARMUP)
    gc.collect(1)  # the young generations: what the calls made (a full collection is slow)
    before = rss_bytes()
    run(fn, N)
    gc.collect(1)  # the young generations: what the calls made (a full collection is slow)
    growth = rss_bytes() - before
    # 1 MiB of slack for allocator noise; 100,000 calls leaking even 16 bytes each would exceed it
    assert growth < (1 << 20), f"{case}: RSS grew by {growth / 1024:.0f} KiB over {N} calls"


@pytest.mark.skipif(UNDER_ASAN, reason=(
    "under the ASan runtime tracemalloc keeps ~50 bytes traced per exception raised by the extension (not "
    "seen with the same Debug build without ASan, nor as gc objects or references); the non-ASan runs check it"))
@pytest.mark.parametrize("case", CASES)
def test_python_allocations_stay_flat(cases, case):
    fn = cases[case]
    n = max(300, N // 4)  # tracemalloc makes every allocation slow
    run(fn, 200)
    gc.collect(1)  # the young generations: what the calls made (a full collection is slow)
    tracemalloc.start()
    try:
        run(fn, 200)
        gc.collect(1)  # the young generations: what the calls made (a full collection is slow)
        before, _ = tracemalloc.get_traced_memory()
        run(fn, n)
        gc.collect(1)  # the young generations: what the calls made (a full collection is slow)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 8 * 1024, f"{case}: {after - before} bytes of Python objects kept over {n} calls"


# ----------------------------------------------------------------------------- out= allocates no arrays
def _peak_during(fn, repeat=3) -> int:
    """Largest extra traced memory (Python objects and NumPy buffers) while fn() runs."""
    fn()
    gc.collect(1)  # the young generations: what the calls made (a full collection is slow)
    tracemalloc.start()
    try:
        worst = 0
        for _ in range(repeat):
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            fn()
            worst = max(worst, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    return worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_calls_with_out_allocate_no_arrays(dtype):
    """With K = 512 any array the size of a layer is >= 2 KiB, a weight gradient >= 1 MiB: a call with out=
    may allocate only its small result objects (a float, a tuple, for a batch the (B,) yhat)."""
    K = 512
    rng = np.random.default_rng(9)
    weights, alpha = make_network(rng, (K, K, K), dtype)
    net = mlpgrad.MLP(weights, alpha, ["relu", "tanh"])
    x = make_inputs(rng, K, dtype)
    X = make_inputs(rng, K, dtype, batch=4)
    dy = np.ones(4, dtype)
    g = net.new_gradients()
    gb = net.new_gradients(batch=4)
    small = 1024
    itemsize = np.dtype(dtype).itemsize
    assert _peak_during(lambda: net.value_and_grad(x, 0.5, out=g)) < small
    assert _peak_during(lambda: net.forward(x)) < small
    assert _peak_during(lambda: net.backward(0.5, out=g)) < small
    # An optimiser step writes into the network's arrays and its own state: no array either.
    assert _peak_during(lambda: mlpgrad.optim.Adam(net).step(g)) > K * K * itemsize  # (its state, when made)
    adam = mlpgrad.optim.Adam(net)
    assert _peak_during(lambda: adam.step(g)) < small
    assert _peak_during(lambda: net.value_and_grad_batch(X, dy, out=gb)) < small + 4 * itemsize
    assert _peak_during(lambda: net.forward_batch(X)) < small + 4 * itemsize
    # the measurement sees NumPy buffers: without out= the fresh gradients show up
    assert _peak_during(lambda: net.value_and_grad(x, 0.5)) > 2 * K * K * itemsize


# ----------------------------------------------------------------------------- threads' tapes
@pytest.mark.skipif(not HAVE_PROC or UNDER_ASAN, reason="needs /proc; RSS is meaningless under ASan")
def test_thread_tapes_are_freed_when_threads_exit():
    """Each thread's batch tape here is ~64 MiB (allocated with mmap, returned to the OS when freed): after the
    threads exit, the memory is gone although the MLP lives on."""
    widths, batch, n_threads = (4, 1024, 1), 1600, 4  # tape: B (2 sum K + 3 max K) 8 bytes ~ 65 MB
    rng = np.random.default_rng(3)
    weights, alpha = make_network(rng, widths, np.float64)
    net = mlpgrad.MLP(weights, alpha, "tanh")
    X = make_inputs(rng, widths[0], batch=batch)
    gc.collect(1)  # the young generations: what the calls made (a full collection is slow)
    before = rss_bytes()
    peak = [0]
    barrier = threading.Barrier(n_threads)

    def work():
        net.forward_batch(X)
        barrier.wait()  # all tapes alive at once
        peak[0] = max(peak[0], rss_bytes())
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # join() returns when the Python thread state is gone, a moment before the OS thread runs its
    # thread_local destructors (which free the tapes): give them a moment.
    deadline = time.monotonic() + 10
    while rss_bytes() - before >= 40e6 and time.monotonic() < deadline:
        time.sleep(0.01)
    after = rss_bytes()
    assert peak[0] - before > n_threads * 50e6, "the tapes were not as large as this test assumes"
    assert after - before < 40e6, (f"RSS {(after - before) / 1e6:.0f} MB above the start after the threads "
                                   f"exited (peak {(peak[0] - before) / 1e6:.0f} MB): their tapes were kept")
    assert net.forward_batch(X[:2]).shape == (2,)  # the MLP still works
