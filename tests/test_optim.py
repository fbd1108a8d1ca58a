"""mlpgrad.optim: every step bit for bit equal to the textbook update written in NumPy, close to
torch.optim (where installed), in place on the network's very arrays, and clear errors before any write."""
from __future__ import annotations

import functools
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpgrad
from conftest import hyp, make_network
from gil_watch import count_while
from mlpgrad import losses, optim

DTYPES = (np.float32, np.float64)
# One layer of 80 x 70 = 5,600 weights: large enough that the update releases the GIL.
WIDTHS = (70, 80, 7, 3)


# ------------------------------------------------------------------------- the textbook, as in optim.py
def textbook_sgd(theta, g, b, t, lr, momentum, nesterov, weight_decay):
    if weight_decay != 0:
        g = g + weight_decay * theta
    if momentum != 0:
        b[...] = g if t == 1 else momentum * b + g
        g = g + momentum * b if nesterov else b
    theta -= lr * g


def textbook_adam(theta, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled):
    if weight_decay != 0:
        if decoupled:
            theta *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * theta
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * (g * g)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    theta -= lr * m_hat / (np.sqrt(v_hat) + eps)


SGD_OPTIONS = [dict(lr=0.1), dict(lr=0.05, weight_decay=0.01), dict(lr=0.1, momentum=0.9),
               dict(lr=0.1, momentum=0.9, weight_decay=0.001), dict(lr=0.03, momentum=0.8, nesterov=True),
               dict(lr=0.03, momentum=0.5, nesterov=True, weight_decay=0.02)]
ADAM_OPTIONS = [dict(), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6), dict(lr=0.01, weight_decay=0.05),
                dict(lr=0.01, weight_decay=0.05, decoupled=True), dict(lr=0.002, betas=(0.0, 0.5), eps=0.0)]


def network(dtype, seed=0):
    rng = np.random.default_rng(seed)
    weights, alpha = make_network(rng, WIDTHS, dtype)
    return mlpgrad.MLP(weights, alpha, "tanh"), weights, alpha


def random_gradients(net, rng, grads=None):
    """A Gradients of `net` (reused if given) filled with new random values."""
    if grads is None:
        grads = net.new_gradients(batch=1)
    for g in grads.weights + [grads.alpha]:
        g[...] = rng.standard_normal(g.shape)
    return grads


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_bitwise_equal(got, expected, what):
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    mismatch = np.flatnonzero(bits(got) != bits(expected))
    assert mismatch.size == 0, f"{what}: {mismatch.size} elements differ, first at {mismatch[0]}: " \
                               f"{got.flat[mismatch[0]]!r} != {expected.flat[mismatch[0]]!r}"


def sgd_kwargs(o):
    return dict(lr=o["lr"], momentum=o.get("momentum", 0.0), nesterov=o.get("nesterov", False),
                weight_decay=o.get("weight_decay", 0.0))


def adam_kwargs(o):
    beta1, beta2 = o.get("betas", (0.9, 0.999))
    return dict(lr=o.get("lr", 1e-3), beta1=beta1, beta2=beta2, eps=o.get("eps", 1e-8),
                weight_decay=o.get("weight_decay", 0.0), decoupled=o.get("decoupled", False))


# --------------------------------------------------------------------------- bit for bit against NumPy
def check_steps_against_textbook(opt, params, textbook, fields, checked_fields, seed):
    """Five steps of ``opt`` against ``textbook(theta, g, *state, t)`` run on copies, bit for bit: every
    parameter (``params``: the network's arrays), and the optimiser's state arrays ``checked_fields`` (of the
    textbook's ``fields``), after each step."""
    names = [f"weights[{i}]" for i in range(len(params) - 1)] + ["alpha"]
    expected = [p.copy() for p in params]
    state = [{field: np.zeros_like(p) for field in fields} for p in params]
    rng = np.random.default_rng(seed)
    grads = None
    for t in range(1, 6):
        grads = random_gradients(opt.net, rng, grads)
        opt.step(grads)
        for e, g, s in zip(expected, grads.weights + [grads.alpha], state):
            textbook(e, g.copy(), *s.values(), t)
        for name, p, e in zip(names, params, expected):
            assert_bitwise_equal(p, e, f"step {t} {name}")
        for name, s in zip(opt.state, state):
            for field in checked_fields:
                assert_bitwise_equal(opt.state[name][field], s[field], f"step {t} {field} of {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=str)
def test_sgd_steps_are_the_textbook_bit_for_bit(dtype, options):
    net, weights, alpha = network(dtype)
    opt = optim.SGD(net, **options)
    textbook = functools.partial(textbook_sgd, **sgd_kwargs(options))
    check_steps_against_textbook(opt, weights + [alpha], textbook, ("velocity",),
                                 ("velocity",) if "momentum" in options else (), seed=1)
    assert opt.steps == 5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=str)
