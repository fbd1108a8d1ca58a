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


def loads_from_out_of_band_buffers(obj, offset):
    """pickle protocol 5 with each out-of-band buffer moved to `offset` bytes into a fresh buffer, as Dask's
    message frames deliver them; returns the unpickled object and the buffers it was given."""
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    moved = []
    for b in buffers:
        raw = bytearray(b.raw().nbytes + offset)
        raw[offset:] = b.raw()
        moved.append(memoryview(raw)[offset:])
    assert moved, "the arrays went in-band: the test would test nothing"
    return pickle.loads(data, buffers=moved), moved


@pytest.mark.parametrize("case", PICKLE_CASES, ids=str)
def test_pickles_load_from_misaligned_out_of_band_buffers(rng, case):
    net = case.build(rng)
    again, _ = loads_from_out_of_band_buffers(net, offset=1)
    same_network(again, net)
    assert all(p.flags.aligned for p in parameter_arrays(again))


def test_aligned_out_of_band_buffers_are_viewed_not_copied(rng):
    net = PICKLE_CASES[0].build(rng)
    again, buffers = loads_from_out_of_band_buffers(net, offset=0)
    same_network(again, net)
    viewed = [np.frombuffer(b, dtype=np.uint8) for b in buffers]
    assert all(any(np.shares_memory(p, v) for v in viewed) for p in parameter_arrays(again))


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


# ----------------------------------------------------------------------------- net.save / MLP.load
SAVE_CASES = PICKLE_CASES + [Case((2, 3, 3, 1), "leaky_relu", np.float64, False, False, None)]


@pytest.mark.parametrize("case", SAVE_CASES, ids=str)
def test_save_and_load_round_trip(rng, tmp_path, case):
    net = case.build(rng)
    path = tmp_path / "model.npz"
    assert net.save(path) is None
    loaded = mlpgrad.MLP.load(path)
    same_network(loaded, net)
    for a in parameter_arrays(loaded):
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata or a.base is not None
    same_network(mlpgrad.MLP.load(str(path)), net)


def test_the_archive_is_plain_numpy(rng, tmp_path):
    net = Case((3, 4, 2), "tanh", np.float32, True, True, 3).build(rng)
    path = tmp_path / "model.npz"
    net.save(str(path))
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(["format_version", "widths", "activations", "alpha", "with_biases",
                                             "with_output_bias", "weights[0]", "weights[1]", "biases[0]", "biases[1]",
                                             "output_bias"])
        assert int(data["format_version"]) == 1 and data["widths"].tolist() == [3, 4, 2]
        assert data["activations"].tolist() == ["tanh", "tanh"] and bool(data["with_biases"])
        for key, a in zip(["weights[0]", "weights[1]", "alpha", "biases[0]", "biases[1]", "output_bias"],
                          parameter_arrays(net)):
            assert data[key].dtype == np.float32 and np.array_equal(data[key], a)


def test_the_path_is_written_as_given_and_file_objects_work(rng, tmp_path):
    import io

    net = Case((3, 2), "relu", np.float64).build(rng)
    path = tmp_path / "model.bin"  # numpy.savez alone would write model.bin.npz
    net.save(path)
    assert path.exists() and not (tmp_path / "model.bin.npz").exists()
    same_network(mlpgrad.MLP.load(path), net)
    buffer = io.BytesIO()
    net.save(buffer)
    buffer.seek(0)
    same_network(mlpgrad.MLP.load(buffer), net)


def test_load_builds_the_class_it_is_called_on(rng, tmp_path):
    class Mine(mlpgrad.MLP):
        pass

    path = tmp_path / "m.npz"
    Case((3, 2), "relu", np.float64).build(rng).save(path)
    assert type(Mine.load(path)) is Mine and type(mlpgrad.MLP.load(path)) is mlpgrad.MLP


def _entries(rng, tmp_path, case=Case((3, 4, 2), "tanh", np.float64, True, True, None)):
    path = tmp_path / "good.npz"
    case.build(rng).save(path)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _write(tmp_path, entries, name="bad.npz"):
    path = tmp_path / name
    with open(path, "wb") as f:
        np.savez(f, **entries)
    return path


REQUIRED = ["format_version", "widths", "activations", "alpha", "with_biases", "with_output_bias", "weights[0]",
            "weights[1]", "biases[0]", "biases[1]", "output_bias"]


@pytest.mark.parametrize("key", REQUIRED)
def test_a_missing_entry_is_refused(rng, tmp_path, key):
    entries = _entries(rng, tmp_path)
    del entries[key]
    with pytest.raises(ValueError, match=rf"bad.npz: missing entry '{key}'".replace("[", r"\[").replace("]", r"\]")):
        mlpgrad.MLP.load(_write(tmp_path, entries))


