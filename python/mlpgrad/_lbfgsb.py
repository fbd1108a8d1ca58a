"""SciPy's L-BFGS-B on a function that returns (f, ∇f), without the layers of ``scipy.optimize.minimize``.

``minimize(method="L-BFGS-B", jac=True)`` runs the reverse-communication routine ``setulb`` (the algorithm:
it asks for f and ∇f at x, or reports a new iterate) inside ``_minimize_lbfgsb``, whose ``ScalarFunction`` and
``MemoizeJac`` wrappers copy and compare x several times per evaluation and build an ``OptimizeResult`` per
iteration: about 0.13 ms per iteration, 5 % of a 64-100-10 digits fit. :func:`minimize_lbfgsb` drives the
same ``setulb`` with the same defaults and the same stopping rules (a request at the point last evaluated is
answered from the cache, as ``ScalarFunction`` does), so it makes the same calls of ``fun`` and returns the
same iterates, bit for bit (``tests/test_sklearn.py`` compares both). It relies on SciPy's private
``setulb`` signature, so it is used only on the SciPy versions it was checked against; any other version
goes through ``scipy.optimize.minimize``.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

#: SciPy versions (major, minor) whose ``_lbfgsb.setulb`` has the signature driven below (the C version).
CHECKED_SCIPY = ((1, 17),)

# scipy.optimize.minimize's L-BFGS-B defaults: m = maxcor, ftol (factr = ftol / eps) and maxls.
MAXCOR, FTOL, MAXLS = 10, 2.2204460492503131e-09, 20
_FG, _NEW_X, _CONVERGENCE, _STOP = 3, 1, 4, 5
_MAXFUN_REACHED, _MAXITER_REACHED = 502, 504


def _setulb():
    """SciPy's ``setulb`` and its message tables, or None where this driver was not checked."""
    import scipy

    try:
        version = tuple(int(part) for part in scipy.__version__.split(".")[:2])
        if version not in CHECKED_SCIPY:
            return None
        from scipy.optimize import _lbfgsb, _lbfgsb_py
        return _lbfgsb.setulb, _lbfgsb_py.status_messages, _lbfgsb_py.task_messages
    except (ImportError, AttributeError, ValueError):
        return None


def minimize_lbfgsb(fun, x0, *, maxfun: int, maxiter: int, gtol: float, lean: bool = True) -> SimpleNamespace:
    """``scipy.optimize.minimize(fun, x0, method="L-BFGS-B", jac=True, options={"maxfun": maxfun, "maxiter":
    maxiter, "gtol": gtol})``, returned as x, fun, nit, nfev, status, message, and x_is_last_evaluated: whether x
    is the point of the last call of ``fun`` (False when unknown). ``fun`` must neither keep nor change the x it
    is given (it is the driver's own array). ``lean=False`` (or an unchecked SciPy) calls
    ``minimize`` itself."""
    driver = _setulb() if lean else None
    if driver is None:
        import scipy.optimize

        r = scipy.optimize.minimize(fun, x0, method="L-BFGS-B", jac=True,
                                    options={"maxfun": maxfun, "maxiter": maxiter, "gtol": gtol})
        return SimpleNamespace(x=r.x, fun=r.fun, nit=int(r.nit), nfev=int(r.nfev), status=int(r.status),
                               message=r.message, x_is_last_evaluated=False)
    setulb, status_messages, task_messages = driver
    x = np.array(np.asarray(x0).ravel(), dtype=np.float64)
    n, m = x.size, MAXCOR
    low, up, nbd = np.zeros(n), np.zeros(n), np.zeros(n, np.int32)  # no bounds
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa, task, ln_task = np.zeros(3 * n, np.int32), np.zeros(2, np.int32), np.zeros(2, np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29)
    factr = FTOL / np.finfo(float).eps
    f, g = fun(x)  # ScalarFunction evaluates at x0 before the first call
    g = np.asarray(g, dtype=np.float64)
    evaluated_at, nfev, nit = x.copy(), 1, 0
    while True:
        setulb(m, x, low, up, nbd, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave, MAXLS, ln_task)
        if task[0] == _FG:
            if not np.array_equal(x, evaluated_at):
                f, g = fun(x)
                g = np.asarray(g, dtype=np.float64)
                nfev += 1
                evaluated_at[...] = x
        elif task[0] == _NEW_X:
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = _STOP, _MAXITER_REACHED
            elif nfev > maxfun:
                task[0], task[1] = _STOP, _MAXFUN_REACHED
        else:
            break
    status = 0 if task[0] == _CONVERGENCE else 1 if nfev > maxfun or nit >= maxiter else 2
    return SimpleNamespace(x=x, fun=f, nit=nit, nfev=nfev, status=status,
                           message=f"{status_messages[task[0]]}: {task_messages[task[1]]}",
                           x_is_last_evaluated=bool(np.array_equal(x, evaluated_at)))
