#!/usr/bin/env python3
"""Writes tests/data/oracle_vectors.txt: values computed by the pure-Python oracle
(python/mlpgrad/reference.py) that the C++ tests (cpp/tests/test_oracle.cpp) check the core against,
so that both languages agree on the same numbers.

    python3 tests/data/make_oracle_vectors.py           # (re)write the file
    python3 tests/data/make_oracle_vectors.py --check   # exit 1 if the file is stale (used by .ci/cpp.sh)

reference.py is loaded by file path, so neither NumPy nor the compiled extension is needed.

File format (plain text, one record per line, whitespace separated, '#' starts a comment line):

    case <name>                  starts a case
    kind single|batch
    widths K_0 ... K_T
    activations <T names>        (empty when T = 0)
    outputs <m>                  only for vector outputs (alpha 2-D); absent: one output, m = 1
    W<t> <K_{t+1}*K_t numbers>   weights[t] row-major, t = 0..T-1
    b<t> <K_{t+1} numbers>       biases[t], only for networks with biases
    alpha <K_T*m numbers>        row-major (K_T x m)
    beta <m numbers>             only for networks with an output bias
    single: x <K_0>, dy <m>, yhat <m>, dW<t>, dalpha, dx, dz<t> (t = 0..T), du<t> (t = 1..T),
            db<t> and dbeta when the network has them
    batch:  batch <B>, X <B*K_0 row-major>, dy <B*m>, yhat <B*m>, dW<t>, dalpha, dX <B*K_0>,
            db<t> and dbeta when the network has them
    end

Numbers are Python's repr of a double (shortest round trip), so strtod reads them back exactly. Inputs
are multiples of 1/1024 (exact in float and double). Gradients are of dy*yhat (single) or
sum_b dy_b*yhat_b (batch), exactly as reference.value_and_grad / value_and_grad_batch define them.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE_PATH = HERE.parents[1] / "python" / "mlpgrad" / "reference.py"
OUTPUT = HERE / "oracle_vectors.txt"


def load_reference():
    name = "_mlpgrad_reference_for_vectors"
    spec = importlib.util.spec_from_file_location(name, REFERENCE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


def dyadic(rng: random.Random, scale: float) -> float:
    """A uniform number in [-scale, scale], rounded to a multiple of 1/1024 (exact in float32)."""
    return round(rng.uniform(-scale, scale) * 1024) / 1024


def random_weights(rng, widths, gain=1.0):
    return [[[dyadic(rng, gain * 1.5 / math.sqrt(widths[t])) for _ in range(widths[t])]
             for _ in range(widths[t + 1])] for t in range(len(widths) - 1)]


def fmt(values) -> str:
    return " ".join(repr(float(v)) for v in values)


def flat(matrix):
    return [v for row in matrix for v in row]


def network_lines(name, kind, widths, activations, weights, alpha, biases, output_bias):
    T = len(widths) - 1
    lines = [f"case {name}", f"kind {kind}", "widths " + " ".join(map(str, widths)),
             "activations " + " ".join(activations)]
    vector_output = isinstance(alpha[0], list)
    if vector_output:
        lines.append(f"outputs {len(alpha[0])}")
    lines += [f"W{t} {fmt(flat(weights[t]))}" for t in range(T)]
    if biases is not None:
        lines += [f"b{t} {fmt(biases[t])}" for t in range(T)]
    lines.append(f"alpha {fmt(flat(alpha) if vector_output else alpha)}")
    if output_bias is not None:
        lines.append(f"beta {fmt(output_bias if vector_output else [output_bias])}")
    return lines


def as_list(v):
    return list(v) if isinstance(v, list) else [v]


def bias_gradient_lines(g):
    lines = [f"db{t} {fmt(v)}" for t, v in enumerate(g.biases)] if g.biases is not None else []
    if g.output_bias is not None:
        lines.append(f"dbeta {fmt(as_list(g.output_bias))}")
    return lines


def single_case(ref, name, widths, activations, weights, alpha, x, dy, biases=None, output_bias=None):
    kw = dict(biases=biases, output_bias=output_bias)
    yhat, g = ref.value_and_grad(weights, alpha, x, activations, dy, **kw)
    T = len(widths) - 1
    vector_output = isinstance(alpha[0], list)
    lines = network_lines(name, "single", widths, activations, weights, alpha, biases, output_bias)
    lines += [f"x {fmt(x)}", f"dy {fmt(as_list(dy))}", f"yhat {fmt(as_list(yhat))}"]
    lines += [f"dW{t} {fmt(flat(g.weights[t]))}" for t in range(T)]
    lines += [f"dalpha {fmt(flat(g.alpha) if vector_output else g.alpha)}", f"dx {fmt(g.x)}"]
    lines += [f"dz{t} {fmt(g.z[t])}" for t in range(T + 1)]
    lines += [f"du{t + 1} {fmt(g.u[t])}" for t in range(T)]
    return lines + bias_gradient_lines(g) + ["end"]


def batch_case(ref, name, widths, activations, weights, alpha, X, dy, biases=None, output_bias=None):
    kw = dict(biases=biases, output_bias=output_bias)
    yhats, g = ref.value_and_grad_batch(weights, alpha, X, activations, dy, **kw)
    T = len(widths) - 1
    vector_output = isinstance(alpha[0], list)
    lines = network_lines(name, "batch", widths, activations, weights, alpha, biases, output_bias)
    lines += [f"batch {len(X)}", f"X {fmt(flat(X))}", f"dy {fmt(flat(dy) if vector_output else dy)}",
              f"yhat {fmt(flat(yhats) if vector_output else yhats)}"]
    lines += [f"dW{t} {fmt(flat(g.weights[t]))}" for t in range(T)]
    lines += [f"dalpha {fmt(flat(g.alpha) if vector_output else g.alpha)}", f"dX {fmt(flat(g.x))}"]
    return lines + bias_gradient_lines(g) + ["end"]


def generate(ref) -> str:
    rng = random.Random(20240603)
    out = ["# mlpgrad oracle test vectors. Generated by tests/data/make_oracle_vectors.py from",
           "# python/mlpgrad/reference.py; do not edit by hand (the format is described in that script)."]

    def add_single(name, widths, activations, dy=1.0, gain=1.0, x_scale=1.0):
        W = random_weights(rng, widths, gain)
        alpha = [dyadic(rng, 1.0) for _ in range(widths[-1])]
        x = [dyadic(rng, x_scale) for _ in range(widths[0])]
        out.extend(single_case(ref, name, widths, activations, W, alpha, x, dy))

    def add_batch(name, widths, activations, B, gain=1.0):
        W = random_weights(rng, widths, gain)
        alpha = [dyadic(rng, 1.0) for _ in range(widths[-1])]
        X = [[dyadic(rng, 1.0) for _ in range(widths[0])] for _ in range(B)]
        dy = [dyadic(rng, 2.0) for _ in range(B)]
        out.extend(batch_case(ref, name, widths, activations, W, alpha, X, dy))

    # Every activation, per-layer widths (growing and shrinking), a seed dy != 1.
    for act in ref.ACTIVATIONS:
        add_single(f"single_{act}", [4, 7, 5, 3], [act] * 3, dy=0.75)
    # Widths past the kernels' SIMD lanes (8 doubles, 16 floats) and row blocks, mixed activations.
    add_single("single_mixed_wide", [3, 21, 18, 2], ["tanh", "relu", "softplus"], dy=-1.25)
    # Depth 0 (yhat = alpha . x) and depth 1.
    add_single("single_depth0", [5], [], dy=2.0)
    add_single("single_depth1_sigmoid", [6, 4], ["sigmoid"], dy=1.0)
    add_single("single_depth1_width1", [1, 1], ["leaky_relu"], dy=-0.5)
    # Saturating pre-activations (|u| up to ~50): the stable sigmoid/softplus formulas, tanh at +-1.
    for act in ("sigmoid", "softplus", "tanh"):
        add_single(f"single_saturated_{act}", [4, 6, 3], [act, act], dy=1.0, gain=12.0, x_scale=8.0)

    # The ReLU convention at 0: every u below is exactly 0 in any summation order (small dyadic numbers),
    # so sigma'(0) = 1 decides the gradients (PyTorch's sigma'(0) = 0 would zero most of them).
    W0 = [[1.0, -1.0, 0.5, -0.5], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, -2.0, -2.0]]  # u^1 = (0, 0, 0)
    W1 = [[1.0, 1.0, 1.0], [0.25, -0.5, 0.75]]  # z^1 = 0 so u^2 = (0, 0)
    x = [2.0, 2.0, 4.0, 4.0]
    for act in ("relu", "leaky_relu"):
        out.extend(single_case(ref, f"single_{act}_at_zero", [4, 3, 2], [act, act], [W0, W1],
                               [1.5, -2.0], x, 1.0))

    # Batches: B = 0, 1, a few, and past the batch kernels' example blocks (16 doubles, 32 floats).
    add_batch("batch_relu_B5", [3, 8, 4], ["relu", "relu"], 5)
    add_batch("batch_mixed_B37", [5, 19, 6, 2], ["tanh", "leaky_relu", "sigmoid"], 37)
    add_batch("batch_softplus_B1", [2, 3], ["softplus"], 1)
    add_batch("batch_depth0_B4", [3], [], 4)
    add_batch("batch_identity_B0", [3, 2], ["identity"], 0)

    # Issue 11: biases b^t, an output bias beta and m outputs (alpha K_T x m), every activation.
    def general(widths, outputs, biases, output_bias):
        W = random_weights(rng, widths)
        b = [[dyadic(rng, 0.5) for _ in range(k)] for k in widths[1:]] if biases else None
        if outputs is None:
            alpha = [dyadic(rng, 1.0) for _ in range(widths[-1])]
            beta = dyadic(rng, 1.0) if output_bias else None
        else:
            alpha = [[dyadic(rng, 1.0) for _ in range(outputs)] for _ in range(widths[-1])]
            beta = [dyadic(rng, 1.0) for _ in range(outputs)] if output_bias else None
        return W, b, alpha, beta

    def seed(outputs):
        return dyadic(rng, 2.0) if outputs is None else [dyadic(rng, 2.0) for _ in range(outputs)]

    def add_general_single(name, widths, activations, outputs, biases, output_bias):
        W, b, alpha, beta = general(widths, outputs, biases, output_bias)
        x = [dyadic(rng, 1.0) for _ in range(widths[0])]
        out.extend(single_case(ref, name, widths, activations, W, alpha, x, seed(outputs), b, beta))

    def add_general_batch(name, widths, activations, outputs, biases, output_bias, B):
        W, b, alpha, beta = general(widths, outputs, biases, output_bias)
        X = [[dyadic(rng, 1.0) for _ in range(widths[0])] for _ in range(B)]
        dy = [seed(outputs) for _ in range(B)]
        out.extend(batch_case(ref, name, widths, activations, W, alpha, X, dy, b, beta))

    for act in ref.ACTIVATIONS:
        add_general_single(f"single_biases_m3_{act}", [4, 6, 5], [act] * 2, 3, True, True)
        add_general_batch(f"batch_biases_m2_{act}", [3, 7, 4], [act] * 2, 2, True, True, 9)
    add_general_single("single_biases_scalar", [5, 4, 3], ["tanh", "relu"], None, True, True)
    add_general_single("single_m19_wide", [3, 21, 18], ["softplus", "tanh"], 19, False, True)
    add_general_single("single_depth0_m2_beta", [4], [], 2, False, True)
    add_general_batch("batch_biases_scalar_B37", [5, 19, 6], ["tanh", "leaky_relu"], None, True, True, 37)
    add_general_batch("batch_m17_B40", [6, 9, 5], ["sigmoid", "relu"], 17, True, False, 40)
    add_general_batch("batch_depth0_m3_B5", [4], [], 3, False, True, 5)
    add_general_batch("batch_biases_m2_B0", [3, 2], ["identity"], 2, True, True, 0)
    return "\n".join(out) + "\n"


def numbers_match(a: str, b: str) -> bool:
    """Same records; numbers equal to 1e-12 relative (libm may differ in the last bit across machines)."""
    la, lb = a.split("\n"), b.split("\n")
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        tx, ty = x.split(), y.split()
        if len(tx) != len(ty) or (tx and tx[0] != ty[0]):
            return False
        if not tx or tx[0] in ("#", "case", "kind", "widths", "activations", "batch", "outputs", "end"):
            if tx != ty and tx[:1] != ["#"]:
                return False
            continue
        for u, v in zip(map(float, tx[1:]), map(float, ty[1:])):
            if abs(u - v) > 1e-12 * max(1.0, abs(u), abs(v)):
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored file instead of writing it")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    text = generate(load_reference())
    if args.check:
        stored = args.output.read_text() if args.output.exists() else ""
        if not numbers_match(stored, text):
            print(f"{args.output} is stale: rerun python3 {Path(__file__).relative_to(HERE.parents[1])}",
                  file=sys.stderr)
            return 1
        print(f"{args.output.name}: up to date with reference.py")
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
