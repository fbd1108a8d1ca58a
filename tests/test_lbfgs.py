"""mlpgrad._lbfgs (the C++ L-BFGS of cpp/include/mlpgrad/optim/lbfgs.hpp) steps as SciPy's L-BFGS-B does
without bounds: the same points asked for, to rounding, and the same iterations, evaluations and way of
stopping, on test functions and in mlpgrad.sklearn's lbfgs fits; and _core._Lbfgs refuses what it cannot
use, before it writes anything."""

import warnings

import numpy as np
import pytest

from mlpgrad import _core
from mlpgrad._lbfgs import minimize_lbfgs


def recording(fun):
    """fun, and the list of the points it was called at (copies)."""
    calls = []

    def recorded(x):
        calls.append(np.array(x, copy=True))
        return fun(x)
    return recorded, calls


def rosenbrock(x):  # scipy.optimize.rosen and rosen_der
    a, b = x[1:] - x[:-1] ** 2, 1.0 - x[:-1]
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * a - 2.0 * b
    g[1:] += 200.0 * a
    return float((100.0 * a**2 + b**2).sum()), g


def wrong_gradient(x):  # the gradient's sign is wrong: the line search cannot succeed (ABNORMAL)
    return float(x @ x), -2.0 * x


def quadratic(x):  # converges within a few iterations
    return float(((x - 1.0) ** 2).sum()), 2.0 * (x - 1.0)


def nan_beyond_start(x):  # NaN at every trial point: the search fails at once, the run ends at x0
    x0 = np.linspace(-1.5, 1.2, 11)
    value = float(x @ x) if np.array_equal(x, x0) else float("nan")
    return value, 2.0 * x


def scaled_quartic(x):  # convex, badly scaled: many iterations, full memory, some line searches with steps ≠ 1
    a = np.arange(1.0, x.size + 1.0) ** 2
    return float(0.5 * a @ x**2 + 0.25 * (x**4).sum()), a * x + x**3


@pytest.mark.parametrize("fun, options", [
    (rosenbrock, dict(maxfun=15000, maxiter=15000, gtol=1e-5)),    # converges
    (rosenbrock, dict(maxfun=15000, maxiter=7, gtol=1e-5)),        # stops at maxiter
    (rosenbrock, dict(maxfun=9, maxiter=15000, gtol=1e-5)),        # stops at maxfun
    (wrong_gradient, dict(maxfun=15000, maxiter=15000, gtol=1e-5)),  # 20 trials, then a step of 0
    (quadratic, dict(maxfun=15000, maxiter=15000, gtol=0.0)),
    (scaled_quartic, dict(maxfun=15000, maxiter=15000, gtol=1e-9)),
])
def test_the_same_calls_and_result_as_scipy_to_rounding(fun, options):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    x0 = np.linspace(-1.5, 1.2, 11)
    ours, our_calls = recording(fun)
    theirs, their_calls = recording(fun)
    r = minimize_lbfgs(ours, x0.copy(), **options)
    s = scipy_optimize.minimize(theirs, x0.copy(), method="L-BFGS-B", jac=True, options=options)
    assert len(our_calls) == len(their_calls) == r.nfev == s.nfev
    # Rounding differs, and Rosenbrock's valley amplifies it (to ~1e-9 after 40 points, ~1e-7 after 60):
    # the first 20 points agree to 1e-11, the rest, near the minimiser, to 1e-4.
    for k, (a, b) in enumerate(zip(our_calls + [r.x], their_calls + [s.x])):
        np.testing.assert_allclose(a, b, rtol=0, atol=(1e-11 if k < 20 else 1e-4) * max(1.0, np.abs(b).max()))
    assert r.fun == pytest.approx(s.fun, rel=1e-6, abs=1e-12)
    assert (r.nit, r.status) == (s.nit, s.status)
    assert r.x_is_last_evaluated == np.array_equal(r.x, our_calls[-1])
    assert fun(r.x)[0] == r.fun  # fun is f at x, also after a failed line search stepped back


