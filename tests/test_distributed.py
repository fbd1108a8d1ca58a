"""mlpgrad.distributed on a LocalCluster of two worker processes: gradients, training, errors.

The cluster is started once for the module and closed by the fixture's context managers, whatever the
tests do. Everything is skipped when Dask's distributed scheduler is not installed.
"""
from __future__ import annotations

import logging
import os
import pickle
import re

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")
da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import mlpgrad  # noqa: E402
from mlpgrad import losses, optim  # noqa: E402
from mlpgrad import distributed as md  # noqa: E402
from mlpgrad.optim import _parameters  # noqa: E402

CHUNKS = (30, 7, 1, 40, 22)  # uneven partitions, one of a single row: 100 rows


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster:
        c = distributed.Client(cluster)  # not `with Client(...)`: that would pin it as the current client
        try:
            c.register_plugin(md.NumThreads(1))  # 2 processes x 1 thread on this 2-core machine
            yield c
        finally:
            c.close()


def network(dtype=np.float64, inputs=3, seed=0, activation="tanh"):
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((8, inputs)) / np.sqrt(inputs)).astype(dtype),
               (rng.standard_normal((5, 8)) / np.sqrt(8)).astype(dtype)]
    return mlpgrad.MLP(weights, rng.standard_normal(5).astype(dtype), activation)


def data(loss_name, rows=100, inputs=3, seed=1, weighted=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, inputs))
    y = rng.standard_normal(rows) if loss_name == "mse" else rng.uniform(0, 1, rows)
    w = rng.uniform(0, 3, rows) if weighted else None
    return X, y, w


def split(a, chunks=CHUNKS):
    return None if a is None else da.from_array(a, chunks=(chunks,) + a.shape[1:])


def local(net, X, y, loss_name="mse", w=None):
    """The single-process gradient of the mean loss over all rows: one batch pass."""
    mean, dy = getattr(losses, loss_name)(net.forward_batch(X), y, sample_weight=w)
    return mean, net.backward_batch(dy, out=net.new_gradients(batch=1, x=False))


def arrays(grads, net):
    return [g for _, _, g in _parameters(net, grads)]


def assert_gradients_equal(got, expected, net, rtol):
    assert got.x is None
    for g, e in zip(arrays(got, net), arrays(expected, net)):
        assert g.dtype == e.dtype == net.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * np.abs(e).max())


RTOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss_name", ["mse", "logistic"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_equals_the_local_gradient(client, dtype, loss_name, weighted):
    net = network(dtype)
    X, y, w = data(loss_name, weighted=weighted)
    X = X.astype(dtype)
    mean, grads = md.gradient(net, split(X), split(y), loss=loss_name, sample_weight=split(w), client=client)
    expected_mean, expected = local(net, X, y, loss_name, w)
    assert mean == pytest.approx(expected_mean, rel=RTOL[dtype])
    assert_gradients_equal(grads, expected, net, RTOL[dtype])


def network_with_biases(dtype=np.float64, outputs=None, seed=0, inputs=3):
    """Biases and an output bias (random, not MLP.random's zeros); m outputs when ``outputs`` is given."""
    net = mlpgrad.MLP.random([inputs, 8, 5], activation="tanh", outputs=outputs, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases + [net.output_bias]:
        b[...] = rng.standard_normal(b.shape)
    return net


def vector_targets(loss_name, kind, rows=100, outputs=3, seed=3):
    rng = np.random.default_rng(seed)
    if kind == "labels":
        return rng.integers(0, outputs, rows)
    if kind == "probabilities":
        p = rng.uniform(0, 1, (rows, outputs))
        return p / p.sum(axis=1, keepdims=True)
    return rng.standard_normal((rows, outputs)) if loss_name == "mse" else rng.uniform(0, 1, (rows, outputs))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss_name, kind", [("mse", "values"), ("logistic", "values"), ("mse", "scalar"),
                                             ("softmax_cross_entropy", "labels"),
                                             ("softmax_cross_entropy", "probabilities")])
