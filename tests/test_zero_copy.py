"""Zero copy: the net uses the caller's arrays, out= writes into the caller's arrays, snapshots are snapshots."""
import pickle

import numpy as np
import pytest

import mlpgrad
from conftest import (
    SENTINEL, assert_gradients_close, assert_value_close, build_net, grads_of, iter_arrays,
    make_inputs, make_network, np_forward, oracle, oracle_batch, out_spec, tolerance, assert_close, run_in_child,
)

WIDTHS = (4, 6, 3, 2)
ACTS = ["tanh", "softplus", "sigmoid"]


@pytest.fixture
def setup(rng, dtype):
    net, weights, alpha = build_net(rng, WIDTHS, ACTS, dtype)
    return net, weights, alpha, rng, dtype


def all_arrays(g):
    return list(iter_arrays(g))


# ----------------------------------------------------------------------------- identity
def test_weights_and_alpha_are_the_callers_arrays(setup):
    net, weights, alpha, _, _ = setup
    for _ in range(2):  # stable across accesses
        assert len(net.weights) == len(weights)
        for t in range(len(weights)):
            assert net.weights[t] is weights[t]
        assert net.alpha is alpha


def test_read_only_weights_are_used_without_copy(rng, dtype):
    weights, alpha = make_network(rng, WIDTHS, dtype)
    for a in weights + [alpha]:
        a.setflags(write=False)
    net = mlpgrad.MLP(weights, alpha, ACTS)
    assert all(net.weights[t] is weights[t] for t in range(3)) and net.alpha is alpha
    x = make_inputs(rng, WIDTHS[0], dtype)
    yhat_ref, g_ref = oracle(weights, alpha, x, ACTS, 1.0)
    yhat, g = net.value_and_grad(x)
    assert_value_close(yhat, yhat_ref, dtype, WIDTHS)
    assert_gradients_close(g, g_ref, dtype, WIDTHS)
    assert all(not a.flags.writeable for a in weights + [alpha])


def test_in_place_weight_updates_are_seen(setup):
    net, weights, alpha, rng, dtype = setup
    x = make_inputs(rng, WIDTHS[0], dtype)
    X = make_inputs(rng, WIDTHS[0], dtype, batch=3)
    for step in range(3):
        # a gradient-descent-like in-place update of every parameter
        _, g = net.value_and_grad(x)
        for w, gw in zip(weights, g.weights):
            w -= dtype(0.1) * gw
        alpha *= dtype(-1.5)
        weights[1][0, 0] = dtype(0.75 + step)

        yhat_ref, g_ref = oracle(weights, alpha, x, ACTS, 1.0)
        yhat, g = net.value_and_grad(x)
        assert_value_close(yhat, yhat_ref, dtype, WIDTHS)
        assert_gradients_close(g, g_ref, dtype, WIDTHS)
        assert_value_close(net.forward(x), yhat_ref, dtype, WIDTHS)
        yb_ref, gb_ref = oracle_batch(weights, alpha, X, ACTS)
        yb, gb = net.value_and_grad_batch(X)
        assert_close(yb, yb_ref, tolerance(dtype, WIDTHS), 1 + np.max(np.abs(yb_ref)), "batch yhat")
        assert_gradients_close(gb, gb_ref, dtype, WIDTHS, batch=3)
        assert_close(net.forward_batch(X), yb_ref, tolerance(dtype, WIDTHS), 1 + np.max(np.abs(yb_ref)), "fb")


def test_weight_update_between_forward_and_backward_does_not_change_snapshot(setup):
    """net.u / net.z are snapshots of the forward pass: later weight updates do not alter them."""
    net, weights, alpha, rng, dtype = setup
    x = make_inputs(rng, WIDTHS[0], dtype)
    net.forward(x)
    z_before = [v.copy() for v in net.z]
    u_before = [v.copy() for v in net.u]
    z_obj, u_obj = net.z, net.u
    weights[0] *= dtype(2.0)
    for a, b in zip(z_obj + u_obj, z_before + u_before):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(net.z + net.u, z_before + u_before):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- out=
