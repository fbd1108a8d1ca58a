"""Biases b^t and the output bias β in the Python binding: MLP(weights, alpha, activation, *, biases=None,
output_bias=None) and the Gradients fields .biases / .output_bias. Every call against mlpgrad.reference and
central differences (float32 and float64, every activation), PyTorch autograd where it is installed; zero
copy; bad input refused with nothing written; an Adam step that updates the biases in place.
"""
from __future__ import annotations

import numpy as np
import pytest

import mlpgrad
from conftest import ACTIVATIONS, DTYPES, run_in_child
from network_cases import (
    Case, all_arrays, assert_gradients_match, assert_matches_torch_autograd, check_every_path, check_finite_differences,
    gradients_spec, oracle, oracle_batch, parameter_arrays,
)

WIDTHS = (3, 5, 4)
LAYOUTS = [(True, False), (False, True), (True, True)]  # (biases, output bias)
LAYOUT_IDS = ["biases", "output_bias", "both"]


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_call_against_the_reference(rng, activation, dtype, layout):
    check_every_path(Case(WIDTHS, activation, dtype, *layout), rng)


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_against_finite_differences(rng, activation, dtype, layout):
    check_finite_differences(Case(WIDTHS, activation, dtype, *layout), rng)


@pytest.mark.parametrize("widths", [(4,), (2, 3), (1, 1, 1, 1), (6, 2, 7, 3)])
def test_depths_and_widths(rng, widths):
    """Depth 0 (biases=[]: ŷ = αᵀx + β) to depth 3."""
    check_every_path(Case(widths, "tanh", np.float64), rng)


def test_the_parameters_are_viewed_not_copied(rng):
    net = Case(WIDTHS, "identity", np.float64).build(rng)
    biases, beta = net.biases, net.output_bias
    assert net.biases is not biases and all(a is b for a, b in zip(net.biases, biases))  # a new list, same arrays
    assert net.output_bias is beta and beta.shape == ()
    x = np.ones(WIDTHS[0])
    y0 = net.forward(x)
    beta += 2.0  # in place: the next call sees it
    assert net.forward(x) == pytest.approx(y0 + 2.0, rel=1e-12)
    b1 = net.biases[1]
    b1 += 1.0  # identity activations: ŷ moves by Σ_k α_k
    assert net.forward(x) == pytest.approx(y0 + 2.0 + float(np.sum(net.alpha)), rel=1e-12)
    pointers = [a.ctypes.data for a in parameter_arrays(net)]
    out = net.new_gradients()
    out_pointers = [a.ctypes.data for a in all_arrays(out)]
    for _ in range(3):
        net.value_and_grad(x, 0.5, out=out)
        net.value_and_grad_batch(np.ones((4, WIDTHS[0])), out=net.new_gradients(batch=4, x=False))
    assert [a.ctypes.data for a in parameter_arrays(net)] == pointers
    assert [a.ctypes.data for a in all_arrays(out)] == out_pointers
    np.testing.assert_array_equal(out.output_bias, np.array(0.5))
    assert out.biases[1] is out.biases[1] and out.biases[1].flags.writeable


def test_read_only_biases_are_used_as_they_are(rng):
    """Like the weights: a network only reads its parameters, so read-only arrays are viewed too."""
    W = [np.ones((2, 2))]
    b = np.array([0.5, -0.25])
    b.flags.writeable = False
    beta = np.array(1.0)
    beta.flags.writeable = False
    net = mlpgrad.MLP(W, np.ones(2), "identity", biases=[b], output_bias=beta)
    assert net.biases[0] is b and net.forward(np.ones(2)) == pytest.approx(4.0 + 0.25 + 1.0)


