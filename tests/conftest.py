"""Shared helpers for the mlpgrad test suite.

Test modules import the plain functions from here (``from conftest import ...``); the
directory is put on ``sys.path`` below so that this works with every pytest import mode.

Contents:
  * network builders (``make_network``, ``build_net``, ``make_inputs``) and the hypothesis
    strategy ``architectures()`` for random architectures;
  * the oracle wrappers ``oracle`` / ``oracle_batch`` / ``oracle_fd`` around
    ``mlpgrad.reference`` (always fed float64 copies of the core's inputs, so a float32
    core and the oracle compute the same mathematical function), and an independent NumPy
    forward pass ``np_forward`` with closed-form activations;
  * comparison helpers (``tolerance``, ``assert_close``, ``assert_gradients_close``);
  * buffer helpers for the "nothing was written" checks (``out_spec``, ``Snapshot``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def _mlpgrad():
    """The package, imported lazily: other test modules in this directory must collect without the core."""
    import mlpgrad

    return mlpgrad


def _reference():
    from mlpgrad import reference

    return reference


def hyp(max_examples: int = 40) -> settings:
    """Bounded, reproducible hypothesis settings (applied per test, not as a global profile)."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity")
SMOOTH = ("tanh", "sigmoid", "softplus", "identity")
KINKED = ("relu", "leaky_relu")
DTYPES = (np.float32, np.float64)
LEAK = 0.01
SENTINEL = -777.25  # exactly representable in float32 and float64


# ----------------------------------------------------------------------------- builders
def make_network(rng: np.random.Generator, widths: Sequence[int], dtype=np.float64, scale: float = 1.0):
    """Random weights (K_{t+1}, K_t) ~ N(0, scale^2 / K_t) and alpha ~ N(0, 1), C-contiguous."""
    weights = [
        np.ascontiguousarray((rng.standard_normal((widths[t + 1], widths[t])) * (scale / np.sqrt(widths[t])))
                             .astype(dtype))
        for t in range(len(widths) - 1)
    ]
    alpha = np.ascontiguousarray(rng.standard_normal(widths[-1]).astype(dtype))
    return weights, alpha


def make_inputs(rng: np.random.Generator, k0: int, dtype=np.float64, batch: Optional[int] = None):
    shape = (k0,) if batch is None else (batch, k0)
    return np.ascontiguousarray(rng.standard_normal(shape).astype(dtype))


def build_net(rng: np.random.Generator, widths: Sequence[int], activations, dtype=np.float64, scale: float = 1.0):
    """(net, weights, alpha) for the given architecture; ``activations`` may be a str or a sequence."""
    weights, alpha = make_network(rng, widths, dtype, scale)
    net = _mlpgrad().MLP(weights, alpha, activation=activations)
    return net, weights, alpha


def per_layer(activations, depth: int) -> Tuple[str, ...]:
    return (activations,) * depth if isinstance(activations, str) else tuple(activations)


@dataclass(frozen=True)
class Arch:
    widths: Tuple[int, ...]
    activations: Tuple[str, ...]
    dtype: Any
    seed: int
    as_string: bool  # pass the activation as one str (all layers equal) instead of a sequence

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def activation_arg(self):
        if self.as_string:
            return self.activations[0] if self.activations else "relu"
        return list(self.activations)

    def build(self, scale: float = 1.0):
        rng = np.random.default_rng(self.seed)
        net, weights, alpha = build_net(rng, self.widths, self.activation_arg, self.dtype, scale)
        return net, weights, alpha, rng


@st.composite
def architectures(draw, max_depth=5, max_width=8, activations=ACTIVATIONS, dtypes=DTYPES, min_depth=0):
    """Random architecture: widths 1..max_width, depth min_depth..max_depth, activation per layer, dtype."""
    depth = draw(st.integers(min_depth, max_depth))
    widths = tuple(draw(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1)))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        act = draw(st.sampled_from(activations))
        acts, as_string = (act,) * depth, True
    else:
        acts = tuple(draw(st.lists(st.sampled_from(activations), min_size=depth, max_size=depth)))
        as_string = False
    return Arch(widths, acts, dtype, seed, as_string)


# ----------------------------------------------------------------------------- oracles
def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


