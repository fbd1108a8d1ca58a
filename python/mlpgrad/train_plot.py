"""``python -m mlpgrad train --plot FILE.png``: the loss curves and the fit — the fitted curve of a 1-D
regression, the decision regions of a classification in the plane, predicted against true values otherwise.
Needs matplotlib (``pip install 'mlpgrad[plot]'``); the network takes raw inputs (standardisation folded in)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot"]


def plot(path, history, data, net, loss_name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    second = _second_panel(data)
    fig, axes = plt.subplots(1, 2 if second else 1, figsize=(11 if second else 5.5, 4.2), squeeze=False)
    curves = axes[0][0]
    epochs = np.arange(1, history.epochs + 1)
    curves.plot(epochs, history.train_loss, label="training (epoch mean)")
    if history.validation_loss:
        curves.plot(epochs, history.validation_loss, label="validation")
    curves.set(xlabel="epoch", ylabel=f"{loss_name} loss", title="loss", yscale="log")
    curves.legend()
    if second:
        second(axes[0][1], data, net)
    outputs = net.output_shape[0] if net.output_shape else 1
    fig.suptitle(f"mlpgrad train: {data.name}, network {'-'.join(map(str, net.widths))}-{outputs}, "
                 f"{history.seconds_in_mlpgrad + history.seconds_other:.2g} s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _second_panel(data):
    if data.kind == "regression":
        return _curve if data.X.shape[1] == 1 else _predicted_vs_true
    return _regions if data.X.shape[1] == 2 else None


def _predict(net, X):
    return net.forward_batch(np.ascontiguousarray(X, dtype=net.dtype))


def _curve(ax, data, net):
    x = data.X[:, 0]
    grid = np.linspace(x.min(), x.max(), 400)
    ax.scatter(x, data.y, s=6, alpha=0.4, color="#7f7f7f", label="data")
    ax.plot(grid, _predict(net, grid[:, None]), color="#d62728", linewidth=2, label="network")
    ax.set(xlabel=data.feature_names[0] if data.feature_names else "x", ylabel="y", title="fitted curve")
    ax.legend()


def _predicted_vs_true(ax, data, net):
    predicted = _predict(net, data.X)
    ax.scatter(data.y, predicted, s=6, alpha=0.5)
    lo, hi = float(min(data.y.min(), predicted.min())), float(max(data.y.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
    ax.set(xlabel="true", ylabel="predicted", title="predicted against true")


def _regions(ax, data, net):
    margin = 0.1 * (data.X.max(axis=0) - data.X.min(axis=0))
    lo, hi = data.X.min(axis=0) - margin, data.X.max(axis=0) + margin
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    out = _predict(net, np.column_stack([g1.ravel(), g2.ravel()]))
    region = (out > 0).astype(int) if out.ndim == 1 else np.argmax(out, axis=1)
    ax.contourf(g1, g2, region.reshape(g1.shape), levels=np.arange(len(data.classes) + 1) - 0.5,
                cmap="coolwarm", alpha=0.35)
    ax.scatter(data.X[:, 0], data.X[:, 1], c=data.y, cmap="coolwarm", s=8, edgecolors="none")
    names = data.feature_names or ["x1", "x2"]
    ax.set(xlabel=names[0], ylabel=names[1], title="decision regions")
