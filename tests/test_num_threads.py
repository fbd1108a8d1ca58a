"""mlpgrad.set_num_threads / get_num_threads and the binding's batch thread pool: results bit for bit the same
for every thread count, bad arguments, MLPGRAD_NUM_THREADS at import, fork() safety, several Python threads
at once, and a clean exit."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import mlpgrad
from conftest import run_in_child

# Odd shapes, big enough that the products split over threads (the GEMM splits from 2^19 flops).
SHAPES = [((129, 127, 65), 131), ((65, 257, 63, 7), 517), ((301, 67), 1000)]


@pytest.fixture
def restore_threads():
    before = mlpgrad.get_num_threads()
    yield
    mlpgrad.set_num_threads(before)


def make_net(widths, dtype, seed, activation="tanh"):
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((k1, k0)) / np.sqrt(k0)).astype(dtype) for k0, k1 in zip(widths, widths[1:])]
    return mlpgrad.MLP(weights, rng.standard_normal(widths[-1]).astype(dtype), activation)


def batch_results(net, X, dy):
    """Everything the three batch calls return, as bytes."""
    yhat, g = net.value_and_grad_batch(X, dy)
    y2 = net.forward_batch(X)
    g2 = net.backward_batch(dy)
    p = net.new_gradients(batch=len(X), x=False)
    net.value_and_grad_batch(X, dy, out=p)
    arrays = [yhat, y2, g.alpha, g.x, *g.weights, g2.alpha, g2.x, *g2.weights, p.alpha, *p.weights]
    return [a.tobytes() for a in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"B{s[1]}")
def test_bit_identical_for_1_to_4_threads(restore_threads, dtype, shape):
    widths, B = shape
    net = make_net(widths, dtype, seed=B, activation="relu" if B % 2 else "tanh")
    rng = np.random.default_rng(B + 1)
    X = rng.standard_normal((B, widths[0])).astype(dtype)
    dy = rng.standard_normal(B).astype(dtype)
    mlpgrad.set_num_threads(1)
    serial = batch_results(net, X, dy)
    for n in (2, 3, 4):
        mlpgrad.set_num_threads(n)
        assert mlpgrad.get_num_threads() == n
        assert batch_results(net, X, dy) == serial, f"{n} threads differ from one"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_bit_identical_with_biases_and_vector_outputs(restore_threads, dtype):
    widths, B, m = (65, 257, 63), 517, 3
    rng = np.random.default_rng(20)
    weights = [(rng.standard_normal((k1, k0)) / np.sqrt(k0)).astype(dtype) for k0, k1 in zip(widths, widths[1:])]
    biases = [rng.standard_normal(k).astype(dtype) for k in widths[1:]]
    net = mlpgrad.MLP(weights, rng.standard_normal((widths[-1], m)).astype(dtype), "tanh", biases=biases,
                      output_bias=rng.standard_normal(m).astype(dtype))
    X = rng.standard_normal((B, widths[0])).astype(dtype)
    dy = rng.standard_normal((B, m)).astype(dtype)

    def run():
        yhat, g = net.value_and_grad_batch(X, dy)
        return [a.tobytes() for a in [yhat, g.x, g.alpha, g.output_bias, *g.weights, *g.biases]]

    mlpgrad.set_num_threads(1)
    serial = run()
    for n in (2, 3, 4):
        mlpgrad.set_num_threads(n)
        assert run() == serial, f"{n} threads differ from one"


def single_results(net, x, dy):
    """Everything the single-example calls return, as bytes (dy: a number, or an array for m outputs)."""
    yhat, g = net.value_and_grad(x, dy)
    y2 = net.forward(x)
    g2 = net.backward(dy)
    arrays = [np.asarray(yhat), np.asarray(y2), g.alpha, g.x, *g.weights, g2.alpha, g2.x, *g2.weights]
    arrays += [b for b in (g.biases or ()) if b is not None]
    return [a.tobytes() for a in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("outputs", [None, 3])
def test_single_example_bit_identical_for_1_to_4_threads(restore_threads, dtype, outputs):
    """One example on a network whose layers split over threads (1031 x 1031 weights: 4 MiB in float32, 4 parts
    of the 1 MiB each that a part must have at least)."""
    widths = (1031, 1031, 517)
    if outputs is None:
        net, dy = make_net(widths, dtype, seed=9, activation="relu"), 0.75
    else:
        net = mlpgrad.MLP.random(widths, outputs=outputs, dtype=dtype, seed=9)
        net.biases[0][...] = np.linspace(-0.5, 0.5, widths[1])
        dy = np.linspace(-1, 1, outputs).astype(dtype)
    x = np.random.default_rng(10).standard_normal(widths[0]).astype(dtype)
    mlpgrad.set_num_threads(1)
    serial = single_results(net, x, dy)
    for n in (2, 3, 4):
        mlpgrad.set_num_threads(n)
        assert single_results(net, x, dy) == serial, f"{n} threads differ from one"


@pytest.mark.parametrize("n", [1, 2, 7, np.int64(3), mlpgrad._core._MAX_THREADS])
def test_set_and_get(restore_threads, n):
    mlpgrad.set_num_threads(n)
    assert mlpgrad.get_num_threads() == int(n)
    assert type(mlpgrad.get_num_threads()) is int


@pytest.mark.parametrize("bad, error, message", [
    (0, ValueError, "n must be between 1 and 1024, got 0"),
    (-1, ValueError, "got -1"),
    (1025, ValueError, "got 1025"),
    (10**30, ValueError, f"got {10**30}"),
    (2.0, TypeError, "n must be an int, got float"),
    ("2", TypeError, "n must be an int, got str"),
    (None, TypeError, "n must be an int, got NoneType"),
    (True, TypeError, "n must be an int, got bool"),
])
def test_bad_arguments(restore_threads, bad, error, message):
    mlpgrad.set_num_threads(3)
    with pytest.raises(error, match=message.replace("(", r"\(")):
        mlpgrad.set_num_threads(bad)
    assert mlpgrad.get_num_threads() == 3  # unchanged
    with pytest.raises(TypeError):
        mlpgrad.set_num_threads()


def child_threads(env_value, affinity=None):
    """get_num_threads() after import in a fresh interpreter with MLPGRAD_NUM_THREADS = env_value (None:
    unset), optionally pinned to `affinity` first; and the warnings the import gave."""
    env = dict(os.environ)
    env.pop("MLPGRAD_NUM_THREADS", None)
    if env_value is not None:
        env["MLPGRAD_NUM_THREADS"] = env_value
    code = textwrap.dedent(f"""
        import os, warnings
        if {affinity!r} is not None:
            os.sched_setaffinity(0, {affinity!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import mlpgrad
        print(mlpgrad.get_num_threads(), len(os.sched_getaffinity(0)))
        for w in caught:
            print(w.category.__name__, w.message)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, *warned = proc.stdout.splitlines()
    threads, cpus = map(int, first.split())
    return threads, cpus, warned


@pytest.mark.parametrize("value, expected", [("3", 3), (" 2 ", 2), ("1", 1), ("0012", 12)])
def test_environment_variable(value, expected):
    threads, _, warned = child_threads(value)
    assert (threads, warned) == (expected, [])


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", "2 threads", "1025", "99999999999999999999"])
def test_bad_environment_variable_warns_and_uses_the_default(value):
    threads, cpus, warned = child_threads(value)
    assert threads == cpus
    assert len(warned) == 1 and warned[0].startswith("RuntimeWarning MLPGRAD_NUM_THREADS=" + repr(value))
    assert "using the default" in warned[0]


@pytest.mark.parametrize("value", [None, ""])
def test_default_is_the_cpus_this_process_may_run_on(value):
    threads, cpus, warned = child_threads(value)
    assert (threads, warned) == (cpus, [])
    if hasattr(os, "sched_setaffinity"):
        assert child_threads(value, affinity=[min(os.sched_getaffinity(0))])[:2] == (1, 1)


def test_fork_child_computes_with_a_pool_of_its_own():
    # In a child interpreter: a hang (a child waiting for the parent's workers) or crash fails this test.
    lines = run_in_child("""
        import multiprocessing as mp
        mlpgrad.set_num_threads(2)
        rng = np.random.default_rng(0)
        W = [rng.standard_normal((257, 129)) / 12, rng.standard_normal((63, 257)) / 16]
        net = mlpgrad.MLP(W, rng.standard_normal(63), "tanh")
        X = rng.standard_normal((301, 129))

        def work(n):
            mlpgrad.set_num_threads(n)
            y, g = net.value_and_grad_batch(X)
            return y.tobytes() + g.weights[0].tobytes() + g.x.tobytes()

        parent = work(2)  # the parent's pool exists (and its workers run) when the children fork
        ctx = mp.get_context("fork")
        with ctx.Pool(2) as pool:
            children = pool.map(work, [2, 1, 3, 2])
        print(all(c == parent for c in children), work(2) == parent)
    """, timeout=240)
    assert lines == ["True True"]


def test_python_threads_share_the_pool(restore_threads):
    mlpgrad.set_num_threads(2)
    (widths, B) = SHAPES[0]
    net = make_net(widths, np.float64, seed=7)
    rng = np.random.default_rng(8)
    Xs = [rng.standard_normal((B, widths[0])) for _ in range(4)]
    expected = [batch_results(net, X, np.ones(B)) for X in Xs]
    results, errors = {}, []
    barrier = threading.Barrier(4, timeout=60)

    def caller(i):
        try:
            barrier.wait()
            results[i] = [batch_results(net, Xs[i], np.ones(B)) for _ in range(3)]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    for i in range(4):
        assert results[i] == [expected[i]] * 3


def test_set_num_threads_while_other_threads_compute(restore_threads):
    (widths, B) = SHAPES[1]
    net = make_net(widths, np.float32, seed=9)
    X = np.random.default_rng(10).standard_normal((B, widths[0])).astype(np.float32)
    mlpgrad.set_num_threads(1)
    expected = batch_results(net, X, np.ones(B, np.float32))
    stop, errors, mismatches = threading.Event(), [], []

    def caller():
        try:
            while not stop.is_set():
                if batch_results(net, X, np.ones(B, np.float32)) != expected:
                    mismatches.append(1)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    for n in [2, 3, 1, 4, 2] * 4:
        mlpgrad.set_num_threads(n)  # replaces the pool while the callers hold the old one
    stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not mismatches and not any(t.is_alive() for t in threads)


def test_clean_exit_with_the_pool_running():
    # Exit while a daemon thread is inside batch calls on the pool: no hang, no crash, status 0.
    lines = run_in_child("""
        import threading
        mlpgrad.set_num_threads(2)
        rng = np.random.default_rng(0)
        net = mlpgrad.MLP([rng.standard_normal((256, 256)) / 16], rng.standard_normal(256), "relu")
        X = rng.standard_normal((512, 256))
        started = threading.Event()

        def loop():
            while True:
                net.value_and_grad_batch(X)
                started.set()

        threading.Thread(target=loop, daemon=True).start()
        started.wait(60)
        net.value_and_grad_batch(X)
        print("exiting")
    """, timeout=120)
    assert lines == ["exiting"]
