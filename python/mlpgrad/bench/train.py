"""``python -m mlpgrad bench --train``: mlpgrad.sklearn against scikit-learn's estimators and a PyTorch loop.

Each case is one of scikit-learn's bundled datasets (no download), split 75/25 with ``random_state=0``, inputs
standardised with the training split's statistics (and a regression target too), fitted with the SAME
parameters by ``sklearn.neural_network``'s estimator and by ``mlpgrad.sklearn``'s, on one thread (BLAS pinned
with threadpoolctl; mlpgrad.set_num_threads(1)). ``n_iter_no_change`` is set to ``max_iter`` so
that both run every epoch: the fit times compare the same work. The PyTorch loop (if torch is installed) trains
the same model (Linear layers with biases, the same activation, batch size, epochs, Adam or SGD settings, loss
and L2 term) with torch's own initialisation, on one thread. Fit times are medians of interleaved repeats; the
test error is 1 − R² for regression and 1 − accuracy for classification.

The second measurement is the cost of biases: one training step (forward_batch, backward_batch into
parameter-only gradients, an SGD step) of the same network with and without biases, timed in pairs of runs
(``timing.time_ratio``): the ratio is the median of the pairs' ratios.
"""

from __future__ import annotations

import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np

from ..train import num_threads
from .timing import blas_description, core_count, cpu_model, one_blas_thread, time_ratio

__all__ = ["Case", "CASES", "CaseResult", "BiasStep", "run_cases", "run_bias_steps", "render", "to_json",
           "to_markdown", "run_command", "SPEEDUP_TARGET", "BIAS_TARGET"]

SPEEDUP_TARGET = 2.0   # mlpgrad.sklearn fits at least 2× faster than scikit-learn (issue 11)
BIAS_TARGET = 1.05     # a training step with biases costs at most 1.05× one without


@dataclass(frozen=True)
class Case:
    dataset: str       # the sklearn.datasets loader's name without "load_"
    estimator: str     # "MLPRegressor" or "MLPClassifier"
    params: tuple      # (name, value) pairs, the same for both estimators

    @property
    def name(self) -> str:
        solver = dict(self.params).get("solver", "adam")
        return f"{self.dataset} ({self.estimator[3:].lower()}, {solver})"


CASES = (
    # diabetes: 331 examples overfit a (100,) network at scikit-learn's alpha; alpha=10 gives a usable model
    Case("diabetes", "MLPRegressor", (("hidden_layer_sizes", (100,)), ("alpha", 10.0), ("max_iter", 500))),
    Case("breast_cancer", "MLPClassifier", (("hidden_layer_sizes", (100,)), ("max_iter", 200))),
    Case("digits", "MLPClassifier", (("hidden_layer_sizes", (100,)), ("max_iter", 200))),
    Case("digits", "MLPClassifier", (("hidden_layer_sizes", (100,)), ("solver", "sgd"), ("max_iter", 200))),
    # tol=0: L-BFGS runs all its iterations, in both
    Case("digits", "MLPClassifier", (("hidden_layer_sizes", (100,)), ("solver", "lbfgs"), ("max_iter", 200),
                                     ("tol", 0.0))),
)
QUICK_EPOCHS = 20


@dataclass
class Fit:
    seconds: float           # median fit time
    test_error: float
    epochs: int


@dataclass
class CaseResult:
    case: str
    shape: str               # n_train × K_0 → outputs
    params: dict
    sklearn: Fit
    mlpgrad: Fit
    torch: Optional[Fit] = None
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.sklearn.seconds / self.mlpgrad.seconds


@dataclass
class BiasStep:
    network: str
    batch: int
    dtype: str
    without_ns: float
    with_ns: float
    ratio: float  # the median of the paired runs' ratios (timing.time_ratio), not with_ns / without_ns


@dataclass
class TrainBench:
    cases: List[CaseResult] = field(default_factory=list)
    bias_steps: List[BiasStep] = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    repeats: int = 5


# ----------------------------------------------------------------------------- estimators
def _data(case: Case):
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    X, y = getattr(sklearn.datasets, f"load_{case.dataset}")(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    if case.estimator == "MLPRegressor":
        y_mean, y_std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - y_mean) / y_std, (y_test - y_mean) / y_std
    return X_train, X_test, y_train, y_test


def _test_error(estimator, X_test, y_test) -> float:
    return 1.0 - float(estimator.score(X_test, y_test))  # 1 − R², or 1 − accuracy


def _estimators(case: Case):
    import sklearn.neural_network

    from .. import sklearn as mlpgrad_sklearn

    params = dict(case.params, random_state=0)
    params.setdefault("n_iter_no_change", params["max_iter"])  # every epoch runs: the same work for both
    return params, {"sklearn": getattr(sklearn.neural_network, case.estimator)(**params),
                    "mlpgrad": getattr(mlpgrad_sklearn, case.estimator)(**params)}


