"""Pure-Python reference implementation (oracle) of backpropagation for a dense network.

This module is the backprop notes (Wen Sun, "The Backpropagation Algorithm") made
executable; the C++ core is tested against it. Equation numbers refer to the notes:

    forward   (1)  z^0 = x
              (2)  u^{t+1} = W^{[t+1]} z^t (+ b^{t+1}),   z^{t+1} = sigma(u^{t+1})   for t = 0..T-1
              (3)  y_hat = alpha^T z^T (+ beta)
    backward       d y_hat / d z^T     = alpha                                  (base case)
                   for t = T..1:
                   d y_hat / d u^t     = d y_hat / d z^t  o  sigma'(u^t)          (Claim 1)
                   d y_hat / d W^{[t]} = (d y_hat / d u^t) (z^{t-1})^T            (Claim 1)
                   d y_hat / d z^{t-1} = W^{[t]T} (d y_hat / d u^t)               (induction step)

Generalised beyond the notes (issue 11), all optional: biases b^{t+1} (one vector per layer), an output
bias beta, and m outputs (alpha a K_T x m matrix, y_hat = alpha^T z^T in R^m). Then the gradients of
dy^T y_hat (dy in R^m) are d/dz^T = alpha dy, d/dalpha = z^T dy^T, d/db^t = d/du^t and d/dbeta = dy.

Conventions (the library's contract):
  * ``weights[t]`` (0-based) is the notes' W^{[t+1]}, a nested list of K_{t+1} rows of
    length K_t. Layers may have different widths (the notes' Question 2). T = len(weights)
    may be 0, in which case y_hat = alpha . x.
  * Inputs may be nested lists/tuples or any object with ``.tolist()`` (e.g. NumPy arrays,
    accepted by duck typing; this module never imports NumPy).
  * The ReLU derivative is 1 at a == 0, as in the notes (PyTorch uses 0 there).
  * Gradients are of ``dy * y_hat``; ``dy`` seeds the backward pass: d(dy y_hat)/dz^T = dy alpha.
  * ``alpha`` 1-D (K_T numbers): one output, y_hat and dy are floats (the notes). ``alpha`` 2-D (K_T rows of
    m numbers): m outputs, y_hat and dy are lists of m floats. ``biases`` is None or T vectors (biases[t] is
    b^{t+1}, K_{t+1} numbers); ``output_bias`` is None or beta (a float for one output, m floats for m).
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
    alpha:   d/dalpha = z^T dy^T (shape of alpha: dy * z^T for one output).
    x:       d/dx (equal to z[0]); for a batch, a list of B rows (row b = dy_b * dy_hat_b/dx_b).
    z:       T+1 lists, d/dz^t for t = 0..T (z[T] = dy * alpha); None for batches / finite differences.
    u:       T lists, d/du^t for t = 1..T; None for batches / finite differences.
    biases:  T lists, d/db^t = d/du^t (batch: summed); None when the network has no biases.
    output_bias: d/dbeta = dy (batch: summed; shape of beta); None when the network has none.
    """

    weights: List[Matrix]
    alpha: Any
    x: Any
    z: Optional[List[Vector]] = None
    u: Optional[List[Vector]] = None
    biases: Optional[List[Vector]] = None
    output_bias: Any = None


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


@dataclass
class _Net:
    W: List[Matrix]
    alpha: Matrix  # K_T rows of m numbers (one column for one output)
    acts: List[_Activation]
    k0: int
    vector_output: bool  # alpha was 2-D: y_hat, dy and beta are lists of m numbers
    b: Optional[List[Vector]]  # b^{t+1} for t = 0..T-1
    beta: Optional[Vector]  # m numbers

    @property
    def m(self) -> int:
        return len(self.alpha[0])

    def outputs(self, v: Vector) -> Any:
        """A length-m result as the caller sees it: a float for one output."""
        return list(v) if self.vector_output else v[0]


def _network(weights: Any, alpha: Any, activation: Any, biases: Any = None, output_bias: Any = None) -> _Net:
    """Validate and convert the network's parameters."""
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
    alpha = _plain(alpha)
    vector_output = _is_seq(alpha) and len(alpha) > 0 and _is_seq(_plain(alpha[0]))
    if vector_output:
        A = _matrix(alpha, "alpha")
        if not A[0]:
            raise ValueError("alpha has 0 columns but a network has at least 1 output")
    else:
        A = [[v] for v in _vector(alpha, "alpha")]
    if not A:
        raise ValueError("alpha has length 0 but every layer width must be >= 1")
    if W and len(A) != len(W[-1]):
        raise ValueError(f"alpha has length {len(A)} but expected {len(W[-1])} "
                         f"(the number of rows of weights[{len(W) - 1}])")
    k0 = len(W[0][0]) if W else len(A)
    b = None
    if biases is not None:
        biases = _plain(biases)
        if not _is_seq(biases) or len(biases) != len(W):
            got = len(biases) if _is_seq(biases) else type(biases).__name__
            raise ValueError(f"biases must be None or a sequence of {len(W)} vectors (one per layer), got {got}")
        b = [_vector(v, f"biases[{t}]") for t, v in enumerate(biases)]
        for t, v in enumerate(b):
            if len(v) != len(W[t]):
                raise ValueError(f"biases[{t}] has length {len(v)} but expected {len(W[t])} "
                                 f"(the number of rows of weights[{t}])")
    beta = None
    if output_bias is not None:
        m = len(A[0])
        beta = _vector(output_bias, "output_bias") if vector_output else [_scalar(output_bias, "output_bias")]
        if len(beta) != m:
            raise ValueError(f"output_bias has length {len(beta)} but expected {m} (the number of columns of alpha)")
    return _Net(W, A, _activations(activation, len(W)), k0, vector_output, b, beta)


