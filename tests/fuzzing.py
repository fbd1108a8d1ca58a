"""What the fuzz tests share (test_fuzz.py, test_fuzz_objects.py, test_fuzz_general_calls.py; ``run_forked``
also serves test_uninitialized.py, and ``fuzz`` test_hardening_runtime.py and test_interpreter_exit.py):
running targets in a child interpreter or a forked process, so that a crash is a reported failure;
``attempt``, which holds every call to the contract (a result exactly as with clean arguments, or TypeError /
ValueError / MemoryError with a message and every caller buffer unchanged); the small models of the contract
that say which arguments are valid; and the generated variants of arguments (dtypes, strides, alignment,
read-only arrays, odd objects).

MLPGRAD_FUZZ_SCALE multiplies the example counts; MLPGRAD_FUZZ_STATS=1 prints how many calls of each kind
succeeded or raised what; MLPGRAD_FUZZ_LAST_CALL names the file where each call is recorded before it runs.
"""
from __future__ import annotations

import atexit
import collections
import faulthandler
import os
import resource
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import mlpgrad
from conftest import ACTIVATIONS, Snapshot

HERE = os.path.dirname(os.path.abspath(__file__))


# ============================================================================ crashes become failures


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_fuzz_child(test_file: str, tmp_path):
    """Runs the fuzz targets of `test_file` under pytest in a child interpreter (MLPGRAD_FUZZ_CHILD=1):
    a crash fails the calling test with the last call attempted, instead of killing the run."""
    last_call = tmp_path / "last_call.txt"
    env = dict(os.environ, MLPGRAD_FUZZ_CHILD="1", MLPGRAD_FUZZ_LAST_CALL=str(last_call))
    cmd = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=", os.path.abspath(test_file)]
    proc = subprocess.run(cmd, env=env, cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=900)
    tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-60:])
    last = last_call.read_text() if last_call.exists() else "(none recorded)"
    if proc.returncode < 0 or proc.returncode > 1:
        how = signal_name(proc.returncode) if proc.returncode < 0 else f"exit status {proc.returncode}"
        pytest.fail(f"the fuzz child died ({how}); last call attempted:\n  {last}\n\n{tail}", pytrace=False)
    assert proc.returncode == 0, f"fuzz targets failed:\n{tail}"
    assert " passed" in proc.stdout, f"the fuzz child ran no tests:\n{tail}"


def test_fuzz_targets_in_subprocess(tmp_path):
    run_fuzz_child(__file__, tmp_path)


def run_forked(fn) -> str:
    """fn() in a forked child: 'returned', 'raised <Type>: <msg>', or 'crashed (<signal>)'."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        os.close(r)
        faulthandler.disable()  # a crash is reported by the parent, without a traceback dump
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            fn()
            msg = "returned"
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            msg = f"raised {type(e).__name__}: {e}"
        os.write(w, msg.encode("utf-8", "replace")[:4000])
        os.close(w)
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"crashed ({signal_name(-os.WTERMSIG(status))})"
    return b"".join(chunks).decode("utf-8", "replace") or f"exited with status {os.WEXITSTATUS(status)}"


# ============================================================================ the fuzz targets' tools

ALLOWED = (TypeError, ValueError, MemoryError)  # and RuntimeError where README says (attempt's runtime_error)
SCALE = float(os.environ.get("MLPGRAD_FUZZ_SCALE", "1"))
LAST_CALL = os.environ.get("MLPGRAD_FUZZ_LAST_CALL")
ABSENT = object()  # an argument that is not passed at all


def fuzz(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------- odd objects


class BrokenArray:
    def __array__(self, *args, **kwargs):
        raise ZeroDivisionError("broken __array__")

    def __repr__(self):
        return "BrokenArray()"


class ListFromArray:
    """__array__ returns a list, which NumPy refuses."""

    def __array__(self, *args, **kwargs):
        return [1.0, 2.0]

    def __repr__(self):
        return "ListFromArray()"


class ArrayLike:
    """A well-behaved array-like (not an ndarray)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)

    def __repr__(self):
        return f"ArrayLike({describe(self.a)})"