def run_cases(cases=CASES, repeats: int = 5, quick: bool = False, progress=None) -> List[CaseResult]:
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    torch = _torch()
    results = []
    for i, case in enumerate(cases):
        if quick:
            case = Case(case.dataset, case.estimator, tuple((k, QUICK_EPOCHS if k == "max_iter" else v)
                                                            for k, v in case.params))
        if progress:
            progress(i, len(cases), case.name)
        X_train, X_test, y_train, y_test = _data(case)
        params, estimators = _estimators(case)
        seconds = {name: [] for name in estimators}
        fitted = {}
        with warnings.catch_warnings(), one_blas_thread(), num_threads(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(repeats):  # interleaved: a slow spell of the machine hits both alike
                for name, estimator in estimators.items():
                    fitted[name] = clone(estimator)
                    t0 = time.perf_counter()
                    fitted[name].fit(X_train, y_train)
                    seconds[name].append(time.perf_counter() - t0)
        fits = {name: Fit(statistics.median(seconds[name]), _test_error(fitted[name], X_test, y_test),
                          int(fitted[name].n_iter_)) for name in estimators}
        outputs = 1 if case.estimator == "MLPRegressor" else fitted["sklearn"].n_outputs_
        result = CaseResult(case.name, f"{len(X_train)} × {X_train.shape[1]} → {outputs}", params,
                            fits["sklearn"], fits["mlpgrad"])
        if torch is None:
            result.note = "PyTorch not installed"
        elif params.get("solver", "adam") == "lbfgs":
            result.note = "no PyTorch loop for lbfgs (torch.optim.LBFGS is another algorithm)"
        else:
            from .train_torch import fit_torch

            result.torch = fit_torch(torch, case.estimator, params, X_train, y_train, X_test, y_test,
                                     epochs=fits["sklearn"].epochs, repeats=repeats)
        results.append(result)
    return results


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ----------------------------------------------------------------------------- biases
BIAS_NETWORKS = ((784, 256, 256), (64, 64, 64, 64), (256, 256, 256, 256, 256))
BIAS_BATCHES = (32, 256)
# A timed run lasts about this long, so the largest steps (~8 ms) make 3 calls a run, not 1: their ratios
# spread over 0.94-1.03 across five runs of the bench with 5 ms runs, over 0.99-1.02 across three with these.
BIAS_RUN_NS = 25_000_000


def run_bias_steps(networks=BIAS_NETWORKS, batches=BIAS_BATCHES, dtypes=("float32", "float64"),
                   repeats: int = 21, run_ns: int = BIAS_RUN_NS, progress=None) -> List[BiasStep]:
    """One training step with and without biases, timed in pairs of runs (timing.time_ratio)."""
    import mlpgrad
    from mlpgrad import optim

    results = []
    cells = [(w, b, d) for w in networks for b in batches for d in dtypes]
    for i, (widths, B, dtype) in enumerate(cells):
        if progress:
            progress(i, len(cells), f"biases: {'-'.join(map(str, widths))}-1, B = {B}, {dtype}")
        X = np.random.default_rng(0).standard_normal((B, widths[0])).astype(dtype)
        dy = np.full(B, 1.0 / B, dtype=dtype)
        calls = {}
        for name, biases in (("without", False), ("with", True)):
            net = mlpgrad.MLP.random(widths, "relu", biases=biases, dtype=np.dtype(dtype), seed=0)
            grads, opt = net.new_gradients(batch=B, x=False), optim.SGD(net, lr=0.0)

            def step(net=net, grads=grads, opt=opt):
                net.forward_batch(X)
                net.backward_batch(dy, out=grads)
                opt.step(grads)
            calls[name] = step
        with num_threads(1):
            without_ns, with_ns, ratio = time_ratio(calls["without"], calls["with"], repeats=repeats, run_ns=run_ns)
        results.append(BiasStep(f"{'-'.join(map(str, widths))}-1", B, dtype, without_ns, with_ns, ratio))
    return results


# ----------------------------------------------------------------------------- report
def _machine() -> dict:
    import sklearn

    import mlpgrad

    libraries = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                 "mlpgrad": mlpgrad.__version__}
    torch = _torch()
    if torch is not None:
        libraries["torch"] = torch.__version__
    return {"cpu": cpu_model(), "cores": core_count(), "platform": platform.platform(), "blas": blas_description(),
            "libraries": libraries, "date": time.strftime("%Y-%m-%d")}


def _seconds(fit: Optional[Fit]) -> str:
    return "—" if fit is None else f"{fit.seconds:.3g} s"


def _error(fit: Optional[Fit]) -> str:
    return "—" if fit is None else f"{100 * fit.test_error:.2f} %"


HEADERS = ["case", "train × K₀ → out", "epochs", "scikit-learn", "mlpgrad", "speed-up", "PyTorch",
           "test error sklearn", "mlpgrad", "PyTorch"]


