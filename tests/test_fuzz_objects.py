"""Fuzzing mlpgrad's objects rather than their arguments (test_fuzz.py does those), with the same rules:
every call returns the right result or raises TypeError / ValueError / MemoryError with a message, never
crashes, and never writes the caller's weights. Generated here:

  * classes deriving from MLP, Gradients, subclasses of them, plain mixins and a mixin that hides mlpgrad's
    ``__init_subclass__``, in any order; every use of their instances, ``__class__`` assignment included;
  * user callbacks (an activation sequence's ``__len__``/``__getitem__``, ``__array__``, ``__float__``,
    ``__index__``) that re-enter the very object being built or called: its ``__init__``, ``__setstate__``,
    its calls, pickling, its gradient buffers' ``__init__``;
  * pickling under every protocol, of MLP, of a subclass, of Gradients (always refused);
  * activation names and keyword names that are not str, str subclasses, or not valid Unicode (lone
    surrogates), at every entry point.

Like test_fuzz.py, the targets run in a child interpreter (``test_fuzz_object_targets_in_subprocess``), so
that a crash is reported with the last call attempted.
"""
from __future__ import annotations

import copy
import gc
import os
import pickle

import numpy as np

CHILD = os.environ.get("MLPGRAD_FUZZ_CHILD") == "1"

if not CHILD:
    from fuzzing import run_fuzz_child

    def test_fuzz_object_targets_in_subprocess(tmp_path):
        run_fuzz_child(__file__, tmp_path)

