"""Tests for ``python -m mlpgrad`` (mlpgrad.cli): the demo's output, exit codes and option errors."""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mlpgrad
from mlpgrad import cli, reference


@pytest.fixture(autouse=True)
def plain_fast_output(monkeypatch):
    monkeypatch.setattr(cli, "REPEAT_NS", 1_000_000)  # 1 ms per timing repeat keeps the tests fast
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):  # plain text from rich
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "100")


def _yhat_line(text):
    m = re.search(r"^ŷ\s+(\S+)\s+\(oracle: (\S+)\)", text, flags=re.M)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def test_demo_small_network(capsys):
    assert cli.main(["demo", "-K", "8", "-T", "2"]) == 0
    out = capsys.readouterr().out
    for needle in ("K = 8, T = 2, relu, float64", "136 parameters", "vs oracle", "vs finite differences",
                   "∂ŷ/∂weights", "∂ŷ/∂alpha", "∂ŷ/∂x", "(128 of 128)", "mlpgrad (C++ core)",
                   "NumPy (numpy_backprop)", "pure Python (oracle)", "OK"):
        assert needle in out, needle
    assert "FAILED" not in out
    # the printed ŷ is the network's value for the documented construction and seed
    weights, alpha, x = cli._network(8, 2, np.float64, 0)
    expected = reference.forward(weights, alpha, x)[0]
    got, oracle = _yhat_line(out)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert oracle == pytest.approx(expected, rel=1e-15, abs=1e-15)
    # every reported difference is a number within the float64 tolerances
    errs = re.findall(r"[│|] (ŷ|∂ŷ/∂\w+)\s+[│|]\s+(\S+) [│|]\s+(\S*)", out)
    assert [e[0] for e in errs] == ["ŷ", "∂ŷ/∂weights", "∂ŷ/∂alpha", "∂ŷ/∂x"]
    assert all(float(e[1]) <= 1e-10 for e in errs)
    assert all(float(e[2]) <= 1e-6 for e in errs[1:])


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_demo_float32(capsys, activation):
    assert cli.main(["demo", "--width", "6", "--depth", "3", "--dtype", "float32",
                     "--activation", activation, "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert f"K = 6, T = 3, {activation}, float32" in out and "seed 5" in out
    assert "vs oracle" in out and "OK" in out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_demo_depth_zero(capsys, dtype):
    """T = 0 is a valid network, ŷ = αᵀx: no weight gradients to check, α and x checked as usual."""
    assert cli.main(["demo", "-K", "5", "-T", "0", "--dtype", dtype]) == 0
    out = capsys.readouterr().out
    assert f"K = 5, T = 0, relu, {dtype}, 5 parameters" in out and "OK" in out
    _, alpha, x = cli._network(5, 0, np.dtype(dtype), 0)
    got, oracle = _yhat_line(out)
    expected = float(alpha.astype(np.float64) @ x.astype(np.float64))
    assert got == pytest.approx(expected, rel=1e-6) and oracle == pytest.approx(expected, rel=1e-15)
    rows = re.findall(r"[│|] (ŷ|∂ŷ/∂\w+)\s+[│|]\s+(\S+) [│|]\s+(\S*)", out)
    assert [r[0] for r in rows] == ["ŷ", "∂ŷ/∂alpha", "∂ŷ/∂x"]
    assert "(5 of 5)" in out  # every entry of α and x checked by finite differences


def test_demo_reports_wrong_gradients(capsys, monkeypatch):
    real_mlp = mlpgrad.MLP

    class WrongAlphaGradient:
        """A core whose d/d alpha is 1 % too large."""

        def __init__(self, *args, **kwargs):
            self._net = real_mlp(*args, **kwargs)

        def value_and_grad(self, x, *args, **kwargs):
            yhat, g = self._net.value_and_grad(x, *args, **kwargs)
            g.alpha[...] *= 1.01
            return yhat, g

        def __getattr__(self, name):
            return getattr(self._net, name)

    monkeypatch.setattr(mlpgrad, "MLP", WrongAlphaGradient)
    assert cli.main(["demo", "-K", "5", "-T", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "∂ŷ/∂alpha vs oracle" in out and "∂ŷ/∂alpha vs finite differences" in out
    assert "∂ŷ/∂weights vs" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "-K", "0"], "-K/--width: expected a positive integer, got 0"),
        (["demo", "-T", "-2"], "-T/--depth: expected a non-negative integer, got -2"),
        (["demo", "--width", "eight"], "expected a positive integer, got 'eight'"),
        (["demo", "--seed", "-1"], "--seed: expected a non-negative integer"),
        (["demo", "--dtype", "float16"], "invalid choice: 'float16'"),
        (["demo", "--activation", "gelu"], "invalid choice: 'gelu'"),
        (["demo", "-K", "4096"], "too large for the demo"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_options(capsys, argv, message):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "error" in captured.err and message in captured.err
    assert captured.out == ""


def test_help(capsys):
    assert cli.main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--width" in out and "--activation" in out


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"mlpgrad {mlpgrad.__version__}\n"
    assert mlpgrad.__version__ == importlib.metadata.version("mlpgrad")  # the core's and the package's agree


def test_version_from_the_command_line():
    """``python -m mlpgrad --version`` and the installed ``mlpgrad`` script (next to this interpreter)."""
    commands = [[sys.executable, "-m", "mlpgrad", "--version"]]
    script = shutil.which("mlpgrad", path=os.path.dirname(sys.executable))
    if script is not None:
        commands.append([script, "--version"])
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"mlpgrad {mlpgrad.__version__}\n", ""), command


def test_python_dash_m():
    ok = subprocess.run([sys.executable, "-m", "mlpgrad", "demo", "-K", "4", "-T", "1"],
                        capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "ŷ" in ok.stdout and "vs oracle" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "mlpgrad", "demo", "-K", "0"],
                         capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert bad.returncode == 2 and "positive integer" in bad.stderr
