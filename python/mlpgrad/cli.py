"""Command line interface: ``python -m mlpgrad <command>``.

Commands are argparse subcommands. To add one (e.g. ``bench``), write a function
``_add_<name>(subparsers)`` that creates its parser and sets ``func=<handler>`` with
``handler(args, console) -> int`` (``console`` is a ``rich.console.Console``), optionally
``check=<validator>`` with ``validator(args, subparser)`` calling ``subparser.error(...)``
for invalid option combinations, and append it to ``_SUBCOMMANDS``.

``demo`` builds the network of the backprop notes (T square K x K layers), computes
ŷ and all gradients with the C++ core, checks them against the pure-Python oracle and
against central finite differences, and times the core against the NumPy peer
(:mod:`mlpgrad.numpy_backprop`) and the oracle.

``bench`` times mlpgrad against every installed peer on a grid of sizes (:mod:`mlpgrad.bench.command`:
NumPy, the oracle, PyTorch, JAX; gradients checked first), with ``--targets`` measures the performance
floors of the core (:mod:`mlpgrad.bench.targets`), with ``--training-step`` times one training step of
mini-batch networks (:mod:`mlpgrad.bench.training_step`), with ``--train`` compares mlpgrad.sklearn's
estimators with scikit-learn's and a PyTorch loop (:mod:`mlpgrad.bench.train`).

``train`` trains a network on a built-in task or the user's data (:mod:`mlpgrad.train_command`).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .bench.timing import REPEAT_NS, REPEATS, blas_description, one_blas_thread, time_per_call
from .bench.timing import core_count as _core_count
from .bench.timing import cpu_model as _cpu_model
from .numpy_backprop import ACTIVATIONS

__all__ = ["main", "build_parser"]

#: Relative tolerances (max |Δ| / max |g| per gradient group) by dtype.
TOLERANCES = {
    "float64": {"oracle": 1e-10, "fd": 1e-6},
    "float32": {"oracle": 1e-4, "fd": 1e-3},
}
FD_STEP = 1e-6
FD_SAMPLE = {"weights": 136, "alpha": 32, "x": 32}  # at most 200 finite-difference entries
MAX_PARAMS = 1 << 22  # T K^2 limit: the pure-Python oracle is O(T K^2) per call
ORACLE_REPEATS = 3


# ----------------------------------------------------------------------------- options
def _int_at_least(lo, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonnegative_int = _int_at_least(0, "a non-negative integer")


def _add_demo(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="check the core's gradients and time it on the notes' network",
        description="Build T square K x K layers (W ~ N(0, 1/K), alpha, x ~ N(0, 1)), compute ŷ and "
        "its gradients with mlpgrad, compare them with the pure-Python oracle and with central finite "
        "differences, and time mlpgrad, NumPy and the oracle. Exit code 1 if a check fails.",
    )
    p.add_argument("-K", "--width", type=_positive_int, default=64, help="layer width K (default: 64)")
    p.add_argument("-T", "--depth", type=_nonnegative_int, default=4,
                   help="number of layers T (default: 4; 0 is the network ŷ = αᵀx)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="default: float64")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="default: relu")
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=_demo, check=_check_demo)


def _check_demo(args, parser):
    if args.depth * args.width**2 > MAX_PARAMS:
        parser.error(f"T·K² = {args.depth * args.width**2:,} weights is too large for the demo (limit "
                     f"{MAX_PARAMS:,}: the pure-Python oracle needs O(T·K²) per call)")


def _int_list(what):
    one = _int_at_least(1, what)

    def parse(text):
        try:
            return [one(v) for v in text.split(",") if v.strip()]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}s, got {text!r}") from None

    parse.__name__ = f"list of {what}s"
    return parse


def _choice_list(choices, what):
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what} among "
                                             f"{', '.join(choices)}, got {text!r}")
        return values

    parse.__name__ = f"list of {what}"
    return parse


def _network_list(text):
    """'784-256-256-1,64-64-1' -> [(784, 256, 256, 1), (64, 64, 1)]: positive widths ending in the output's 1."""
    one = _int_at_least(1, "width")
    try:
        nets = [tuple(one(k) for k in net.split("-")) for net in text.split(",") if net.strip()]
    except argparse.ArgumentTypeError:
        nets = []
    if not nets or any(len(net) < 2 or net[-1] != 1 for net in nets):
        raise argparse.ArgumentTypeError(f"expected comma-separated networks of positive widths ending in 1 "
                                         f"(e.g. 784-256-256-1), got {text!r}")
    return nets


