"""mlpgrad.sklearn: scikit-learn's check_estimator, the same conventions and test error as scikit-learn's
estimators, fitted attributes as views of the network, pickling, partial_fit and errors."""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("scipy")

import mlpgrad  # noqa: E402


import sklearn.datasets  # noqa: E402
import sklearn.neural_network as sk  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from mlpgrad.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

SAMPLE_WEIGHT_EQUIVALENCE = "check_sample_weight_equivalence_on_dense_data"


@pytest.fixture(autouse=True)
def one_blas_thread():
    """scikit-learn's estimators on one BLAS thread: on a shared machine, threads only slow them down."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ----------------------------------------------------------------------------- scikit-learn's own checks
@pytest.mark.parametrize("Estimator", [MLPRegressor, MLPClassifier])
def test_check_estimator(Estimator):
    # As scikit-learn's own suite runs its MLPs: max_iter=100; and mini-batch Adam is not equivalent to
    # repeating samples (the order of the batches changes), so that one check runs with lbfgs, below.
    reason = "mini-batch solvers: weighting is not repeating samples (scikit-learn's own MLPs: the same)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_estimator(Estimator(max_iter=100), expected_failed_checks={SAMPLE_WEIGHT_EQUIVALENCE: reason})


@pytest.mark.parametrize("Estimator", [MLPRegressor, MLPClassifier])
def test_sample_weight_equivalence_with_lbfgs(Estimator):
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_sample_weight_equivalence_on_dense_data(Estimator.__name__, Estimator(solver="lbfgs"))


# ----------------------------------------------------------------------------- the same as scikit-learn
def standardised(X_train, X_test):
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test)


@pytest.mark.parametrize("loader, Ours, Theirs, params", [
    ("load_diabetes", MLPRegressor, sk.MLPRegressor, dict(max_iter=300)),
    ("load_breast_cancer", MLPClassifier, sk.MLPClassifier, dict(max_iter=200)),
    ("load_digits", MLPClassifier, sk.MLPClassifier, dict(max_iter=100)),
    ("load_digits", MLPClassifier, sk.MLPClassifier, dict(solver="sgd", max_iter=100)),
    ("load_iris", MLPClassifier, sk.MLPClassifier, dict(solver="lbfgs", max_iter=200)),
])
def test_same_test_error_as_scikit_learn(loader, Ours, Theirs, params):
    X, y = getattr(sklearn.datasets, loader)(return_X_y=True)
    if Ours is MLPRegressor:
        y = (y - y.mean()) / y.std()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    X_train, X_test = standardised(X_train, X_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = Ours(random_state=0, **params).fit(X_train, y_train)
        theirs = Theirs(random_state=0, **params).fit(X_train, y_train)
    error, their_error = 1 - ours.score(X_test, y_test), 1 - theirs.score(X_test, y_test)
    assert error == pytest.approx(their_error, abs=0.03)


def full_batch_gradient_descent(Estimator, X, y, steps, **params):
    """Plain gradient descent on the full batch (no momentum, no shuffling): the same steps in both
    libraries, from the same initial weights, so that every convention (loss, L2 term, output) must agree."""
    params = dict(solver="sgd", momentum=0.0, shuffle=False, batch_size=len(X), learning_rate_init=0.05,
                  max_iter=steps, alpha=0.01, random_state=0, tol=0.0, n_iter_no_change=10**6, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Estimator(**params).fit(X, y)


@pytest.mark.parametrize("case", ["regression", "two outputs", "binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_same_conventions_as_scikit_learn(case, activation):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = {"regression": X @ [1.0, -2.0, 0.5, 0.0] + 3,
         "two outputs": np.column_stack([X[:, 0] + 1, X[:, 1] * X[:, 2]]),
         "binary": np.where(X[:, 0] > 0, "yes", "no"),
         "multiclass": np.digitize(X[:, 0], [-0.5, 0.5]),
         "multilabel": (X[:, :3] > 0).astype(int)}[case]
    ours_type, theirs_type = ((MLPRegressor, sk.MLPRegressor) if case in ("regression", "two outputs")
                              else (MLPClassifier, sk.MLPClassifier))
    ours = full_batch_gradient_descent(ours_type, X, y, 5, hidden_layer_sizes=(8, 5), activation=activation)
    theirs = full_batch_gradient_descent(theirs_type, X, y, 5, hidden_layer_sizes=(8, 5), activation=activation)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_outputs_ == theirs.n_outputs_
    assert ours.n_layers_ == theirs.n_layers_ == 4
    if ours_type is MLPRegressor:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    if ours_type is MLPClassifier:
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-10)
        np.testing.assert_allclose(ours.predict_log_proba(X), theirs.predict_log_proba(X), rtol=1e-10)


@pytest.mark.parametrize("schedule", [dict(learning_rate="invscaling", power_t=0.25),
                                      dict(learning_rate="adaptive", tol=10.0, n_iter_no_change=2)])
def test_learning_rate_schedules_follow_scikit_learn(schedule):
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    fits = []
    for Estimator in (MLPClassifier, sk.MLPClassifier):
        params = dict(dict(solver="sgd", momentum=0.0, shuffle=False, batch_size=len(X), max_iter=12,
                           learning_rate_init=0.1, random_state=0, hidden_layer_sizes=(6,)), **schedule)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(Estimator(**params).fit(X, y))
    ours, theirs = fits
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    if schedule["learning_rate"] == "adaptive":
        assert ours._optimizer.lr == theirs._optimizer.learning_rate < 0.1  # divided by 5 at least once


def test_warm_start_continues_from_the_fitted_weights():
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    fits = []
    for Estimator in (MLPClassifier, sk.MLPClassifier):
        est = Estimator(solver="sgd", momentum=0.0, shuffle=False, batch_size=len(X), max_iter=3, warm_start=True,
                        random_state=0, hidden_layer_sizes=(6,))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(est.fit(X, y).fit(X, y))
    np.testing.assert_allclose(fits[0].loss_curve_, fits[1].loss_curve_, rtol=1e-12)
    assert len(fits[0].loss_curve_) == 6


def test_lbfgs_follows_scikit_learn():
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(solver="lbfgs", max_iter=15, random_state=0, hidden_layer_sizes=(10,)).fit(X, y)
        theirs = sk.MLPClassifier(solver="lbfgs", max_iter=15, random_state=0, hidden_layer_sizes=(10,)).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 15
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)


# ----------------------------------------------------------------------------- fitted attributes
def test_fitted_attributes_are_views_of_the_network():
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(20, 10), max_iter=3, random_state=0).fit(X / 16, y)
    net = est.net_
    assert [c.shape for c in est.coefs_] == [(64, 20), (20, 10), (10, 10)]
    assert [b.shape for b in est.intercepts_] == [(20,), (10,), (10,)]
    for coef, w in zip(est.coefs_[:-1], net.weights):
        assert np.shares_memory(coef, w) and np.array_equal(coef, w.T)
    assert np.shares_memory(est.coefs_[-1], net.alpha) and np.shares_memory(est.intercepts_[-1], net.output_bias)
    assert all(np.shares_memory(i, b) for i, b in zip(est.intercepts_, net.biases))
    assert est.n_iter_ == len(est.loss_curve_) == 3 and est.t_ == 3 * len(X) and est.n_features_in_ == 64
    assert est.best_loss_ == min(est.loss_curve_) and est.validation_scores_ is None
    assert est.out_activation_ == "softmax" and est.n_outputs_ == 10 and net.output_shape == (10,)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lbfgs_leaves_the_fitted_attributes_views_of_the_network(dtype):
    # float64 fits step one vector θ that the parameters are views of; float32 ones copy θ in and out.
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=20, random_state=0, dtype=dtype,
                            warm_start=True).fit(X, y)
        first = [c.copy() for c in est.coefs_ + est.intercepts_]
        est.fit(X, y)  # warm start: goes on from the fitted parameters
    net = est.net_
    assert net.dtype == np.dtype(dtype)
    for coef, w in zip(est.coefs_[:-1], net.weights):
        assert np.shares_memory(coef, w) and np.array_equal(coef, w.T)
    assert np.shares_memory(est.coefs_[-1], net.alpha) and np.shares_memory(est.intercepts_[-1], net.output_bias)
    assert all(np.shares_memory(i, b) for i, b in zip(est.intercepts_, net.biases))
    assert not all(np.array_equal(a, b) for a, b in zip(first, est.coefs_ + est.intercepts_))
    np.testing.assert_array_equal(est.predict_proba(X), sk_softmax(X, est))


def test_partial_fit_after_a_warm_lbfgs_fit_steps_the_network():
    # adam, then a warm L-BFGS fit (which moves the parameters into one vector), then adam again: the
    # optimizer must step the network's arrays of now, not those it was made for.
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(solver="adam", hidden_layer_sizes=(8,), max_iter=5, random_state=0, warm_start=True)
        est.partial_fit(X, y, classes=np.unique(y))
        est.set_params(solver="lbfgs").fit(X, y)
        est.set_params(solver="adam")
        before = est.net_.weights[0].copy()
        est.partial_fit(X, y)
    assert not np.array_equal(est.net_.weights[0], before) and np.shares_memory(est.coefs_[0], est.net_.weights[0])


def sk_softmax(X, est):
    """The classifier's probabilities recomputed in NumPy from coefs_ and intercepts_."""
    z = X.astype(est.net_.dtype)
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        z = np.maximum(z @ W + b, 0)
    logits = z @ est.coefs_[-1] + est.intercepts_[-1]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_binary_and_single_target_use_a_scalar_output():
    X, y = sklearn.datasets.load_breast_cancer(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(max_iter=2, random_state=0).fit(X, y)
    assert est.net_.output_shape == () and est.coefs_[-1].shape == (100, 1) and est.intercepts_[-1].shape == (1,)
    assert np.shares_memory(est.coefs_[-1], est.net_.alpha)
    assert est.predict_proba(X).shape == (len(X), 2)


def test_early_stopping_records_validation_scores_and_restores_the_best():
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    est = MLPClassifier(early_stopping=True, max_iter=200, random_state=0, n_iter_no_change=3).fit(X / 16, y)
    assert est.best_loss_ is None and len(est.validation_scores_) == est.n_iter_ < 200
    assert est.best_validation_score_ == max(est.validation_scores_)


def test_float32_and_n_threads():
    X, y = sklearn.datasets.load_diabetes(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(dtype="float32", n_threads=1, max_iter=5, random_state=0).fit(X, y)
    assert est.net_.dtype == np.float32 and est.coefs_[0].dtype == np.float32
    assert est.predict(X).dtype == np.float32


def test_pickle_round_trip_keeps_predictions_and_partial_fit_state():
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    est = MLPClassifier(hidden_layer_sizes=(10,), random_state=0)
    est.partial_fit(X, y, classes=np.unique(y))
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    assert np.shares_memory(copy.coefs_[0], copy.net_.weights[0])
    est.partial_fit(X, y)
    copy.partial_fit(X, y)
    for a, b in zip(est.coefs_ + est.intercepts_, copy.coefs_ + copy.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_partial_fit_is_one_epoch():
    X, y = sklearn.datasets.load_diabetes(return_X_y=True)
    est = MLPRegressor(random_state=0)
    for _ in range(3):
        est.partial_fit(X, y)
    assert len(est.loss_curve_) == 3 and est.t_ == 3 * len(X)


# ----------------------------------------------------------------------------- errors
def test_label_outside_the_classes():
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    est = MLPClassifier(max_iter=5).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"`y` has classes not in `self.classes_`"):
        est.partial_fit(X, np.where(y == 2, 7, y))
    with pytest.raises(ValueError, match=r"classes must be passed on the first call to partial_fit"):
        MLPClassifier().partial_fit(X, y)


@pytest.mark.parametrize("Estimator", [MLPRegressor, MLPClassifier])
def test_bad_data(Estimator):
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples"):
        Estimator().fit(X, y[:-1])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN"):
        Estimator().fit(bad, y)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(150,\)"):
        Estimator().fit(X, y, sample_weight=np.ones(3))


def test_bad_targets():
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=r"Input y contains NaN"):
        MLPRegressor().fit(X, np.where(y == 2, np.nan, y))
    with pytest.raises(ValueError, match=r"Unknown label type"):
        MLPClassifier().fit(X, X[:, 0] + 0.5)


@pytest.mark.parametrize("params, match", [
    (dict(solver="newton"), r"solver must be 'lbfgs', 'sgd' or 'adam', got 'newton'"),
    (dict(alpha=-1.0), r"alpha must be a number >= 0, got -1.0"),
    (dict(hidden_layer_sizes=(10, 0)), r"hidden_layer_sizes must be > 0, got \[10, 0\]"),
    (dict(activation="softplus"), r"activation must be one of identity, logistic, tanh, relu"),
    (dict(batch_size=0), r"batch_size must be 'auto' or an integer >= 1, got 0"),
    (dict(dtype="float16"), r"dtype must be None, float32 or float64"),
    (dict(dtype="no such type"), r"dtype must be None, float32 or float64, got 'no such type'"),
    (dict(n_threads=0), r"n_threads must be None or an integer >= 1"),
    (dict(validation_fraction=1.0), r"validation_fraction must be a number in \(0, 1\)"),
])
def test_bad_parameters(params, match):
    X, y = sklearn.datasets.load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(X, y)


def test_unsupported_loss_and_solver_without_partial_fit():
    X, y = sklearn.datasets.load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match=r"no loss='poisson'"):
        MLPRegressor(loss="poisson").fit(X, y)
    with pytest.raises(AttributeError, match=r"has no attribute 'partial_fit'") as info:
        MLPRegressor(solver="lbfgs").partial_fit(X, y)
    assert "partial_fit is only available for stochastic optimizers" in str(info.value.__cause__)


def test_n_threads_sets_mlpgrad_threads_for_the_call_only(monkeypatch):
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    before = mlpgrad.get_num_threads()
    settings, real = [], mlpgrad._core.set_num_threads
    monkeypatch.setattr(mlpgrad._core, "set_num_threads", lambda n: (settings.append(n), real(n)))
    fits = []
    for n_threads in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(MLPClassifier(n_threads=n_threads, max_iter=3, random_state=0).fit(X / 16, y))
        assert mlpgrad.get_num_threads() == before
    for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        np.testing.assert_array_equal(a, b)  # mlpgrad's results do not depend on the thread count
    assert settings == [1, before, 2, before]  # set for fit, restored after it
    np.testing.assert_array_equal(fits[0].predict_proba(X / 16), fits[1].predict_proba(X / 16))