class BrokenSequence:
    def __len__(self):
        raise ZeroDivisionError("broken __len__")

    def __getitem__(self, i):
        raise ZeroDivisionError("broken __getitem__")

    def __repr__(self):
        return "BrokenSequence()"


class LyingList(list):
    """A list subclass whose __len__ and __getitem__ lie (the binding must read the real items)."""

    def __len__(self):
        return 99

    def __getitem__(self, i):
        raise IndexError("lying __getitem__")


class BrokenFloat:
    def __float__(self):
        raise ZeroDivisionError("broken __float__")

    def __repr__(self):
        return "BrokenFloat()"


def describe(obj, depth: int = 0) -> str:
    if isinstance(obj, np.ndarray):
        f = obj.flags
        kind = "" if type(obj) is np.ndarray else type(obj).__name__ + " "
        return (f"{kind}ndarray(shape={obj.shape}, dtype={obj.dtype}, strides={obj.strides}, "
                f"C={f.c_contiguous}, aligned={f.aligned}, writeable={f.writeable})")
    if isinstance(obj, (list, tuple)) and depth < 2:
        its = items(obj)
        inner = ", ".join(describe(o, depth + 1) for o in its[:6]) + (", ..." if len(its) > 6 else "")
        return f"{type(obj).__name__}[{inner}]"
    if obj is ABSENT:
        return "<absent>"
    r = repr(obj)
    return r if len(r) <= 100 else r[:97] + "..."

STATS = collections.Counter()
if os.environ.get("MLPGRAD_FUZZ_STATS"):  # how many calls of each kind succeeded / raised what
    atexit.register(lambda: sys.stderr.write("".join(f"{n:6d}  {k}\n" for k, n in sorted(STATS.items()))))


def note(desc: str):
    if LAST_CALL:
        with open(LAST_CALL, "w") as f:
            f.write(desc)


def attempt(desc, fn, *, valid, inputs=(), outputs=(), runtime_error=False):
    """fn() -> (True, result) or (False, exception). `inputs` must be unchanged in any case, `outputs`
    after an error; `valid` True/False says whether the call must succeed/fail (None: either).
    `runtime_error`: the call has no forward() to refer to, where README documents RuntimeError."""
    snap_in = Snapshot(*inputs)
    snap_out = Snapshot(*outputs)
    note(desc)
    allowed = ALLOWED + ((RuntimeError,) if runtime_error else ())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn()
    except allowed as e:
        STATS[f"{desc.split('(')[0]:28s} {type(e).__name__}"] += 1
        assert str(e).strip(), f"{desc}: {type(e).__name__} without a message"
        snap_in.assert_unchanged(f"{desc} -> {type(e).__name__}({e})")
        snap_out.assert_unchanged(f"{desc} -> {type(e).__name__}({e})")
        assert valid is not True, f"{desc}: a valid call raised {type(e).__name__}: {e}"
        return False, e
    except BaseException as e:  # noqa: BLE001
        raise AssertionError(f"{desc}: raised {type(e).__name__}: {e} (expected a result or "
                             f"{'/'.join(t.__name__ for t in allowed)})") from e
    STATS[f"{desc.split('(')[0]:28s} ok"] += 1
    snap_in.assert_unchanged(f"{desc} (succeeded) wrote into an input")
    assert valid is not False, f"{desc}: an invalid call succeeded and returned {describe(result)}"
    return True, result


def same_bits(got, expected, what):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, \
        f"{what}: {got.dtype}{got.shape} != {expected.dtype}{expected.shape}"
    assert got.tobytes() == expected.tobytes(), f"{what}: {got} != {expected} (bit for bit)"


