"""L-BFGS on a function that returns (f, ∇f): the solver behind ``mlpgrad.sklearn``'s ``solver="lbfgs"``.

scikit-learn runs ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``. Its ``setulb`` takes 0.4–0.5 ms
of every iteration on a 64-100-10 digits network (its Cauchy-point and subspace steps over the compact
form, which exist for bounds that an MLP does not have), a fifth of mlpgrad's whole iteration there.
:class:`mlpgrad._core._Lbfgs` (``cpp/include/mlpgrad/optim/lbfgs.hpp``) is the same algorithm without bounds
in C++: the same direction (by the two-loop recursion), the same Moré–Thuente line search with the same
constants, the same rules for skipping a pair and for a failed search, and the same stopping tests, in
75–110 µs per iteration there (a new direction streams the 1.2 MB of pairs twice; a line-search step is
O(n)). Its iterates equal SciPy's to rounding, not bit for bit (``tests/test_lbfgs.py``
compares them). :func:`minimize_lbfgs` adds SciPy's limits on iterations and evaluations.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from . import _core

#: scipy.optimize.minimize's L-BFGS-B defaults: m = maxcor, ftol (factr·ε) and maxls.
MAXCOR, FTOL, MAXLS = 10, 2.2204460492503131e-09, 20
_Lbfgs = _core._Lbfgs


def minimize_lbfgs(fun, x0, *, maxfun: int, maxiter: int, gtol: float, in_place: bool = False) -> SimpleNamespace:
    """What ``scipy.optimize.minimize(fun, x0, method="L-BFGS-B", jac=True, options={"maxfun": maxfun,
    "maxiter": maxiter, "gtol": gtol})`` computes, returned as x, fun, nit, nfev, status (0 converged, 1 a
    limit reached, 2 the line search failed), message, and x_is_last_evaluated: whether x is the point of the
    last call of ``fun``. ``fun`` must neither keep nor change the x it is given (it is the driver's own
    array); it may return the same gradient array every time (each is read before the next call). A request
    at the point last evaluated is answered from a cache, as SciPy's ``ScalarFunction`` does, so ``fun`` is
    called as often as under SciPy.

    With ``in_place=True``, x0 (a writeable, C-contiguous float64 vector) is the iterate itself: every trial
    point is written into it and ``fun`` is given x0 each time, so a caller whose parameters are views of x0
    evaluates at the trial point without copying it in; x0 holds the result at the end (the returned x)."""
    if in_place:
        if not (isinstance(x0, np.ndarray) and x0.dtype == np.float64 and x0.ndim == 1
                and x0.flags.c_contiguous and x0.flags.writeable):
            raise ValueError("in_place=True needs x0 to be a writeable, C-contiguous float64 vector, got "
                             f"{type(x0).__name__} {getattr(x0, 'dtype', '')} {getattr(x0, 'shape', '')}")
        x = x0
    else:
        x = np.array(np.asarray(x0, dtype=np.float64).ravel(), dtype=np.float64)
    run = _Lbfgs(x.size, memory=MAXCOR, ftol=FTOL, gtol=gtol, max_line_search=MAXLS)
    f, g = fun(x)
    g = np.ascontiguousarray(g, dtype=np.float64)
    evaluated_at, nfev, limit = x.copy(), 1, None
    while True:
        task = run.iterate(x, f, g)
        if task == _Lbfgs.EVALUATE:
            if not np.array_equal(x, evaluated_at):
                f, g = fun(x)
                g = np.ascontiguousarray(g, dtype=np.float64)
                nfev += 1
                evaluated_at[...] = x
        elif task == _Lbfgs.NEW_ITERATE:
            if run.iterations >= maxiter:
                limit = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
            elif nfev > maxfun:
                limit = "STOP: TOTAL NO. OF F AND G EVALUATIONS EXCEEDS LIMIT"
            if limit is not None:
                break
        else:
            break
    status = 1 if limit is not None else 2 if task == _Lbfgs.LINE_SEARCH_FAILED else 0
    return SimpleNamespace(x=x, fun=run.value, nit=run.iterations, nfev=nfev, status=status,
                           message=limit if limit is not None else _Lbfgs.message(task),
                           x_is_last_evaluated=bool(np.array_equal(x, evaluated_at)))