def test_gradient_with_biases_and_vector_outputs_equals_the_local_gradient(client, dtype, loss_name, kind):
    net = network_with_biases(dtype, outputs=None if kind == "scalar" else 3)
    X, y, w = data(loss_name, weighted=True)
    X = X.astype(dtype)
    if kind != "scalar":
        y = vector_targets(loss_name, kind)
    mean, grads = md.gradient(net, split(X), split(y), loss=loss_name, sample_weight=split(w), client=client)
    expected_mean, expected = local(net, X, y, loss_name, w)
    assert grads.biases is not None and grads.output_bias is not None
    assert mean == pytest.approx(expected_mean, rel=RTOL[dtype])
    assert_gradients_equal(grads, expected, net, RTOL[dtype])


def test_gradient_is_the_derivative_of_the_mean_loss_over_all_rows(client):
    net = network()
    X, y, w = data("mse", weighted=True)
    _, grads = md.gradient(net, split(X), split(y), sample_weight=split(w), client=client)
    step = 1e-6
    for t, W in enumerate(net.weights):
        for index in [(0, 0), (W.shape[0] - 1, W.shape[1] - 1)]:
            saved = W[index]
            W[index] = saved + step
            up = losses.mse(net.forward_batch(X), y, sample_weight=w)[0]
            W[index] = saved - step
            down = losses.mse(net.forward_batch(X), y, sample_weight=w)[0]
            W[index] = saved
            assert grads.weights[t][index] == pytest.approx((up - down) / (2 * step), rel=1e-6, abs=1e-9)


def test_gradient_uses_the_default_client_and_a_custom_loss(client):
    net = network()
    X, y, _ = data("mse")

    def half_mse(yhat, target, *, sample_weight=None):
        mean, dy = losses.mse(yhat, target, sample_weight=sample_weight)
        return mean / 2, dy / 2

    mean, grads = md.gradient(net, split(X), split(y), loss=half_mse)
    expected_mean, expected = local(net, X, y)
    assert mean == pytest.approx(expected_mean / 2, rel=1e-12)
    for g, e in zip(arrays(grads, net), arrays(expected, net)):
        np.testing.assert_allclose(g, e / 2, rtol=1e-12, atol=1e-14)


def test_partitions_without_weight_are_skipped_and_split_columns_are_joined(client):
    net = network()
    X, y, w = data("mse", weighted=True)
    w[30:37] = 0  # the whole second partition
    Xd = da.from_array(X, chunks=(CHUNKS, (2, 1)))
    mean, grads = md.gradient(net, Xd, split(y), sample_weight=split(w), client=client)
    expected_mean, expected = local(net, X, y, "mse", w)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert_gradients_equal(grads, expected, net, 1e-12)


def test_partitions_of_unknown_size(client):
    net = network()
    X, y, _ = data("mse")
    keep = X[:, 0] > -0.5
    Xd, yd = split(X), split(y)
    mask = da.from_array(keep, chunks=CHUNKS)
    Xu, yu = Xd[mask], yd[mask]
    assert np.isnan(Xu.chunks[0][0])
    mean, grads = md.gradient(net, Xu, yu, client=client)
    expected_mean, expected = local(net, X[keep], y[keep])
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert_gradients_equal(grads, expected, net, 1e-12)


def test_dask_dataframe_columns(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    net = network()
    X, y, w = data("mse", weighted=True)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "target": y, "weight": w})
    df = dd.from_pandas(frame, npartitions=4)
    mean, grads = md.gradient(net, df[["a", "b", "c"]], df["target"], sample_weight=df["weight"], client=client)
    expected_mean, expected = local(net, X, y, "mse", w)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert_gradients_equal(grads, expected, net, 1e-12)


def test_a_worker_lost_mid_call_is_retried_by_dask(client, tmp_path):
    net = network()
    X, y, _ = data("mse")
    marker = str(tmp_path / "a-worker-died")

    def die_once(block):
        import os

        try:  # O_EXCL: of two workers racing here only one creates the marker, so only one dies
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return block
        os._exit(1)  # the first partition to get here takes its worker process down

    try:
        mean, grads = md.gradient(net, split(X), split(y).map_blocks(die_once, meta=np.empty(0, y.dtype)),
                                  client=client)
    finally:
        client.wait_for_workers(2, timeout=60)  # the nanny restarts it, for the tests that follow
    assert os.path.exists(marker)
    expected_mean, expected = local(net, X, y)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert_gradients_equal(grads, expected, net, 1e-12)
    assert set(client.run(mlpgrad.get_num_threads).values()) == {1}  # NumThreads reaches the new worker too


