"""What mlpgrad.sklearn's MLPRegressor and MLPClassifier share: parameters and their checks, the network and
its views (coefs_, intercepts_), pickling, the stochastic and L-BFGS solvers and prediction's checks.
The conventions are scikit-learn's; see :mod:`mlpgrad.sklearn`."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"mlpgrad.sklearn needs scikit-learn >= 1.6 and scipy ({e}); install them with "
                      "pip install 'mlpgrad[sklearn]'") from e

import mlpgrad

from . import optim
from ._lbfgs import minimize_lbfgs
from .train import Trainer, _Snapshot, num_threads, parameters

__all__ = ["ACTIVATIONS", "MLPBase"]

#: scikit-learn's activation names -> mlpgrad's.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_STOCHASTIC = ("sgd", "adam")


def _views(flat, like):
    """Consecutive views of the vector ``flat`` shaped like the arrays ``like``."""
    out, start = [], 0
    for a in like:
        out.append(flat[start:start + a.size].reshape(a.shape))
        start += a.size
    return out


def _check(name, value, ok, expected):
    if not ok(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _float_dtype(v):
    try:
        return np.dtype(v) in (np.float32, np.float64)
    except TypeError:  # not a dtype at all
        return False


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


class MLPBase(BaseEstimator):
    """What the regressor and the classifier share: parameters, the network, the solvers."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads

    # ------------------------------------------------------------------ checks
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(_is_int(k) and k > 0 for k in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(k) for k in sizes]

    def _check_params(self):
        _check("activation", self.activation, lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")
        _check("solver", self.solver, lambda v: v in ("lbfgs", "sgd", "adam"), "'lbfgs', 'sgd' or 'adam'")
        _check("alpha", self.alpha, lambda v: _is_real(v) and v >= 0, "a number >= 0")
        _check("batch_size", self.batch_size, lambda v: v == "auto" or (_is_int(v) and v >= 1),
               "'auto' or an integer >= 1")
        _check("learning_rate", self.learning_rate, lambda v: v in ("constant", "invscaling", "adaptive"),
               "'constant', 'invscaling' or 'adaptive'")
        _check("learning_rate_init", self.learning_rate_init, lambda v: _is_real(v) and v > 0, "a number > 0")
        _check("power_t", self.power_t, lambda v: _is_real(v) and v >= 0, "a number >= 0")
        for name in ("max_iter", "n_iter_no_change", "max_fun"):
            _check(name, getattr(self, name), lambda v: _is_int(v) and v >= 1, "an integer >= 1")
        _check("tol", self.tol, lambda v: _is_real(v) and v >= 0, "a number >= 0")
        _check("momentum", self.momentum, lambda v: _is_real(v) and 0 <= v <= 1, "a number in [0, 1]")
        _check("validation_fraction", self.validation_fraction, lambda v: _is_real(v) and 0 < v < 1,
               "a number in (0, 1)")
        for name in ("beta_1", "beta_2"):
            _check(name, getattr(self, name), lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)")
        _check("epsilon", self.epsilon, lambda v: _is_real(v) and v > 0, "a number > 0")
        _check("dtype", self.dtype, lambda v: v is None or _float_dtype(v), "None, float32 or float64")
        _check("n_threads", self.n_threads, lambda v: v is None or (_is_int(v) and v >= 1),
               "None or an integer >= 1")
        if getattr(self, "loss", "squared_error") != "squared_error":
            raise ValueError(f"loss must be 'squared_error', got {self.loss!r} (mlpgrad.sklearn has no "
                             "loss='poisson')")

    def _dense(self, X, dtype):
        X = X.toarray() if hasattr(X, "toarray") else X
        return np.ascontiguousarray(X, dtype=dtype)

    @staticmethod
    def _check_sample_weight(sample_weight, n, dtype):
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight, dtype=dtype)
        if w.ndim == 0:
            w = np.full(n, w, dtype=dtype)
        if w.shape != (n,):
            raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n},)!")
        if not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
            raise ValueError("sample_weight must be finite, non-negative and not all zero")
        return w

    # ------------------------------------------------------------------ the network
    def _initialize(self, y, layer_units, dtype):
        """scikit-learn's _initialize: Glorot-uniform weights and intercepts, in its order of draws."""
        self.n_iter_, self.t_ = 0, 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights, biases = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            weights.append(coef)
            biases.append(self._random_state.uniform(-bound, bound, fan_out))
        alpha, beta = weights.pop(), biases.pop()
        self._weights = [np.ascontiguousarray(c.T, dtype=dtype) for c in weights]  # W^[t] is K_out × K_in
        self._biases = [b.astype(dtype) for b in biases]
        one = self.n_outputs_ == 1  # the scalar-output network: ŷ = αᵀz^T + β with α of shape (K_T,)
        self._alpha = np.ascontiguousarray(alpha[:, 0] if one else alpha, dtype=dtype)
        self._beta = np.asarray(beta[0] if one else beta, dtype=dtype).copy()
        self._connect()
        self._optimizer = None
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    def _connect(self):
        """The network over the parameter arrays, and coefs_/intercepts_ as views of the same arrays."""
        self.net_ = mlpgrad.MLP(self._weights, self._alpha, activation=ACTIVATIONS[self.activation],
                                biases=self._biases, output_bias=self._beta)
        self.coefs_ = [w.T for w in self._weights] + [self._alpha if self._alpha.ndim == 2 else self._alpha[:, None]]
        self.intercepts_ = list(self._biases) + [self._beta.reshape(-1)]

    def _make_optimizer(self):
        if self.solver == "adam":
            return optim.Adam(self.net_, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                              eps=self.epsilon)
        return optim.SGD(self.net_, lr=self.learning_rate_init, momentum=self.momentum,
                         nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)

    def _penalty(self):
        """scikit-learn's L2 term, alpha/(2·Σw)·Σ‖W‖² over the weights and α (not the intercepts), and its
        gradient alpha/Σw·W added into the batch gradients."""
        if self.alpha == 0:
            return None
        arrays = self._weights + [self._alpha]
        scratch = [np.empty_like(a) for a in arrays]

        def penalty(grads, weight_sum):
            c = self.alpha / weight_sum
            for a, g, s in zip(arrays, list(grads.weights) + [grads.alpha], scratch):
                np.multiply(a, c, out=s, casting="unsafe")
                g += s
            return 0.5 * c * sum(float(np.vdot(a, a)) for a in arrays)
        return penalty

    def __getstate__(self):
        state = dict(super().__getstate__())  # (object.__getstate__ gives __dict__ itself)
        for name in ("net_", "coefs_", "intercepts_", "_optimizer"):
            state.pop(name, None)
        opt = getattr(self, "_optimizer", None)
        if opt is not None:  # partial_fit goes on where it left off after a pickle round trip
            state["_optimizer_state"] = (opt.steps, opt.lr, opt.state)
        return state

    def __setstate__(self, state):
        opt_state = state.pop("_optimizer_state", None)
        super().__setstate__(state)
        self._optimizer = None
        if hasattr(self, "_weights"):
            self._connect()
            if opt_state is not None:
                self._optimizer = self._make_optimizer()
                steps, lr, arrays = opt_state
                self._optimizer.steps, self._optimizer.lr = steps, lr
                for name, fields in arrays.items():
                    for field, a in fields.items():
                        np.copyto(self._optimizer.state[name][field], a)

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._check_params()
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        dtype = np.dtype(self.dtype) if self.dtype is not None else X.dtype
        if not first_pass:
            dtype = self.net_.dtype
        X = self._dense(X, dtype)
        sample_weight = self._check_sample_weight(sample_weight, len(X), dtype)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, [X.shape[1]] + hidden + [y.shape[1]], dtype)
        elif y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} outputs but this estimator was fitted with {self.n_outputs_}")
        with num_threads(self.n_threads):
            if self.solver in _STOCHASTIC:
                self._fit_stochastic(X, y, sample_weight, incremental)
            else:
                self._fit_lbfgs(X, y, sample_weight)
        if not all(np.isfinite(p).all() for p in parameters(self.net_)):
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             "values and need to be preprocessed.")
        return self

    def _fit_stochastic(self, X, y, sample_weight, incremental):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not incremental or self._optimizer is None:
            self._optimizer = self._make_optimizer()
        early_stopping = self.early_stopping
        X_val = y_val = sw_val = None
        if early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            parts = train_test_split(X, y, *([] if sample_weight is None else [sample_weight]),
                                     random_state=self._random_state, test_size=self.validation_fraction,
                                     stratify=stratify)
            X, X_val, y, y_val = parts[:4]
            sample_weight, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            y_val = self._validation_targets(y_val)
        n = X.shape[0]
        batch_size = min(200, n) if self.batch_size == "auto" else self.batch_size
        if batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = n
        trainer = Trainer(self.net_, self._loss_function(), self._optimizer, batch_size=batch_size,
                          penalty=self._penalty())
        targets = self._network_targets(y)
        best = _Snapshot(self.net_) if early_stopping else None
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                order = self._random_state.permutation(n) if self.shuffle else None
                self.loss_ = trainer.epoch(X, targets, batch_size, order, sample_weight)
                self.n_iter_ += 1
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                if self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val):
                    best.take()
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._optimizer.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    if self._trigger_stopping(f"{what} did not improve more than tol={self.tol:f} for "
                                              f"{self.n_iter_no_change} consecutive epochs."):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                                  "optimization hasn't converged yet.", ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if best is not None and best.taken:
            best.restore()  # into the network's own arrays: coefs_ and intercepts_ follow

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        """scikit-learn's rule; returns whether this epoch is the best so far on the validation score."""
        if early_stopping:
            score = self._score(X_val, y_val, sample_weight=sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            self._no_improvement_count = self._no_improvement_count + 1 \
                if score < self.best_validation_score_ + self.tol else 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                return True
            return False
        self._no_improvement_count = self._no_improvement_count + 1 \
            if self.loss_curve_[-1] > self.best_loss_ - self.tol else 0
        self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])
        return False

    def _trigger_stopping(self, message):
        if self.solver == "sgd" and self.learning_rate == "adaptive" and self._optimizer.lr > 1e-6:
            self._optimizer.lr = self._optimizer.lr / 5.0
            if self.verbose:
                print(f"{message} Setting learning rate to {self._optimizer.lr:f}")
            return False
        if self.verbose:
            print(f"{message} Stopping.")
        return True

    def _fit_lbfgs(self, X, y, sample_weight):
        """L-BFGS over every parameter, on the full-batch loss and gradients, as scikit-learn does.

        θ is every parameter in optim._parameters' order: the weights, α, the biases, β. For a float64
        network the parameters and the gradients become views of θ and of one gradient vector, and L-BFGS
        steps θ in place: an evaluation copies nothing in or out (on digits those copies took ~35 µs of ~1.4 ms).
        A float32 network's θ is a float64 copy, written into the parameters at each evaluation."""
        loss_fn = self._loss_function()
        in_place = self.net_.dtype == np.float64
        if in_place:
            theta, gradient, grads = self._flatten_parameters()
            pairs = None
        else:
            grads = self.net_.new_gradients(batch=len(X), x=False)
            pairs = optim._parameters(self.net_, grads)
            theta = np.concatenate([p.ravel() for _, p, _ in pairs]).astype(np.float64)
            gradient = np.empty(theta.size)  # one buffer: minimize_lbfgs reads each gradient before the next call
            bounds = np.cumsum([0] + [p.size for _, p, _ in pairs])
        net = self.net_
        targets = self._network_targets(y)
        weight_sum = len(X) if sample_weight is None else float(sample_weight.sum())
        # The L2 term on θ itself: the weights and α come first in θ, the biases after.
        penalised = sum(w.size for w in self._weights) + self._alpha.size
        c = self.alpha / weight_sum

        def loss_and_gradient(x):
            if pairs is not None:
                for (_, p, _), start, stop in zip(pairs, bounds[:-1], bounds[1:]):
                    p[...] = x[start:stop].reshape(p.shape)
            loss, dy = loss_fn(net.forward_batch(X), targets, sample_weight=sample_weight)
            net.backward_batch(dy, out=grads)
            if pairs is not None:
                np.concatenate([g.ravel() for _, _, g in pairs], out=gradient, casting="unsafe")
            if c != 0:  # scikit-learn's alpha/(2·Σw)·Σ‖W‖² and its gradient alpha/Σw·W
                w = x[:penalised]
                gradient[:penalised] += c * w
                loss += 0.5 * c * float(w @ w)
            return loss, gradient

        result = minimize_lbfgs(loss_and_gradient, theta, maxfun=self.max_fun, maxiter=self.max_iter, gtol=self.tol,
                                in_place=in_place)
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}): "
                          f"{result.message}", ConvergenceWarning)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        if pairs is not None:  # the parameters of the result (a failed line search steps back)
            for (_, p, _), start, stop in zip(pairs, bounds[:-1], bounds[1:]):
                p[...] = result.x[start:stop].reshape(p.shape)

    def _flatten_parameters(self):
        """Moves the parameters into one float64 vector θ and reconnects the network, coefs_ and intercepts_
        to views of it; returns θ, a gradient vector of the same layout and a parameter-only Gradients of
        views of that vector (it fits any batch)."""
        arrays = self._weights + [self._alpha] + self._biases + [self._beta]
        theta = np.concatenate([a.ravel() for a in arrays])
        gradient = np.empty_like(theta)
        p, g = _views(theta, arrays), _views(gradient, arrays)
        n = len(self._weights)
        self._weights, self._alpha, self._biases, self._beta = p[:n], p[n], p[n + 1:-1], p[-1]
        self._connect()
        self._optimizer = None  # it steps the old arrays: a later partial_fit starts a new one
        return theta, gradient, mlpgrad.Gradients(g[:n], g[n], biases=g[n + 1:-1], output_bias=g[-1])

    # ------------------------------------------------------------------ prediction
    def _outputs(self, X):
        """The network's outputs for X: (n,) for one output, (n, m) for m."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32))
        with num_threads(self.n_threads):
            return self.net_.forward_batch(self._dense(X, self.net_.dtype))

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