@dataclass
class Grads:
    """Reference gradients as float64 NumPy arrays (z/u may be None)."""
    weights: List[np.ndarray]
    alpha: np.ndarray
    x: np.ndarray
    z: Optional[List[np.ndarray]]
    u: Optional[List[np.ndarray]]
    batch: Optional[int] = None


def _to_grads(g, weights, alpha, x_shape) -> Grads:
    return Grads(
        weights=[_f64(gw).reshape(w.shape) for gw, w in zip(g.weights, weights)],
        alpha=_f64(g.alpha).reshape(np.shape(alpha)),
        x=_f64(g.x).reshape(x_shape),
        z=None if g.z is None else [_f64(v) for v in g.z],
        u=None if g.u is None else [_f64(v) for v in g.u],
    )


def oracle(weights, alpha, x, activations, dy=1.0) -> Tuple[float, Grads]:
    """reference.value_and_grad on float64 copies of the (possibly float32) core inputs."""
    w64 = [_f64(w) for w in weights]
    a64, x64 = _f64(alpha), _f64(x)
    yhat, g = _reference().value_and_grad(w64, a64, x64, activation=_act_arg(activations), dy=float(dy))
    return float(yhat), _to_grads(g, w64, a64, x64.shape)


def oracle_batch(weights, alpha, X, activations, dy=None) -> Tuple[np.ndarray, Grads]:
    w64 = [_f64(w) for w in weights]
    a64, X64 = _f64(alpha), _f64(X)
    dy64 = None if dy is None else _f64(dy)
    yhat, g = _reference().value_and_grad_batch(w64, a64, X64, activation=_act_arg(activations), dy=dy64)
    return _f64(yhat).reshape(X64.shape[0]), _to_grads(g, w64, a64, X64.shape)


def oracle_fd(weights, alpha, x, activations, dy=1.0, eps=1e-6) -> Grads:
    w64 = [_f64(w) for w in weights]
    a64, x64 = _f64(alpha), _f64(x)
    g = _reference().finite_difference(w64, a64, x64, activation=_act_arg(activations), dy=float(dy), eps=eps)
    return _to_grads(g, w64, a64, x64.shape)


def _act_arg(activations):
    return activations if isinstance(activations, str) else list(activations)


_SIGMA = {
    "relu": lambda a: np.maximum(a, 0.0),
    "leaky_relu": lambda a: np.where(a >= 0.0, a, LEAK * a),
    "tanh": np.tanh,
    "sigmoid": lambda a: np.exp(-np.logaddexp(0.0, -a)),
    "softplus": lambda a: np.logaddexp(0.0, a),
    "identity": lambda a: a,
}
_DSIGMA = {
    "relu": lambda a: np.where(a >= 0.0, 1.0, 0.0),
    "leaky_relu": lambda a: np.where(a >= 0.0, 1.0, LEAK),
    "tanh": lambda a: 1.0 - np.tanh(a) ** 2,
    "sigmoid": lambda a: np.exp(-np.logaddexp(0.0, -a)) * np.exp(-np.logaddexp(0.0, a)),
    "softplus": lambda a: np.exp(-np.logaddexp(0.0, -a)),
    "identity": lambda a: np.ones_like(a),
}


def sigma(name: str, a):
    """Closed-form activation in float64 (independent of mlpgrad.reference)."""
    return _SIGMA[name](_f64(a))


def dsigma(name: str, a):
    return _DSIGMA[name](_f64(a))


def np_forward(weights, alpha, x, activations):
    """Independent float64 NumPy forward pass: (yhat, u list, z list)."""
    acts = per_layer(activations, len(weights))
    z = [_f64(x)]
    u = []
    for w, act in zip(weights, acts):
        u.append(_f64(w) @ z[-1])
        z.append(sigma(act, u[-1]))
    return float(_f64(alpha) @ z[-1]), u, z


def min_abs_preactivation(weights, alpha, x, activations, kinds=KINKED) -> float:
    """Smallest |u| over the layers whose activation has a kink (inf if there are none)."""
    acts = per_layer(activations, len(weights))
    _, u, _ = np_forward(weights, alpha, x, acts)
    vals = [np.min(np.abs(ut)) for ut, act in zip(u, acts) if act in kinds]
    return float(min(vals)) if vals else float("inf")


