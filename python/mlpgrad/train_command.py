"""``python -m mlpgrad train``: train a network on a built-in task or on the user's data, with ``mlpgrad.fit``.

Tasks (:mod:`mlpgrad.train_data`, no download): ``sine`` (the default, a 1-D regression) and ``spirals``
(two-class classification in the plane); or ``--data FILE.csv|FILE.npz --target COLUMN``. The inputs (and a
regression's target) are standardised with the training split's mean and standard deviation unless
``--no-standardise``; the standardisation is folded into the first layer and the output afterwards, so the
network that is saved (``--save``) and plotted (``--plot``) takes the raw inputs and predicts in the data's
units. The losses reported are those training minimised (in standardised units when standardised).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

__all__ = ["add_parser", "run"]

#: Per task: hidden widths, epochs, batch size and learning rate (Adam) when not given.
DEFAULTS = {"sine": ((32, 32), 200, 32, 0.01), "spirals": ((64, 64), 300, 32, 0.01),
            "data": ((64, 64), 100, 32, 0.001)}
LOSS_NAMES = ("mse", "logistic", "softmax_cross_entropy")


def add_parser(subparsers, positive_int, int_list) -> None:
    """The ``train`` subcommand (``positive_int``, ``int_list``: the CLI's option parsers)."""
    from . import ACTIVATIONS
    from .train_data import TASKS

    p = subparsers.add_parser(
        "train", help="train a network on a built-in task or on a CSV/NPZ file",
        description="Train a dense network with mlpgrad.fit on a built-in task (no download) or on your data, "
        "print the final training and validation loss (and accuracy for classification) and where the time "
        "went, optionally save the model (.npz) and plot the loss curves with the fitted curve or the decision "
        "regions.")
    p.add_argument("--task", choices=tuple(TASKS), default="sine",
                   help="built-in task: sine (1-D regression, the default) or spirals (two classes)")
    p.add_argument("--data", metavar="FILE", help="train on FILE.csv (header row, numbers) or FILE.npz instead")
    p.add_argument("--target", metavar="COLUMN", help="with --data: the target column's name (or index)")
    p.add_argument("--no-standardise", dest="standardise", action="store_false",
                   help="train on the raw inputs and targets (default: standardised)")
    p.add_argument("--hidden", type=int_list("width"), metavar="K,...", help="hidden widths (default per task)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="tanh", help="default: tanh")
    p.add_argument("--loss", choices=LOSS_NAMES, help="default: mse for regression, logistic for two classes, "
                   "softmax_cross_entropy for more; with --data, logistic or softmax_cross_entropy makes the "
                   "target's distinct values the classes")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="default: adam")
    p.add_argument("--lr", type=float, help="learning rate (default per task)")
    p.add_argument("--momentum", type=float, default=0.9, help="with --optimizer sgd (default: 0.9)")
    p.add_argument("--epochs", type=positive_int, help="default per task")
    p.add_argument("--batch-size", type=positive_int, help="default: 32")
    p.add_argument("--validation-fraction", type=float, default=0.2, help="held out for validation (default 0.2)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="default: float64")
    p.add_argument("--threads", type=positive_int, help="mlpgrad's batch threads (mlpgrad.set_num_threads)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, weights and batches (default: 0)")
    p.add_argument("--save", metavar="MODEL.npz", help="save the trained network (net.save)")
    p.add_argument("--plot", metavar="FILE.png", help="loss curves and the fit (needs matplotlib: pip install "
                   "'mlpgrad[plot]')")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when the output is a terminal)")
    p.set_defaults(func=run, check=_check)


def _check(args, parser) -> None:
    if args.data is None and args.target is not None:
        parser.error("--target: only with --data")
    if not 0 <= args.validation_fraction < 1:
        parser.error(f"--validation-fraction: expected a number in [0, 1), got {args.validation_fraction:g}")
    if args.lr is not None and not (args.lr >= 0 and math.isfinite(args.lr)):
        parser.error(f"--lr: expected a finite number >= 0, got {args.lr:g}")
    if not 0 <= args.momentum < 1:
        parser.error(f"--momentum: expected a number in [0, 1), got {args.momentum:g}")
    if args.seed < 0:
        parser.error(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.hidden == []:
        parser.error("--hidden: expected at least one width")


def run(args, console) -> int:
    """Train, report, save and plot; exit code 2 for unusable data or a missing plotting library."""
    from rich.markup import escape

    from .train_data import DataError

    try:
        if args.plot:
            from .bench.plot import require_matplotlib

            require_matplotlib()  # say so now, not after training
        return _train(args, console)
    except (DataError, ImportError) as e:
        console.print(f"[red]error[/red]: {escape(str(e))}")
        return 2


def _dataset(args):
    from .train_data import TASKS, load

    if args.data is None:
        return TASKS[args.task](seed=args.seed)
    return load(args.data, args.target, classify=args.loss in ("logistic", "softmax_cross_entropy"))


def _loss_name(args, data) -> str:
    from .train_data import DataError

    classes = len(data.classes)
    if data.kind == "regression":
        if args.loss not in (None, "mse"):
            raise DataError(f"--loss {args.loss}: the task is a regression; use mse")
        return "mse"
    loss = args.loss or ("logistic" if classes <= 2 else "softmax_cross_entropy")
    if loss == "mse":
        raise DataError("--loss mse: the task is a classification; use logistic or softmax_cross_entropy")
    if loss == "logistic" and classes != 2:
        raise DataError(f"--loss logistic: needs a target with two classes; it has {classes}")
    if classes < 2:
        raise DataError(f"--loss {loss}: the target has one class only")
    return loss


def _split(n, fraction, rng):
    order = rng.permutation(n)
    held = int(round(fraction * n)) if fraction > 0 else 0
    held = min(max(held, 1 if fraction > 0 else 0), n - 1)
    return order[held:], order[:held]


def _train(args, console) -> int:
    import mlpgrad
    from mlpgrad import losses, optim

    data = _dataset(args)
    loss_name = _loss_name(args, data)
    hidden, epochs, batch_size, lr = DEFAULTS["data" if args.data else args.task]
    hidden, epochs = args.hidden or hidden, args.epochs or epochs
    batch_size = args.batch_size or batch_size
    lr = args.lr if args.lr is not None else (lr if args.optimizer == "adam" else 10 * lr)
    _set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train_rows, val_rows = _split(len(data.X), args.validation_fraction, rng)
    regression = data.kind == "regression"
    scale = _Standardisation(data.X[train_rows], data.y[train_rows] if regression else None, args.standardise)
    X, y = scale.inputs(data.X), scale.targets(data.y) if regression else data.y
    if loss_name == "logistic":
        y = y.astype(np.float64)
    outputs = len(data.classes) if loss_name == "softmax_cross_entropy" else None
    net = mlpgrad.MLP.random((X.shape[1],) + tuple(hidden), args.activation, outputs=outputs, biases=True,
                             dtype=np.dtype(args.dtype), seed=args.seed)
    opt = optim.Adam(net, lr=lr) if args.optimizer == "adam" else optim.SGD(net, lr=lr, momentum=args.momentum)
    validation = (X[val_rows], y[val_rows]) if len(val_rows) else None
    history = mlpgrad.fit(net, X[train_rows], y[train_rows], loss=loss_name, optimizer=opt, epochs=epochs,
                          batch_size=batch_size, validation_data=validation, seed=args.seed, progress=args.progress)
    loss_fn = getattr(losses, loss_name)
    results = {}
    for part, rows in (("train", train_rows), ("validation", val_rows)):
        if len(rows):
            out = net.forward_batch(X[rows].astype(net.dtype))
            results[part] = (len(rows), loss_fn(out, y[rows])[0], None if regression else _accuracy(out, y[rows]))
    _report(console, args, data, net, loss_name, history, results, epochs, batch_size, lr)
    scale.fold_into(net)  # from here on, the network takes raw inputs and predicts in the data's units
    if args.save:
        net.save(args.save)
        console.print(f"model written to {args.save}")
    if args.plot:
        from .train_plot import plot

        plot(args.plot, history, data, net, loss_name)
        console.print(f"plot written to {args.plot}")
    return 0


def _accuracy(outputs, labels) -> float:
    predicted = outputs > 0 if outputs.ndim == 1 else np.argmax(outputs, axis=1)
    return float(np.mean(predicted == labels))


def _set_threads(threads) -> None:
    if threads is not None:
        import mlpgrad

        mlpgrad.set_num_threads(threads)


class _Standardisation:
    """Mean 0, standard deviation 1 per input column (and for a regression target), from the training split;
    ``fold_into`` rewrites the network so that it computes the same function of the raw data:
    W¹x̃ + b¹ with x̃ = (x − μ)/σ is (W¹/σ)x + (b¹ − (W¹/σ)μ); ŷ = σ_y ŷ̃ + μ_y gives α·σ_y, β·σ_y + μ_y."""

    def __init__(self, X, y, on: bool) -> None:
        self.on = on
        self.mean, self.std = (X.mean(axis=0), _nonzero(X.std(axis=0))) if on else (0.0, 1.0)
        self.y_mean, self.y_std = (float(y.mean()), float(_nonzero(y.std()))) if on and y is not None else (0.0, 1.0)

    def inputs(self, X):
        return (X - self.mean) / self.std

    def targets(self, y):
        return (y - self.y_mean) / self.y_std

    def fold_into(self, net) -> None:
        if not self.on:
            return
        W, b = net.weights[0], net.biases[0]
        np.divide(W, self.std.astype(W.dtype), out=W)
        b -= (W.astype(np.float64) @ self.mean).astype(b.dtype)
        net.alpha[...] *= self.y_std
        net.output_bias[...] = net.output_bias * self.y_std + self.y_mean


def _nonzero(std):
    return np.where(std > 0, std, 1.0)


def _report(console, args, data, net, loss_name, history, results, epochs, batch_size, lr) -> None:
    from rich.table import Table

    from . import get_num_threads

    info = Table.grid(padding=(0, 2))
    info.add_row("[bold]mlpgrad train[/bold]", f"{data.name}: {data.kind}, {len(data.X):,} examples, "
                 f"{data.X.shape[1]} input(s)" + (f", {len(data.classes)} classes" if data.classes else ""))
    outputs = len(data.classes) if loss_name == "softmax_cross_entropy" else 1
    info.add_row("network", f"{'-'.join(map(str, net.widths))}-{outputs}, {args.activation}, biases, {net.dtype}")
    info.add_row("training", f"{loss_name}, {args.optimizer} (lr {lr:g}), {history.epochs} of {epochs} epochs, "
                 f"batches of {batch_size}, seed {args.seed}, {get_num_threads()} thread(s)"
                 + ("" if args.standardise else ", not standardised"))
    console.print(info)
    table = Table(title="final losses" + (" (standardised units)" if args.standardise and data.kind == "regression"
                                          else ""))
    table.add_column("split")
    table.add_column("examples", justify="right")
    table.add_column(f"{loss_name} loss", justify="right")
    if data.kind == "classification":
        table.add_column("accuracy", justify="right")
    for part, (examples, loss, accuracy) in results.items():
        row = [part, f"{examples:,}", f"{loss:.4g}"]
        if accuracy is not None:
            row.append(f"{100 * accuracy:.1f} %")
        table.add_row(*row)
    console.print(table)
    total = history.seconds_in_mlpgrad + history.seconds_other
    console.print(f"time: {total:.3g} s, {history.seconds_in_mlpgrad:.3g} s in mlpgrad (forward, backward, "
                  f"optimiser) and {history.seconds_other:.3g} s in the rest (batching, losses, progress)")
