"""Pure-Python reference implementation (oracle) of backpropagation for a dense network.

This module is the backprop notes (Wen Sun, "The Backpropagation Algorithm") made
executable; the C++ core is tested against it. Equation numbers refer to the notes:

    forward   (1)  z^0 = x
              (2)  u^{t+1} = W^{[t+1]} z^t,   z^{t+1} = sigma(u^{t+1})   for t = 0..T-1
              (3)  y_hat = alpha^T z^T
    backward       d y_hat / d z^T     = alpha                                  (base case)
                   for t = T..1:
                   d y_hat / d u^t     = d y_hat / d z^t  o  sigma'(u^t)          (Claim 1)
                   d y_hat / d W^{[t]} = (d y_hat / d u^t) (z^{t-1})^T            (Claim 1)
                   d y_hat / d z^{t-1} = W^{[t]T} (d y_hat / d u^t)               (induction step)

Conventions (the library's contract):
  * ``weights[t]`` (0-based) is the notes' W^{[t+1]}, a nested list of K_{t+1} rows of
    length K_t. Layers may have different widths (the notes' Question 2). T = len(weights)
    may be 0, in which case y_hat = alpha . x.
  * Inputs may be nested lists/tuples or any object with ``.tolist()`` (e.g. NumPy arrays,
    accepted by duck typing; this module never imports NumPy).
  * The ReLU derivative is 1 at a == 0, as in the notes (PyTorch uses 0 there).
  * Gradients are of ``dy * y_hat``; ``dy`` seeds the backward pass: d(dy y_hat)/dz^T = dy alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["ACTIVATIONS", "LEAKY_RELU_SLOPE", "ReferenceGradients", "forward", "value_and_grad",
           "value_and_grad_batch", "finite_difference"]

Vector = List[float]
Matrix = List[List[float]]
_Activation = Tuple[Callable[[float], float], Callable[[float], float]]  # (sigma, sigma')

LEAKY_RELU_SLOPE = 0.01


# ----------------------------------------------------------------------------- activations
# Each activation is a pair (sigma, sigma') acting on one float; the notes apply them
# element-wise: sigma(u) = [sigma(u_1), ..., sigma(u_K)].

def _sigmoid(a: float) -> float:
    # Numerically stable logistic: exp is only ever taken of a non-positive number.
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def _softplus(a: float) -> float:
    # log(1 + exp(a)) = max(a, 0) + log1p(exp(-|a|)), which never overflows.
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


_ACTIVATION_TABLE: Dict[str, _Activation] = {  # name: (sigma, sigma')
    # Notes: relu'(a) = 1 if a >= 0 else 0, i.e. the derivative at the kink a == 0 is 1.
    "relu": (lambda a: a if a >= 0.0 else 0.0, lambda a: 1.0 if a >= 0.0 else 0.0),
    "leaky_relu": (lambda a: a if a >= 0.0 else LEAKY_RELU_SLOPE * a,
                   lambda a: 1.0 if a >= 0.0 else LEAKY_RELU_SLOPE),
    "tanh": (math.tanh, lambda a: 1.0 - math.tanh(a) ** 2),
    "sigmoid": (_sigmoid, lambda a: _sigmoid(a) * (1.0 - _sigmoid(a))),
    "softplus": (_softplus, _sigmoid),  # softplus' = sigmoid
    "identity": (lambda a: a, lambda a: 1.0),
}
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity")


# ----------------------------------------------------------------------------- gradients
@dataclass
class ReferenceGradients:
    """Gradients of ``dy * y_hat``.

    weights: T nested lists, d/dW^{[t]} for t = 1..T (same shapes as the weights).
    alpha:   d/dalpha = dy * z^T.
    x:       d/dx (equal to z[0]); for a batch, a list of B rows (row b = dy_b * dy_hat_b/dx_b).
    z:       T+1 lists, d/dz^t for t = 0..T (z[T] = dy * alpha); None for batches / finite differences.
    u:       T lists, d/du^t for t = 1..T; None for batches / finite differences.
    """

    weights: List[Matrix]
    alpha: Vector
    x: Any
    z: Optional[List[Vector]] = None
    u: Optional[List[Vector]] = None


# ----------------------------------------------------------------------------- input checking
def _plain(obj: Any) -> Any:
    """Duck-typed conversion of array-likes (anything with .tolist()) to Python objects."""
    return obj.tolist() if hasattr(obj, "tolist") else obj


def _is_seq(obj: Any) -> bool:
    return isinstance(obj, Sequence) and not isinstance(obj, (str, bytes))


def _scalar(value: Any, name: str) -> float:
    value = _plain(value)
    if isinstance(value, (str, bytes)) or _is_seq(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}") from None


def _vector(obj: Any, name: str) -> Vector:
    obj = _plain(obj)
    if not _is_seq(obj):
        raise ValueError(f"{name} must be a 1-D sequence of floats, got {type(obj).__name__} {obj!r}")
    return [_scalar(v, f"{name}[{i}]") for i, v in enumerate(obj)]


def _matrix(obj: Any, name: str) -> Matrix:
    obj = _plain(obj)
    if not _is_seq(obj):
        raise ValueError(f"{name} must be a 2-D nested sequence (a list of rows), got {type(obj).__name__}")
    rows = [_vector(row, f"{name}[{i}]") for i, row in enumerate(obj)]
    for i, row in enumerate(rows):
        if len(row) != len(rows[0]):
            raise ValueError(f"{name} is ragged: row {i} has length {len(row)} but row 0 has length {len(rows[0])}")
    return rows


def _shape(m: Matrix) -> Tuple[int, int]:
    return (len(m), len(m[0]) if m else 0)


def _network(weights: Any, alpha: Any, activation: Any) -> Tuple[List[Matrix], Vector, List[_Activation], int]:
    """Validate and convert (weights, alpha, activation). Returns (W, alpha, acts, K_0)."""
    weights = _plain(weights)
    if not _is_seq(weights):
        raise ValueError(f"weights must be a sequence of T matrices, got {type(weights).__name__}")
    W = [_matrix(w, f"weights[{t}]") for t, w in enumerate(weights)]
    for t, w in enumerate(W):
        rows, cols = _shape(w)
        if rows == 0 or cols == 0:
            raise ValueError(f"weights[{t}] has shape {(rows, cols)} but every layer width must be >= 1")
        if t > 0 and cols != len(W[t - 1]):
            raise ValueError(
                f"weights[{t}] has shape {(rows, cols)} but expected {(rows, len(W[t - 1]))} "
                f"to chain with weights[{t - 1}] of shape {_shape(W[t - 1])}"
            )
    a = _vector(alpha, "alpha")
    if not a:
        raise ValueError("alpha has length 0 but every layer width must be >= 1")
    if W and len(a) != len(W[-1]):
        raise ValueError(f"alpha has length {len(a)} but expected {len(W[-1])} "
                         f"(the number of rows of weights[{len(W) - 1}])")
    k0 = len(W[0][0]) if W else len(a)
    return W, a, _activations(activation, len(W)), k0


def _activations(activation: Any, T: int) -> List[_Activation]:
    """One name for all layers, or a sequence of exactly T names."""
    activation = _plain(activation)
    if isinstance(activation, str):
        names, where = [activation], [""]
    elif _is_seq(activation):
        names, where = list(activation), [f" at activation[{i}]" for i in range(len(activation))]
        if len(names) != T:
            raise ValueError(f"activation has {len(names)} names but the network has {T} layers")
    else:
        raise ValueError(f"activation must be a name or a sequence of {T} names, got {type(activation).__name__}")
    for name, w in zip(names, where):
        if not isinstance(name, str) or name not in _ACTIVATION_TABLE:
            raise ValueError(f"unknown activation {name!r}{w}; expected one of {ACTIVATIONS}")
    acts = [_ACTIVATION_TABLE[name] for name in names]
    return acts * T if isinstance(activation, str) else acts


def _input(x: Any, k0: int, name: str = "x") -> Vector:
    v = _vector(x, name)
    if len(v) != k0:
        raise ValueError(f"{name} has length {len(v)} but expected {k0} (the input width K_0: the number of "
                         "columns of weights[0], or len(alpha) if the network has no layers)")
    return v


# ----------------------------------------------------------------------------- the algorithm
def _matvec(W: Matrix, v: Vector) -> Vector:
    return [sum(w_ij * v_j for w_ij, v_j in zip(row, v)) for row in W]


def _matTvec(W: Matrix, v: Vector) -> Vector:
    # (W^T v)_i = sum_j W[j][i] v_j = <v, W[:, i]>
    return [sum(W[j][i] * v[j] for j in range(len(W))) for i in range(len(W[0]))]


def _forward(W: List[Matrix], alpha: Vector, acts: List[_Activation], x: Vector):
    z = [list(x)]  # Eq. (1): z^0 = x
    u: List[Vector] = []
    for t in range(len(W)):  # Eq. (2), t = 0..T-1 (W[t] is the notes' W^{[t+1]})
        sigma = acts[t][0]
        u.append(_matvec(W[t], z[t]))  # u^{t+1} = W^{[t+1]} z^t
        z.append([sigma(a) for a in u[t]])  # z^{t+1} = sigma(u^{t+1})
    y_hat = sum(a_i * z_i for a_i, z_i in zip(alpha, z[-1]))  # Eq. (3): y_hat = alpha^T z^T
    return y_hat, u, z


def _backward(W: List[Matrix], alpha: Vector, acts: List[_Activation], u, z, dy: float) -> ReferenceGradients:
    T = len(W)
    dz: List[Vector] = [[] for _ in range(T + 1)]
    du: List[Vector] = [[] for _ in range(T)]
    dW: List[Matrix] = [[] for _ in range(T)]
    dz[T] = [dy * a for a in alpha]  # base case: d y_hat / d z^T = alpha (times the seed dy)
    for t in range(T, 0, -1):  # t = T..1; notes' index t is list index t-1 for u and W
        dsigma = acts[t - 1][1]
        # d y_hat / d u^t = d y_hat / d z^t  o  sigma'(u^t)
        du[t - 1] = [g * dsigma(a) for g, a in zip(dz[t], u[t - 1])]
        # d y_hat / d W^{[t]} = (d y_hat / d u^t) (z^{t-1})^T   (outer product)
        dW[t - 1] = [[g * zj for zj in z[t - 1]] for g in du[t - 1]]
        # d y_hat / d z^{t-1} = W^{[t]T} (d y_hat / d u^t)
        dz[t - 1] = _matTvec(W[t - 1], du[t - 1])
    d_alpha = [dy * zi for zi in z[T]]  # d(dy y_hat)/d alpha = dy z^T, from Eq. (3)
    return ReferenceGradients(weights=dW, alpha=d_alpha, x=list(dz[0]), z=dz, u=du)


# ----------------------------------------------------------------------------- public API
def forward(weights, alpha, x, activation="relu") -> Tuple[float, List[Vector], List[Vector]]:
    """Forward pass, Eqs. (1)-(3).

    Returns ``(y_hat, u, z)`` with ``u = [u^1, ..., u^T]`` and ``z = [z^0, ..., z^T]``
    (so ``z[0]`` is ``x`` as floats). ``activation`` is one name from ``ACTIVATIONS`` or a
    sequence of T names. Raises ValueError on inconsistent shapes or unknown activations.
    """
    W, a, acts, k0 = _network(weights, alpha, activation)
    return _forward(W, a, acts, _input(x, k0))


def value_and_grad(weights, alpha, x, activation="relu", dy=1.0) -> Tuple[float, ReferenceGradients]:
    """Forward then backward pass for one example.

    Returns ``(y_hat, grads)`` where ``grads`` holds the gradients of ``dy * y_hat`` with
    respect to every weight matrix, alpha, x, every z^t (t = 0..T) and every u^t (t = 1..T).
    ``y_hat`` itself is not scaled by ``dy``.
    """
    W, a, acts, k0 = _network(weights, alpha, activation)
    xv = _input(x, k0)
    dy = _scalar(dy, "dy")
    y_hat, u, z = _forward(W, a, acts, xv)
    return y_hat, _backward(W, a, acts, u, z, dy)


def value_and_grad_batch(weights, alpha, X, activation="relu", dy=None) -> Tuple[List[float], ReferenceGradients]:
    """Batched ``value_and_grad`` over the B rows of ``X``.

    Returns ``(y_hats, grads)``: one y_hat per row, and the gradients of
    ``sum_b dy_b * y_hat_b`` (``dy`` is a length-B sequence, default all ones): weight and
    alpha gradients are summed over the batch (in row order), ``grads.x`` has row
    ``b = dy_b * d y_hat_b / d x_b``, and ``grads.z`` / ``grads.u`` are None.
    B = 0 is allowed: empty y_hats, zero weight/alpha gradients and ``grads.x == []``.
    """
    W, a, acts, k0 = _network(weights, alpha, activation)
    X = _plain(X)
    if not _is_seq(X):
        raise ValueError(f"X must be a sequence of B rows of length {k0}, got {type(X).__name__}")
    rows = [_input(row, k0, f"X[{b}]") for b, row in enumerate(X)]
    B = len(rows)
    if dy is None:
        dys = [1.0] * B
    else:
        dys = _vector(dy, "dy")
        if len(dys) != B:
            raise ValueError(f"dy has length {len(dys)} but expected {B} (one per row of X)")
    y_hats: List[float] = []
    dW = [[[0.0] * len(row) for row in w] for w in W]
    d_alpha = [0.0] * len(a)
    dX: List[Vector] = []
    for xb, dyb in zip(rows, dys):
        y_hat, u, z = _forward(W, a, acts, xb)
        g = _backward(W, a, acts, u, z, dyb)
        y_hats.append(y_hat)
        # Sum over the batch, in row order: d/dW = sum_b d(dy_b y_hat_b)/dW, same for alpha.
        dW = [[[s + v for s, v in zip(sr, gr)] for sr, gr in zip(sw, gw)] for sw, gw in zip(dW, g.weights)]
        d_alpha = [s + v for s, v in zip(d_alpha, g.alpha)]
        dX.append(g.x)
    return y_hats, ReferenceGradients(weights=dW, alpha=d_alpha, x=dX, z=None, u=None)


def finite_difference(weights, alpha, x, activation="relu", dy=1.0, eps=1e-6) -> ReferenceGradients:
    """Central finite differences of ``dy * y_hat``: (f(p + eps) - f(p - eps)) / (2 eps).

    Perturbs every weight entry, every alpha entry and every x entry in turn, using only
    the forward pass, so it is an independent check of the backward pass. Fields ``z`` and
    ``u`` of the result are None. Inaccurate near ReLU kinks (|u| of order eps).
    """
    W, a, acts, k0 = _network(weights, alpha, activation)
    xv = _input(x, k0)
    dy = _scalar(dy, "dy")
    eps = _scalar(eps, "eps")
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps!r}")

    def f() -> float:
        return dy * _forward(W, a, acts, xv)[0]

    def central(vec: Vector, i: int) -> float:
        # Perturbs vec[i] in place (vec is one of W's rows, a or xv) and restores it.
        original = vec[i]
        vec[i] = original + eps
        f_plus = f()
        vec[i] = original - eps
        f_minus = f()
        vec[i] = original
        return (f_plus - f_minus) / (2.0 * eps)

    dW = [[[central(row, j) for j in range(len(row))] for row in w] for w in W]
    d_alpha = [central(a, i) for i in range(len(a))]
    dx = [central(xv, i) for i in range(len(xv))]
    return ReferenceGradients(weights=dW, alpha=d_alpha, x=dx, z=None, u=None)
