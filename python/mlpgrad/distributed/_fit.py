"""Synchronous data-parallel training: one global mini-batch per step, one optimiser step on the driver."""

from __future__ import annotations

import sys
import time
from typing import List, Optional

import numpy as np

from .. import optim
from ..history import History
from ..optim import _parameters
from ._data import Partitions
from ..train import _positive_int, resolve_loss
from ._gradient import cluster_sums, finish, resolve_client

#: The learning rate of ``optimizer="sgd"`` (``"adam"`` takes Adam's default, 1e-3).
SGD_LR = 0.01


def _optimizer(net, optimizer):
    """An mlpgrad.optim object for ``net``, or None for L-BFGS."""
    if isinstance(optimizer, str):
        if optimizer == "adam":
            return optim.Adam(net)
        if optimizer == "sgd":
            return optim.SGD(net, lr=SGD_LR)
        if optimizer == "lbfgs":
            return None
        raise ValueError(f"optimizer {optimizer!r} is not known; expected \"adam\", \"sgd\", \"lbfgs\" or an "
                         "mlpgrad.optim object")
    if not isinstance(optimizer, optim._Optimizer):
        raise TypeError(f"optimizer must be \"adam\", \"sgd\", \"lbfgs\" or an mlpgrad.optim object (SGD, Adam), "
                        f"got {type(optimizer).__name__}")
    if optimizer.net is not net:
        raise ValueError("optimizer was made for another network; make it with this one (e.g. optim.Adam(net))")
    return optimizer


def _split(batch: np.ndarray, first_rows: np.ndarray) -> List[np.ndarray]:
    """The rows of ``batch`` (global indices) as local indices of each partition, in the batch's order."""
    partition = np.searchsorted(first_rows, batch, side="right") - 1
    order = np.argsort(partition, kind="stable")
    counts = np.bincount(partition, minlength=len(first_rows))
    grouped = np.split(batch[order], np.cumsum(counts)[:-1])
    return [rows - first for rows, first in zip(grouped, first_rows)]


class _Progress:
    """A rich progress bar with the running loss, or nothing."""

    def __init__(self, progress, total: int, unit: str) -> None:
        show = sys.stdout.isatty() if progress is None else bool(progress)
        self._bar = None
        if show:
            from rich.progress import Progress
            self._bar = Progress(transient=False)
            self._task = self._bar.add_task(f"mlpgrad.distributed.fit ({unit})", total=total)
        self._unit = unit

    def __enter__(self):
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"mlpgrad.distributed.fit: loss {loss:.6g}")


def fit(net, X, y, *, loss, optimizer="adam", epochs: int, batch_size: Optional[int] = None, client=None,
        seed=None, progress=None) -> History:
    """Trains ``net`` in place on Dask partitions of (X, y); returns the per-epoch History.

    ``X``, ``y``, ``loss`` and ``client`` as for :func:`gradient`; X and y are persisted on the workers for the
    run (``client.persist``). ``optimizer``: ``"adam"`` (``optim.Adam(net)``), ``"sgd"``
    (``optim.SGD(net, lr=SGD_LR)``), an ``mlpgrad.optim`` object made for ``net``, or ``"lbfgs"``.

    SGD and Adam are synchronous data-parallel mini-batch training. Epoch e draws the permutation
    ``order = rng.permutation(B)`` of all B rows from ``rng = np.random.default_rng(seed)`` (one generator for
    the run, one permutation per epoch); step k's mini-batch is ``order[k*batch_size:(k+1)*batch_size]``
    (the last one may be short). Each partition computes the sums of its rows of the batch, the sums are added
    on the workers, and the driver takes one optimiser step with the batch's mean-loss gradient, then ships the
    new weights with the next step's tasks. So the run is, to rounding, the single-process loop over the same
    batches in the same order (``mlpgrad.fit``'s batches with the same seed)::

        for batch in batches:                                   # as drawn above
            mean, dy = loss(net.forward_batch(X[batch]), y[batch])
            net.backward_batch(dy, out=grads)
            optimizer.step(grads)

    A step costs one scatter of the weights to every worker, one task per partition that holds rows of the
    batch and the reduction's round trip, whatever the batch size: use few, large batches (see the README's
    "Scale out with Dask" for measured costs).

    ``"lbfgs"``: ``scipy.optimize.minimize(method="L-BFGS-B")`` on the driver over the parameters flattened
    to float64, each function evaluation one full-data :func:`gradient`; ``epochs`` is the maximum number of
    iterations, ``batch_size`` must be None, one History epoch per iteration (the loss at its iterate).

    ``progress``: a rich progress bar with the running loss (None: when stdout is a terminal). History:
    ``train_loss[e]`` is epoch e's loss Σ S_ℓ / Σ S_w over its batches (each at the weights it was computed
    with); ``seconds_in_mlpgrad`` is the time of the gradient rounds on the cluster and the optimiser steps,
    ``seconds_other`` the rest (drawing batches, progress).
    """
    started = time.perf_counter()
    client = resolve_client(client)
    loss = resolve_loss(loss)
    epochs = _positive_int("epochs", epochs)
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be None, True or False, got {type(progress).__name__}")
    opt = _optimizer(net, optimizer)
    if opt is None and batch_size is not None:
        raise ValueError(f"batch_size must be None with optimizer=\"lbfgs\" (full-data gradients), got {batch_size}")
    if opt is not None:
        if batch_size is None:
            raise TypeError("fit() needs batch_size (an int >= 1) with SGD and Adam")
        batch_size = _positive_int("batch_size", batch_size)
    data = Partitions(net, X, y, need_sizes=opt is not None)
    data.persist(client)
    history = History()
    run = _lbfgs if opt is None else _minibatches
    history.seconds_in_mlpgrad = run(client, net, data, loss, opt, epochs, batch_size, seed, progress, history)
    history.seconds_other = time.perf_counter() - started - history.seconds_in_mlpgrad
    return history