def test_out_returns_the_same_object_and_arrays(setup):
    net, weights, alpha, rng, dtype = setup
    x = make_inputs(rng, WIDTHS[0], dtype)
    spec = out_spec(WIDTHS, dtype)
    out = mlpgrad.Gradients(**spec)
    # the Gradients wraps the very arrays given
    assert all(out.weights[t] is spec["weights"][t] for t in range(3))
    assert out.alpha is spec["alpha"] and out.x is spec["x"]
    assert all(out.z[t] is spec["z"][t] for t in range(4)) and all(out.u[t] is spec["u"][t] for t in range(3))
    assert out.batch is None

    _, fresh = net.value_and_grad(x, -0.5)
    fresh = grads_of(fresh)
    yhat, g = net.value_and_grad(x, -0.5, out=out)
    assert g is out
    assert all(g.weights[t] is spec["weights"][t] for t in range(3))
    assert g.alpha is spec["alpha"] and g.x is spec["x"]
    assert all(g.z[t] is spec["z"][t] for t in range(4)) and all(g.u[t] is spec["u"][t] for t in range(3))
    assert_gradients_close(g, fresh, dtype, WIDTHS)
    # the caller's arrays themselves hold the result (no sentinel left anywhere)
    for a in iter_arrays(spec):
        assert not np.any(a == SENTINEL)

    net.forward(x)
    spec2 = out_spec(WIDTHS, dtype)
    out2 = mlpgrad.Gradients(**spec2)
    g2 = net.backward(-0.5, out=out2)
    assert g2 is out2 and g2.weights[0] is spec2["weights"][0] and g2.x is spec2["x"]
    assert_gradients_close(g2, fresh, dtype, WIDTHS)


def test_out_batch_returns_the_same_object_and_arrays(setup):
    net, weights, alpha, rng, dtype = setup
    X = make_inputs(rng, WIDTHS[0], dtype, batch=5)
    _, fresh = net.value_and_grad_batch(X)
    spec = out_spec(WIDTHS, dtype, batch=5)
    out = mlpgrad.Gradients(**spec)
    assert out.batch == 5 and out.z is None and out.u is None
    _, g = net.value_and_grad_batch(X, out=out)
    assert g is out
    assert all(g.weights[t] is spec["weights"][t] for t in range(3))
    assert g.alpha is spec["alpha"] and g.x is spec["x"]
    assert_gradients_close(g, grads_of(fresh), dtype, WIDTHS, batch=5)


def test_new_gradients_as_out(setup):
    net, weights, alpha, rng, dtype = setup
    x = make_inputs(rng, WIDTHS[0], dtype)
    out = net.new_gradients()
    arrays = all_arrays(out)
    _, g = net.value_and_grad(x, out=out)
    assert g is out
    assert all(a is b for a, b in zip(all_arrays(g), arrays))


# ----------------------------------------------------------------------------- alignment
def _numpy_multiarray():
    return (getattr(np, "_core", None) or np.core).multiarray  # get_handler_name: NumPy >= 1.22


@pytest.mark.parametrize("batch", [None, 3])
def test_new_gradients_arrays_start_on_a_cache_line_and_own_their_data(rng, dtype, batch):
    # NumPy's own allocations are 16-byte aligned, and the backward pass's vector stores into a ∂W that is
    # not 32-byte aligned split across cache lines; new_gradients() allocates every array 64-byte aligned.
    # Several networks and calls: with NumPy's alignment, some array would miss.
    multiarray = _numpy_multiarray()
    for widths in ((64, 64, 64, 64, 64), (3, 5, 2), (7, 1)):
        net = build_net(rng, widths, "relu", dtype)[0]
        for _ in range(4):
            g = net.new_gradients(batch=batch)
            arrays = all_arrays(g)
            assert len(arrays) >= 3
            for a in arrays:
                assert a.ctypes.data % 64 == 0, (widths, a.shape, a.ctypes.data % 64)
                assert a.flags.owndata and a.base is None and not a.any()
                assert multiarray.get_handler_name(a) == "mlpgrad_aligned_64"
    # The handler applies to new_gradients() only: arrays made afterwards get NumPy's default.
    assert multiarray.get_handler_name() == multiarray.get_handler_name(np.empty(1000))
    assert multiarray.get_handler_name() != "mlpgrad_aligned_64"


