"""The data of ``python -m mlpgrad train``: the built-in tasks (no download) and the user's CSV or NPZ file.

Every loader returns a :class:`Dataset`: inputs X (n, K_0) in float64, targets y (n,) and what the task is
(``kind`` "regression" or "classification", with the class names for classification).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

__all__ = ["Dataset", "DataError", "TASKS", "sine", "spirals", "load"]


class DataError(ValueError):
    """The data cannot be used: the message names the file, column or value."""


@dataclass
class Dataset:
    name: str
    X: np.ndarray               # (n, K_0), float64
    y: np.ndarray               # (n,): float64 values (regression) or int class indices (classification)
    kind: str                   # "regression" or "classification"
    classes: List[str] = field(default_factory=list)
    feature_names: List[str] = field(default_factory=list)


def sine(n: int = 512, seed: int = 0) -> Dataset:
    """1-D regression: y = sin(2x) + 0.3·x + N(0, 0.1²) for x uniform in [-3, 3]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    y = np.sin(2 * x) + 0.3 * x + 0.1 * rng.standard_normal(n)
    return Dataset("sine", x[:, None], y, "regression", feature_names=["x"])


def spirals(n: int = 600, seed: int = 0, turns: float = 1.75, noise: float = 0.06) -> Dataset:
    """Two interleaved spirals in the plane (two classes of n/2 points, radius growing to 1 over ``turns``
    turns, Gaussian noise of ``noise``): the classic task a linear model cannot solve."""
    rng = np.random.default_rng(seed)
    half = n // 2
    t = np.sqrt(rng.uniform(0.02, 1, half))  # denser at the centre of the arms' length, as in the classic set
    angle = 2 * np.pi * turns * t
    arm = np.column_stack([t * np.cos(angle), t * np.sin(angle)])
    X = np.concatenate([arm, -arm]) + noise * rng.standard_normal((2 * half, 2))
    y = np.repeat([0, 1], half)
    return Dataset("spirals", X, y, "classification", classes=["0", "1"], feature_names=["x1", "x2"])


TASKS = {"sine": sine, "spirals": spirals}


def load(path: str, target: Optional[str], classify: bool) -> Dataset:
    """The user's data: a CSV with a header row (numbers only; ``target`` names the target column, or gives
    its index), or an NPZ of arrays ``X`` (n, K) and ``y`` (n,), or of 1-D columns with ``target`` naming one.
    With ``classify``, the target's distinct values are the classes (in sorted order)."""
    lower = path.lower()
    if lower.endswith(".csv"):
        names, columns = _read_csv(path)
        X, y, features = _split_columns(path, names, columns, target)
    elif lower.endswith(".npz"):
        X, y, features = _read_npz(path, target)
    else:
        raise DataError(f"--data {path}: expected a .csv or .npz file")
    if X.ndim != 2 or len(X) != len(y) or y.ndim != 1:
        raise DataError(f"--data {path}: inputs of shape {X.shape} and targets of shape {y.shape}; expected "
                        "(n, K) and (n,)")
    if len(X) < 2:
        raise DataError(f"--data {path}: {len(X)} example(s); training and validation need at least 2")
    if X.shape[1] == 0:
        raise DataError(f"--data {path}: no input columns besides the target")
    if classify:
        if y.dtype.kind in "fc" or y.dtype == object:
            y = _finite(path, "target", y)
        classes, labels = np.unique(y, return_inverse=True)
        return Dataset(path, _finite(path, "inputs", X), labels, "classification",
                       classes=[f"{c:g}" if isinstance(c, float) else str(c) for c in classes.tolist()],
                       feature_names=features)
    return Dataset(path, _finite(path, "inputs", X), _finite(path, "target", _numbers(path, "target", y)),
                   "regression", feature_names=features)


def _numbers(path, what, a):
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"--data {path}: the {what} are not numbers ({e})") from None


def _finite(path, what, a):
    a = _numbers(path, what, a)
    bad = ~np.isfinite(a)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"--data {path}: the {what} hold NaN or infinite values (first in example {row}); "
                        "remove or fill them")
    return a


def _read_csv(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
    except OSError as e:
        raise DataError(f"--data {path}: {e.strerror or e}") from None
    if len(rows) < 2:
        raise DataError(f"--data {path}: expected a header row and at least one row of numbers")
    names, body = [n.strip() for n in rows[0]], rows[1:]
    values = []
    for line, row in enumerate(body, start=2):
        if len(row) != len(names):
            raise DataError(f"--data {path}, line {line}: {len(row)} values but the header has {len(names)} columns")
        try:
            values.append([float(v) if v.strip() else np.nan for v in row])
        except ValueError:
            bad = next(v for v in row if not _is_float(v))
            raise DataError(f"--data {path}, line {line}: {bad!r} is not a number") from None
    return names, np.array(values, dtype=np.float64)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return not text.strip()


def _split_columns(path, names, columns, target):
    if target is None:
        raise DataError(f"--data {path}: give the target column with --target NAME (one of {', '.join(names)})")
    index = _column_index(path, names, target)
    features = [n for i, n in enumerate(names) if i != index]
    return np.delete(columns, index, axis=1), columns[:, index], features


def _column_index(path, names, target):
    if target in names:
        return names.index(target)
    if target.lstrip("-").isdigit() and -len(names) <= int(target) < len(names):
        return int(target) % len(names)
    raise DataError(f"--data {path}: no column {target!r}; the columns are {', '.join(names)}")


def _read_npz(path, target):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"--data {path}: cannot read it as an .npz file ({e})") from None
    if target is None:
        if "X" in arrays and "y" in arrays:
            X = arrays["X"]
            if X.ndim != 2:
                raise DataError(f"--data {path}: X has shape {X.shape}; expected (n, K)")
            return _numbers(path, "inputs", X), arrays["y"], [f"x{i}" for i in range(X.shape[1])]
        raise DataError(f"--data {path}: expected arrays X and y, or 1-D columns with --target NAME "
                        f"(it holds {', '.join(arrays) or 'nothing'})")
    names = list(arrays)
    if any(a.ndim != 1 for a in arrays.values()) or len({len(a) for a in arrays.values()}) != 1:
        raise DataError(f"--data {path}: with --target, every array must be a 1-D column of the same length "
                        f"(got shapes {', '.join(f'{k}{a.shape}' for k, a in arrays.items())})")
    index = _column_index(path, names, target)
    features = [n for i, n in enumerate(names) if i != index]
    X = np.column_stack([_numbers(path, f"column {n}", arrays[n]) for n in features]) if features else \
        np.empty((len(arrays[names[index]]), 0))
    return X, arrays[names[index]], features