def test_the_shipped_network_loads_from_misaligned_buffers():
    """Dask hands out-of-band pickle buffers out of its message frames at any offset; MLP refuses those."""
    from mlpgrad.distributed._worker import ShippedNetwork

    net = network_with_biases(outputs=2)
    buffers = []
    data = pickle.dumps(ShippedNetwork(net), protocol=5, buffer_callback=buffers.append)
    misaligned = []
    for b in buffers:
        raw = bytearray(b.raw().nbytes + 1)
        raw[1:] = b.raw()
        misaligned.append(memoryview(raw)[1:])
    loaded = pickle.loads(data, buffers=misaligned).net
    assert loaded.activations == net.activations
    for (name, got, _), (_, expected, _) in zip(_parameters(loaded), _parameters(net)):
        assert got.flags.aligned and got.flags.writeable and not np.shares_memory(got, expected)
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_num_threads_sets_mlpgrads_threads_on_every_worker(client):
    assert set(client.run(mlpgrad.get_num_threads).values()) == {1}  # the fixture's plugin
    try:
        client.register_plugin(md.NumThreads(2))
        assert set(client.run(mlpgrad.get_num_threads).values()) == {2}
    finally:
        client.register_plugin(md.NumThreads(1))
    assert set(client.run(mlpgrad.get_num_threads).values()) == {1}
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        md.NumThreads(0)
    with pytest.raises(TypeError, match="n must be an integer, got str"):
        md.NumThreads("2")


# ----------------------------------------------------------------------------- errors


def test_misaligned_partitions_are_refused(client):
    net = network()
    X, y, w = data("mse", weighted=True)
    with pytest.raises(ValueError, match=r"X and y are partitioned differently \(X's row chunks \(30, 7, 1, 40, 22\)"):
        md.gradient(net, split(X), split(y, (31, 6, 1, 40, 22)), client=client)
    with pytest.raises(ValueError, match="X has 5 row partitions but sample_weight has 2"):
        md.gradient(net, split(X), split(y), sample_weight=split(w, (50, 50)), client=client)
    with pytest.raises(ValueError, match="X has 100 rows but y has 99"):
        md.gradient(net, split(X), split(y[:99], (30, 7, 1, 40, 21)), client=client)


def test_bad_arguments_are_refused_on_the_driver(client):
    net = network()
    X, y, _ = data("mse")
    with pytest.raises(TypeError, match=r"X must be a dask.array.Array .* got numpy.ndarray"):
        md.gradient(net, X, split(y), client=client)
    with pytest.raises(ValueError, match=r"X has shape \(100, 2\) but the network expects \(B, 3\)"):
        md.gradient(net, split(X[:, :2]), split(y), client=client)
    with pytest.raises(ValueError, match="loss 'hinge' is not a loss mlpgrad knows"):
        md.gradient(net, split(X), split(y), loss="hinge", client=client)
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client, got str"):
        md.gradient(net, split(X), split(y), client="tcp://localhost:8786")
    with pytest.raises(ValueError, match="sample_weight is all zeros"):
        md.gradient(net, split(X), split(y), sample_weight=split(np.zeros(100)), client=client)


def lying_partitions(X, bad, columns):
    """X split like CHUNKS, partition ``bad`` with ``columns`` columns although its metadata says X's."""
    blocks, start = [], 0
    for p, rows in enumerate(CHUNKS):
        block = X[start:start + rows] if p != bad else np.zeros((rows, columns))
        blocks.append(da.from_delayed(dask.delayed(np.array)(block), shape=(rows, X.shape[1]), dtype=X.dtype))
        start += rows
    return da.concatenate(blocks)


