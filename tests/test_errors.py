"""Every bad input of the contract: exception type, a message naming the argument, and no write anywhere.

Every check goes through ``expect_error``, which snapshots the caller's buffers (weights, alpha,
inputs and every out array, pre-filled with a sentinel) byte for byte and asserts they are
unchanged after the exception.
"""
import re
import threading

import numpy as np
import pytest

import mlpgrad
from conftest import SENTINEL, Snapshot, assert_gradients_close, grads_of, make_inputs, make_network, out_spec

WIDTHS = (3, 5, 6, 2)  # 7 never occurs in a valid shape: used for "what it got"
ACTS = ["relu", "tanh", "sigmoid"]
B = 4


def W(t):
    return re.escape(f"weights[{t}]")


def OUTW(t):
    return re.escape(f"out.weights[{t}]")


ALPHA = r"(?<![A-Za-z0-9_])alpha(?![A-Za-z0-9_])"
OUT = r"(?<![A-Za-z0-9_])out(?![A-Za-z0-9_])"
X = r"(?<![A-Za-z0-9_])x(?![A-Za-z0-9_])"
XB = r"(?<![A-Za-z0-9_])[xX](?![A-Za-z0-9_])"
DY = r"(?<![A-Za-z0-9_])dy(?![A-Za-z0-9_])"
Z = r"(?<![A-Za-z0-9_])z(?![A-Za-z0-9_])"
U = r"(?<![A-Za-z0-9_])u(?![A-Za-z0-9_])"
ACT = r"activation"


def expect_error(exc_type, patterns, fn, *buffers):
    """fn() must raise exc_type with a message matching every regex; buffers must be unchanged."""
    snap = Snapshot(*buffers)
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - we check the type ourselves for a precise failure
        err = e
    else:
        pytest.fail(f"no exception raised; expected {exc_type.__name__}")
    assert isinstance(err, exc_type), f"expected {exc_type.__name__}, got {type(err).__name__}: {err}"
    msg = str(err)
    for p in patterns:
        assert re.search(p, msg), f"{type(err).__name__} message {msg!r} does not match {p!r}"
    snap.assert_unchanged(f"after {type(err).__name__}({msg!r})")
    return msg


def other_float(dtype):
    return np.float32 if np.dtype(dtype) == np.float64 else np.float64


# ----------------------------------------------------------------------------- construction
def _replace(seq, i, value):
    seq = list(seq)
    seq[i] = value
    return seq


def _with_dtype(a, dt):
    return np.ascontiguousarray(a.astype(dt))