# ----------------------------------------------------------------------------- comparisons
def tolerance(dtype, widths: Sequence[int]) -> float:
    """Relative tolerance for core-vs-float64 comparisons, with a small factor for depth and width."""
    base = 1e-12 if np.dtype(dtype) == np.float64 else 1e-5
    depth = len(widths) - 1
    return base * (1 + depth) * max(1.0, float(np.sqrt(max(widths))))


def _maxabs(arrays) -> float:
    m = 0.0
    for a in arrays:
        a = _f64(a)
        if a.size:
            m = max(m, float(np.max(np.abs(a))))
    return m


def assert_close(got, ref, tol: float, scale: float, what: str = ""):
    """|got - ref| <= tol * (|ref| + scale), elementwise; shapes must match exactly."""
    got_a = np.asarray(got)
    ref_a = _f64(ref)
    assert got_a.shape == ref_a.shape, f"{what}: shape {got_a.shape} != expected {ref_a.shape}"
    assert np.all(np.isfinite(got_a)), f"{what}: non-finite values {got_a}"
    np.testing.assert_allclose(got_a.astype(np.float64), ref_a, rtol=tol, atol=tol * scale, err_msg=what)


def assert_value_close(got, ref: float, dtype, widths, scale: float = 1.0, what: str = "yhat"):
    tol = tolerance(dtype, widths)
    assert_close(got, ref, tol, 1.0 + abs(ref) + scale, what)


def assert_gradients_close(got, ref: Grads, dtype, widths, *, check_zu: Optional[bool] = None,
                           batch: Optional[int] = None, what: str = ""):
    """Compare an ``mlpgrad.Gradients`` with reference ``Grads``.

    Checks the type, list lengths, shapes and dtype of every buffer and that
    ``got.batch == batch``. ``check_zu``: True -> got.z/u must be present and match;
    False -> they must be None; None -> True for single-example (batch is None), else False.
    The absolute floor is tol * (1 + largest reference magnitude over all buffers).
    """
    depth = len(widths) - 1
    dtype = np.dtype(dtype)
    if check_zu is None:
        check_zu = batch is None
    # a Grads is a copy made by grads_of() (e.g. taken inside a thread) of an mlpgrad.Gradients
    assert isinstance(got, (_mlpgrad().Gradients, Grads)), f"{what}: got {type(got)!r}, expected mlpgrad.Gradients"
    assert got.batch == batch, f"{what}: batch {got.batch!r} != {batch!r}"
    tol = tolerance(dtype, widths)
    arrays = list(ref.weights) + [ref.alpha, ref.x]
    if check_zu:
        arrays += list(ref.z) + list(ref.u)
    scale = 1.0 + _maxabs(arrays)

    def one(name, g, r):
        assert isinstance(g, np.ndarray), f"{what}{name}: {type(g)!r} is not an ndarray"
        assert g.dtype == dtype, f"{what}{name}: dtype {g.dtype} != {dtype}"
        assert_close(g, r, tol, scale, f"{what}{name}")

    assert len(got.weights) == depth, f"{what}: {len(got.weights)} weight gradients for depth {depth}"
    for t, (g, r) in enumerate(zip(got.weights, ref.weights)):
        one(f"weights[{t}]", g, r)
    one("alpha", got.alpha, ref.alpha)
    one("x", got.x, ref.x)
    if check_zu:
        assert got.z is not None and got.u is not None, f"{what}: z/u missing"
        assert len(got.z) == depth + 1, f"{what}: len(z) {len(got.z)} != {depth + 1}"
        assert len(got.u) == depth, f"{what}: len(u) {len(got.u)} != {depth}"
        for t, (g, r) in enumerate(zip(got.z, ref.z)):
            one(f"z[{t}]", g, r)
        for t, (g, r) in enumerate(zip(got.u, ref.u)):
            one(f"u[{t}]", g, r)
    else:
        assert got.z is None and got.u is None, f"{what}: z/u should be None, got {got.z!r} / {got.u!r}"


