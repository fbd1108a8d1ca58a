"""The PyTorch peer of ``bench --train``: a plain training loop of the model scikit-learn's estimator fits.

Linear layers with biases and the estimator's activation, in float64; the same loss (½·MSE; log-loss on one
logistic output for two classes; softmax cross-entropy for more), the same L2 term alpha/(2B)·Σ‖W‖² over the
weights of each batch of B, the same optimiser settings (torch.optim.Adam, or SGD with the estimator's
momentum and Nesterov flag), batch size ("auto" = min(200, n)), epochs and a new random order every epoch;
torch's own initialisation. One thread (torch.set_num_threads(1)).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["fit_torch"]

_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "logistic": "Sigmoid", "identity": "Identity"}


def fit_torch(torch, estimator, params, X_train, y_train, X_test, y_test, *, epochs, repeats):
    from .train import Fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds, error = [], None
        for repeat in range(repeats):
            t0 = time.perf_counter()
            model, classes = _train(torch, estimator, params, X_train, y_train, epochs, seed=repeat)
            seconds.append(time.perf_counter() - t0)
            error = _test_error(torch, estimator, model, classes, X_test, y_test)
        return Fit(statistics.median(seconds), error, epochs)
    finally:
        torch.set_num_threads(threads)


def _targets(torch, estimator, y):
    if estimator == "MLPRegressor":
        return torch.tensor(y, dtype=torch.float64), None
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) == 2:
        return torch.tensor(labels, dtype=torch.float64), classes
    return torch.tensor(labels, dtype=torch.int64), classes


def _train(torch, estimator, params, X_train, y_train, epochs, seed):
    torch.manual_seed(seed)
    X = torch.tensor(X_train, dtype=torch.float64)
    y, classes = _targets(torch, estimator, y_train)
    outputs = 1 if classes is None or len(classes) == 2 else len(classes)
    widths = [X.shape[1], *params.get("hidden_layer_sizes", (100,))]
    layers = []
    for k_in, k_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(k_in, k_out, dtype=torch.float64),
                   getattr(torch.nn, _ACTIVATIONS[params.get("activation", "relu")])()]
    layers.append(torch.nn.Linear(widths[-1], outputs, dtype=torch.float64))
    model = torch.nn.Sequential(*layers)
    lr = params.get("learning_rate_init", 1e-3)
    if params.get("solver", "adam") == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(params.get("beta_1", 0.9), params.get("beta_2", 0.999)),
                               eps=params.get("epsilon", 1e-8))
    else:
        momentum = params.get("momentum", 0.9)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                              nesterov=params.get("nesterovs_momentum", True) and momentum > 0)
    if classes is None:
        loss_fn = lambda out, target: 0.5 * torch.nn.functional.mse_loss(out[:, 0], target)  # noqa: E731
    elif outputs == 1:
        loss_fn = lambda out, target: torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], target)  # noqa: E731
    else:
        loss_fn = torch.nn.functional.cross_entropy
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    alpha = params.get("alpha", 1e-4)
    n = len(X)
    batch = params.get("batch_size", "auto")
    batch = min(200, n) if batch == "auto" else min(batch, n)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[rows]), y[rows])
            if alpha:
                loss = loss + (0.5 * alpha / len(rows)) * sum((w * w).sum() for w in weights)
            loss.backward()
            opt.step()
    return model, classes


def _test_error(torch, estimator, model, classes, X_test, y_test) -> float:
    with torch.no_grad():
        out = model(torch.tensor(X_test, dtype=torch.float64)).numpy()
    if classes is None:
        residual = y_test - out[:, 0]
        return float(np.sum(residual ** 2) / np.sum((y_test - y_test.mean()) ** 2))  # 1 − R²
    predicted = classes[(out[:, 0] > 0).astype(int)] if out.shape[1] == 1 else classes[np.argmax(out, axis=1)]
    return float(np.mean(predicted != y_test))
