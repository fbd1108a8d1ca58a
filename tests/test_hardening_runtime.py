"""Runtime safety of the binding: what the caller's arrays, threads and interpreter may do around a call.

* Misaligned inputs. A C-contiguous array of the network's dtype whose data is not aligned to its item size
  (a view at an odd byte offset) is converted once to an aligned copy, for every input argument (x, X, a
  batch dy, a 0-d dy), and gives bit for bit what the aligned array gives. The kernels never load a
  misaligned element: under the UBSan build of .ci/reliability.sh (-fno-sanitize-recover) these tests fail
  if one does.
* Arrays reallocated or reshaped under a network or an out= Gradients (``ndarray.resize(..., refcheck=False)``
  frees the buffer the binding views; ``a.shape = ...``, ``a.dtype = ...`` change it in place): every later
  call refuses with a ValueError naming the array, before it reads or writes anything.
* Interpreter exit while daemon threads are inside calls, with the GIL released or inside a user callback:
  the process exits with status 0 (CPython 3.11 ends such threads with a forced unwind).
* Sub-interpreters: ``import mlpgrad._core`` raises ImportError there, instead of hanging.

Whatever could crash or hang runs in a child interpreter, so that a crash is a test failure. The fuzz
targets (hypothesis) widen each class: every argument misaligned, every kind of in-place change to every
array a network or a Gradients holds, and random mixes of calls in flight at exit.
MLPGRAD_FUZZ_SCALE multiplies their example counts (.ci/reliability.sh runs more).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlpgrad
from conftest import Snapshot, architectures, build_net, grads_of, make_inputs

SCALE = int(os.environ.get("MLPGRAD_FUZZ_SCALE", "1"))
HERE = os.path.dirname(os.path.abspath(__file__))


def fuzz(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (the same environment: a sanitizer runtime preloaded stays preloaded)."""
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)], cwd=HERE,
                          capture_output=True, text=True, timeout=timeout)


def child_report(proc: subprocess.CompletedProcess) -> str:
    tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-40:])
    return f"exit status {proc.returncode}:\n{tail}"


