"""Networks with biases, an output bias and vector outputs, for the tests of those parameters
(test_biases.py, test_vector_outputs.py, test_model_io.py): a builder, float64 oracles from
``mlpgrad.reference`` (value, gradients, finite differences) and a comparison of a ``mlpgrad.Gradients``
with them that covers every field, the bias gradients included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

import mlpgrad
from mlpgrad import reference
from conftest import KINKED, assert_close, per_layer, sigma, tolerance


@dataclass(frozen=True)
class Case:
    """One network shape: widths, activation, dtype, which optional parameters it has, and its outputs
    (None: one output, 1-D alpha; m: alpha of shape (K_T, m))."""
    widths: tuple
    activation: str
    dtype: type
    biases: bool = True
    output_bias: bool = True
    outputs: Optional[int] = None

    def __str__(self) -> str:
        return (f"{self.widths}-{self.activation}-{np.dtype(self.dtype).name}-b{int(self.biases)}"
                f"-ob{int(self.output_bias)}-m{self.outputs}")

    def build(self, rng: np.random.Generator) -> mlpgrad.MLP:
        K, d = self.widths, self.dtype
        weights = [(rng.standard_normal((K[t + 1], K[t])) / np.sqrt(K[t])).astype(d) for t in range(len(K) - 1)]
        alpha_shape = (K[-1],) if self.outputs is None else (K[-1], self.outputs)
        alpha = rng.standard_normal(alpha_shape).astype(d)
        biases = [(0.5 * rng.standard_normal(k)).astype(d) for k in K[1:]] if self.biases else None
        output_bias = None
        if self.output_bias:
            output_bias = np.array(rng.standard_normal(()) if self.outputs is None
                                   else rng.standard_normal(self.outputs), d)
        return mlpgrad.MLP(weights, alpha, self.activation, biases=biases, output_bias=output_bias)

    def x(self, rng, batch: Optional[int] = None) -> np.ndarray:
        shape = (self.widths[0],) if batch is None else (batch, self.widths[0])
        return rng.standard_normal(shape).astype(self.dtype)

    def dy(self, rng, batch: Optional[int] = None):
        """A seed shaped like ŷ: a float (one output, one example), (m,), (B,) or (B, m)."""
        shape = (() if batch is None else (batch,)) + (() if self.outputs is None else (self.outputs,))
        d = rng.standard_normal(shape)
        return float(d) if shape == () else d.astype(self.dtype)


def f64(a):
    return None if a is None else np.asarray(a, np.float64)


def parameters64(net) -> dict:
    """The network's parameters as float64 arrays, in reference.py's keywords."""
    return dict(weights=[f64(w) for w in net.weights], alpha=f64(net.alpha),
                activation=list(net.activations),
                biases=None if net.biases is None else [f64(b) for b in net.biases],
                output_bias=f64(net.output_bias))


def _grads(g, net, x_shape) -> Dict[str, object]:
    out = {"weights": [f64(gw).reshape(w.shape) for gw, w in zip(g.weights, net.weights)],
           "alpha": f64(g.alpha).reshape(net.alpha.shape),
           "x": f64(g.x).reshape(x_shape),
           "biases": None if g.biases is None else [f64(b) for b in g.biases],
           "output_bias": None if g.output_bias is None else f64(g.output_bias).reshape(net.output_bias.shape)}
    if g.z is not None:
        out["z"], out["u"] = [f64(v) for v in g.z], [f64(v) for v in g.u]
    return out


def _seed(dy):
    return dy if isinstance(dy, float) else f64(dy).tolist()


def oracle(net, x, dy):
    """(ŷ, gradients of dyᵀŷ) from the reference, in float64."""
    p = parameters64(net)
    yhat, g = reference.value_and_grad(p["weights"], p["alpha"], f64(x), p["activation"], _seed(dy),
                                       biases=p["biases"], output_bias=p["output_bias"])
    return f64(yhat), _grads(g, net, np.shape(x))


def oracle_batch(net, X, dy=None):
    p = parameters64(net)
    yhat, g = reference.value_and_grad_batch(p["weights"], p["alpha"], f64(X), p["activation"],
                                             None if dy is None else f64(dy).tolist(),
                                             biases=p["biases"], output_bias=p["output_bias"])
    return f64(yhat).reshape((len(X),) + net.output_shape), _grads(g, net, np.shape(X))


def finite_differences(net, x, dy, eps=1e-6):
    p = parameters64(net)
    g = reference.finite_difference(p["weights"], p["alpha"], f64(x), p["activation"], _seed(dy), eps,
                                    biases=p["biases"], output_bias=p["output_bias"])
    return _grads(g, net, np.shape(x))


def min_abs_kinked_preactivation(net, X) -> float:
    """Smallest |u| of a ReLU-type layer over the rows of X (inf without such layers)."""
    p = parameters64(net)
    acts = per_layer(p["activation"], len(p["weights"]))
    smallest = float("inf")
    for x in np.atleast_2d(f64(X)):
        z = x
        for t, (w, act) in enumerate(zip(p["weights"], acts)):
            u = w @ z + (p["biases"][t] if p["biases"] is not None else 0.0)
            if act in KINKED:
                smallest = min(smallest, float(np.min(np.abs(u))))
            z = sigma(act, u)
    return smallest


def kink_safe(net, X, margin: Optional[float] = None) -> bool:
    if margin is None:
        margin = 1e-3 if net.dtype == np.float32 else 1e-9
    return min_abs_kinked_preactivation(net, X) > margin


FIELDS = ("weights", "alpha", "x", "biases", "output_bias", "z", "u")


def assert_gradients_match(got, ref: dict, net, *, tol: Optional[float] = None, what: str = ""):
    """Every gradient field of ``got`` (a mlpgrad.Gradients) against the float64 reference ``ref``: same
    presence (None where the reference has none), shapes and dtype, values within ``tol``."""
    if tol is None:
        tol = tolerance(net.dtype, net.widths)
    arrays: List[np.ndarray] = []
    for name in FIELDS:
        v = ref.get(name)
        arrays += v if isinstance(v, list) else ([] if v is None else [v])
    scale = 1.0 + max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)

    def one(name, g, r):
        assert isinstance(g, np.ndarray) and g.dtype == net.dtype, f"{what}{name}: {type(g)} {getattr(g, 'dtype', '')}"
        assert_close(g, r, tol, scale, f"{what}{name}")

    for name in FIELDS:
        g, r = getattr(got, name), ref.get(name)
        if name in ("z", "u") and name not in ref:
            continue
        if name == "x" and g is None:  # parameter-only gradients
            continue
        if r is None:
            assert g is None, f"{what}{name}: expected None, got {g!r}"
        elif isinstance(r, list):
            assert isinstance(g, list) and len(g) == len(r), f"{what}{name}: {g!r}"
            for t, (a, b) in enumerate(zip(g, r)):
                one(f"{name}[{t}]", a, b)
        else:
            one(name, g, r)


def parameter_arrays(g) -> List[np.ndarray]:
    """The parameter gradients of a Gradients (or the parameters of an MLP), in the optimiser's order."""
    out = list(g.weights) + [g.alpha]
    if g.biases is not None:
        out += list(g.biases)
    if g.output_bias is not None:
        out.append(g.output_bias)
    return out