def test_adam_steps_are_the_textbook_bit_for_bit(dtype, options):
    net, weights, alpha = network(dtype)
    opt = optim.Adam(net, **options)
    textbook = functools.partial(textbook_adam, **adam_kwargs(options))
    check_steps_against_textbook(opt, weights + [alpha], textbook, ("m", "v"), ("m", "v"), seed=2)


@given(st.sampled_from(DTYPES), st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.floats(0, 1), st.sampled_from([0.0, 0.5, 0.9, 0.99]), st.booleans(), st.sampled_from([0.0, 1e-4, 0.1]),
       st.sampled_from([-6.0, 0.0, 6.0]))
@hyp(60)
def test_sgd_is_the_textbook_for_any_options(dtype, n, steps, seed, lr, momentum, nesterov, weight_decay, magnitude):
    nesterov = nesterov and momentum != 0
    rng = np.random.default_rng(seed)
    theta = (rng.standard_normal(n) * 10.0 ** magnitude).astype(dtype)
    net = mlpgrad.MLP([], theta)
    opt = optim.SGD(net, lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    expected, b = theta.copy(), np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = (rng.standard_normal(n) * 10.0 ** magnitude).astype(dtype)
        opt.step(mlpgrad.Gradients([], g, np.zeros(n, dtype)))
        textbook_sgd(expected, g, b, t, lr, momentum, nesterov, weight_decay)
        assert_bitwise_equal(theta, expected, f"step {t}")


@given(st.sampled_from(DTYPES), st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.floats(0, 1), st.floats(0, 0.999), st.floats(0, 0.9999), st.sampled_from([0.0, 1e-8, 1e-3]),
       st.sampled_from([0.0, 1e-4, 0.1]), st.booleans(), st.sampled_from([-6.0, 0.0, 6.0]))
@hyp(60)
def test_adam_is_the_textbook_for_any_options(dtype, n, steps, seed, lr, beta1, beta2, eps, weight_decay, decoupled,
                                               magnitude):
    rng = np.random.default_rng(seed)
    theta = (rng.standard_normal(n) * 10.0 ** magnitude).astype(dtype)
    net = mlpgrad.MLP([], theta)
    opt = optim.Adam(net, lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, decoupled=decoupled)
    expected, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = (rng.standard_normal(n) * 10.0 ** magnitude).astype(dtype)
        opt.step(mlpgrad.Gradients([], g, np.zeros(n, dtype)))
        with np.errstate(all="ignore"):  # eps = 0 with a zero gradient: 0/0, NaN in both
            textbook_adam(expected, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled)
        assert_bitwise_equal(theta, expected, f"step {t}")


def test_a_fused_multiply_add_would_be_caught():
    """θ − γg rounded once (an FMA, computed exactly in float64 and rounded to float32) differs from the
    textbook's two roundings in many elements: the bit-for-bit tests above would see a contracted kernel."""
    rng = np.random.default_rng(3)
    theta = rng.standard_normal(10_000).astype(np.float32)
    g = rng.standard_normal(10_000).astype(np.float32)
    lr = np.float32(0.1)
    separate = theta - lr * g
    fused = (theta.astype(np.float64) - np.float64(lr) * g.astype(np.float64)).astype(np.float32)
    assert (separate != fused).sum() > 100
    net = mlpgrad.MLP([], theta.copy())
    grads = mlpgrad.Gradients([], g.copy(), np.zeros(10_000, np.float32))
    optim.SGD(net, lr=0.1).step(grads)
    assert_bitwise_equal(net.alpha, separate, "alpha")


# ------------------------------------------------------------------------------------- against PyTorch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_steps(torch, make_optimizer, params, gradient_list):
    tensors = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = make_optimizer(tensors)
    for gradients in gradient_list:
        for t, g in zip(tensors, gradients):
            t.grad = torch.tensor(g)
        opt.step()
    return [t.detach().numpy() for t in tensors]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,options", [("sgd", o) for o in SGD_OPTIONS] + [("adam", o) for o in ADAM_OPTIONS],
                         ids=str)