# =============================================================================================== misaligned inputs
def misaligned(a: np.ndarray, offset: int = 1) -> np.ndarray:
    """A C-contiguous copy of `a` (same dtype and shape) whose data starts `offset` bytes past an aligned address."""
    a = np.asarray(a)
    assert 0 < offset < a.itemsize
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)  # NumPy's buffers are aligned to at least 16 bytes
    out = buf[offset:offset + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and not out.flags.aligned
    return out


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_result(got, ref, what: str):
    """Bit-for-bit equality of two call results: floats, arrays, Gradients, or tuples of them."""
    if isinstance(ref, tuple):
        assert isinstance(got, tuple) and len(got) == len(ref), what
        for i, (g, r) in enumerate(zip(got, ref)):
            assert_same_result(g, r, f"{what}[{i}]")
    elif isinstance(ref, mlpgrad.Gradients):
        assert isinstance(got, mlpgrad.Gradients), what
        g, r = grads_of(got), grads_of(ref)
        for name in ("weights", "z", "u"):
            gl, rl = getattr(g, name), getattr(r, name)
            assert (gl is None) == (rl is None), f"{what}.{name}"
            for t, (ga, ra) in enumerate(zip(gl or [], rl or [])):
                assert same_bits(ga, ra), f"{what}.{name}[{t}] differs"
        assert same_bits(g.alpha, r.alpha), f"{what}.alpha differs"
        assert same_bits(g.x, r.x), f"{what}.x differs"
    else:
        assert same_bits(got, ref), f"{what}: {got!r} != {ref!r}"


# (method, argument): every input argument of every call, as a call on the values of clean_inputs().
INPUT_ARGUMENTS = {
    ("forward", "x"): lambda net, v: net.forward(v["x"]),
    ("value_and_grad", "x"): lambda net, v: net.value_and_grad(v["x"], v["dy0"]),
    ("value_and_grad", "dy"): lambda net, v: net.value_and_grad(v["x"], v["dy0"]),
    ("backward", "dy"): lambda net, v: (net.forward(v["x"]), net.backward(v["dy0"])),
    ("forward_batch", "X"): lambda net, v: net.forward_batch(v["X"]),
    ("value_and_grad_batch", "X"): lambda net, v: net.value_and_grad_batch(v["X"], v["dy"]),
    ("value_and_grad_batch", "dy"): lambda net, v: net.value_and_grad_batch(v["X"], v["dy"]),
}


def clean_inputs(rng, net, dtype, batch: int):
    k0 = net.widths[0]
    return {"x": make_inputs(rng, k0, dtype), "X": make_inputs(rng, k0, dtype, batch),
            "dy": rng.standard_normal(batch).astype(dtype), "dy0": np.array(0.75, dtype)}


def with_misaligned(values, method: str, argument: str, offset: int):
    key = "dy0" if (argument == "dy" and not method.endswith("_batch")) else argument
    out = dict(values)
    out[key] = misaligned(values[key], offset)
    return out, key


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(INPUT_ARGUMENTS), ids=[f"{m}-{a}" for m, a in INPUT_ARGUMENTS])
def test_misaligned_input_gives_the_aligned_result(case, dtype):
    method, argument = case
    rng = np.random.default_rng(7)
    # widths with odd sizes, so that vector loops have scalar tails that load single elements
    net, weights, alpha = build_net(rng, (13, 9, 5), ["tanh", "relu"], dtype)
    values = clean_inputs(rng, net, dtype, batch=11)
    ref = INPUT_ARGUMENTS[case](net, values)
    for offset in sorted({1, np.dtype(dtype).itemsize // 2}):
        bad, key = with_misaligned(values, method, argument, offset)
        snap = Snapshot(bad[key], weights, alpha)
        got = INPUT_ARGUMENTS[case](net, bad)
        assert_same_result(got, ref, f"{method} with {argument} misaligned by {offset} bytes")
        snap.assert_unchanged(f"{method} with {argument} misaligned")


# A call's peak traced memory shows whether it copied an input: NumPy reports its buffers to tracemalloc.
def peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", list(INPUT_ARGUMENTS), ids=[f"{m}-{a}" for m, a in INPUT_ARGUMENTS])
def test_misaligned_input_is_converted_once(case):
    """README: misaligned inputs are "converted once". Exactly one copy of the argument is made per call."""
    method, argument = case
    if argument == "dy" and not method.endswith("_batch"):
        pytest.skip("a 0-d dy is 8 bytes: its copy is below what tracemalloc can tell apart (UBSan covers it)")
    rng = np.random.default_rng(3)
    batch = 4096 if argument == "dy" else 256
    widths = (4096, 1) if argument == "x" else (64, 1)
    net, _, _ = build_net(rng, widths, "tanh", np.float64)
    values = clean_inputs(rng, net, np.float64, batch)
    out = net.new_gradients(batch=batch if method.endswith("_batch") else None)
    call = INPUT_ARGUMENTS[case]
    with_out = {
        "value_and_grad": lambda n, v: n.value_and_grad(v["x"], out=out),
        "value_and_grad_batch": lambda n, v: n.value_and_grad_batch(v["X"], v["dy"], out=out),
    }.get(method, call)
    bad, key = with_misaligned(values, method, argument, 1)
    nbytes = bad[key].nbytes
    aligned_peak = min(peak_bytes(lambda: with_out(net, values)) for _ in range(3))
    misaligned_peak = min(peak_bytes(lambda: with_out(net, bad)) for _ in range(3))
    extra = misaligned_peak - aligned_peak
    assert nbytes <= extra < 2 * nbytes, \
        f"{method}: a misaligned {argument} of {nbytes} bytes made the call allocate {extra} more bytes " \
        f"(expected one aligned copy)"
