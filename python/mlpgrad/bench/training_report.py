"""What ``python -m mlpgrad bench --training-step`` shows and writes (:mod:`mlpgrad.bench.training_step` measures):
one rich table per thread setting, the notes under them, the JSON record, the Markdown tables, and the command's
glue (options to grid, progress bar, files)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Optional

from .report import fmt_speedup, fmt_time, machine, markdown_table
from .training_step import (BATCHES, DEFAULT_ROUNDS, DTYPES, MLPGRAD_COMPUTES_X, NETWORKS, THREAD_SETTINGS,
                            Measurement, Peak, SettingRun, TrainingStepRun, cells, peak_fraction, ratio, run_settings)

__all__ = ["SCHEMA", "render", "to_markdown", "to_json", "run_command"]

SCHEMA = "mlpgrad-bench-training-step/1"


def _setting_title(run: SettingRun) -> str:
    return "peers at their default threads" if run.threads is None else "every peer pinned to one thread"


def _columns(run: SettingRun) -> list:
    return [p for p in run.peers if p.status == "available"]


def _cell_text(m: Measurement, peak: Peak, markup: bool) -> str:
    if m.status in ("wrong", "failed"):
        return f"[red]{m.status}[/red]" if markup else f"**{m.status}**"
    if m.ns is None:
        return "–"
    frac = peak_fraction(m, peak)
    rate = f"{m.gflops:.3g} GFLOP/s" + (f", {100 * frac:.0f} %" if frac is not None else "")
    return f"{fmt_time(m.ns)} [dim]{rate}[/dim]" if markup else f"{fmt_time(m.ns)} ({rate})"


def _rows(run: SettingRun, markup: bool):
    labels = {p.name: p.label for p in run.peers}
    for cell, ms in run.results:
        dx = "yes" if cell.input_grad else ("no †" if ms["mlpgrad"].computes_x else "no")
        row = [cell.name, str(cell.B), cell.dtype, dx]
        row += [_cell_text(ms[p.name], run.peaks[cell.dtype], markup) for p in _columns(run)]
        fastest, r = run.fastest_peer(ms), ratio(ms, run)
        row.append("–" if r is None else f"{fmt_speedup(r)} ({labels[fastest[0]]})")
        yield row


def _headers(run: SettingRun) -> list:
    return ["network", "B", "dtype", "∂x"] + [p.label for p in _columns(run)] + ["fastest peer ÷ mlpgrad"]


def _footer(result: TrainingStepRun, markup: bool) -> list:
    import datetime

    from rich.markup import escape

    esc = escape if markup else (lambda text: text)
    o = result.options
    lines = [f"One value-and-gradient call of Σ_b ŷ_b (dy = 1), ReLU layers without biases, W ~ N(0, 1/K_in). "
             f"Median of {o['repeats']} interleaved runs of about {fmt_time(o['run_ns'])} each per cell; every "
             f"peer's Σŷ and gradients were checked against mlpgrad's before it was timed. GFLOP/s: 2 flops per "
             f"multiply-add of the matrix products done; % of the peak measured in the same run:"]
    for run in result.settings:
        for dtype, peak in run.peaks.items():
            lines.append(f"  {peak.label}: {peak.gflops:.1f} GFLOP/s ({dtype} cells, {_setting_title(run)})")
            if peak.concurrent_gflops is not None:
                lines.append(f"    the same probe on every one of those threads at once: {peak.concurrent_gflops:.1f} "
                             f"GFLOP/s, {peak.concurrent_gflops / peak.gflops:.0%} of that (what the host gave "
                             "this virtual machine's cores during the run)")
    if any(ms["mlpgrad"].computes_x and not c.input_grad for run in result.settings for c, ms in run.results):
        lines.append(f"†: {MLPGRAD_COMPUTES_X}: its time includes that "
                     "product, and so do its GFLOP/s; the peers skip it.")
    lines.append("mlpgrad's batch calls run on mlpgrad.get_num_threads() threads at the default setting and on one "
                 "when pinned (set_num_threads(1)); the peak is the core's one-thread FMA probe times those threads.")
    for run in result.settings:
        for cell, ms in run.results:
            for name, m in ms.items():
                if m.status in ("wrong", "failed"):
                    label = next(p.label for p in run.peers if p.name == name)
                    lines.append(f"{'[red]' + m.status.upper() + '[/red]' if markup else m.status.upper()}: "
                                 f"{esc(label)} on {cell.describe()}, {_setting_title(run)}: {esc(m.reason)}")
    for p in result.peers:
        if p.status != "available":
            lines.append(f"{esc(p.label)}: {p.status}, {esc(p.reason)}")
    m = machine(result)
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    load = f"; load average {m['load_average'][0]:g}" if m["load_average"] else ""
    lines.append(esc(f"Measured {datetime.date.today().isoformat()} on {m['cpu']}, {m['cores']} cores{load}, "
                     f"{m['platform']}; {libs}; NumPy's BLAS: {m['blas']}."))
    lines += [esc(n) for run in result.settings for n in run.notes]
    return lines


def render(result: TrainingStepRun, console) -> None:
    from rich import box
    from rich.table import Table

    for run in result.settings:
        table = Table(title=f"training step, {_setting_title(run)}: median time (GFLOP/s, % of peak)",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for h in _headers(run):
            table.add_column(h, justify="left" if h in ("network", "dtype", "∂x") else "right")
        for row in _rows(run, markup=True):
            table.add_row(*row)
        console.print(table)
    for line in _footer(result, markup=True):
        console.print(line)


def to_markdown(result: TrainingStepRun) -> str:
    out = []
    for run in result.settings:
        headers = _headers(run)
        out.append(f"**Training step, {_setting_title(run)}**: median time (GFLOP/s, % of peak)\n")
        out += markdown_table(headers, _rows(run, markup=False), left=("network", "dtype", "∂x"))
        out.append("")
    out += [line + "\n" for line in _footer(result, markup=False)]
    return "\n".join(out)


def to_json(result: TrainingStepRun, command: Optional[str] = None) -> dict:
    import datetime

    records = []
    for run in result.settings:
        for cell, ms in run.results:
            peak = run.peaks[cell.dtype]
            for name, m in ms.items():
                records.append({"network": cell.name, "widths": list(cell.widths), "B": cell.B, "dtype": cell.dtype,
                                "input_grad": cell.input_grad, "threads": run.threads, "implementation": name,
                                "status": m.status, "ns_per_call": m.ns, "flops": m.flops, "gflops": m.gflops,
                                "peak_fraction": peak_fraction(m, peak), "peak": peak.label,
                                "computes_x": m.computes_x, "check": m.check, "worst": m.worst, "reason": m.reason})
    return {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "machine": machine(result), "options": result.options,
            "settings": [{"threads": r.threads, "peers": [asdict(p) for p in r.peers],
                          "peaks": {d: asdict(p) for d, p in r.peaks.items()}, "seconds": r.seconds, "notes": r.notes}
                         for r in result.settings],
            "measurements": records}


def run_command(args, console) -> int:
    """``bench --training-step``: exit code 1 if a peer disagreed with mlpgrad or failed."""
    from .command import progress_bar, timing, write_files

    grid = cells(args.networks or NETWORKS, args.batch_sizes or BATCHES, args.dtypes or DTYPES)
    repeats, run_ns = timing(args)
    with progress_bar(console, "starting", len(grid) * len(THREAD_SETTINGS)) as progress:
        rounds = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
        result = run_settings(grid, args.peers, repeats=repeats, run_ns=run_ns, seed=args.seed, rounds=rounds,
                              progress=progress)
    render(result, console)
    write_files(args, console, result, to_json, to_markdown)
    bad = [m for run in result.settings for _, ms in run.results for m in ms.values() if m.status in ("wrong", "failed")]
    return 1 if bad else 0
