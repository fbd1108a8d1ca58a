"""Optimisers that update a network's parameter arrays in place: ``SGD`` and ``Adam`` (AdamW when decoupled).

``opt.step(grads)`` takes a ``Gradients`` object (from ``net.value_and_grad_batch(..., out=grads)`` or any
other backward pass of this network) and updates every parameter array of the network **in place** — the
very arrays the network views, so the next call sees them; nothing is copied or re-allocated. One call into
C++ per step updates every array, each in one fused pass (``cpp/include/mlpgrad/optim/``), after checking
all of them, with the GIL released once for a large network; the optimiser's state (velocity; first and second moments) is allocated once, when the optimiser is
made.

The updates are PyTorch's documented algorithms (``torch.optim.SGD``, ``torch.optim.Adam``,
``torch.optim.AdamW``; no dampening, amsgrad or maximize), and each step is **bit for bit** equal to this
NumPy code, run on arrays of the network's dtype with Python-float hyperparameters (NumPy rounds each to the
array's dtype), step ``t = 1, 2, ...``:

SGD::

    if weight_decay != 0: g = g + weight_decay * theta
    if momentum != 0:
        b[...] = g if t == 1 else momentum * b + g
        g = g + momentum * b if nesterov else b
    theta -= lr * g

Adam::

    if weight_decay != 0:
        if decoupled: theta *= 1 - lr * weight_decay      # AdamW: the documented θ − γλθ, one rounding
        else: g = g + weight_decay * theta                # Adam: L2, added to the gradient
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * (g * g)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    theta -= lr * m_hat / (np.sqrt(v_hat) + eps)

(one operation at a time, each rounded: never a fused multiply-add). PyTorch's own kernels order some of
these operations differently, so they agree with mlpgrad to rounding, not bit for bit.

NaN and ±Inf in the gradients are not checked: they propagate into the parameters, as in PyTorch.

``grads`` must belong to the network: the same parameter shapes and dtype (``ValueError`` / ``TypeError``
naming the array otherwise), checked before any array is written. Not thread-safe: call ``step`` from one
thread, while no other thread computes with the network.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core

__all__ = ["SGD", "Adam"]


def _parameters(net, grads=None) -> List[Tuple[str, np.ndarray, Optional[np.ndarray]]]:
    """Every parameter array of ``net`` as ``(name, parameter, gradient)``: the one place that knows them.

    The weights, then α, then (when the network has them) the biases and the output bias. With ``grads``,
    each gradient is the matching array of ``grads``, checked to have the parameter's shape and dtype;
    without, the gradients are None.
    """
    def fields(obj) -> List[Tuple[str, Any]]:
        out = [(f"weights[{t}]", w) for t, w in enumerate(obj.weights)] + [("alpha", obj.alpha)]
        biases = getattr(obj, "biases", None)
        if biases is not None:
            out += [(f"biases[{t}]", b) for t, b in enumerate(biases)]
        output_bias = getattr(obj, "output_bias", None)
        if output_bias is not None:
            out.append(("output_bias", output_bias))
        return out

    params = fields(net)
    if grads is None:
        return [(name, p, None) for name, p in params]
    if not all(hasattr(grads, a) for a in ("weights", "alpha")):
        raise TypeError(f"grads must be a mlpgrad.Gradients of this network, got {type(grads).__name__}")
    gradients = dict(fields(grads))
    names = [name for name, _ in params]
    if list(gradients) != names:
        raise ValueError(f"grads holds gradients for {_describe(list(gradients))} but the network has parameters "
                         f"{_describe(names)}; pass gradients of this network (net.new_gradients())")
    triples = []
    for name, p in params:
        g = gradients[name]
        if not isinstance(g, np.ndarray):
            raise TypeError(f"grads.{name} must be a numpy.ndarray, got {type(g).__name__}")
        if g.dtype != p.dtype:
            raise TypeError(f"grads.{name} has dtype {g.dtype} but the network's {name} has {p.dtype}")
        if g.shape != p.shape:
            raise ValueError(f"grads.{name} has shape {g.shape} but the network's {name} has shape {p.shape}; "
                             "pass gradients of this network")
        triples.append((name, p, g))
    return triples


def _describe(names: Sequence[str]) -> str:
    weights = sum(n.startswith("weights[") for n in names)
    biases = sum(n.startswith("biases[") for n in names)
    parts = [f"{weights} weight matri{'x' if weights == 1 else 'ces'}", "alpha"]
    if biases:
        parts.append(f"{biases} bias{'' if biases == 1 else 'es'}")
    if "output_bias" in names:
        parts.append("output_bias")
    return "(" + ", ".join(parts) + ")"


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


class _Optimizer:
    """What SGD and Adam share: the network's parameters, the step count, the check of ``grads``.

    A subclass gives ``_step_function`` (the binding's update of every array of a step in one call),
    ``_check`` (the binding's range check of the hyperparameters), ``_state_arguments(states)`` (its state
    arrays, one tuple per field over the parameters, in the step function's order) and ``_options()`` (its
    hyperparameters, lr first, in the order of both ``_step_function`` and ``_check``).
    """

    _state_names: Tuple[str, ...] = ()

    def __init__(self, net) -> None:
        if not isinstance(net, _core.MLP):
            raise TypeError(f"net must be a mlpgrad.MLP, got {type(net).__name__}")
        self.net = net
        self._params = [(name, p) for name, p, _ in _parameters(net)]
        self._require_separate_parameters()
        #: state[name][field]: the optimiser's arrays for parameter `name` (e.g. state["weights[0]"]["m"]);
        #: every step uses these very arrays, so change them in place if at all (np.copyto), never rebind them.
        self.state: Dict[str, Dict[str, np.ndarray]] = {
            name: {field: np.zeros_like(p) for field in self._state_names} for name, p in self._params}
        #: The number of steps taken so far.
        self.steps = 0
        self._checked: Optional[Tuple[Any, list, tuple]] = None

    @property
    def lr(self) -> float:
        """The learning rate; may be changed between steps (a schedule)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        value = _real("lr", value)
        self._check(value, *self._options()[1:])  # the new lr with the other (fixed) options
        self._lr = value

    def _require_separate_parameters(self) -> None:
        # Parameters that share memory (tied weights) would be updated twice, from inconsistent values.
        for i, (name_a, a) in enumerate(self._params):
            for name_b, b in self._params[i + 1:]:
                if np.shares_memory(a, b):
                    raise ValueError(f"the network's {name_a} and {name_b} share memory; an optimiser updates each "
                                     "parameter array on its own and needs them separate")

    def _calls(self, grads) -> tuple:
        """The step function's array arguments, (params, grads, *states), each a tuple with one array per
        parameter, checked once per Gradients object for what cannot change (the binding checks the rest,
        writeability included, on every step)."""
        if self._checked is not None and self._checked[0] is grads:
            return self._checked[2]
        pairs = _parameters(self.net, grads)
        for name, p, g in pairs:
            for other_name, q, _ in pairs:
                if np.may_share_memory(g, q) and np.shares_memory(g, q):
                    raise ValueError(f"grads.{name} shares memory with the network's {other_name}; gradients "
                                     "must not be written over the parameters")
        arguments = (tuple(p for _, p, _ in pairs), tuple(g for _, _, g in pairs)) + self._state_arguments(
            [self.state[name] for name, _, _ in pairs])
        # A Gradients object's arrays are fixed at construction, so the check holds for its lifetime
        # (kept alive here, so that its identity cannot be reused).
        self._checked = (grads, pairs, arguments) if isinstance(grads, _core.Gradients) else None
        return arguments

    def _name_read_only_parameter(self) -> None:
        """ValueError naming the network's first read-only parameter, if there is one."""
        for name, p in self._params:
            if not p.flags.writeable:
                raise ValueError(f"the network's {name} is read-only; the optimiser updates it in place")

    def step(self, grads) -> None:
        """Update every parameter array of the network in place from ``grads`` (a ``Gradients``)."""
        arguments = self._calls(grads)
        try:  # one call for every array: all of them checked before any is written
            self._step_function(*arguments, *self._options(), self.steps + 1)
        except ValueError:
            self._name_read_only_parameter()  # the binding's message names params[i]; this one names it
            raise
        self.steps += 1


class SGD(_Optimizer):
    """Stochastic gradient descent: ``SGD(net, lr, *, momentum=0, nesterov=False, weight_decay=0)``.

    ``lr`` (γ) >= 0; ``momentum`` (μ) >= 0 (heavy-ball, or Nesterov with ``nesterov=True``, which needs
    μ > 0); ``weight_decay`` (λ) >= 0 adds λθ to the gradient (L2). The update is the module's SGD code,
    bit for bit. ``state[name]["velocity"]`` holds the velocity of each parameter (with momentum).
    """

    def __init__(self, net, lr: float, *, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        lr, momentum, weight_decay = _real("lr", lr), _real("momentum", momentum), _real("weight_decay", weight_decay)
        nesterov = _flag("nesterov", nesterov)
        _core._sgd_check(lr, momentum, nesterov, weight_decay)
        self._state_names = ("velocity",) if momentum != 0 else ()
        super().__init__(net)
        self._lr, self._momentum, self._nesterov, self._weight_decay = lr, momentum, nesterov, weight_decay

    momentum = property(lambda self: self._momentum, doc="μ (fixed when the optimiser is made).")
    nesterov = property(lambda self: self._nesterov, doc="Nesterov momentum or not (fixed).")
    weight_decay = property(lambda self: self._weight_decay, doc="λ (fixed).")

    _step_function, _check = staticmethod(_core._sgd_step), staticmethod(_core._sgd_check)

    @staticmethod
    def _state_arguments(states):
        if not states[0]:
            return (None,)  # no velocity without momentum
        return (tuple(state["velocity"] for state in states),)

    def _options(self):
        return self._lr, self._momentum, self._nesterov, self._weight_decay

    def __repr__(self) -> str:
        return (f"mlpgrad.optim.SGD(lr={self._lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay}, steps={self.steps})")


class Adam(_Optimizer):
    """Adam: ``Adam(net, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled=False)``.

    ``lr`` (γ) >= 0; ``betas`` (β1, β2) in [0, 1); ``eps`` (ε) >= 0; ``weight_decay`` (λ) >= 0, added to the
    gradient as λθ (Adam, L2) or, with ``decoupled=True``, applied to the parameters as θ(1 − γλ) (AdamW).
    The update is the module's Adam code, bit for bit. ``state[name]["m"]`` and ``["v"]`` hold the first and
    second moment estimates of each parameter.
    """

    _state_names = ("m", "v")

    def __init__(self, net, lr: float = 1e-3, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        lr, eps, weight_decay = _real("lr", lr), _real("eps", eps), _real("weight_decay", weight_decay)
        beta1, beta2 = _real("betas[0]", betas[0]), _real("betas[1]", betas[1])
        decoupled = _flag("decoupled", decoupled)
        _core._adam_check(lr, beta1, beta2, eps, weight_decay, decoupled)
        super().__init__(net)
        self._lr, self._betas, self._eps = lr, (beta1, beta2), eps
        self._weight_decay, self._decoupled = weight_decay, decoupled

    betas = property(lambda self: self._betas, doc="(β1, β2) (fixed when the optimiser is made).")
    eps = property(lambda self: self._eps, doc="ε (fixed).")
    weight_decay = property(lambda self: self._weight_decay, doc="λ (fixed).")
    decoupled = property(lambda self: self._decoupled, doc="AdamW (decoupled weight decay) or Adam (L2) (fixed).")

    _step_function, _check = staticmethod(_core._adam_step), staticmethod(_core._adam_check)

    @staticmethod
    def _state_arguments(states):
        return tuple(state["m"] for state in states), tuple(state["v"] for state in states)

    def _options(self):
        return self._lr, self._betas[0], self._betas[1], self._eps, self._weight_decay, self._decoupled

    def __repr__(self) -> str:
        return (f"mlpgrad.optim.Adam(lr={self._lr}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}, decoupled={self.decoupled}, steps={self.steps})")
