"""Runtime safety of the binding: what the caller's arrays, threads and interpreter may do around a call.

* Misaligned inputs. A C-contiguous array of the network's dtype whose data is not aligned to its item size
  (a view at an odd byte offset) is converted once to an aligned copy, for every input argument (x, X, a
  batch dy, a 0-d dy), and gives bit for bit what the aligned array gives. The kernels never load a
  misaligned element: under the UBSan build of .ci/reliability.sh (-fno-sanitize-recover) these tests fail
  if one does.
* Arrays reallocated or reshaped under a network or an out= Gradients (``ndarray.resize(..., refcheck=False)``
  frees the buffer the binding views; ``a.shape = ...``, ``a.dtype = ...`` change it in place): every later
  call refuses with a ValueError naming the array, before it reads or writes anything.
* Interpreter exit while daemon threads are inside calls, with the GIL released or inside a user callback:
  the process exits with status 0 (CPython 3.11 ends such threads with a forced unwind).
* Sub-interpreters: ``import mlpgrad._core`` raises ImportError there, instead of hanging.

Whatever could crash or hang runs in a child interpreter, so that a crash is a test failure. The fuzz
targets (hypothesis) widen each class: every argument misaligned, every kind of in-place change to every
array a network or a Gradients holds, and random mixes of calls in flight at exit.
MLPGRAD_FUZZ_SCALE multiplies their example counts (.ci/reliability.sh runs more).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlpgrad
from conftest import Arch, Snapshot, architectures, build_net, grads_of, make_inputs

SCALE = int(os.environ.get("MLPGRAD_FUZZ_SCALE", "1"))
HERE = os.path.dirname(os.path.abspath(__file__))
# Tests that may crash the interpreter on a broken build (reallocated arrays) are defined only in a child
# interpreter, which test_child_targets_in_subprocess starts with this set.
CHILD = os.environ.get("MLPGRAD_RUNTIME_CHILD") == "1"
LAST_CALL = os.environ.get("MLPGRAD_RUNTIME_LAST_CALL")


def note(call: str):
    """Records the call about to be made, so that a crash of the child can be reported with it."""
    if LAST_CALL:
        with open(LAST_CALL, "w") as f:
            f.write(call)


def fuzz(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (the same environment: a sanitizer runtime preloaded stays preloaded)."""
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)], cwd=HERE,
                          capture_output=True, text=True, timeout=timeout)


def child_report(proc: subprocess.CompletedProcess) -> str:
    tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-40:])
    return f"exit status {proc.returncode}:\n{tail}"