def test_steps_match_torch_optim(torch, dtype, kind, options):
    net, weights, alpha = network(dtype, seed=4)
    params = [p.copy() for p in weights + [alpha]]
    rng = np.random.default_rng(5)
    grads = net.new_gradients(batch=1)
    history = []
    if kind == "sgd":
        opt = optim.SGD(net, **options)

        def make(tensors):
            return torch.optim.SGD(tensors, **options)
    else:
        opt = optim.Adam(net, **options)
        o = dict(options)
        cls = torch.optim.AdamW if o.pop("decoupled", False) else torch.optim.Adam
        o.setdefault("weight_decay", 0.0)

        def make(tensors):
            return cls(tensors, **o)
    for _ in range(6):
        random_gradients(net, rng, grads)
        history.append([g.copy() for g in grads.weights + [grads.alpha]])
        opt.step(grads)
    reference = torch_steps(torch, make, params, history)
    # Rounding differences of a few ulps per step (torch orders some operations differently), relative to
    # the parameters, plus the step's own size for parameters near 0.
    tol = 64 * np.finfo(dtype).eps
    for i, (p, r) in enumerate(zip(weights + [alpha], reference)):
        np.testing.assert_allclose(p, r, rtol=tol, atol=tol, err_msg=f"parameter {i}")


# ------------------------------------------------------------------------------------------ zero copy
@pytest.mark.parametrize("make", [lambda n: optim.SGD(n, 0.1, momentum=0.9), lambda n: optim.Adam(n, 0.01)])
def test_the_networks_own_arrays_are_updated_in_place(make):
    net, weights, alpha = network(np.float64)
    pointers = [p.ctypes.data for p in weights + [alpha]]
    opt = make(net)
    state_pointers = {name: [a.ctypes.data for a in fields.values()] for name, fields in opt.state.items()}
    before = [p.copy() for p in weights + [alpha]]
    x = np.random.default_rng(6).standard_normal(WIDTHS[0])
    rng = np.random.default_rng(7)
    grads = net.new_gradients(batch=1)
    for _ in range(3):
        opt.step(random_gradients(net, rng, grads))
    assert all(a is b for a, b in zip(net.weights, weights)) and net.alpha is alpha
    assert [p.ctypes.data for p in weights + [alpha]] == pointers
    assert {name: [a.ctypes.data for a in fields.values()] for name, fields in opt.state.items()} == state_pointers
    assert all(not np.array_equal(p, b) for p, b in zip(weights + [alpha], before))
    # The network computes with the updated values: the same as a new network over copies of them.
    fresh = mlpgrad.MLP([w.copy() for w in weights], alpha.copy(), "tanh")
    assert net.forward(x) == fresh.forward(x)


def test_updates_release_the_gil_for_large_arrays():
    """Another Python thread sees an update half done: with the GIL held for the whole call it could only
    ever see the arrays before or after an update.

    Every element of `param` holds the same value between updates, and each update lowers it (a constant
    gradient), writing the elements in order. The other thread reads the middle element, then the last: the
    middle one lower than the last means both reads fell inside one update, which cannot happen while the
    caller holds the GIL (a whole update between the two reads would lower the last one, not the middle).
    No clock is involved.
    """
    from mlpgrad import _core

    n = 16_000_000
    param, grad, m, v = (np.zeros(n, np.float32) for _ in range(4))
    grad += 1
    middle = n // 2
    def update_all():
        for step in range(1, 9):
            _core._adam_update(param, grad, m, v, 0.01, 0.9, 0.999, 1e-8, 0.0, False, step)

    halfway = count_while(lambda: param[middle] < param[-1], update_all)
    assert halfway > 0, "no other Python thread ran while an update was half done"
    assert np.all(param == param[0]) and param[0] < 0


