"""``python -m mlpgrad bench --dag``: backpropagation on random DAGs (the notes' Questions 1 and 2, issue 12).

* Random DAGs of in-degree 8 from E = 10⁴ to 10⁷ edges: ns per edge of ``DAG.value_and_grad`` (one example) and
  of ``value_and_grad_batch`` (per edge and example), side by side with the pure-Python oracle
  :mod:`mlpgrad.dag` (small E only) and PyTorch (``index_add_`` over the graph's levels, forward and backward by
  hand, when installed), each checked against mlpgrad before it is timed; the log-log slope of time against E
  (linear time means slope 1; the target is [0.9, 1.15]).
* Two generators: "uniform" (every node draws its sources uniformly from all the nodes before it) and "local"
  (at a distance 1 + Exp(1024) behind it, as in layered sparse nets), to separate the cost of the random
  gathers from that of the streams; and the machine's copy bandwidth, which bounds a pass that streams every
  edge's slot, weight and weight gradient once E outgrows the caches.
* ``DAG.from_mlp(net)`` against the dense ``MLP`` (K = 256, T = 4, ReLU): one example and batches.
"""
from __future__ import annotations

import datetime
import math
import platform
from dataclasses import dataclass, field

import numpy as np

from .timing import copy_bandwidth, core_count, cpu_model, time_per_call, time_side_by_side

__all__ = ["random_dag", "level_runs", "DagBench", "run_dag_bench", "render", "to_json", "plot", "run"]

EDGES = (10**4, 3 * 10**4, 10**5, 3 * 10**5, 10**6, 3 * 10**6, 10**7)
QUICK_EDGES = (10**3, 10**4, 10**5)
IN_DEGREE, N_INPUTS, N_OUTPUTS, BATCH, WINDOW = 8, 64, 16, 16, 1024
ORACLE_MAX_EDGES, TORCH_MAX_EDGES = 10**4, 10**6
SLOPE_TARGET = (0.9, 1.15)
MLP_K, MLP_T, MLP_BATCHES = 256, 4, (16, 256)


