"""mlpgrad.fit (python/mlpgrad/train.py): training, the history, batching, early stopping, callbacks, errors."""

import numpy as np
import pytest

import mlpgrad
from mlpgrad import losses, optim
from mlpgrad.train import EarlyStopping


def make_net(widths=(1, 16, 16), dtype=np.float64, activation="tanh", seed=0):
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((k_out, k_in)) / np.sqrt(k_in)).astype(dtype)
               for k_in, k_out in zip(widths[:-1], widths[1:])]
    return mlpgrad.MLP(weights, (rng.standard_normal(widths[-1]) / np.sqrt(widths[-1])).astype(dtype),
                       activation=activation)


def sine(n=64, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 1))
    return X, np.sin(X[:, 0])


def param_copies(net):
    return [w.copy() for w in net.weights] + [net.alpha.copy()]


def same_params(net, copies):
    return all(np.array_equal(a, b) for a, b in zip(param_copies(net), copies))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_decreases_on_a_small_regression(dtype):
    net = make_net(dtype=dtype)
    X, y = sine()
    history = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.Adam(net, lr=0.02), epochs=60, batch_size=16,
                          seed=0, progress=False)
    assert history.train_loss[-1] < 0.2 * history.train_loss[0]
    assert losses.mse(net.forward_batch(X.astype(dtype)), y)[0] < 0.02


def test_history_contents():
    net = make_net()
    X, y = sine()
    Xv, yv = sine(20, seed=2)
    history = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.Adam(net, lr=0.01), epochs=5, batch_size=10,
                          validation_data=(Xv, yv), seed=0, progress=False)
    assert history.epochs == 5 and len(history.validation_loss) == 5
    assert history.validation_loss[-1] == pytest.approx(losses.mse(net.forward_batch(Xv), yv)[0], rel=1e-12)
    assert history.best_epoch == int(np.argmin(history.validation_loss))
    assert not history.stopped_early
    assert history.seconds_in_mlpgrad > 0 and history.seconds_other > 0


def manual_run(net, opt, X, y, batch_sizes):
    """The loop fit documents, written out: one forward, the loss, one backward, one step per batch."""
    grads = net.new_gradients(batch=1, x=False)
    start, batch_losses = 0, []
    for b in batch_sizes:
        loss, dy = losses.mse(net.forward_batch(X[start:start + b]), y[start:start + b])
        net.backward_batch(dy, out=grads)
        opt.step(grads)
        batch_losses.append((loss, b))
        start += b
    return sum(loss * b for loss, b in batch_losses) / sum(batch_sizes)


def test_short_last_batch_is_a_step_of_its_own():
    X, y = sine(10)
    net, twin = make_net(), make_net()
    history = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.SGD(net, lr=0.1), epochs=1, batch_size=4,
                          shuffle=False, progress=False)
    expected = manual_run(twin, optim.SGD(twin, lr=0.1), X, y, [4, 4, 2])
    assert same_params(net, param_copies(twin))
    assert history.train_loss == [pytest.approx(expected, rel=1e-14)]


def test_batch_larger_than_the_data_is_one_batch():
    X, y = sine(10)
    net, twin = make_net(), make_net()
    mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.SGD(net, lr=0.1), epochs=1, batch_size=100, shuffle=False,
                progress=False)
    manual_run(twin, optim.SGD(twin, lr=0.1), X, y, [10])
    assert same_params(net, param_copies(twin))


def test_same_seed_same_run_bit_for_bit():
    X, y = sine()
    runs = []
    for seed in (7, 7, 8):
        net = make_net()
        h = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.Adam(net, lr=0.01), epochs=3, batch_size=8,
                        seed=seed, progress=False)
        runs.append((param_copies(net), h.train_loss))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][0], runs[1][0])) and runs[0][1] == runs[1][1]
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0][0], runs[2][0]))


def test_float32_network_takes_float64_data():
    net = make_net(dtype=np.float32)
    X, y = sine()
    h = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.Adam(net, lr=0.01), epochs=2, batch_size=16,
                    progress=False)
    assert np.isfinite(h.train_loss).all() and net.weights[0].dtype == np.float32