# -------------------------------------------------------------------------------------------- NaN policy
def test_nan_in_gradients_propagates_to_that_parameter_only():
    net, weights, alpha = network(np.float64)
    grads = net.new_gradients(batch=1)
    random_gradients(net, np.random.default_rng(8), grads)
    grads.weights[1][2, 3] = np.nan
    optim.SGD(net, 0.1).step(grads)
    assert np.isnan(weights[1][2, 3])
    assert np.isnan(weights[1]).sum() == 1
    assert all(np.isfinite(p).all() for p in [weights[0], weights[2], alpha])


# -------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [lambda n: optim.Adam(n, 0.01), lambda n: optim.SGD(n, 0.05, momentum=0.9),
                                  lambda n: optim.Adam(n, 0.01, weight_decay=1e-4, decoupled=True)],
                         ids=["adam", "sgd-momentum", "adamw"])
def test_a_small_training_loop_lowers_the_loss(dtype, make):
    rng = np.random.default_rng(9)
    X = rng.uniform(-2, 2, (64, 1)).astype(dtype)
    y = np.sin(X[:, 0]).astype(dtype)
    weights, alpha = make_network(rng, (1, 16, 16), dtype)
    net = mlpgrad.MLP(weights, alpha, "tanh")
    opt = make(net)
    grads = net.new_gradients(batch=len(X))
    first = None
    for _ in range(300):
        loss, dy = losses.mse(net.forward_batch(X), y)
        first = loss if first is None else first
        net.value_and_grad_batch(X, dy, out=grads)
        opt.step(grads)
    final, _ = losses.mse(net.forward_batch(X), y)
    assert final < first / 10, (first, final)


