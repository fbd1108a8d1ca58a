"""``mlpgrad.fit``: mini-batch training of a network with a loss from ``mlpgrad.losses`` and an optimiser from
``mlpgrad.optim``.

Every step is one forward pass and one backward pass on the batch (``net.forward_batch``, the loss, then
``net.backward_batch(dy, out=grads)``, no second forward pass) into ONE set of parameter-only gradients
(``net.new_gradients(batch=B, x=False)``), reused for every batch size, the short last batch of an epoch
included; then ``optimizer.step(grads)`` updates the network's arrays in place.

:class:`Trainer` is that step and epoch, shared with :mod:`mlpgrad.sklearn`; :func:`fit` adds the checks of
the data, shuffling, validation, early stopping, callbacks and the progress bar, and returns a
:class:`~mlpgrad.history.History`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core, losses, optim
from .history import History

__all__ = ["fit", "EarlyStopping", "LOSSES", "Trainer", "resolve_loss", "check_inputs", "check_targets",
           "num_threads"]

#: The loss names fit accepts, and the functions they stand for.
LOSSES = {"mse": losses.mse, "logistic": losses.logistic, "softmax_cross_entropy": losses.softmax_cross_entropy}

LossFunction = Callable[..., Tuple[float, np.ndarray]]


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the monitored loss (validation loss with validation data, else training loss) has not
    improved on its best by more than ``min_delta`` for ``patience`` epochs in a row.

    With ``restore_best=True`` (the default) the network ends with the parameters of ``history.best_epoch``
    (copied back into its own arrays, in place), whether or not training stopped early.
    """

    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, numbers.Integral) or self.patience < 1:
            raise ValueError(f"EarlyStopping patience must be an integer >= 1, got {self.patience!r}")
        if isinstance(self.min_delta, bool) or not isinstance(self.min_delta, numbers.Real) \
                or not self.min_delta >= 0 or math.isinf(self.min_delta):
            raise ValueError(f"EarlyStopping min_delta must be a finite number >= 0, got {self.min_delta!r}")
        if not isinstance(self.restore_best, (bool, np.bool_)):
            raise TypeError(f"EarlyStopping restore_best must be a bool, got {type(self.restore_best).__name__}")


# ----------------------------------------------------------------------------- checks
def resolve_loss(loss: Union[str, LossFunction]) -> LossFunction:
    """A loss name of :data:`LOSSES` or a callable ``(yhat, y, *, sample_weight) -> (loss, dy)``."""
    if isinstance(loss, str):
        try:
            return LOSSES[loss]
        except KeyError:
            raise ValueError(f"loss {loss!r} is not a loss mlpgrad knows; expected one of "
                             f"{', '.join(map(repr, LOSSES))} or a callable (yhat, y, *, sample_weight) -> "
                             "(loss, dy)") from None
    if not callable(loss):
        raise TypeError(f"loss must be a loss name or a callable, got {type(loss).__name__}")
    return loss


def output_shape(net) -> Tuple[int, ...]:
    """ŷ's shape for one example: () for a scalar output, (m,) for m outputs."""
    return tuple(getattr(net, "output_shape", ()))  # networks without the attribute have a scalar output


def _array(value, what: str) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as e:  # a failing __array__ or ragged nesting: the caller's data
        raise TypeError(f"{what} could not be read as an array of numbers: {e}") from e
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} has dtype {a.dtype}; expected real numbers")
    return a


def check_inputs(net, X, what: str = "X") -> np.ndarray:
    """X as a C-contiguous (n, K_0) array of the network's dtype, finite.

    Converted once, here: X itself when it already is one, else a copy (never per step)."""
    a = _array(X, what)
    k0 = net.widths[0]
    if a.ndim != 2 or a.shape[1] != k0:
        raise ValueError(f"{what} has shape {a.shape}; expected (n, {k0}): one row of {k0} inputs per example")
    if a.shape[0] == 0:
        raise ValueError(f"{what} holds no examples; expected at least one row")
    with np.errstate(over="ignore"):
        a = np.ascontiguousarray(a, dtype=net.dtype)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinite values (in {net.dtype}, the network's dtype); the inputs "
                         "must be finite")
    return a


