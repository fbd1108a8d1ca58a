"""One full or mini-batch gradient on the cluster: ship the network, one task per partition, a tree of sums."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from dask import delayed
from dask.distributed import Client, default_client

from .._core import Gradients
from ..optim import _parameters
from ._data import Partitions
from ..train import resolve_loss
from ._worker import ShippedNetwork, Sums, add, partition_sums

#: Partial sums added per node of the reduction tree: P partitions take ⌈log_8 P⌉ levels of additions.
FANIN = 8

def resolve_client(client) -> Client:
    if client is None:
        try:
            return default_client()
        except ValueError:
            raise ValueError("client is None and no Dask client is running; pass client=Client(...) or create one "
                             "first (dask.distributed.Client(\"tcp://scheduler:8786\") or a LocalCluster)") from None
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    return client


def _tree(parts: List) -> object:
    """The sum of ``parts`` by a tree of additions on the workers (FANIN at a time)."""
    while len(parts) > 1:
        parts = [delayed(add, pure=False)(*parts[i:i + FANIN]) for i in range(0, len(parts), FANIN)]
    return parts[0]


def cluster_sums(client: Client, net, data: Partitions, loss: Callable,
                 rows: Optional[Sequence[Optional[np.ndarray]]] = None) -> Sums:
    """S_ℓ, S_w and S_θ over every partition (over ``rows[p]`` of partition p only, when given).

    The network is scattered to every worker once for this call (one message per worker), and each
    partition task refers to that one copy; partitions without selected rows get no task.
    """
    shipped = client.scatter(ShippedNetwork(net), broadcast=True, hash=False)
    try:
        tasks = []
        for p, (xb, yb, wb) in enumerate(data.blocks()):
            selected = None if rows is None else rows[p]
            if selected is not None and len(selected) == 0:
                continue
            task = delayed(partition_sums, pure=False)
            tasks.append(task(shipped, xb, yb, wb, selected, loss, p, data.first_rows[p]))
        if not tasks:
            return Sums(0.0, 0.0, 0, [np.zeros(p.shape) for _, p, _ in _parameters(net)])
        return client.compute(_tree(tasks), sync=True)
    finally:
        shipped.release()


def finish(net, total: Sums, out: Optional[Gradients] = None) -> Tuple[float, Gradients]:
    """The mean loss S_ℓ / S_w and its gradient S_θ / S_w, written into ``out`` (parameter-only gradients)."""
    if total.rows == 0:
        raise ValueError("yhat holds no examples (B = 0); the mean loss of an empty batch is undefined")
    if total.weight == 0:
        raise ValueError("sample_weight is all zeros; at least one example must have a positive weight")
    out = net.new_gradients(batch=1, x=False) if out is None else out
    for (_, _, g), s in zip(_parameters(net, out), total.gradients):
        np.divide(s, total.weight, out=g, casting="same_kind")  # in float64, rounded once to the net's dtype
    return total.loss / total.weight, out


def gradient(net, X, y, *, loss="mse", sample_weight=None, client=None) -> Tuple[float, Gradients]:
    """The mean loss over all rows of ``X`` and its gradient, computed where the partitions live.

    ``X``: a Dask array of shape (B, K_0) chunked by rows (columns are rechunked to one chunk when split), or a
    Dask DataFrame; ``y`` (and ``sample_weight``, shape (B,)) split into the same row partitions: a Dask
    array or a DataFrame's column(s). ``loss``: a name from :mod:`mlpgrad.losses` or a callable
    ``(yhat, y, *, sample_weight) -> (mean loss, dy)``. ``client``: a ``dask.distributed.Client`` (default:
    the current one).

    Returns ``(loss, grads)``: the mean Σ_b w_b ℓ_b / Σ_b w_b over all rows and its parameter-only
    ``Gradients`` (``.x`` is None), equal to the single-process ``loss(net.forward_batch(X), y)`` and
    ``net.backward_batch(dy)`` to rounding. A malformed partition raises the local call's error, prefixed
    with the partition's index and rows. See the package docstring for the cost.
    """
    client = resolve_client(client)
    loss = resolve_loss(loss)
    return finish(net, cluster_sums(client, net, Partitions(net, X, y, sample_weight), loss))
