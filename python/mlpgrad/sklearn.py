"""``mlpgrad.sklearn``: ``MLPRegressor`` and ``MLPClassifier``, drop-in replacements for scikit-learn's.

The same parameters, defaults, fitted attributes and conventions as ``sklearn.neural_network``'s estimators
(scikit-learn >= 1.6: ``pip install 'mlpgrad[sklearn]'``), computed with mlpgrad's network, losses and
optimisers; plus ``dtype`` (None: float32 data trains in float32, anything else in float64, as in
scikit-learn) and ``n_threads`` (mlpgrad's batch threads while fitting and predicting, set with
``mlpgrad.set_num_threads`` and restored afterwards; None leaves the setting alone).

What is scikit-learn's, exactly: the initialisation (Glorot uniform from ``random_state``, in scikit-learn's
order of draws), the losses (squared_error = ½·MSE, whose gradient scikit-learn takes summed over several
targets rather than averaged, and so does this module; log-loss summed over a multilabel's outputs), the L2
term alpha/(2·Σw)·Σ‖W‖² over the weights, not the intercepts, added per batch; batch_size="auto" =
min(200, n); the stopping rules (tol, n_iter_no_change, early_stopping on the validation score with the
best parameters restored), the learning-rate schedules of "sgd", and "lbfgs" as
``scipy.optimize.minimize(method="L-BFGS-B")`` steps without bounds, on full-batch gradients (the same
algorithm in mlpgrad's C++, :mod:`mlpgrad._lbfgs`: the same iterates to rounding). The output: one logistic unit
for two classes, softmax for more, one logistic unit per label for multilabel targets, identity for
regression. What differs: Adam and SGD are ``mlpgrad.optim``'s (PyTorch's algorithms: Adam adds ε to
sqrt(v̂) where scikit-learn adds it to sqrt(v); SGD's velocity is kept in gradient units, the same steps
at a constant learning rate); the mini-batch order is drawn as ``random_state.permutation``; sparse X is
made dense; loss="poisson" is not available.

``coefs_[i]`` (K_in × K_out) are views of the network's weight arrays (W transposed; the last one is α
itself, or α[:, None] for one output) and ``intercepts_`` of its biases, so the estimator and its network
(``estimator.net_``) always agree.
"""

from __future__ import annotations

import numpy as np

from ._sklearn_base import MLPBase  # first: it says what to install when scikit-learn or scipy is missing

import scipy.special  # noqa: E402
from sklearn.base import ClassifierMixin, RegressorMixin  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402
from sklearn.preprocessing import LabelBinarizer  # noqa: E402
from sklearn.utils.metaestimators import available_if  # noqa: E402
from sklearn.utils.multiclass import type_of_target, unique_labels  # noqa: E402
from sklearn.utils.validation import column_or_1d, validate_data  # noqa: E402

from . import losses  # noqa: E402

__all__ = ["MLPRegressor", "MLPClassifier"]


def _half_squared_error(yhat, y, *, sample_weight=None):
    """scikit-learn's squared_error: ½ × the mean over examples (weighted) and outputs of (ŷ − y)²; its
    gradient, as scikit-learn computes it, is that of ½ × the SUM over the m outputs (m times the mean's)."""
    loss, dy = losses.mse(yhat, y, sample_weight=sample_weight)
    dy *= 0.5 * (1 if dy.ndim == 1 else dy.shape[1])
    return 0.5 * loss, dy


def _summed_logistic(outputs):
    """scikit-learn's binary log-loss: summed over the outputs (labels), mean over examples."""
    if outputs == 1:
        return losses.logistic

    def loss(yhat, y, *, sample_weight=None):
        value, dy = losses.logistic(yhat, y, sample_weight=sample_weight)
        dy *= outputs
        return value * outputs, dy
    return loss


class MLPRegressor(RegressorMixin, MLPBase):
    """scikit-learn's ``MLPRegressor`` on mlpgrad: squared error, identity output (see the module docstring)."""

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, dtype=dtype, n_threads=n_threads)
        self.loss = loss

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of the stochastic solver over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """The predicted values: (n,) for one target, (n, n_outputs) for several."""
        return self._outputs(X)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _out_activation(self):
        return "identity"

    def _loss_function(self):
        return _half_squared_error

    def _network_targets(self, y):
        y = np.ascontiguousarray(y, dtype=self.net_.dtype)
        return y[:, 0] if self.n_outputs_ == 1 else y

    def _validation_targets(self, y):
        return y

    def _score(self, X, y, sample_weight=None):
        return r2_score(y, self.net_.forward_batch(X), sample_weight=sample_weight)


class MLPClassifier(ClassifierMixin, MLPBase):
    """scikit-learn's ``MLPClassifier`` on mlpgrad: log-loss; one logistic output for two classes, softmax
    for more, one logistic output per label for multilabel targets (see the module docstring)."""

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and labels y."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch of the stochastic solver; ``classes`` (every label) is required on the first call."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on the first call to partial_fit: "
                             f"{self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the "
                                     f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _loss_function(self):
        if self.out_activation_ == "softmax":
            return losses.softmax_cross_entropy
        return _summed_logistic(self.n_outputs_)

    def _network_targets(self, y):
        if self.out_activation_ == "softmax":
            return np.argmax(y, axis=1)  # the class indices of the one-hot rows
        y = np.ascontiguousarray(y, dtype=self.net_.dtype)
        return y[:, 0] if self.n_outputs_ == 1 else y

    def _validation_targets(self, y):
        return self._label_binarizer.inverse_transform(y)

    def _probabilities(self, outputs):
        if self.out_activation_ == "softmax":
            return scipy.special.softmax(outputs, axis=1)
        return scipy.special.expit(outputs)

    def _score(self, X, y, sample_weight=None):
        p = self._probabilities(self.net_.forward_batch(X))
        return accuracy_score(y, self._label_binarizer.inverse_transform(p.reshape(len(X), -1)),
                              sample_weight=sample_weight)

    def predict(self, X):
        """The predicted classes (an indicator matrix for multilabel targets)."""
        p = self._probabilities(self._outputs(X))
        return self._label_binarizer.inverse_transform(p.reshape(p.shape[0], -1))

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        p = self._probabilities(self._outputs(X))
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        p = self.predict_proba(X)
        return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