def test_logistic_training_separates_two_classes():
    rng = np.random.default_rng(10)
    X = rng.standard_normal((128, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.float64)
    weights, alpha = make_network(rng, (2, 8), np.float64)
    net = mlpgrad.MLP(weights, alpha, "tanh")
    opt = optim.Adam(net, 0.05)
    grads = net.new_gradients(batch=len(X))
    for _ in range(200):
        _, dy = losses.logistic(net.forward_batch(X), y)
        net.value_and_grad_batch(X, dy, out=grads)
        opt.step(grads)
    accuracy = ((net.forward_batch(X) > 0) == (y == 1)).mean()
    assert accuracy > 0.95


# ---------------------------------------------------------------------------------------------- errors
def unchanged(arrays):
    copies = [a.copy() for a in arrays]
    return lambda: all(np.array_equal(a, c) for a, c in zip(arrays, copies))


def test_gradients_of_another_network_are_refused_before_any_write():
    net, weights, alpha = network(np.float64)
    opt = optim.Adam(net)
    same = unchanged(weights + [alpha])
    other, _, _ = network(np.float64)
    opt.step(other.new_gradients())  # same shapes: fine (they are this network's shapes)
    same = unchanged(weights + [alpha])
    wider = mlpgrad.MLP(*make_network(np.random.default_rng(0), (70, 80, 7, 4), np.float64))
    with pytest.raises(ValueError, match=r"grads.weights\[2\] has shape \(4, 7\) but the network's weights\[2\] "
                                         r"has shape \(3, 7\)"):
        opt.step(wider.new_gradients())
    shallow = mlpgrad.MLP(*make_network(np.random.default_rng(0), (70, 3), np.float64))
    with pytest.raises(ValueError, match=r"grads holds gradients for \(1 weight matrix, alpha\) but the network "
                                         r"has parameters \(3 weight matrices, alpha\)"):
        opt.step(shallow.new_gradients())
    single = mlpgrad.MLP(*make_network(np.random.default_rng(0), WIDTHS, np.float32))
    with pytest.raises(TypeError, match=r"grads.weights\[0\] has dtype float32 but the network's weights\[0\] has "
                                        r"float64"):
        opt.step(single.new_gradients())
    with pytest.raises(TypeError, match=r"grads must be a mlpgrad.Gradients of this network, got list"):
        opt.step([])
    assert same() and opt.steps == 1


def test_gradients_written_over_the_parameters_are_refused():
    net, weights, alpha = network(np.float64)
    opt = optim.SGD(net, 0.1)
    # A Gradients over the network's own arrays would update each parameter from itself.
    aliased = mlpgrad.Gradients(weights, alpha, np.zeros(WIDTHS[0]))
    same = unchanged(weights + [alpha])
    with pytest.raises(ValueError, match=r"grads.weights\[0\] shares memory with the network's weights\[0\]"):
        opt.step(aliased)
    assert same() and opt.steps == 0


def test_read_only_parameters_are_refused_before_any_write():
    weights, alpha = make_network(np.random.default_rng(0), (3, 4, 2), np.float64)
    weights[1].flags.writeable = False
    net = mlpgrad.MLP(weights, alpha)
    opt = optim.SGD(net, 0.1)
    grads = random_gradients(net, np.random.default_rng(1))
    same = unchanged(weights + [alpha])
    with pytest.raises(ValueError, match=r"the network's weights\[1\] is read-only; the optimiser updates it in place"):
        opt.step(grads)
    assert same() and opt.steps == 0
    weights[1].flags.writeable = True
    opt.step(grads)
    assert opt.steps == 1 and not same()


def test_tied_parameters_are_refused():
    W = np.random.default_rng(0).standard_normal((3, 3))
    net = mlpgrad.MLP([W, W], np.ones(3))
    with pytest.raises(ValueError, match=r"the network's weights\[0\] and weights\[1\] share memory"):
        optim.Adam(net)


def test_hyperparameters_are_checked():
    net, _, _ = network(np.float64)
    with pytest.raises(ValueError, match=r"lr must be a finite number in \[0, inf\), got -0.1"):
        optim.SGD(net, -0.1)
    with pytest.raises(ValueError, match=r"lr must be a finite number in \[0, inf\), got nan"):
        optim.Adam(net, float("nan"))
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, inf\), got -1"):
        optim.SGD(net, 0.1, momentum=-1)
    with pytest.raises(ValueError, match=r"nesterov momentum needs momentum > 0"):
        optim.SGD(net, 0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"weight_decay must be a finite number in \[0, inf\), got inf"):
        optim.SGD(net, 0.1, weight_decay=float("inf"))
    with pytest.raises(ValueError, match=r"beta1 must be a finite number in \[0, 1\), got 1"):
        optim.Adam(net, betas=(1.0, 0.999))
    with pytest.raises(ValueError, match=r"beta2 must be a finite number in \[0, 1\), got -0.5"):
        optim.Adam(net, betas=(0.9, -0.5))
    with pytest.raises(ValueError, match=r"eps must be a finite number in \[0, inf\), got -1e-08"):
        optim.Adam(net, eps=-1e-8)
    with pytest.raises(TypeError, match=r"betas must be a pair \(beta1, beta2\), got 0.9"):
        optim.Adam(net, betas=0.9)
    with pytest.raises(TypeError, match=r"lr must be a real number, got str"):
        optim.SGD(net, "0.1")
    with pytest.raises(TypeError, match=r"lr must be a real number, got bool"):
        optim.SGD(net, True)
    with pytest.raises(TypeError, match=r"decoupled must be a bool, got int"):
        optim.Adam(net, decoupled=1)
    with pytest.raises(TypeError, match=r"net must be a mlpgrad.MLP, got list"):
        optim.SGD([], 0.1)
    opt = optim.Adam(net, np.float32(0.5))
    opt.lr = 0.25  # a schedule may change lr between steps, and it is checked
    assert opt.lr == 0.25
    with pytest.raises(ValueError, match=r"lr must be a finite number"):
        opt.lr = -1
    with pytest.raises(AttributeError):
        opt.betas = (0.5, 0.5)
    assert opt.lr == 0.25


