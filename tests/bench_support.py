"""What the tests of ``python -m mlpgrad bench`` share (test_bench.py, test_bench_training_step.py): plain
text from rich, a peer that lies about its gradients, and frameworks run in a child process."""
from __future__ import annotations

import json
import sys

import pytest

FAST = dict(repeats=1, run_ns=100_000)  # one 0.1 ms timed run per measurement


@pytest.fixture(autouse=True)
def plain_output(monkeypatch):
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):  # plain text from rich
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # no wrapped table cells
    monkeypatch.setenv("XLA_FLAGS", "")  # the bench sets it; restored after each test


class Wrong:
    """Mixed in before a peer class: the peer named "wrong", its gradients changed by ``corrupt(g)`` after every
    call, counting its calls."""

    name = "wrong"

    def __init__(self):
        self.calls = 0

    def bind(self, problem):
        call = super().bind(problem)

        def wrong():
            self.calls += 1
            yhat, g = call()
            self.corrupt(g)
            return yhat, g

        return wrong


def statuses_in_child(script, module):
    """What ``script`` prints (JSON) when run with peer ``module`` in a child process: JAX and PyTorch start
    thread pools, which other tests' os.fork() must not inherit. Skips the test if ``module`` is not installed."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    done = subprocess.run([sys.executable, "-c", script, module], capture_output=True, text=True, encoding="utf-8",
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
