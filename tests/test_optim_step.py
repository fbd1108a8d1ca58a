"""The optimisers' whole-step call (_core._sgd_step, _core._adam_step): one call per step updates every array
of a network, each bit for bit what its own per-array update (_sgd_update, _adam_update) and the NumPy
textbook give, and every array is checked before any is written."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import mlpgrad
from mlpgrad import _core, optim
from gil_watch import count_while
from test_optim import (ADAM_OPTIONS, SGD_OPTIONS, adam_kwargs, assert_bitwise_equal, sgd_kwargs, textbook_adam,
                        textbook_sgd, unchanged)

DTYPES = (np.float32, np.float64)
# Weights, biases, α of two outputs and β: every kind of parameter array, and one (70 × 80) large enough
# that the step releases the GIL.
WIDTHS = (80, 70, 9)


def network(dtype):
    return mlpgrad.MLP.random(WIDTHS, "tanh", outputs=2, biases=True, dtype=dtype, seed=3)


def parameter_arrays(obj):
    return list(obj.weights) + [obj.alpha] + list(obj.biases) + [obj.output_bias]


def fill_gradients(grads, rng):
    for g in parameter_arrays(grads):
        g[...] = rng.standard_normal(g.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,options", [("sgd", o) for o in SGD_OPTIONS] + [("adam", o) for o in ADAM_OPTIONS],
                         ids=str)
def test_a_step_is_the_per_array_updates_and_the_textbook_bit_for_bit(dtype, kind, options):
    net = network(dtype)
    params = parameter_arrays(net)
    assert len(params) == 6 and net.biases is not None and net.output_bias is not None
    opt = optim.SGD(net, **options) if kind == "sgd" else optim.Adam(net, **options)
    fields = ("velocity",) if kind == "sgd" else ("m", "v")
    per_array = [p.copy() for p in params]
    per_array_state = [{f: np.zeros_like(p) for f in fields} for p in params]
    textbook = [p.copy() for p in params]
    textbook_state = [{f: np.zeros_like(p) for f in fields} for p in params]
    if kind == "sgd":
        k = sgd_kwargs(options)
        update = functools.partial(textbook_sgd, **k)
        momentum = k["momentum"] != 0
        options_tuple = (k["lr"], k["momentum"], k["nesterov"], k["weight_decay"])

        def update_one(p, g, state, t):
            _core._sgd_update(p, g, state["velocity"] if momentum else None, *options_tuple, t)
    else:
        k = adam_kwargs(options)
        update = functools.partial(textbook_adam, **k)
        options_tuple = (k["lr"], k["beta1"], k["beta2"], k["eps"], k["weight_decay"], k["decoupled"])

        def update_one(p, g, state, t):
            _core._adam_update(p, g, state["m"], state["v"], *options_tuple, t)
    rng = np.random.default_rng(4)
    grads = net.new_gradients(batch=1)
    for t in range(1, 5):
        fill_gradients(grads, rng)
        opt.step(grads)
        for p, g, state, e, e_state in zip(per_array, parameter_arrays(grads), per_array_state, textbook,
                                           textbook_state):
            update_one(p, g, state, t)
            update(e, g.copy(), *e_state.values(), t)
        for name, p, q, e in zip(opt.state, params, per_array, textbook):
            assert_bitwise_equal(p, q, f"step {t} {name} against its own update")
            assert_bitwise_equal(p, e, f"step {t} {name} against the textbook")
        if kind == "adam" or momentum:
            for name, state in zip(opt.state, per_array_state):
                for f in fields:
                    assert_bitwise_equal(opt.state[name][f], state[f], f"step {t} {f} of {name}")
    assert opt.steps == 4


def step_arrays(dtype=np.float64, sizes=((3, 4), (4,), (5,))):
    rng = np.random.default_rng(0)
    params = tuple(rng.standard_normal(s).astype(dtype) for s in sizes)
    grads = tuple(rng.standard_normal(s).astype(dtype) for s in sizes)
    velocities = tuple(np.zeros(s, dtype) for s in sizes)
    return params, grads, velocities


SGD = (0.1, 0.9, False, 0.0, 1)  # lr, momentum, nesterov, weight_decay, step


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("change,error,message", [
    (lambda p, g, v: (p[:2] + ([1.0],), g, v), TypeError,
     r"params\[2\] must be a numpy.ndarray of float32 or float64, got list"),
    (lambda p, g, v: (p, g[:2] + (g[2].astype(np.float32),), v), TypeError,
     r"grads\[2\] has dtype float32 but params\[2\] has float64"),
    (lambda p, g, v: (p[:2] + (p[2].astype(np.float32),), g, v), TypeError,
     r"params\[2\] has dtype float32 but params\[0\] has float64; a step's arrays must share one dtype"),
    (lambda p, g, v: (p, g, v[:2] + (np.zeros(4),)), ValueError,
     r"velocities\[2\] has shape \(4,\) but params\[2\] has shape \(5,\)"),
    (lambda p, g, v: (p[:2] + (read_only(p[2]),), g, v), ValueError,
     r"params\[2\] is read-only; the update writes it in place"),
    (lambda p, g, v: (p, g, v[:2] + (read_only(v[2]),)), ValueError, r"velocities\[2\] is read-only"),
    (lambda p, g, v: (p[:2] + (np.zeros(10)[::2],), g, v), ValueError,
     r"params\[2\] of shape \(5,\) is not a C-contiguous, aligned array"),
    (lambda p, g, v: (p, g[:2], v), ValueError, r"grads holds 2 arrays but params holds 3; expected one per parameter"),
    (lambda p, g, v: (p, g, v[:2] + (p[0].reshape(-1)[:5],)), ValueError,
     r"(params\[0\] and velocities\[2\]|velocities\[2\] and params\[0\]) overlap in memory; a step needs separate "
     r"arrays"),
    (lambda p, g, v: (p, g[:2] + (p[2],), v), ValueError, r"grads\[2\]"),
    (lambda p, g, v: (list(p), g, v), None, None),  # a list is taken like a tuple
    (lambda p, g, v: (p[0], g, v), TypeError, r"params must be a tuple of numpy.ndarray, got numpy.ndarray"),
    (lambda p, g, v: ((), (), ()), ValueError, r"params holds no arrays"),
])
def test_a_step_checks_every_array_before_writing_any(change, error, message):
    params, grads, velocities = step_arrays()
    params, grads, velocities = change(params, grads, velocities)
    written = [a for a in list(params) + list(velocities) if isinstance(a, np.ndarray) and a.flags.writeable]
    same = unchanged(written)
    if error is None:
        _core._sgd_step(params, grads, velocities, *SGD)
        assert not same()
        return
    with pytest.raises(error, match=message):
        _core._sgd_step(params, grads, velocities, *SGD)
    assert same()


def test_a_step_checks_its_options_and_the_state_it_takes():
    params, grads, velocities = step_arrays()
    same = unchanged(list(params) + list(velocities))
    with pytest.raises(ValueError, match=r"velocities must be None without momentum, got tuple"):
        _core._sgd_step(params, grads, velocities, 0.1, 0.0, False, 0.0, 1)
    with pytest.raises(ValueError, match=r"step counts updates from 1; got 0"):
        _core._sgd_step(params, grads, velocities, 0.1, 0.9, False, 0.0, 0)
    with pytest.raises(ValueError, match=r"lr must be a finite number in \[0, inf\), got -1"):
        _core._sgd_step(params, grads, velocities, -1.0, 0.9, False, 0.0, 1)
    with pytest.raises(TypeError, match=r"_sgd_step\(\) missing required argument 'step'"):
        _core._sgd_step(params, grads, velocities, 0.1, 0.9, False, 0.0)
    m, v = velocities, tuple(np.zeros_like(a) for a in params)
    with pytest.raises(ValueError, match=r"m\[1\] and v\[1\] overlap in memory|v\[1\] and m\[1\] overlap in memory"):
        _core._adam_step(params, grads, m, v[:1] + (m[1],) + v[2:], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1)
    with pytest.raises(ValueError, match=r"m holds 2 arrays but params holds 3"):
        _core._adam_step(params, grads, m[:2], v, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1)
    assert same()
    # Gradients are only read: they may share memory with each other.
    shared = grads[1].copy()
    first, second = np.ones(4), np.ones(4)
    _core._sgd_step((first, second), (shared, shared), (np.zeros(4), np.zeros(4)), 0.1, 0.9, False, 0.0, 1)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, np.ones(4))


def test_the_network_names_a_read_only_bias():
    net = network(np.float64)
    opt = optim.Adam(net, 0.01)
    grads = net.new_gradients(batch=1)
    fill_gradients(grads, np.random.default_rng(1))
    params = parameter_arrays(net)
    same = unchanged(params)
    net.biases[0].flags.writeable = False
    with pytest.raises(ValueError, match=r"the network's biases\[0\] is read-only; the optimiser updates it in place"):
        opt.step(grads)
    assert same() and opt.steps == 0
    net.biases[0].flags.writeable = True
    opt.step(grads)
    assert opt.steps == 1 and not same()


def test_a_large_step_releases_the_gil():
    """Another Python thread runs while a whole step is under way: it sees the first parameter updated and
    the second not yet (the GIL is released once, around every array's update)."""
    n = 1 << 20
    params = tuple(np.zeros(n, np.float32) for _ in range(2))
    grads = tuple(np.ones(n, np.float32) for _ in range(2))
    m = tuple(np.zeros(n, np.float32) for _ in range(2))
    v = tuple(np.zeros(n, np.float32) for _ in range(2))
    def step_all():
        for step in range(1, 17):
            _core._adam_step(params, grads, m, v, 0.01, 0.9, 0.999, 1e-8, 0.0, False, step)

    # The first parameter is read before the second (left to right): values only decrease, so this cannot misfire.
    between = count_while(lambda: params[0][-1] < params[1][-1], step_all)
    assert between > 0, "no other Python thread ran between the updates of one step"
    assert all(np.all(p == params[0][0]) for p in params) and params[0][0] < 0