def check_targets(net, loss: LossFunction, y, n: int, what: str = "y", sample_weight=None) -> np.ndarray:
    """y with n examples, valid for ``loss`` on this network's outputs: checked once, before any step, by
    evaluating the loss at ŷ = 0 (its own checks of shape, domain and finiteness), and floats converted
    once to the network's dtype (integer class labels stay integers)."""
    a = _array(y, what)
    if a.ndim == 0 or a.shape[0] != n:
        raise ValueError(f"{what} has shape {a.shape} but X holds {n} examples; expected {n} targets "
                         f"(shape ({n},) + the network's output shape {output_shape(net)}, or ({n},) "
                         "class labels)")
    if a.dtype.kind == "f" or loss is not losses.softmax_cross_entropy:
        with np.errstate(over="ignore"):
            a = np.ascontiguousarray(a, dtype=net.dtype)
    try:
        loss(np.zeros((n,) + output_shape(net), net.dtype), a, sample_weight=sample_weight)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what} does not fit the loss and this network's output shape "
                      f"{output_shape(net)}: {e}") from e
    return a


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _early_stopping(value) -> Optional[EarlyStopping]:
    if value is None or isinstance(value, EarlyStopping):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return EarlyStopping(patience=int(value))
    raise TypeError(f"early_stopping must be None, a patience (int) or a mlpgrad.train.EarlyStopping, "
                    f"got {type(value).__name__}")


# ----------------------------------------------------------------------------- the step
class Trainer:
    """One network, loss and optimiser: the training step and epoch (shared by fit and mlpgrad.sklearn).

    ``penalty``, if given, is called after each backward pass as ``penalty(grads, weight_sum)`` (weight_sum:
    the batch's number of examples or sum of sample weights); it adds its gradient into ``grads`` in place and
    returns its value, which is added to the batch loss (mlpgrad.sklearn's L2 term).
    ``seconds_in_mlpgrad`` accumulates the time of the forward, backward and optimiser calls.
    """

    def __init__(self, net, loss: LossFunction, optimizer, *, batch_size: int = 1,
                 penalty: Optional[Callable[..., float]] = None) -> None:
        self.net, self.loss, self.optimizer, self.penalty = net, loss, optimizer, penalty
        self.grads = net.new_gradients(batch=batch_size, x=False)  # parameter-only: fits any batch size
        self.seconds_in_mlpgrad = 0.0

    def step(self, X: np.ndarray, y: np.ndarray, sample_weight: Optional[np.ndarray] = None) -> float:
        """One step on the batch (X, y): returns the batch loss at the parameters before the step."""
        clock = time.perf_counter
        t0 = clock()
        yhat = self.net.forward_batch(X)
        t1 = clock()
        loss, dy = self.loss(yhat, y, sample_weight=sample_weight)
        t2 = clock()
        self.net.backward_batch(dy, out=self.grads)
        t3 = clock()
        if self.penalty is not None:
            loss += self.penalty(self.grads, len(X) if sample_weight is None else float(sample_weight.sum()))
        t4 = clock()
        self.optimizer.step(self.grads)
        self.seconds_in_mlpgrad += (t1 - t0) + (t3 - t2) + (clock() - t4)
        return float(loss)

    def epoch(self, X: np.ndarray, y: np.ndarray, batch_size: int, order: Optional[np.ndarray] = None,
              sample_weight: Optional[np.ndarray] = None, on_batch: Optional[Callable[[float], None]] = None
              ) -> float:
        """One pass over the data in mini-batches of ``batch_size`` (the last one shorter if need be), in the
        order ``order`` (a permutation of the rows; None: as stored). Returns the epoch's training loss, the
        mean of the batch losses weighted by their examples (or sample weights)."""
        if order is not None:  # one gather per epoch; the batches are then views
            X, y = X[order], y[order]
            sample_weight = None if sample_weight is None else sample_weight[order]
        total = weight = 0.0
        for start in range(0, len(X), batch_size):
            stop = start + batch_size
            w = None if sample_weight is None else sample_weight[start:stop]
            loss = self.step(X[start:stop], y[start:stop], w)
            share = min(stop, len(X)) - start if w is None else float(w.sum())
            total += loss * share
            weight += share
            if on_batch is not None:
                on_batch(loss)
        return total / weight

    def evaluate(self, X: np.ndarray, y: np.ndarray, sample_weight: Optional[np.ndarray] = None) -> float:
        """The loss on (X, y) at the current parameters (no step; the penalty is not included)."""
        t0 = time.perf_counter()
        yhat = self.net.forward_batch(X)
        self.seconds_in_mlpgrad += time.perf_counter() - t0
        return float(self.loss(yhat, y, sample_weight=sample_weight)[0])