def test_logistic_classification_learns():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
    net = make_net((2, 16, 16), activation="relu")
    mlpgrad.fit(net, X, y, loss="logistic", optimizer=optim.Adam(net, lr=0.02), epochs=80, batch_size=32, seed=0,
                progress=False)
    accuracy = np.mean((net.forward_batch(X) > 0) == (y > 0.5))
    assert accuracy > 0.9


def test_early_stopping_stops_and_restores_the_best_parameters():
    X, y = sine()
    net = make_net()
    best = {}

    def spoil_after_first_epoch(epoch, history):
        if epoch == 0:
            best["params"] = param_copies(net)
            net.weights[0][...] *= 50  # every later epoch is worse than the first
    h = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.SGD(net, lr=1e-6), epochs=50, batch_size=64,
                    callbacks=[spoil_after_first_epoch], early_stopping=EarlyStopping(patience=3), progress=False)
    assert h.stopped_early and h.epochs == 4 and h.best_epoch == 0
    assert same_params(net, best["params"])


def test_early_stopping_min_delta_and_without_restoring():
    X, y = sine()
    net = make_net()
    # lr = 0 and the same order every epoch: the loss never changes, so no epoch improves on the first
    h = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.SGD(net, lr=0.0), epochs=20, batch_size=64,
                    shuffle=False, early_stopping=2, progress=False)
    assert h.stopped_early and h.epochs == 3
    net = make_net()
    h = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.Adam(net, lr=1e-3), epochs=20, batch_size=64,
                    early_stopping=EarlyStopping(patience=2, min_delta=1e9, restore_best=False), progress=False)
    assert h.stopped_early and h.epochs == 3 and h.best_epoch == 2


def test_callbacks_see_every_epoch_and_can_stop():
    X, y = sine()
    seen = []

    def record(epoch, history):
        seen.append((epoch, history.epochs))

    net = make_net()
    h = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.SGD(net, lr=0.01), epochs=4, batch_size=16,
                    callbacks=[record], progress=False)
    assert seen == [(0, 1), (1, 2), (2, 3), (3, 4)] and not h.stopped_early

    def stop_at(n, how):
        def callback(epoch, history):
            if epoch == n:
                if how == "raise":
                    raise StopIteration
                return False
            return None  # None (and anything but False) continues
        return callback

    for how in ("return", "raise"):
        net = make_net()
        h = mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.SGD(net, lr=0.01), epochs=10, batch_size=16,
                        callbacks=[stop_at(2, how)], progress=False)
        assert h.epochs == 3 and h.stopped_early


def test_progress_bar_when_forced(capsys):
    X, y = sine()
    net = make_net()
    mlpgrad.fit(net, X, y, loss="mse", optimizer=optim.SGD(net, lr=0.01), epochs=2, batch_size=16, progress=True)
    out = capsys.readouterr().out
    assert "training" in out and "8/8" in out and "loss" in out


def test_callable_loss():
    X, y = sine()
    net = make_net()
    calls = []

    def half_mse(yhat, target, *, sample_weight=None):
        calls.append(len(yhat))
        loss, dy = losses.mse(yhat, target, sample_weight=sample_weight)
        return loss / 2, dy / 2
    h = mlpgrad.fit(net, X, y, loss=half_mse, optimizer=optim.SGD(net, lr=0.01), epochs=1, batch_size=30,
                    shuffle=False, progress=False)
    assert calls[1:] == [30, 30, 4] and h.epochs == 1  # calls[0]: the check of y before training


