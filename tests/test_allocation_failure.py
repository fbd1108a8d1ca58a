"""Allocation failure followed by a retry (issue 9, item 2).

In a child interpreter the address space is limited (RLIMIT_AS) just above what the process uses, a call
whose per-thread tape needs more raises MemoryError, the limit is lifted, and the same call on the same
thread must then give exactly what a network that never failed computes. Before the fix, the failed
Tape::reset() had already recorded the new widths, so the retry skipped the allocation and wrote through a
null pointer (a crash: the child dies, the test fails). Single-example and batch paths, float32 and float64.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import under_asan

pytestmark = pytest.mark.skipif(under_asan(), reason="AddressSanitizer reserves terabytes of address space: "
                                                     "RLIMIT_AS cannot make one allocation fail")

CHILD = textwrap.dedent("""
    import gc, json, resource, sys
    import numpy as np
    import mlpgrad

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize in /proc/self/status")

    def snapshot(result):
        y, g = result
        return [np.array(y)] + [w.copy() for w in g.weights] + [g.alpha.copy(), g.x.copy()]

    def same(a, b):
        return len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b))

    dtype = np.dtype(sys.argv[1])
    path = sys.argv[2]
    rng = np.random.default_rng(0)
    if path == "single":
        # 1 -> K -> 1: the weights are 2K numbers, the tape (2 sum K + 3 max K) about 5K
        K = 4_000_000
        weights = [rng.standard_normal((K, 1)).astype(dtype), rng.standard_normal((1, K)).astype(dtype)]
        alpha, activation, x, batch = np.ones(1, dtype), "tanh", np.array([0.5], dtype), None
        tape_bytes = 5 * K * dtype.itemsize
    else:
        # 4 -> 8 -> 8 -> 1 over B examples: X is 4B numbers, the batch tape B (2 sum K + 3 max K) = 66B
        B = 1_000_000
        weights = [rng.standard_normal((8, 4)).astype(dtype), rng.standard_normal((8, 8)).astype(dtype)]
        alpha, activation, x, batch = rng.standard_normal(8).astype(dtype), "relu", rng.standard_normal((B, 4)).astype(dtype), B
        tape_bytes = 66 * B * dtype.itemsize

    def caller():
        # Gradients preallocated: the per-thread tape is the call's only big allocation.
        net = mlpgrad.MLP(weights, alpha, activation)
        out = net.new_gradients(batch=batch)
        if batch is None:
            return net, lambda: net.value_and_grad(x, out=out)
        return net, lambda: net.value_and_grad_batch(x, out=out)

    # The expected result from another MLP of the same weights: its own tapes, freed when it is.
    reference, call = caller()
    expected = snapshot(call())
    del reference, call
    gc.collect()

    net, call = caller()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + tape_bytes // 2, hard))  # room for small allocations
    try:
        call()
        failed = None
    except MemoryError as e:
        failed = type(e).__name__
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    retried = snapshot(call())
    print(json.dumps({"failed": failed, "equal": same(retried, expected)}))
""")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", ["single", "batch"])
def test_memory_error_then_retry_on_the_same_thread(path, dtype):
    proc = subprocess.run([sys.executable, "-c", CHILD, dtype, path], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"the child died (status {proc.returncode}) retrying after a MemoryError\n"
                                  f"{proc.stdout}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == "MemoryError", "the limited call did not fail: the test did not test anything"
    assert result["equal"], "the retry after a MemoryError gave a different answer from a fresh thread"