def test_networks_without_biases_are_unchanged(rng):
    net = mlpgrad.MLP([np.ones((2, 3))], np.ones(2))
    assert net.biases is None and net.output_bias is None and net.output_shape == ()
    g = net.new_gradients()
    assert g.biases is None and g.output_bias is None
    assert repr(net) == "mlpgrad.MLP(widths=(3, 2), activations=('relu',), dtype=float64)"
    assert net.__getstate__()[0] == 1
    y, g = net.value_and_grad(np.ones(3))
    assert type(y) is float and y == 6.0


def test_gradients_made_by_hand(rng):
    net = Case(WIDTHS, "tanh", np.float32).build(rng)
    x = rng.standard_normal(WIDTHS[0]).astype(np.float32)
    spec = gradients_spec(net)
    out = mlpgrad.Gradients(spec["weights"], spec["alpha"], spec["x"], spec["z"], spec["u"],
                            biases=spec["biases"], output_bias=spec["output_bias"])
    assert out.biases[0] is spec["biases"][0] and out.output_bias is spec["output_bias"]
    net.value_and_grad(x, 1.5, out=out)
    assert_gradients_match(out, oracle(net, x, 1.5)[1], net)
    params = mlpgrad.Gradients(spec["weights"], spec["alpha"], biases=spec["biases"], output_bias=spec["output_bias"])
    X = rng.standard_normal((3, WIDTHS[0])).astype(np.float32)
    net.value_and_grad_batch(X, out=params)
    ref = oracle_batch(net, X)[1]
    ref.pop("x")
    assert_gradients_match(params, ref, net)


# ----------------------------------------------------------------------------- bad input
def _mlp(**kw):
    W = [np.ones((4, 3)), np.ones((2, 4))]
    return mlpgrad.MLP(W, kw.pop("alpha", np.ones(2)), "tanh", **kw)


@pytest.mark.parametrize("kw,error,match", [
    (dict(biases=np.ones(4)), TypeError, r"biases must be None or a list or tuple of 1-D numpy arrays.*ndarray"),
    (dict(biases=[[1.0] * 4, np.ones(2)]), TypeError, r"biases\[0\] must be a numpy.ndarray.*got list.*never copies"),
    (dict(biases=[np.ones(4)]), ValueError, r"biases has 1 arrays but the network has 2 layers"),
    (dict(biases=[]), ValueError, r"biases has 0 arrays but the network has 2 layers"),
    (dict(biases=[np.ones(4), np.ones(2), np.ones(2)]), ValueError, r"biases has 3 arrays"),
    (dict(biases=[np.ones(4), np.ones(3)]), ValueError, r"biases\[1\] has shape \(3,\) but expected \(2,\)"),
    (dict(biases=[np.ones((4, 1)), np.ones(2)]), ValueError, r"biases\[0\] must be 1-D .*got a 2-D array"),
    (dict(biases=[np.ones(4, np.float32), np.ones(2)]), TypeError, r"biases\[0\] has dtype float32 but weights\[0\]"),
    (dict(biases=[np.ones(4, np.int64), np.ones(2)]), TypeError, r"biases\[0\] has dtype int64"),
    (dict(biases=[np.ones(8)[::2], np.ones(2)]), ValueError, r"biases\[0\] of shape \(4,\) is not a C-contiguous"),
    (dict(output_bias=0.5), TypeError, r"output_bias must be a numpy.ndarray.*got float"),
    (dict(output_bias=np.ones(1)), ValueError, r"output_bias must be 0-D with shape \(\) for one output"),
    (dict(output_bias=np.array(1.0, np.float32)), TypeError, r"output_bias has dtype float32"),
    (dict(alpha=np.ones((2, 3)), output_bias=np.array(1.0)), ValueError, r"output_bias must be 1-D with shape \(m,\)"),
    (dict(alpha=np.ones((2, 3)), output_bias=np.ones(2)), ValueError,
     r"output_bias has shape \(2,\) but alpha has 3 columns"),
])
def test_bad_parameters_are_refused(kw, error, match):
    with pytest.raises(error, match=match):
        _mlp(**kw)


