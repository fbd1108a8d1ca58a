"""Fuzzing the calls of networks with biases, an output bias and vector outputs (alpha of shape (K_T, m)), with
the rules of test_fuzz.py (which fuzzes the notes' network, one output, no biases): every call either succeeds
when a model of the contract says its arguments are valid, returning bit for bit what a call with clean
arguments returns, or raises TypeError / ValueError / MemoryError with a message and leaves every caller buffer
unchanged (RuntimeError only for a backward pass with no forward pass to refer to). Inputs, weights and biases
are never written.

Calls: forward, value_and_grad, backward (single example; dy a number for one output, an (m,) array for m),
forward_batch, value_and_grad_batch, backward_batch (dy (B,) or (B, m)), in random order on one network, with
dy and x/X drawn from test_fuzz.py's variants and out from: absent, None, fresh, parameter-only, another
network's gradients of the same shapes, of the other dtype, of a network without biases or with another m,
single-example gradients for a batch call and the reverse.

Like test_fuzz.py, the targets run in a child interpreter, so that a crash is reported with the last call.
"""
from __future__ import annotations

import os

import numpy as np

CHILD = os.environ.get("MLPGRAD_FUZZ_CHILD") == "1"

if not CHILD:
    from fuzzing import run_fuzz_child

    def test_fuzz_general_call_targets_in_subprocess(tmp_path):
        run_fuzz_child(__file__, tmp_path)

