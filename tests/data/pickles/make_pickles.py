"""Writes the pickle-compatibility fixtures in this directory: pickles of mlpgrad.MLP in the CURRENT pickle
format (state version 1), plus expected.json with what each network computes at a fixed input.

These files are frozen on purpose: tests/test_pickle_compat.py loads them so that every later release keeps
loading version-1 pickles. Do not regenerate them when the format changes; add a new version's files next
to them (this script refuses to overwrite existing files unless --force).

    python tests/data/pickles/make_pickles.py [--out DIR] [--force]

State version 1 (what MLP.__getstate__ returns, what MLP.__setstate__ accepts):
    (1, tuple of the weight arrays (K_{t+1}, K_t), alpha (K_T,), tuple of one activation name per layer)
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys

import numpy as np

import mlpgrad

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOLS = (2, 5)

# name: (widths, activation argument, dtype, seed)
CASES = {
    "f64-relu-3x": ((5, 7, 4, 3), "relu", "float64", 1),
    "f32-mixed": ((6, 8, 3), ["tanh", "sigmoid"], "float32", 2),
    "f64-all-activations": ((4, 5, 5, 5, 5, 5, 2), ["relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity"],
                            "float64", 3),
    "f64-depth0": ((3,), "relu", "float64", 4),
    "f32-depth1-wide": ((33, 1), "softplus", "float32", 5),
}


def build(widths, activation, dtype, seed):
    rng = np.random.default_rng(seed)
    weights = [np.ascontiguousarray((rng.standard_normal((widths[t + 1], widths[t])) / np.sqrt(widths[t])).astype(dtype))
               for t in range(len(widths) - 1)]
    alpha = rng.standard_normal(widths[-1]).astype(dtype)
    x = rng.standard_normal(widths[0]).astype(dtype)
    X = rng.standard_normal((3, widths[0])).astype(dtype)
    return mlpgrad.MLP(weights, alpha, activation), x, X


def as_list(a):
    return np.asarray(a, np.float64).tolist()  # float32 -> float64 is exact; JSON keeps float64 exactly


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    expected_path = os.path.join(args.out, "expected.json")
    if os.path.exists(expected_path) and not args.force:
        sys.exit(f"{expected_path} exists: these fixtures are frozen (use --force only for a new directory)")
    expected = {"format_version": 1, "mlpgrad_version": mlpgrad.__version__, "numpy_version": np.__version__,
                "python_version": sys.version.split()[0], "cases": {}}
    for name, (widths, activation, dtype, seed) in CASES.items():
        net, x, X = build(widths, activation, dtype, seed)
        assert net.__getstate__()[0] == 1
        y, g = net.value_and_grad(x, 0.5)
        yb, gb = net.value_and_grad_batch(X)
        files = []
        for protocol in PROTOCOLS:
            fname = f"mlp-v1-{name}-p{protocol}.pkl"
            with open(os.path.join(args.out, fname), "wb") as f:
                pickle.dump(net, f, protocol=protocol)
            files.append(fname)
        expected["cases"][name] = {
            "files": files, "widths": list(net.widths), "activations": list(net.activations), "dtype": dtype,
            "weights": [as_list(w) for w in net.weights], "alpha": as_list(net.alpha),
            "x": as_list(x), "dy": 0.5, "yhat": float(y), "grad_weights": [as_list(w) for w in g.weights],
            "grad_alpha": as_list(g.alpha), "grad_x": as_list(g.x),
            "X": as_list(X), "yhat_batch": as_list(yb), "grad_weights_batch": [as_list(w) for w in gb.weights],
            "grad_X": as_list(gb.x),
        }
    with open(expected_path, "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print(f"wrote {sum(len(c['files']) for c in expected['cases'].values())} pickles and {expected_path}")


if __name__ == "__main__":
    main()