def test_a_malformed_partition_raises_the_local_error_naming_it(client):
    net = network()
    X, y, _ = data("mse")
    with pytest.raises(ValueError) as local_error:
        net.forward_batch(np.zeros((40, 4)))
    expected = "^partition 3 \\(rows 38 to 77\\): " + re.escape(str(local_error.value)) + "$"
    with pytest.raises(ValueError, match=expected):
        md.gradient(net, lying_partitions(X, bad=3, columns=4), split(y), client=client)
    y[50] = np.nan
    with pytest.raises(ValueError, match=r"^partition 3 \(rows 38 to 77\): y holds NaN or infinite values"):
        md.gradient(net, split(X), split(y), client=client)
    labels = np.zeros(100)
    labels[5] = 2.0
    with pytest.raises(ValueError, match=r"^partition 0 \(rows 0 to 29\): y holds values outside \[0, 1\]"):
        md.gradient(net, split(X), split(labels), loss="logistic", client=client)


def test_partitions_of_unknown_size_that_disagree_are_named(client):
    net = network()
    X, y, _ = data("mse")
    keep = X[:, 0] > 0
    keep_y = keep.copy()
    keep_y[50] = not keep[50]  # in partition 3 only
    Xu = split(X)[da.from_array(keep, chunks=CHUNKS)]
    yu = split(y)[da.from_array(keep_y, chunks=CHUNKS)]
    with pytest.raises(ValueError, match=r"^partition 3: the partitions of X and y hold different numbers of rows"):
        md.gradient(net, Xu, yu, client=client)


# ----------------------------------------------------------------------------- training


def sine(rows=100, seed=2):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (rows, 1))
    return X, np.sin(X[:, 0])


def test_fit_lowers_the_loss(client):
    X, y = sine()
    net = network(inputs=1)
    before = losses.mse(net.forward_batch(X), y)[0]
    history = md.fit(net, split(X), split(y), loss="mse", optimizer=optim.Adam(net, lr=0.05), epochs=10,
                     batch_size=50, client=client, seed=0)
    after = losses.mse(net.forward_batch(X), y)[0]
    assert len(history.train_loss) == 10 and history.best_epoch is not None
    assert history.train_loss[-1] < history.train_loss[0] / 10
    assert after < before / 10


@pytest.mark.parametrize("make", [lambda net: optim.SGD(net, lr=0.1, momentum=0.9),
                                  lambda net: optim.Adam(net, lr=0.01)], ids=["sgd", "adam"])
def test_fit_reproduces_the_single_process_run_step_for_step(client, make):
    X, y = sine()
    seed, batch_size = 7, 16
    for epochs in (1, 3):
        net, reference = network(inputs=1), network(inputs=1)
        history = md.fit(net, split(X), split(y), loss="mse", optimizer=make(net), epochs=epochs,
                         batch_size=batch_size, client=client, seed=seed)
        # The documented single-process equivalent: the same batches in the same order.
        opt, grads, rng, expected_losses = make(reference), reference.new_gradients(batch=1, x=False), \
            np.random.default_rng(seed), []
        for _ in range(epochs):
            order, total = rng.permutation(len(X)), 0.0
            for start in range(0, len(X), batch_size):
                batch = order[start:start + batch_size]
                mean, dy = losses.mse(reference.forward_batch(X[batch]), y[batch])
                reference.backward_batch(dy, out=grads)
                opt.step(grads)
                total += mean * len(batch)
            expected_losses.append(total / len(X))
        np.testing.assert_allclose(history.train_loss, expected_losses, rtol=1e-11)
        for got, expected in zip(net.weights + [net.alpha], reference.weights + [reference.alpha]):
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [lambda net: optim.SGD(net, lr=0.1, momentum=0.9),
                                  lambda net: optim.Adam(net, lr=0.01)], ids=["sgd", "adam"])