def test_messages_say_why_the_run_ended():
    x0 = np.linspace(-1.5, 1.2, 11)
    assert "REDUCTION" in minimize_lbfgs(rosenbrock, x0, maxfun=15000, maxiter=15000, gtol=1e-5).message
    assert "ITERATIONS" in minimize_lbfgs(rosenbrock, x0, maxfun=15000, maxiter=3, gtol=1e-5).message
    assert "EVALUATIONS" in minimize_lbfgs(rosenbrock, x0, maxfun=4, maxiter=100, gtol=1e-5).message
    r = minimize_lbfgs(nan_beyond_start, x0, maxfun=100, maxiter=100, gtol=1e-5)
    assert "LINE SEARCH" in r.message and r.status == 2 and np.array_equal(r.x, x0) and not r.x_is_last_evaluated
    assert "GRADIENT" in minimize_lbfgs(quadratic, np.ones(3), maxfun=100, maxiter=100, gtol=1e-5).message


def test_the_same_bits_on_every_run():
    x0 = np.linspace(-1.5, 1.2, 40)
    first = minimize_lbfgs(rosenbrock, x0, maxfun=15000, maxiter=60, gtol=0.0)
    for _ in range(2):
        again = minimize_lbfgs(rosenbrock, x0, maxfun=15000, maxiter=60, gtol=0.0)
        assert np.array_equal(first.x, again.x) and first.fun == again.fun


@pytest.mark.parametrize("fun", [rosenbrock, nan_beyond_start, scaled_quartic])
def test_in_place_iterates_on_x0_itself_with_the_same_calls(fun):
    x0 = np.linspace(-1.5, 1.2, 11)
    copied, copied_calls = recording(fun)
    r = minimize_lbfgs(copied, x0.copy(), maxfun=15000, maxiter=40, gtol=1e-9)
    given, points = [], []

    def in_place(x):
        given.append(x)
        points.append(x.copy())
        return fun(x)
    x = x0.copy()
    s = minimize_lbfgs(in_place, x, maxfun=15000, maxiter=40, gtol=1e-9, in_place=True)
    assert s.x is x and all(v is x for v in given)  # every call is given x0 itself, which ends as the result
    assert len(points) == len(copied_calls) and all(np.array_equal(a, b) for a, b in zip(points, copied_calls))
    assert np.array_equal(s.x, r.x) and (s.fun, s.nit, s.nfev, s.status) == (r.fun, r.nit, r.nfev, r.status)
    assert s.x_is_last_evaluated == r.x_is_last_evaluated


@pytest.mark.parametrize("x0", [np.zeros(3, np.float32), np.zeros((3, 1)), np.zeros(6)[::2], [0.0, 0.0],
                                np.zeros(3, np.int64)])
def test_in_place_refuses_an_x0_it_cannot_step(x0):
    with pytest.raises(ValueError, match="in_place=True needs x0"):
        minimize_lbfgs(quadratic, x0, maxfun=10, maxiter=10, gtol=0.0, in_place=True)
    read_only = np.zeros(3)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        minimize_lbfgs(quadratic, read_only, maxfun=10, maxiter=10, gtol=0.0, in_place=True)


# ----------------------------------------------------------------------------- _core._Lbfgs's checks
def started(n=3):
    run = _core._Lbfgs(n)
    x = np.array([1.0, -2.0, 0.5][:n])
    assert run.iterate(x, float(x @ x), 2 * x) == _core._Lbfgs.EVALUATE
    return run, x


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n must be at least 1"),
    (dict(n=3, memory=0), "memory must be at least 1"),
    (dict(n=3, gtol=-1.0), "gtol must be a finite number"),
    (dict(n=3, ftol=float("nan")), "ftol must be a finite number"),
    (dict(n=3, max_line_search=0), "max_line_search must be at least 1"),
])
def test_options_out_of_range_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _core._Lbfgs(**kwargs)


