"""The driver's view of the data: X, y and sample weights as Dask arrays split into the same row partitions."""

from __future__ import annotations

import math
from typing import List, Optional

import dask.array as da
import numpy as np


def _as_dask_array(value, what: str):
    """A Dask array from a Dask array, DataFrame or Series (lengths computed, so partitions have sizes)."""
    if isinstance(value, da.Array):
        return value
    if hasattr(value, "to_dask_array") and hasattr(value, "npartitions"):  # dask.dataframe, without importing it
        return value.to_dask_array(lengths=True)
    raise TypeError(f"{what} must be a dask.array.Array chunked by rows or a Dask DataFrame/Series, got "
                    f"{type(value).__module__}.{type(value).__name__}; wrap data in memory with "
                    f"dask.array.from_array({what}, chunks=(rows_per_partition, -1)), or train on it with mlpgrad.fit")


def _real(a, what: str):
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} has dtype {a.dtype}; expected real numbers")
    return a


def _one_column_chunk(a):
    """Rows split into partitions, every column in each: rechunk the columns of a 2-D array to one chunk."""
    return a if a.ndim < 2 or a.numblocks[1] == 1 else a.rechunk({1: -1})


def _known(chunks) -> bool:
    return not any(isinstance(c, float) and math.isnan(c) for c in chunks)


def _sized(a):
    return a if _known(a.chunks[0]) else a.compute_chunk_sizes()


class Partitions:
    """X, y and sample_weight checked against the network and against each other, partition by partition.

    ``blocks()`` gives, for each partition p, the Dask delayed objects of X, y and sample_weight's p-th row
    blocks; ``first_rows[p]`` is the index of partition p's first row (None when the sizes are unknown).
    """

    def __init__(self, net, X, y, sample_weight=None, *, need_sizes: bool = False) -> None:
        X = _one_column_chunk(_real(_as_dask_array(X, "X"), "X"))
        y = _one_column_chunk(_real(_as_dask_array(y, "y"), "y"))
        w = None
        if sample_weight is not None:
            w = _real(_as_dask_array(sample_weight, "sample_weight"), "sample_weight")
            if w.ndim != 1:
                raise ValueError(f"sample_weight has shape {w.shape}; expected (B,), one weight per row of X")
        inputs = net.widths[0]
        if X.ndim != 2 or X.shape[1] != inputs:
            raise ValueError(f"X has shape {X.shape} but the network expects (B, {inputs})")
        if y.ndim not in (1, 2):
            raise ValueError(f"y has shape {y.shape}; expected (B,) or (B, m), one row per row of X")
        if need_sizes:  # sampling rows needs every partition's size
            X, y = _sized(X), _sized(y)
            w = None if w is None else _sized(w)
        self._require_aligned(X, y, "y")
        if w is not None:
            self._require_aligned(X, w, "sample_weight")
        self.X, self.y, self.sample_weight = X, y, w
        self._blocks: Optional[List[tuple]] = None
        self.count = X.numblocks[0]
        sizes = X.chunks[0]
        self.sizes: Optional[List[int]] = [int(s) for s in sizes] if _known(sizes) else None
        self.first_rows: List[Optional[int]] = (
            [None] * self.count if self.sizes is None else [int(s) for s in np.cumsum([0] + self.sizes[:-1])])

    @staticmethod
    def _require_aligned(X, a, name: str) -> None:
        if a.numblocks[0] != X.numblocks[0]:
            raise ValueError(f"X has {X.numblocks[0]} row partitions but {name} has {a.numblocks[0]}; they must be "
                             f"split the same way: {name} = {name}.rechunk({{0: X.chunks[0]}})")
        if _known(X.chunks[0]) and _known(a.chunks[0]):
            if a.shape[0] != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows but {name} has {a.shape[0]}; expected one per row of X")
            if a.chunks[0] != X.chunks[0]:
                raise ValueError(f"X and {name} are partitioned differently (X's row chunks {X.chunks[0]}, {name}'s "
                                 f"{a.chunks[0]}); rechunk one like the other: "
                                 f"{name} = {name}.rechunk({{0: X.chunks[0]}})")
        # Otherwise the sizes are unknown on the driver: each partition task compares its blocks' lengths.

    def persist(self, client) -> None:
        """Keeps X, y and sample_weight in the workers' memory, so that every step reads them there."""
        arrays = [self.X, self.y] + ([] if self.sample_weight is None else [self.sample_weight])
        persisted = client.persist(arrays)
        self.X, self.y = persisted[0], persisted[1]
        self.sample_weight = None if self.sample_weight is None else persisted[2]
        self._blocks = None

    def blocks(self) -> List[tuple]:
        """(X block, y block, sample_weight block or None) of every partition, as Dask delayed objects."""
        if self._blocks is None:  # made once: to_delayed optimises the arrays' graphs
            xs = self.X.to_delayed().reshape(-1)
            ys = self.y.to_delayed().reshape(-1)
            ws = [None] * self.count if self.sample_weight is None else self.sample_weight.to_delayed().reshape(-1)
            self._blocks = list(zip(xs, ys, ws))
        return self._blocks
