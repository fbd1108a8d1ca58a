"""Runtime safety of the binding: what the caller's arrays may do around a call.

* Misaligned inputs. A C-contiguous array whose data is not aligned to its item size (a view at an odd
  byte offset) is converted once to an aligned copy, for every input argument (x, X, a batch dy, a 0-d dy),
  and gives bit for bit what the aligned array gives. The kernels never load a misaligned element: under
  the UBSan build of .ci/reliability.sh (-fno-sanitize-recover) these tests fail if one does. Misaligned
  weights, alpha and out arrays are refused (they are never copied).
* Arrays changed under a network or an out= Gradients: ``ndarray.resize(..., refcheck=False)`` frees the
  buffer the binding views; assigning ``a.shape``, ``a.dtype`` or ``a.flags.writeable`` changes an array in
  place. Every later call that uses such an array refuses with a ValueError naming it, before it reads or
  writes anything; the other calls go on bit for bit as before.

Both run in a child interpreter, so that a crash is a test failure: test_child_targets_in_subprocess re-runs
this file with MLPGRAD_RUNTIME_CHILD=1 and reports the last call attempted if the child dies. The fuzz
targets (hypothesis) widen each class: any argument misaligned, any sequence of in-place changes to any
array a network or its outs hold. MLPGRAD_FUZZ_SCALE multiplies their example counts (.ci/reliability.sh
runs more). Interpreter exit with calls in flight and sub-interpreters: test_interpreter_exit.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpgrad
from conftest import Arch, Snapshot, architectures, build_net, child_report, grads_of, make_inputs
from fuzzing import fuzz

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.environ.get("MLPGRAD_RUNTIME_CHILD") == "1"
LAST_CALL = os.environ.get("MLPGRAD_RUNTIME_LAST_CALL")


if not CHILD:

    def test_child_targets_in_subprocess(tmp_path):
        last_call = tmp_path / "last_call.txt"
        env = dict(os.environ, MLPGRAD_RUNTIME_CHILD="1", MLPGRAD_RUNTIME_LAST_CALL=str(last_call))
        cmd = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
               "addopts=", os.path.abspath(__file__)]
        proc = subprocess.run(cmd, env=env, cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=900)
        last = last_call.read_text() if last_call.exists() else "(none recorded)"
        assert proc.returncode in (0, 1), f"the child died; last call attempted:\n  {last}\n\n{child_report(proc)}"
        assert proc.returncode == 0, f"child targets failed:\n{child_report(proc)}"
        assert " passed" in proc.stdout, f"the child ran no tests:\n{child_report(proc)}"

else:
    # ========================================================================================= helpers
    def note(call: str):
        """Records the call about to be made, so that a crash of the child can be reported with it."""
        if LAST_CALL:
            with open(LAST_CALL, "w") as f:
                f.write(call)

    def same_bits(a, b) -> bool:
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()

    def snapshot_result(r):
        """A call's result as plain copies (a Gradients as grads_of), to compare other results with bit for bit."""
        if isinstance(r, tuple):
            return tuple(snapshot_result(v) for v in r)
        if isinstance(r, mlpgrad.Gradients):
            return grads_of(r)
        return np.array(r, copy=True)

    def assert_same_result(got, ref, what: str):
        """Bit-for-bit equality of two snapshot_result()s."""
        if isinstance(ref, tuple):
            assert isinstance(got, tuple) and len(got) == len(ref), what
            for i, (g, r) in enumerate(zip(got, ref)):
                assert_same_result(g, r, f"{what}[{i}]")
        elif isinstance(ref, np.ndarray):
            assert same_bits(got, ref), f"{what}: {got!r} != {ref!r}"
        else:
            for name in ("weights", "z", "u"):
                gl, rl = getattr(got, name), getattr(ref, name)
                assert (gl is None) == (rl is None) and len(gl or []) == len(rl or []), f"{what}.{name}"
                for t, (ga, ra) in enumerate(zip(gl or [], rl or [])):
                    assert same_bits(ga, ra), f"{what}.{name}[{t}] differs"
            for name in ("alpha", "x"):
                assert same_bits(getattr(got, name), getattr(ref, name)), f"{what}.{name} differs"

    # ========================================================================================= misaligned inputs
    def misaligned(a: np.ndarray, offset: int = 1) -> np.ndarray:
        """A C-contiguous copy of `a` (same dtype and shape) whose data starts `offset` bytes past an aligned
        address. `a` must not be empty (NumPy counts empty arrays as aligned)."""
        a = np.asarray(a)
        assert 0 < offset < a.itemsize and a.size
        buf = np.zeros(a.nbytes + a.itemsize, np.uint8)  # NumPy's buffers are aligned to at least 16 bytes
        out = buf[offset:offset + a.nbytes].view(a.dtype).reshape(a.shape)
        out[...] = a
        assert out.flags.c_contiguous and not out.flags.aligned
        return out

    def clean_inputs(rng, net, dtype, batch: int):
        k0 = net.widths[0]
        return {"x": make_inputs(rng, k0, dtype), "X": make_inputs(rng, k0, dtype, batch),
                "dy": rng.standard_normal(batch).astype(dtype), "dy0": np.array(0.75, dtype)}

    # Every input argument of every call: (method, the key of clean_inputs() it is in) -> the call.
    INPUT_ARGUMENTS = {
        ("forward", "x"): lambda net, v: net.forward(v["x"]),
        ("value_and_grad", "x"): lambda net, v: net.value_and_grad(v["x"], v["dy0"]),
        ("value_and_grad", "dy0"): lambda net, v: net.value_and_grad(v["x"], v["dy0"]),
        ("backward", "dy0"): lambda net, v: (net.forward(v["x"]), net.backward(v["dy0"])),
        ("forward_batch", "X"): lambda net, v: net.forward_batch(v["X"]),
        ("value_and_grad_batch", "X"): lambda net, v: net.value_and_grad_batch(v["X"], v["dy"]),
        ("value_and_grad_batch", "dy"): lambda net, v: net.value_and_grad_batch(v["X"], v["dy"]),
    }
    CASE_IDS = [f"{m}-{k}" for m, k in INPUT_ARGUMENTS]

    @pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
    @pytest.mark.parametrize("case", list(INPUT_ARGUMENTS), ids=CASE_IDS)
    def test_misaligned_input_gives_the_aligned_result(case, dtype):
        method, key = case
        rng = np.random.default_rng(7)
        # odd widths, so that the kernels' vector loops have scalar tails that load single elements
        net, weights, alpha = build_net(rng, (13, 9, 5), ["tanh", "relu"], dtype)
        values = clean_inputs(rng, net, dtype, batch=11)
        ref = snapshot_result(INPUT_ARGUMENTS[case](net, values))
        for offset in sorted({1, np.dtype(dtype).itemsize // 2}):
            what = f"{method} with {key} misaligned by {offset} bytes"
            bad = dict(values, **{key: misaligned(values[key], offset)})
            snap = Snapshot(bad[key], weights, alpha)
            note(what)
            assert_same_result(snapshot_result(INPUT_ARGUMENTS[case](net, bad)), ref, what)
            snap.assert_unchanged(what)

    def peak_bytes(call) -> int:
        """The most memory `call` held at once, as tracemalloc sees it (NumPy reports its buffers there)."""
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            call()
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    @pytest.mark.parametrize("case", [c for c in INPUT_ARGUMENTS if c[1] != "dy0"],
                             ids=[i for c, i in zip(INPUT_ARGUMENTS, CASE_IDS) if c[1] != "dy0"])
    def test_misaligned_input_is_converted_once(case):
        """README: misaligned inputs are "converted once": one aligned copy of the argument per call. (A 0-d
        dy's copy is too small to tell apart here; the UBSan run covers it.)"""
        method, key = case
        rng = np.random.default_rng(3)
        batch = 4096 if key == "dy" else 256
        net, _, _ = build_net(rng, (4096, 1) if key == "x" else (64, 1), "tanh", np.float64)
        values = clean_inputs(rng, net, np.float64, batch)
        out = net.new_gradients(batch=batch if method.endswith("_batch") else None)
        call = {  # with out=, so that the call allocates no gradients of its own
            "value_and_grad": lambda v: net.value_and_grad(v["x"], out=out),
            "value_and_grad_batch": lambda v: net.value_and_grad_batch(v["X"], v["dy"], out=out),
        }.get(method, lambda v: INPUT_ARGUMENTS[case](net, v))
        bad = dict(values, **{key: misaligned(values[key])})
        extra = min(peak_bytes(lambda: call(bad)) for _ in range(3)) - min(peak_bytes(lambda: call(values))
                                                                           for _ in range(3))
        nbytes = bad[key].nbytes
        assert nbytes <= extra < 2 * nbytes, \
            f"{method}: a misaligned {key} of {nbytes} bytes made the call hold {extra} more bytes " \
            f"(expected one aligned copy)"

    @fuzz(60)
    @given(arch=architectures(max_depth=3, max_width=6), data=st.data())
    def test_fuzz_misaligned_arguments(arch, data):
        """Any input arguments misaligned (of the network's dtype or the other float dtype): bit for bit the
        call with those arguments converted to aligned arrays of the network's dtype. Any weight, alpha or
        out array misaligned: ValueError naming it."""
        net, weights, alpha, rng = arch.build()
        values = clean_inputs(rng, net, arch.dtype, batch=data.draw(st.integers(0, 5), label="batch"))
        for case, call in INPUT_ARGUMENTS.items():
            bad = dict(values)
            for key in {"x", "dy0", "X", "dy"} & set(values):
                if bad[key].size and data.draw(st.booleans(), label=f"{case[0]}: misalign {key}"):
                    dtype = data.draw(st.sampled_from([arch.dtype, np.float32, np.float64]), label=f"{key} dtype")
                    a = bad[key].astype(dtype)
                    bad[key] = misaligned(a, data.draw(st.integers(1, a.itemsize - 1), label=f"{key} offset"))
            converted = {k: np.array(v, dtype=arch.dtype, order="C") for k, v in bad.items()}  # aligned copies
            what = f"{arch}: {case[0]} with {[(k, v.dtype.name, v.ctypes.data % 8) for k, v in bad.items()]}"
            note(what)
            snap = Snapshot(bad, weights, alpha)
            assert_same_result(snapshot_result(call(net, bad)), snapshot_result(call(net, converted)), what)
            snap.assert_unchanged(what)

        # weights, alpha and out arrays are never copied: a misaligned one is refused, whichever it is
        spec = {"weights": [np.zeros_like(w) for w in weights], "alpha": np.zeros_like(alpha),
                "x": np.zeros_like(values["x"]), "z": [np.zeros(k, arch.dtype) for k in arch.widths],
                "u": [np.zeros(k, arch.dtype) for k in arch.widths[1:]]}
        held = [("weights", t) for t in range(arch.depth)] + [("alpha", None)]
        held += [("out." + f, t) for f in ("weights", "z", "u") for t in range(len(spec[f]))]
        held += [("out.alpha", None), ("out.x", None)]
        field, t = data.draw(st.sampled_from(held), label="misaligned held array")
        name = field if t is None else f"{field}[{t}]"
        note(f"{arch}: {name} misaligned")
        if field in ("weights", "alpha"):
            args = {"weights": list(weights), "alpha": alpha}
            target = args[field]
        else:
            args = {k: (list(v) if isinstance(v, list) else v) for k, v in spec.items()}
            target = args[field[4:]]
        if t is None:
            args[field.removeprefix("out.")] = misaligned(target)
        else:
            target[t] = misaligned(target[t])
        with pytest.raises(ValueError, match="aligned") as err:
            if field in ("weights", "alpha"):
                mlpgrad.MLP(args["weights"], args["alpha"], arch.activation_arg)
            else:
                mlpgrad.Gradients(**args)
        assert str(err.value).startswith(name + " "), f"{name} misaligned: {err.value}"

    # ========================================================================================= changed arrays
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

    def state_of(a):
        return a.ctypes.data, a.shape, a.dtype, a.flags.writeable

    class Held:
        """A network and the arrays it and two out= Gradients (single, batch) hold, with each call's result."""

        def __init__(self, arch, batch: int = 3):
            rng = np.random.default_rng(arch.seed)
            self.arch = arch
            self.net, self.weights, self.alpha = build_net(rng, arch.widths, arch.activation_arg, arch.dtype)
            self.x = make_inputs(rng, arch.widths[0], arch.dtype)
            self.X = make_inputs(rng, arch.widths[0], arch.dtype, batch)
            self.dy = rng.standard_normal(batch).astype(arch.dtype)
            self.g = self.net.new_gradients()
            self.gb = self.net.new_gradients(batch=batch)
            self.net.forward(self.x)  # what backward() differentiates: the pass every single-example call records
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

        def changed(self):
            """The arrays that are no longer as the binding checked them: another buffer, shape or dtype, or
            (an out array) read-only. Network arrays may be read-only."""
            out = set()
            for key, a in self.arrays().items():
                before, now = self.original[key], state_of(a)
                if before[:3] != now[:3] or (key[0] != "net" and not now[3]):
                    out.add(key)
            return out

        def snapshot(self):
            return Snapshot(self.weights, self.alpha, self.g, self.gb, self.x, self.X, self.dy)

    def other_dtype_same_itemsize(a):
        return np.int64 if a.itemsize == 8 else np.int32

    def other_dtype_half_itemsize(a):
        return np.float32 if a.itemsize == 8 else np.float16

    # In-place changes to an array the binding holds. Some leave it as it was checked (resize to its own
    # shape, a square matrix "transposed", a read-only network array): calls must then go on as before.
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

    def check_every_call(held, what: str):
        """A call that uses a changed array is refused with a ValueError naming one it uses, and writes
        nothing; any other call returns bit for bit what it returned before any change."""
        changed = held.changed()
        snap = held.snapshot()
        for call_name, call in CALLS.items():
            used = {key for key in changed if key[0] in ("net", OUT_OF.get(call_name))}
            note(f"{held.arch}: {call_name} after {what}")
            if not used:
                assert_same_result(snapshot_result(call(held)), held.reference[call_name], f"{call_name} after {what}")
                snap = held.snapshot()
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
        """Applies CHANGES[how] to the array `key`, then checks every call; False if NumPy refuses the change."""
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
        assert change(held, key, how), f"NumPy refused {how!r} on {target}"

    class NamesThatChange(list):
        """Activation names whose len() (which the MLP constructor asks for after checking the weights)
        changes an array in place first."""

        def __init__(self, names, array, how):
            super().__init__(names)
            self.array, self.how = array, how

        def __len__(self):
            if self.how:
                CHANGES[self.how](self.array)
                self.how = None
            return list.__len__(self)

    @pytest.mark.parametrize("how", ["dtype half itemsize", "resize grow", "shape reversed", "resize same"])
    @pytest.mark.parametrize("target", ["weights[0]", "weights[1]", "alpha"])
    def test_array_changed_while_the_network_is_built(target, how):
        """The constructor runs user code (the activation sequence) after it checked the arrays: a change made
        there is refused too. (float64 weights[0] turned into float32 in place had twice as many columns of
        half the size: the network read past its end.)"""
        rng = np.random.default_rng(5)
        weights = [rng.standard_normal((3, 4)), rng.standard_normal((2, 3))]
        alpha = rng.standard_normal(2)
        array = alpha if target == "alpha" else weights[int(target[-2])]
        before = state_of(array)
        names = NamesThatChange(["tanh", "relu"], array, how)
        note(f"MLP(...) with activation len() applying {how} to {target}")
        try:
            net = mlpgrad.MLP(weights, alpha, names)
        except ValueError as e:
            assert str(e).startswith(target + " ") and "resized or reallocated" in str(e), str(e)
            return
        assert state_of(array)[:3] == before[:3], f"{how} of {target} while the MLP was built was not refused"
        net.value_and_grad_batch(np.ones((2, 4)))

    @fuzz(60)
    @given(arch=architectures(max_depth=3, max_width=5), data=st.data())
    def test_fuzz_arrays_changed_under_a_network(arch, data):
        """Random in-place changes, one after another, to the arrays a network and its outs hold."""
        held = Held(arch, batch=data.draw(st.integers(0, 4), label="batch"))
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            key = data.draw(st.sampled_from(sorted(held.arrays())), label="array")
            change(held, key, data.draw(st.sampled_from(sorted(CHANGES)), label="change"))