def _seed(net: _Net, dy: Any, name: str = "dy") -> Vector:
    """dy as m numbers: a float for one output, a sequence of m for m outputs."""
    if not net.vector_output:
        return [_scalar(dy, name)]
    v = _vector(dy, name)
    if len(v) != net.m:
        raise ValueError(f"{name} has length {len(v)} but expected {net.m} (one per output)")
    return v


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


def _forward(net: _Net, x: Vector):
    z = [list(x)]  # Eq. (1): z^0 = x
    u: List[Vector] = []
    for t in range(len(net.W)):  # Eq. (2), t = 0..T-1 (W[t] is the notes' W^{[t+1]})
        sigma = net.acts[t][0]
        u.append(_matvec(net.W[t], z[t]))  # u^{t+1} = W^{[t+1]} z^t
        if net.b is not None:
            u[t] = [a + b for a, b in zip(u[t], net.b[t])]  # ... + b^{t+1}
        z.append([sigma(a) for a in u[t]])  # z^{t+1} = sigma(u^{t+1})
    y_hat = _matTvec(net.alpha, z[-1])  # Eq. (3): y_hat = alpha^T z^T (m numbers)
    if net.beta is not None:
        y_hat = [y + c for y, c in zip(y_hat, net.beta)]  # ... + beta
    return y_hat, u, z


def _backward(net: _Net, u, z, dy: Vector) -> ReferenceGradients:
    W, T = net.W, len(net.W)
    dz: List[Vector] = [[] for _ in range(T + 1)]
    du: List[Vector] = [[] for _ in range(T)]
    dW: List[Matrix] = [[] for _ in range(T)]
    dz[T] = _matvec(net.alpha, dy)  # base case: d(dy^T y_hat) / d z^T = alpha dy
    for t in range(T, 0, -1):  # t = T..1; notes' index t is list index t-1 for u and W
        dsigma = net.acts[t - 1][1]
        # d y_hat / d u^t = d y_hat / d z^t  o  sigma'(u^t)
        du[t - 1] = [g * dsigma(a) for g, a in zip(dz[t], u[t - 1])]
        # d y_hat / d W^{[t]} = (d y_hat / d u^t) (z^{t-1})^T   (outer product)
        dW[t - 1] = [[g * zj for zj in z[t - 1]] for g in du[t - 1]]
        # d y_hat / d z^{t-1} = W^{[t]T} (d y_hat / d u^t)
        dz[t - 1] = _matTvec(W[t - 1], du[t - 1])
    d_alpha = [[zi * d for d in dy] for zi in z[T]]  # d(dy^T y_hat)/d alpha = z^T dy^T, from Eq. (3)
    return ReferenceGradients(
        weights=dW, alpha=d_alpha if net.vector_output else [row[0] for row in d_alpha], x=list(dz[0]), z=dz, u=du,
        biases=[list(g) for g in du] if net.b is not None else None,  # d/db^t = d/du^t
        output_bias=net.outputs(dy) if net.beta is not None else None)  # d/dbeta = dy


# ----------------------------------------------------------------------------- public API
def forward(weights, alpha, x, activation="relu", *, biases=None, output_bias=None):
    """Forward pass, Eqs. (1)-(3).

    Returns ``(y_hat, u, z)`` with ``u = [u^1, ..., u^T]`` and ``z = [z^0, ..., z^T]``
    (so ``z[0]`` is ``x`` as floats); ``y_hat`` is a float for one output, a list of m floats for m.
    ``activation`` is one name from ``ACTIVATIONS`` or a sequence of T names. Raises ValueError on
    inconsistent shapes or unknown activations.
    """
    net = _network(weights, alpha, activation, biases, output_bias)
    y_hat, u, z = _forward(net, _input(x, net.k0))
    return net.outputs(y_hat), u, z


def value_and_grad(weights, alpha, x, activation="relu", dy=1.0, *, biases=None, output_bias=None):
    """Forward then backward pass for one example.

    Returns ``(y_hat, grads)`` where ``grads`` holds the gradients of ``dy^T y_hat`` with
    respect to every weight matrix, alpha, x, every z^t (t = 0..T), every u^t (t = 1..T) and the
    biases. ``y_hat`` itself is not scaled by ``dy``. For m outputs ``dy`` has m numbers (default
    1.0 for one output only).
    """
    net = _network(weights, alpha, activation, biases, output_bias)
    xv = _input(x, net.k0)
    dys = _seed(net, dy)
    y_hat, u, z = _forward(net, xv)
    return net.outputs(y_hat), _backward(net, u, z, dys)


