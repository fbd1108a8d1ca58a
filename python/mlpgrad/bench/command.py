"""``python -m mlpgrad bench`` (the comparison grid): options to grid, progress bar, table, files.

The argument parser lives in :mod:`mlpgrad.cli`; :func:`run` receives its namespace.
"""
from __future__ import annotations

import contextlib
import json
import shlex

from . import peers as peers_mod
from .grid import DEFAULT_GRID, QUICK_GRID, GridSpec, run_grid

__all__ = ["run", "grid_spec", "timing", "progress_bar", "write_files", "QUICK_REPEATS", "QUICK_RUN_NS", "REPEATS",
           "RUN_NS"]

REPEATS, RUN_NS = 5, 10_000_000            # the full grid: 5 interleaved runs of ~10 ms per peer and cell
QUICK_REPEATS, QUICK_RUN_NS = 3, 4_000_000  # --quick
QUICK_MAX_CALL_NS = 100_000_000             # --quick: the oracle only where a call takes under 0.1 s


def grid_spec(args) -> GridSpec:
    """The default or quick grid, with any axis replaced by --widths/--depths/--batch-sizes/--dtypes."""
    base = QUICK_GRID if args.quick else DEFAULT_GRID
    changes = {}
    if args.widths:
        changes.update(widths=tuple(args.widths), batch_widths=tuple(args.widths))
    if args.depths:
        changes.update(depths=tuple(args.depths), batch_depths=tuple(args.depths))
    if args.batch_sizes is not None:
        changes.update(batches=tuple(args.batch_sizes))
    if args.dtypes:
        changes.update(dtypes=tuple(args.dtypes))
    return GridSpec(**{**base.__dict__, **changes})


def run(args, console) -> int:
    """Run the grid; exit code 1 if a peer disagreed with mlpgrad, 2 if --plot cannot be honoured."""
    if getattr(args, "dag", False):  # bench --dag: random DAGs (mlpgrad.bench.dag)
        from .dag import run as run_dag

        return run_dag(args, console)
    note = peers_mod.configure_xla_threads(args.threads)  # before anything imports jax
    if args.plot:
        from .plot import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:  # say so now, not after minutes of measuring
            from rich.markup import escape

            console.print(f"[red]error[/red]: {escape(str(exc))}")
            return 2
    from .report import render, to_json, to_markdown

    cells = grid_spec(args).cells()
    peers = peers_mod.default_peers(args.peers)
    if args.quick:
        for p in peers:
            if p.max_call_ns is not None:
                p.max_call_ns = min(p.max_call_ns, QUICK_MAX_CALL_NS)
    repeats, run_ns = timing(args)
    with progress_bar(console, "loading peers", len(cells)) as progress:
        result = run_grid(cells, peers, repeats=repeats, run_ns=run_ns, threads=args.threads,
                          activation=args.activation, seed=args.seed, progress=progress)
    if note:
        result.notes.append(note)
    render(result, console)
    plot = None
    if args.plot:
        from .plot import plot
    write_files(args, console, result, to_json, to_markdown, plot)
    return 1 if result.wrong else 0


def timing(args) -> tuple:
    """(repeats, run_ns): --repeats and --run-ms, else the --quick or full defaults."""
    repeats = args.repeats or (QUICK_REPEATS if args.quick else REPEATS)
    run_ns = int(args.run_ms * 1e6) if args.run_ms else (QUICK_RUN_NS if args.quick else RUN_NS)
    return repeats, run_ns


@contextlib.contextmanager
def progress_bar(console, description: str, total: int):
    """A transient progress bar of ``total`` steps; yields the ``progress(done, total, what)`` callback the
    runners call."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, total, what: bar.update(task, completed=done, description=f"bench: {what}")


def write_files(args, console, result, to_json, to_markdown, plot=None) -> None:
    """Write ``result`` to --json (with the command line that made it) and --markdown, and draw it to --plot
    when given a ``plot(result, path)``; then say where each went."""
    argv = getattr(args, "argv", None)
    command = None if argv is None else "python -m mlpgrad " + " ".join(shlex.quote(a) for a in argv)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(to_json(result, command), f, indent=2)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(to_markdown(result))
    plot_path = args.plot if plot is not None else None
    if plot_path:
        plot(result, plot_path)
    for path, what in ((args.json, "JSON"), (args.markdown, "Markdown"), (plot_path, "plot")):
        if path:
            console.print(f"{what} written to {path}")
