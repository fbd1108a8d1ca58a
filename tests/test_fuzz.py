"""Fuzzing the Python boundary: every public constructor, method and property of mlpgrad, called with
generated arguments (hypothesis): random shapes including zero and huge (zero-size) dimensions, every NumPy
dtype, non-contiguous, negative-stride, Fortran-order, misaligned and read-only arrays, 0-d arrays, lists,
None, objects with a broken ``__array__``, overlapping and aliasing ``out`` buffers, mixed dtypes.

Every call must either
  * succeed when (and only when) a small model of the contract (``*_model`` below) says the arguments are
    valid, and then return exactly what a call with clean arguments (C-contiguous arrays of the network's
    dtype, Python floats) returns -- bit for bit; or
  * raise TypeError / ValueError / MemoryError with a message, leaving every caller buffer (weights, alpha,
    inputs and every ``out`` array) byte for byte unchanged. RuntimeError only where README documents it:
    ``backward()``, ``net.z`` or ``net.u`` with no ``forward()`` in this thread.
Inputs and weights are never written, not even by a successful call.

The fuzz targets run in a child interpreter: ``test_fuzz_targets_in_subprocess`` re-runs this file under
pytest with MLPGRAD_FUZZ_CHILD=1, so that a segfault or an abort is reported as a test failure, with the
last call attempted (MLPGRAD_FUZZ_LAST_CALL) and the faulthandler traceback, instead of killing the run.
MLPGRAD_FUZZ_SCALE multiplies the example counts (.ci/reliability.sh runs more).

Beyond arguments: classes deriving from MLP and Gradients in any combination (also hiding mlpgrad's
``__init_subclass__``), user callbacks (``__len__``, ``__getitem__``, ``__array__``, ``__float__``, ``__index__``)
that re-enter the very object being built or called (``__init__``, ``__setstate__``, calls, pickling), every
pickle protocol, and activation names and keyword names that are not str or not valid Unicode.
"""
from __future__ import annotations

import atexit
import collections
import faulthandler
import os
import pickle
import resource
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

CHILD = os.environ.get("MLPGRAD_FUZZ_CHILD") == "1"
HERE = os.path.dirname(os.path.abspath(__file__))

if not CHILD:

    def _signal_name(returncode: int) -> str:
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
            how = _signal_name(proc.returncode) if proc.returncode < 0 else f"exit status {proc.returncode}"
            pytest.fail(f"the fuzz child died ({how}); last call attempted:\n  {last}\n\n{tail}", pytrace=False)
        assert proc.returncode == 0, f"fuzz targets failed:\n{tail}"
        assert " passed" in proc.stdout, f"the fuzz child ran no tests:\n{tail}"

    def test_fuzz_targets_in_subprocess(tmp_path):
        run_fuzz_child(__file__, tmp_path)

    # ------------------------------------------------------------------------- uninitialized instances
    # Cls.__new__(Cls) makes an instance whose C++ object was never built. Using one must raise, not crash.
    # Each case runs in a forked child, so a crash is a failure of that case only.

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
            return f"crashed ({_signal_name(-os.WTERMSIG(status))})"
        return b"".join(chunks).decode("utf-8", "replace") or f"exited with status {os.WEXITSTATUS(status)}"

    @pytest.mark.parametrize("case", UNINIT_CASES)
    def test_uninitialized_instance_raises(case):
        outcome = run_forked(UNINIT_CASES[case])
        assert outcome.startswith("raised TypeError"), \
            f"{case} on an instance made by __new__ without __init__: {outcome}"

