"""The implementations the bench compares, one small adapter each, all behind one interface.

A :class:`Peer` computes ŷ and the gradients of ``dy·ŷ`` (one example, :class:`Problem` with ``batch=None``)
or of ``Σ_b dy_b·ŷ_b`` (a batch) for the network of the notes, on the very weights of a :class:`Problem`:

* ``load(threads)`` imports what the peer needs (``ImportError``: the peer is skipped) and pins its threads;
* ``bind(problem)`` does every per-problem preparation (tensors, jit tracing is left to the first call) and
  returns the zero-argument callable that is timed;
* ``result(problem, out)`` turns what that callable returned into a :class:`Result` of float64 arrays, which
  the grid compares with mlpgrad's before it times anything.

Peers: mlpgrad itself, NumPy (:mod:`mlpgrad.numpy_backprop`), the pure-Python oracle
(:mod:`mlpgrad.reference`), PyTorch autograd and JAX ``jit(value_and_grad)`` (``jit(vjp)`` for a batch).
Outputs are written into preallocated buffers where the library offers it (mlpgrad's and NumPy's ``out=``);
PyTorch and JAX return fresh tensors, which is how they are used.

Threads: ``configure_xla_threads`` must run before JAX is imported (XLA reads its flags once);
``thread_limits`` pins BLAS/OpenMP pools (threadpoolctl) and PyTorch's intra-op pool for a block.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

__all__ = ["Problem", "Result", "Peer", "MlpgradPeer", "NumpyPeer", "OraclePeer", "TorchPeer", "JaxPeer",
           "PEERS", "make_problem", "default_peers", "instantiate", "configure_xla_threads", "thread_limits"]


# ----------------------------------------------------------------------------- problems and results
@dataclass
class Problem:
    """One cell of the grid made concrete: T square K x K layers with the notes' initialisation."""

    K: int
    T: int
    batch: Optional[int]       # None: one example (value_and_grad), else B (value_and_grad_batch)
    dtype: np.dtype
    activation: str
    weights: list              # T arrays (K, K), C-contiguous, W ~ N(0, 1/K)
    alpha: np.ndarray          # (K,), ~ N(0, 1)
    x: np.ndarray              # (K,) or (B, K), ~ N(0, 1)
    dy: object                 # 1.0 for one example (JAX's value_and_grad), an array (B,) ~ N(0, 1) for a batch

    @property
    def edges(self) -> int:
        """T·K², the number of weights: the notes' measure of the size of the graph."""
        return self.T * self.K * self.K

    @property
    def work(self) -> int:
        return self.edges * (self.batch or 1)


def make_problem(K: int, T: int, batch: Optional[int] = None, dtype="float64", activation: str = "relu",
                 seed: int = 0) -> Problem:
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    weights = [np.ascontiguousarray((rng.standard_normal((K, K)) / np.sqrt(K)).astype(dtype)) for _ in range(T)]
    alpha = rng.standard_normal(K).astype(dtype)
    if batch is None:
        x, dy = rng.standard_normal(K).astype(dtype), 1.0
    else:
        x, dy = rng.standard_normal((batch, K)).astype(dtype), rng.standard_normal(batch).astype(dtype)
    return Problem(K, T, batch, dtype, activation, weights, alpha, x, dy)


@dataclass
class Result:
    """ŷ (shape () or (B,)) and the gradients, as float64 NumPy arrays."""

    yhat: np.ndarray
    weights: list
    alpha: np.ndarray
    x: np.ndarray


def _f64(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)  # a copy: later calls may overwrite the peer's buffers


# ----------------------------------------------------------------------------- the interface
class Peer:
    """Base class of the adapters. Subclasses set the class attributes and implement the three methods."""

    name = "peer"            # key on the command line (--peers) and in the JSON
    label = "peer"           # column title
    description = ""         # what exactly is timed
    requires: tuple = ()     # modules it imports; a missing one makes the peer "skipped"
    install = ""             # how to get it, shown when it is skipped
    max_call_ns: Optional[float] = None  # cells where one call takes longer are skipped (the oracle: 1 s)
    min_ns_per_work: float = 0.0  # a lower bound of ns per edge and example: cells it puts over max_call_ns
                                  # are skipped without a call

    def load(self, threads: int = 1) -> None:
        """Import the peer's modules (raising ImportError if one is missing) and pin its thread count."""
        import importlib

        for module in self.requires:
            importlib.import_module(module)

    def version(self) -> str:
        return ""

    def bind(self, problem: Problem) -> Callable[[], object]:
        raise NotImplementedError

    def result(self, problem: Problem, out) -> Result:
        raise NotImplementedError