def random_dag(n_edges: int, rng: np.random.Generator, *, in_degree: int = IN_DEGREE, n_inputs: int = N_INPUTS,
               n_outputs: int = N_OUTPUTS, window: int | None = None, dtype=np.float64) -> dict:
    """The arguments of ``mlpgrad.DAG`` for a random DAG of about ``n_edges`` edges: n_edges // in_degree
    hidden nodes, each with ``in_degree`` sources drawn uniformly from the nodes before it (``window=None``) or
    at a distance 1 + Exp(window) behind it (clipped at node 0). Ids are a topological order, edges listed by
    destination; the outputs are the last ``n_outputs`` nodes, ReLU everywhere."""
    hidden = max(1, n_edges // in_degree)
    n_nodes = n_inputs + hidden
    dst = np.repeat(np.arange(n_inputs, n_nodes, dtype=np.int64), in_degree)
    if window is None:
        src = (rng.random(dst.size) * dst).astype(np.int64)
    else:
        src = np.maximum(dst - 1 - rng.exponential(window, dst.size).astype(np.int64), 0)
    weights = (rng.uniform(-1.0, 1.0, dst.size) * math.sqrt(3.0 / in_degree)).astype(dtype)
    outputs = np.arange(n_nodes - min(n_outputs, hidden), n_nodes, dtype=np.int64)
    alpha = np.full(outputs.size, 1.0 / outputs.size, dtype=dtype)
    return dict(n_inputs=n_inputs, src=src, dst=dst, weights=weights, outputs=outputs, alpha=alpha)


def level_runs(arrays: dict) -> list:
    """(first node, end node, first edge, end edge) of each level after the inputs, for a graph whose ids are a
    topological order and whose edges are listed by destination: the longest runs of consecutive nodes with no
    edge inside, the levels the core uses for such a graph."""
    src, dst, n_inputs = arrays["src"], arrays["dst"], arrays["n_inputs"]
    n_nodes = int(dst[-1]) + 1 if dst.size else n_inputs
    latest = np.full(n_nodes, -1, dtype=np.int64)
    np.maximum.at(latest, dst, src)
    edge_start = np.searchsorted(dst, np.arange(n_nodes + 1))
    starts, begin = [], n_inputs
    for v, s in enumerate(latest[n_inputs:].tolist(), start=n_inputs):
        if s >= begin and v != begin:
            starts.append(begin)
            begin = v
    starts.append(begin)
    ends = starts[1:] + [n_nodes]
    return [(a, b, int(edge_start[a]), int(edge_start[b])) for a, b in zip(starts, ends)]


class TorchDag:
    """The same DAG in PyTorch, level by level: u of a level = ``index_add_`` of w_e z_s over its edges, ReLU;
    backward by hand in reverse (∂w = ∂u_dst z_src, ∂z += ``index_add_`` of w ∂u_dst), no autograd tape."""

    def __init__(self, torch, arrays: dict):
        self.torch = torch
        self.levels = level_runs(arrays)
        self.n_inputs = arrays["n_inputs"]
        self.src = torch.from_numpy(arrays["src"])
        self.dst = torch.from_numpy(arrays["dst"])
        self.w = torch.from_numpy(arrays["weights"])
        self.outputs = torch.from_numpy(arrays["outputs"])
        self.alpha = torch.from_numpy(arrays["alpha"])
        self.n_nodes = self.levels[-1][1]
        dtype = self.w.dtype
        self.u, self.z = torch.zeros(self.n_nodes, dtype=dtype), torch.zeros(self.n_nodes, dtype=dtype)
        self.dz, self.dw = torch.zeros(self.n_nodes, dtype=dtype), torch.zeros_like(self.w)
        self.local = [(a, b, self.dst[ea:eb] - a, self.src[ea:eb], self.w[ea:eb], ea, eb)
                      for a, b, ea, eb in self.levels]

    def value_and_grad(self, x):
        torch, u, z, dz = self.torch, self.u, self.z, self.dz
        z[: self.n_inputs] = x
        for a, b, into, src, w, _, _ in self.local:
            u[a:b] = 0
            u[a:b].index_add_(0, into, w * z[src])
            torch.clamp(u[a:b], min=0, out=z[a:b])
        yhat = float(self.alpha @ z[self.outputs])
        dz.zero_()
        dz[self.outputs] = self.alpha
        for a, b, into, src, w, ea, eb in reversed(self.local):
            du = dz[a:b] * (u[a:b] >= 0)  # ReLU, σ'(0) = 1 as in mlpgrad
            du_edge = du[into]
            self.dw[ea:eb] = du_edge * z[src]
            dz.index_add_(0, src, w * du_edge)
        return yhat, self.dw, dz[: self.n_inputs]


@dataclass
class DagBench:
    dtype: str
    rows: list = field(default_factory=list)  # one dict per (generator, E)
    slopes: dict = field(default_factory=dict)  # (generator, what) -> slope
    from_mlp: dict = field(default_factory=dict)
    bandwidth: float = 0.0
    wrong: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def _fit(rows, key):
    pts = [(math.log(r["E"]), math.log(r[key])) for r in rows if r.get(key)]
    if len(pts) < 2:
        return None
    return float(np.polyfit(*zip(*pts), 1)[0])


def _agree(name, got, ref, dtype, bench, E):
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    for what, g, r in zip(("yhat", "weights", "x"), got, ref):
        g, r = np.asarray(g, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if not np.allclose(g, r, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(r))) if r.size else 1.0)):
            bench.wrong.append(f"{name} disagrees with mlpgrad on {what} at E = {E:,}")
            return False
    return True


def _oracle_call(arrays, x):
    from .. import dag as oracle

    n_nodes = int(arrays["dst"][-1]) + 1
    edges = [oracle.Edge(int(s), int(t), float(w)) for s, t, w in zip(arrays["src"], arrays["dst"], arrays["weights"])]
    alpha = [0.0] * n_nodes
    for o, a in zip(arrays["outputs"].tolist(), arrays["alpha"].tolist()):
        alpha[o] = a
    inputs, xs = list(range(arrays["n_inputs"])), [float(v) for v in x]
    return lambda: oracle.value_and_grad(n_nodes, inputs, edges, alpha, xs, "relu")