def _add_bench(subparsers):
    from .bench.peers import PEERS

    p = subparsers.add_parser(
        "bench",
        help="time mlpgrad against NumPy, the oracle, PyTorch and JAX",
        description="Time value_and_grad (one example) and value_and_grad_batch of mlpgrad and of every "
        "installed peer (NumPy; the pure-Python oracle where a call takes under a second; PyTorch autograd and "
        "JAX jit(value_and_grad) if installed, e.g. pip install 'mlpgrad[compare]') on a grid of widths, "
        "depths, batch sizes and dtypes. Each peer's gradients are checked against mlpgrad's before it is "
        "timed. Prints a table of median times and mlpgrad's speed-ups; exit code 1 if a peer disagreed. "
        "--targets measures the performance floors of the core instead.",
    )
    p.add_argument("--targets", action="store_true", help="measure the performance floors of the core instead")
    p.add_argument("--training-step", action="store_true",
                   help="time one training step (value and gradient of Σ_b ŷ_b, ReLU, no biases) of the networks "
                   "of issue 10 instead, with and without ∂x, peers at their default threads and on one thread, "
                   "in GFLOP/s and as a fraction of a peak measured in the same run")
    p.add_argument("--train", action="store_true",
                   help="fit mlpgrad.sklearn's estimators and scikit-learn's (and a PyTorch loop) with the same "
                   "parameters on scikit-learn's bundled datasets, one thread: fit time and test error; and the "
                   "cost of biases in a training step (needs pip install 'mlpgrad[sklearn]')")
    p.add_argument("--dag", action="store_true",
                   help="time DAG.value_and_grad on random DAGs of in-degree 8 (E = 1e4..1e7) against PyTorch "
                   "and the oracle, with the slope of time against E, and DAG.from_mlp against MLP (issue 12)")
    p.add_argument("--networks", type=_network_list, metavar="K0-...-1,...",
                   help="with --training-step: the networks' widths, ending in 1 (default: 784-256-256-1,"
                   "64-64-64-64-1,256-256-256-256-256-1)")
    p.add_argument("--quick", action="store_true",
                   help="a small grid that runs in under 30 s (with --targets: skip the K = 1024/2048 cases)")
    p.add_argument("--json", metavar="FILE", help="also write every measurement and the machine as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw time per call against T·K² and the speed-ups "
                   "(needs matplotlib: pip install 'mlpgrad[plot]')")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="threads of the peers: BLAS/OpenMP (threadpoolctl), torch.set_num_threads, XLA "
                   "flags, and mlpgrad.set_num_threads for mlpgrad's batch calls (default: 1)")
    p.add_argument("--peers", type=_choice_list([n for n in PEERS if n != "mlpgrad"], "peers"),
                   help="comma-separated peers to compare with (default: all of "
                   f"{','.join(n for n in PEERS if n != 'mlpgrad')})")
    p.add_argument("--widths", type=_int_list("width"), metavar="K,...", help="layer widths of the grid")
    p.add_argument("--depths", type=_int_list("depth"), metavar="T,...", help="depths of the grid")
    p.add_argument("--batch-sizes", type=lambda t: [] if t.strip() in ("", "0", "none") else
                   _int_list("batch size")(t), metavar="B,...", help="batch sizes of the grid ('none': no batch cells)")
    p.add_argument("--dtypes", type=_choice_list(("float64", "float32"), "dtypes"), metavar="DTYPE,...",
                   help="float64, float32 or both (default: both)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="default: relu")
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed of the weights (default: 0)")
    p.add_argument("--repeats", type=_positive_int,
                   help="timed runs per measurement, median taken (default: 5; --quick 3; --targets 7)")
    p.add_argument("--run-ms", type=float, metavar="MS",
                   help="length of one timed run in ms (default: 10; --quick 4)")
    p.add_argument("--rounds", type=_positive_int,
                   help="with --training-step: turns the per-library children take at default threads, the median "
                        "over them reported (default: 3; --quick 1)")
    p.set_defaults(func=_bench, check=_check_bench)


def _check_bench(args, parser):
    modes = [name for name, on in (("--targets", args.targets), ("--training-step", args.training_step),
                                   ("--train", args.train), ("--dag", args.dag)) if on]
    if len(modes) > 1:
        parser.error(f"{' and '.join(modes)}: choose one")
    if args.train:
        grid_only = {"--plot": args.plot, "--peers": args.peers, "--widths": args.widths, "--depths": args.depths,
                     "--batch-sizes": args.batch_sizes, "--dtypes": args.dtypes, "--run-ms": args.run_ms,
                     "--threads": args.threads != 1, "--activation": args.activation != "relu",
                     "--networks": args.networks, "--rounds": args.rounds}
        given = [name for name, value in grid_only.items() if value not in (None, False)]
        if given:
            parser.error(f"{', '.join(given)}: not applicable with --train (fixed cases on one thread)")
        return
    if args.dag:
        grid_only = {"--markdown": args.markdown, "--peers": args.peers, "--widths": args.widths,
                     "--depths": args.depths, "--batch-sizes": args.batch_sizes, "--networks": args.networks,
                     "--threads": args.threads != 1, "--activation": args.activation != "relu",
                     "--rounds": args.rounds}
        given = [name for name, value in grid_only.items() if value not in (None, False)]
        if given:
            parser.error(f"{', '.join(given)}: not applicable with --dag (ReLU random DAGs on one thread, "
                         "peers mlpgrad, PyTorch and the oracle)")
    if args.training_step:
        square_grid_only = {"--plot": args.plot, "--widths": args.widths, "--depths": args.depths,
                            "--threads": args.threads != 1, "--activation": args.activation != "relu",
                            "--peers oracle": args.peers and "oracle" in args.peers,
                            "--batch-sizes none": args.batch_sizes == []}
        given = [name for name, value in square_grid_only.items() if value not in (None, False)]
        if given:
            parser.error(f"{', '.join(given)}: not applicable with --training-step (ReLU networks given by "
                         "--networks; peers at their default threads and at one thread; no oracle)")
    elif args.networks:
        parser.error("--networks: only with --training-step")
    elif args.rounds is not None:
        parser.error("--rounds: only with --training-step")
    if args.targets:
        grid_only = {"--plot": args.plot, "--markdown": args.markdown, "--peers": args.peers,
                     "--widths": args.widths, "--depths": args.depths, "--batch-sizes": args.batch_sizes,
                     "--dtypes": args.dtypes, "--run-ms": args.run_ms, "--threads": args.threads != 1,
                     "--activation": args.activation != "relu", "--seed": args.seed != 0}
        given = [name for name, value in grid_only.items() if value not in (None, False)]
        if given:
            parser.error(f"{', '.join(given)}: not applicable with --targets (the floors are fixed cases on one "
                         "thread)")
    if args.run_ms is not None and not args.run_ms > 0:
        parser.error(f"--run-ms: expected a positive number, got {args.run_ms:g}")


def _add_train(subparsers):
    from .train_command import add_parser

    add_parser(subparsers, _positive_int, _int_list)


_SUBCOMMANDS = [_add_demo, _add_bench, _add_train]


def build_parser():
    """Return ``(parser, subparsers)`` for ``python -m mlpgrad`` (one subparser per command)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="python -m mlpgrad",
                                     description="mlpgrad: backpropagation for dense networks")
    parser.add_argument("--version", action="version", version=f"mlpgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser, sub


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Usage errors print argparse's message to stderr and return 2 (``--help`` returns 0).
    """
    from rich.console import Console

    parser, sub = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "check", None) is not None:  # validation of combined options
            args.check(args, sub.choices[args.command])
    except SystemExit as exc:  # argparse exits on errors and --help; return its code instead
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args.func(args, Console(highlight=False))


