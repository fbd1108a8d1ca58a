"""What ``python -m mlpgrad bench`` shows and writes: rich tables, the JSON record and a Markdown table."""
from __future__ import annotations

import datetime
import math
import os
import platform
import sys
from typing import Optional

from .grid import FIT_MIN_EDGES, GridRun, fit_slope
from .timing import blas_description, core_count, cpu_model

__all__ = ["fmt_time", "machine", "markdown_table", "render", "to_json", "to_markdown", "speedup_summary", "SCHEMA"]

SCHEMA = "mlpgrad-bench-grid/1"
MODES = {"single": "value_and_grad, one example", "batch": "value_and_grad_batch"}
_SHORT = {"single": "one example", "batch": "batch"}


def fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_count(n: int) -> str:
    """16, 4096 -> '4.1k', 262144 -> '262k', 16777216 -> '16.8M'."""
    for suffix, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return str(n)


def fmt_speedup(s: float) -> str:
    return f"{s:.2f}×" if s < 10 else f"{s:,.0f}×"


def machine(run: GridRun) -> dict:
    """CPU model, core count, OS and library versions of this run."""
    import numpy as np

    libraries = {"python": platform.python_version(), "numpy": np.__version__}
    for p in run.peers:
        if p.status == "available" and p.name not in ("numpy", "oracle"):
            libraries[p.name] = p.version
    for extra in ("jaxlib",):
        mod = sys.modules.get(extra)
        if mod is not None and getattr(mod, "__version__", None):
            libraries[extra] = mod.__version__
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"cpu": cpu_model(), "cores": core_count(), "platform": platform.platform(),
            "machine": platform.machine(), "blas": blas_description(), "libraries": libraries,
            "load_average": load}


def _peers(run: GridRun) -> list:
    """Available peers other than mlpgrad: the comparison columns."""
    return [p for p in run.available if p.name != "mlpgrad"]


def _cell_text(r, name: str, markup: bool) -> str:
    o = r.outcomes.get(name)
    if o is None or o.status == "skipped":
        return "–"
    if o.status in ("wrong", "failed"):
        return f"[red]{o.status}[/red]" if markup else f"**{o.status}**"
    if name == "mlpgrad":
        return fmt_time(o.ns)
    speedup = fmt_speedup(r.speedup(name))
    return f"{fmt_time(o.ns)} [dim]{speedup}[/dim]" if markup else f"{fmt_time(o.ns)} ({speedup})"


def _rows(run: GridRun, mode: str, markup: bool):
    peers = _peers(run)
    for r in run.results:
        if r.cell.mode != mode:
            continue
        c = r.cell
        dtype = c.dtype.replace("float", "f") if markup else c.dtype
        edges = fmt_count(c.edges) if markup else f"{c.edges:,}"
        key = [dtype, str(c.T), str(c.K)] + ([str(c.B)] if mode == "batch" else []) + [edges]
        yield key + [_cell_text(r, "mlpgrad", markup)] + [_cell_text(r, p.name, markup) for p in peers]


def _headers(run: GridRun, mode: str) -> list:
    return (["dtype", "T", "K"] + (["B"] if mode == "batch" else []) + ["T·K²", "mlpgrad"]
            + [p.label for p in _peers(run)])


def speedup_summary(run: GridRun) -> list:
    """Per (peer, mode): (label, mode, cells, min, geometric mean, max) of mlpgrad's speed-up."""
    rows = []
    for p in _peers(run):
        for mode in MODES:
            s = [r.speedup(p.name) for r in run.results if r.cell.mode == mode]
            s = [v for v in s if v]
            if s:
                geo = math.exp(sum(math.log(v) for v in s) / len(s))
                rows.append((p.label, mode, len(s), min(s), geo, max(s)))
    return rows


def _fit_text(run: GridRun) -> Optional[str]:
    fit = fit_slope(run)
    if fit is None:
        return None
    return (f"mlpgrad's time per call grows as (T·K²)^{fit.slope:.2f} (least squares on log-log axes over the "
            f"{fit.points} one-example {fit.dtype} cells with T·K² ≥ {fit.min_edges:,}; the notes' claim: 1).")