def all_arrays(g) -> List[np.ndarray]:
    out = parameter_arrays(g)
    for name in ("x",):
        if getattr(g, name) is not None:
            out.append(getattr(g, name))
    for name in ("z", "u"):
        if getattr(g, name) is not None:
            out += list(getattr(g, name))
    return out


def same_bits(a, b):
    """Two Gradients hold the very same bits in every array."""
    xs, ys = all_arrays(a), all_arrays(b)
    assert len(xs) == len(ys)
    for u, v in zip(xs, ys):
        assert u.shape == v.shape and u.dtype == v.dtype and np.array_equal(u, v)


def gradients_spec(net, *, batch: Optional[int] = None, with_x: bool = True, with_zu: Optional[bool] = None,
                   fill: float = -777.25) -> dict:
    """Keyword arguments for mlpgrad.Gradients matching ``net`` (biases and output bias included), each
    array filled with ``fill``."""
    if with_zu is None:
        with_zu = batch is None and with_x
    K, d = net.widths, net.dtype

    def arr(shape):
        return np.full(shape, fill, d)

    spec = {"weights": [arr(w.shape) for w in net.weights], "alpha": arr(net.alpha.shape)}
    if with_x:
        spec["x"] = arr((K[0],) if batch is None else (batch, K[0]))
    if with_zu:
        spec["z"] = [arr((k,)) for k in K]
        spec["u"] = [arr((k,)) for k in K[1:]]
    if net.biases is not None:
        spec["biases"] = [arr(b.shape) for b in net.biases]
    if net.output_bias is not None:
        spec["output_bias"] = arr(net.output_bias.shape)
    return spec