# ----------------------------------------------------------------------------- helpers
def _fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def _rel(got, ref) -> float:
    """max |got - ref| / max(|ref|, |got|) over a group of entries."""
    got, ref = np.asarray(got, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    if got.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(ref))), float(np.max(np.abs(got))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(got - ref))) / scale


def _network(K, T, dtype, seed):
    """The notes' network: T K x K layers W ~ N(0, 1/K) (activations stay O(1)); alpha, x ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal((K, K)) / np.sqrt(K)).astype(dtype) for _ in range(T)]
    return weights, rng.standard_normal(K).astype(dtype), rng.standard_normal(K).astype(dtype)


def _finite_differences(forward, weights, alpha, x, grads, seed):
    """Central differences of ``forward()`` (which must read the float64 arrays ``weights``,
    ``alpha`` and ``x``, perturbed here in place) on a random sample of entries of each group.
    Returns ``{group: (max |Δ| / max |g|, entries checked, total entries)}`` where max |g| is
    taken over the whole gradient: the rounding noise of finite differences is absolute
    (about eps |ŷ| / h), so a group of tiny gradients (e.g. d/dx through many sigmoid
    layers) cannot be checked to a relative accuracy of its own."""
    rng = np.random.default_rng(seed)
    groups = {
        "weights": ([w.reshape(-1) for w in weights], [np.ravel(g) for g in grads.weights]),
        "alpha": ([alpha], [np.ravel(grads.alpha)]),
        "x": ([x], [np.ravel(grads.x)]),
    }
    scale = max(max(float(np.max(np.abs(g), initial=0.0)) for _, gs in groups.values() for g in gs),
                np.finfo(np.float64).tiny)
    result = {}
    for name, (params, gs) in groups.items():
        sizes = [p.size for p in params]
        total = sum(sizes)
        if total == 0:  # no weights at depth T = 0
            continue
        flat = rng.choice(total, size=min(total, FD_SAMPLE[name]), replace=False)
        layer = np.searchsorted(np.cumsum(sizes), flat, side="right")
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        fd, core = [], []
        for k, i in zip(layer, flat - offsets[layer]):
            p, orig = params[k], params[k][i]
            p[i] = orig + FD_STEP
            fp = forward()
            p[i] = orig - FD_STEP
            fm = forward()
            p[i] = orig
            fd.append((fp - fm) / (2 * FD_STEP))
            core.append(gs[k][i])
        result[name] = (float(np.max(np.abs(np.subtract(core, fd)))) / scale, len(flat), total)
    return result


# ----------------------------------------------------------------------------- demo
def _demo(args, console) -> int:
    import mlpgrad
    from rich.table import Table

    from . import reference
    from .numpy_backprop import NumpyMLP

    K, T, act = args.width, args.depth, args.activation
    dtype = np.dtype(args.dtype)
    tol = TOLERANCES[dtype.name]
    weights, alpha, x = _network(K, T, dtype, args.seed)
    net = mlpgrad.MLP(weights, alpha, activation=act)
    yhat, grads = net.value_and_grad(x)

    # the pure-Python oracle, on the very same (dtype-rounded) numbers, computed in float64
    w_lists, a_list, x_list = [w.tolist() for w in weights], alpha.tolist(), x.tolist()
    ryhat, ref = reference.value_and_grad(w_lists, a_list, x_list, activation=act)
    y_scale = float(np.abs(alpha.astype(np.float64)) @ np.abs(np.asarray(ref.alpha)))  # sum |alpha_i z_i^T|
    oracle = {"ŷ": abs(yhat - ryhat) / max(y_scale, np.finfo(np.float64).tiny)}
    if T:  # T = 0 has no weights
        oracle["∂ŷ/∂weights"] = _rel(np.concatenate([np.ravel(g) for g in grads.weights]),
                                     np.concatenate([np.ravel(g) for g in ref.weights]))
    oracle.update({"∂ŷ/∂alpha": _rel(grads.alpha, ref.alpha), "∂ŷ/∂x": _rel(grads.x, ref.x)})
    w64, a64, x64 = [w.astype(np.float64) for w in weights], alpha.astype(np.float64), x.astype(np.float64)
    net64 = mlpgrad.MLP(w64, a64, activation=act)  # uses w64 and a64 themselves (zero copy)
    fd = _finite_differences(lambda: net64.forward(x64), w64, a64, x64, grads, args.seed + 1)
    fd = {f"∂ŷ/∂{name}": v for name, v in fd.items()}

    info = Table.grid(padding=(0, 2))
    info.add_row("[bold]mlpgrad demo[/bold]", "backpropagation through the notes' network")
    info.add_row("network", f"K = {K}, T = {T}, {act}, {dtype.name}, {T * K * K + K:,} parameters (T·K² + K)")
    info.add_row("data", f"W ~ N(0, 1/K), α ~ N(0, 1), x ~ N(0, 1), seed {args.seed}")
    info.add_row("ŷ", f"{yhat:.17g}  (oracle: {ryhat:.17g})")
    console.print(info)

    check = Table(title="gradient check: max |Δ| / max |g|")
    check.add_column("")
    check.add_column("vs oracle", justify="right")
    check.add_column("vs finite differences", justify="right")
    for name, err in oracle.items():
        f = "" if name not in fd else f"{fd[name][0]:.1e}  ({fd[name][1]:,} of {fd[name][2]:,})"
        check.add_row(name, f"{err:.1e}", f)
    console.print(check)
    console.print(f"Finite differences: central, h = {FD_STEP:g}, on the core's float64 forward, on a random "
                  f"sample of at most {sum(FD_SAMPLE.values())} entries only (to stay fast); their max |g| is "
                  "over the whole gradient (finite-difference noise is absolute).\n")

    # timing: median per value_and_grad call, outputs preallocated
    out = net.new_gradients()
    peer = NumpyMLP(weights, alpha, act)
    peer_out = peer.new_gradients()
    rows = [("mlpgrad (C++ core)", time_per_call(net.value_and_grad, x, out=out))]
    with one_blas_thread():
        rows.append(("NumPy (numpy_backprop)", time_per_call(peer.value_and_grad, x, out=peer_out)))
    rows.append(("pure Python (oracle)", time_per_call(reference.value_and_grad, w_lists, a_list, x_list,
                                                        activation=act, repeats=ORACLE_REPEATS)))
    timing = Table(title="time per value_and_grad call (out= preallocated)")
    for col in ("implementation", "time/call", "calls/repeat", "time ÷ mlpgrad"):
        timing.add_column(col, justify="left" if col == "implementation" else "right")
    base = rows[0][1][0]
    for label, (ns, n) in rows:
        ratio = ns / base
        timing.add_row(label, _fmt_time(ns), f"{n:,}", f"{ratio:.2f}×" if ratio < 10 else f"{ratio:,.0f}×")
    console.print(timing)
    console.print(f"Median of {REPEATS} repeats (oracle: {ORACLE_REPEATS}) of ~{_fmt_time(REPEAT_NS)} each. "
                  f"NumPy: {blas_description()}, one thread.\n")

    failures = [f"{name} vs oracle: {err:.2e} > {tol['oracle']:.0e}"
                for name, err in oracle.items() if not err <= tol["oracle"]]
    failures += [f"{name} vs finite differences: {err:.2e} > {tol['fd']:.0e}"
                 for name, (err, _, _) in fd.items() if not err <= tol["fd"]]
    if failures:
        console.print(f"[bold red]FAILED[/bold red]: the core's results exceed the {dtype.name} tolerances:")
        for line in failures:
            console.print(f"  {line}")
        return 1
    console.print(f"[bold green]OK[/bold green]: the core agrees with the oracle (tolerance {tol['oracle']:.0e}) "
                  f"and with finite differences ({tol['fd']:.0e})")
    return 0


# ----------------------------------------------------------------------------- bench
def _bench(args, console) -> int:
    if args.train:
        from .bench.train import run_command

        return run_command(args, console)
    if args.training_step:
        from .bench.training_report import run_command

        return run_command(args, console)
    if not args.targets:
        from .bench.command import run

        return run(args, console)
    return _bench_targets(args, console)


def _bench_targets(args, console) -> int:
    import json
    import platform

    from rich.table import Table

    from .bench.targets import run_targets

    with console.status("measuring") as status:
        results = run_targets(args.repeats or REPEATS, args.quick,
                              progress=lambda d: status.update(f"measuring {d}"))
    table = Table(title="mlpgrad performance targets (ratio ≥ target means met)")
    for col in ("case", "ratio measured", "mlpgrad", "peer", "ratio", "target", ""):
        table.add_column(col, justify="left" if col in ("case", "ratio measured") else "right")
    for r in results:
        table.add_row(r.case, r.measure, _fmt_time(r.mlpgrad_ns), _fmt_time(r.peer_ns), f"{r.ratio:.2f}",
                      f"{r.target:g}", "[green]met[/green]" if r.met else "[red]missed[/red]")
    console.print(table)
    machine = {"processor": _cpu_model(), "cores": _core_count(), "python": platform.python_version(),
               "numpy": np.__version__, "blas": blas_description()}
    console.print(f"{machine['processor']}, {machine['cores']} cores; NumPy {machine['numpy']} "
                  f"with {machine['blas']}, one thread. Median of {args.repeats or REPEATS} interleaved runs.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "targets": [r.as_dict() for r in results]}, f, indent=2)
    return 0