def same_gradients(got, expected, what):
    assert isinstance(got, mlpgrad.Gradients), f"{what}: got {type(got)}"
    if got.x is None:  # parameter-only gradients: no batch size, no ∂x; the parameter parts compared below
        assert got.batch is None and got.z is None and got.u is None, what
    else:
        assert got.batch == expected.batch, f"{what}: batch {got.batch} != {expected.batch}"
        same_bits(got.x, expected.x, f"{what}.x")
    assert len(got.weights) == len(expected.weights)
    for t, (a, b) in enumerate(zip(got.weights, expected.weights)):
        same_bits(a, b, f"{what}.weights[{t}]")
    same_bits(got.alpha, expected.alpha, f"{what}.alpha")
    assert (got.biases is None) == (expected.biases is None), what
    for t, (a, b) in enumerate(zip(got.biases or [], expected.biases or [])):
        same_bits(a, b, f"{what}.biases[{t}]")
    assert (got.output_bias is None) == (expected.output_bias is None), what
    if got.output_bias is not None:
        same_bits(got.output_bias, expected.output_bias, f"{what}.output_bias")
    if got.z is not None:  # compared when the caller asked for them (expected always has them)
        for t, (a, b) in enumerate(zip(got.z, expected.z)):
            same_bits(a, b, f"{what}.z[{t}]")
        for t, (a, b) in enumerate(zip(got.u, expected.u)):
            same_bits(a, b, f"{what}.u[{t}]")


# ------------------------------------------------------------------------- contract models
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def real_array(obj):
    """np.asarray(obj) when it holds real numbers (what the binding converts x, X, dy to), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = np.asarray(obj)
    except Exception:  # noqa: BLE001
        return None
    return a if a.dtype.kind in "biuf" else None


def converted(obj, dtype):
    """A C-contiguous copy of `obj` in `dtype`: the clean argument an accepted array-like stands for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(real_array(obj), dtype=dtype, order="C", copy=True)


def scalar_model(dy):
    """The float the binding must read a scalar dy as, or None if it must refuse it."""
    if dy is ABSENT:
        return 1.0
    if isinstance(dy, (np.ndarray, list, tuple)):
        a = real_array(dy)
        return float(a) if a is not None and a.ndim == 0 else None
    if isinstance(dy, (complex, np.complexfloating)):
        return None
    if not any(hasattr(type(dy), m) for m in ("__float__", "__index__", "__int__")):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return float(dy)
    except Exception:  # noqa: BLE001
        return None


def is_float_array(a, writeable=False):
    return (isinstance(a, np.ndarray) and a.dtype in FLOATS and a.dtype.isnative and a.flags.c_contiguous
            and a.flags.aligned and (a.flags.writeable or not writeable))


def items(seq):
    """The items a list or tuple (or a subclass, whatever its __len__/__getitem__ say) really holds."""
    return list(list.__iter__(seq)) if isinstance(seq, list) else list(tuple.__iter__(seq))


def output_shapes_model(alpha, widths, biases, output_bias) -> bool:
    """alpha (K_T,) or (K_T, m >= 1); one bias (K_{t+1},) per layer or None; β shaped like ŷ or None."""
    if alpha.ndim not in (1, 2) or alpha.shape[0] != widths[-1] or (alpha.ndim == 2 and alpha.shape[1] < 1):
        return False
    if biases is not None and (len(biases) != len(widths) - 1 or
                               any(b.shape != (k,) for b, k in zip(biases, widths[1:]))):
        return False
    return output_bias is None or output_bias.shape == alpha.shape[1:]


def mlp_model(ws, alpha, activation, biases=None, output_bias=None) -> bool:
    if not isinstance(ws, (list, tuple)) or not (biases is None or isinstance(biases, (list, tuple))):
        return False
    ws = items(ws)
    biases = None if biases is None else items(biases)
    arrays = list(ws) + [alpha] + (biases or []) + ([] if output_bias is None else [output_bias])
    if not all(is_float_array(a) for a in arrays) or len({a.dtype for a in arrays}) != 1:
        return False
    if any(w.ndim != 2 for w in ws) or alpha.ndim not in (1, 2):
        return False
    widths = [ws[0].shape[1] if ws else alpha.shape[0]]
    for w in ws:
        if w.shape[1] != widths[-1]:
            return False
        widths.append(w.shape[0])
    if min(widths) < 1 or not output_shapes_model(alpha, widths, biases, output_bias):
        return False
    if isinstance(activation, str):
        return activation in ACTIVATIONS
    if isinstance(activation, (bytes, bytearray)) or not isinstance(activation, (list, tuple)):
        return False  # (the sequences generated here: lists, tuples, bytes, BrokenSequence)
    return len(activation) == len(ws) and all(isinstance(a, str) and a in ACTIVATIONS for a in activation)