def check_every_path(case: Case, rng: np.random.Generator, batch: int = 5):
    """Every call on a network of ``case`` against the reference (and the calls against one another, bit for
    bit where they compute the same thing): forward, value_and_grad (fresh and given out=), forward then
    backward, value_and_grad_batch (dy given and defaulted), forward_batch then backward_batch, and
    parameter-only gradients at two batch sizes."""
    net = case.build(rng)
    x, X = case.x(rng), case.x(rng, batch)
    dy, dY = case.dy(rng), case.dy(rng, batch)
    scalar = case.outputs is None
    assert net.output_shape == (() if scalar else (case.outputs,))

    y_ref, g_ref = oracle(net, x, dy)
    y = net.forward(x)
    if scalar:
        assert type(y) is float
    else:
        assert isinstance(y, np.ndarray) and y.shape == net.output_shape and y.dtype == net.dtype
    assert_close(y, y_ref, tolerance(net.dtype, net.widths), 1.0 + float(np.max(np.abs(y_ref))), "forward")

    y2, g = net.value_and_grad(x, dy)
    assert np.array_equal(y2, y) and type(y2) is type(y)
    assert_gradients_match(g, g_ref, net, what="value_and_grad ")
    out = mlpgrad.Gradients(**gradients_spec(net))
    y3, g3 = net.value_and_grad(x, dy, out=out)
    assert g3 is out and np.array_equal(y3, y)
    same_bits(out, g)
    net.forward(x)
    same_bits(net.backward(dy), g)
    same_bits(net.backward(dy=dy, out=net.new_gradients()), g)

    yb_ref, gb_ref = oracle_batch(net, X, dY)
    yb, gb = net.value_and_grad_batch(X, dY)
    assert yb.shape == (batch,) + net.output_shape and yb.dtype == net.dtype
    assert_close(yb, yb_ref, tolerance(net.dtype, net.widths), 1.0 + float(np.max(np.abs(yb_ref))), "batch yhat")
    assert_gradients_match(gb, gb_ref, net, what="value_and_grad_batch ")
    assert np.array_equal(net.forward_batch(X), yb)
    same_bits(net.backward_batch(dY), gb)
    out_b = mlpgrad.Gradients(**gradients_spec(net, batch=batch))
    same_bits(net.backward_batch(dY, out=out_b), gb)
    _, g_ones = net.value_and_grad_batch(X)
    _, g_ones_ref = oracle_batch(net, X, np.ones((batch,) + net.output_shape))
    assert_gradients_match(g_ones, g_ones_ref, net, what="dy=None ")

    params = net.new_gradients(batch=batch, x=False)
    assert params.x is None
    net.value_and_grad_batch(X, dY, out=params)
    for a, b in zip(parameter_arrays(params), parameter_arrays(gb)):
        assert np.array_equal(a, b)
    short = X[:2]
    net.forward_batch(short)
    net.backward_batch(dY[:2], out=params)  # a shorter batch, the same buffers
    _, g_short = oracle_batch(net, short, dY[:2])
    g_short.pop("x")
    assert_gradients_match(params, g_short, net, what="parameter-only ")
    return net


def check_finite_differences(case: Case, rng: np.random.Generator, attempts: int = 20):
    """The core's gradients against central differences of the float64 reference (away from ReLU kinks)."""
    for _ in range(attempts):
        net = case.build(rng)
        x, dy = case.x(rng), case.dy(rng)
        if kink_safe(net, x, margin=1e-3):
            break
    else:
        raise AssertionError(f"no kink-free example in {attempts} draws for {case}")
    _, g = net.value_and_grad(x, dy)
    fd = finite_differences(net, x, dy)
    assert_gradients_match(g, fd, net, tol=1e-4 if net.dtype == np.float32 else 1e-6, what="finite differences ")


def assert_matches_torch_autograd(torch, net, X, dY, yhat, g, activation, dtype):
    """The batch value and every gradient (parameters, then x) against PyTorch autograd of the same network."""
    t = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    leaf = lambda a: torch.tensor(np.array(a), dtype=t, requires_grad=True)  # noqa: E731
    W, b = [leaf(w) for w in net.weights], [leaf(v) for v in net.biases]
    alpha, beta, Xt = leaf(net.alpha), leaf(net.output_bias), leaf(X)
    act = {"relu": torch.relu, "leaky_relu": lambda a: torch.nn.functional.leaky_relu(a, 0.01), "tanh": torch.tanh,
           "sigmoid": torch.sigmoid, "softplus": torch.nn.functional.softplus, "identity": lambda a: a}[activation]
    z = Xt
    for w, v in zip(W, b):
        z = act(z @ w.T + v)
    y = z @ alpha + beta
    (y * torch.tensor(dY, dtype=t)).sum().backward()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(yhat, y.detach().numpy(), **tol)
    for a, ref in zip(parameter_arrays(g) + [g.x], W + [alpha] + b + [beta, Xt]):
        np.testing.assert_allclose(a, ref.grad.numpy(), **tol)