def _add(acc: Any, g: Any) -> Any:
    """acc + g for nested lists of floats."""
    if isinstance(g, list):
        return [_add(a, v) for a, v in zip(acc, g)]
    return acc + g


def _zeros_like(g: Any) -> Any:
    return [_zeros_like(v) for v in g] if isinstance(g, list) else 0.0


def value_and_grad_batch(weights, alpha, X, activation="relu", dy=None, *, biases=None, output_bias=None):
    """Batched ``value_and_grad`` over the B rows of ``X``.

    Returns ``(y_hats, grads)``: one y_hat per row, and the gradients of
    ``sum_b dy_b^T y_hat_b`` (``dy`` has B entries, each a float or, for m outputs, m floats;
    default all ones): weight, alpha and bias gradients are summed over the batch (in row order),
    ``grads.x`` has row ``b = d(dy_b^T y_hat_b) / d x_b``, and ``grads.z`` / ``grads.u`` are None.
    B = 0 is allowed: empty y_hats, zero parameter gradients and ``grads.x == []``.
    """
    net = _network(weights, alpha, activation, biases, output_bias)
    X = _plain(X)
    if not _is_seq(X):
        raise ValueError(f"X must be a sequence of B rows of length {net.k0}, got {type(X).__name__}")
    rows = [_input(row, net.k0, f"X[{b}]") for b, row in enumerate(X)]
    B = len(rows)
    if dy is None:
        dys = [[1.0] * net.m for _ in range(B)]
    else:
        dy = _plain(dy)
        if not _is_seq(dy) or len(dy) != B:
            got = len(dy) if _is_seq(dy) else type(dy).__name__
            raise ValueError(f"dy has length {got} but expected {B} (one per row of X)")
        dys = [_seed(net, d, f"dy[{b}]") for b, d in enumerate(dy)]
    # The sums start from zero gradients of the parameters' shapes (what a B = 0 batch returns).
    dW = [[[0.0] * len(row) for row in w] for w in net.W]
    d_alpha = _zeros_like(net.alpha) if net.vector_output else [0.0] * len(net.alpha)
    d_b = _zeros_like(net.b) if net.b is not None else None
    d_beta = net.outputs([0.0] * net.m) if net.beta is not None else None
    y_hats: List[Any] = []
    dX: List[Vector] = []
    for xb, dyb in zip(rows, dys):
        y_hat, u, z = _forward(net, xb)
        g = _backward(net, u, z, dyb)
        y_hats.append(net.outputs(y_hat))
        # Sum over the batch, in row order: d/dW = sum_b d(dy_b^T y_hat_b)/dW, same for alpha and the biases.
        dW, d_alpha = _add(dW, g.weights), _add(d_alpha, g.alpha)
        if d_b is not None:
            d_b = _add(d_b, g.biases)
        if d_beta is not None:
            d_beta = _add(d_beta, g.output_bias)
        dX.append(g.x)
    return y_hats, ReferenceGradients(weights=dW, alpha=d_alpha, x=dX, z=None, u=None, biases=d_b, output_bias=d_beta)


def finite_difference(weights, alpha, x, activation="relu", dy=1.0, eps=1e-6, *, biases=None, output_bias=None):
    """Central finite differences of ``dy^T y_hat``: (f(p + eps) - f(p - eps)) / (2 eps).

    Perturbs every weight, alpha, bias and x entry in turn, using only the forward pass, so it is
    an independent check of the backward pass. Fields ``z`` and ``u`` of the result are None.
    Inaccurate near ReLU kinks (|u| of order eps).
    """
    net = _network(weights, alpha, activation, biases, output_bias)
    xv = _input(x, net.k0)
    dys = _seed(net, dy)
    eps = _scalar(eps, "eps")
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps!r}")

    def f() -> float:
        return sum(d * y for d, y in zip(dys, _forward(net, xv)[0]))

    def central(vec: Vector, i: int) -> float:
        # Perturbs vec[i] in place (vec is a row of W or alpha, a bias, beta or xv) and restores it.
        original = vec[i]
        vec[i] = original + eps
        f_plus = f()
        vec[i] = original - eps
        f_minus = f()
        vec[i] = original
        return (f_plus - f_minus) / (2.0 * eps)

    dW = [[[central(row, j) for j in range(len(row))] for row in w] for w in net.W]
    d_alpha = [[central(row, j) for j in range(len(row))] for row in net.alpha]
    d_b = [[central(v, i) for i in range(len(v))] for v in net.b] if net.b is not None else None
    d_beta = net.outputs([central(net.beta, j) for j in range(net.m)]) if net.beta is not None else None
    dx = [central(xv, i) for i in range(len(xv))]
    return ReferenceGradients(weights=dW, alpha=d_alpha if net.vector_output else [row[0] for row in d_alpha],
                              x=dx, z=None, u=None, biases=d_b, output_bias=d_beta)