@pytest.mark.parametrize("change,match", [
    (dict(format_version=np.array(2)), r"unsupported format version 2; this mlpgrad reads version 1"),
    (dict(format_version=np.array(0)), r"unsupported format version 0"),
    (dict(format_version=np.array([1])), r"format_version must be a 0-d integer"),
    (dict(format_version=np.array(1.0)), r"format_version must be a 0-d integer"),
    (dict(widths=np.array([3, 0, 2])), r"widths must be a non-empty 1-D array of ints >= 1"),
    (dict(widths=np.array([3.0, 4.0, 2.0])), r"widths must be"),
    (dict(widths=np.array([3, 4, 2, 2])), r"activations must be 3 names"),
    (dict(widths=np.array([3, 5, 2])), r"weights\[0\] has shape \(4, 3\) but widths give \(5, 3\)"),
    (dict(activations=np.array(["tanh"])), r"activations must be 2 names"),
    (dict(activations=np.array(["tanh", "swish"])), r"the stored network is inconsistent: activation\[1\]: unknown"),
    (dict(activations=np.array([1, 2])), r"activations must be 2 names \(a 1-D str array\), got dtype int64"),
    (dict(alpha=np.ones(3)), r"alpha has shape \(3,\) but widths give \(2,\) or \(2, m\)"),
    (dict(alpha=np.ones((2, 0))), r"alpha has shape \(2, 0\)"),
    (dict(alpha=np.ones(2, np.float32)), r"alpha has dtype float32 but weights\[0\] \(or alpha\) has float64"),
    (dict(**{"weights[1]": np.ones((2, 4), np.int64)}), r"weights\[1\] has dtype int64; expected float32 or float64"),
    (dict(**{"biases[1]": np.ones(3)}), r"biases\[1\] has shape \(3,\) but widths give \(2,\)"),
    (dict(output_bias=np.ones(1)), r"output_bias has shape \(1,\) but widths give \(\)"),
    (dict(with_biases=np.array(1)), r"with_biases must be a 0-d bool array"),
    (dict(extra=np.ones(1)), r"unexpected entries \['extra'\]"),
    (dict(with_output_bias=np.array(False)), r"unexpected entries \['output_bias'\]"),
])
def test_inconsistent_archives_are_refused(rng, tmp_path, change, match):
    entries = _entries(rng, tmp_path)
    entries.update(change)
    with pytest.raises(ValueError, match=r"bad.npz: .*" + match):
        mlpgrad.MLP.load(_write(tmp_path, entries))


def test_an_object_array_is_never_unpickled(rng, tmp_path):
    entries = _entries(rng, tmp_path)
    entries["activations"] = np.array(["tanh", "tanh"], dtype=object)
    path = tmp_path / "bad.npz"
    with open(path, "wb") as f:
        np.savez(f, **entries)  # allow_pickle is numpy.save's default: the entry is a pickle
    with pytest.raises(ValueError, match=r"entry 'activations' cannot be read as a plain array"):
        mlpgrad.MLP.load(path)


def test_files_that_are_no_archive_are_refused(tmp_path):
    npy = tmp_path / "one.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match=r"one.npy: not an mlpgrad model archive .*it holds one array"):
        mlpgrad.MLP.load(npy)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip file at all")
    with pytest.raises(ValueError, match=r"junk.npz: not an mlpgrad model archive"):
        mlpgrad.MLP.load(junk)
    pickled = tmp_path / "net.pkl"
    pickled.write_bytes(pickle.dumps(mlpgrad.MLP([np.ones((1, 1))], np.ones(1))))
    with pytest.raises(ValueError, match=r"net.pkl: not an mlpgrad model archive"):
        mlpgrad.MLP.load(pickled)
    with pytest.raises(FileNotFoundError):
        mlpgrad.MLP.load(tmp_path / "absent.npz")