def test_aligned_gradients_resize_pickle_copy_and_free_like_any_array():
    # In a child: a handler that freed or reallocated wrongly would crash the interpreter.
    lines = run_in_child("""
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            net = mlpgrad.MLP([rng.standard_normal((6, 8)).astype(dtype)], np.ones(6, dtype), "relu")
            for _ in range(50):
                g = net.new_gradients()
                w = g.weights[0]
                w[...] = np.arange(w.size, dtype=dtype).reshape(w.shape)
                before = w.copy()
                assert np.array_equal(pickle.loads(pickle.dumps(w)), before)
                assert np.array_equal(copy.deepcopy(w), before)
                w.resize((w.size * 4,), refcheck=False)  # through the handler's realloc: data kept, rest zero
                assert np.array_equal(w[: before.size], before.ravel()) and not w[before.size:].any()
                w.resize((3,), refcheck=False)
                assert np.array_equal(w, before.ravel()[:3])
                print(outcome(lambda: net.value_and_grad(np.ones(8, dtype), out=g)).split(" was")[0])
                del g, w
                gc.collect()
        print("done")
    """)
    assert lines[-1] == "done" and len(lines) == 101
    assert set(lines[:-1]) == {"ValueError: out.weights[0]"}


def test_shares_memory(setup):
    net, weights, alpha, rng, dtype = setup
    x = make_inputs(rng, WIDTHS[0], dtype)
    base = np.full(200, SENTINEL, dtype=dtype)  # one buffer, disjoint C-contiguous views
    spec, offset = {}, 0

    def take(shape):
        nonlocal offset
        n = int(np.prod(shape))
        view = base[offset:offset + n].reshape(shape)
        offset += n
        return view

    spec["weights"] = [take(w.shape) for w in weights]
    spec["alpha"] = take(alpha.shape)
    spec["x"] = take(x.shape)
    spec["z"] = [take((k,)) for k in WIDTHS]
    spec["u"] = [take((k,)) for k in WIDTHS[1:]]
    _, g = net.value_and_grad(x, out=mlpgrad.Gradients(**spec))
    for a in all_arrays(g):
        assert np.shares_memory(a, base)
    assert not np.any(base[:offset] == SENTINEL)
    assert np.all(base[offset:] == SENTINEL), "wrote outside the out arrays"
    _, fresh = net.value_and_grad(x)
    assert_gradients_close(g, grads_of(fresh), dtype, WIDTHS)


def test_fresh_results_do_not_alias(setup):
    """out=None allocates: results of earlier calls are not overwritten, nor aliased to inputs."""
    net, weights, alpha, rng, dtype = setup
    x1 = make_inputs(rng, WIDTHS[0], dtype)
    x2 = make_inputs(rng, WIDTHS[0], dtype)
    _, g1 = net.value_and_grad(x1)
    saved = grads_of(g1)
    _, g2 = net.value_and_grad(x2)
    assert g1 is not g2
    for a in all_arrays(g1):
        for b in all_arrays(g2) + weights + [alpha, x1, x2]:
            assert not np.shares_memory(a, b)
    assert_gradients_close(g1, saved, dtype, WIDTHS)
    net.forward(x1)
    gb1 = net.backward()
    gb2 = net.backward()
    assert gb1 is not gb2
    assert not any(np.shares_memory(a, b) for a in all_arrays(gb1) for b in all_arrays(gb2))
    X = make_inputs(rng, WIDTHS[0], dtype, batch=2)
    _, gbatch1 = net.value_and_grad_batch(X)
    _, gbatch2 = net.value_and_grad_batch(X)
    assert not any(np.shares_memory(a, b) for a in all_arrays(gbatch1) for b in all_arrays(gbatch2))
    assert not any(np.shares_memory(a, X) for a in all_arrays(gbatch1))


# ----------------------------------------------------------------------------- z/u snapshots
def test_z_u_are_read_only_snapshots(setup):
    net, weights, alpha, rng, dtype = setup
    x1 = make_inputs(rng, WIDTHS[0], dtype)
    x2 = make_inputs(rng, WIDTHS[0], dtype)
    net.forward(x1)
    z1, u1 = net.z, net.u
    assert len(z1) == 4 and len(u1) == 3
    for a in z1 + u1:
        assert isinstance(a, np.ndarray) and a.dtype == dtype
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 1.0
        assert not any(np.shares_memory(a, b) for b in weights + [alpha, x1])
    z1_copy = [a.copy() for a in z1]
    u1_copy = [a.copy() for a in u1]
    x1_copy = x1.copy()
    x1 += dtype(1.0)  # mutating the input after forward must not change the snapshot
    np.testing.assert_array_equal(z1[0], x1_copy)
    np.testing.assert_array_equal(net.z[0], x1_copy)

    net.forward(x2)
    for a, b in zip(z1 + u1, z1_copy + u1_copy):
        np.testing.assert_array_equal(a, b)  # the old snapshot is unchanged
    _, u_ref, z_ref = np_forward(weights, alpha, x2, ACTS)
    tol = tolerance(dtype, WIDTHS)
    for t, (a, r) in enumerate(zip(net.z, z_ref)):
        assert_close(a, r, tol, 1 + np.max(np.abs(r)), f"z[{t}] after second forward")
    for t, (a, r) in enumerate(zip(net.u, u_ref)):
        assert_close(a, r, tol, 1 + np.max(np.abs(r)), f"u[{t}] after second forward")
        assert not a.flags.writeable


