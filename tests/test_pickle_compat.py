"""Pickle compatibility: pickles written in the version-1 format (tests/data/pickles, made once by
make_pickles.py and frozen) must keep loading in every later release, into networks that compute what they
computed when they were saved. The pickled state carries its format version as its first element.
"""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

import mlpgrad
from conftest import oracle, run_in_child

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pickles")
with open(os.path.join(DATA, "expected.json")) as _f:
    EXPECTED = json.load(_f)

try:  # the fixtures were written by NumPy 2, whose arrays pickle as numpy._core.multiarray._reconstruct
    import numpy._core.multiarray  # noqa: F401
    NUMPY_CAN_LOAD = True
except ImportError:
    NUMPY_CAN_LOAD = False

needs_numpy2_pickles = pytest.mark.skipif(not NUMPY_CAN_LOAD, reason="this NumPy cannot load NumPy 2 array pickles")

FILES = [(name, f) for name, case in EXPECTED["cases"].items() for f in case["files"]]


def tol(dtype):
    # Bits may differ from the machine that wrote the fixtures (SIMD width changes the summation order).
    return 1e-5 if dtype == "float32" else 1e-12


def close(got, expected, dtype, what):
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    scale = 1.0 + float(np.max(np.abs(expected))) if expected.size else 1.0
    np.testing.assert_allclose(got, expected, rtol=tol(dtype), atol=tol(dtype) * scale, err_msg=what)


def test_fixture_files_are_present():
    assert EXPECTED["format_version"] == 1
    assert len(FILES) >= 10
    for _, f in FILES:
        assert os.path.getsize(os.path.join(DATA, f)) > 0, f


@needs_numpy2_pickles
@pytest.mark.parametrize("name,fname", FILES, ids=[f for _, f in FILES])
def test_version_1_pickles_load_and_compute_the_same(name, fname):
    case = EXPECTED["cases"][name]
    dtype = case["dtype"]
    with open(os.path.join(DATA, fname), "rb") as f:
        net = pickle.load(f)
    assert isinstance(net, mlpgrad.MLP)
    assert net.widths == tuple(case["widths"]) and net.activations == tuple(case["activations"])
    assert net.dtype == np.dtype(dtype) and net.depth == len(case["widths"]) - 1
    # the data itself: bit for bit
    for w, ref in zip(net.weights, case["weights"]):
        assert w.dtype == np.dtype(dtype) and w.flags.c_contiguous
        np.testing.assert_array_equal(w, np.asarray(ref, dtype))
    np.testing.assert_array_equal(net.alpha, np.asarray(case["alpha"], dtype))
    # what it computes: as when it was saved, and as the oracle says
    x = np.asarray(case["x"], dtype)
    y, g = net.value_and_grad(x, case["dy"])
    close(y, case["yhat"], dtype, "yhat")
    for t, (a, b) in enumerate(zip(g.weights, case["grad_weights"])):
        close(a, b, dtype, f"dW[{t}]")
    close(g.alpha, case["grad_alpha"], dtype, "dalpha")
    close(g.x, case["grad_x"], dtype, "dx")
    y_ref, g_ref = oracle(net.weights, net.alpha, x, net.activations, case["dy"])
    close(y, y_ref, dtype, "yhat vs oracle")
    X = np.asarray(case["X"], dtype)
    yb, gb = net.value_and_grad_batch(X)
    close(yb, case["yhat_batch"], dtype, "batch yhat")
    for t, (a, b) in enumerate(zip(gb.weights, case["grad_weights_batch"])):
        close(a, b, dtype, f"batch dW[{t}]")
    close(gb.x, case["grad_X"], dtype, "batch dX")
    # the loaded network owns writeable copies it computes on in place, like any other
    if net.depth:
        net.weights[0][...] = 0
        assert net.forward(x) == pytest.approx(float(np.sum(np.asarray(net.alpha, np.float64) * _sigma0(net))))
    # and it pickles again, in the same format
    state = net.__getstate__()
    assert state[0] == 1 and len(state) == 4
    again = pickle.loads(pickle.dumps(net))
    assert again.widths == net.widths and again.forward(x) == net.forward(x)