def run_dag_bench(edges=EDGES, *, dtype="float64", repeats=5, run_ns=10_000_000, seed=0, torch_max_edges=TORCH_MAX_EDGES,
                  oracle_max_edges=ORACLE_MAX_EDGES, progress=None) -> DagBench:
    """Measure everything the module docstring lists; ``progress(done, total, what)`` after each step."""
    import mlpgrad

    np_dtype = np.dtype(dtype).type
    bench = DagBench(dtype=dtype, settings=dict(repeats=repeats, run_ms=run_ns / 1e6, seed=seed, batch=BATCH,
                                               in_degree=IN_DEGREE, window=WINDOW))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
        bench.notes.append("PyTorch is not installed: no torch column (pip install torch)")
    steps = [(gen, E) for gen in ("uniform", "local") for E in edges]
    total = len(steps) + 2
    rng = np.random.default_rng(seed)
    for i, (gen, E) in enumerate(steps):
        if progress:
            progress(i, total, f"{gen} DAG, E = {E:,}")
        arrays = random_dag(E, rng, window=None if gen == "uniform" else WINDOW, dtype=np_dtype)
        d = mlpgrad.DAG(**arrays, activation="relu")
        x = rng.uniform(-1.0, 1.0, d.n_inputs).astype(np_dtype)
        X = rng.uniform(-1.0, 1.0, (BATCH, d.n_inputs)).astype(np_dtype)
        out, batch_out = d.new_gradients(), d.new_gradients(batch=BATCH)
        calls = {"single": lambda: d.value_and_grad(x, out=out), "batch": lambda: d.value_and_grad_batch(X, out=batch_out)}
        yhat, g = d.value_and_grad(x)
        ref = (yhat, g.weights.copy(), g.x.copy())
        if torch is not None and gen == "uniform" and d.n_edges <= torch_max_edges:
            t = TorchDag(torch, arrays)
            if _agree("torch", [v if isinstance(v, float) else v.numpy() for v in t.value_and_grad(torch.from_numpy(x))],
                      ref, np_dtype, bench, E):
                calls["torch"] = lambda: t.value_and_grad(torch.from_numpy(x))
        ns = time_side_by_side(calls, repeats=repeats, run_ns=run_ns)
        row = dict(generator=gen, E=d.n_edges, V=d.n_nodes, single=ns["single"], batch=ns["batch"] / BATCH,
                   torch=ns.get("torch"), oracle=None)
        if gen == "uniform" and d.n_edges <= oracle_max_edges:
            call = _oracle_call(arrays, x)
            y_o, g_o = call()
            if _agree("oracle", (y_o, g_o.edges, g_o.x), ref, np_dtype, bench, E):
                row["oracle"] = time_per_call(call, repeats=max(1, min(repeats, 3)), run_ns=run_ns)[0]
        bench.rows.append(row)
    for gen in ("uniform", "local"):
        rows = [r for r in bench.rows if r["generator"] == gen]
        for what in ("single", "batch", "torch"):
            s = _fit(rows, what)
            if s is not None:
                bench.slopes[f"{gen} {what}"] = s
    if progress:
        progress(len(steps), total, f"DAG.from_mlp vs MLP, K = {MLP_K}, T = {MLP_T}")
    bench.from_mlp = _from_mlp_vs_mlp(mlpgrad, np_dtype, rng, repeats, run_ns)
    if progress:
        progress(len(steps) + 1, total, "copy bandwidth")
    bench.bandwidth = copy_bandwidth()
    return bench