def test_the_private_update_functions_check_every_array():
    from mlpgrad import _core

    p, g, b = np.ones(6), np.ones(6), np.zeros(6)
    args = (0.1, 0.9, False, 0.0, 1)
    same = unchanged([p, b])
    with pytest.raises(TypeError, match=r"param must be a numpy.ndarray of float32 or float64, got list"):
        _core._sgd_update([1.0], g, b, *args)
    with pytest.raises(ValueError, match=r"param of shape \(3,\) is not a C-contiguous, aligned array"):
        _core._sgd_update(np.ones(6)[::2], g[:3], b[:3], *args)
    with pytest.raises(TypeError, match=r"grad has dtype float32 but param has float64"):
        _core._sgd_update(p, g.astype(np.float32), b, *args)
    with pytest.raises(ValueError, match=r"velocity has shape \(2, 3\) but param has shape \(6,\)"):
        _core._sgd_update(p, g, np.zeros((2, 3)), *args)
    read_only = np.ones(6)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"param is read-only"):
        _core._sgd_update(read_only, g, b, *args)
    with pytest.raises(ValueError, match=r"velocity is read-only"):
        _core._sgd_update(p, g, read_only, *args)
    with pytest.raises(ValueError, match=r"grad and velocity overlap in memory"):
        _core._sgd_update(p, g, g, *args)
    with pytest.raises(ValueError, match=r"velocity must be None without momentum"):
        _core._sgd_update(p, g, b, 0.1, 0.0, False, 0.0, 1)
    with pytest.raises(ValueError, match=r"step counts updates from 1; got 0"):
        _core._sgd_update(p, g, b, 0.1, 0.9, False, 0.0, 0)
    with pytest.raises(TypeError, match=r"_sgd_update\(\) missing required argument 'step'"):
        _core._sgd_update(p, g, b, 0.1, 0.9, False, 0.0)
    m, v = np.zeros(6), np.zeros(6)
    with pytest.raises(ValueError, match=r"m and v overlap in memory"):
        _core._adam_update(p, g, m, m, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1)
    with pytest.raises(ValueError, match=r"param and m overlap in memory"):
        _core._adam_update(p, g, p, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1)
    assert same()
    read_only_grad = np.ones(6)
    read_only_grad.flags.writeable = False  # gradients are only read
    _core._sgd_update(p, read_only_grad, b, *args)
    np.testing.assert_array_equal(p, 0.9)


# ------------------------------------------------------------------------ the parameter/gradient pairing
def test_parameters_pairs_biases_and_output_bias_when_the_network_has_them():
    """_parameters is the one place that lists a network's parameters; networks with biases and an output
    bias (a stand-in here, with the attributes MLP will have) add them after the weights and alpha."""
    rng = np.random.default_rng(11)
    arrays = lambda: types.SimpleNamespace(  # noqa: E731
        weights=[rng.standard_normal((4, 3)), rng.standard_normal((2, 4))], alpha=rng.standard_normal(2),
        biases=[rng.standard_normal(4), rng.standard_normal(2)], output_bias=np.array(0.5))
    net, grads = arrays(), arrays()
    triples = optim._parameters(net, grads)
    assert [name for name, _, _ in triples] == ["weights[0]", "weights[1]", "alpha", "biases[0]", "biases[1]",
                                               "output_bias"]
    assert all(p is getattr_path(net, n) and g is getattr_path(grads, n) for n, p, g in triples)
    grads.biases = None
    with pytest.raises(ValueError, match=r"grads holds gradients for \(2 weight matrices, alpha, output_bias\) but "
                                         r"the network has parameters \(2 weight matrices, alpha, 2 biases, "
                                         r"output_bias\)"):
        optim._parameters(net, grads)
    # Today's networks have neither: weights and alpha.
    plain, _, _ = network(np.float64)
    assert [n for n, _, _ in optim._parameters(plain, plain.new_gradients())] == [
        "weights[0]", "weights[1]", "weights[2]", "alpha"]


def getattr_path(obj, name):
    if "[" in name:
        field, index = name[:-1].split("[")
        return getattr(obj, field)[int(index)]
    return getattr(obj, name)