@pytest.mark.parametrize("which, make, error, message", [
    ("x", lambda x: list(x), TypeError, "x must be a numpy.ndarray of float64, got list"),
    ("x", lambda x: x.astype(np.float32), TypeError, "x has dtype float32; expected float64"),
    ("x", lambda x: np.concatenate([x, x]), ValueError, r"x has shape \(6,\); expected \(3,\)"),
    ("x", lambda x: np.repeat(x, 2)[::2], ValueError, "x is not a C-contiguous"),
    ("x", lambda x: np.frombuffer(x.tobytes()), ValueError, "x is read-only"),
    ("g", lambda g: g.astype(np.int64), TypeError, "g has dtype int64; expected float64"),
    ("g", lambda g: g[:2], ValueError, r"g has shape \(2,\); expected \(3,\)"),
])
def test_bad_arrays_are_refused_and_nothing_is_written(which, make, error, message):
    run, x = started()
    before = x.copy()
    g = 2 * x
    args = dict(x=x, g=g)
    args[which] = make(args[which])
    with pytest.raises(error, match=message):
        run.iterate(args["x"], float(before @ before), args["g"])
    assert np.array_equal(x, before)
    assert run.iterate(x, float(x @ x), 2 * x) in (_core._Lbfgs.EVALUATE, _core._Lbfgs.NEW_ITERATE)


def test_overlapping_x_and_g_are_refused():
    run = _core._Lbfgs(3)
    buffer = np.arange(4.0)
    with pytest.raises(ValueError, match="x and g overlap"):
        run.iterate(buffer[:3], 1.0, buffer[1:])


def test_a_start_that_is_not_finite_is_refused():
    run = _core._Lbfgs(2)
    with pytest.raises(ValueError, match="must be finite at the starting point"):
        run.iterate(np.ones(2), float("nan"), np.ones(2))
    with pytest.raises(ValueError, match="must be finite at the starting point"):
        run.iterate(np.ones(2), 1.0, np.array([1.0, np.inf]))
    assert run.iterate(np.ones(2), 1.0, np.ones(2)) == _core._Lbfgs.EVALUATE


def test_an_ended_run_refuses_more_calls():
    run = _core._Lbfgs(2)
    assert run.iterate(np.ones(2), 0.0, np.zeros(2)) == _core._Lbfgs.CONVERGED_GRADIENT
    assert run.finished
    with pytest.raises(RuntimeError, match="has ended"):
        run.iterate(np.ones(2), 0.0, np.zeros(2))
    with pytest.raises(ValueError, match="task must be in 1..5"):
        _core._Lbfgs.message(0)


# ----------------------------------------------------------------------------- mlpgrad.sklearn's fits
@pytest.mark.parametrize("estimator, data", [("MLPClassifier", "cancer"), ("MLPRegressor", "diabetes")])
def test_sklearn_lbfgs_fits_follow_scikit_learns_to_rounding(estimator, data):
    """mlpgrad.sklearn's lbfgs fit against scikit-learn's on a small network, for 20 iterations: the same
    number of iterations and evaluations, and parameters that agree to far below their changes."""
    pytest.importorskip("sklearn")
    import sklearn.datasets
    import sklearn.neural_network
    from sklearn.exceptions import ConvergenceWarning

    import mlpgrad.sklearn

    ours, theirs = getattr(mlpgrad.sklearn, estimator), getattr(sklearn.neural_network, estimator)
    if data == "cancer":
        X, y = sklearn.datasets.load_breast_cancer(return_X_y=True)
    else:
        X, y = sklearn.datasets.load_diabetes(return_X_y=True)
        y = y / y.std()
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    params = dict(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=20, random_state=0, activation="tanh")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ours(**params).fit(X, y)
        b = theirs(**params).fit(X, y)
    assert a.n_iter_ == b.n_iter_ == 20
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-8)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-9)