def _sigma0(net):
    """z^T when W[0] = 0 (z^1 = sigma(0) for every unit, then the rest of the network)."""
    names = net.activations
    s0 = {"relu": 0.0, "leaky_relu": 0.0, "tanh": 0.0, "sigmoid": 0.5, "softplus": np.log(2.0), "identity": 0.0}
    z = np.full(net.widths[1], s0[names[0]])
    for w, act in zip(net.weights[1:], names[1:]):
        u = np.asarray(w, np.float64) @ z
        z = {"relu": np.maximum(u, 0), "leaky_relu": np.where(u >= 0, u, 0.01 * u), "tanh": np.tanh(u),
             "sigmoid": 1 / (1 + np.exp(-u)), "softplus": np.logaddexp(0, u), "identity": u}[act]
    return z


def test_state_format_version_1():
    """The documented layout: (1, weights tuple, alpha, activation names tuple), the very arrays."""
    w = [np.ones((3, 2)), np.ones((1, 3))]
    a = np.ones(1)
    net = mlpgrad.MLP(w, a, ["tanh", "relu"])
    state = net.__getstate__()
    assert state[0] == 1 and isinstance(state[0], int)
    assert isinstance(state[1], tuple) and all(s is o for s, o in zip(state[1], w))
    assert state[2] is a and state[3] == ("tanh", "relu")
    fresh = mlpgrad.MLP.__new__(mlpgrad.MLP)
    fresh.__setstate__((1, tuple(w), a, ("tanh", "relu")))
    assert fresh.widths == (2, 3, 1) and fresh.forward(np.ones(2)) == net.forward(np.ones(2))


@pytest.mark.parametrize("state", [(2, (), np.ones(1), ()), (0, (), np.ones(1), ()), ("1", (), np.ones(1), ()),
                                   (1, (), np.ones(1)), (1, (), np.ones(1), (), "extra"),
                                   (2**40, (), np.ones(1), ()), (2**80, (), np.ones(1), ()), (-(2**63) - 1, (), np.ones(1), ())])
def test_other_versions_and_layouts_are_refused(state):
    fresh = mlpgrad.MLP.__new__(mlpgrad.MLP)
    with pytest.raises(ValueError, match="version 1"):
        fresh.__setstate__(state)


@needs_numpy2_pickles
@pytest.mark.parametrize("name,fname", FILES, ids=[f for _, f in FILES])
def test_version_1_pickles_pickle_again_to_the_same_bytes(name, fname):
    """Pickling is defined for every protocol now; protocols >= 2 must still write what they wrote."""
    with open(os.path.join(DATA, fname), "rb") as f:
        data = f.read()
    protocol = int(fname.rsplit("-p", 1)[1].split(".")[0])
    assert pickle.dumps(pickle.loads(data), protocol=protocol) == data


@needs_numpy2_pickles
def test_version_1_pickles_round_trip_under_every_protocol():
    # in a child: protocols 0 and 1 used to abort the interpreter
    lines = run_in_child(f"""
    import glob, os
    for path in sorted(glob.glob(os.path.join({DATA!r}, "*.pkl"))):
        with open(path, "rb") as f:
            net = pickle.load(f)
        x = np.linspace(-1, 1, net.widths[0]).astype(net.dtype)
        for p in range(pickle.HIGHEST_PROTOCOL + 1):
            again = pickle.loads(pickle.dumps(net, protocol=p))
            print(os.path.basename(path), p, again.widths == net.widths and again.activations == net.activations
                  and again.forward(x) == net.forward(x)
                  and all(np.array_equal(a, b) for a, b in zip(again.weights, net.weights)))
    """)
    assert len(lines) == len(FILES) * (pickle.HIGHEST_PROTOCOL + 1)
    assert all(line.endswith(" True") for line in lines), lines