CONSTRUCT = {
    # not an ndarray -> TypeError, never converted
    "weights1_list": (lambda w, a, d: (_replace(w, 1, w[1].tolist()), a, ACTS), TypeError, [W(1)]),
    "weights0_None": (lambda w, a, d: (_replace(w, 0, None), a, ACTS), TypeError, [W(0)]),
    "alpha_list": (lambda w, a, d: (w, a.tolist(), ACTS), TypeError, [ALPHA]),
    "alpha_None": (lambda w, a, d: (w, None, ACTS), TypeError, [ALPHA]),
    "depth0_alpha_list": (lambda w, a, d: ([], [1.0, 2.0], "relu"), TypeError, [ALPHA]),
    # dtype
    "weights1_int64": (lambda w, a, d: (_replace(w, 1, w[1].astype(np.int64)), a, ACTS), TypeError, [W(1), "int64"]),
    "weights0_float16": (lambda w, a, d: (_replace(w, 0, w[0].astype(np.float16)), a, ACTS), TypeError,
                         [W(0), "float16"]),
    "weights2_complex": (lambda w, a, d: (_replace(w, 2, w[2].astype(np.complex128)), a, ACTS), TypeError, [W(2)]),
    "alpha_int32": (lambda w, a, d: (w, a.astype(np.int32), ACTS), TypeError, [ALPHA, "int32"]),
    "alpha_bool": (lambda w, a, d: (w, a > 0, ACTS), TypeError, [ALPHA]),
    "mixed_weights1": (lambda w, a, d: (_replace(w, 1, _with_dtype(w[1], other_float(d))), a, ACTS), TypeError,
                       [W(1)]),
    "mixed_weights2": (lambda w, a, d: (_replace(w, 2, _with_dtype(w[2], other_float(d))), a, ACTS), TypeError,
                       [W(2)]),
    "mixed_alpha": (lambda w, a, d: (w, _with_dtype(a, other_float(d)), ACTS), TypeError, [ALPHA]),
    # ndim / shape / chaining / zero width
    "weights0_1d": (lambda w, a, d: (_replace(w, 0, w[0].reshape(-1)), a, ACTS), ValueError, [W(0)]),
    "weights1_3d": (lambda w, a, d: (_replace(w, 1, w[1].reshape(6, 5, 1)), a, ACTS), ValueError, [W(1)]),
    "alpha_3d": (lambda w, a, d: (w, a.reshape(2, 1, 1), ACTS), ValueError, [ALPHA]),  # 2-D: m outputs
    "alpha_0d": (lambda w, a, d: (w, np.array(1.0, dtype=d), ACTS), ValueError, [ALPHA]),
    "chain_weights1": (lambda w, a, d: (_replace(w, 1, np.ones((6, 7), d)), a, ACTS), ValueError, [W(1), "7"]),
    "chain_weights2": (lambda w, a, d: (_replace(w, 2, np.ones((2, 7), d)), a, ACTS), ValueError, [W(2), "7"]),
    "alpha_length": (lambda w, a, d: (w, np.ones(7, d), ACTS), ValueError, [ALPHA, "7"]),
    "zero_input_width": (lambda w, a, d: ([np.ones((4, 0), d)], np.ones(4, d), "relu"), ValueError, [W(0)]),
    "zero_hidden_width": (lambda w, a, d: ([np.ones((0, 3), d), np.ones((2, 0), d)], np.ones(2, d), "relu"),
                          ValueError, [r"weights\[[01]\]"]),
    "zero_width_depth0": (lambda w, a, d: ([], np.ones(0, d), "relu"), ValueError, [ALPHA]),
    # contiguity
    "weights1_fortran": (lambda w, a, d: (_replace(w, 1, np.asfortranarray(w[1])), a, ACTS), ValueError, [W(1)]),
    "weights0_strided": (lambda w, a, d: (_replace(w, 0, np.ones((5, 6), d)[:, ::2]), a, ACTS), ValueError, [W(0)]),
    "weights2_transposed": (lambda w, a, d: (_replace(w, 2, np.ones((6, 2), d).T), a, ACTS), ValueError, [W(2)]),
    "alpha_strided": (lambda w, a, d: (w, np.ones(4, d)[::2], ACTS), ValueError, [ALPHA]),
    # activation
    "activation_unknown": (lambda w, a, d: (w, a, "swish"), ValueError, [ACT, "swish"]),
    "activation_unknown_in_list": (lambda w, a, d: (w, a, ["relu", "gelu", "tanh"]), ValueError, [ACT, "gelu"]),
    "activation_too_few": (lambda w, a, d: (w, a, ["relu", "tanh"]), ValueError, [ACT]),
    "activation_too_many": (lambda w, a, d: (w, a, ["relu"] * 4), ValueError, [ACT]),
    "activation_depth0_nonempty": (lambda w, a, d: ([], np.ones(2, d), ["relu"]), ValueError, [ACT]),
    "activation_int": (lambda w, a, d: (w, a, 3), TypeError, [ACT]),
    "activation_bytes": (lambda w, a, d: (w, a, b"relu"), TypeError, [ACT, "bytes"]),
    "activation_bytes_of_depth_length": (lambda w, a, d: (w, a, b"tan"), TypeError, [ACT, "bytes"]),
    "activation_None": (lambda w, a, d: (w, a, None), TypeError, [ACT]),
    "activation_nonstr_in_list": (lambda w, a, d: (w, a, ["relu", 3, "tanh"]), TypeError, [ACT]),
}


