"""Making and storing whole networks: ``MLP.random`` (initialisation), ``net.save`` and ``MLP.load`` (a plain
``.npz`` archive). The compiled ``MLP`` class calls these functions (its ``random``, ``save`` and ``load``
methods pass the class or the network as the first argument); use them through ``MLP``.

Initialisation (``MLP.random``), layer t+1 with fan-in K_t and fan-out K_{t+1}:

* ReLU-like activations, He (Kaiming) normal: ``relu`` and ``softplus`` W ~ N(0, 2 / K_t); ``leaky_relu``
  W ~ N(0, 2 / ((1 + 0.01²) K_t)) (the gain of its slope 0.01).
* The others, Glorot (Xavier) uniform: ``tanh``, ``sigmoid`` and ``identity``
  W ~ U(-a, a) with a = sqrt(6 / (K_t + K_{t+1})).
* α (a linear output layer, fan-in K_T, fan-out m, 1 for one output): Glorot uniform,
  a = sqrt(6 / (K_T + m)).
* Biases b^t and the output bias β (``biases=True``): zero.

The draws come from ``numpy.random.default_rng(seed)`` in float64, in the order W^{[1]}, …, W^{[T]}, α, and are
then rounded to ``dtype``: a seed gives the same network (up to that rounding) in float32 and float64.

Archive (``net.save``), format version 1, every entry a plain array (``numpy.load(path, allow_pickle=False)``
reads it): ``format_version`` (0-d int), ``widths`` (K_0..K_T, int64), ``activations`` (T names, str),
``weights[t]`` (t = 0..T-1), ``alpha``, ``with_biases`` and ``with_output_bias`` (0-d bool), ``biases[t]`` when
``with_biases``, ``output_bias`` when ``with_output_bias``.
"""
from __future__ import annotations

import operator
import os
import zipfile
from typing import Any, Dict, List, Optional

import numpy as np

from ._core import ACTIVATIONS

__all__ = ["FORMAT_VERSION", "RELU_LIKE", "random", "save", "load"]

#: The version of the archive ``net.save`` writes and ``MLP.load`` reads.
FORMAT_VERSION = 1
#: Activations initialised with He's normal distribution; every other one gets Glorot's uniform one.
RELU_LIKE = ("relu", "leaky_relu", "softplus")
_LEAKY_SLOPE = 0.01


