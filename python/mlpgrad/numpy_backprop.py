"""Backpropagation for a dense network in plain NumPy: the speed peer of the C++ core.

Same network, conventions and activation names as :class:`mlpgrad.MLP`::

    z^0 = x,   u^{t+1} = W[t] @ z^t,   z^{t+1} = sigma(u^{t+1}),   yhat = alpha @ z^T

``weights[t]`` has shape ``(K_{t+1}, K_t)``. The single-example path writes into
preallocated buffers everywhere (``out=`` on every ufunc, ``np.dot`` and ``np.outer``):
no array is allocated per call; the only scratch is the fixed-size (8192-element)
buffer NumPy's ufunc iterator takes for the broadcast outer product. The batch path
uses ``X @ W.T``, ``dU.T @ Z`` and ``dU @ W``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ACTIVATIONS", "NumpyGradients", "NumpyMLP"]

#: Activation names, identical to ``mlpgrad.ACTIVATIONS``.
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity")
_LEAK = 0.01


# Each activation is a pair (forward, backward), both writing into buffers only:
#   forward(u, z, tmp, mask):           z  = sigma(u)
#   backward(u, z, gz, gu, tmp, mask):  gu = gz * sigma'(u), using z = sigma(u) where that
#                                       is how the core does it (tanh, sigmoid, softplus)
def _relu_f(u, z, tmp, mask):
    np.maximum(u, 0, out=z)


def _relu_b(u, z, gz, gu, tmp, mask):
    np.greater_equal(u, 0, out=mask)  # sigma'(a) = 1 for a >= 0 (the notes' convention)
    np.multiply(gz, mask, out=gu)


def _leaky_f(u, z, tmp, mask):
    np.multiply(u, _LEAK, out=z)
    np.maximum(u, z, out=z)  # max(a, 0.01 a) is a for a >= 0 and 0.01 a below


def _leaky_b(u, z, gz, gu, tmp, mask):
    np.multiply(gz, _LEAK, out=gu)
    np.greater_equal(u, 0, out=mask)
    np.copyto(gu, gz, where=mask)


def _tanh_f(u, z, tmp, mask):
    np.tanh(u, out=z)


def _tanh_b(u, z, gz, gu, tmp, mask):
    np.multiply(z, z, out=tmp)
    np.subtract(1, tmp, out=tmp)
    np.multiply(gz, tmp, out=gu)


def _sigmoid_f(u, z, tmp, mask):
    # 1 / (1 + e^-a) = exp(-log(1 + e^-a)): never overflows, accurate in both tails
    np.negative(u, out=z)
    np.logaddexp(0, z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)


def _sigmoid_b(u, z, gz, gu, tmp, mask):
    np.subtract(1, z, out=tmp)  # sigma'(a) = sigma(a) (1 - sigma(a)), as in the core
    np.multiply(tmp, z, out=tmp)
    np.multiply(gz, tmp, out=gu)


def _softplus_f(u, z, tmp, mask):
    np.logaddexp(0, u, out=z)  # log(1 + e^a) without overflow


def _softplus_b(u, z, gz, gu, tmp, mask):
    # softplus'(a) = sigmoid(a) = 1 - exp(-softplus(a)) = -expm1(-z): accurate in both tails
    np.negative(z, out=tmp)
    np.expm1(tmp, out=tmp)
    np.negative(tmp, out=tmp)
    np.multiply(gz, tmp, out=gu)


def _identity_f(u, z, tmp, mask):
    np.copyto(z, u)


def _identity_b(u, z, gz, gu, tmp, mask):
    np.copyto(gu, gz)


_ACT = {
    "relu": (_relu_f, _relu_b),
    "leaky_relu": (_leaky_f, _leaky_b),
    "tanh": (_tanh_f, _tanh_b),
    "sigmoid": (_sigmoid_f, _sigmoid_b),
    "softplus": (_softplus_f, _softplus_b),
    "identity": (_identity_f, _identity_b),
}


@dataclass
class NumpyGradients:
    """Gradient buffers mirroring :class:`mlpgrad.Gradients`.

    ``weights[t]`` is d/dW[t], ``alpha`` d/d alpha, ``x`` d/dx (shape ``(K_0,)``, or
    ``(B, K_0)`` for a batch). ``z`` (t = 0..T, ``z[0]`` is ``x``) and ``u`` (t = 1..T)
    hold d/dz^t and d/du^t for a single example and are ``None`` for a batch.
    """

    weights: list
    alpha: np.ndarray
    x: np.ndarray
    z: list | None = None
    u: list | None = None
    batch: int | None = None


class NumpyMLP:
    """Dense network ``yhat = alpha @ sigma(W[T-1] ... sigma(W[0] @ x))`` in NumPy.

    ``weights``: sequence of 2-D float32/float64 arrays, ``weights[t]`` of shape
    ``(K_{t+1}, K_t)`` (T = 0 layers allowed); ``alpha``: shape ``(K_T,)``, same dtype. C-contiguous arrays of
    that dtype are kept as is (not copied), like the core. ``activation``: one name of
    :data:`ACTIVATIONS` or a sequence of ``T`` names.
    """

    def __init__(self, weights, alpha, activation="relu"):
        self.weights = [np.ascontiguousarray(w) for w in weights]
        self.alpha = np.ascontiguousarray(alpha)
        self.dtype = self.alpha.dtype
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"alpha: expected float32 or float64, got {self.dtype}")
        for t, w in enumerate(self.weights):
            if w.dtype != self.dtype:
                raise TypeError(f"weights[{t}]: expected dtype {self.dtype}, got {w.dtype}")
            if w.ndim != 2 or 0 in w.shape:
                raise ValueError(f"weights[{t}]: expected a non-empty 2-D array, got shape {w.shape}")
            if t and w.shape[1] != self.weights[t - 1].shape[0]:
                k = self.weights[t - 1].shape[0]
                raise ValueError(f"weights[{t}]: expected {k} columns to chain, got shape {w.shape}")
        k0 = self.weights[0].shape[1] if self.weights else (self.alpha.shape or (0,))[0]  # T = 0: yhat = alpha @ x
        self.widths = (k0,) + tuple(w.shape[0] for w in self.weights)
        self.depth = len(self.weights)
        if self.alpha.shape != (self.widths[-1],) or k0 == 0:
            raise ValueError(f"alpha: expected shape ({self.widths[-1]},), got {self.alpha.shape}")
        names = (activation,) * self.depth if isinstance(activation, str) else tuple(activation)
        if len(names) != self.depth or any(n not in _ACT for n in names):
            raise ValueError(f"activation: expected one of {ACTIVATIONS} or a sequence of {self.depth} of them, "
                             f"got {activation!r}")
        self.activations = names
        self._act = [_ACT[n] for n in names]
        # forward state and scratch, allocated once
        e = lambda k: np.empty(k, self.dtype)  # noqa: E731
        self._z = [e(k) for k in self.widths]
        self._u = [e(k) for k in self.widths[1:]]
        self._tmp = [e(k) for k in self.widths[1:]]
        self._mask = [np.empty(k, bool) for k in self.widths[1:]]
        self._grads = self.new_gradients()  # used for d/dz, d/du when out has z=None

    def new_gradients(self, batch=None, *, x=True):
        """Return zeroed gradient buffers; ``batch=B`` gives ``x`` of shape ``(B, K_0)`` (``None`` with
        ``x=False``: parameter-only gradients) and z=u=None."""
        z = lambda s: np.zeros(s, self.dtype)  # noqa: E731
        ws, a = [z(w.shape) for w in self.weights], z(self.alpha.shape)
        if batch is not None:
            return NumpyGradients(ws, a, z((int(batch), self.widths[0])) if x else None, batch=int(batch))
        gz = [z(k) for k in self.widths]
        return NumpyGradients(ws, a, gz[0], z=gz, u=[z(k) for k in self.widths[1:]])

    def forward(self, x):
        """Return yhat for one example ``x`` of shape ``(K_0,)`` (state kept for the backward pass)."""
        x = np.asarray(x)
        if x.shape != (self.widths[0],):
            raise ValueError(f"x: expected shape ({self.widths[0]},), got {x.shape}")
        z, u = self._z, self._u
        np.copyto(z[0], x)
        for t, w in enumerate(self.weights):
            np.dot(w, z[t], out=u[t])
            self._act[t][0](u[t], z[t + 1], self._tmp[t], self._mask[t])
        return float(np.dot(self.alpha, z[-1]))

    def value_and_grad(self, x, dy=1.0, out=None):
        """Return ``(yhat, grads)`` with the gradients of ``dy * yhat`` for one example.

        ``out`` (from :meth:`new_gradients`) is overwritten and returned; without it new
        buffers are allocated. If ``out.z``/``out.u`` are None, internal scratch is used.
        """
        yhat = self.forward(x)
        g = self.new_gradients() if out is None else out
        dy = float(dy)
        gz = g.z if g.z is not None else self._grads.z
        gu = g.u if g.u is not None else self._grads.u
        z, u = self._z, self._u
        np.multiply(z[-1], dy, out=g.alpha)
        np.multiply(self.alpha, dy, out=gz[-1])
        for t in range(self.depth - 1, -1, -1):
            self._act[t][1](u[t], z[t + 1], gz[t + 1], gu[t], self._tmp[t], self._mask[t])
            np.outer(gu[t], z[t], out=g.weights[t])
            np.dot(self.weights[t].T, gu[t], out=gz[t])
        if g.x is not gz[0]:
            np.copyto(g.x, gz[0])
        return yhat, g

    def value_and_grad_batch(self, X, dy=None, out=None, *, x=True):
        """Return ``(yhat, grads)`` for ``X`` of shape ``(B, K_0)``: yhat of shape ``(B,)`` and the
        gradients of ``sum_b dy[b] * yhat[b]`` (``dy`` defaults to ones); ``grads.x[b]`` is
        ``dy[b] * d yhat[b] / d X[b]``. ``out`` from ``new_gradients(batch=B)`` is overwritten.
        ``x=False`` skips the input gradient (the first layer's ``dU @ W``), as a training step does;
        ``grads.x`` is then not written.
        """
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.widths[0]:
            raise ValueError(f"X: expected shape (B, {self.widths[0]}), got {X.shape}")
        B = X.shape[0]
        dy = np.ones(B, self.dtype) if dy is None else np.asarray(dy, dtype=self.dtype)
        if dy.shape != (B,):
            raise ValueError(f"dy: expected shape ({B},), got {dy.shape}")
        Z, U = [X], []
        for t, w in enumerate(self.weights):
            U.append(Z[t] @ w.T)
            Z.append(np.empty_like(U[t]))
            self._act[t][0](U[t], Z[t + 1], np.empty_like(U[t]), np.empty(U[t].shape, bool))
        yhat = Z[-1] @ self.alpha
        g = self.new_gradients(batch=B, x=x) if out is None else out
        if x and g.x is None:
            raise ValueError("out.x is None (parameter-only gradients): pass x=False")
        np.matmul(dy, Z[-1], out=g.alpha)
        gz = np.multiply.outer(dy, self.alpha)
        for t in range(self.depth - 1, -1, -1):
            gu = np.empty_like(gz)
            self._act[t][1](U[t], Z[t + 1], gz, gu, np.empty_like(gz), np.empty(gz.shape, bool))
            np.matmul(gu.T, Z[t], out=g.weights[t])
            if t or x:
                gz = np.matmul(gu, self.weights[t], out=g.x if t == 0 else None)
        if self.depth == 0 and x:
            np.copyto(g.x, gz)
        return yhat, g