@pytest.mark.parametrize("case", sorted(CONSTRUCT))
def test_construction_errors(rng, dtype, case):
    make, exc, patterns = CONSTRUCT[case]
    weights, alpha = make_network(rng, WIDTHS, dtype)
    w, a, act = make(weights, alpha, dtype)
    expect_error(exc, patterns, lambda: mlpgrad.MLP(w, a, activation=act), w, a, weights, alpha)


def test_read_only_weights_are_accepted(rng, dtype):
    weights, alpha = make_network(rng, WIDTHS, dtype)
    for arr in weights + [alpha]:
        arr.setflags(write=False)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    snap = Snapshot(weights, alpha)
    x = make_inputs(rng, WIDTHS[0], dtype)
    net.value_and_grad(x)
    net.value_and_grad_batch(np.stack([x, x]))
    snap.assert_unchanged("read-only weights")


# ----------------------------------------------------------------------------- call-time fixtures
@pytest.fixture
def net_setup(rng, dtype):
    weights, alpha = make_network(rng, WIDTHS, dtype)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    x = make_inputs(rng, WIDTHS[0], dtype)
    X = make_inputs(rng, WIDTHS[0], dtype, batch=B)
    _, g = net.value_and_grad(x, 1.0)
    return net, weights, alpha, dtype, x, X, grads_of(g)


def assert_still_works(net, x, baseline, dtype):
    _, g = net.value_and_grad(x, 1.0)
    assert_gradients_close(g, baseline, dtype, WIDTHS, what="after error: ")


# ----------------------------------------------------------------------------- x, X, dy
BAD_X = {
    "len7": (lambda d: np.ones(7, d), ValueError, [X, "7"]),
    "len0": (lambda d: np.ones(0, d), ValueError, [X]),
    "2d": (lambda d: np.ones((1, 3), d), ValueError, [X]),
    "0d": (lambda d: np.array(1.0, d), ValueError, [X]),
    "list_len2": (lambda d: [1.0, 2.0], ValueError, [X]),
    "strings": (lambda d: np.array(["a", "b", "c"]), TypeError, [X]),
    "string_list": (lambda d: ["a", "b", "c"], TypeError, [X]),
    "complex": (lambda d: np.ones(3, np.complex128), TypeError, [X]),
    "complex_list": (lambda d: [1j, 2.0, 3.0], TypeError, [X]),
    "objects": (lambda d: [None, 1.0, 2.0], TypeError, [X]),
}


@pytest.mark.parametrize("case", sorted(BAD_X))
def test_bad_x_value_and_grad(net_setup, case):
    net, weights, alpha, dtype, x, X_, base = net_setup
    make, exc, patterns = BAD_X[case]
    bad = make(dtype)
    spec = out_spec(WIDTHS, dtype)
    expect_error(exc, patterns, lambda: net.value_and_grad(bad, 1.0, out=mlpgrad.Gradients(**spec)),
                 weights, alpha, spec, bad)
    expect_error(exc, patterns, lambda: net.value_and_grad(bad), weights, alpha, bad)
    assert_still_works(net, x, base, dtype)


@pytest.mark.parametrize("case", sorted(BAD_X))
def test_bad_x_forward(net_setup, case):
    net, weights, alpha, dtype, x, X_, base = net_setup
    make, exc, patterns = BAD_X[case]
    bad = make(dtype)
    expect_error(exc, patterns, lambda: net.forward(bad), weights, alpha, bad)
    assert_still_works(net, x, base, dtype)


BAD_XB = {
    "1d": (lambda d: np.ones(3, d), ValueError, [XB]),
    "width7": (lambda d: np.ones((B, 7), d), ValueError, [XB, "7"]),
    "3d": (lambda d: np.ones((B, 3, 1), d), ValueError, [XB]),
    "0d": (lambda d: np.array(1.0, d), ValueError, [XB]),
    "strings": (lambda d: np.full((B, 3), "a"), TypeError, [XB]),
    "complex": (lambda d: np.ones((B, 3), np.complex64), TypeError, [XB]),
    "objects": (lambda d: [[None, 1.0, 2.0]] * B, TypeError, [XB]),
}