def _from_mlp_vs_mlp(mlpgrad, dtype, rng, repeats, run_ns) -> dict:
    weights = [(rng.standard_normal((MLP_K, MLP_K)) / math.sqrt(MLP_K)).astype(dtype) for _ in range(MLP_T)]
    net = mlpgrad.MLP(weights, (rng.standard_normal(MLP_K) / MLP_K).astype(dtype), "relu")
    d = mlpgrad.DAG.from_mlp(net)
    x = rng.standard_normal(MLP_K).astype(dtype)
    go, gd = net.new_gradients(), d.new_gradients()
    calls = {"mlp 1": lambda: net.value_and_grad(x, out=go), "dag 1": lambda: d.value_and_grad(x, out=gd)}
    for B in MLP_BATCHES:
        X = rng.standard_normal((B, MLP_K)).astype(dtype)
        gb, gdb = net.new_gradients(batch=B), d.new_gradients(batch=B)
        calls[f"mlp {B}"] = lambda X=X, g=gb: net.value_and_grad_batch(X, out=g)
        calls[f"dag {B}"] = lambda X=X, g=gdb: d.value_and_grad_batch(X, out=g)
    ns = time_side_by_side(calls, repeats=repeats, run_ns=run_ns)
    return {B: dict(mlp=ns[f"mlp {B}"], dag=ns[f"dag {B}"], ratio=ns[f"dag {B}"] / ns[f"mlp {B}"])
            for B in (1, *MLP_BATCHES)}


def streamed_bytes_per_edge(dtype: str) -> int:
    """Bytes one value_and_grad streams per edge besides the gathers and the tapes, for edges listed in the
    graph's slot order (as random_dag lists them): its 4-byte CSR slot twice (forward and backward), its weight
    twice, and its weight gradient written (with the read for ownership)."""
    w = np.dtype(dtype).itemsize
    return 2 * 4 + 2 * w + 2 * w


def _fmt(ns):
    return "—" if ns is None else f"{ns:,.2f}"


def render(bench: DagBench, console) -> None:
    from rich.table import Table

    table = Table(title=f"random DAGs, in-degree {IN_DEGREE}, ReLU, {bench.dtype}: ns per edge (median of "
                  f"{bench.settings['repeats']} runs)")
    for col in ("generator", "E", "V", "mlpgrad one example", f"mlpgrad B = {BATCH} (per example)", "torch",
                "oracle (pure Python)"):
        table.add_column(col, justify="right")
    for r in bench.rows:
        E = r["E"]
        table.add_row(r["generator"], f"{E:,}", f"{r['V']:,}", _fmt(r["single"] / E), _fmt(r["batch"] / E),
                      _fmt(r["torch"] and r["torch"] / E), _fmt(r["oracle"] and r["oracle"] / E))
    console.print(table)
    lo, hi = SLOPE_TARGET
    for what, s in bench.slopes.items():
        ok = "" if "torch" in what else ("  (target met)" if lo <= s <= hi else f"  (target [{lo}, {hi}] missed)")
        console.print(f"log-log slope of time against E, {what}: {s:.3f}{ok}")
    floor = streamed_bytes_per_edge(bench.dtype) / bench.bandwidth * 1e9 if bench.bandwidth else None
    if floor:
        console.print(f"copy bandwidth {bench.bandwidth / 1e9:.1f} GB/s: streaming {streamed_bytes_per_edge(bench.dtype)} "
                      f"B per edge takes at least {floor:.2f} ns per edge once E outgrows the caches")
    for B, m in bench.from_mlp.items():
        what = "one example" if B == 1 else f"B = {B}"
        target = 4 if B == 1 else 2
        console.print(f"DAG.from_mlp vs MLP, K = {MLP_K}, T = {MLP_T}, {what}: {m['dag'] / 1e3:,.1f} us vs "
                      f"{m['mlp'] / 1e3:,.1f} us, ratio {m['ratio']:.2f} (target <= {target})")
    for line in bench.notes:
        console.print(f"note: {line}")
    for line in bench.wrong:
        console.print(f"[red]wrong[/red]: {line}")


def to_json(bench: DagBench, command=None) -> dict:
    return dict(command=command, date=datetime.date.today().isoformat(), dtype=bench.dtype,
                machine=dict(cpu=cpu_model(), cores=core_count(), python=platform.python_version()),
                settings=bench.settings, rows=bench.rows, slopes=bench.slopes,
                from_mlp={str(k): v for k, v in bench.from_mlp.items()}, copy_bandwidth=bench.bandwidth,
                streamed_bytes_per_edge=streamed_bytes_per_edge(bench.dtype), wrong=bench.wrong, notes=bench.notes)