@pytest.mark.parametrize("change, error, match", [
    (dict(X=np.ones((64, 2))), ValueError, r"X has shape \(64, 2\); expected \(n, 1\)"),
    (dict(X=np.ones(64)), ValueError, r"X has shape \(64,\)"),
    (dict(X=np.full((64, 1), "a")), TypeError, r"X has dtype <U1; expected real numbers"),
    (dict(X=np.full((64, 1), np.nan)), ValueError, r"X holds NaN or infinite values"),
    (dict(y=np.ones(63)), ValueError, r"y has shape \(63,\) but X holds 64 examples"),
    (dict(y=np.ones((64, 2))), ValueError, r"y does not fit the loss.*shape \(64, 2\)"),
    (dict(y=np.full(64, np.nan)), ValueError, r"y does not fit the loss.*NaN"),
    (dict(y=np.full(64, 2.0), loss="logistic"), ValueError, r"y does not fit.*outside \[0, 1\]"),
    (dict(loss="softmax_cross_entropy"), ValueError, r"softmax_cross_entropy takes logits of shape \(B, m\)"),
    (dict(loss="hinge"), ValueError, r"loss 'hinge' is not a loss mlpgrad knows; expected one of 'mse'"),
    (dict(loss=3), TypeError, r"loss must be a loss name or a callable"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    (dict(batch_size=2.0), TypeError, r"batch_size must be an integer, got float"),
    (dict(epochs=0), ValueError, r"epochs must be >= 1"),
    (dict(early_stopping="yes"), TypeError, r"early_stopping must be None, a patience"),
    (dict(early_stopping=0), ValueError, r"patience must be an integer >= 1"),
    (dict(callbacks=[1]), TypeError, r"callbacks must be callables"),
    (dict(progress="on"), TypeError, r"progress must be None, True or False"),
    (dict(validation_data=np.ones((3, 1))), TypeError, r"validation_data must be a pair"),
    (dict(validation_data=(np.ones((3, 1)), np.ones(4))), ValueError, r"validation_data\[1\] has shape \(4,\)"),
    (dict(validation_data=(np.full((3, 1), np.inf), np.ones(3))), ValueError, r"validation_data\[0\] holds NaN"),
    (dict(net="net"), TypeError, r"net must be a mlpgrad.MLP, got str"),
    (dict(optimizer="adam"), TypeError, r"optimizer must be a mlpgrad.optim optimiser"),
    (dict(optimizer="other"), ValueError, r"optimizer was made for another network"),
])
def test_bad_arguments_raise_before_training(change, error, match):
    X, y = sine()
    net = make_net()
    before = param_copies(net)
    args = dict(net=net, X=X, y=y, loss="mse", optimizer=optim.SGD(net, lr=0.1), epochs=2, batch_size=8,
                progress=False)
    if change.get("optimizer") == "other":
        change = dict(optimizer=optim.SGD(make_net(), lr=0.1))
    args.update(change)
    with pytest.raises(error, match=match):
        mlpgrad.fit(args.pop("net"), args.pop("X"), args.pop("y"), **args)
    assert same_params(net, before)


def test_float32_overflow_of_the_data_is_an_error():
    net = make_net(dtype=np.float32)
    X, y = sine()
    with pytest.raises(ValueError, match=r"X holds NaN or infinite values \(in float32"):
        mlpgrad.fit(net, X * 1e300, y, loss="mse", optimizer=optim.SGD(net, lr=0.1), epochs=1, batch_size=8)


@pytest.mark.parametrize("labels", ["integers", "one-hot"])
def test_softmax_classification_with_vector_outputs_and_biases(labels):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 2))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.7, 0.7])  # three bands
    target = y if labels == "integers" else np.eye(3)[y]
    net = mlpgrad.MLP.random((2, 16), "tanh", outputs=3, seed=0)
    before = [b.copy() for b in net.biases] + [net.output_bias.copy()]
    h = mlpgrad.fit(net, X, target, loss="softmax_cross_entropy", optimizer=optim.Adam(net, lr=0.03), epochs=40,
                    batch_size=32, seed=0, progress=False)
    assert h.train_loss[-1] < 0.3 * h.train_loss[0]
    assert np.mean(np.argmax(net.forward_batch(X), axis=1) == y) > 0.9
    assert not all(np.array_equal(a, b) for a, b in zip(before, list(net.biases) + [net.output_bias]))
    with pytest.raises(ValueError, match=r"y does not fit the loss.*labels from 0 to 3"):
        mlpgrad.fit(net, X, np.where(y == 2, 3, y), loss="softmax_cross_entropy", optimizer=optim.Adam(net),
                    epochs=1, batch_size=8, progress=False)
