"""mlpgrad._lbfgsb: SciPy's L-BFGS-B driven without scipy.optimize.minimize's wrappers gives minimize's results
bit for bit (the same calls of the function, iterates, counts, status and message), on test functions and in
mlpgrad.sklearn's lbfgs fits, for every way the algorithm stops."""

import warnings

import numpy as np
import pytest

pytest.importorskip("scipy")
sklearn = pytest.importorskip("sklearn")

import scipy.optimize  # noqa: E402
import sklearn.datasets  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from mlpgrad import _lbfgsb  # noqa: E402
from mlpgrad.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

lean_driver = pytest.mark.skipif(_lbfgsb._setulb() is None,
                                 reason="the lean driver is not used with this SciPy version")


def recording(fun):
    """fun, and the list of the points it was called at (copies)."""
    calls = []

    def recorded(x):
        calls.append(np.array(x, copy=True))
        return fun(x)
    return recorded, calls


def rosenbrock(x):
    return scipy.optimize.rosen(x), scipy.optimize.rosen_der(x)


def wrong_gradient(x):  # the gradient's sign is wrong: the line search cannot succeed (ABNORMAL)
    return float(x @ x), -2.0 * x


def quadratic(x):  # converges within a few iterations
    return float(((x - 1.0) ** 2).sum()), 2.0 * (x - 1.0)


@lean_driver
@pytest.mark.parametrize("fun, options", [
    (rosenbrock, dict(maxfun=15000, maxiter=15000, gtol=1e-5)),   # converges
    (rosenbrock, dict(maxfun=15000, maxiter=7, gtol=1e-5)),       # stops at maxiter
    (rosenbrock, dict(maxfun=9, maxiter=15000, gtol=1e-5)),       # stops at maxfun
    (wrong_gradient, dict(maxfun=15000, maxiter=15000, gtol=1e-5)),
    (quadratic, dict(maxfun=15000, maxiter=15000, gtol=0.0)),
])
def test_the_same_calls_and_result_as_minimize(fun, options):
    x0 = np.linspace(-1.5, 1.2, 11)
    ours, our_calls = recording(fun)
    theirs, their_calls = recording(fun)
    r = _lbfgsb.minimize_lbfgsb(ours, x0.copy(), **options)
    s = scipy.optimize.minimize(theirs, x0.copy(), method="L-BFGS-B", jac=True, options=options)
    assert len(our_calls) == len(their_calls) == r.nfev == s.nfev
    for a, b in zip(our_calls, their_calls):
        assert np.array_equal(a, b)
    assert np.array_equal(r.x, s.x) and r.fun == s.fun
    assert (r.nit, r.status, r.message) == (s.nit, s.status, s.message)
    assert r.x_is_last_evaluated == np.array_equal(r.x, our_calls[-1])


def test_the_fallback_is_minimize(monkeypatch):
    monkeypatch.setattr(_lbfgsb, "_setulb", lambda: None)
    x0 = np.linspace(-1.5, 1.2, 11)
    r = _lbfgsb.minimize_lbfgsb(rosenbrock, x0, maxfun=100, maxiter=20, gtol=1e-5)
    s = scipy.optimize.minimize(rosenbrock, x0, method="L-BFGS-B", jac=True,
                                options=dict(maxfun=100, maxiter=20, gtol=1e-5))
    assert np.array_equal(r.x, s.x) and (r.nit, r.nfev, r.status) == (s.nit, s.nfev, s.status)
    assert r.x_is_last_evaluated is False


def test_unchecked_scipy_versions_take_the_fallback(monkeypatch):
    monkeypatch.setattr(scipy, "__version__", "9.99.0")
    assert _lbfgsb._setulb() is None


def fit(estimator, X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(X, y)
    return estimator, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


@lean_driver
@pytest.mark.parametrize("make, data", [
    (lambda: MLPClassifier(solver="lbfgs", hidden_layer_sizes=(20,), max_iter=40, random_state=0), "digits"),
    (lambda: MLPClassifier(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=300, tol=1e-3, random_state=1), "cancer"),
    (lambda: MLPClassifier(solver="lbfgs", hidden_layer_sizes=(8, 6), max_fun=12, random_state=2,
                           dtype=np.float32), "digits"),
    (lambda: MLPRegressor(solver="lbfgs", hidden_layer_sizes=(10,), max_iter=30, activation="tanh",
                          random_state=3), "diabetes2"),
])
def test_sklearn_lbfgs_fits_are_unchanged(make, data, monkeypatch):
    """The lean driver against scipy.optimize.minimize in the same fit: the same coefs_, intercepts_, n_iter_,
    loss_ and warning, bit for bit."""
    if data == "digits":
        X, y = sklearn.datasets.load_digits(return_X_y=True)
        X, y = X[:400] / 16, y[:400]
    elif data == "cancer":
        X, y = sklearn.datasets.load_breast_cancer(return_X_y=True)
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    else:
        X, y = sklearn.datasets.load_diabetes(return_X_y=True)
        y = np.column_stack([y, -y]) / y.std()
    lean, lean_warnings = fit(make(), X, y)
    monkeypatch.setattr(_lbfgsb, "_setulb", lambda: None)
    reference, reference_warnings = fit(make(), X, y)
    assert lean.n_iter_ == reference.n_iter_ and lean.loss_ == reference.loss_
    assert lean_warnings == reference_warnings
    for a, b in zip(lean.coefs_ + lean.intercepts_, reference.coefs_ + reference.intercepts_):
        assert a.dtype == b.dtype and np.array_equal(a, b)