def test_unknown_keyword_names_the_parameters():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'bias'; did you mean 'biases'"):
        _mlp(bias=[np.ones(4), np.ones(2)])
    with pytest.raises(TypeError, match=r"at most 3 positional arguments"):
        mlpgrad.MLP([np.ones((1, 1))], np.ones(1), "relu", [np.ones(1)])


def _bias_net(**kw):
    return _mlp(biases=[np.ones(4), np.ones(2)], output_bias=np.array(0.0), **kw)


def test_out_of_another_layout_is_refused_with_nothing_written():
    with_biases, plain = _bias_net(), _mlp()
    only_output_bias = _mlp(output_bias=np.array(0.0))
    x = np.ones(3)
    cases = [
        (with_biases, plain.new_gradients(), r"out has no bias gradients \(out.biases is None\) but the network has biases"),
        (plain, with_biases.new_gradients(), r"out has bias gradients \(out.biases\) but the network has no biases"),
        (with_biases, _mlp(biases=[np.ones(4), np.ones(2)]).new_gradients(),
         r"out has no output-bias gradient .* but the network has an output bias"),
        (plain, only_output_bias.new_gradients(), r"out has an output-bias gradient"),
        (plain, _mlp(alpha=np.ones((2, 1))).new_gradients(), r"out.alpha has shape \(2, 1\) but alpha has shape \(2,\)"),
    ]
    for net, out, match in cases:
        before = [a.copy() for a in all_arrays(out)]
        with pytest.raises(ValueError, match=match + ".*net.new_gradients"):
            net.value_and_grad(x, out=out)
        with pytest.raises(ValueError, match=match):
            net.value_and_grad_batch(np.ones((2, 3)), out=mlpgrad.Gradients(out.weights, out.alpha, biases=out.biases,
                                                                            output_bias=out.output_bias))
        for a, b in zip(all_arrays(out), before):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change,error,match", [
    (lambda s: s.update(biases=s["biases"][:1]), ValueError, r"biases must hold 2 arrays \(one per layer\), got 1"),
    (lambda s: s.update(biases=[np.zeros(4), np.zeros(3)]), ValueError, r"out.biases\[1\] has shape \(3,\) but expected \(2,\)"),
    (lambda s: s.update(biases=[np.zeros(4, np.float32), np.zeros(2)]), TypeError, r"out.biases\[0\] has dtype float32"),
    (lambda s: s.update(biases=np.zeros(4)), TypeError, r"biases must be a list of 1-D numpy arrays or None"),
    (lambda s: s.update(biases=[[0.0] * 4, np.zeros(2)]), TypeError, r"out.biases\[0\] must be a numpy.ndarray"),
    (lambda s: s.update(output_bias=np.zeros(1)), ValueError, r"out.output_bias has shape \(1,\) but expected \(\)"),
    (lambda s: s["biases"][0].setflags(write=False), ValueError, r"out.biases\[0\] is read-only"),
    (lambda s: s.update(output_bias=s["biases"][1][:1].reshape(())), ValueError,
     r"out.biases\[1\] overlaps out.output_bias"),
])
def test_bad_gradient_buffers_are_refused(change, error, match):
    spec = gradients_spec(_bias_net())
    change(spec)
    with pytest.raises(error, match=match):
        mlpgrad.Gradients(**spec)


def test_out_overlapping_a_bias_of_the_network_is_refused():
    b = [np.ones(4), np.ones(2)]
    net = _mlp(biases=b)
    spec = gradients_spec(net)
    spec["biases"] = [b[0], np.zeros(2)]
    out = mlpgrad.Gradients(**spec)
    with pytest.raises(ValueError, match=r"out.biases\[0\] overlaps biases\[0\] in memory"):
        net.value_and_grad(np.ones(3), out=out)
    np.testing.assert_array_equal(b[0], np.ones(4))