def test_fit_is_mlpgrad_fit_with_the_same_seed(client, make):
    """mlpgrad.fit(shuffle=True, seed=s) draws its batches as the distributed fit does: the same run."""
    X, y = sine()
    net, reference = network_with_biases(inputs=1), network_with_biases(inputs=1)
    history = md.fit(net, split(X), split(y), loss="mse", optimizer=make(net), epochs=3, batch_size=16,
                     client=client, seed=5)
    expected = mlpgrad.fit(reference, X, y, loss="mse", optimizer=make(reference), epochs=3, batch_size=16,
                           seed=5, progress=False)
    np.testing.assert_allclose(history.train_loss, expected.train_loss, rtol=1e-11)
    for (name, got, _), (_, want, _) in zip(_parameters(net), _parameters(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=name)


def test_fit_with_biases_and_vector_outputs_reproduces_the_single_process_run(client):
    X, _, _ = data("mse")
    y = vector_targets("softmax_cross_entropy", "labels")
    net, reference = network_with_biases(outputs=3), network_with_biases(outputs=3)
    history = md.fit(net, split(X), split(y), loss="softmax_cross_entropy", optimizer=optim.SGD(net, lr=0.5),
                     epochs=2, batch_size=32, client=client, seed=11)
    opt, grads, rng, expected_losses = optim.SGD(reference, lr=0.5), reference.new_gradients(batch=1, x=False), \
        np.random.default_rng(11), []
    for _ in range(2):
        order, total = rng.permutation(len(X)), 0.0
        for start in range(0, len(X), 32):
            batch = order[start:start + 32]
            mean, dy = losses.softmax_cross_entropy(reference.forward_batch(X[batch]), y[batch])
            reference.backward_batch(dy, out=grads)
            opt.step(grads)
            total += mean * len(batch)
        expected_losses.append(total / len(X))
    np.testing.assert_allclose(history.train_loss, expected_losses, rtol=1e-11)
    assert history.train_loss[-1] < history.train_loss[0]
    for (name, got, _), (_, expected, _) in zip(_parameters(net), _parameters(reference)):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=name)


def test_fit_with_lbfgs_minimises_the_full_data_loss(client):
    X, y = sine()
    net = network(inputs=1)
    weights = net.weights
    before = losses.mse(net.forward_batch(X), y)[0]
    history = md.fit(net, split(X), split(y), loss="mse", optimizer="lbfgs", epochs=10, client=client)
    after = losses.mse(net.forward_batch(X), y)[0]
    assert all(a is b for a, b in zip(net.weights, weights))  # updated in place
    assert 1 <= len(history.train_loss) <= 10
    assert history.train_loss[-1] == pytest.approx(after, rel=1e-12)
    assert after < before / 100


def test_fit_shows_progress_when_asked(client, capsys):
    X, y = sine()
    net = network(inputs=1)
    md.fit(net, split(X), split(y), loss="mse", epochs=1, batch_size=50, client=client, progress=True)
    assert "mlpgrad.distributed.fit: loss" in capsys.readouterr().out
    md.fit(net, split(X), split(y), loss="mse", epochs=1, batch_size=50, client=client, progress=False)
    assert capsys.readouterr().out == ""


def test_fit_refuses_bad_arguments(client):
    X, y = sine()
    net, other = network(inputs=1), network(inputs=1)
    Xd, yd = split(X), split(y)
    with pytest.raises(ValueError, match="optimizer 'rmsprop' is not known"):
        md.fit(net, Xd, yd, loss="mse", optimizer="rmsprop", epochs=1, batch_size=8, client=client)
    with pytest.raises(ValueError, match="optimizer was made for another network"):
        md.fit(net, Xd, yd, loss="mse", optimizer=optim.SGD(other, lr=0.1), epochs=1, batch_size=8, client=client)
    with pytest.raises(TypeError, match="optimizer must be"):
        md.fit(net, Xd, yd, loss="mse", optimizer=0.1, epochs=1, batch_size=8, client=client)
    with pytest.raises(ValueError, match="batch_size must be None with optimizer=\"lbfgs\""):
        md.fit(net, Xd, yd, loss="mse", optimizer="lbfgs", epochs=1, batch_size=8, client=client)
    with pytest.raises(TypeError, match="needs batch_size"):
        md.fit(net, Xd, yd, loss="mse", epochs=1, client=client)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        md.fit(net, Xd, yd, loss="mse", epochs=0, batch_size=8, client=client)
    with pytest.raises(TypeError, match="batch_size must be an integer, got float"):
        md.fit(net, Xd, yd, loss="mse", epochs=1, batch_size=8.0, client=client)
    with pytest.raises(TypeError, match="progress must be None, True or False, got str"):
        md.fit(net, Xd, yd, loss="mse", epochs=1, batch_size=8, client=client, progress="yes")


def test_the_readme_example_runs(client):
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Scale out with Dask", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```py\n(.*?)```", section, re.S)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - our own documentation
