"""Instances made by ``Cls.__new__(Cls)``, whose C++ object was never built: using one must raise
TypeError, not crash. Each case runs in a forked child (fuzzing.run_forked), so a crash is a failure of
that case only."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from fuzzing import run_forked


def _uninit_mlp():
    import mlpgrad
    return mlpgrad.MLP.__new__(mlpgrad.MLP)


def _uninit_gradients():
    import mlpgrad
    return mlpgrad.Gradients.__new__(mlpgrad.Gradients)


def _net():
    import mlpgrad
    return mlpgrad.MLP([np.ones((3, 2))], np.ones(3))

UNINIT_CASES = {
    "MLP.forward": lambda: _uninit_mlp().forward(np.ones(2)),
    "MLP.value_and_grad": lambda: _uninit_mlp().value_and_grad(np.ones(2)),
    "MLP.backward": lambda: _uninit_mlp().backward(),
    "MLP.forward_batch": lambda: _uninit_mlp().forward_batch(np.ones((1, 2))),
    "MLP.value_and_grad_batch": lambda: _uninit_mlp().value_and_grad_batch(np.ones((1, 2))),
    "MLP.widths": lambda: _uninit_mlp().widths,
    "MLP.weights": lambda: _uninit_mlp().weights,
    "MLP.z": lambda: _uninit_mlp().z,
    "MLP.new_gradients": lambda: _uninit_mlp().new_gradients(),
    "MLP.__repr__": lambda: repr(_uninit_mlp()),
    "MLP.pickle": lambda: pickle.dumps(_uninit_mlp()),
    "MLP.pickle protocol 0": lambda: pickle.dumps(_uninit_mlp(), protocol=0),
    "MLP.__reduce_ex__": lambda: _uninit_mlp().__reduce_ex__(2),
    "Gradients.pickle protocol 1": lambda: pickle.dumps(_uninit_gradients(), protocol=1),
    "Gradients.x": lambda: _uninit_gradients().x,
    "Gradients.weights": lambda: _uninit_gradients().weights,
    "Gradients.batch": lambda: _uninit_gradients().batch,
    "Gradients.__repr__": lambda: repr(_uninit_gradients()),
    "Gradients as out=": lambda: _net().value_and_grad(np.ones(2), out=_uninit_gradients()),
    "Gradients as batch out=": lambda: _net().value_and_grad_batch(np.ones((1, 2)), out=_uninit_gradients()),
}


@pytest.mark.parametrize("case", UNINIT_CASES)
def test_uninitialized_instance_raises(case):
    outcome = run_forked(UNINIT_CASES[case])
    assert outcome.startswith("raised TypeError"), \
        f"{case} on an instance made by __new__ without __init__: {outcome}"