def _rows(run: TrainBench, markup: bool):
    for r in run.cases:
        met = r.speedup >= SPEEDUP_TARGET
        speed = f"{r.speedup:.2f}×"
        if markup:
            speed = f"[green]{speed}[/green]" if met else f"[red]{speed}[/red]"
        epochs = str(r.sklearn.epochs) if r.sklearn.epochs == r.mlpgrad.epochs else \
            f"{r.sklearn.epochs} / {r.mlpgrad.epochs}"
        yield [r.case, r.shape, epochs, _seconds(r.sklearn), _seconds(r.mlpgrad), speed, _seconds(r.torch),
               _error(r.sklearn), _error(r.mlpgrad), _error(r.torch)]


BIAS_HEADERS = ["network", "B", "dtype", "step without biases", "with biases", "ratio"]


def _bias_rows(run: TrainBench, markup: bool):
    from .report import fmt_time

    for s in run.bias_steps:
        ratio = f"{s.ratio:.3f}"
        if markup:
            ratio = f"[green]{ratio}[/green]" if s.ratio <= BIAS_TARGET else f"[red]{ratio}[/red]"
        yield [s.network, str(s.batch), s.dtype, fmt_time(s.without_ns), fmt_time(s.with_ns), ratio]


def _footer(run: TrainBench) -> List[str]:
    lines = []
    if run.cases:
        met = sum(r.speedup >= SPEEDUP_TARGET for r in run.cases)
        lines.append(f"Fit time: median of {run.repeats} interleaved fits, one thread; target mlpgrad ≥ "
                     f"{SPEEDUP_TARGET:g}× faster than scikit-learn: met in {met} of {len(run.cases)} cases.")
        lines += [f"{r.case}: {r.note}" for r in run.cases if r.note]
    if run.bias_steps:
        worst = max(run.bias_steps, key=lambda s: s.ratio)
        lines.append(f"Biases: step time with ÷ without, target ≤ {BIAS_TARGET:g}; worst {worst.ratio:.3f} "
                     f"({worst.network}, B = {worst.batch}, {worst.dtype}).")
    m = run.machine
    if m:
        lines.append(f"{m['cpu']}, {m['cores']} cores, {m['blas']}; "
                     + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()) + f"; {m['date']}.")
    return lines


def render(run: TrainBench, console) -> None:
    from rich.table import Table

    if run.cases:
        table = Table(title="fitting scikit-learn's bundled datasets: the same parameters, one thread")
        for h in HEADERS:
            table.add_column(h, justify="left" if h == "case" else "right")
        for row in _rows(run, markup=True):
            table.add_row(*row)
        console.print(table)
    if run.bias_steps:
        table = Table(title="one training step (forward, backward, SGD step) with and without biases")
        for h in BIAS_HEADERS:
            table.add_column(h, justify="left" if h == "network" else "right")
        for row in _bias_rows(run, markup=True):
            table.add_row(*row)
        console.print(table)
    for line in _footer(run):
        console.print(line)


def to_markdown(run: TrainBench) -> str:
    from .report import markdown_table

    lines = []
    if run.cases:
        lines += markdown_table(HEADERS, list(_rows(run, markup=False)), left=("case",)) + [""]
    if run.bias_steps:
        lines += markdown_table(BIAS_HEADERS, list(_bias_rows(run, markup=False)), left=("network",)) + [""]
    return "\n".join(lines + _footer(run)) + "\n"


def to_json(run: TrainBench, command: Optional[str] = None) -> dict:
    cases = []
    for r in run.cases:
        d = asdict(r)
        d["params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in r.params.items()}
        d["speedup"] = r.speedup
        cases.append(d)
    return {"command": command, "machine": run.machine, "repeats": run.repeats, "speedup_target": SPEEDUP_TARGET,
            "bias_target": BIAS_TARGET, "cases": cases,
            "bias_steps": [asdict(s) for s in run.bias_steps]}


def run_command(args, console) -> int:
    """``bench --train``: both measurements, the tables, --json and --markdown."""
    from .command import progress_bar, write_files

    try:
        import sklearn  # noqa: F401
    except ImportError:
        console.print("[red]error[/red]: bench --train needs scikit-learn: pip install 'mlpgrad[sklearn]'")
        return 2
    run = TrainBench(machine=_machine(), repeats=args.repeats or 5)
    cases = CASES
    with progress_bar(console, "fitting", len(cases) + 1) as progress:
        run.cases = run_cases(cases, repeats=run.repeats, quick=args.quick, progress=progress)
        progress(len(cases), len(cases) + 1, "biases")
        networks = BIAS_NETWORKS[:1] if args.quick else BIAS_NETWORKS
        run.bias_steps = run_bias_steps(networks, run_ns=BIAS_RUN_NS // 5 if args.quick else BIAS_RUN_NS)
    render(run, console)
    write_files(args, console, run, to_json, lambda r: to_markdown(r))
    return 0
