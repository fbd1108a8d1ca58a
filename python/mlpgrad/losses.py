"""Losses for training: each returns the mean loss and its gradient dy = ∂(mean loss)/∂ŷ.

Every loss takes ``(yhat, y, *, sample_weight=None)`` and returns ``(loss, dy)``:

* ``yhat``: the network's outputs for a batch, a float32 or float64 array of shape ``(B,)`` (a network with
  a scalar output) or ``(B, m)`` (m outputs);
* ``loss``: a Python float, the weighted mean of the per-example losses ℓ_b,

      loss = Σ_b w_b ℓ_b / Σ_b w_b      (w_b = 1 without sample weights: the plain mean),

  scikit-learn's convention for sample weights (PyTorch's ``reduction="mean"`` without weights);
* ``dy``: ∂loss/∂ŷ, a new array of the same shape and dtype as ``yhat`` (float32 stays float32), ready to be
  passed as ``dy`` to the network's batch backward pass: ``dy_b = w_b / Σw · ∂ℓ_b/∂ŷ_b``.

``sample_weight`` is None or B non-negative, finite numbers, not all zero. The per-example losses:

* ``mse``: ℓ_b = mean over the outputs of (ŷ_b − y_b)² (no factor ½; PyTorch's ``MSELoss``);
* ``logistic``: binary cross-entropy on logits, ℓ_b = mean over the outputs of log(1 + e^ŷ) − y ŷ with
  y ∈ [0, 1] (PyTorch's ``BCEWithLogitsLoss``), evaluated without overflow or cancellation for any ŷ;
* ``softmax_cross_entropy``: ℓ_b = −Σ_k y_bk log softmax(ŷ_b)_k for logits ŷ of shape (B, m), with y either
  integer class labels (B,) in [0, m) or class probabilities / one-hot rows (B, m) (PyTorch's
  ``CrossEntropyLoss``), through a shifted log-sum-exp.

Targets ``y`` and ``sample_weight`` are data: NaN or ±Inf in them, targets outside a loss's domain, wrong
shapes or lengths raise ``ValueError`` (``TypeError`` for non-numbers) naming the argument. NaN in ``yhat``
(a diverged network) is not an error: it propagates into the loss and ``dy``, as in PyTorch.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = ["mse", "logistic", "softmax_cross_entropy"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _array(value, what: str) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as e:  # a failing __array__ or ragged nesting: the caller's data, not ours
        raise TypeError(f"{what} could not be read as an array of numbers: {e}") from e
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} has dtype {a.dtype}; expected real numbers")
    return a


def _outputs(yhat) -> np.ndarray:
    a = _array(yhat, "yhat")
    if a.dtype not in _FLOATS:
        raise TypeError(f"yhat has dtype {a.dtype}; expected float32 or float64 (a network's outputs)")
    if a.ndim not in (1, 2):
        raise ValueError(f"yhat must have shape (B,) or (B, m), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError("yhat holds no examples (B = 0); the mean loss of an empty batch is undefined")
    return a


def _require_finite(a: np.ndarray, what: str) -> None:
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinite values (in {a.dtype}); targets and weights must be finite")


def _converted(a: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """`a` in `dtype` (yhat's), finite: a value beyond float32's range fails here rather than becoming Inf."""
    with np.errstate(over="ignore"):
        a = a.astype(dtype, copy=False)
    _require_finite(a, what)
    return a


def _targets(y, yhat: np.ndarray) -> np.ndarray:
    """y as a finite array of yhat's dtype and shape."""
    a = _array(y, "y")
    if a.shape != yhat.shape:
        raise ValueError(f"y has shape {a.shape} but yhat has shape {yhat.shape}; expected the same shape")
    return _converted(a, yhat.dtype, "y")


def _example_weights(sample_weight, yhat: np.ndarray) -> Optional[np.ndarray]:
    """r_b = w_b / Σw of shape (B,) in yhat's dtype, or None for equal weights 1/B."""
    if sample_weight is None:
        return None
    w = _array(sample_weight, "sample_weight")
    batch = yhat.shape[0]
    if w.shape != (batch,):
        raise ValueError(f"sample_weight has shape {w.shape} but yhat holds {batch} examples; expected ({batch},)")
    w = _converted(w, yhat.dtype, "sample_weight")
    if (w < 0).any():
        raise ValueError(f"sample_weight holds negative values (smallest {w.min()}); weights must be >= 0")
    largest = w.max()
    if largest == 0:
        raise ValueError("sample_weight is all zeros; at least one example must have a positive weight")
    w = w / largest  # so that Σw cannot overflow
    return w / w.sum()


def _reduce(per_element: np.ndarray, gradient: np.ndarray, r: Optional[np.ndarray]) -> Tuple[float, np.ndarray]:
    """The weighted mean over examples of the mean over outputs, and the gradient scaled to match.

    ``per_element`` and ``gradient`` (∂ℓ/∂ŷ elementwise, overwritten) have yhat's shape. Each term is scaled
    before summing, so that the sum of values near the float range cannot overflow.
    """
    batch = per_element.shape[0]
    outputs = 1 if per_element.ndim == 1 else per_element.shape[1]
    scale = (1.0 / (batch * outputs)) if r is None else (r if per_element.ndim == 1 else r[:, None]) / outputs
    scaled = per_element * scale
    gradient *= scale
    return float(scaled.sum(dtype=per_element.dtype)), gradient


def mse(yhat: npt.ArrayLike, y: npt.ArrayLike, *, sample_weight: Optional[npt.ArrayLike] = None
        ) -> Tuple[float, np.ndarray]:
    """Mean squared error: ℓ_b = mean over outputs of (ŷ_b − y_b)²; dy = 2 w_b/Σw (ŷ − y) / m.

    ``y`` has the shape of ``yhat``: ``(B,)`` or ``(B, m)``. Returns ``(loss, dy)`` (see the module docstring).
    """
    yhat = _outputs(yhat)
    target = _targets(y, yhat)
    r = _example_weights(sample_weight, yhat)
    residual = yhat - target
    return _reduce(residual * residual, residual * 2, r)


def logistic(yhat: npt.ArrayLike, y: npt.ArrayLike, *, sample_weight: Optional[npt.ArrayLike] = None
             ) -> Tuple[float, np.ndarray]:
    """Binary cross-entropy on logits: ℓ = log(1 + e^ŷ) − y ŷ, dy = w_b/Σw (σ(ŷ) − y) / m.

    ``yhat`` holds logits, ``(B,)`` or ``(B, m)`` (m independent binary outputs); ``y`` has the same shape,
    with values in [0, 1] (labels 0/1 or probabilities). Evaluated as

        ℓ = c·|ŷ| + log1p(e^−|ŷ|),   c = 1 − y if ŷ ≥ 0 else y,
        σ(ŷ) − y = (1 − y) σ(ŷ) − y σ(−ŷ),

    sums of non-negative terms and differences of terms that are each accurate, so that nothing overflows
    and nothing cancels catastrophically for any finite ŷ, ±1e308 included; ŷ = ±Inf gives the limits.
    """
    yhat = _outputs(yhat)
    target = _targets(y, yhat)
    if ((target < 0) | (target > 1)).any():
        raise ValueError(f"y holds values outside [0, 1] (from {target.min()} to {target.max()}); the logistic "
                         "loss takes binary labels or probabilities")
    r = _example_weights(sample_weight, yhat)
    magnitude = np.abs(yhat)
    e = np.exp(-magnitude)  # in (0, 1]: never overflows
    nonnegative = yhat >= 0
    coefficient = np.where(nonnegative, 1 - target, target)
    with np.errstate(invalid="ignore"):  # 0·Inf at ŷ = ±Inf with a matching label: the limit is 0, set below
        linear = coefficient * magnitude
    linear[(coefficient == 0) & np.isinf(yhat)] = 0
    loss = linear + np.log1p(e)
    sigma_of_magnitude = 1 / (1 + e)           # σ(|ŷ|)
    sigma_of_minus_magnitude = e / (1 + e)     # σ(−|ŷ|)
    sigma = np.where(nonnegative, sigma_of_magnitude, sigma_of_minus_magnitude)
    sigma_of_minus = np.where(nonnegative, sigma_of_minus_magnitude, sigma_of_magnitude)
    gradient = (1 - target) * sigma - target * sigma_of_minus
    return _reduce(loss, gradient, r)


def softmax_cross_entropy(yhat: npt.ArrayLike, y: npt.ArrayLike, *, sample_weight: Optional[npt.ArrayLike] = None
                          ) -> Tuple[float, np.ndarray]:
    """Softmax cross-entropy on logits ŷ of shape (B, m): ℓ_b = −Σ_k y_bk log softmax(ŷ_b)_k.

    ``y`` is either integer class labels of shape ``(B,)`` in [0, m), or class probabilities (one-hot rows,
    soft labels) of shape ``(B, m)``: finite and non-negative (rows that do not sum to 1 are taken as they
    are, as in PyTorch). dy_b = w_b/Σw (s_b softmax(ŷ_b) − y_b) with s_b = Σ_k y_bk (1 for labels).

    log softmax is computed from logits shifted by their row maximum μ (log-sum-exp), so it never overflows,
    and softmax(ŷ)_k = e^{ŷ_k − μ} / Σ_j e^{ŷ_j − μ}; a class whose logit is −Inf, or far below the others,
    has probability 0, and contributes 0 when its target is 0. Rows whose logits hold +Inf or NaN, or are
    all −Inf, give NaN. One fused pass per row in the compiled core; the mean over the batch is summed in
    blocks, like every long sum in mlpgrad.
    """
    yhat = _outputs(yhat)
    if yhat.ndim != 2:
        raise ValueError(f"yhat has shape {yhat.shape}; softmax_cross_entropy takes logits of shape (B, m) "
                         "(a network with m outputs); for one binary output use logistic")
    batch, classes = yhat.shape
    if classes == 0:
        raise ValueError(f"yhat has shape {yhat.shape}: no classes; softmax_cross_entropy needs m >= 1 logits per example")
    labels = _aligned(_class_targets(y, batch, classes, yhat.dtype))
    r = _example_weights(sample_weight, yhat)
    # One fused pass per row in C++ (mlpgrad/losses/softmax_cross_entropy.hpp): the NumPy expression of the
    # same loss took ~25 passes, a quarter of a digits training step.
    return _core._softmax_cross_entropy(_aligned(yhat), labels, None if r is None else _aligned(r))


def _aligned(a: np.ndarray) -> np.ndarray:
    """a, or a C-contiguous, aligned copy of it (an array unpickled from a buffer may be neither)."""
    return np.require(a, requirements="CA")


def _class_targets(y, batch: int, classes: int, dtype: np.dtype) -> np.ndarray:
    """Integer labels (B,) as intp, or probabilities (B, m) in yhat's dtype."""
    a = _array(y, "y")
    if a.ndim == 1:
        if a.shape[0] != batch:
            raise ValueError(f"y has shape {a.shape} but yhat holds {batch} examples; expected ({batch},) "
                             f"class labels or ({batch}, {classes}) probabilities")
        if a.dtype.kind not in "iu":
            raise TypeError(f"y of shape {a.shape} holds class labels and must be integers, got dtype {a.dtype}; "
                            f"pass y.astype(int), or probabilities of shape ({batch}, {classes})")
        if batch and (a.min() < 0 or a.max() >= classes):
            raise ValueError(f"y holds class labels from {a.min()} to {a.max()} but yhat has {classes} classes; "
                             f"expected labels in [0, {classes})")
        return a.astype(np.intp, copy=False)
    if a.shape != (batch, classes):
        raise ValueError(f"y has shape {a.shape} but yhat has shape {(batch, classes)}; expected ({batch},) class "
                         f"labels or ({batch}, {classes}) probabilities")
    a = _converted(a, dtype, "y")
    if (a < 0).any():
        raise ValueError(f"y holds negative probabilities (smallest {a.min()}); expected class probabilities >= 0")
    return a
