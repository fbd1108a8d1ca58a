"""Fuzzing the Python boundary: every public constructor, method and property of mlpgrad, called with
generated arguments (hypothesis): random shapes including zero and huge (zero-size) dimensions, every NumPy
dtype, non-contiguous, negative-stride, Fortran-order, misaligned and read-only arrays, 0-d arrays, lists,
None, objects with a broken ``__array__``, overlapping and aliasing ``out`` buffers, mixed dtypes.

Every call must either
  * succeed when (and only when) a small model of the contract (``*_model`` in fuzzing.py, which holds the
    machinery these fuzz files share) says the arguments are
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

Beyond arguments (test_fuzz_objects.py): classes deriving from MLP and Gradients in any combination (also
hiding mlpgrad's ``__init_subclass__``), user callbacks (``__len__``, ``__getitem__``, ``__array__``,
``__float__``, ``__index__``) that re-enter the very object being built or called (``__init__``,
``__setstate__``, calls, pickling), every pickle protocol, and activation names and keyword names that are not
str or not valid Unicode. Instances made by ``__new__`` without ``__init__``: test_uninitialized.py.
"""
from __future__ import annotations

import os

import numpy as np

CHILD = os.environ.get("MLPGRAD_FUZZ_CHILD") == "1"

if not CHILD:
    from fuzzing import run_fuzz_child

    def test_fuzz_targets_in_subprocess(tmp_path):
        run_fuzz_child(__file__, tmp_path)

else:
    # =============================================================================== the fuzz targets
    from hypothesis import given
    from hypothesis import strategies as st

    import mlpgrad
    from conftest import architectures, make_inputs, make_network, out_spec
    from network_cases import oracle as oracle_with_biases

    from fuzzing import (ABSENT, SCALARS, BrokenSequence, LyingList, attempt, converted, describe, fuzz,
                         gradients_model, items, kwargs_of, mlp_model, mutate, optional_biases, real_array,
                         same_bits, same_gradients, scalar_model)

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