def test_bad_dy_leaves_out_untouched():
    net = _bias_net()
    out = net.new_gradients()
    for a in all_arrays(out):
        a[...] = -777.25
    for dy in (np.ones(2), "1", np.ones((1, 1))):
        with pytest.raises((TypeError, ValueError)):
            net.value_and_grad(np.ones(3), dy, out=out)
    assert all(np.all(a == -777.25) for a in all_arrays(out))


def test_a_resized_bias_is_refused_on_the_next_call():
    code = """
    W = [np.ones((4, 3)), np.ones((2, 4))]
    b = [np.ones(4), np.ones(2)]
    beta = np.zeros(())
    net = mlpgrad.MLP(W, np.ones(2), "tanh", biases=b, output_bias=beta)
    out = net.new_gradients()
    print(outcome(lambda: net.forward(np.ones(3))))
    b[1].resize(50, refcheck=False)
    print(outcome(lambda: net.forward(np.ones(3))))
    net2 = mlpgrad.MLP(W, np.ones(2), "tanh", biases=[np.ones(4), np.ones(2)], output_bias=np.zeros(()))
    g = net2.new_gradients()
    g.biases[0].resize(40, refcheck=False)
    print(outcome(lambda: net2.value_and_grad(np.ones(3), out=g)))
    g2 = net2.new_gradients()
    g2.output_bias.flags.writeable = False
    print(outcome(lambda: net2.value_and_grad(np.ones(3), out=g2)))
    """
    lines = run_in_child(code)
    assert lines[0] == "returned"
    assert lines[1].startswith("ValueError: biases[1] was resized or reallocated after the network was built")
    assert lines[2].startswith("ValueError: out.biases[0] was resized or reallocated after this Gradients was made")
    assert lines[3] == "ValueError: out.output_bias is read-only; gradients are written into it"


# ----------------------------------------------------------------------------- training
def test_an_adam_step_updates_every_bias_in_place(rng):
    from mlpgrad import losses, optim

    net = Case((2, 8, 8), "tanh", np.float64, outputs=None).build(rng)
    params = parameter_arrays(net)
    assert len(params) == 2 + 1 + 2 + 1
    before = [p.copy() for p in params]
    opt = optim.Adam(net, lr=0.05)
    assert list(opt.state) == ["weights[0]", "weights[1]", "alpha", "biases[0]", "biases[1]", "output_bias"]
    X = rng.uniform(-1, 1, (32, 2))
    y = 3.0 + X[:, 0] * X[:, 1]  # an offset no bias-free network of odd activations can produce at x = 0
    grads = net.new_gradients(batch=32, x=False)
    first = None
    for _ in range(200):
        loss, dy = losses.mse(net.forward_batch(X), y)
        first = loss if first is None else first
        net.backward_batch(dy, out=grads)
        # the textbook first step, in NumPy, for the output bias (a 0-d array): lr·sign(g) when m and v start at 0
        if opt.steps == 0:
            expected_beta = net.output_bias - 0.05 * grads.output_bias / (np.abs(grads.output_bias) + 1e-8)
        opt.step(grads)
        if opt.steps == 1:
            np.testing.assert_allclose(net.output_bias, expected_beta, rtol=1e-12)
    assert all(p is q for p, q in zip(parameter_arrays(net), params))  # the very arrays, updated in place
    assert all(not np.array_equal(p, b) for p, b in zip(params, before))
    assert loss < 0.05 * first


# ----------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_against_pytorch_autograd(rng, activation, dtype):
    torch = pytest.importorskip("torch")
    from network_cases import kink_safe

    case = Case((3, 6, 5), activation, dtype, outputs=None)
    for _ in range(20):
        net = case.build(rng)
        X = case.x(rng, 7)
        if kink_safe(net, X):
            break
    dY = case.dy(rng, 7)
    yhat, g = net.value_and_grad_batch(X, dY)

    assert_matches_torch_autograd(torch, net, X, dY, yhat, g, activation, dtype)