@pytest.mark.parametrize("case", sorted(BAD_XB))
def test_bad_X_batch(net_setup, case):
    net, weights, alpha, dtype, x, X_, base = net_setup
    make, exc, patterns = BAD_XB[case]
    bad = make(dtype)
    spec = out_spec(WIDTHS, dtype, batch=B)
    expect_error(exc, patterns, lambda: net.value_and_grad_batch(bad, out=mlpgrad.Gradients(**spec)),
                 weights, alpha, spec, bad)
    expect_error(exc, patterns, lambda: net.value_and_grad_batch(bad), weights, alpha, bad)
    expect_error(exc, patterns, lambda: net.forward_batch(bad), weights, alpha, bad)
    assert_still_works(net, x, base, dtype)


BAD_DY = {
    "string": ("a", TypeError),
    "complex": (1j, TypeError),
    "complex_np": (np.complex128(1.0), TypeError),
    "array2": (np.array([1.0, 2.0]), ValueError),
    "list2": ([1.0, 2.0], ValueError),
    "object": (object(), TypeError),
}


@pytest.mark.parametrize("case", sorted(BAD_DY))
def test_bad_dy_single(net_setup, case):
    net, weights, alpha, dtype, x, X_, base = net_setup
    bad, exc = BAD_DY[case]
    spec = out_spec(WIDTHS, dtype)
    expect_error(exc, [DY], lambda: net.value_and_grad(x, bad, out=mlpgrad.Gradients(**spec)),
                 weights, alpha, spec, x, bad)
    net.forward(x)
    spec2 = out_spec(WIDTHS, dtype)
    expect_error(exc, [DY], lambda: net.backward(bad, out=mlpgrad.Gradients(**spec2)), weights, alpha, spec2, bad)
    expect_error(exc, [DY], lambda: net.backward(dy=bad), weights, alpha, bad)
    assert_still_works(net, x, base, dtype)


BAD_DYB = {
    "short": (lambda d: np.ones(B - 1, d), ValueError),
    "long": (lambda d: np.ones(B + 3, d), ValueError),
    "2d": (lambda d: np.ones((B, 1), d), ValueError),
    "strings": (lambda d: np.full(B, "a"), TypeError),
    "complex": (lambda d: np.ones(B, np.complex128), TypeError),
    "objects": (lambda d: [None] * B, TypeError),
}


@pytest.mark.parametrize("case", sorted(BAD_DYB))
def test_bad_dy_batch(net_setup, case):
    net, weights, alpha, dtype, x, X, base = net_setup
    make, exc = BAD_DYB[case]
    bad = make(dtype)
    spec = out_spec(WIDTHS, dtype, batch=B)
    expect_error(exc, [DY], lambda: net.value_and_grad_batch(X, bad, out=mlpgrad.Gradients(**spec)),
                 weights, alpha, spec, X, bad)
    expect_error(exc, [DY], lambda: net.value_and_grad_batch(X, dy=bad), weights, alpha, X, bad)
    assert_still_works(net, x, base, dtype)


def test_backward_without_forward(rng, dtype):
    weights, alpha = make_network(rng, WIDTHS, dtype)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    spec = out_spec(WIDTHS, dtype)
    expect_error(RuntimeError, [], lambda: net.backward(), weights, alpha)
    expect_error(RuntimeError, [], lambda: net.backward(2.0, out=mlpgrad.Gradients(**spec)), weights, alpha, spec)
    # a forward() in another thread does not count for this one
    t = threading.Thread(target=net.forward, args=(make_inputs(rng, WIDTHS[0], dtype),))
    t.start()
    t.join()
    expect_error(RuntimeError, [], lambda: net.backward(), weights, alpha)


# ----------------------------------------------------------------------------- out=
def _conv(spec, dt):
    return {k: ([np.full(a.shape, SENTINEL, dt) for a in v] if isinstance(v, list) else np.full(v.shape, SENTINEL, dt))
            for k, v in spec.items()}


def _ro(a):
    a.setflags(write=False)
    return a


def _set(spec, key, value, index=None):
    if index is None:
        spec[key] = value
    else:
        spec[key] = _replace(spec[key], index, value)
    return spec