def _activation_names(activation: Any, depth: int) -> List[str]:
    if isinstance(activation, str):
        names = [activation] * depth
    elif isinstance(activation, (list, tuple)):
        names = list(activation)
        if len(names) != depth:
            raise ValueError(f"activation has {len(names)} names but widths give {depth} layers")
    else:
        raise TypeError(f"activation must be a name (str) or a list of one name per layer, got "
                        f"{type(activation).__name__}")
    for t, name in enumerate(names):
        if not isinstance(name, str) or name not in ACTIVATIONS:
            where = "activation" if isinstance(activation, str) else f"activation[{t}]"
            raise ValueError(f"{where}: unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return names


def _count(value: Any, what: str) -> int:
    """A positive int (numpy integers included, bools not)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")
    return n


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from None
    if d not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {d}")
    return d


def _layer(rng: np.random.Generator, activation: str, fan_out: int, fan_in: int, shape) -> np.ndarray:
    if activation in RELU_LIKE:
        gain = 2.0 / (1.0 + _LEAKY_SLOPE**2) if activation == "leaky_relu" else 2.0
        return rng.normal(0.0, np.sqrt(gain / fan_in), shape)  # He: Var W = gain / fan_in
    a = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot: Var W = 2 / (fan_in + fan_out)
    return rng.uniform(-a, a, shape)


def random(cls, widths, activation="relu", *, outputs=None, biases=True, dtype=np.float64, seed=None):
    """A new network of these widths (K_0, ..., K_T), initialised as the module docstring says."""
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__"):
        raise TypeError(f"widths must be a sequence of ints (K_0, ..., K_T), got {type(widths).__name__}")
    K = [_count(k, f"widths[{i}]") for i, k in enumerate(widths)]
    if not K:
        raise ValueError("widths is empty; expected (K_0, ..., K_T), at least the input width K_0")
    names = _activation_names(activation, len(K) - 1)
    m = None if outputs is None else _count(outputs, "outputs")
    if not isinstance(biases, (bool, np.bool_)):
        raise TypeError(f"biases must be True or False, got {type(biases).__name__}")
    d = _float_dtype(dtype)
    rng = np.random.default_rng(seed)
    weights = [_layer(rng, names[t], K[t + 1], K[t], (K[t + 1], K[t])).astype(d) for t in range(len(K) - 1)]
    alpha_shape = (K[-1],) if m is None else (K[-1], m)
    alpha = _layer(rng, "identity", 1 if m is None else m, K[-1], alpha_shape).astype(d)
    kwargs: Dict[str, Any] = {}
    if biases:
        kwargs["biases"] = [np.zeros(k, d) for k in K[1:]]
        kwargs["output_bias"] = np.zeros(() if m is None else (m,), d)
    return cls(weights, alpha, activation if isinstance(activation, str) else names, **kwargs)


def save(net, path) -> None:
    """Writes the network to ``path`` (a file name, written as given, or a binary file object)."""
    arrays: Dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, np.int64),
        "widths": np.array(net.widths, np.int64),
        "activations": np.array(net.activations, dtype=np.str_).reshape(len(net.activations)),
        "alpha": net.alpha,
        "with_biases": np.array(net.biases is not None),
        "with_output_bias": np.array(net.output_bias is not None),
    }
    for t, w in enumerate(net.weights):
        arrays[f"weights[{t}]"] = w
    for t, b in enumerate(net.biases or []):
        arrays[f"biases[{t}]"] = b
    if net.output_bias is not None:
        arrays["output_bias"] = net.output_bias
    if isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "wb") as f:  # (numpy.savez would append ".npz" to a name without it)
            np.savez(f, **arrays)
    else:
        np.savez(path, **arrays)


class _Archive:
    """The entries of an archive, each taken once, with errors that name the file and the entry."""

    def __init__(self, data, where: str):
        self.data, self.where = data, where
        self.unread = set(data.files)

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: {message}")

    def take(self, key: str) -> np.ndarray:
        if key not in self.unread:
            raise self.error(f"missing entry {key!r}; not a complete mlpgrad model (written by net.save)")
        self.unread.discard(key)
        try:
            return self.data[key]
        except (ValueError, EOFError, zipfile.BadZipFile) as e:  # an object array (never unpickled), a bad member
            raise self.error(f"entry {key!r} cannot be read as a plain array: {e}") from e

    def flag(self, key: str) -> bool:
        a = self.take(key)
        if a.shape != () or a.dtype != np.bool_:
            raise self.error(f"{key} must be a 0-d bool array, got dtype {a.dtype} shape {a.shape}")
        return bool(a)

    def parameter(self, key: str, shape, dtype: Optional[np.dtype]) -> np.ndarray:
        a = self.take(key)
        if a.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise self.error(f"{key} has dtype {a.dtype}; expected float32 or float64")
        if dtype is not None and a.dtype != dtype:
            raise self.error(f"{key} has dtype {a.dtype} but weights[0] (or alpha) has {dtype}")
        if shape is not None and a.shape != tuple(shape):
            raise self.error(f"{key} has shape {a.shape} but widths give {tuple(shape)}")
        return np.require(a, requirements=["C", "A", "W"])  # (keeps a 0-d array 0-d, unlike ascontiguousarray)


def load(cls, path):
    """The network ``save`` wrote to ``path``; ValueError for anything else (never unpickles)."""
    where = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
    if isinstance(where, bytes):
        where = os.fsdecode(where)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where}: not an mlpgrad model archive (.npz written by net.save): {e}") from e
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{where}: not an mlpgrad model archive (.npz written by net.save): it holds one array")
    with data:
        archive = _Archive(data, where)
        version = archive.take("format_version")
        if version.shape != () or version.dtype.kind not in "iu":
            raise archive.error(f"format_version must be a 0-d integer, got dtype {version.dtype} shape {version.shape}")
        if int(version) != FORMAT_VERSION:
            raise archive.error(f"unsupported format version {int(version)}; this mlpgrad reads version "
                                f"{FORMAT_VERSION} (a newer mlpgrad may read it)")
        widths = archive.take("widths")
        if widths.ndim != 1 or widths.size == 0 or widths.dtype.kind not in "iu" or np.any(widths < 1):
            raise archive.error(f"widths must be a non-empty 1-D array of ints >= 1, got {widths!r}")
        K = [int(k) for k in widths]
        T = len(K) - 1
        names = archive.take("activations")
        if names.dtype.kind != "U" or names.shape != (T,):
            raise archive.error(f"activations must be {T} names (a 1-D str array), got dtype {names.dtype} "
                                f"shape {names.shape}")
        weights: List[np.ndarray] = []
        dtype = None
        for t in range(T):
            weights.append(archive.parameter(f"weights[{t}]", (K[t + 1], K[t]), dtype))
            dtype = weights[0].dtype
        alpha = archive.parameter("alpha", None, dtype)
        dtype = alpha.dtype
        if alpha.ndim not in (1, 2) or alpha.shape[0] != K[-1] or (alpha.ndim == 2 and alpha.shape[1] == 0):
            raise archive.error(f"alpha has shape {alpha.shape} but widths give ({K[-1]},) or ({K[-1]}, m)")
        kwargs: Dict[str, Any] = {}
        if archive.flag("with_biases"):
            kwargs["biases"] = [archive.parameter(f"biases[{t}]", (K[t + 1],), dtype) for t in range(T)]
        if archive.flag("with_output_bias"):
            kwargs["output_bias"] = archive.parameter("output_bias", alpha.shape[1:], dtype)
        if archive.unread:
            raise archive.error(f"unexpected entries {sorted(archive.unread)}; not an mlpgrad model of format "
                                f"version {FORMAT_VERSION}")
    try:
        return cls(weights, alpha, [str(n) for n in names], **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: the stored network is inconsistent: {e}") from e