else:
    from hypothesis import given
    from hypothesis import strategies as st

    import mlpgrad
    from conftest import ACTIVATIONS, architectures, make_inputs, make_network, out_spec
    from fuzzing import attempt, describe, fuzz, note, same_bits, same_gradients

    PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))

    # ------------------------------------------------------------------------- classes
    class Plain:
        pass

    class HidesInitSubclass:
        """A mixin whose __init_subclass__ does not call super(): mlpgrad's class-creation check never runs."""

        def __init_subclass__(cls, **kwargs):
            pass

    class SubMLP(mlpgrad.MLP):
        pass

    class SubGradients(mlpgrad.Gradients):
        pass

    BASES = {"MLP": mlpgrad.MLP, "Gradients": mlpgrad.Gradients, "SubMLP": SubMLP, "SubGradients": SubGradients,
             "Plain": Plain, "Hider": HidesInitSubclass}

    def instance_uses(obj, net, weights, alpha, x, X, widths, dtype):
        """Every way to use `obj`, as (name, call)."""
        uses = [
            ("MLP.__init__", lambda: mlpgrad.MLP.__init__(obj, weights, alpha)),
            ("Gradients.__init__", lambda: mlpgrad.Gradients.__init__(obj, **out_spec(widths, dtype))),
            ("MLP.__setstate__", lambda: mlpgrad.MLP.__setstate__(obj, net.__getstate__())),
            ("forward", lambda: mlpgrad.MLP.forward(obj, x)),
            ("value_and_grad", lambda: mlpgrad.MLP.value_and_grad(obj, x)),
            ("backward", lambda: mlpgrad.MLP.backward(obj)),
            ("value_and_grad_batch", lambda: mlpgrad.MLP.value_and_grad_batch(obj, X)),
            ("new_gradients", lambda: mlpgrad.MLP.new_gradients(obj)),
            ("repr", lambda: repr(obj)),
            ("MLP.widths", lambda: mlpgrad.MLP.widths.__get__(obj)),
            ("MLP.z", lambda: mlpgrad.MLP.z.__get__(obj)),
            ("Gradients.x", lambda: mlpgrad.Gradients.x.__get__(obj)),
            ("Gradients.batch", lambda: mlpgrad.Gradients.batch.__get__(obj)),
            ("as out=", lambda: net.value_and_grad(x, out=obj)),
            ("as batch out=", lambda: net.value_and_grad_batch(X, out=obj)),
            ("copy", lambda: copy.copy(obj)),
        ]
        uses += [(f"__class__ = {n}", (lambda c: lambda: setattr(obj, "__class__", c))(c)) for n, c in BASES.items()]
        uses += [(f"pickle protocol {p}", (lambda p: lambda: pickle.dumps(obj, protocol=p))(p)) for p in PROTOCOLS]
        return uses

    @fuzz(60)
    @given(arch=architectures(max_depth=2, max_width=3, min_depth=1), data=st.data())
    def test_fuzz_mixed_bases(arch, data):
        names = data.draw(st.lists(st.sampled_from(sorted(BASES)), min_size=1, max_size=3, unique=True), label="bases")
        bases = tuple(BASES[n] for n in names)
        mixed = any(issubclass(b, mlpgrad.MLP) for b in bases) and any(issubclass(b, mlpgrad.Gradients) for b in bases)
        hidden = "Hider" in names
        desc = f"class C({', '.join(names)})"
        # mixed: refused at creation unless a mixin hides the check; otherwise created (or an MRO TypeError)
        name = "C_" + "_".join(names)  # a module global, so that pickle can find it
        ok, cls = attempt(desc, lambda: type(name, bases, {}), valid=False if mixed and not hidden else None)
        if not ok:
            assert isinstance(cls, TypeError), f"{desc}: {cls!r}"
            return
        globals()[name] = cls
        net, weights, alpha, rng = arch.build()
        x = make_inputs(rng, arch.widths[0], arch.dtype)
        X = make_inputs(rng, arch.widths[0], arch.dtype, batch=2)
        obj = cls.__new__(cls)
        for i in range(data.draw(st.integers(1, 8), label="uses")):
            use_name, use = data.draw(st.sampled_from(instance_uses(obj, net, weights, alpha, x, X, arch.widths,
                                                                arch.dtype)), label=f"use {i}")
            is_mlp, is_gradients = isinstance(obj, mlpgrad.MLP), isinstance(obj, mlpgrad.Gradients)
            ok, r = attempt(f"{desc}: {use_name}", use, valid=False if is_mlp and is_gradients else None,
                            inputs=[weights, alpha, x, X], runtime_error=(use_name == "backward" and not is_gradients))
            if is_mlp and is_gradients:
                assert isinstance(r, TypeError), f"{desc}: {use_name} on a mixed instance: {r!r}"
            elif ok and use_name == "forward":  # a real network: the right number
                same_bits(r, mlpgrad.MLP(obj.weights, obj.alpha, obj.activations).forward(x), f"{desc}: forward")
        del obj
        gc.collect(0)  # the young generation: whatever the example left in a cycle is freed now, not later

    # ------------------------------------------------------------------------- re-entrant callbacks
    class Reenters:
        """Runs `action` (once, then never again) from a user callback; may raise afterwards."""

        def __init__(self, action, raise_after):
            self.action, self.raise_after, self.outcomes = action, raise_after, []

        def fire(self):
            action, self.action = self.action, None
            if action is not None:
                try:
                    action()
                    self.outcomes.append("returned")
                except Exception as e:  # noqa: BLE001 - the inner call's own error is part of the test
                    self.outcomes.append(type(e).__name__)
                if self.raise_after:
                    raise ZeroDivisionError("raised by a re-entrant callback")

    class ReentrantNames(Reenters):
        def __init__(self, names, where, action, raise_after):
            super().__init__(action, raise_after)
            self.names, self.where = list(names), where

        def __len__(self):
            if self.where == "__len__":
                self.fire()
            return len(self.names)

        def __getitem__(self, i):
            if self.where == "__getitem__":
                self.fire()
            return self.names[i]

    class ReentrantArray(Reenters):
        def __init__(self, a, action, raise_after):
            super().__init__(action, raise_after)
            self.a = a

        def __array__(self, dtype=None, copy=None):
            self.fire()
            return self.a if dtype is None else self.a.astype(dtype)

    class ReentrantFloat(Reenters):
        def __init__(self, v, action, raise_after):
            super().__init__(action, raise_after)
            self.v = v

        def __float__(self):
            self.fire()
            return self.v

    class ReentrantIndex(Reenters):
        def __init__(self, v, action, raise_after):
            super().__init__(action, raise_after)
            self.v = v

        def __index__(self):
            self.fire()
            return self.v

    ACTIONS = ["__init__", "__setstate__", "forward", "value_and_grad out=", "value_and_grad_batch out=", "backward",
               "new_gradients", "repr", "widths", "gradients __init__", "copy"] + [f"pickle {p}" for p in PROTOCOLS]

    def action_on(target, name, weights, alpha, x, X, g, gb, widths, dtype):
        """The call `name` on `target` (the object being built or called) with the test's clean arguments."""
        return {
            "__init__": lambda: target.__init__(weights, alpha, "tanh"),
            "__setstate__": lambda: target.__setstate__((1, tuple(weights), alpha, ("tanh",) * len(weights))),
            "forward": lambda: target.forward(x),
            "value_and_grad out=": lambda: target.value_and_grad(x, out=g),
            "value_and_grad_batch out=": lambda: target.value_and_grad_batch(X, out=gb),
            "backward": lambda: target.backward(out=g),
            "new_gradients": lambda: target.new_gradients(),
            "repr": lambda: repr(target),
            "widths": lambda: target.widths,
            "gradients __init__": lambda: g.__init__(**out_spec(widths, dtype)),
            "copy": lambda: copy.deepcopy(target),
            **{f"pickle {p}": (lambda p: lambda: pickle.loads(pickle.dumps(target, protocol=p)))(p) for p in PROTOCOLS},
        }[name]

    @fuzz(120)
    @given(arch=architectures(max_depth=2, max_width=3, min_depth=1), data=st.data())
    def test_fuzz_reentrant_callbacks(arch, data):
        net, weights, alpha, rng = arch.build()
        ref = mlpgrad.MLP(weights, alpha, arch.activation_arg)
        dtype, widths = arch.dtype, arch.widths
        x = make_inputs(rng, widths[0], dtype)
        X = make_inputs(rng, widths[0], dtype, batch=2)
        dy = rng.standard_normal(2).astype(dtype)
        g, gb = net.new_gradients(), net.new_gradients(batch=2)
        scenario = data.draw(st.sampled_from(["MLP(...)", "__setstate__", "forward", "value_and_grad", "backward",
                                              "forward_batch", "value_and_grad_batch"]), label="scenario")
        building = scenario in ("MLP(...)", "__setstate__")
        target = mlpgrad.MLP.__new__(mlpgrad.MLP) if building else net
        action = data.draw(st.sampled_from(ACTIONS), label="action")
        raise_after = data.draw(st.booleans(), label="callback raises afterwards")
        fire = action_on(target, action, weights, alpha, x, X, g, gb, widths, dtype)
        names = net.activations
        if building:
            cb = ReentrantNames(names, data.draw(st.sampled_from(["__len__", "__getitem__"]), label="where"), fire,
                                raise_after)
            call = ((lambda: target.__init__(weights, alpha, cb)) if scenario == "MLP(...)" else
                    (lambda: target.__setstate__((1, tuple(weights), alpha, cb))))
            expected = None
        else:
            net.forward(x)  # so that backward() has a forward pass to refer to
            kind = data.draw(st.sampled_from(["__array__", "__float__", "__index__"]), label="callback")
            if kind != "__array__" and scenario in ("forward", "forward_batch"):
                scenario = "value_and_grad"  # the scalar that runs user code is dy
            if scenario in ("forward", "value_and_grad", "forward_batch", "value_and_grad_batch") and kind == "__array__":
                arg = x if scenario in ("forward", "value_and_grad") else X
                cb = ReentrantArray(arg, fire, raise_after)
                call = {"forward": lambda: net.forward(cb), "value_and_grad": lambda: net.value_and_grad(cb, out=g),
                        "forward_batch": lambda: net.forward_batch(cb),
                        "value_and_grad_batch": lambda: net.value_and_grad_batch(cb, dy, out=gb)}[scenario]
                expected = {"forward": lambda: ref.forward(x), "value_and_grad": lambda: ref.value_and_grad(x),
                            "forward_batch": lambda: ref.forward_batch(X),
                            "value_and_grad_batch": lambda: ref.value_and_grad_batch(X, dy)}[scenario]
            elif scenario == "value_and_grad_batch":
                cb = ReentrantArray(dy, fire, raise_after)
                call, expected = lambda: net.value_and_grad_batch(X, cb, out=gb), lambda: ref.value_and_grad_batch(X, dy)
            else:  # a scalar dy
                cb = ReentrantFloat(0.5, fire, raise_after) if kind != "__index__" else ReentrantIndex(2, fire, raise_after)
                value = 0.5 if kind != "__index__" else 2.0
                if scenario == "backward":
                    call, expected = lambda: net.backward(cb, out=g), lambda: (None, ref.value_and_grad(x, value)[1])
                else:
                    call, expected = lambda: net.value_and_grad(x, cb, out=g), lambda: ref.value_and_grad(x, value)
        desc = f"{scenario} whose {type(cb).__name__} runs {action} on it (raises after: {raise_after})"
        ok, r = attempt(desc, call, valid=False if raise_after else None, inputs=[weights, alpha, x, X, dy])
        if ok and expected is not None:  # the inner call used the same inputs: the outer result is exact
            want = expected()
            got_y, got_g = (None, r) if scenario == "backward" else (r if isinstance(r, tuple) else (r, None))
            want_y, want_g = want if isinstance(want, tuple) else (want, None)
            if want_y is not None:
                same_bits(got_y, want_y, desc)
            if want_g is not None:
                same_gradients(got_g, want_g, desc)
        # Afterwards: the network is what it was; a built target is either unusable or a consistent network.
        note(f"{desc}: checking the objects afterwards")
        same_bits(net.forward(x), ref.forward(x), f"{desc}: net afterwards")
        assert net.widths == ref.widths and net.activations == ref.activations
        if building:
            try:
                acts = target.activations
            except TypeError:
                pass  # neither call committed: the instance stays uninitialised
            else:
                same_bits(target.forward(x), mlpgrad.MLP(weights, alpha, acts).forward(x), f"{desc}: target")
        del target, cb, call
        gc.collect(0)  # the young generation: whatever the example left in a cycle is freed now, not later

    # ------------------------------------------------------------------------- pickle protocols
    @fuzz(60)
    @given(arch=architectures(max_depth=3, max_width=4), protocol=st.sampled_from(PROTOCOLS), data=st.data())
    def test_fuzz_pickle_protocols(arch, protocol, data):
        rng = np.random.default_rng(arch.seed)
        weights, alpha = make_network(rng, arch.widths, arch.dtype)
        cls = data.draw(st.sampled_from([mlpgrad.MLP, SubMLP]), label="class")
        net = cls(weights, alpha, arch.activation_arg)
        how = data.draw(st.sampled_from(["pickle", "copy", "deepcopy"]), label="how")
        desc = f"{how} of {cls.__name__}{arch.widths} {np.dtype(arch.dtype).name} (protocol {protocol})"
        copier = {"pickle": lambda: pickle.loads(pickle.dumps(net, protocol=protocol)), "copy": lambda: copy.copy(net),
                  "deepcopy": lambda: copy.deepcopy(net)}[how]
        ok, again = attempt(desc, copier, valid=True, inputs=[weights, alpha])
        assert type(again) is cls and again.widths == net.widths and again.activations == net.activations
        assert again.dtype == net.dtype and all(np.array_equal(a, b) for a, b in zip(again.weights, weights))
        x = make_inputs(rng, arch.widths[0], arch.dtype)
        y, g = again.value_and_grad(x)
        y_ref, g_ref = net.value_and_grad(x)
        same_bits(y, y_ref, desc)
        same_gradients(g, g_ref, desc)
        # Gradients, whatever their kind, refuse with one TypeError under every protocol
        batch = data.draw(st.sampled_from([None, 0, 2]), label="gradients batch")
        grads = data.draw(st.sampled_from(["new", "wrapped", "subclass"]), label="gradients")
        spec = out_spec(arch.widths, arch.dtype, batch=batch)
        out = {"new": lambda: net.new_gradients(batch), "wrapped": lambda: mlpgrad.Gradients(**spec),
               "subclass": lambda: SubGradients(**spec)}[grads]()
        for p in PROTOCOLS:
            ok, e = attempt(f"pickle {grads} Gradients (protocol {p})", lambda: pickle.dumps(out, protocol=p),
                            valid=False)
            name = type(out).__name__ if grads == "subclass" else "mlpgrad._core.Gradients"
            assert isinstance(e, TypeError) and str(e) == f"cannot pickle '{name}' object", repr(e)

    # ------------------------------------------------------------------------- names and keywords
    SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
    TEXT = st.one_of(st.text(max_size=8), st.lists(st.one_of(SURROGATE, st.characters()), max_size=6).map("".join),
                     st.sampled_from(ACTIVATIONS), st.sampled_from(["Relu", "relu ", "tanh\0", "sigmoid\udc80", "\udcff"]))

    class StrSubclass(str):
        """A str subclass whose __str__ must not be consulted (the binding reads the characters)."""

        def __str__(self):
            raise ZeroDivisionError("StrSubclass.__str__")

    NAME = st.one_of(TEXT, TEXT.map(StrSubclass), st.sampled_from([b"relu", bytearray(b"tanh"), b"t", 3, None, 1.5]))

    def escaped(text):
        """The text as the binding shows it: lone surrogates and NUL backslash-escaped."""
        return str.encode(text, "utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\x00")

    @fuzz(80)
    @given(arch=architectures(max_depth=3, max_width=3), data=st.data())
    def test_fuzz_activation_names(arch, data):
        rng = np.random.default_rng(arch.seed)
        weights, alpha = make_network(rng, arch.widths, arch.dtype)
        depth = len(weights)
        if data.draw(st.booleans(), label="one name"):
            activation = data.draw(NAME, label="activation")
            names = [activation]
        else:
            n = data.draw(st.sampled_from([depth, depth, depth + 1, max(0, depth - 1)]), label="how many")
            names = data.draw(st.lists(NAME, min_size=n, max_size=n), label="names")
            activation = data.draw(st.sampled_from([list, tuple]), label="sequence")(names)
        all_str = all(isinstance(a, str) for a in names)
        valid = all_str and all(str.__str__(a) in ACTIVATIONS for a in names) and (
            isinstance(activation, str) or len(names) == depth)
        desc = f"MLP(..., activation={describe(activation)})"
        ok, r = attempt(desc, lambda: mlpgrad.MLP(weights, alpha, activation), valid=valid, inputs=[weights, alpha])
        if ok:
            assert r.activations == tuple(str.__str__(a) for a in names) * (depth if isinstance(activation, str) else 1)
            return
        assert "activation" in str(r), f"{desc}: the message does not name the argument: {r}"
        if isinstance(activation, str) and str.__str__(activation) not in ACTIVATIONS:
            assert isinstance(r, ValueError) and f"'{escaped(activation)}'" in str(r), f"{desc}: {r!r}"
        elif not all_str and (isinstance(activation, str) or len(names) == depth):
            assert isinstance(r, TypeError), f"{desc}: {r!r}"

    KEYWORD = st.one_of(TEXT, st.sampled_from(["weights", "alpha", "activation", "activations", "x", "X", "dy", "out",
                                               "batch", "state", "protocol", "z", "u", "outt", "Dy"]))

    def entry_points(net, weights, alpha, x, X, dtype, widths):
        """name -> (call(**kw), parameter names, how many of them are passed by position)."""
        spec = out_spec(widths, dtype)
        return {
            "MLP": (lambda **kw: mlpgrad.MLP(weights, alpha, **kw), ("weights", "alpha", "activation"), 2),
            "Gradients": (lambda **kw: mlpgrad.Gradients(spec["weights"], spec["alpha"], spec["x"], **kw),
                          ("weights", "alpha", "x", "z", "u"), 3),
            "forward": (lambda **kw: net.forward(x, **kw), ("x",), 1),
            "backward": (lambda **kw: net.backward(**kw), ("dy", "out"), 0),
            "value_and_grad": (lambda **kw: net.value_and_grad(x, **kw), ("x", "dy", "out"), 1),
            "forward_batch": (lambda **kw: net.forward_batch(X, **kw), ("X",), 1),
            "value_and_grad_batch": (lambda **kw: net.value_and_grad_batch(X, **kw), ("X", "dy", "out"), 1),
            "new_gradients": (lambda **kw: net.new_gradients(**kw), ("batch",), 0),
            "MLP.__setstate__": (lambda **kw: mlpgrad.MLP.__new__(mlpgrad.MLP).__setstate__(**kw), ("state",), 0),
            "MLP.__getstate__": (lambda **kw: net.__getstate__(**kw), (), 0),
            "__reduce_ex__": (lambda **kw: net.__reduce_ex__(2, **kw), ("protocol",), 1),
            "__reduce__": (lambda **kw: net.__reduce__(**kw), (), 0),
        }

    @fuzz(120)
    @given(arch=architectures(max_depth=2, max_width=3), data=st.data())
    def test_fuzz_keyword_names(arch, data):
        net, weights, alpha, rng = arch.build()
        x = make_inputs(rng, arch.widths[0], arch.dtype)
        X = make_inputs(rng, arch.widths[0], arch.dtype, batch=2)
        net.forward(x)
        values = {"weights": weights, "alpha": alpha, "activation": "relu", "x": x, "X": X, "dy": 1.0, "out": None,
                  "batch": None, "state": net.__getstate__(), "protocol": 2, "z": None, "u": None}
        points = entry_points(net, weights, alpha, x, X, arch.dtype, arch.widths)
        name = data.draw(st.sampled_from(sorted(points)), label="entry point")
        call, params, positional = points[name]
        keys = data.draw(st.lists(KEYWORD, min_size=1, max_size=2, unique=True), label="keywords")
        if name == "value_and_grad_batch":
            values["dy"] = None  # (a batch dy is an array of B)
        kwargs = {k: values.get(k, 1) for k in keys}
        unknown = [k for k in keys if k not in params]
        twice = [k for k in keys if k in params[:positional]]
        desc = f"{name}(**{{{', '.join(repr(k) for k in keys)}}})"
        ok, r = attempt(desc, lambda: call(**kwargs), valid=not unknown and not twice, inputs=[weights, alpha, x, X])
        if unknown or twice:
            assert isinstance(r, TypeError), f"{desc}: {r!r}"
            msg = str(r)
            assert msg.startswith(f"{name}() ") and "\n" not in msg and len(msg) < 300, f"{desc}: {msg!r}"
            assert any(f"'{escaped(k)}'" in msg for k in unknown + twice), f"{desc}: the message names none: {msg!r}"