def _drop(spec, key, extra=False):
    spec[key] = spec[key][:-1] if not extra else spec[key] + [spec[key][-1].copy()]
    return spec


def _gradients(spec):
    return lambda: mlpgrad.Gradients(**spec)


def _pair(spec):
    return _gradients(spec), spec


# Each case: (spec, weights, alpha, dtype) -> (factory of the out object, buffers to snapshot)
# Patterns with "out." are for errors only the call can detect (the Gradients does not know the net).
OUT_SINGLE = {
    "not_gradients_dict": (lambda s, w, a, d: (lambda: dict(s), s), TypeError, [OUT]),
    "not_gradients_tuple": (lambda s, w, a, d: (lambda: (s["weights"], s["alpha"], s["x"]), s), TypeError, [OUT]),
    "not_gradients_array": (lambda s, w, a, d: (lambda: s["x"], s), TypeError, [OUT]),
    "dtype_all_other_float": (lambda s, w, a, d: _pair(_conv(s, other_float(d))),
                              TypeError, [OUT]),
    "dtype_weight1": (lambda s, w, a, d: (_gradients(_set(s, "weights", np.full((6, 5), 1, other_float(d)), 1)), s),
                      TypeError, [W(1)]),
    "dtype_alpha_int": (lambda s, w, a, d: (_gradients(_set(s, "alpha", np.zeros(2, np.int64))), s), TypeError,
                        [ALPHA]),
    "alpha_list": (lambda s, w, a, d: (_gradients(_set(s, "alpha", [0.0, 0.0])), s), TypeError, [ALPHA]),
    "shape_weight1": (lambda s, w, a, d: (_gradients(_set(s, "weights", np.full((6, 7), SENTINEL, d), 1)), s),
                      ValueError, [OUTW(1), "7"]),
    "shape_alpha": (lambda s, w, a, d: (_gradients(_set(s, "alpha", np.full(7, SENTINEL, d))), s), ValueError,
                    [r"out\.alpha", "7"]),
    "shape_x": (lambda s, w, a, d: (_gradients(_set(s, "x", np.full(7, SENTINEL, d))), s), ValueError,
                [r"out\.x", "7"]),
    # a consistent Gradients for a 2-layer net: only the call can see that the net has 3 layers
    "weights_count": (lambda s, w, a, d: _pair(out_spec(WIDTHS[:-1], d)), ValueError, [r"out\.weights"]),
    # inconsistent within itself (may be caught by Gradients(...)): weights[1] does not chain with alpha
    "weights_count_inconsistent": (lambda s, w, a, d: (_gradients(_drop(s, "weights")), s), ValueError,
                                   [r"weights|alpha"]),
    "z_count": (lambda s, w, a, d: (_gradients(_drop(s, "z")), s), ValueError, [Z]),
    "u_count": (lambda s, w, a, d: (_gradients(_drop(s, "u", extra=True)), s), ValueError, [U]),
    "shape_z2": (lambda s, w, a, d: (_gradients(_set(s, "z", np.full(7, SENTINEL, d), 2)), s), ValueError,
                 [re.escape("out.z[2]")]),
    "shape_u0": (lambda s, w, a, d: (_gradients(_set(s, "u", np.full(7, SENTINEL, d), 0)), s), ValueError,
                 [re.escape("out.u[0]")]),
    "fortran_weight0": (lambda s, w, a, d: (_gradients(_set(s, "weights", np.asfortranarray(s["weights"][0]), 0)), s),
                        ValueError, [W(0)]),
    "strided_alpha": (lambda s, w, a, d: (_gradients(_set(s, "alpha", np.full(4, SENTINEL, d)[::2])), s), ValueError,
                      [ALPHA]),
    "strided_x": (lambda s, w, a, d: (_gradients(_set(s, "x", np.full(6, SENTINEL, d)[::2])), s), ValueError, [X]),
    "readonly_x": (lambda s, w, a, d: (_gradients(_set(s, "x", _ro(s["x"]))), s), ValueError, [X]),
    "readonly_weight2": (lambda s, w, a, d: (_gradients(_set(s, "weights", _ro(s["weights"][2]), 2)), s), ValueError,
                         [W(2)]),
    "readonly_z1": (lambda s, w, a, d: (_gradients(_set(s, "z", _ro(s["z"][1]), 1)), s), ValueError,
                    [re.escape("z[1]")]),
    "overlap_alpha_in_weight2": (
        lambda s, w, a, d: (_gradients(_set(s, "alpha", s["weights"][2].reshape(-1)[3:5])), s), ValueError,
        [r"alpha|weights\[2\]"]),
    "overlap_u1_is_z2": (lambda s, w, a, d: (_gradients(_set(s, "u", s["z"][2], 1)), s), ValueError,
                         [r"u\[1\]|z\[2\]"]),
    "overlap_z1_views_weight1": (lambda s, w, a, d: (_gradients(_set(s, "z", s["weights"][1].reshape(-1)[:5], 1)), s),
                                 ValueError, [r"z\[1\]|weights\[1\]"]),
    "overlap_out_weight_is_weight0": (lambda s, w, a, d: (_gradients(_set(s, "weights", w[0], 0)), s), ValueError,
                                      [OUTW(0)]),
    "overlap_out_alpha_is_alpha": (lambda s, w, a, d: (_gradients(_set(s, "alpha", a)), s), ValueError,
                                   [r"out\.alpha"]),
    "overlap_out_u0_views_weight0": (lambda s, w, a, d: (_gradients(_set(s, "u", w[0].reshape(-1)[:5], 0)), s),
                                     ValueError, [re.escape("out.u[0]")]),
    "batch_out_for_single": (lambda s, w, a, d: (_gradients(out_spec(WIDTHS, d, batch=2)), s), ValueError, [OUT]),
}


