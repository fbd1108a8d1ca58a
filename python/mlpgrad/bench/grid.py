"""The comparison grid (issue 5): every installed peer timed against mlpgrad on a grid of widths, depths,
batch sizes and dtypes, each peer's gradients checked against mlpgrad's before it is timed.

A cell is one problem: T square K x K layers of one dtype, one example (``value_and_grad``) or a batch of B
(``value_and_grad_batch``). For each cell :func:`run_grid` builds the weights once, calls every peer once
and compares its ŷ and gradients with mlpgrad's (a peer that disagrees is reported ``wrong`` and not
timed), then times the peers that agree side by side (:func:`~mlpgrad.bench.timing.time_side_by_side`:
interleaved runs, median ns per call). Peers that are not installed are ``skipped`` for the whole run;
a peer with ``max_call_ns`` (the oracle) is skipped in the cells where one call would take longer.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from .peers import Problem, Result, make_problem, thread_limits
from .timing import time_side_by_side

__all__ = ["Cell", "GridSpec", "DEFAULT_GRID", "QUICK_GRID", "TOLERANCES", "Outcome", "PeerInfo", "CellResult",
           "GridRun", "Fit", "run_grid", "check", "fit_slope", "FIT_MIN_EDGES"]

#: A peer agrees with mlpgrad when, for ŷ and each gradient group (weights, alpha, x),
#: ‖peer - mlpgrad‖₂ / ‖mlpgrad‖₂ is at most this. L2 rather than max norm: in float32 a ReLU unit whose
#: pre-activation is within rounding of 0 may fall on different sides in two correct implementations.
TOLERANCES = {"float64": 1e-9, "float32": 1e-3}

#: The slope of log(time) against log(T·K²) is fitted over cells at least this large: below, the fixed
#: cost of a call from Python (hundreds of ns) hides the linear term.
FIT_MIN_EDGES = 4096


# ----------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Cell:
    mode: str            # "single" (value_and_grad) or "batch" (value_and_grad_batch)
    dtype: str           # "float64" or "float32"
    K: int               # width of every layer
    T: int               # depth
    B: Optional[int] = None  # batch size (batch mode)

    @property
    def edges(self) -> int:
        return self.T * self.K * self.K

    @property
    def work(self) -> int:
        return self.edges * (self.B or 1)

    def describe(self) -> str:
        batch = f", B={self.B}" if self.B else ""
        return f"{self.mode} K={self.K}, T={self.T}{batch}, {self.dtype}"


@dataclass(frozen=True)
class GridSpec:
    """Single-example cells: widths x depths x dtypes; batch cells: batch_widths x batch_depths x batches x
    dtypes."""

    widths: tuple = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
    depths: tuple = (1, 4, 16)
    dtypes: tuple = ("float64", "float32")
    batches: tuple = (16, 256)
    batch_widths: tuple = (16, 64, 256)
    batch_depths: tuple = (4,)

    def cells(self) -> list:
        single = [Cell("single", d, K, T) for d in self.dtypes for T in self.depths for K in self.widths]
        batch = [Cell("batch", d, K, T, B) for d in self.dtypes for T in self.batch_depths
                 for K in self.batch_widths for B in self.batches]
        return single + batch


DEFAULT_GRID = GridSpec()
QUICK_GRID = GridSpec(widths=(4, 16, 64, 128, 256), depths=(4,), batches=(64,), batch_widths=(64,))


# ----------------------------------------------------------------------------- results
@dataclass
class PeerInfo:
    name: str
    label: str
    description: str
    status: str          # "available", "skipped" (not installed) or "failed" (broke while loading)
    version: str = ""
    reason: str = ""


@dataclass
class Outcome:
    status: str                    # "timed", "wrong" (disagrees with mlpgrad), "skipped" or "failed"
    ns: Optional[float] = None     # median ns per call (timed only)
    check: Optional[float] = None  # largest relative L2 difference from mlpgrad over ŷ and the gradients
    worst: str = ""                # where that difference is largest
    reason: str = ""


@dataclass
class CellResult:
    cell: Cell
    outcomes: dict  # peer name -> Outcome

    def speedup(self, name: str) -> Optional[float]:
        """Peer time / mlpgrad time (> 1: mlpgrad is faster), or None if either was not timed."""
        ours, theirs = self.outcomes.get("mlpgrad"), self.outcomes.get(name)
        if not ours or not theirs or ours.ns is None or theirs.ns is None:
            return None
        return theirs.ns / ours.ns


@dataclass
class Fit:
    """log10(ns) = slope · log10(T·K²) + intercept over ``points`` cells with T·K² ≥ ``min_edges``."""

    peer: str
    mode: str
    dtype: str
    slope: float
    intercept: float
    points: int
    min_edges: int


@dataclass
class GridRun:
    peers: list          # PeerInfo, mlpgrad first
    results: list        # CellResult, in grid order
    settings: dict
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def peer(self, name: str) -> Optional[PeerInfo]:
        return next((p for p in self.peers if p.name == name), None)

    @property
    def available(self) -> list:
        return [p for p in self.peers if p.status == "available"]

    @property
    def wrong(self) -> list:
        """(cell, peer name, outcome) of every disagreement with mlpgrad."""
        return [(r.cell, n, o) for r in self.results for n, o in r.outcomes.items() if o.status == "wrong"]

    def as_dict(self) -> dict:
        return {"peers": [asdict(p) for p in self.peers], "settings": self.settings, "notes": self.notes,
                "seconds": self.seconds,
                "results": [{"cell": asdict(r.cell), "outcomes": {n: asdict(o) for n, o in r.outcomes.items()}}
                            for r in self.results]}


# ----------------------------------------------------------------------------- the check
def _rel_l2(got, ref) -> float:
    got, ref = np.asarray(got, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    if got.shape != ref.shape:
        return math.inf
    diff, norm = float(np.linalg.norm(got - ref)), float(np.linalg.norm(ref))
    if not np.all(np.isfinite(got)):
        return math.inf
    if diff == 0.0:
        return 0.0
    return diff / norm if norm > 0.0 else math.inf


def check(problem: Problem, got: Result, ref: Result) -> tuple:
    """(largest relative L2 difference, where) between a peer's result and mlpgrad's over ŷ and the gradients
    with respect to the weights, alpha and x. ŷ is measured against Σ|α_i ∂/∂α_i| / Σ|dy| (the size of the
    terms it sums), so a ŷ near 0 by cancellation is not held to a relative accuracy of its own."""
    if len(got.weights) != len(ref.weights):
        return math.inf, f"{len(got.weights)} weight gradients for {len(ref.weights)} layers"
    dy_norm = max(float(np.sum(np.abs(np.asarray(problem.dy, np.float64)))), 1e-300)
    y_scale = float(np.sum(np.abs(problem.alpha.astype(np.float64) * ref.alpha))) / dy_norm
    y_scale = max(y_scale * math.sqrt(np.size(ref.yhat)), float(np.linalg.norm(ref.yhat)))
    if np.shape(got.yhat) != np.shape(ref.yhat) or not np.all(np.isfinite(got.yhat)):
        y_err = math.inf
    else:
        y_diff = float(np.linalg.norm(np.asarray(got.yhat) - ref.yhat))
        y_err = 0.0 if y_diff == 0.0 else (y_diff / y_scale if y_scale > 0 else math.inf)
    errs = {"ŷ": y_err, "∂/∂alpha": _rel_l2(got.alpha, ref.alpha), "∂/∂x": _rel_l2(got.x, ref.x)}
    for t, (g, r) in enumerate(zip(got.weights, ref.weights)):
        errs[f"∂/∂weights[{t}]"] = _rel_l2(g, r)
    worst = max(errs, key=errs.get)
    return errs[worst], worst


# ----------------------------------------------------------------------------- running
def _load(peers, threads) -> list:
    infos = []
    for p in peers:
        info = PeerInfo(p.name, p.label, p.description, "available")
        try:
            p.load(threads)
            info.version = p.version()
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            info.status, info.reason = "skipped", f"not installed ({missing})" + (f": {p.install}" if p.install else "")
        except Exception as exc:  # noqa: BLE001 -- a broken optional install must not stop the bench
            info.status, info.reason = "failed", f"{type(exc).__name__}: {exc}"
        infos.append(info)
    if infos[0].name != "mlpgrad" or infos[0].status != "available":
        raise RuntimeError(f"mlpgrad itself must be the first peer and load: {infos[0]}")
    return infos


def run_grid(cells, peers: list, *, repeats: int = 5, run_ns: int = 10_000_000, threads: int = 1,
             activation: str = "relu", seed: int = 0,
             progress: Optional[Callable[[int, int, str], None]] = None) -> GridRun:
    """Check and time ``peers`` (``Peer`` instances, mlpgrad first) on ``cells``.

    ``progress(done, total, description)`` is called before each cell and once at the end. Cells run from the
    smallest to the largest (so a slow peer's cost can be predicted from the cells before), results come back
    in the order of ``cells``.
    """
    start = time.perf_counter()
    cells = list(cells)
    infos = _load(peers, threads)
    active = [p for p, i in zip(peers, infos) if i.status == "available"]
    ns_per_work: dict = {}  # peer name -> (work, ns) of its largest checked call, for max_call_ns predictions
    done: dict = {}
    report = progress or (lambda _done, _total, _description: None)
    order = sorted(range(len(cells)), key=lambda i: (cells[i].work, i))
    with thread_limits(threads):
        for step, i in enumerate(order):
            cell = cells[i]
            report(step, len(cells), cell.describe())
            problem = make_problem(cell.K, cell.T, cell.B, cell.dtype, activation, seed)
            done[i] = _run_cell(cell, problem, active, infos, ns_per_work, repeats, run_ns)
            del problem
    report(len(cells), len(cells), "done")
    settings = {"repeats": repeats, "run_ns": run_ns, "threads": threads, "activation": activation, "seed": seed,
                "tolerances": TOLERANCES, "max_call_ns": {p.name: p.max_call_ns for p in peers if p.max_call_ns}}
    return GridRun(infos, [done[i] for i in range(len(cells))], settings, seconds=time.perf_counter() - start)


def _run_cell(cell, problem, active, infos, ns_per_work, repeats, run_ns) -> CellResult:
    outcomes = {i.name: Outcome("skipped", reason=i.reason) for i in infos if i.status != "available"}
    ref_peer = active[0]
    ref_call = ref_peer.bind(problem)
    ref = ref_peer.result(problem, ref_call())
    calls = {ref_peer.name: ref_call}
    tol = TOLERANCES[cell.dtype]
    for peer in active[1:]:
        limit = peer.max_call_ns
        if limit is not None:
            # a lower bound, then the peer's largest call so far scaled linearly (the notes' claim)
            predicted = peer.min_ns_per_work * problem.work
            if peer.name in ns_per_work:
                work, ns = ns_per_work[peer.name]
                predicted = max(predicted, ns * problem.work / work / 2)
            if predicted > limit:
                outcomes[peer.name] = Outcome("skipped", reason=f"too slow: about {predicted / 1e9:.2g} s per call "
                                                                f"predicted (limit {limit / 1e9:g} s)")
                continue
        try:
            call = peer.bind(problem)
            t0 = time.perf_counter_ns()
            out = call()
            elapsed = time.perf_counter_ns() - t0
            err, worst = check(problem, peer.result(problem, out), ref)
        except Exception as exc:  # noqa: BLE001 -- one peer failing must not stop the others
            outcomes[peer.name] = Outcome("failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        if not err <= tol:
            outcomes[peer.name] = Outcome("wrong", check=err, worst=worst,
                                          reason=f"disagrees with mlpgrad: {worst} off by {err:.1e} "
                                                 f"(tolerance {tol:.0e}); not timed")
            continue
        if limit is not None:
            if problem.work >= ns_per_work.get(peer.name, (0, 0))[0]:
                ns_per_work[peer.name] = (problem.work, elapsed)
            if elapsed > limit:
                outcomes[peer.name] = Outcome("skipped", check=err, worst=worst,
                                              reason=f"too slow: {elapsed / 1e9:.2g} s per call "
                                                     f"(limit {limit / 1e9:g} s)")
                continue
        outcomes[peer.name] = Outcome("timed", check=err, worst=worst)
        calls[peer.name] = call
    outcomes[ref_peer.name] = Outcome("timed", check=0.0)
    for name, ns in time_side_by_side(calls, repeats, run_ns).items():
        outcomes[name].ns = ns
    ordered = {i.name: outcomes[i.name] for i in infos}
    return CellResult(cell, ordered)


# ----------------------------------------------------------------------------- the scaling fit
def fit_slope(run: GridRun, peer: str = "mlpgrad", mode: str = "single", dtype: Optional[str] = None,
              min_edges: int = FIT_MIN_EDGES) -> Optional[Fit]:
    """Least-squares slope of log(time per call) against log(T·K²) for ``peer`` over the ``mode`` cells of
    ``dtype`` (default: float64 if measured, else the first dtype) with T·K² ≥ ``min_edges``. The notes' claim
    (Question 1) is a slope of 1. None if fewer than two distinct sizes qualify."""
    dtype = dtype or plot_dtype(run, mode)
    pts = [(r.cell.edges, r.outcomes[peer].ns) for r in run.results
           if r.cell.mode == mode and r.cell.dtype == dtype and r.cell.edges >= min_edges
           and peer in r.outcomes and r.outcomes[peer].ns]
    if len({e for e, _ in pts}) < 2:
        return None
    x, y = np.log10([e for e, _ in pts]), np.log10([ns for _, ns in pts])
    slope, intercept = np.polyfit(x, y, 1)
    return Fit(peer, mode, dtype, float(slope), float(intercept), len(pts), min_edges)


def plot_dtype(run: GridRun, mode: str = "single") -> Optional[str]:
    dtypes = [r.cell.dtype for r in run.results if r.cell.mode == mode]
    return "float64" if "float64" in dtypes else (dtypes[0] if dtypes else None)