def _footer(run: GridRun, markup: bool) -> list:
    """Notes under the tables; with ``markup``, rich markup (free text such as "[compare]" escaped)."""
    from rich.markup import escape

    esc = escape if markup else (lambda text: text)
    s = run.settings
    lines = [f"Median of {s['repeats']} interleaved runs of about {fmt_time(s['run_ns'])} each per cell; "
             f"speed-up = peer time ÷ mlpgrad time (above 1×: mlpgrad is faster). {s['activation']} layers, "
             f"W ~ N(0, 1/K). Every peer's ŷ and gradients were checked against mlpgrad's before it was timed."]
    if any(o.status == "skipped" for r in run.results for n, o in r.outcomes.items()
           if run.peer(n) and run.peer(n).status == "available"):
        limits = ", ".join(f"{run.peer(n).label if run.peer(n) else n} over {fmt_time(ns)}"
                           for n, ns in s.get("max_call_ns", {}).items())
        lines.append(esc(f"–: skipped where one call would take too long ({limits})."))
    for cell, name, o in run.wrong:
        lines.append(f"{'[red]WRONG[/red]' if markup else 'WRONG'}: {esc(run.peer(name).label)} on "
                     f"{cell.describe()}: {esc(o.reason)}.")
    for r in run.results:
        for name, o in r.outcomes.items():
            if o.status == "failed" and run.peer(name).status == "available":
                lines.append(f"FAILED: {esc(run.peer(name).label)} on {r.cell.describe()}: {esc(o.reason)}")
    for p in run.peers:
        if p.status != "available":
            lines.append(f"{esc(p.label)}: {p.status}, {esc(p.reason)}")
    fit = _fit_text(run)
    if fit:
        lines.append(fit)
    m = machine(run)
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    load = f"; load average {m['load_average'][0]:g}" if m["load_average"] else ""
    lines.append(esc(f"Measured {datetime.date.today().isoformat()} on {m['cpu']}, {m['cores']} cores{load}, "
                     f"{m['platform']}; {libs}; NumPy's BLAS: {m['blas']}; peers pinned to {s['threads']} "
                     f"thread{'s' if s['threads'] != 1 else ''} (and so are mlpgrad's batch calls)."))
    lines += [esc(note) for note in run.notes]
    return lines


def render(run: GridRun, console) -> None:
    """Print the tables (one per mode), the speed-up summary and the notes to a rich console."""
    from rich import box
    from rich.table import Table

    for mode, title in MODES.items():
        rows = list(_rows(run, mode, markup=True))
        if not rows:
            continue
        table = Table(title=f"{title}: median time per call (mlpgrad's speed-up)", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        for h in _headers(run, mode):
            table.add_column(h, justify="left" if h == "dtype" else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    summary = speedup_summary(run)
    if summary:
        table = Table(title="mlpgrad's speed-up over each peer, across the grid", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        for h in ("peer", "calls", "cells", "min", "geometric mean", "max"):
            table.add_column(h, justify="left" if h in ("peer", "calls") else "right")
        for label, mode, n, lo, geo, hi in summary:
            table.add_row(label, _SHORT[mode], str(n), fmt_speedup(lo), fmt_speedup(geo), fmt_speedup(hi))
        console.print(table)
    for line in _footer(run, markup=True):
        console.print(line)


def to_markdown(run: GridRun) -> str:
    """The tables and notes as GitHub Markdown (for README)."""
    out = []
    for mode, title in MODES.items():
        rows = list(_rows(run, mode, markup=False))
        if not rows:
            continue
        headers = _headers(run, mode)
        out.append(f"**{title}**: median time per call, and mlpgrad's speed-up over each peer\n")
        out += markdown_table(headers, rows, left=("dtype",))
        out.append("")
    summary = speedup_summary(run)
    if summary:
        out += markdown_table(("peer", "calls", "cells", "min", "geometric mean", "max"),
                              [(label, MODES[mode], str(n), fmt_speedup(lo), fmt_speedup(geo), fmt_speedup(hi))
                               for label, mode, n, lo, geo, hi in summary], left=("peer", "calls"))
        out.append("")
    out += [line + "\n" for line in _footer(run, markup=False)]
    return "\n".join(out)


def markdown_table(headers, rows, left=()) -> list:
    """The lines of a Markdown table of ``headers`` and ``rows`` (sequences of cell strings); the columns
    named in ``left`` are aligned left, the others (numbers) right."""
    return (["| " + " | ".join(headers) + " |", "|" + "|".join(":---" if h in left else "---:" for h in headers) + "|"]
            + ["| " + " | ".join(row) + " |" for row in rows])


def to_json(run: GridRun, command: Optional[str] = None) -> dict:
    """Every measurement as a flat record, with the machine, the peers, the settings and the fitted slope."""
    records = []
    for r in run.results:
        c = r.cell
        for name, o in r.outcomes.items():
            records.append({"mode": c.mode, "dtype": c.dtype, "K": c.K, "T": c.T, "B": c.B, "edges": c.edges,
                            "implementation": name, "status": o.status, "ns_per_call": o.ns,
                            "speedup": r.speedup(name) if name != "mlpgrad" else None,
                            "check": o.check, "worst": o.worst, "reason": o.reason})
    fit = fit_slope(run)
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(run),
        "settings": dict(run.settings, fit_min_edges=FIT_MIN_EDGES),
        "peers": [vars(p) for p in run.peers],
        "fit": None if fit is None else vars(fit),
        "measurements": records,
        "notes": run.notes,
        "seconds": run.seconds,
    }