else:
    from hypothesis import given
    from hypothesis import strategies as st

    import mlpgrad
    from conftest import architectures, make_inputs
    from fuzzing import (ABSENT, SCALARS, attempt, converted, describe, fuzz, kwargs_of, mutate, real_array,
                         same_bits, same_gradients, scalar_model)

    def general_network(data, arch):
        """A network of arch's widths with m outputs (None: a 1-D alpha) and, maybe, biases of random values."""
        m = data.draw(st.one_of(st.none(), st.integers(1, 3)), label="outputs")
        biases = data.draw(st.booleans(), label="biases")
        net = mlpgrad.MLP.random(arch.widths, arch.activation_arg, outputs=m, biases=biases, dtype=arch.dtype,
                                 seed=arch.seed)
        rng = np.random.default_rng(arch.seed + 1)
        for b in list(net.biases or []) + ([net.output_bias] if biases else []):
            b[...] = rng.uniform(-0.5, 0.5, b.shape)
        return net, m

    def dy_variant(data, clean):
        """dy: not passed, None, the clean array (or number), a variant of it, or one of test_fuzz's scalars."""
        how = data.draw(st.sampled_from(["absent", "none", "clean", "clean", "variant", "scalar"]), label="dy")
        if how == "absent":
            return ABSENT
        if how == "none":
            return None
        if how == "scalar":
            return data.draw(st.sampled_from(SCALARS), label="dy scalar")
        if how == "clean" or np.ndim(clean) == 0:
            return clean
        return mutate(data, np.asarray(clean), "dy")

    def dy_model(dy, shape, dtype):
        """(valid, the clean dy) for a dy argument that must have `shape` (() for one output of a single
        example: a number, 1.0 when not passed, None refused); an array's default (absent or None) is ones."""
        if shape == ():
            value = scalar_model(dy)
            return value is not None, value
        if dy is ABSENT or dy is None:
            return True, None
        a = real_array(dy)
        valid = a is not None and a.shape == shape
        return valid, converted(dy, dtype) if valid else None

    def out_variant(data, net, m, batch):
        """(label, out, valid) for a call on `net` (batch None: a single-example call)."""
        has_biases = net.biases is not None

        def twin(outputs=m, biases=has_biases, dtype=net.dtype):  # another network's gradients
            return mlpgrad.MLP.random(net.widths, outputs=outputs, biases=biases, dtype=dtype, seed=1).new_gradients(
                batch=batch)

        variants = {  # label: (out, valid)
            "absent": lambda: (ABSENT, True),
            "none": lambda: (None, True),
            "fresh": lambda: (net.new_gradients(batch=batch), True),
            # fits any batch; only the batch calls take it
            "parameter_only": lambda: (net.new_gradients(batch=(batch or 0) + 2, x=False), batch is not None),
            "other_net": lambda: (twin(), True),
            "other_dtype": lambda: (twin(dtype=np.float32 if net.dtype == np.float64 else np.float64), False),
            "other_biases": lambda: (twin(biases=not has_biases), False),
            "other_outputs": lambda: (twin(outputs=(m or 1) + 1), False),  # a 1-D alpha is m = 1: 2 then
            "single_vs_batch": lambda: (net.new_gradients(batch=None if batch is not None else 2), False),
        }
        label = data.draw(st.sampled_from(sorted(variants) + ["fresh"]), label="out")
        return (label, *variants[label]())

    @fuzz(90)
    @given(arch=architectures(max_depth=3, max_width=4), data=st.data())
    def test_fuzz_general_calls(arch, data):
        net, m = general_network(data, arch)
        params = [*net.weights, net.alpha, *(net.biases or []), *([] if net.output_bias is None else [net.output_bias])]
        ref = mlpgrad.MLP(net.weights, net.alpha, net.activations, biases=net.biases, output_bias=net.output_bias)
        dtype, K0 = net.dtype, net.widths[0]
        rng = np.random.default_rng(arch.seed + 2)
        one = () if m is None else (m,)  # the shape of one example's ŷ and dy
        last_x = last_X = None  # inputs of this thread's last successful forward / batch forward on `net`
        for i in range(data.draw(st.integers(1, 6), label="calls")):
            method = data.draw(st.sampled_from(["forward", "value_and_grad", "backward", "forward_batch",
                                                "value_and_grad_batch", "backward_batch"]), label=f"call {i}")
            batch_call = method.endswith("_batch")
            B = data.draw(st.integers(0, 3), label="B") if batch_call else None
            if method in ("forward", "value_and_grad", "forward_batch", "value_and_grad_batch"):
                x0 = make_inputs(rng, K0, dtype, batch=B)
                x = mutate(data, x0, "x")
                xa = real_array(x)
                x_valid = xa is not None and xa.shape[-1:] == (K0,) and xa.ndim == (2 if batch_call else 1)
                if batch_call and x_valid:
                    B = xa.shape[0]
            else:
                x, x_valid = None, True
                if batch_call and last_X is not None:
                    B = len(last_X)
            if method in ("forward", "forward_batch"):
                desc = f"{method}({describe(x)}) on {net!r}"
                ok, y = attempt(desc, lambda: getattr(net, method)(x), valid=x_valid, inputs=[params, x])
                if ok:
                    clean = converted(x, dtype)
                    same_bits(y, getattr(ref, method)(clean), desc)
                    if batch_call:
                        last_X = clean
                    else:
                        last_x = clean
                        assert isinstance(y, float) if m is None else y.shape == one
                continue
            dy_shape = (B,) + one if batch_call else one
            clean_dy = rng.standard_normal(dy_shape).astype(dtype) if dy_shape else 0.75
            dy = dy_variant(data, clean_dy)
            dy_valid, dy_value = dy_model(dy, dy_shape, dtype)
            label, out, out_valid = out_variant(data, net, m, B)
            outputs = [out] if isinstance(out, mlpgrad.Gradients) else []
            call = kwargs_of(dy=dy, out=out)
            desc = f"{method}({describe(x) + ', ' if x is not None else ''}dy={describe(dy)}, out={label}) on {net!r}"
            if method in ("value_and_grad", "value_and_grad_batch"):
                ok, r = attempt(desc, lambda: getattr(net, method)(x, **call), valid=x_valid and dy_valid and out_valid,
                                inputs=[params, x, dy], outputs=outputs)
                if not ok:
                    continue
                clean = converted(x, dtype)
                y_ref, g_ref = getattr(ref, method)(clean, dy_value)
                same_bits(r[0], y_ref, desc + " yhat")
                got = r[1]
                if batch_call:
                    last_X = clean
                else:
                    last_x = clean
            else:
                recorded = last_X if batch_call else last_x
                if batch_call and recorded is not None and dy_shape != (len(recorded),) + one:
                    dy_valid = False
                ok, got = attempt(desc, lambda: getattr(net, method)(**call),
                                  valid=recorded is not None and dy_valid and out_valid, inputs=[params, dy],
                                  outputs=outputs, runtime_error=recorded is None)
                if not ok:
                    continue
                forward = ref.value_and_grad_batch if batch_call else ref.value_and_grad
                _, g_ref = forward(recorded, dy_value)
            if isinstance(out, mlpgrad.Gradients):
                assert got is out, f"{desc}: did not return out"
            same_gradients(got, g_ref, desc)