def _minibatches(client, net, data: Partitions, loss, opt, epochs, batch_size, seed, progress, history) -> float:
    rows = sum(data.sizes)
    if rows == 0:
        raise ValueError("X holds no rows; there is nothing to train on")
    first_rows = np.array(data.first_rows)
    rng = np.random.default_rng(seed)
    grads = net.new_gradients(batch=1, x=False)
    steps_per_epoch = -(-rows // batch_size)
    in_mlpgrad = 0.0
    with _Progress(progress, epochs * steps_per_epoch, "steps") as bar:
        for _ in range(epochs):
            order = rng.permutation(rows)
            loss_sum = weight_sum = 0.0
            for start in range(0, rows, batch_size):
                selected = _split(order[start:start + batch_size], first_rows)
                t = time.perf_counter()
                total = cluster_sums(client, net, data, loss, selected)
                mean, _ = finish(net, total, grads)
                opt.step(grads)
                in_mlpgrad += time.perf_counter() - t
                loss_sum += total.loss
                weight_sum += total.weight
                bar.advance(loss_sum / weight_sum)
            history.record_epoch(loss_sum / weight_sum)
    return in_mlpgrad


def _lbfgs(client, net, data: Partitions, loss, opt, epochs, batch_size, seed, progress, history) -> float:
    try:
        from scipy.optimize import minimize
    except ImportError as e:
        raise ImportError("optimizer=\"lbfgs\" needs SciPy: pip install \"mlpgrad[distributed]\"") from e
    params = [p for _, p, _ in _parameters(net)]
    bounds = np.cumsum([0] + [p.size for p in params])
    in_mlpgrad = [0.0]
    grads = net.new_gradients(batch=1, x=False)

    def load(theta: np.ndarray) -> None:
        for p, lo, hi in zip(params, bounds[:-1], bounds[1:]):
            p[...] = theta[lo:hi].reshape(p.shape)  # rounded to the network's dtype

    def value_and_gradient(theta: np.ndarray):
        load(theta)
        t = time.perf_counter()
        total = cluster_sums(client, net, data, loss)
        in_mlpgrad[0] += time.perf_counter() - t
        mean, _ = finish(net, total, grads)  # the checks (no rows, zero weight); the float64 sums feed SciPy
        return mean, np.concatenate([g.ravel() for g in total.gradients]) / total.weight

    with _Progress(progress, epochs, "iterations") as bar:
        def record(intermediate_result) -> None:
            history.record_epoch(intermediate_result.fun)
            bar.advance(intermediate_result.fun)

        theta = np.concatenate([p.ravel() for p in params]).astype(np.float64)
        result = minimize(value_and_gradient, theta, jac=True, method="L-BFGS-B", callback=record,
                          options={"maxiter": epochs})
    load(result.x)
    return in_mlpgrad[0]