def test_save_on_an_uninitialised_instance_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"__init__ was never called"):
        mlpgrad.MLP.__new__(mlpgrad.MLP).save(tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


# ----------------------------------------------------------------------------- MLP.random
def test_random_makes_the_network_asked_for():
    net = mlpgrad.MLP.random((3, 16, 8), "tanh", outputs=4, seed=0)
    assert type(net) is mlpgrad.MLP
    assert net.widths == (3, 16, 8) and net.activations == ("tanh", "tanh") and net.dtype == np.float64
    assert net.output_shape == (4,) and net.alpha.shape == (8, 4)
    assert [b.shape for b in net.biases] == [(16,), (8,)] and net.output_bias.shape == (4,)
    assert all(not b.any() for b in net.biases) and not net.output_bias.any()
    one = mlpgrad.MLP.random([5, 2], biases=False, dtype=np.float32, seed=1)
    assert one.output_shape == () and one.alpha.shape == (2,) and one.dtype == np.float32
    assert one.biases is None and one.output_bias is None
    scalar = mlpgrad.MLP.random([5, 2], seed=1)
    assert scalar.output_bias.shape == () and scalar.activations == ("relu",)
    flat = mlpgrad.MLP.random([7], outputs=2)  # depth 0: ŷ = αᵀx + β
    assert flat.depth == 0 and flat.biases == [] and flat.alpha.shape == (7, 2)
    mixed = mlpgrad.MLP.random((2, 3, 4), ["relu", "sigmoid"], seed=3)
    assert mixed.activations == ("relu", "sigmoid")


def test_random_is_reproducible_and_dtype_independent():
    a = mlpgrad.MLP.random((4, 6, 3), "softplus", outputs=2, seed=42)
    b = mlpgrad.MLP.random((4, 6, 3), "softplus", outputs=2, seed=42)
    c = mlpgrad.MLP.random((4, 6, 3), "softplus", outputs=2, seed=43)
    f = mlpgrad.MLP.random((4, 6, 3), "softplus", outputs=2, seed=42, dtype="float32")
    g = mlpgrad.MLP.random((4, 6, 3), "softplus", outputs=2, seed=np.random.default_rng(42))
    for p, q, r, s, t in zip(*(parameter_arrays(n) for n in (a, b, c, f, g))):
        assert np.array_equal(p, q) and np.array_equal(p, t) and np.array_equal(s, p.astype(np.float32))
        assert not p.any() or not np.array_equal(p, r)


@pytest.mark.parametrize("activation,kind,gain", [
    ("relu", "he", 2.0), ("softplus", "he", 2.0), ("leaky_relu", "he", 2.0 / (1 + 0.01**2)),
    ("tanh", "glorot", None), ("sigmoid", "glorot", None), ("identity", "glorot", None)])
def test_random_draws_he_for_relu_like_and_glorot_for_the_others(activation, kind, gain):
    fan_in, fan_out = 300, 500
    net = mlpgrad.MLP.random((fan_in, fan_out), activation, outputs=7, seed=7)
    W = net.weights[0]
    if kind == "he":
        assert W.std() == pytest.approx(np.sqrt(gain / fan_in), rel=0.01)
        assert abs(W.mean()) < 0.01 * W.std() and np.abs(W).max() > 3.5 * W.std()  # normal: tails beyond 3.5σ
    else:
        a = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(W).max() <= a and np.abs(W).max() > 0.999 * a
        assert W.std() == pytest.approx(a / np.sqrt(3.0), rel=0.01)  # uniform on (-a, a)
    a_out = np.sqrt(6.0 / (fan_out + 7))  # α: Glorot uniform for a linear layer of fan-in K_T, fan-out m
    assert np.abs(net.alpha).max() <= a_out and np.abs(net.alpha).max() > 0.99 * a_out


def test_random_networks_train(rng):
    from mlpgrad import losses, optim

    net = mlpgrad.MLP.random((1, 32, 32), "tanh", seed=0)
    X = np.linspace(-2, 2, 64)[:, None]
    y = np.sin(2 * X[:, 0]) + 1.5
    opt = optim.Adam(net, lr=0.01)
    grads = net.new_gradients(batch=64, x=False)
    first = losses.mse(net.forward_batch(X), y)[0]
    for _ in range(300):
        loss, dy = losses.mse(net.forward_batch(X), y)
        net.backward_batch(dy, out=grads)
        opt.step(grads)
    assert loss < 0.01 * first


@pytest.mark.parametrize("kw,error,match", [
    (dict(widths=()), ValueError, r"widths is empty"),
    (dict(widths=(3, 0)), ValueError, r"widths\[1\] must be >= 1, got 0"),
    (dict(widths=(3, 2.5)), TypeError, r"widths\[1\] must be an int, got float"),
    (dict(widths=(3, True)), TypeError, r"widths\[1\] must be an int, got bool"),
    (dict(widths="34"), TypeError, r"widths must be a sequence of ints"),
    (dict(widths=5), TypeError, r"widths must be a sequence of ints"),
    (dict(activation="swish"), ValueError, r"activation: unknown activation 'swish'; expected one of"),
    (dict(activation=["relu"]), ValueError, r"activation has 1 names but widths give 2 layers"),
    (dict(activation=["relu", 3]), ValueError, r"activation\[1\]: unknown activation 3"),
    (dict(activation=7), TypeError, r"activation must be a name"),
    (dict(outputs=0), ValueError, r"outputs must be >= 1, got 0"),
    (dict(outputs=2.0), TypeError, r"outputs must be an int"),
    (dict(biases="yes"), TypeError, r"biases must be True or False, got str"),
    (dict(dtype=np.int32), TypeError, r"dtype must be numpy.float32 or numpy.float64, got int32"),
    (dict(dtype="float16"), TypeError, r"dtype must be numpy.float32 or numpy.float64, got float16"),
    (dict(seed="x"), TypeError, r"SeedSequence expects int or sequence of ints"),
])
def test_random_refuses_bad_arguments(kw, error, match):
    args = dict(widths=(3, 4, 2))
    args.update(kw)
    with pytest.raises(error, match=match):
        mlpgrad.MLP.random(args.pop("widths"), **args)