else:
    # =============================================================================== the fuzz targets
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import mlpgrad
    from conftest import ACTIVATIONS, Snapshot, architectures, make_inputs, make_network, oracle, out_spec
    from network_cases import oracle as oracle_with_biases

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

    # ------------------------------------------------------------------------- MLP(...)
    ACTIVATION_ARGS = ["relu", "identity", "tanh", "bogus", "", b"relu", None, 3, ["relu"], ("tanh", "sigmoid"),
                       ["relu", 3], ["softplus"] * 3, ["leaky_relu"] * 2, [], BrokenSequence()]

    @fuzz(90)
    @given(arch=architectures(max_depth=3, max_width=4), data=st.data())
    def test_fuzz_mlp_constructor(arch, data):
        rng = np.random.default_rng(arch.seed)
        weights, alpha = make_network(rng, arch.widths, arch.dtype)
        ws = [mutate(data, w, f"weights[{t}]") for t, w in enumerate(weights)]
        container = data.draw(st.sampled_from(["list", "tuple", "list", "generator", "ndarray", "none", "dict",
                                               "lying_list"]),
                              label="weights container")
        ws = {"list": ws, "tuple": tuple(ws), "generator": (w for w in ws), "none": None, "dict": dict(enumerate(ws)),
              "ndarray": np.zeros((len(ws), 2, 2), arch.dtype), "lying_list": LyingList(ws)}[container]
        if data.draw(st.booleans(), label="vector output"):  # alpha (K_T, m), each variant of it
            alpha = rng.standard_normal((arch.widths[-1], data.draw(st.integers(1, 3), label="m"))).astype(arch.dtype)
        al = mutate(data, alpha, "alpha")
        act = data.draw(st.one_of(st.just(arch.activation_arg), st.sampled_from(ACTIVATION_ARGS)), label="activation")
        bs, ob = optional_biases(data, rng, arch.widths, arch.dtype, alpha.shape[1:])
        keywords = kwargs_of(biases=bs, output_bias=ob)
        desc = f"MLP({describe(ws)}, {describe(al)}, {describe(act)}, **{describe(keywords)})"
        valid = mlp_model(ws, al, act, keywords.get("biases"), keywords.get("output_bias"))
        ok, net = attempt(desc, lambda: mlpgrad.MLP(ws, al, act, **keywords), valid=valid, inputs=[ws, al, keywords])
        if not ok:
            return
        # Accepted: the very arrays, the right properties, the right numbers.
        ws = items(ws)
        assert all(a is b for a, b in zip(net.weights, ws)) and net.alpha is al
        if keywords.get("biases") is None:
            assert net.biases is None
        else:
            assert all(a is b for a, b in zip(net.biases, items(keywords["biases"])))
        assert net.output_bias is keywords.get("output_bias") and net.output_shape == al.shape[1:]
        widths = tuple([ws[0].shape[1] if ws else al.shape[0]] + [w.shape[0] for w in ws])
        assert net.widths == widths and net.depth == len(ws) and net.dtype == al.dtype
        assert net.activations == ((act,) * len(ws) if isinstance(act, str) else tuple(act))
        assert repr(net).startswith("mlpgrad.MLP(")
        x = make_inputs(rng, widths[0], al.dtype)
        dy = 1.0 if al.ndim == 1 else np.ones(al.shape[1], al.dtype)
        y, g = attempt(f"{desc}.value_and_grad(x, dy)", lambda: net.value_and_grad(x, dy), valid=True,
                       inputs=[ws, al, keywords, x])[1]
        parameters = list(ws) + [al] + list(net.biases or []) + ([] if net.output_bias is None else [net.output_bias])
        if not all(np.all(np.abs(np.asarray(a, np.float64)) < 1e6) for a in parameters):
            return  # NaN, Inf or huge values: test_extremes.py checks those numbers
        y_ref, g_ref = oracle_with_biases(net, x, dy)
        tol = 1e-4 if al.dtype == np.float32 else 1e-10
        scale = 1 + max(np.max(np.abs(y_ref)), max((np.max(np.abs(w)) for w in g_ref["weights"]), default=0))
        assert np.all(np.abs(y - y_ref) <= tol * scale), f"{desc}: yhat {y} != {y_ref}"
        for t, (a, b) in enumerate(zip(g.weights, g_ref["weights"])):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=f"{desc}: dW[{t}]")
        for t, (a, b) in enumerate(zip(g.biases or [], g_ref["biases"] or [])):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=f"{desc}: db[{t}]")

    # ------------------------------------------------------------------------- Gradients(...)
    def gradient_arrays(data, widths, dtype, batch, with_zu):
        """Arrays for Gradients(...): fresh ones, or views into one shared buffer (disjoint or overlapping)."""
        spec = out_spec(widths, dtype, batch=batch, with_zu=with_zu)
        how = data.draw(st.sampled_from(["fresh", "fresh", "shared_disjoint", "shared_overlapping"]), label="layout")
        if how != "fresh":
            arrays = [a for key in ("weights", "alpha", "x", "z", "u") for a in
                      (spec.get(key) if isinstance(spec.get(key), list) else [spec.get(key)]) if a is not None]
            sizes = [a.size for a in arrays]
            buf = np.full(sum(sizes) + 8, -1.0, dtype)
            offsets = np.cumsum([0] + sizes[:-1])
            if how == "shared_overlapping" and len(arrays) > 1:
                i = data.draw(st.integers(1, len(arrays) - 1), label="overlapping array")
                offsets[i] = max(0, offsets[i] - data.draw(st.integers(1, 3), label="overlap"))
            views = iter([buf[o:o + a.size].reshape(a.shape) for o, a in zip(offsets, arrays)])
            for key in ("weights", "alpha", "x", "z", "u"):
                if key in spec:
                    spec[key] = [next(views) for _ in spec[key]] if isinstance(spec[key], list) else next(views)
        return spec

    @fuzz(90)
    @given(arch=architectures(max_depth=3, max_width=4), data=st.data())
    def test_fuzz_gradients_constructor(arch, data):
        batch = data.draw(st.one_of(st.none(), st.integers(0, 3)), label="batch")
        with_zu = batch is None and data.draw(st.booleans(), label="with z/u")
        spec = gradient_arrays(data, arch.widths, arch.dtype, batch, with_zu)
        args = [[mutate(data, w, f"out.weights[{t}]") for t, w in enumerate(spec["weights"])],
                mutate(data, spec["alpha"], "out.alpha"), mutate(data, spec["x"], "out.x")]
        if with_zu:
            args += [[mutate(data, a, f"out.z[{t}]") for t, a in enumerate(spec["z"])],
                     [mutate(data, a, f"out.u[{t}]") for t, a in enumerate(spec["u"])]]
        else:
            args += [data.draw(st.sampled_from([None, None, [], "z"]), label="z"), None]
        args[0] = data.draw(st.sampled_from([list, tuple, LyingList]), label="weights container")(args[0])
        rng = np.random.default_rng(arch.seed)
        bs, ob = optional_biases(data, rng, arch.widths, arch.dtype, (), prefix="out.")
        keywords = kwargs_of(biases=bs, output_bias=ob)
        desc = f"Gradients({', '.join(describe(a) for a in args)}, **{describe(keywords)})"
        valid = gradients_model(*args, keywords.get("biases"), keywords.get("output_bias"))
        ok, g = attempt(desc, lambda: mlpgrad.Gradients(*args, **keywords), valid=valid, inputs=[args, keywords])
        if not ok:
            return
        ws = items(args[0])
        assert all(a is b for a, b in zip(g.weights, ws)) and g.alpha is args[1] and g.x is args[2]
        assert g.batch == (args[2].shape[0] if args[2].ndim == 2 else None)
        assert (g.z is None) == (args[3] is None) and g.dtype == args[1].dtype
        repr(g)
        assert (g.biases is None) == (keywords.get("biases") is None) and g.output_bias is keywords.get("output_bias")
        # Use it as out= for a network of its widths (and parameters): the results are the network's, in place.
        widths = tuple([args[2].shape[-1]] + [w.shape[0] for w in ws])
        rng = np.random.default_rng(arch.seed)
        weights, alpha = make_network(rng, widths, g.dtype)
        alpha = alpha.reshape(g.alpha.shape)  # (K_T, 1) when out.alpha is: one output of a vector network
        extra = {}
        if g.biases is not None:
            extra["biases"] = [rng.standard_normal(b.shape).astype(g.dtype) for b in g.biases]
        if g.output_bias is not None:
            extra["output_bias"] = rng.standard_normal(g.output_bias.shape).astype(g.dtype)
        net = mlpgrad.MLP(weights, alpha, "tanh", **extra)
        ref_net = mlpgrad.MLP(weights, alpha, "tanh", **extra)
        if g.batch is None:
            x = make_inputs(rng, widths[0], g.dtype)
            dy = 0.5 if alpha.ndim == 1 else np.full(alpha.shape[1], 0.5, g.dtype)
            ok, (y, got) = attempt(f"value_and_grad(x, out={desc})", lambda: net.value_and_grad(x, dy, out=g),
                                   valid=True, inputs=[weights, alpha, x])
            y_ref, g_ref = ref_net.value_and_grad(x, dy)
            same_bits(y, y_ref, "yhat")
        else:
            X = make_inputs(rng, widths[0], g.dtype, batch=g.batch)
            ok, (y, got) = attempt(f"value_and_grad_batch(X, out={desc})", lambda: net.value_and_grad_batch(X, out=g),
                                   valid=True, inputs=[weights, alpha, X])
            y_ref, g_ref = ref_net.value_and_grad_batch(X)
            same_bits(y, y_ref, "yhat")
        assert got is g
        same_gradients(got, g_ref, "out")

    # ------------------------------------------------------------------------- single-example calls
    def out_variant(data, net, arch, weights, alpha, batch):
        """(label, out, valid) for a call on `net`; batch None for single-example calls."""
        widths, dtype = arch.widths, arch.dtype
        other = np.float32 if dtype == np.float64 else np.float64
        choice = data.draw(st.sampled_from(
            ["absent", "none", "fresh", "wrapped", "wrapped_no_zu", "other_net_same_widths", "read_only_later",
             "other_dtype", "other_widths", "single_vs_batch", "other_batch", "aliases_network", "not_gradients",
             "parameter_only", "parameter_only_wrapped"]),
            label="out")
        if choice == "absent":
            return choice, ABSENT, True
        if choice == "none":
            return choice, None, True
        if choice == "fresh":
            return choice, net.new_gradients(batch=batch), True
        if choice in ("wrapped", "wrapped_no_zu"):
            with_zu = batch is None and choice == "wrapped"
            return choice, mlpgrad.Gradients(**out_spec(widths, dtype, batch=batch, with_zu=with_zu)), True
        if choice == "other_net_same_widths":
            return choice, mlpgrad.MLP(*make_network(np.random.default_rng(1), widths, dtype)).new_gradients(batch), True
        if choice == "read_only_later":
            g = mlpgrad.Gradients(**out_spec(widths, dtype, batch=batch))
            arrays = g.weights + [g.alpha, g.x]
            arrays[data.draw(st.integers(0, len(arrays) - 1), label="read-only array")].flags.writeable = False
            return choice, g, False
        if choice == "other_dtype":
            return choice, mlpgrad.Gradients(**out_spec(widths, other, batch=batch)), False
        if choice == "other_widths":
            bigger = tuple(k + 1 if t == len(widths) - 1 else k for t, k in enumerate(widths))
            return choice, mlpgrad.Gradients(**out_spec(bigger, dtype, batch=batch)), False
        if choice == "single_vs_batch":
            return choice, net.new_gradients(batch=None if batch is not None else 2), False
        if choice == "other_batch":
            return choice, net.new_gradients(batch=(batch or 0) + 1), False
        if choice == "parameter_only":  # fits any batch size; only the batch calls take it
            return choice, net.new_gradients(batch=(batch or 0) + 3, x=False), batch is not None
        if choice == "parameter_only_wrapped":
            spec = out_spec(widths, dtype, batch=batch, with_zu=False)
            del spec["x"]
            return choice, mlpgrad.Gradients(**spec), batch is not None
        if choice == "aliases_network":  # out arrays that are the network's own weights/alpha
            spec = out_spec(widths, dtype, batch=batch)
            if weights:
                spec["weights"][0] = weights[0]
            else:
                spec["alpha"] = alpha
            return choice, mlpgrad.Gradients(**spec), False
        return choice, data.draw(st.sampled_from([{}, [], "out", 3, np.zeros(3)]), label="not a Gradients"), False

    def kwargs_of(**kw):
        return {k: v for k, v in kw.items() if v is not ABSENT}

    @fuzz(90)
    @given(arch=architectures(max_depth=3, max_width=4), data=st.data())
    def test_fuzz_single_example_calls(arch, data):
        net, weights, alpha, rng = arch.build()
        ref = mlpgrad.MLP(weights, alpha, arch.activation_arg)  # the clean calls, on its own tapes
        dtype, K0 = arch.dtype, arch.widths[0]
        x0 = make_inputs(rng, K0, dtype)
        last_x = None  # the input of this thread's last successful forward on `net`
        for i in range(data.draw(st.integers(1, 6), label="calls")):
            method = data.draw(st.sampled_from(["forward", "value_and_grad", "value_and_grad", "backward"]),
                               label=f"call {i}")
            x = mutate(data, x0, "x")
            dy = data.draw(st.one_of(st.just(ABSENT), st.sampled_from(SCALARS)), label="dy")
            label, out, out_valid = out_variant(data, net, arch, weights, alpha, None)
            xa = real_array(x)
            x_valid = xa is not None and xa.shape == (K0,)
            dy_value = scalar_model(dy)
            outputs = [out] if isinstance(out, mlpgrad.Gradients) else []
            if method == "forward":
                desc = f"forward({describe(x)})"
                ok, y = attempt(desc, lambda: net.forward(x), valid=x_valid, inputs=[weights, alpha, x])
                if ok:
                    last_x = converted(x, dtype)
                    same_bits(y, ref.forward(last_x), desc)
                    assert isinstance(y, float)
                continue
            if method == "value_and_grad":
                desc = f"value_and_grad({describe(x)}, dy={describe(dy)}, out={label})"
                valid = x_valid and dy_value is not None and out_valid
                ok, r = attempt(desc, lambda: net.value_and_grad(x, **kwargs_of(dy=dy, out=out)), valid=valid,
                                inputs=[weights, alpha, x, dy], outputs=outputs)
                if ok:
                    last_x = converted(x, dtype)
                    y_ref, g_ref = ref.value_and_grad(last_x, dy_value)
                    same_bits(r[0], y_ref, desc + " yhat")
            else:
                desc = f"backward(dy={describe(dy)}, out={label}) after forward of {describe(last_x)}"
                valid = last_x is not None and dy_value is not None and out_valid
                ok, r = attempt(desc, lambda: net.backward(**kwargs_of(dy=dy, out=out)), valid=valid,
                                inputs=[weights, alpha, dy], outputs=outputs, runtime_error=last_x is None)
                if ok:
                    _, g_ref = ref.value_and_grad(last_x, dy_value)
                    r = (None, r)
            if ok:
                if isinstance(out, mlpgrad.Gradients):
                    assert r[1] is out, f"{desc}: did not return out"
                same_gradients(r[1], g_ref, desc)

    # ------------------------------------------------------------------------- batch calls
    @fuzz(90)
    @given(arch=architectures(max_depth=3, max_width=4), data=st.data())
    def test_fuzz_batch_calls(arch, data):
        net, weights, alpha, rng = arch.build()
        ref = mlpgrad.MLP(weights, alpha, arch.activation_arg)
        dtype, K0 = arch.dtype, arch.widths[0]
        for i in range(data.draw(st.integers(1, 5), label="calls")):
            B = data.draw(st.integers(0, 4), label="B")
            X0 = make_inputs(rng, K0, dtype, batch=B)
            dy0 = rng.standard_normal(B).astype(dtype)
            X = mutate(data, X0, "X")
            Xa = real_array(X)
            X_valid = Xa is not None and Xa.ndim == 2 and Xa.shape[1] == K0
            B_got = Xa.shape[0] if X_valid else B
            if data.draw(st.booleans(), label="forward_batch"):
                desc = f"forward_batch({describe(X)})"
                ok, y = attempt(desc, lambda: net.forward_batch(X), valid=X_valid, inputs=[weights, alpha, X])
                if ok:
                    same_bits(y, ref.forward_batch(converted(X, dtype)), desc)
                continue
            dy = data.draw(st.one_of(st.just(ABSENT), st.just(None), st.just(dy0), st.sampled_from(SCALARS),
                                     st.just("mutate")), label="dy")
            if isinstance(dy, str) and dy == "mutate":
                dy = mutate(data, dy0, "dy")
            if dy is ABSENT or dy is None:
                dy_valid, dy_clean = True, None
            else:
                da = real_array(dy)
                dy_valid = da is not None and da.shape == (B_got,)
                dy_clean = converted(dy, dtype) if dy_valid else None
            label, out, out_valid = out_variant(data, net, arch, weights, alpha, B_got)
            inputs = [weights, alpha, X, dy]
            # Inputs that alias the out buffers (allowed: read before they are overwritten, or from a copy).
            alias = data.draw(st.sampled_from(["none", "none", "dy_is_out_alpha", "X_is_out_x"]), label="alias")
            if out_valid and isinstance(out, mlpgrad.Gradients) and X_valid:
                if alias == "dy_is_out_alpha" and out.alpha.shape == (B_got,):
                    out.alpha[...] = dy0 if B_got == B else 1.0
                    dy, dy_valid = out.alpha, True
                    dy_clean = out.alpha.copy()
                    inputs = [weights, alpha, X]
                elif alias == "X_is_out_x" and out.x is not None:
                    out.x[...] = converted(X, dtype)
                    X = out.x
                    inputs = [weights, alpha, dy]
            valid = X_valid and dy_valid and out_valid
            desc = f"value_and_grad_batch({describe(X)}, dy={describe(dy)}, out={label}, alias={alias})"
            X_clean = converted(X, dtype) if X_valid else None
            outputs = [out] if isinstance(out, mlpgrad.Gradients) else []
            ok, r = attempt(desc, lambda: net.value_and_grad_batch(X, **kwargs_of(dy=dy, out=out)), valid=valid,
                            inputs=inputs, outputs=outputs)
            if ok:
                y_ref, g_ref = ref.value_and_grad_batch(X_clean, dy_clean)
                same_bits(r[0], y_ref, desc + " yhat")
                if isinstance(out, mlpgrad.Gradients):
                    assert r[1] is out
                same_gradients(r[1], g_ref, desc)
                # the backward pass again, from this thread's batch tape: the same bits
                same_gradients(net.backward_batch(dy_clean), g_ref, desc + " then backward_batch")

    # ------------------------------------------------------------------------- new_gradients, properties
    # No batch between ~2**28 and ~2**38: NumPy could get that memory and new_gradients would zero it all.
    BATCHES = [None, 0, 1, 5, -1, 2**40, 2**62, 2**63, 2**64, -(2**70), True, 2.0, "2", np.int64(2), [2], object()]

    @fuzz(40)
    @given(arch=architectures(max_depth=3, max_width=4), batch=st.sampled_from(BATCHES))
    def test_fuzz_new_gradients_and_properties(arch, batch):
        net, weights, alpha, rng = arch.build()
        small = batch is None or (type(batch) is int and 0 <= batch <= 5)
        either = isinstance(batch, np.integer) or (type(batch) is int and batch >= 2**40)  # MemoryError is fine
        ok, g = attempt(f"new_gradients(batch={batch!r})", lambda: net.new_gradients(batch=batch),
                        valid=True if small else (None if either else False), inputs=[weights, alpha])
        if ok:
            assert g.batch == batch and g.dtype == arch.dtype
            for a in g.weights + [g.alpha, g.x]:
                assert a.flags.c_contiguous and a.flags.writeable and not np.any(a)
        assert net.widths == arch.widths and net.depth == len(arch.widths) - 1 and net.dtype == arch.dtype
        repr(net)
        for name in ("z", "u"):  # no forward in this thread yet
            attempt(f"net.{name} before forward", lambda: getattr(net, name), valid=False, runtime_error=True)
        attempt("backward before forward", lambda: net.backward(), valid=False, inputs=[weights, alpha],
                runtime_error=True)

    # ------------------------------------------------------------------------- pickle state
    STATE_PARTS = {
        "version": [1, 1, 2, 0, -1, 2**40, 2**63, 2**80, -(2**70), True, "1", None, 1.0],
        "activations": ["ok", "ok", ("bogus",), "relu", None, (), ("relu",) * 9, [3]],
    }

    @fuzz(40)
    @given(arch=architectures(max_depth=3, max_width=4), data=st.data())
    def test_fuzz_pickle_state(arch, data):
        net, weights, alpha, rng = arch.build()
        version = data.draw(st.sampled_from(STATE_PARTS["version"]), label="version")
        ws = [mutate(data, w, f"state weights[{t}]") for t, w in enumerate(weights)]
        ws = data.draw(st.sampled_from([tuple(ws), list(ws), None, 7, "ab"]), label="state weights container")
        al = mutate(data, alpha, "state alpha")
        acts = data.draw(st.sampled_from(STATE_PARTS["activations"]), label="state activations")
        acts = net.activations if acts == "ok" else acts
        length = data.draw(st.sampled_from([4, 4, 3, 5, 6, 6, 7]), label="state length")
        bs, ob = optional_biases(data, rng, arch.widths, arch.dtype, (), prefix="state ")
        bs, ob = (None if bs is ABSENT else bs), (None if ob is ABSENT else ob)
        state = (version, ws, al, acts, bs, ob, "extra")[:length] if length >= 6 else \
            (version, ws, al, acts, "extra")[:length]
        valid = type(version) is int and ((length == 4 and version == 1 and mlp_model(ws, al, acts)) or
                                          (length == 6 and version == 2 and mlp_model(ws, al, acts, bs, ob)))
        fresh = mlpgrad.MLP.__new__(mlpgrad.MLP)
        desc = f"MLP.__setstate__(({', '.join(describe(p) for p in state)}))"
        # never used again if it failed: an instance whose __init__/__setstate__ failed is not usable
        ok, _ = attempt(desc, lambda: fresh.__setstate__(state), valid=None if version is True else valid,
                        inputs=[state])
        if ok:
            clean = mlpgrad.MLP(list(ws), al, acts, **({} if length == 4 else dict(biases=bs, output_bias=ob)))
            assert fresh.widths == clean.widths and fresh.activations == clean.activations
            x = make_inputs(rng, arch.widths[0], arch.dtype)
            same_bits(fresh.forward(x), clean.forward(x), desc)
