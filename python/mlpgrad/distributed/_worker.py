"""What runs on the Dask workers: the shipped network, one partition's loss and gradient sums, their sum.

A partition's contribution to the mean loss L = Σ_b w_b ℓ_b / Σ_b w_b over all rows is kept as sums, never as
means, so that partitions of any sizes combine exactly: S_ℓ = Σ_b w_b ℓ_b, S_w = Σ_b w_b and
S_θ = Σ_b w_b ∂ℓ_b/∂θ, in float64 whatever the network's dtype. The driver divides once: L = S_ℓ / S_w,
∂L/∂θ = S_θ / S_w.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np

from .. import MLP
from ..optim import _parameters

#: The batch tape's size a partition's batch passes aim at: half of a 1 MiB L2 cache. A tape holds about
#: rows · (2 ΣK + 3 max K) numbers; passes over blocks whose tape stays in L2 ran 1.4-1.6x faster here than
#: passes of 4,096 or 8,192 rows (32-16-1 and 32-64-64-1 float32, 32-64-64-1 float64, 32-256-256-1 float32).
TAPE_BYTES = 1 << 19


def block_rows(net) -> int:
    """Rows per batch pass inside a partition: a tape of about TAPE_BYTES, within [128, 8192] rows."""
    per_row = (2 * sum(net.widths) + 3 * max(net.widths)) * net.dtype.itemsize
    return min(8192, max(128, TAPE_BYTES // per_row))


def _own_copy(a):
    """A fresh, aligned, C-ordered, writeable copy: arrays Dask deserialises may sit at any offset in a frame."""
    return None if a is None else np.array(a, order="C", copy=True)


def _rebuild(weights, alpha, activations, biases, output_bias) -> "ShippedNetwork":
    options = {}
    if biases is not None:
        options["biases"] = [_own_copy(b) for b in biases]
    if output_bias is not None:
        options["output_bias"] = _own_copy(output_bias)
    net = MLP([_own_copy(w) for w in weights], _own_copy(alpha), list(activations), **options)
    return ShippedNetwork(net)


class ShippedNetwork:
    """A network as sent to the workers: its arrays and activations, rebuilt there on copies of its arrays.

    ``MLP`` views its arrays and refuses misaligned ones, and Dask hands a deserialised array out of its
    message frame at any byte offset; this wrapper copies each array once, when the worker receives it.
    """

    __slots__ = ("net",)

    def __init__(self, net: MLP) -> None:
        self.net = net

    def __reduce__(self):
        net = self.net
        return _rebuild, (list(net.weights), net.alpha, tuple(net.activations),
                          getattr(net, "biases", None), getattr(net, "output_bias", None))


class Sums:
    """One partition's (or several partitions') S_ℓ, S_w, row count and S_θ (float64, parameter order)."""

    __slots__ = ("loss", "weight", "rows", "gradients")

    def __init__(self, loss: float, weight: float, rows: int, gradients: List[np.ndarray]) -> None:
        self.loss, self.weight, self.rows, self.gradients = loss, weight, rows, gradients

    def __reduce__(self):
        return Sums, (self.loss, self.weight, self.rows, self.gradients)


def add(*parts: Sums) -> Sums:
    """The sum of several partitions' sums (one node of the tree reduction), into the first one's arrays."""
    total = parts[0]
    for part in parts[1:]:
        total.loss += part.loss
        total.weight += part.weight
        total.rows += part.rows
        for a, b in zip(total.gradients, part.gradients):
            a += b
    return total


def _where(index: int, first_row: Optional[int], rows: int) -> str:
    if first_row is None:
        return f"partition {index}"
    return f"partition {index} (rows {first_row} to {first_row + rows - 1})"


def partition_sums(shipped: ShippedNetwork, X, y, sample_weight, rows: Optional[np.ndarray],
                   loss: Callable, index: int, first_row: Optional[int]) -> Sums:
    """S_ℓ, S_w and S_θ of one partition (of its ``rows`` only, in that order, when given).

    A ValueError or TypeError (a partition of the wrong width, NaN in y, a label out of range) is re-raised
    as the same type with the local call's message, prefixed with the partition's index and rows.
    """
    try:
        return _sums(shipped.net, X, y, sample_weight, rows, loss)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{_where(index, first_row, len(X))}: {e}") from e


def _sums(net: MLP, X, y, sample_weight, rows: Optional[np.ndarray], loss: Callable) -> Sums:
    X, y = np.asarray(X), np.asarray(y)
    w = None if sample_weight is None else np.asarray(sample_weight)
    if len(y) != len(X) or (w is not None and len(w) != len(X)):
        names = "X and y" if w is None else "X, y and sample_weight"
        sizes = f"X {len(X)}, y {len(y)}" + ("" if w is None else f", sample_weight {len(w)}")
        raise ValueError(f"the partitions of {names} hold different numbers of rows ({sizes})")
    if rows is not None:
        X, y = X[rows], y[rows]
        w = None if w is None else w[rows]
    out = net.new_gradients(batch=1, x=False)  # parameter-only: any batch size; one per task (tasks share the net)
    block_gradients = [g for _, _, g in _parameters(net, out)]
    totals = [np.zeros(g.shape) for g in block_gradients]
    scaled = [np.empty(g.shape) for g in block_gradients]
    loss_sum = weight_sum = 0.0
    rows_per_pass = block_rows(net)
    for start in range(0, len(X), rows_per_pass):
        stop = start + rows_per_pass
        wb = None if w is None else w[start:stop]
        if wb is not None and wb.size and wb.max() == 0 and wb.min() == 0:
            continue  # no weight: contributes nothing (a partition may be all zeros when others are not)
        yhat = net.forward_batch(X[start:stop])
        mean, dy = loss(yhat, y[start:stop], sample_weight=wb)  # ∂(block mean)/∂ŷ
        net.backward_batch(dy, out=out)
        weight = float(len(yhat)) if wb is None else float(np.sum(wb, dtype=np.float64))
        loss_sum += weight * mean                                # Σ_b w_b ℓ_b of the block
        weight_sum += weight
        for total, scratch, g in zip(totals, scaled, block_gradients):
            np.multiply(g, weight, out=scratch, dtype=np.float64)  # Σ_b w_b ∂ℓ_b/∂θ of the block
            total += scratch
    return Sums(loss_sum, weight_sum, len(X), totals)
