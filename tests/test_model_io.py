"""Storing whole networks: pickles (format version 2 for biases, an output bias or vector outputs; version 1,
byte for byte as before, for the notes' network) and, below, ``net.save`` / ``MLP.load`` and ``MLP.random``."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import mlpgrad
from conftest import run_in_child
from network_cases import Case, parameter_arrays

PICKLE_CASES = [Case((3, 4, 2), "tanh", np.float64, True, True, None),
                Case((3, 4, 2), "relu", np.float32, True, False, 3),
                Case((3, 4, 2), "sigmoid", np.float64, False, True, 1),
                Case((3, 4, 2), "softplus", np.float32, False, False, 2),
                Case((5,), "identity", np.float64, True, True, 2)]  # depth 0: biases == []


def same_network(a, b):
    assert type(a) is type(b)
    assert a.widths == b.widths and a.activations == b.activations and a.dtype == b.dtype
    assert a.output_shape == b.output_shape
    assert (a.biases is None) == (b.biases is None) and (a.output_bias is None) == (b.output_bias is None)
    pa, pb = parameter_arrays(a), parameter_arrays(b)
    assert len(pa) == len(pb)
    for u, v in zip(pa, pb):
        assert u.shape == v.shape and u.dtype == v.dtype and np.array_equal(u, v)
    x = np.linspace(-1, 1, a.widths[0])
    assert np.array_equal(a.forward(x), b.forward(x))


@pytest.mark.parametrize("case", PICKLE_CASES, ids=str)
def test_pickles_of_every_protocol_round_trip(rng, case):
    net = case.build(rng)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(net, protocol=protocol))
        same_network(again, net)
        assert all(p is not q for p, q in zip(parameter_arrays(again), parameter_arrays(net)))  # copies
    same_network(copy.deepcopy(net), net)
    shallow = copy.copy(net)
    same_network(shallow, net)


@pytest.mark.parametrize("case", PICKLE_CASES, ids=str)
def test_state_format_version_2(rng, case):
    net = case.build(rng)
    state = net.__getstate__()
    assert state[0] == 2 and len(state) == 6 and type(state[0]) is int
    assert all(s is w for s, w in zip(state[1], net.weights)) and state[2] is net.alpha
    assert state[3] == net.activations
    if net.biases is None:
        assert state[4] is None
    else:
        assert isinstance(state[4], tuple) and all(s is b for s, b in zip(state[4], net.biases))
    assert state[5] is net.output_bias
    fresh = mlpgrad.MLP.__new__(mlpgrad.MLP)
    fresh.__setstate__(state)
    same_network(fresh, net)


def test_the_notes_network_still_pickles_as_version_1():
    """Its pickles are what they were (older releases read them); a by-hand version-1 state still loads."""
    w = [np.ones((3, 2)), np.ones((1, 3))]
    net = mlpgrad.MLP(w, np.ones(1), ["tanh", "relu"])
    state = net.__getstate__()
    assert state[0] == 1 and len(state) == 4
    fresh = mlpgrad.MLP.__new__(mlpgrad.MLP)
    fresh.__setstate__((1, tuple(w), np.ones(1), ("tanh", "relu")))
    same_network(fresh, net)


@pytest.mark.parametrize("state,match", [
    ((2, (), np.ones(1), ()), r"format version 2; expected format version 1: .* or format version 2: .*\(this state has 4 items\)"),
    ((1, (), np.ones(1), (), None, None), r"format version 1; expected format version 1"),
    ((3, (), np.ones(1), (), None, None), r"format version 3; expected"),
    ((2, (), np.ones(1), (), None), r"pickle state of 5 items"),
    ((2, (), np.ones(1), (), None, None, None), r"pickle state of 7 items"),
])
def test_bad_version_2_states_are_refused(state, match):
    with pytest.raises(ValueError, match=match):
        mlpgrad.MLP.__new__(mlpgrad.MLP).__setstate__(state)


def test_a_version_2_state_is_checked_like_the_constructor():
    w = (np.ones((3, 2)),)
    cases = [((2, w, np.ones(3), ("relu",), (np.ones(2),), None), ValueError, r"biases\[0\] has shape \(2,\)"),
             ((2, w, np.ones(3), ("relu",), None, np.ones(1)), ValueError, r"output_bias must be 0-D"),
             ((2, w, np.ones((3, 2)), ("relu",), [np.ones(3)], np.ones(2, np.float32)), TypeError,
              r"output_bias has dtype float32")]
    for state, error, match in cases:
        with pytest.raises(error, match=match):
            mlpgrad.MLP.__new__(mlpgrad.MLP).__setstate__(state)


def test_version_2_pickles_load_in_a_new_interpreter(rng, tmp_path):
    net = Case((3, 4, 2), "leaky_relu", np.float64, True, True, 3).build(rng)
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps(net))
    x = np.linspace(-1, 1, 3)
    lines = run_in_child(f"""
    with open({str(path)!r}, "rb") as f:
        net = pickle.load(f)
    print(net.output_shape, net.__getstate__()[0], net.forward(np.linspace(-1, 1, 3)).tolist())
    """)
    assert lines == [f"(3,) 2 {net.forward(x).tolist()}"]