class _GradientsPeer(Peer):
    """mlpgrad and NumPy: ``(yhat, grads)`` with ``grads`` written into preallocated buffers (``out=``)."""

    def _model(self, problem):
        raise NotImplementedError

    def bind(self, problem):
        model = self._model(problem)
        x, dy = problem.x, problem.dy
        if problem.batch is None:
            out = model.new_gradients()
            return lambda: model.value_and_grad(x, dy, out=out)
        out = model.new_gradients(batch=problem.batch)
        return lambda: model.value_and_grad_batch(x, dy, out=out)

    def result(self, problem, out):
        yhat, g = out
        return Result(_f64(yhat), [_f64(w) for w in g.weights], _f64(g.alpha), _f64(g.x))


class MlpgradPeer(_GradientsPeer):
    name = "mlpgrad"
    label = "mlpgrad"
    description = "mlpgrad.MLP.value_and_grad(x, out=g) / value_and_grad_batch(X, dy, out=g): the C++ core"
    requires = ("mlpgrad._core",)

    def version(self):
        import mlpgrad

        return mlpgrad.__version__

    def _model(self, problem):
        import mlpgrad

        return mlpgrad.MLP(problem.weights, problem.alpha, problem.activation)


class NumpyPeer(_GradientsPeer):
    name = "numpy"
    label = "NumPy"
    description = "mlpgrad.numpy_backprop.NumpyMLP, out= buffers, BLAS pinned by threadpoolctl"
    requires = ("numpy",)

    def version(self):
        return np.__version__

    def _model(self, problem):
        from ..numpy_backprop import NumpyMLP

        return NumpyMLP(problem.weights, problem.alpha, problem.activation)


class OraclePeer(Peer):
    name = "oracle"
    label = "oracle"
    description = "mlpgrad.reference (pure Python, float64 arithmetic) on nested lists; only below 1 s per call"
    requires = ("mlpgrad.reference",)
    max_call_ns = 1e9
    min_ns_per_work = 250.0  # three multiply-adds per edge in CPython, on a fast machine

    def version(self):
        return "Python " + ".".join(map(str, sys.version_info[:3]))

    def bind(self, problem):
        from .. import reference

        weights, alpha = [w.tolist() for w in problem.weights], problem.alpha.tolist()
        x, act = problem.x.tolist(), problem.activation
        if problem.batch is None:
            dy = float(problem.dy)
            return lambda: reference.value_and_grad(weights, alpha, x, activation=act, dy=dy)
        dy = problem.dy.tolist()
        return lambda: reference.value_and_grad_batch(weights, alpha, x, activation=act, dy=dy)

    def result(self, problem, out):
        yhat, g = out
        return Result(_f64(yhat), [_f64(w) for w in g.weights], _f64(g.alpha), _f64(g.x))


class TorchPeer(Peer):
    name = "torch"
    label = "PyTorch"
    description = "torch eager forward + torch.autograd.grad, CPU tensors sharing the NumPy weights"
    requires = ("torch",)
    install = "pip install torch  (or: pip install 'mlpgrad[compare]')"

    def load(self, threads=1):
        import torch

        torch.set_num_threads(threads)

    def version(self):
        import torch

        return torch.__version__

    def bind(self, problem):
        import torch
        import torch.nn.functional as F

        act = {
            "relu": torch.relu,
            "leaky_relu": lambda u: F.leaky_relu(u, 0.01),
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "softplus": lambda u: F.softplus(u, threshold=40.0),  # the default 20 cuts off sigmoid(u) ≈ 1 - 2e-9
            "identity": lambda u: u,
        }[problem.activation]
        W = [torch.from_numpy(w).requires_grad_() for w in problem.weights]
        a = torch.from_numpy(problem.alpha).requires_grad_()
        x = torch.from_numpy(problem.x).requires_grad_()
        params = W + [a, x]
        grad = torch.autograd.grad
        if problem.batch is None:
            dy = torch.tensor(float(problem.dy), dtype=a.dtype)

            def call():
                z = x
                for w in W:
                    z = act(torch.mv(w, z))
                y = torch.dot(a, z)
                return y, grad(y, params, grad_outputs=dy)
        else:
            dy = torch.from_numpy(problem.dy)

            def call():
                z = x
                for w in W:
                    z = act(z @ w.T)
                y = z @ a
                return y, grad(y, params, grad_outputs=dy)
        return call

    def result(self, problem, out):
        y, grads = out
        T = problem.T
        return Result(_f64(y.detach().numpy()), [_f64(g.numpy()) for g in grads[:T]], _f64(grads[T].numpy()),
                      _f64(grads[T + 1].numpy()))