@contextlib.contextmanager
def num_threads(n: Optional[int]):
    """mlpgrad's batch threads set to ``n`` for the block and restored after it (None: left alone)."""
    if n is None:
        yield
        return
    before = _core.get_num_threads()
    _core.set_num_threads(n)
    try:
        yield
    finally:
        _core.set_num_threads(before)


def parameters(net) -> Sequence[np.ndarray]:
    """Every parameter array of the network (weights, α, biases, output bias): the optimiser's list."""
    return [p for _, p, _ in optim._parameters(net)]


# ----------------------------------------------------------------------------- fit
def fit(net, X, y, *, loss: Union[str, LossFunction], optimizer, epochs: int, batch_size: int,
        validation_data: Optional[Tuple[object, object]] = None, shuffle: bool = True, seed=None,
        progress: Optional[bool] = None, callbacks: Iterable[Callable[[int, History], object]] = (),
        early_stopping: Union[None, int, EarlyStopping] = None) -> History:
    """Train ``net`` in place on (X, y) for ``epochs`` passes in mini-batches; return the :class:`History`.

    * ``X``: (n, K_0) real numbers, finite; converted once to the network's dtype (a copy only if its dtype
      or layout differ). ``y``: n targets shaped for the loss and the network's outputs: (n,) for a scalar
      output, (n, m) for m outputs, or (n,) integer class labels for ``softmax_cross_entropy``; checked once
      against the loss before the first step.
    * ``loss``: ``"mse"``, ``"logistic"``, ``"softmax_cross_entropy"`` or a callable
      ``(yhat, y, *, sample_weight) -> (mean loss, dy)`` like those of :mod:`mlpgrad.losses`.
    * ``optimizer``: a :mod:`mlpgrad.optim` optimiser made for ``net``.
    * ``batch_size`` >= 1 (more than n: one batch of n per epoch); the last batch of an epoch may be shorter.
    * ``shuffle``: a new order of the rows every epoch, drawn from ``numpy.random.default_rng(seed)``: the
      same seed gives the same run, bit for bit.
    * ``validation_data``: ``(X_val, y_val)``, whose loss is recorded after every epoch.
    * ``progress``: a progress bar with the running loss (rich); None: on when stdout is a terminal.
    * ``callbacks``: each called after every epoch as ``callback(epoch, history)``; returning ``False``
      (exactly) or raising ``StopIteration`` ends training after that epoch (``history.stopped_early``).
    * ``early_stopping``: None, a patience (int) or an :class:`EarlyStopping`; by default the network ends
      with the parameters of the best epoch.

    Every argument is checked before the network is touched.
    """
    if not isinstance(net, _core.MLP):
        raise TypeError(f"net must be a mlpgrad.MLP, got {type(net).__name__}")
    if not isinstance(optimizer, optim._Optimizer):
        raise TypeError(f"optimizer must be a mlpgrad.optim optimiser (SGD, Adam), got {type(optimizer).__name__}")
    if optimizer.net is not net:
        raise ValueError("optimizer was made for another network; make it with this one, e.g. optim.Adam(net)")
    loss_fn = resolve_loss(loss)
    epochs, batch_size = _positive_int("epochs", epochs), _positive_int("batch_size", batch_size)
    stopping = _early_stopping(early_stopping)
    callbacks = tuple(callbacks)
    for c in callbacks:
        if not callable(c):
            raise TypeError(f"callbacks must be callables (epoch, history), got a {type(c).__name__}")
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be None, True or False, got {type(progress).__name__}")
    X = check_inputs(net, X)
    y = check_targets(net, loss_fn, y, len(X))
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        X_val = check_inputs(net, validation_data[0], "validation_data[0]")
        validation = (X_val, check_targets(net, loss_fn, validation_data[1], len(X_val), "validation_data[1]"))
    rng = np.random.default_rng(seed)
    batch_size = min(batch_size, len(X))
    show = sys.stdout.isatty() if progress is None else bool(progress)

    started = time.perf_counter()
    trainer = Trainer(net, loss_fn, optimizer, batch_size=batch_size)
    history = History()
    best = _Snapshot(net) if stopping is not None and stopping.restore_best else None
    batches = -(-len(X) // batch_size)
    with _progress_bar(show, epochs * batches) as advance:
        for epoch in range(epochs):
            order = rng.permutation(len(X)) if shuffle else None
            train_loss = trainer.epoch(X, y, batch_size, order, on_batch=advance)
            val_loss = trainer.evaluate(*validation) if validation is not None else None
            history.record_epoch(train_loss, val_loss)
            if best is not None and history.best_epoch == epoch:
                best.take()
            stop = stopping is not None and _patience_ran_out(history.monitored_loss, stopping)
            for callback in callbacks:
                try:
                    stop |= callback(epoch, history) is False
                except StopIteration:
                    stop = True
            if stop and epoch + 1 < epochs:
                history.stopped_early = True
                break
    if best is not None and best.taken:
        best.restore()
    history.seconds_in_mlpgrad = trainer.seconds_in_mlpgrad
    history.seconds_other = max(time.perf_counter() - started - trainer.seconds_in_mlpgrad, 0.0)
    return history


def _patience_ran_out(monitored: Sequence[float], stopping: EarlyStopping) -> bool:
    """No epoch of the last ``patience`` improved on the best before them by more than min_delta."""
    if len(monitored) <= stopping.patience:
        return False
    before = min((v for v in monitored[:-stopping.patience] if not math.isnan(v)), default=math.inf)
    return not any(v < before - stopping.min_delta for v in monitored[-stopping.patience:])


class _Snapshot:
    """A copy of the network's parameters, allocated once, restored into the network's own arrays."""

    def __init__(self, net) -> None:
        self._params = parameters(net)
        self._copies = [p.copy() for p in self._params]
        self.taken = False

    def take(self) -> None:
        for copy, p in zip(self._copies, self._params):
            np.copyto(copy, p)
        self.taken = True

    def restore(self) -> None:
        for copy, p in zip(self._copies, self._params):
            np.copyto(p, copy)


class _progress_bar:
    """A rich progress bar over every batch of the run, with the running (exponentially averaged) loss;
    as a context manager it yields the per-batch callback, or None when the bar is off."""

    def __init__(self, show: bool, total: int) -> None:
        self._show, self._total, self._bar = show, total, None

    def __enter__(self) -> Optional[Callable[[float], None]]:
        if not self._show:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn())
        self._bar.__enter__()
        task = self._bar.add_task("training", total=self._total, loss="…")
        running = [math.nan]

        def advance(loss: float) -> None:
            running[0] = loss if math.isnan(running[0]) else 0.9 * running[0] + 0.1 * loss
            self._bar.update(task, advance=1, loss=f"{running[0]:.4g}")

        return advance

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