def plot(bench: DagBench, path: str) -> None:
    """Time per call against E (log-log, fitted slopes in the legend) and ns per edge against E."""
    from .plot import FIT_STYLE, require_matplotlib

    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(13, 5.4), constrained_layout=True)
    series = [("uniform", "single", "mlpgrad, one example", "#d62728", "-"),
              ("uniform", "batch", f"mlpgrad, B = {BATCH}, per example", "#d62728", ":"),
              ("local", "single", "mlpgrad, one example, local DAG", "#9467bd", "-"),
              ("uniform", "torch", "PyTorch index_add_, one example", "#ff7f0e", "-"),
              ("uniform", "oracle", "pure-Python oracle, one example", "#7f7f7f", "-")]
    for gen, key, label, color, style in series:
        pts = [(r["E"], r[key]) for r in bench.rows if r["generator"] == gen and r.get(key)]
        if not pts:
            continue
        E, ns = map(np.array, zip(*pts))
        slope = bench.slopes.get(f"{gen} {key}")
        ax_t.plot(E, ns, style, marker="o", markersize=4, color=color,
                  label=label + (f" (slope {slope:.2f})" if slope is not None else ""))
        ax_e.plot(E, ns / E, style, marker="o", markersize=4, color=color, label=label)
    pts = [(r["E"], r["single"]) for r in bench.rows if r["generator"] == "uniform"]
    if len(pts) >= 2:
        E = np.array([p[0] for p in pts], dtype=float)
        ref = pts[0][1] * E / E[0]
        ax_t.plot(E, ref, label="linear time (slope 1) from the smallest E", **FIT_STYLE)
    if bench.bandwidth:
        floor = streamed_bytes_per_edge(bench.dtype) / bench.bandwidth * 1e9
        ax_e.axhline(floor, color="black", linestyle="--", linewidth=1,
                     label=f"streaming {streamed_bytes_per_edge(bench.dtype)} B/edge at {bench.bandwidth / 1e9:.1f} GB/s")
    ax_t.set(xscale="log", yscale="log", xlabel="edges E", ylabel="median time per call (ns)",
             title=f"value_and_grad on random DAGs, in-degree {IN_DEGREE}, {bench.dtype}")
    ax_e.set(xscale="log", yscale="log", xlabel="edges E", ylabel="ns per edge", title="time per edge")
    for ax in (ax_t, ax_e):
        ax.grid(True, which="major", alpha=0.3)
        ax.grid(True, which="minor", alpha=0.1)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"mlpgrad bench --dag, {datetime.date.today().isoformat()}: {cpu_model()}, {core_count()} cores, "
                 "one thread", fontsize=10)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run(args, console) -> int:
    """``bench --dag``: exit code 1 if a peer disagreed with mlpgrad, 2 if --plot cannot be honoured."""
    import json
    import shlex

    from .command import progress_bar, timing

    if args.plot:
        from .plot import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            console.print(f"[red]error[/red]: {exc}")
            return 2
    repeats, run_ns = timing(args)
    edges = QUICK_EDGES if args.quick else EDGES
    results = []
    for dtype in args.dtypes or ["float64"]:
        with progress_bar(console, "random DAGs", 2 * len(edges) + 2) as progress:
            bench = run_dag_bench(edges, dtype=dtype, repeats=repeats, run_ns=run_ns, seed=args.seed, progress=progress)
        render(bench, console)
        results.append(bench)
    argv = getattr(args, "argv", None)
    command = None if argv is None else "python -m mlpgrad " + " ".join(shlex.quote(a) for a in argv)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([to_json(b, command) for b in results], f, indent=2)
            f.write("\n")
        console.print(f"JSON written to {args.json}")
    if args.plot:
        plot(results[0], args.plot)
        console.print(f"plot written to {args.plot}")
    return 1 if any(b.wrong for b in results) else 0