def gradients_model(ws, alpha, x, z, u, biases=None, output_bias=None) -> bool:
    if not isinstance(ws, (list, tuple)) or (z is None) != (u is None):
        return False
    if z is not None and not (isinstance(z, (list, tuple)) and isinstance(u, (list, tuple))):
        return False
    if biases is not None and not isinstance(biases, (list, tuple)):
        return False
    ws = items(ws)
    z, u = (None, None) if z is None else (items(z), items(u))
    biases = None if biases is None else items(biases)
    arrays = list(ws) + [alpha, x] + (list(z) + list(u) if z is not None else []) + (biases or []) + \
        ([] if output_bias is None else [output_bias])
    if not all(is_float_array(a, writeable=True) for a in arrays) or len({a.dtype for a in arrays}) != 1:
        return False
    if x.ndim not in (1, 2) or (x.ndim == 2 and z is not None):
        return False
    widths = [x.shape[-1]]
    for w in ws:
        if w.ndim != 2 or w.shape[1] != widths[-1]:
            return False
        widths.append(w.shape[0])
    if min(widths) < 1 or not output_shapes_model(alpha, widths, biases, output_bias):
        return False
    if z is not None:
        if len(z) != len(widths) or len(u) != len(widths) - 1:
            return False
        if any(a.shape != (k,) for a, k in zip(z, widths)) or any(a.shape != (k,) for a, k in zip(u, widths[1:])):
            return False
    return not any(np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


# ------------------------------------------------------------------------- argument variants
OTHER_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128, np.clongdouble,
                object, "U4", "S4", "V8", "M8[s]", "m8[ms]", ">f8", ">f4", [("a", "<f8")]]