class JaxPeer(Peer):
    name = "jax"
    label = "JAX"
    description = "jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2))) (batch: jit of jax.vjp), CPU, x64 enabled"
    requires = ("jax",)
    install = "pip install jax jaxlib  (or: pip install 'mlpgrad[compare]')"

    def load(self, threads=1):
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 problems stay float64 (float32 ones stay float32)
        jax.config.update("jax_platforms", "cpu")

    def version(self):
        import jax

        return jax.__version__

    def bind(self, problem):
        import jax
        import jax.numpy as jnp

        act = {
            "relu": jax.nn.relu,
            "leaky_relu": lambda u: jax.nn.leaky_relu(u, 0.01),
            "tanh": jnp.tanh,
            "sigmoid": jax.nn.sigmoid,
            "softplus": jax.nn.softplus,
            "identity": lambda u: u,
        }[problem.activation]

        def f(ws, a, x):
            z = x
            for w in ws:
                z = act(z @ w.T) if problem.batch is not None else act(w @ z)
            return z @ a

        ws = [jnp.asarray(w) for w in problem.weights]  # on the device before the clock starts
        a, x = jnp.asarray(problem.alpha), jnp.asarray(problem.x)
        block = jax.block_until_ready
        if problem.batch is None:
            vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))  # the gradient of ŷ (dy = 1)
            return lambda: block(vg(ws, a, x))

        @jax.jit
        def vjp(ws, a, x, dy):
            y, pullback = jax.vjp(f, ws, a, x)
            return y, pullback(dy)

        dy = jnp.asarray(problem.dy)
        return lambda: block(vjp(ws, a, x, dy))

    def result(self, problem, out):
        y, (gw, ga, gx) = out
        return Result(_f64(y), [_f64(g) for g in gw], _f64(ga), _f64(gx))


#: Every peer, in table order; mlpgrad is the reference the others are checked against and compared with.
PEERS = {p.name: p for p in (MlpgradPeer, NumpyPeer, OraclePeer, TorchPeer, JaxPeer)}


def default_peers(names=None) -> list:
    """Instances of the named peers (default: all), mlpgrad always first."""
    return instantiate(PEERS, names)


def instantiate(registry: dict, names=None) -> list:
    """Instances of the peers of ``registry`` (name to class) named in ``names`` (default: all), each once,
    mlpgrad always first; ValueError naming any unknown peer."""
    names = list(registry) if names is None else ["mlpgrad"] + [n for n in names if n != "mlpgrad"]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; expected some of {list(registry)}")
    return [registry[n]() for n in dict.fromkeys(names)]


# ----------------------------------------------------------------------------- threads
def configure_xla_threads(threads: Optional[int]) -> str:
    """Ask XLA for ``threads`` intra-op threads through ``XLA_FLAGS`` (``None``: XLA's default, every core).
    XLA reads the variable once, when JAX starts: this must run before ``import jax``. Returns a note for the
    report ('' if the flags were set). (XLA still starts helper threads of its own; ``taskset`` is the only hard
    limit.)"""
    if "jax" in sys.modules:
        return "JAX was imported before the bench could set XLA_FLAGS: its thread count is not pinned"
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads"))]
    if threads is not None:
        flags += [f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'}",
                  f"intra_op_parallelism_threads={threads}"]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    return ""


@contextlib.contextmanager
def thread_limits(threads: Optional[int]):
    """Pin mlpgrad's batch threads (``mlpgrad.set_num_threads``), the BLAS and OpenMP pools of every loaded
    library (threadpoolctl) and PyTorch's intra-op pool, if PyTorch is loaded, to ``threads`` for the duration
    of the block (``None``: leave every default alone)."""
    from threadpoolctl import threadpool_limits

    import mlpgrad

    if threads is None:
        yield
        return
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    mlpgrad_before = mlpgrad.get_num_threads()
    with threadpool_limits(limits=threads):
        if torch is not None:
            torch.set_num_threads(threads)
        mlpgrad.set_num_threads(threads)
        try:
            yield
        finally:
            mlpgrad.set_num_threads(mlpgrad_before)
            if torch is not None:
                torch.set_num_threads(before)