def test_backward_uses_the_recorded_forward_not_later_calls(setup):
    """backward() differentiates at the thread's most recent forward()."""
    net, weights, alpha, rng, dtype = setup
    x1 = make_inputs(rng, WIDTHS[0], dtype)
    x2 = make_inputs(rng, WIDTHS[0], dtype)
    net.forward(x1)
    net.forward(x2)
    _, g_ref = oracle(weights, alpha, x2, ACTS, 1.0)
    assert_gradients_close(net.backward(), g_ref, dtype, WIDTHS)


# ----------------------------------------------------------------------------- pickle
@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(setup, protocol):
    net, weights, alpha, rng, dtype = setup
    x = make_inputs(rng, WIDTHS[0], dtype)
    X = make_inputs(rng, WIDTHS[0], dtype, batch=3)
    net2 = pickle.loads(pickle.dumps(net, protocol=protocol))
    assert isinstance(net2, mlpgrad.MLP)
    assert net2.widths == net.widths and net2.depth == net.depth
    assert net2.dtype == net.dtype and net2.activations == net.activations
    # copied weights: equal values, different memory
    assert len(net2.weights) == len(weights)
    for w2, w in zip(net2.weights, weights):
        assert w2 is not w and not np.shares_memory(w2, w)
        assert w2.dtype == w.dtype and w2.shape == w.shape
        np.testing.assert_array_equal(w2, w)
    assert net2.alpha is not alpha and not np.shares_memory(net2.alpha, alpha)
    np.testing.assert_array_equal(net2.alpha, alpha)
    # equal results
    y1, g1 = net.value_and_grad(x, 0.5)
    y2, g2 = net2.value_and_grad(x, 0.5)
    assert_value_close(y2, y1, dtype, WIDTHS)
    assert_gradients_close(g2, grads_of(g1), dtype, WIDTHS)
    yb1, gb1 = net.value_and_grad_batch(X)
    yb2, gb2 = net2.value_and_grad_batch(X)
    assert_close(yb2, yb1, tolerance(dtype, WIDTHS), 1 + np.max(np.abs(yb1)), "batch yhat")
    assert_gradients_close(gb2, grads_of(gb1), dtype, WIDTHS, batch=3)
    # independent afterwards: updating the original does not affect the copy, and vice versa
    weights[0] *= dtype(3.0)
    alpha += dtype(1.0)
    assert net2.value_and_grad(x, 0.5)[0] == y2
    net2.weights[1] *= dtype(-1.0)
    _, g_ref = oracle(weights, alpha, x, ACTS, 0.5)
    assert_gradients_close(net.value_and_grad(x, 0.5)[1], g_ref, dtype, WIDTHS)
    # the copy's own arrays are used zero-copy too
    _, g2_ref = oracle(net2.weights, net2.alpha, x, ACTS, 0.5)
    assert_gradients_close(net2.value_and_grad(x, 0.5)[1], g2_ref, dtype, WIDTHS)
    assert net2.weights[0] is net2.weights[0]


def test_pickle_read_only_and_depth_zero(dtype):
    alpha = np.array([1.0, -2.0], dtype=dtype)
    alpha.setflags(write=False)
    net = mlpgrad.MLP([], alpha, "relu")
    net2 = pickle.loads(pickle.dumps(net))
    assert net2.depth == 0 and net2.widths == (2,) and net2.dtype == dtype
    np.testing.assert_array_equal(net2.alpha, alpha)
    x = np.array([3.0, 0.5], dtype=dtype)
    assert net2.value_and_grad(x)[0] == net.value_and_grad(x)[0] == 2.0
