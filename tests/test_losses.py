"""mlpgrad.losses: values and gradients against PyTorch's losses (where installed) and finite differences,
extreme logits, sample weights, and the errors for bad targets, weights and shapes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import hyp
from mlpgrad import _core, losses

DTYPES = (np.float32, np.float64)
# Per-element tolerances for two correct computations of the same loss in one dtype (several roundings each).
RTOL = {np.float32: 2e-6, np.float64: 1e-14}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def regression_batch(rng, dtype, shape):
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def weights_for(rng, batch, dtype):
    w = rng.uniform(0.0, 3.0, batch).astype(dtype)
    w[0] = 0.0  # a zero weight is allowed: that example does not count
    return w


def assert_matches(got, ref, dtype, what):
    """got (loss, dy) against ref (loss, dy) to a few roundings of `dtype`."""
    loss, dy = got
    ref_loss, ref_dy = ref
    assert isinstance(loss, float)
    assert dy.dtype == dtype and dy.shape == ref_dy.shape, what
    scale = max(1.0, abs(ref_loss))
    assert abs(loss - ref_loss) <= 8 * RTOL[dtype] * scale, (what, loss, ref_loss)
    dy_scale = float(np.max(np.abs(ref_dy))) or 1.0
    np.testing.assert_allclose(dy, ref_dy, rtol=8 * RTOL[dtype], atol=8 * RTOL[dtype] * dy_scale, err_msg=what)


def torch_value_and_grad(torch, fn, yhat):
    t = torch.tensor(yhat, requires_grad=True)
    value = fn(t)
    value.backward()
    return float(value.detach()), t.grad.numpy()


# ---------------------------------------------------------------------------------------------- vs PyTorch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (6, 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_mse_matches_torch(torch, dtype, shape, weighted):
    rng = np.random.default_rng(1)
    yhat, y = regression_batch(rng, dtype, shape)
    w = weights_for(rng, shape[0], dtype) if weighted else None
    yt = torch.tensor(y)

    def ref(t):
        if w is None:
            return torch.nn.MSELoss()(t, yt)
        per_example = ((t - yt) ** 2).reshape(shape[0], -1).mean(dim=1)
        wt = torch.tensor(w)
        return (wt * per_example).sum() / wt.sum()

    assert_matches(losses.mse(yhat, y, sample_weight=w), torch_value_and_grad(torch, ref, yhat), dtype,
                   f"mse {shape} weighted={weighted}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9,), (5, 4)])
@pytest.mark.parametrize("weighted", [False, True])
def test_logistic_matches_torch(torch, dtype, shape, weighted):
    rng = np.random.default_rng(2)
    yhat = (4 * rng.standard_normal(shape)).astype(dtype)
    y = rng.uniform(0, 1, shape).astype(dtype)
    y.flat[::3] = 1.0
    y.flat[1::3] = 0.0
    w = weights_for(rng, shape[0], dtype) if weighted else None
    yt = torch.tensor(y)

    def ref(t):
        if w is None:
            return torch.nn.BCEWithLogitsLoss()(t, yt)
        wt = torch.tensor(w if len(shape) == 1 else w[:, None])
        outputs = 1 if len(shape) == 1 else shape[1]
        return torch.nn.BCEWithLogitsLoss(weight=wt, reduction="sum")(t, yt) / (wt.sum() * outputs)

    assert_matches(losses.logistic(yhat, y, sample_weight=w), torch_value_and_grad(torch, ref, yhat), dtype,
                   f"logistic {shape} weighted={weighted}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", ["labels", "one-hot", "probabilities"])
def test_softmax_cross_entropy_matches_torch(torch, dtype, targets):
    rng = np.random.default_rng(3)
    batch, classes = 8, 5
    yhat = (3 * rng.standard_normal((batch, classes))).astype(dtype)
    labels = rng.integers(0, classes, batch)
    if targets == "labels":
        y, yt = labels, torch.tensor(labels)
    elif targets == "one-hot":
        y = np.eye(classes, dtype=dtype)[labels]
        yt = torch.tensor(y)
    else:
        y = rng.dirichlet(np.ones(classes), batch).astype(dtype)
        yt = torch.tensor(y)
    got = losses.softmax_cross_entropy(yhat, y)
    ref = torch_value_and_grad(torch, lambda t: torch.nn.CrossEntropyLoss()(t, yt), yhat)
    assert_matches(got, ref, dtype, targets)

    # Weighted: per-example weights against torch's own weighting (reduction="none", then our mean).
    w = weights_for(rng, batch, dtype)

    def weighted(t):
        per_example = torch.nn.CrossEntropyLoss(reduction="none")(t, yt)
        wt = torch.tensor(w)
        return (wt * per_example).sum() / wt.sum()

    assert_matches(losses.softmax_cross_entropy(yhat, y, sample_weight=w), torch_value_and_grad(torch, weighted, yhat),
                   dtype, targets + " weighted")


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_weights_are_sample_weights_of_the_labels(torch, dtype):
    """CrossEntropyLoss(weight=c) averages with Σ c[y_b] in the denominator: sample_weight = c[y] is the same."""
    rng = np.random.default_rng(4)
    yhat = rng.standard_normal((10, 4)).astype(dtype)
    labels = rng.integers(0, 4, 10)
    class_weight = np.array([0.5, 2.0, 1.0, 3.0], dtype=dtype)
    ref = torch_value_and_grad(
        torch, lambda t: torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weight))(t, torch.tensor(labels)), yhat)
    assert_matches(losses.softmax_cross_entropy(yhat, labels, sample_weight=class_weight[labels]), ref, dtype,
                   "class weights")


# ------------------------------------------------------------------------------------- finite differences
def central_differences(loss_fn, yhat, h):
    grad = np.zeros(yhat.shape, dtype=np.float64)
    for i in np.ndindex(yhat.shape):
        plus, minus = yhat.copy(), yhat.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = (loss_fn(plus)[0] - loss_fn(minus)[0]) / (float(plus[i]) - float(minus[i]))
    return grad


CASES = {
    "mse": (losses.mse, lambda rng, s, d: rng.standard_normal(s).astype(d), (6, 2)),
    "logistic": (losses.logistic, lambda rng, s, d: rng.uniform(0, 1, s).astype(d), (6, 2)),
    "softmax labels": (losses.softmax_cross_entropy, lambda rng, s, d: rng.integers(0, s[1], s[0]), (6, 3)),
    "softmax probabilities": (losses.softmax_cross_entropy,
                              lambda rng, s, d: rng.dirichlet(np.ones(s[1]), s[0]).astype(d), (6, 3)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_dy_is_the_derivative_of_the_loss(case, dtype, weighted):
    loss_fn, make_y, shape = CASES[case]
    rng = np.random.default_rng(5)
    yhat = (2 * rng.standard_normal(shape)).astype(dtype)
    y = make_y(rng, shape, dtype)
    w = weights_for(rng, shape[0], dtype) if weighted else None
    fn = lambda v: loss_fn(v, y, sample_weight=w)  # noqa: E731
    _, dy = fn(yhat)
    # float64: h ~ eps^(1/3) gives ~1e-10; float32 differences are only good to ~1e-3 of the gradient's scale.
    h, tol = (1e-5, 1e-8) if dtype == np.float64 else (1e-2, 3e-3)
    np.testing.assert_allclose(dy, central_differences(fn, yhat, h), rtol=0, atol=tol * max(1.0, np.abs(dy).max()))


@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1), st.sampled_from(sorted(CASES)))
@hyp(30)
def test_float32_agrees_with_float64(batch, outputs, seed, case):
    loss_fn, make_y, _ = CASES[case]
    if case.startswith("softmax"):
        outputs += 1
    rng = np.random.default_rng(seed)
    shape = (batch, outputs)
    yhat = (5 * rng.standard_normal(shape)).astype(np.float32)
    y = make_y(rng, shape, np.float32)
    w = rng.uniform(0.1, 2, batch).astype(np.float32)
    loss32, dy32 = loss_fn(yhat, y, sample_weight=w)
    loss64, dy64 = loss_fn(yhat.astype(np.float64), y if y.dtype.kind == "i" else y.astype(np.float64),
                           sample_weight=w.astype(np.float64))
    assert dy32.dtype == np.float32
    assert abs(loss32 - loss64) <= 1e-5 * max(1.0, abs(loss64))
    np.testing.assert_allclose(dy32, dy64, rtol=0, atol=1e-6 * max(1.0, np.abs(dy64).max()))


# ---------------------------------------------------------------------------------------- sample weights
@given(st.lists(st.integers(0, 3), min_size=1, max_size=6).filter(any), st.integers(0, 2**32 - 1),
       st.sampled_from(sorted(CASES)))
@hyp(40)
def test_integer_weights_equal_repeated_examples(counts, seed, case):
    """Weight k counts an example k times (scikit-learn's convention): the loss of the repeated batch."""
    loss_fn, make_y, shape = CASES[case]
    rng = np.random.default_rng(seed)
    shape = (len(counts), shape[1])
    yhat = rng.standard_normal(shape)
    y = make_y(rng, shape, np.float64)
    loss, dy = loss_fn(yhat, y, sample_weight=counts)
    repeat = np.repeat(np.arange(len(counts)), counts)
    loss_repeated, dy_repeated = loss_fn(yhat[repeat], y[repeat])
    assert loss == pytest.approx(loss_repeated, rel=1e-13, abs=1e-15)
    summed = np.zeros_like(dy)
    np.add.at(summed, repeat, dy_repeated)  # the repeated copies' gradients, gathered back per example
    np.testing.assert_allclose(dy, summed, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("case", sorted(CASES))
def test_equal_weights_are_no_weights_and_inputs_are_not_written(case):
    loss_fn, make_y, shape = CASES[case]
    rng = np.random.default_rng(6)
    yhat = rng.standard_normal(shape)
    y = make_y(rng, shape, np.float64)
    before = (yhat.copy(), y.copy())
    plain = loss_fn(yhat, y)
    weighted = loss_fn(yhat, y, sample_weight=np.full(shape[0], 2.5))
    assert weighted[0] == pytest.approx(plain[0], rel=1e-15)
    np.testing.assert_allclose(weighted[1], plain[1], rtol=1e-15)
    np.testing.assert_array_equal(yhat, before[0])
    np.testing.assert_array_equal(y, before[1])
    assert plain[1] is not yhat


@pytest.mark.parametrize("case", sorted(CASES))
def test_weights_near_the_float_range_do_not_overflow(case):
    loss_fn, make_y, shape = CASES[case]
    rng = np.random.default_rng(10)
    yhat = rng.standard_normal(shape).astype(np.float32)
    y = make_y(rng, shape, np.float32)
    huge = np.full(shape[0], np.finfo(np.float32).max, dtype=np.float32)
    loss, dy = loss_fn(yhat, y, sample_weight=huge)
    plain = loss_fn(yhat, y)
    assert loss == pytest.approx(plain[0], rel=1e-6)
    np.testing.assert_allclose(dy, plain[1], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_output_networks_give_one_dimensional_batches(dtype):
    yhat = np.array([0.5, -1.0, 2.0], dtype=dtype)
    loss, dy = losses.mse(yhat, [1.0, 1.0, 1.0])
    assert dy.shape == (3,) and dy.dtype == dtype
    assert loss == pytest.approx((0.25 + 4 + 1) / 3, rel=RTOL[dtype])
    np.testing.assert_allclose(dy, 2 * (yhat - 1) / 3, rtol=RTOL[dtype])
    loss, dy = losses.logistic(yhat, [1, 0, 1])
    assert dy.shape == (3,) and dy.dtype == dtype


# ----------------------------------------------------------------------------------------- extreme logits
@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_at_the_ends_of_the_float_range(dtype):
    big = float(np.finfo(dtype).max) / 2
    yhat = np.array([big, big, big, -big, -big, -big, np.inf, np.inf, -np.inf, -np.inf], dtype=dtype)
    y = np.array([1, 0, 0.5, 0, 1, 0.5, 1, 0, 0, 1], dtype=dtype)
    per_example, dy = [], []
    for i in range(len(yhat)):
        loss_i, dy_i = losses.logistic(yhat[i:i + 1], y[i:i + 1])
        per_example.append(loss_i)
        dy.append(float(dy_i[0]))
    expected_loss = [0.0, big, big / 2, 0.0, big, big / 2, 0.0, np.inf, 0.0, np.inf]
    expected_dy = [0.0, 1.0, 0.5, 0.0, -1.0, -0.5, 0.0, 1.0, 0.0, -1.0]
    np.testing.assert_array_equal(per_example, np.array(expected_loss, dtype=dtype).astype(float))
    np.testing.assert_array_equal(dy, expected_dy)
    # The mean of many losses near the float range does not overflow.
    loss, _ = losses.logistic(np.full(4, big * 1.9, dtype=dtype), np.zeros(4, dtype=dtype))
    assert loss == pytest.approx(big * 1.9, rel=RTOL[dtype])


def test_logistic_keeps_relative_accuracy_in_the_tails():
    # σ(40) − 1 = −e^−40/(1 + e^−40): computed as σ(ŷ) − 1 it would round to exactly 0.
    _, dy = losses.logistic(np.array([40.0, -40.0]), np.array([1.0, 0.0]))
    tail = np.exp(-40.0) / (1 + np.exp(-40.0))
    np.testing.assert_allclose(dy, [-tail / 2, tail / 2], rtol=1e-15)
    loss, _ = losses.logistic(np.array([-40.0]), np.array([0.0]))
    assert loss == pytest.approx(np.log1p(np.exp(-40.0)), rel=1e-15)


# ----------------------------------------------------------------------------------------- the fused kernel
def unaligned(a: np.ndarray) -> np.ndarray:
    """A copy of `a` at an odd address: C-contiguous but not aligned, as an unpickled buffer may be."""
    raw = np.empty(a.nbytes + 1, dtype=np.uint8)[1:]
    view = raw.view(a.dtype).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned
    return view


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_takes_unaligned_and_strided_inputs(dtype):
    rng = np.random.default_rng(11)
    yhat = rng.standard_normal((6, 4)).astype(dtype)
    labels = np.array([0, 3, 1, 2, 2, 0])
    expected = losses.softmax_cross_entropy(yhat, labels)
    for y_in, labels_in in [(unaligned(yhat), labels), (yhat, unaligned(labels)),
                            (np.asfortranarray(yhat), labels[::-1].copy()[::-1]), (yhat, labels.astype(np.int8))]:
        got = losses.softmax_cross_entropy(y_in, labels_in)
        assert got[0] == expected[0]
        np.testing.assert_array_equal(got[1], expected[1])
    weights = rng.uniform(0.5, 2.0, 6)
    weighted = losses.softmax_cross_entropy(yhat, labels, sample_weight=weights)
    got = losses.softmax_cross_entropy(yhat, labels, sample_weight=unaligned(weights))
    assert got[0] == weighted[0]


def test_softmax_refuses_logits_without_classes():
    with pytest.raises(ValueError, match=r"yhat has shape \(3, 0\): no classes"):
        losses.softmax_cross_entropy(np.zeros((3, 0)), [0, 0, 0])


def test_the_private_kernel_refuses_what_it_cannot_read():
    """mlpgrad.losses passes the kernel checked arrays; any other call is an error, never a crash."""
    yhat, labels = np.zeros((2, 3)), np.array([0, 2])
    with pytest.raises(TypeError, match="yhat must be a numpy.ndarray"):
        _core._softmax_cross_entropy([[0.0, 0.0, 0.0]] * 2, labels, None)
    with pytest.raises(TypeError, match="yhat has dtype int64"):
        _core._softmax_cross_entropy(np.zeros((2, 3), dtype=np.int64), labels, None)
    with pytest.raises(ValueError, match="yhat must be 2-D"):
        _core._softmax_cross_entropy(np.zeros(3), labels, None)
    with pytest.raises(ValueError, match="not a C-contiguous, aligned array"):
        _core._softmax_cross_entropy(np.zeros((3, 2)).T, labels, None)
    with pytest.raises(TypeError, match="numpy.intp labels, got dtype int32"):
        _core._softmax_cross_entropy(yhat, labels.astype(np.int32), None)
    with pytest.raises(TypeError, match="numpy.intp labels"):
        _core._softmax_cross_entropy(yhat, unaligned(labels), None)
    with pytest.raises(ValueError, match=r"y has shape \(3,\); expected \(2,\)"):
        _core._softmax_cross_entropy(yhat, np.array([0, 1, 2]), None)
    with pytest.raises(ValueError, match=r"label 3 of example 1 is outside \[0, 3\)"):
        _core._softmax_cross_entropy(yhat, np.array([0, 3]), None)
    with pytest.raises(ValueError, match=r"label -1 of example 0"):
        _core._softmax_cross_entropy(yhat, np.array([-1, 0]), None)
    with pytest.raises(TypeError, match="y has dtype float32 but yhat has float64; the loss takes one dtype"):
        _core._softmax_cross_entropy(yhat, np.zeros((2, 3), dtype=np.float32), None)
    with pytest.raises(ValueError, match="y does not match yhat"):
        _core._softmax_cross_entropy(yhat, np.zeros((2, 4)), None)
    with pytest.raises(ValueError, match=r"weights has shape \(3,\); expected \(2,\)"):
        _core._softmax_cross_entropy(yhat, labels, np.ones(3))
    with pytest.raises(TypeError, match="weights must be a numpy.ndarray"):
        _core._softmax_cross_entropy(yhat, labels, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"yhat has no classes \(m = 0\)"):
        _core._softmax_cross_entropy(np.zeros((2, 0)), np.zeros((2, 0)), None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_at_the_ends_of_the_float_range(dtype):
    big = float(np.finfo(dtype).max) / 2
    yhat = np.array([[big, -big, 0.0]] * 3, dtype=dtype)
    loss, dy = losses.softmax_cross_entropy(yhat, np.array([0, 0, 0]))
    assert loss == 0.0
    np.testing.assert_array_equal(dy, np.zeros((3, 3)))
    loss, dy = losses.softmax_cross_entropy(yhat[:1], np.array([2]))
    assert loss == pytest.approx(big, rel=RTOL[dtype])
    np.testing.assert_array_equal(dy, [[1.0, 0.0, -1.0]])
    # One-hot targets: −max − max overflows to −Inf, an impossible class (probability 0) that is not a
    # target, so it adds 0 (not 0·−Inf = NaN).
    top = float(np.finfo(dtype).max)
    loss, dy = losses.softmax_cross_entropy(np.array([[top, -top, 0.0]], dtype=dtype),
                                            np.array([[1.0, 0.0, 0.0]], dtype=dtype))
    assert loss == 0.0
    np.testing.assert_array_equal(dy, np.zeros((1, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_shift_invariant_and_takes_minus_infinity(dtype):
    rng = np.random.default_rng(7)
    yhat = rng.standard_normal((4, 3)).astype(dtype)
    labels = np.array([0, 1, 2, 1])
    base = losses.softmax_cross_entropy(yhat, labels)
    shifted = losses.softmax_cross_entropy(yhat + dtype(1024), labels)
    assert shifted[0] == pytest.approx(base[0], rel=1e-3 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(shifted[1], base[1], atol=1e-3 if dtype == np.float32 else 1e-12)
    with_impossible = np.concatenate([yhat, np.full((4, 1), -np.inf, dtype=dtype)], axis=1)
    loss, dy = losses.softmax_cross_entropy(with_impossible, labels)
    assert loss == pytest.approx(base[0], rel=RTOL[dtype] * 4)
    np.testing.assert_allclose(dy[:, :3], base[1], rtol=RTOL[dtype] * 4, atol=RTOL[dtype])
    np.testing.assert_array_equal(dy[:, 3], 0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_nan_in_yhat_propagates(case):
    loss_fn, make_y, shape = CASES[case]
    rng = np.random.default_rng(8)
    yhat = rng.standard_normal(shape)
    yhat[1, 0] = np.nan
    loss, dy = loss_fn(yhat, make_y(rng, shape, np.float64))
    assert np.isnan(loss)
    assert np.isnan(dy[1]).any()
    assert np.isfinite(np.delete(dy, 1, axis=0)).all()


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("fn", [losses.mse, losses.logistic])
def test_elementwise_losses_refuse_bad_input(fn):
    yhat = np.zeros(4)
    with pytest.raises(TypeError, match=r"yhat has dtype int64; expected float32 or float64"):
        fn(np.zeros(4, dtype=np.int64), np.zeros(4))
    with pytest.raises(TypeError, match=r"yhat has dtype <U1; expected real numbers"):
        fn(np.array(["a"]), np.zeros(1))
    with pytest.raises(ValueError, match=r"yhat must have shape \(B,\) or \(B, m\), got shape \(2, 2, 1\)"):
        fn(np.zeros((2, 2, 1)), np.zeros((2, 2, 1)))
    with pytest.raises(ValueError, match=r"yhat must have shape \(B,\) or \(B, m\), got shape \(\)"):
        fn(np.float64(1.0), 1.0)
    with pytest.raises(ValueError, match=r"yhat holds no examples"):
        fn(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"y has shape \(3,\) but yhat has shape \(4,\); expected the same shape"):
        fn(yhat, np.zeros(3))
    with pytest.raises(ValueError, match=r"y has shape \(4, 1\) but yhat has shape \(4,\)"):
        fn(yhat, np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"y holds NaN or infinite values"):
        fn(yhat, [0, np.nan, 0, 0])
    with pytest.raises(ValueError, match=r"y holds NaN or infinite values \(in float32\)"):
        fn(np.zeros(1, dtype=np.float32), [1e39])
    with pytest.raises(TypeError, match=r"y has dtype complex128; expected real numbers"):
        fn(yhat, np.zeros(4, dtype=complex))


def test_logistic_refuses_targets_outside_0_1():
    with pytest.raises(ValueError, match=r"y holds values outside \[0, 1\] \(from -1.0 to 1.0\)"):
        losses.logistic(np.zeros(3), [0, 1, -1])
    with pytest.raises(ValueError, match=r"outside \[0, 1\] \(from 0.0 to 2.0\)"):
        losses.logistic(np.zeros(2), [0, 2])


def test_softmax_refuses_bad_targets():
    yhat = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels from 0 to 4 but yhat has 4 classes; expected labels in \[0, 4\)"):
        losses.softmax_cross_entropy(yhat, [0, 4, 1])
    with pytest.raises(ValueError, match=r"labels from -1 to 1"):
        losses.softmax_cross_entropy(yhat, [0, -1, 1])
    with pytest.raises(TypeError, match=r"must be integers, got dtype float64"):
        losses.softmax_cross_entropy(yhat, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"y has shape \(2,\) but yhat holds 3 examples"):
        losses.softmax_cross_entropy(yhat, [0, 1])
    with pytest.raises(ValueError, match=r"y has shape \(3, 3\) but yhat has shape \(3, 4\)"):
        losses.softmax_cross_entropy(yhat, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"y holds negative probabilities"):
        losses.softmax_cross_entropy(yhat, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, -1]])
    with pytest.raises(ValueError, match=r"y holds NaN or infinite values"):
        losses.softmax_cross_entropy(yhat, np.full((3, 4), np.inf))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy takes logits of shape \(B, m\)"):
        losses.softmax_cross_entropy(np.zeros(3), [0, 0, 0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_sample_weight_errors(case):
    loss_fn, make_y, shape = CASES[case]
    rng = np.random.default_rng(9)
    yhat, y = rng.standard_normal(shape), make_y(rng, shape, np.float64)
    batch = shape[0]
    with pytest.raises(ValueError, match=rf"sample_weight has shape \(2,\) but yhat holds {batch} examples"):
        loss_fn(yhat, y, sample_weight=[1, 1])
    with pytest.raises(ValueError, match=r"sample_weight holds negative values \(smallest -1.0\)"):
        loss_fn(yhat, y, sample_weight=[-1.0] + [1.0] * (batch - 1))
    with pytest.raises(ValueError, match=r"sample_weight is all zeros"):
        loss_fn(yhat, y, sample_weight=np.zeros(batch))
    with pytest.raises(ValueError, match=r"sample_weight holds NaN or infinite values"):
        loss_fn(yhat, y, sample_weight=[np.nan] + [1.0] * (batch - 1))
    with pytest.raises(TypeError, match=r"sample_weight has dtype <U1; expected real numbers"):
        loss_fn(yhat, y, sample_weight=["a"] * batch)


def textbook_softmax_cross_entropy(yhat, labels):
    """The formula as first written (one NumPy expression a step, reductions along axis 1), for labels."""
    shifted = yhat - yhat.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(yhat))
    loss = -log_probabilities[rows, labels]
    gradient = np.exp(log_probabilities)
    gradient[rows, labels] -= 1
    scale = 1.0 / len(yhat)
    return float((loss * scale).sum(dtype=yhat.dtype)), gradient * scale


@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 50), st.integers(1, 40), st.integers(0, 2**32 - 1),
       st.sampled_from([-3.0, 0.0, 3.0]), st.sampled_from([None, np.inf, -np.inf, np.nan, 0.0, -0.0]))
@hyp(100)
def test_softmax_cross_entropy_is_the_textbook_formula_to_rounding(dtype, batch, classes, seed, magnitude, special):
    """The fused pass (one exponential per logit, softmax as e^{ŷ−μ}/Σ) agrees with the formula as written
    in NumPy to a few units in the last place, and gives NaN exactly where it does."""
    rng = np.random.default_rng(seed)
    yhat = (rng.standard_normal((batch, classes)) * 10.0 ** magnitude).astype(dtype)
    if special is not None:
        yhat[rng.integers(batch), rng.integers(classes)] = special
    labels = rng.integers(0, classes, batch)
    with np.errstate(all="ignore"):
        loss, dy = losses.softmax_cross_entropy(yhat, labels)
        expected_loss, expected_dy = textbook_softmax_cross_entropy(yhat, labels)
    assert dy.dtype == yhat.dtype and dy.shape == yhat.shape
    assert np.array_equal(np.isnan(dy), np.isnan(expected_dy))
    finite = ~np.isnan(dy)
    # exp(log p) in the textbook loses |log p| ulps that e/Σ does not: the bound is the textbook's error.
    eps = float(np.finfo(dtype).eps)
    got, expected = dy[finite].astype(float), expected_dy[finite].astype(float)
    log_p = np.abs(np.log(np.maximum(np.abs(expected) * batch, np.finfo(dtype).tiny)))
    assert np.all(np.abs(got - expected) <= 8 * eps * (1 + log_p) * np.abs(expected) + 4 * eps / batch)
    if np.isnan(expected_loss) or np.isinf(expected_loss):
        assert loss == expected_loss or (np.isnan(loss) and np.isnan(expected_loss))
    else:
        assert loss == pytest.approx(expected_loss, rel=16 * eps, abs=16 * eps)