# =============================================================================================== misaligned inputs
def misaligned(a: np.ndarray, offset: int = 1) -> np.ndarray:
    """A C-contiguous copy of `a` (same dtype and shape) whose data starts `offset` bytes past an aligned address."""
    a = np.asarray(a)
    assert 0 < offset < a.itemsize
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)  # NumPy's buffers are aligned to at least 16 bytes
    out = buf[offset:offset + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and not out.flags.aligned
    return out


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_result(got, ref, what: str):
    """Bit-for-bit equality of two call results: floats, arrays, Gradients, or tuples of them."""
    if isinstance(ref, tuple):
        assert isinstance(got, tuple) and len(got) == len(ref), what
        for i, (g, r) in enumerate(zip(got, ref)):
            assert_same_result(g, r, f"{what}[{i}]")
    elif isinstance(ref, mlpgrad.Gradients):
        assert isinstance(got, mlpgrad.Gradients), what
        g, r = grads_of(got), grads_of(ref)
        for name in ("weights", "z", "u"):
            gl, rl = getattr(g, name), getattr(r, name)
            assert (gl is None) == (rl is None), f"{what}.{name}"
            for t, (ga, ra) in enumerate(zip(gl or [], rl or [])):
                assert same_bits(ga, ra), f"{what}.{name}[{t}] differs"
        assert same_bits(g.alpha, r.alpha), f"{what}.alpha differs"
        assert same_bits(g.x, r.x), f"{what}.x differs"
    else:
        assert same_bits(got, ref), f"{what}: {got!r} != {ref!r}"


# (method, argument): every input argument of every call, as a call on the values of clean_inputs().
INPUT_ARGUMENTS = {
    ("forward", "x"): lambda net, v: net.forward(v["x"]),
    ("value_and_grad", "x"): lambda net, v: net.value_and_grad(v["x"], v["dy0"]),
    ("value_and_grad", "dy"): lambda net, v: net.value_and_grad(v["x"], v["dy0"]),
    ("backward", "dy"): lambda net, v: (net.forward(v["x"]), net.backward(v["dy0"])),
    ("forward_batch", "X"): lambda net, v: net.forward_batch(v["X"]),
    ("value_and_grad_batch", "X"): lambda net, v: net.value_and_grad_batch(v["X"], v["dy"]),
    ("value_and_grad_batch", "dy"): lambda net, v: net.value_and_grad_batch(v["X"], v["dy"]),
}


def clean_inputs(rng, net, dtype, batch: int):
    k0 = net.widths[0]
    return {"x": make_inputs(rng, k0, dtype), "X": make_inputs(rng, k0, dtype, batch),
            "dy": rng.standard_normal(batch).astype(dtype), "dy0": np.array(0.75, dtype)}


def with_misaligned(values, method: str, argument: str, offset: int):
    key = "dy0" if (argument == "dy" and not method.endswith("_batch")) else argument
    out = dict(values)
    out[key] = misaligned(values[key], offset)
    return out, key


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(INPUT_ARGUMENTS), ids=[f"{m}-{a}" for m, a in INPUT_ARGUMENTS])
def test_misaligned_input_gives_the_aligned_result(case, dtype):
    method, argument = case
    rng = np.random.default_rng(7)
    # widths with odd sizes, so that vector loops have scalar tails that load single elements
    net, weights, alpha = build_net(rng, (13, 9, 5), ["tanh", "relu"], dtype)
    values = clean_inputs(rng, net, dtype, batch=11)
    ref = INPUT_ARGUMENTS[case](net, values)
    for offset in sorted({1, np.dtype(dtype).itemsize // 2}):
        bad, key = with_misaligned(values, method, argument, offset)
        snap = Snapshot(bad[key], weights, alpha)
        got = INPUT_ARGUMENTS[case](net, bad)
        assert_same_result(got, ref, f"{method} with {argument} misaligned by {offset} bytes")
        snap.assert_unchanged(f"{method} with {argument} misaligned")


# A call's peak traced memory shows whether it copied an input: NumPy reports its buffers to tracemalloc.
def peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", list(INPUT_ARGUMENTS), ids=[f"{m}-{a}" for m, a in INPUT_ARGUMENTS])
def test_misaligned_input_is_converted_once(case):
    """README: misaligned inputs are "converted once". Exactly one copy of the argument is made per call."""
    method, argument = case
    if argument == "dy" and not method.endswith("_batch"):
        pytest.skip("a 0-d dy is 8 bytes: its copy is below what tracemalloc can tell apart (UBSan covers it)")
    rng = np.random.default_rng(3)
    batch = 4096 if argument == "dy" else 256
    widths = (4096, 1) if argument == "x" else (64, 1)
    net, _, _ = build_net(rng, widths, "tanh", np.float64)
    values = clean_inputs(rng, net, np.float64, batch)
    out = net.new_gradients(batch=batch if method.endswith("_batch") else None)
    call = INPUT_ARGUMENTS[case]
    with_out = {
        "value_and_grad": lambda n, v: n.value_and_grad(v["x"], out=out),
        "value_and_grad_batch": lambda n, v: n.value_and_grad_batch(v["X"], v["dy"], out=out),
    }.get(method, call)
    bad, key = with_misaligned(values, method, argument, 1)
    nbytes = bad[key].nbytes
    aligned_peak = min(peak_bytes(lambda: with_out(net, values)) for _ in range(3))
    misaligned_peak = min(peak_bytes(lambda: with_out(net, bad)) for _ in range(3))
    extra = misaligned_peak - aligned_peak
    assert nbytes <= extra < 2 * nbytes, \
        f"{method}: a misaligned {argument} of {nbytes} bytes made the call allocate {extra} more bytes " \
        f"(expected one aligned copy)"


# =============================================================================================== interpreter exit
# The child starts daemon threads that call `call` in a loop, waits until each has returned from a call at
# least once (so that all are running), lets them run for `linger` seconds and exits. A thread that is then
# inside a call re-takes the GIL after finalization began; CPython before 3.14 ends it with pthread_exit.
EXIT_SCRIPT = """
import sys, threading, time
import numpy as np
import mlpgrad

rng = np.random.default_rng(0)
K, B = {width}, {batch}
dtype = np.{dtype}
weights = [(rng.standard_normal((K, K)) / np.sqrt(K)).astype(dtype) for _ in range({depth})]
alpha = rng.standard_normal(K).astype(dtype)
net = mlpgrad.MLP(weights, alpha, "tanh")
x = rng.standard_normal(K).astype(dtype)
X = rng.standard_normal((B, K)).astype(dtype)
dy = np.ones(B, dtype)

class SlowArray:
    # np.asarray(self) sleeps, releasing and re-taking the GIL, inside a call of the binding
    def __init__(self, a):
        self.a = a
    def __array__(self, dtype=None, copy=None):
        time.sleep(0.0002)
        return self.a

class SlowNames(list):
    # the constructor asks for len(): a pybind11-dispatched entry point runs this user code
    def __len__(self):
        time.sleep(0.0002)
        return list.__len__(self)

def make_call(name):
    out = net.new_gradients()
    outb = net.new_gradients(batch=B)
    return {{
        "forward": lambda: net.forward(x),
        "value_and_grad": lambda: net.value_and_grad(x),
        "value_and_grad out=": lambda: net.value_and_grad(x, 0.5, out=out),
        "backward out=": lambda: (net.forward(x), net.backward(0.5, out=out)),
        "forward_batch": lambda: net.forward_batch(X),
        "value_and_grad_batch": lambda: net.value_and_grad_batch(X, dy),
        "value_and_grad_batch out=": lambda: net.value_and_grad_batch(X, dy, out=outb),
        "x.__array__ sleeps": lambda: net.value_and_grad(SlowArray(x), out=out),
        "dy.__array__ sleeps": lambda: net.value_and_grad_batch(X, SlowArray(dy), out=outb),
        "MLP(activation=...) len() sleeps": lambda: mlpgrad.MLP(weights, alpha, SlowNames(["tanh"] * {depth})),
        "new_gradients": lambda: net.new_gradients(batch=B),
    }}[name]

started = threading.Semaphore(0)
def loop(call):
    call()
    started.release()
    while True:
        call()

names = {calls!r}
for i in range({threads}):
    threading.Thread(target=loop, args=(make_call(names[i % len(names)]),), daemon=True).start()
for _ in range({threads}):
    if not started.acquire(timeout=60):
        sys.exit("a thread did not start")
time.sleep({linger})
print("main thread exits", flush=True)
{exit_how}
"""

EXIT_CALLS = ["forward", "value_and_grad", "value_and_grad out=", "backward out=", "forward_batch",
              "value_and_grad_batch", "value_and_grad_batch out=", "x.__array__ sleeps", "dy.__array__ sleeps",
              "MLP(activation=...) len() sleeps", "new_gradients"]
EXIT_HOW = {"end of script": "", "sys.exit(0)": "sys.exit(0)", "exception in main": "raise SystemExit(0)"}


def exit_with_calls_in_flight(calls, *, threads=2, width=384, depth=3, batch=16, dtype="float64", linger=0.05,
                              exit_how="end of script"):
    script = EXIT_SCRIPT.format(calls=list(calls), threads=threads, width=width, depth=depth, batch=batch,
                                dtype=dtype, linger=linger, exit_how=EXIT_HOW[exit_how])
    proc = run_child(script, timeout=120)
    what = f"interpreter exit with {threads} daemon thread(s) in {list(calls)}"
    assert proc.returncode == 0 and "main thread exits" in proc.stdout, f"{what}: {child_report(proc)}"
    assert "terminate" not in proc.stderr and "Fatal" not in proc.stderr, f"{what}: {child_report(proc)}"


@pytest.mark.parametrize("call", EXIT_CALLS)
def test_interpreter_exit_with_a_call_in_flight(call):
    """Exit status 0, as with NumPy; it was 134 ("terminate called without an active exception")."""
    for _ in range(2):
        exit_with_calls_in_flight([call])


@fuzz(6)
@given(calls=st.lists(st.sampled_from(EXIT_CALLS), min_size=1, max_size=4), threads=st.integers(1, 4),
       width=st.sampled_from([64, 200, 384]), depth=st.integers(1, 3), batch=st.integers(1, 32),
       dtype=st.sampled_from(["float32", "float64"]), linger=st.sampled_from([0.0, 0.01, 0.1]),
       exit_how=st.sampled_from(sorted(EXIT_HOW)))
def test_fuzz_interpreter_exit_with_calls_in_flight(calls, threads, width, depth, batch, dtype, linger, exit_how):
    exit_with_calls_in_flight(calls, threads=max(threads, len(calls)), width=width, depth=depth, batch=batch,
                              dtype=dtype, linger=linger, exit_how=exit_how)


# =============================================================================================== sub-interpreters
SUBINTERPRETER_SCRIPT = '''
try:
    import _xxsubinterpreters as interpreters  # CPython 3.8-3.12
except ImportError:
    import _interpreters as interpreters  # 3.13+

{main_first}
interp = interpreters.create()
interpreters.run_string(interp, """
try:
    import {module}
except ImportError as e:
    print("sub-interpreter: ImportError:", e, flush=True)
else:
    print("sub-interpreter: imported", flush=True)
""")
interpreters.destroy(interp)

import numpy as np
import mlpgrad
net = mlpgrad.MLP([np.ones((2, 3))], np.ones(2), "identity")
assert net.value_and_grad(np.ones(3))[0] == 6.0
print("main interpreter: works", flush=True)
'''


def subinterpreters_available() -> bool:
    import importlib.util
    return any(importlib.util.find_spec(m) for m in ("_xxsubinterpreters", "_interpreters"))


@pytest.mark.skipif(not subinterpreters_available(), reason="this CPython has no sub-interpreter module")
@pytest.mark.parametrize("module", ["mlpgrad", "mlpgrad._core"])
@pytest.mark.parametrize("main_first", [False, True], ids=["sub-interpreter first", "main interpreter first"])
def test_import_in_a_sub_interpreter_raises_import_error(module, main_first):
    """It hung forever in module init; it must raise ImportError there (as NumPy does) and leave the main
    interpreter able to import and use mlpgrad."""
    script = SUBINTERPRETER_SCRIPT.format(module=module, main_first="import mlpgrad" if main_first else "")
    try:
        proc = run_child(script, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"import {module} in a sub-interpreter hung (no answer in 60 s)")
    assert proc.returncode == 0, child_report(proc)
    message = proc.stdout.partition("sub-interpreter: ImportError:")[2]
    assert "sub-interpreter" in message, f"no ImportError that names sub-interpreters; {child_report(proc)}"
    assert "main interpreter: works" in proc.stdout, child_report(proc)


# =============================================================================================== reallocated arrays
if not CHILD:

    def test_child_targets_in_subprocess(tmp_path):
        last_call = tmp_path / "last_call.txt"
        env = dict(os.environ, MLPGRAD_RUNTIME_CHILD="1", MLPGRAD_RUNTIME_LAST_CALL=str(last_call))
        cmd = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
               os.path.abspath(__file__)]
        proc = subprocess.run(cmd, env=env, cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=900)
        last = last_call.read_text() if last_call.exists() else "(none recorded)"
        assert proc.returncode in (0, 1), f"the child died; last call attempted:\n  {last}\n\n{child_report(proc)}"
        assert proc.returncode == 0, f"child targets failed:\n{child_report(proc)}"
        assert " passed" in proc.stdout, f"the child ran no tests:\n{child_report(proc)}"

else:

    class Held:
        """A network and the arrays it and its two out= Gradients (single, batch) hold, with reference results."""

        def __init__(self, arch, batch: int = 3):
            rng = np.random.default_rng(arch.seed)
            self.arch = arch
            self.net, self.weights, self.alpha = build_net(rng, arch.widths, arch.activation_arg, arch.dtype)
            self.x = make_inputs(rng, arch.widths[0], arch.dtype)
            self.X = make_inputs(rng, arch.widths[0], arch.dtype, batch)
            self.dy = rng.standard_normal(batch).astype(arch.dtype)
            self.g = self.net.new_gradients()
            self.gb = self.net.new_gradients(batch=batch)
            self.net.forward(self.x)  # what backward() differentiates: the same pass as every call below records
            self.reference = {name: snapshot_result(call(self)) for name, call in CALLS.items()}
            self.original = {key: state_of(a) for key, a in self.arrays().items()}

        def arrays(self):
            """{(holder, name): array} for every array the binding keeps viewing; holder: net, g or gb."""
            out = {("net", f"weights[{t}]"): w for t, w in enumerate(self.weights)}
            out[("net", "alpha")] = self.alpha
            for holder in ("g", "gb"):
                g = getattr(self, holder)
                for t, w in enumerate(g.weights):
                    out[(holder, f"out.weights[{t}]")] = w
                out[(holder, "out.alpha")] = g.alpha
                out[(holder, "out.x")] = g.x
                for field in ("z", "u"):
                    for t, a in enumerate(getattr(g, field) or []):
                        out[(holder, f"out.{field}[{t}]")] = a
            return out

    def snapshot_result(r):
        """A call's result as plain copies (Gradients -> grads_of), to compare later results with bit for bit."""
        if isinstance(r, tuple):
            return tuple(snapshot_result(v) for v in r)
        if isinstance(r, mlpgrad.Gradients):
            return grads_of(r)
        return np.array(r, copy=True)

    def assert_same_snapshot(got, ref, what):
        if isinstance(ref, tuple):
            for i, (g, r) in enumerate(zip(got, ref)):
                assert_same_snapshot(g, r, f"{what}[{i}]")
        elif isinstance(ref, np.ndarray):
            assert same_bits(got, ref), f"{what} differs"
        else:
            for name in ("weights", "z", "u"):
                for t, (ga, ra) in enumerate(zip(getattr(got, name) or [], getattr(ref, name) or [])):
                    assert same_bits(ga, ra), f"{what}.{name}[{t}] differs"
            for name in ("alpha", "x"):
                assert same_bits(getattr(got, name), getattr(ref, name)), f"{what}.{name} differs"

    # Every call that reads the network; the out= ones also write the Gradients named in OUT_OF.
    CALLS = {
        "forward": lambda h: h.net.forward(h.x),
        "value_and_grad": lambda h: h.net.value_and_grad(h.x, 0.5),
        "value_and_grad out=": lambda h: h.net.value_and_grad(h.x, 0.5, out=h.g),
        "backward out=": lambda h: h.net.backward(0.5, out=h.g),
        "forward_batch": lambda h: h.net.forward_batch(h.X),
        "value_and_grad_batch": lambda h: h.net.value_and_grad_batch(h.X, h.dy),
        "value_and_grad_batch out=": lambda h: h.net.value_and_grad_batch(h.X, h.dy, out=h.gb),
    }
    OUT_OF = {"value_and_grad out=": "g", "backward out=": "g", "value_and_grad_batch out=": "gb"}

    def other_dtype_same_itemsize(a):
        return np.int64 if a.itemsize == 8 else np.int32

    def other_dtype_half_itemsize(a):
        return np.float32 if a.itemsize == 8 else np.float16

    # In-place changes to an array the binding holds. Some leave it as it was checked (resize to its own
    # shape, a square matrix "transposed", read-only network arrays): calls must then go on as before.
    CHANGES = {
        "resize grow": lambda a: a.resize(tuple(k + 2 for k in a.shape), refcheck=False),
        "resize shrink": lambda a: a.resize(tuple(max(k - 1, 0) for k in a.shape), refcheck=False),
        "resize huge": lambda a: a.resize((1 << 16,) + a.shape[1:], refcheck=False),
        "resize flat": lambda a: a.resize((a.size,), refcheck=False),
        "resize same": lambda a: a.resize(a.shape, refcheck=False),
        "resize to empty": lambda a: a.resize((0,) * a.ndim, refcheck=False),
        "shape reversed": lambda a: setattr(a, "shape", a.shape[::-1]),
        "shape extra dim": lambda a: setattr(a, "shape", (1,) + a.shape),
        "dtype same itemsize": lambda a: setattr(a, "dtype", other_dtype_same_itemsize(a)),
        "dtype half itemsize": lambda a: setattr(a, "dtype", other_dtype_half_itemsize(a)),
        "read-only": lambda a: setattr(a.flags, "writeable", False),
    }

    def state_of(a):
        return a.ctypes.data, a.shape, a.dtype, a.flags.writeable

    def changed_arrays(held):
        """{(holder, name)} of the arrays that no longer are as the binding checked them: another buffer, shape
        or dtype, or (an out array) read-only."""
        out = set()
        for key, a in held.arrays().items():
            before, now = held.original[key], state_of(a)
            if before[:3] != now[:3] or (key[0] != "net" and not now[3]):
                out.add(key)
        return out

    def check_every_call(held, what: str):
        """Each call is refused with a ValueError naming a changed array it uses, writing nothing, if there is
        one; otherwise it returns bit for bit what it returned before any change."""
        changed = changed_arrays(held)
        snap = Snapshot(held.weights, held.alpha, held.g, held.gb, held.x, held.X, held.dy)
        for call_name, call in CALLS.items():
            used = {key for key in changed if key[0] in ("net", OUT_OF.get(call_name))}
            note(f"{held.arch}: {call_name} after {what}")
            if not used:
                assert_same_snapshot(snapshot_result(call(held)), held.reference[call_name], f"{call_name} after {what}")
                snap = Snapshot(held.weights, held.alpha, held.g, held.gb, held.x, held.X, held.dy)
                continue
            with pytest.raises(ValueError) as err:
                call(held)
            msg = str(err.value)
            named = [key for key in used if msg.startswith(key[1] + " ")]
            assert named, f"{call_name} after {what}: the message names none of {sorted(used)}: {msg}"
            moved = held.original[named[0]][:3] != state_of(held.arrays()[named[0]])[:3]
            assert ("resized or reallocated" if moved else "read-only") in msg, f"{call_name} after {what}: {msg}"
            snap.assert_unchanged(f"{call_name} after {what}: refused, but wrote")

    def change(held, key, how: str) -> bool:
        """Applies CHANGES[how] to the array `key` and checks every call; False if NumPy refuses the change."""
        a = held.arrays()[key]
        before = state_of(a)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a deprecated in-place change is not a way to break the binding
                CHANGES[how](a)
        except (ValueError, TypeError, AttributeError, DeprecationWarning):
            return False  # e.g. a shape that the buffer cannot take
        check_every_call(held, f"{how} of {key[0]} {key[1]}: {before[1:3]} -> {state_of(a)[1:3]}")
        return True

    @pytest.mark.parametrize("how", list(CHANGES))
    @pytest.mark.parametrize("target", ["weights[0]", "weights[1]", "alpha", "g out.weights[1]", "g out.alpha",
                                        "g out.x", "g out.z[0]", "g out.z[2]", "g out.u[1]", "gb out.weights[0]",
                                        "gb out.alpha", "gb out.x"])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
    def test_changed_array_is_refused_by_every_call(target, how, dtype):
        key = tuple(target.split(" ")) if " " in target else ("net", target)
        held = Held(Arch((3, 4, 2), ("tanh", "relu"), dtype, 11, False))
        if not change(held, key, how):
            pytest.skip(f"NumPy does not allow {how!r} on {target}")

    @fuzz(60)
    @given(arch=architectures(max_depth=3, max_width=5), data=st.data())
    def test_fuzz_arrays_changed_under_a_network(arch, data):
        """Random in-place changes, one after another, to the arrays a network and its outs hold."""
        held = Held(arch, batch=data.draw(st.integers(0, 4), label="batch"))
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            key = data.draw(st.sampled_from(sorted(held.arrays())), label="array")
            change(held, key, data.draw(st.sampled_from(sorted(CHANGES)), label="change"))
