"""``--plot FILE.png``: time per call against the number of edges T·K² (log-log, one line per implementation,
mlpgrad's fitted slope in the legend) and mlpgrad's speed-up over each peer. Needs matplotlib
(``pip install 'mlpgrad[plot]'``)."""
from __future__ import annotations

import datetime
import math
from collections import Counter

from .grid import GridRun, fit_slope, plot_dtype
from .report import machine

__all__ = ["figure", "plot", "require_matplotlib", "FIT_STYLE"]

_MARKERS = {1: "v", 4: "o", 16: "s"}
_COLORS = {"mlpgrad": "#d62728", "numpy": "#1f77b4", "oracle": "#7f7f7f", "torch": "#ff7f0e", "jax": "#2ca02c"}
#: The fitted line runs along mlpgrad's own line: in mlpgrad's colour, thin and pale, it vanished under it.
#: Dark, dashed and drawn on top of every data line, it stays visible where the two coincide.
FIT_STYLE = dict(linestyle="--", color="black", linewidth=1.6, alpha=0.9, zorder=5)


def require_matplotlib() -> None:
    """Raise ImportError with the install hint unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install matplotlib (or: pip install 'mlpgrad[plot]')") from exc


def plot(run: GridRun, path: str, mode: str = "single") -> None:
    """Write the two-panel figure of the ``mode`` cells (default: one example) to ``path``."""
    fig = figure(run, mode)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=130)
    plt.close(fig)


def figure(run: GridRun, mode: str = "single"):
    """The two-panel matplotlib figure of the ``mode`` cells (the caller closes it)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtype = plot_dtype(run, mode)
    results = [r for r in run.results if r.cell.mode == mode and r.cell.dtype == dtype]
    depths = Counter(r.cell.T for r in results)
    # lines: the depth with the most widths (T = 4 on a tie, the notes' example), markers: the others
    line_T = max(depths, key=lambda T: (depths[T], T == 4, T)) if depths else None
    peers = [p for p in run.peers if p.status == "available"]
    fit = fit_slope(run, mode=mode, dtype=dtype)

    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(13, 5.4), constrained_layout=True)
    for p in peers:
        color = _COLORS.get(p.name)
        label = p.label
        if p.name == "mlpgrad" and fit is not None:
            label += f" (slope {fit.slope:.2f})"
        for T in sorted(depths):
            pts = sorted((r.cell.edges, r.outcomes[p.name].ns, r.speedup(p.name)) for r in results
                         if r.cell.T == T and r.outcomes.get(p.name) and r.outcomes[p.name].ns)
            if not pts:
                continue
            edges, ns, speedups = zip(*pts)
            style = dict(color=color, marker=_MARKERS.get(T, "D"), markersize=5)
            if T == line_T:
                ax_t.plot(edges, ns, "-", label=label, **style)
            else:
                ax_t.plot(edges, ns, linestyle="none", markerfacecolor="none", **style)
            if p.name != "mlpgrad":
                sp = [(e, s) for e, s in zip(edges, speedups) if s]
                if sp:
                    kw = dict(style, label=f"vs {p.label}") if T == line_T else dict(style, markerfacecolor="none")
                    ax_s.plot(*zip(*sp), linestyle="-" if T == line_T else "none", **kw)
    if fit is not None:
        xs = [e for e in sorted({r.cell.edges for r in results}) if e >= fit.min_edges]
        if xs:
            ax_t.plot([xs[0], xs[-1]], [10 ** (fit.intercept + fit.slope * math.log10(x)) for x in (xs[0], xs[-1])],
                      label=f"mlpgrad's fit ∝ (T·K²)^{fit.slope:.2f}, T·K² ≥ {fit.min_edges:,}", **FIT_STYLE)
    # depth key: filled markers on the line, hollow markers for the other depths
    for T in sorted(depths):
        ax_t.plot([], [], color="black", marker=_MARKERS.get(T, "D"), linestyle="-" if T == line_T else "none",
                  markerfacecolor="black" if T == line_T else "none", label=f"T = {T}")

    what = "value_and_grad, one example" if mode == "single" else "value_and_grad_batch"
    ax_t.set(xscale="log", yscale="log", xlabel="edges T·K²", ylabel="median time per call (ns)",
             title=f"{what}, {dtype}: time per call")
    ax_t.grid(True, which="major", alpha=0.3)
    ax_t.grid(True, which="minor", alpha=0.1)
    ax_t.legend(fontsize=8, loc="upper left")
    ax_s.axhline(1.0, color="black", linewidth=0.8)
    ax_s.set(xscale="log", yscale="log", xlabel="edges T·K²",
             ylabel="speed-up of mlpgrad (peer time ÷ mlpgrad time)", title="mlpgrad's speed-up over each peer")
    ax_s.grid(True, which="major", alpha=0.3)
    ax_s.grid(True, which="minor", alpha=0.1)
    if ax_s.get_legend_handles_labels()[0]:
        ax_s.legend(fontsize=8, loc="upper right")
    m = machine(run)
    threads = run.settings["threads"]
    key = f"; lines T = {line_T}, hollow markers other depths" if len(depths) > 1 else ""
    fig.suptitle(f"mlpgrad bench, {datetime.date.today().isoformat()}: {m['cpu']}, {m['cores']} cores, "
                 f"{threads} thread{'s' if threads != 1 else ''} per peer, {run.settings['activation']}{key}",
                 fontsize=10)
    return fig