@pytest.mark.parametrize("case", sorted(OUT_SINGLE))
def test_bad_out_value_and_grad(net_setup, case):
    net, weights, alpha, dtype, x, X_, base = net_setup
    make, exc, patterns = OUT_SINGLE[case]
    spec = out_spec(WIDTHS, dtype)
    factory, buffers = make(spec, weights, alpha, dtype)
    expect_error(exc, patterns, lambda: net.value_and_grad(x, 1.0, out=factory()), weights, alpha, x, spec, buffers)
    assert_still_works(net, x, base, dtype)


@pytest.mark.parametrize("case", sorted(OUT_SINGLE))
def test_bad_out_backward(net_setup, case):
    net, weights, alpha, dtype, x, X_, base = net_setup
    make, exc, patterns = OUT_SINGLE[case]
    spec = out_spec(WIDTHS, dtype)
    factory, buffers = make(spec, weights, alpha, dtype)
    net.forward(x)
    expect_error(exc, patterns, lambda: net.backward(1.0, out=factory()), weights, alpha, x, spec, buffers)
    # the recorded forward survives the error
    assert_gradients_close(net.backward(1.0), base, dtype, WIDTHS)


OUT_BATCH = {
    "not_gradients": (lambda s, w, a, d: (lambda: [s["weights"], s["alpha"], s["x"]], s), TypeError, [OUT]),
    "single_out_for_batch": (lambda s, w, a, d: (_gradients(out_spec(WIDTHS, d)), s), ValueError, [OUT]),
    "batch_size_mismatch": (lambda s, w, a, d: (_gradients(out_spec(WIDTHS, d, batch=B + 1)), s), ValueError, [OUT]),
    "shape_x": (lambda s, w, a, d: (_gradients(_set(s, "x", np.full((B, 7), SENTINEL, d))), s), ValueError,
                [r"out\.x", "7"]),
    "dtype_all_other_float": (lambda s, w, a, d: _pair(_conv(s, other_float(d))),
                              TypeError, [OUT]),
    "shape_weight0": (lambda s, w, a, d: (_gradients(_set(s, "weights", np.full((7, 3), SENTINEL, d), 0)), s),
                      ValueError, [OUTW(0), "7"]),
    "readonly_alpha": (lambda s, w, a, d: (_gradients(_set(s, "alpha", _ro(s["alpha"]))), s), ValueError, [ALPHA]),
    "fortran_x": (lambda s, w, a, d: (_gradients(_set(s, "x", np.asfortranarray(s["x"]))), s), ValueError, [X]),
    "overlap_x_views_weight1": (
        lambda s, w, a, d: (_gradients(_set(s, "x", w[1].reshape(-1)[:B * 3].reshape(B, 3))), s), ValueError,
        [r"out\.x"]),
    "overlap_x_views_out_weight1": (
        lambda s, w, a, d: (_gradients(_set(s, "x", s["weights"][1].reshape(-1)[:B * 3].reshape(B, 3))), s),
        ValueError, [r"x|weights\[1\]"]),
}