def with_dtype(a, dt):
    dt = np.dtype(dt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return a.astype(dt)
    except Exception:  # noqa: BLE001
        return np.zeros(a.shape, dt)


def misaligned(a):
    buf = np.zeros(a.nbytes + a.itemsize + 1, np.uint8)[1:1 + a.nbytes]
    out = buf.view(a.dtype).reshape(a.shape) if a.size else np.empty(a.shape, a.dtype)
    out[...] = a
    return out


def read_only(a):
    c = a.copy()
    c.flags.writeable = False
    return c


def with_extremes(a):
    c = a.copy()
    if c.size:
        flat = c.reshape(-1)
        flat[0] = np.nan
        flat[-1] = np.inf if flat.size > 1 else np.nan
        if flat.size > 2:
            flat[1] = -np.inf
    return c

ARRAY_MUTATIONS = {
    # values identical, representation different
    "same": lambda d, a: a,
    "copy": lambda d, a: a.copy(),
    "other_float": lambda d, a: a.astype(np.float32 if a.dtype == np.float64 else np.float64),
    "byteswapped": lambda d, a: a.astype(a.dtype.newbyteorder()),
    "strided": lambda d, a: np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a,
    "reversed": lambda d, a: a[::-1] if a.ndim else a,
    "fortran": lambda d, a: np.asfortranarray(a),
    "transposed": lambda d, a: a.T,
    "read_only": lambda d, a: read_only(a),
    "misaligned": lambda d, a: misaligned(a),
    "matrix": lambda d, a: np.asmatrix(a) if a.ndim <= 2 else a,
    "masked": lambda d, a: np.ma.masked_array(a, mask=np.zeros(a.shape, bool)),
    "array_like": lambda d, a: ArrayLike(a),
    "list": lambda d, a: a.tolist(),
    "tuple": lambda d, a: tuple(a.tolist()) if a.ndim == 1 else a.tolist(),
    "extremes": lambda d, a: with_extremes(a),
    "huge_values": lambda d, a: a * a.dtype.type(1e30 if a.dtype == np.float32 else 1e300),
    # dtypes: one entry per dtype below
    # shapes
    "zero_size": lambda d, a: np.zeros((0,) + a.shape[1:], a.dtype),
    "zero_size_huge_dim": lambda d, a: np.zeros((2**40, 0) if d.draw(st.booleans()) else (0, 2**40), a.dtype),
    "0d": lambda d, a: np.array(a.reshape(-1)[0] if a.size else 1.5, a.dtype),
    "extra_dim": lambda d, a: a[np.newaxis],
    "flat": lambda d, a: a.reshape(-1),
    "grow": lambda d, a: np.resize(a, tuple(k + 1 for k in a.shape)),
    "shrink": lambda d, a: a[..., :-1] if a.ndim else a,
    # not arrays
    "ragged": lambda d, a: [[1.0], [1.0, 2.0]],
    "strings": lambda d, a: ["1.0"] * max(1, a.shape[-1] if a.ndim else 1),
    "none": lambda d, a: None,
    "object": lambda d, a: object(),
    "text": lambda d, a: "1.0",
    "float": lambda d, a: 1.5,
    "int": lambda d, a: 3,
    "huge_int": lambda d, a: 2**70,
    "bool": lambda d, a: True,
    "bytes": lambda d, a: b"\0" * 16,
    "dict": lambda d, a: {"x": a},
    "broken_array": lambda d, a: BrokenArray(),
    "list_from_array": lambda d, a: ListFromArray(),
    "broken_sequence": lambda d, a: BrokenSequence(),
}
ARRAY_MUTATIONS.update({f"dtype {np.dtype(dt)}": (lambda dt: lambda d, a: with_dtype(a, dt))(dt)
                        for dt in OTHER_DTYPES})
MUTATION_NAMES = sorted(ARRAY_MUTATIONS)


def mutate(data, a, label):
    """A variant of array `a`: mostly valid ones (so that later calls get past the first check)."""
    name = data.draw(st.one_of(st.just("same"), st.sampled_from(MUTATION_NAMES)), label=f"{label} variant")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.matrix's PendingDeprecationWarning, casts
        return ARRAY_MUTATIONS[name](data, a)

SCALARS = [1.0, -0.5, 0.0, -0.0, 2, True, np.float32(0.25), np.float64(3.0), np.int64(-2), np.uint64(2**64 - 1),
           np.float16(1.5), np.longdouble(2.5), np.bool_(False), np.array(0.5), np.array(2), np.array([1.0]),
           [1.0], (1.0,), 1e308, 1e39, float("nan"), float("inf"), -float("inf"), 2**2000, 1 + 2j,
           np.complex64(1), np.complex128(1 + 1j), np.array(1 + 0j), np.datetime64(1, "s"), np.timedelta64(1, "s"),
           "1.0", b"1", None, object(), BrokenFloat(), BrokenArray(), np.array("1"), np.array(None), []]


def optional_biases(data, rng, widths, dtype, output_shape, prefix=""):
    """(biases, output_bias) keywords: ABSENT (not passed), None, or variants of arrays of the right shapes."""
    how = data.draw(st.sampled_from(["absent", "absent", "none", "arrays", "arrays", "tuple", "one_short",
                                     "not_a_list"]), label=f"{prefix}biases")
    clean = [rng.standard_normal(k).astype(dtype) for k in widths[1:]]
    if how == "arrays":
        bs = [mutate(data, b, f"{prefix}biases[{t}]") for t, b in enumerate(clean)]
    else:
        bs = {"absent": ABSENT, "none": None, "tuple": tuple(clean), "one_short": clean[:-1] if clean else [clean],
              "not_a_list": np.zeros(3, dtype)}[how]
    how = data.draw(st.sampled_from(["absent", "absent", "none", "array"]), label=f"{prefix}output_bias")
    ob = {"absent": ABSENT, "none": None}.get(how)
    if how == "array":
        ob = mutate(data, rng.standard_normal(output_shape).astype(dtype), f"{prefix}output_bias")
    return bs, ob


def kwargs_of(**kw):
    return {k: v for k, v in kw.items() if v is not ABSENT}