def grads_of(g) -> Grads:
    """Copy of an mlpgrad.Gradients (same dtype), e.g. to keep a result or to compare two core results."""
    def cp(a):
        return np.array(a, copy=True)

    return Grads(
        weights=[cp(w) for w in g.weights],
        alpha=cp(g.alpha),
        x=cp(g.x),
        z=None if g.z is None else [cp(v) for v in g.z],
        u=None if g.u is None else [cp(v) for v in g.u],
        batch=g.batch,
    )


def kink_safe(weights, alpha, x, activations, dtype) -> bool:
    """True when no ReLU-type pre-activation is so close to 0 that float32/float64 could disagree on its side."""
    threshold = 1e-3 if np.dtype(dtype) == np.float32 else 1e-9
    X = np.atleast_2d(_f64(x))
    return all(min_abs_preactivation(weights, alpha, row, activations) > threshold for row in X)


# ----------------------------------------------------------------------------- buffers
def out_spec(widths: Sequence[int], dtype, batch: Optional[int] = None, with_zu: Optional[bool] = None,
             fill: float = SENTINEL) -> dict:
    """Keyword arguments for mlpgrad.Gradients: fresh C-contiguous arrays filled with ``fill``."""
    if with_zu is None:
        with_zu = batch is None
    depth = len(widths) - 1

    def arr(shape):
        return np.full(shape, fill, dtype=dtype)

    spec = {
        "weights": [arr((widths[t + 1], widths[t])) for t in range(depth)],
        "alpha": arr((widths[-1],)),
        "x": arr((widths[0],) if batch is None else (batch, widths[0])),
    }
    if with_zu:
        spec["z"] = [arr((k,)) for k in widths]
        spec["u"] = [arr((k,)) for k in widths[1:]]
    return spec


def iter_arrays(obj):
    """Every ndarray inside nested lists/tuples/dicts/Gradients."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from iter_arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from iter_arrays(v)
    elif _is_gradients(obj):
        for name in ("weights", "alpha", "x", "z", "u", "biases", "output_bias"):
            yield from iter_arrays(getattr(obj, name))


def _is_gradients(obj) -> bool:
    mod = sys.modules.get("mlpgrad")
    return mod is not None and isinstance(obj, mod.Gradients)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class Snapshot:
    """Byte-for-byte record of arrays (and of the whole buffers they view into)."""

    def __init__(self, *objs):
        self.items = []
        for a in iter_arrays(objs):
            for b in (a, _root(a)):
                self.items.append((b, bytes(b.tobytes(order="A")), b.shape, b.dtype))

    def assert_unchanged(self, what: str = ""):
        for i, (a, data, shape, dtype) in enumerate(self.items):
            assert a.shape == shape and a.dtype == dtype, f"{what}: array #{i} changed shape/dtype"
            assert a.tobytes(order="A") == data, f"{what}: array #{i} of shape {shape} was modified"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def under_asan() -> bool:
    """Whether this process runs with AddressSanitizer preloaded (.ci/reliability.sh)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return False
    return "libasan" in maps or "libclang_rt.asan" in maps


# ----------------------------------------------------------------------------- child interpreters
CHILD_PRELUDE = """
import copy, copyreg, gc, pickle, sys
import numpy as np
import mlpgrad

def outcome(f):
    \"\"\"'returned', or '<exception type>: <message>'.\"\"\"
    try:
        f()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "returned"
"""


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`code` (dedented) in a fresh interpreter, the same environment (a sanitizer runtime preloaded stays
    preloaded); the caller judges its exit status and output (child_report formats them for a message)."""
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)], cwd=_HERE,
                          capture_output=True, text=True, timeout=timeout)


def run_in_child(code: str, timeout: float = 300) -> List[str]:
    """Runs `code` (dedented, after CHILD_PRELUDE) in a fresh interpreter and returns the lines it printed.
    A crash or any exit status but 0 fails the calling test, with the child's output: code that could
    crash the interpreter runs here, so that a crash is that test's failure, not the end of the run."""
    proc = run_child(CHILD_PRELUDE + textwrap.dedent(code), timeout=timeout)
    assert proc.returncode == 0, f"child exited with status {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.splitlines()


def child_report(proc: subprocess.CompletedProcess) -> str:
    tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-40:])
    return f"exit status {proc.returncode}:\n{tail}"