@pytest.mark.parametrize("case", sorted(OUT_BATCH))
def test_bad_out_batch(net_setup, case):
    net, weights, alpha, dtype, x, X, base = net_setup
    make, exc, patterns = OUT_BATCH[case]
    spec = out_spec(WIDTHS, dtype, batch=B)
    factory, buffers = make(spec, weights, alpha, dtype)
    expect_error(exc, patterns, lambda: net.value_and_grad_batch(X, out=factory()), weights, alpha, X, spec, buffers)
    assert_still_works(net, x, base, dtype)


# ----------------------------------------------------------------------------- call signatures
# Wrong keywords and argument counts, at every entry point constructors included: one short TypeError in
# Python's words that names the argument (not pybind11's overload listing with every weight printed).
def _signature_cases(weights, alpha):
    net = mlpgrad.MLP(weights, alpha, ACTS)
    g = lambda **kw: mlpgrad.Gradients(**out_spec(WIDTHS, weights[0].dtype), **kw)  # noqa: E731
    return {
        "MLP_keyword": (lambda: mlpgrad.MLP(weights, alpha, activations="tanh"),
                        "MLP() got an unexpected keyword argument 'activations'; did you mean 'activation'?"),
        "MLP_missing_alpha": (lambda: mlpgrad.MLP(weights), "MLP() missing required argument 'alpha'"),
        "MLP_too_many": (lambda: mlpgrad.MLP(weights, alpha, "relu", "tanh"),
                         "MLP() takes at most 3 positional arguments (4 given)"),
        "MLP_twice": (lambda: mlpgrad.MLP(weights, alpha, alpha=alpha),
                      "MLP() got multiple values for argument 'alpha'"),
        "Gradients_keyword": (lambda: g(zz=None), "Gradients() got an unexpected keyword argument 'zz'; did you mean 'z'?"),
        "Gradients_missing_alpha": (lambda: mlpgrad.Gradients(weights), "Gradients() missing required argument 'alpha'"),
        "new_gradients_keyword": (lambda: net.new_gradients(bach=2),
                                  "new_gradients() got an unexpected keyword argument 'bach'; did you mean 'batch'?"),
        "new_gradients_too_many": (lambda: net.new_gradients(1, 2),
                                   "new_gradients() takes at most 1 positional arguments (2 given)"),
        "getstate_argument": (lambda: net.__getstate__(1), "MLP.__getstate__() takes at most 0 positional arguments"),
        "setstate_not_a_tuple": (lambda: mlpgrad.MLP.__new__(mlpgrad.MLP).__setstate__([1, (), alpha, ()]),
                                 "MLP.__setstate__() argument state must be a tuple"),
        "value_and_grad_keyword": (lambda: net.value_and_grad(np.ones(3), outt=None),
                                   "value_and_grad() got an unexpected keyword argument 'outt'; did you mean 'out'?"),
    }


@pytest.mark.parametrize("case", sorted(_signature_cases(*make_network(np.random.default_rng(0), WIDTHS))))
def test_call_signature_errors(rng, dtype, case):
    weights, alpha = make_network(rng, WIDTHS, dtype)
    call, start = _signature_cases(weights, alpha)[case]
    msg = expect_error(TypeError, [re.escape(start)], call, weights, alpha)
    assert msg.startswith(start) and "\n" not in msg and len(msg) < 200, msg
