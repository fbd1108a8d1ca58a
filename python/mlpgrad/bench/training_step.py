"""``python -m mlpgrad bench --training-step``: one training step of a mini-batch, mlpgrad against its peers.

A cell is one value-and-gradient call of the summed output Σ_b ŷ_b over a batch of B examples (dy = 1 for
every example) of a ReLU network without biases, given by its widths K_0-…-K_T-1 (the final 1 is ŷ = αᵀz^T),
in one dtype, with or without the input gradient ∂/∂X (training needs only the parameters'). Every peer does
the same work: NumPy (:mod:`mlpgrad.numpy_backprop`, OpenBLAS), PyTorch autograd and JAX
``jit(value_and_grad)``, without ∂X as a training step runs them (PyTorch: X without ``requires_grad``; JAX:
not an argument of the gradient). Each peer's gradients are checked against mlpgrad's before it is timed.

Each cell is measured twice: with every peer at its default threads and with every peer pinned to one thread.
XLA reads its thread flags once, when JAX starts, so each thread setting runs in a child interpreter of its own
(:func:`run_settings`); :func:`run_training_step` is the measurement itself, in this process.
:mod:`mlpgrad.bench.training_report` shows and writes the results.

Speed is reported as GFLOP/s, 2 flops per multiply-add of the matrix products done (forward W z and αᵀ z^T,
backward ∂W, ∂α and ∂Z, ∂X where computed; the elementwise σ, σ' and dy αᵀ are not counted), and as a fraction
of a peak measured in the same run by :func:`fma_peak` (the core's FMA probe).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from . import peers as peers_mod
from .grid import TOLERANCES, PeerInfo, _load, check
from .peers import JaxPeer, MlpgradPeer, NumpyPeer, Result, TorchPeer, instantiate, thread_limits
from .timing import time_side_by_side

__all__ = ["NETWORKS", "BATCHES", "DTYPES", "Cell", "Problem", "Measurement", "Peak", "SettingRun", "TrainingStepRun",
           "make_problem", "flops", "fma_peak", "PEAK_REPEATS", "training_peers", "run_training_step", "run_settings",
           "mlpgrad_gradients", "ratio", "peak_fraction", "THREAD_SETTINGS", "MLPGRAD_COMPUTES_X",
           "STEP_PEERS", "cells", "DEFAULT_ROUNDS"]

#: The grid of issue 10: widths K_0-…-K_T-1 (the trailing 1 is ŷ), batch sizes, dtypes, with/without ∂X.
NETWORKS = ((784, 256, 256, 1), (64, 64, 64, 64, 1), (256, 256, 256, 256, 256, 1))
BATCHES = (32, 256)
DTYPES = ("float32", "float64")
#: Thread settings of the peers: None is each library's default, 1 is pinned to one thread.
THREAD_SETTINGS = (None, 1)
#: At default threads, how many times each library's child runs, in turns (see :func:`run_settings`).
DEFAULT_ROUNDS = 3
#: Note on the cells without ∂X, where mlpgrad cannot skip it yet.
MLPGRAD_COMPUTES_X = "mlpgrad computes ∂x too"


# ----------------------------------------------------------------------------- cells and problems
@dataclass(frozen=True)
class Cell:
    widths: tuple        # K_0, …, K_T, 1
    B: int
    dtype: str
    input_grad: bool     # ∂/∂X wanted

    @property
    def name(self) -> str:
        return "-".join(map(str, self.widths))

    def describe(self) -> str:
        return f"{self.name}, B={self.B}, {self.dtype}, {'with' if self.input_grad else 'without'} ∂x"


def cells(networks=NETWORKS, batches=BATCHES, dtypes=DTYPES) -> list:
    return [Cell(tuple(w), B, d, x) for w in networks for B in batches for d in dtypes for x in (True, False)]


@dataclass
class Problem:
    """The arrays of a cell, in the attribute names the peers of :mod:`mlpgrad.bench.peers` read."""

    cell: Cell
    weights: list        # W[t]: (K_{t+1}, K_t), ~ N(0, 1/K_t)
    alpha: np.ndarray    # (K_T,), ~ N(0, 1)
    x: np.ndarray        # X: (B, K_0), ~ N(0, 1)
    dy: np.ndarray       # ones (B,): the gradient of Σ_b ŷ_b
    activation: str = "relu"

    @property
    def batch(self) -> int:
        return self.cell.B

    @property
    def T(self) -> int:
        return len(self.weights)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.cell.dtype)


def make_problem(cell: Cell, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    ks = cell.widths[:-1]
    weights = [np.ascontiguousarray((rng.standard_normal((k_out, k_in)) / np.sqrt(k_in)).astype(cell.dtype))
               for k_in, k_out in zip(ks[:-1], ks[1:])]
    alpha = rng.standard_normal(ks[-1]).astype(cell.dtype)
    x = rng.standard_normal((cell.B, ks[0])).astype(cell.dtype)
    return Problem(cell, weights, alpha, x, np.ones(cell.B, cell.dtype))


def flops(widths, B: int, input_grad: bool) -> int:
    """2 flops per multiply-add of the products of one value-and-gradient call: per layer W z (forward) and ∂W
    (backward), ∂Z below it except for the first layer without ∂X; αᵀ z^T and ∂α once each."""
    ks = tuple(widths)[:-1]
    per_layer = [k_in * k_out for k_in, k_out in zip(ks[:-1], ks[1:])]
    macs = sum(2 * m for m in per_layer) + sum(per_layer[1:]) + (per_layer[0] if per_layer and input_grad else 0)
    macs += 2 * ks[-1]  # ŷ = Z α and ∂α = Zᵀ dy
    return 2 * B * macs


# ----------------------------------------------------------------------------- the peak
@dataclass
class Peak:
    label: str           # exactly what was measured
    gflops: float        # GFLOP/s
    # With n > 1 threads: n probes run at once, in GFLOP/s. On a shared virtual machine the host may give the
    # n vCPUs less than n cores; this says how much of n · one probe was really there during the run.
    concurrent_gflops: Optional[float] = None


#: Runs timed by each peak probe; it runs before and after the cells, and the best of all is the peak (on a
#: shared machine a single probe may fall in a busy moment).
PEAK_REPEATS = 5


def fma_peak(dtype: str, threads: Optional[int]) -> Peak:
    """The peak the GFLOP/s are compared with: the core's own FMA probe (independent vector FMA chains on one
    thread, mlpgrad/gemm/peak.hpp), times the threads mlpgrad's batch calls use in this setting (the cores
    of this machine are alike). Runs inside the caller's thread limits."""
    from .. import _core, get_num_threads

    n = get_num_threads()
    one = _core._fma_peak_gflops(dtype, 20.0, PEAK_REPEATS)
    what = "1 thread" if n == 1 else f"1 thread × {n} ({'' if threads else 'default '}threads of mlpgrad)"
    label = f"FMA probe ({'float' if dtype == 'float32' else 'double'} vector FMA chains), {what}"
    return Peak(label, n * one, concurrent_fma_gflops(dtype, n) if n > 1 else None)


def concurrent_fma_gflops(dtype: str, n: int) -> float:
    """The sum of n FMA probes run at once on n Python threads (the probe releases the GIL): n times one
    probe when the machine gives this process n cores, less when the host shares them out."""
    import threading

    from .. import _core

    rates = [0.0] * n
    start = threading.Barrier(n)

    def probe(i):
        start.wait()
        rates[i] = _core._fma_peak_gflops(dtype, 20.0, PEAK_REPEATS)

    workers = [threading.Thread(target=probe, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(rates)


# ----------------------------------------------------------------------------- the peers
def mlpgrad_gradients(net, problem: Problem):
    """mlpgrad's ``out`` buffers for a cell: parameter-only gradients (no ``x``, so the input-gradient product
    is skipped) in the cells without ∂x, like the peers there."""
    return net.new_gradients(batch=problem.batch, x=problem.cell.input_grad)


def _sum_result(problem: Problem, yhat, weights, alpha, x) -> Result:
    """Σ_b ŷ_b and the gradients as float64, ∂x only where the cell asks for it (else an empty array)."""
    f64 = peers_mod._f64
    gx = f64(x) if problem.cell.input_grad else np.zeros(0)
    return Result(np.float64(np.sum(f64(yhat))), [f64(w) for w in weights], f64(alpha), gx)


class MlpgradStep(MlpgradPeer):
    description = "mlpgrad.MLP.value_and_grad_batch(X, dy=1, out=g): the C++ core on mlpgrad.get_num_threads() threads"

    def bind(self, problem):
        import mlpgrad

        net = mlpgrad.MLP(problem.weights, problem.alpha, problem.activation)
        out, x, dy = mlpgrad_gradients(net, problem), problem.x, problem.dy
        self.computes_x = getattr(out, "x", None) is not None  # read by the cell's Measurement
        return lambda: net.value_and_grad_batch(x, dy, out=out)

    def result(self, problem, out):
        yhat, g = out
        return _sum_result(problem, yhat, g.weights, g.alpha, g.x)


class NumpyStep(NumpyPeer):
    description = "mlpgrad.numpy_backprop.NumpyMLP.value_and_grad_batch(X, dy=1, out=g, x=...): NumPy's BLAS"

    def bind(self, problem):
        model = self._model(problem)
        x, dy, want_x = problem.x, problem.dy, problem.cell.input_grad
        out = model.new_gradients(batch=problem.batch, x=want_x)
        return lambda: model.value_and_grad_batch(x, dy, out=out, x=want_x)

    def result(self, problem, out):
        yhat, g = out
        return _sum_result(problem, yhat, g.weights, g.alpha, g.x)


class TorchStep(TorchPeer):
    description = "torch: Σ_b relu(…relu(X Wᵀ)…) α, then torch.autograd.grad (X requires_grad only with ∂x)"

    def load(self, threads=None):
        import torch

        if threads is not None:
            torch.set_num_threads(threads)

    def bind(self, problem):
        import torch

        W = [torch.from_numpy(w).requires_grad_() for w in problem.weights]
        a = torch.from_numpy(problem.alpha).requires_grad_()
        x = torch.from_numpy(problem.x).requires_grad_(problem.cell.input_grad)
        params = W + [a] + ([x] if problem.cell.input_grad else [])
        grad = torch.autograd.grad

        def call():
            z = x
            for w in W:
                z = torch.relu(z @ w.T)
            y = (z @ a).sum()
            return y, grad(y, params)

        return call

    def result(self, problem, out):
        y, grads = out
        T = problem.T
        gx = grads[T + 1].numpy() if problem.cell.input_grad else None
        return _sum_result(problem, y.detach().numpy(), [g.numpy() for g in grads[:T]], grads[T].numpy(), gx)


class JaxStep(JaxPeer):
    description = "jax.jit(jax.value_and_grad(Σ_b ŷ_b, argnums=(W, α[, X]))), CPU, x64 enabled"

    def bind(self, problem):
        import jax
        import jax.numpy as jnp

        def loss(ws, a, x):
            z = x
            for w in ws:
                z = jax.nn.relu(z @ w.T)
            return jnp.sum(z @ a)

        argnums = (0, 1, 2) if problem.cell.input_grad else (0, 1)
        vg = jax.jit(jax.value_and_grad(loss, argnums=argnums))
        ws = [jnp.asarray(w) for w in problem.weights]  # on the device before the clock starts
        a, x = jnp.asarray(problem.alpha), jnp.asarray(problem.x)
        block = jax.block_until_ready
        return lambda: block(vg(ws, a, x))

    def result(self, problem, out):
        y, grads = out
        gx = grads[2] if problem.cell.input_grad else None
        return _sum_result(problem, y, grads[0], grads[1], gx)


STEP_PEERS = {p.name: p for p in (MlpgradStep, NumpyStep, TorchStep, JaxStep)}


def training_peers(names=None) -> list:
    """Instances of the named peers (default: all), mlpgrad always first."""
    return instantiate(STEP_PEERS, names)


# ----------------------------------------------------------------------------- results
@dataclass
class Measurement:
    status: str                       # "timed", "wrong", "failed", "skipped"
    ns: Optional[float] = None        # median ns per call
    flops: Optional[int] = None       # of the products this peer does in this cell
    check: Optional[float] = None     # largest relative L2 difference from mlpgrad
    worst: str = ""
    reason: str = ""
    computes_x: bool = True           # does the ∂x product (a peer marked † when it cannot skip it)

    @property
    def gflops(self) -> Optional[float]:
        return None if self.ns is None else self.flops / self.ns


@dataclass
class SettingRun:
    """Every cell measured with the peers at one thread setting (None: their defaults)."""

    threads: Optional[int]
    peers: list                        # PeerInfo, mlpgrad first
    peaks: dict                        # dtype -> Peak
    results: list                      # (Cell, {peer name: Measurement}) in grid order
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"threads": self.threads, "peers": [asdict(p) for p in self.peers],
                "peaks": {d: asdict(p) for d, p in self.peaks.items()}, "seconds": self.seconds, "notes": self.notes,
                "results": [{"cell": asdict(c), "measurements": {n: asdict(m) for n, m in ms.items()}}
                            for c, ms in self.results]}

    @classmethod
    def from_dict(cls, d: dict) -> "SettingRun":
        results = [(Cell(tuple(r["cell"]["widths"]), r["cell"]["B"], r["cell"]["dtype"], r["cell"]["input_grad"]),
                    {n: Measurement(**m) for n, m in r["measurements"].items()}) for r in d["results"]]
        return cls(d["threads"], [PeerInfo(**p) for p in d["peers"]], {k: Peak(**v) for k, v in d["peaks"].items()},
                   results, d["seconds"], d["notes"])

    def fastest_peer(self, ms: dict):
        """(name, Measurement) of the fastest timed peer other than mlpgrad, or None."""
        timed = [(n, m) for n, m in ms.items() if n != "mlpgrad" and m.ns is not None]
        return min(timed, key=lambda nm: nm[1].ns) if timed else None


@dataclass
class TrainingStepRun:
    settings: list                     # SettingRun, one per thread setting
    options: dict                      # repeats, run_ns, seed

    @property
    def peers(self) -> list:
        """The peers of the first setting (for :func:`mlpgrad.bench.report.machine`)."""
        return self.settings[0].peers if self.settings else []


# ----------------------------------------------------------------------------- measuring
def run_training_step(cells_, peers: list, *, threads: Optional[int], repeats: int = 5, run_ns: int = 10_000_000,
                      seed: int = 0, progress: Optional[Callable[[int, int, str], None]] = None,
                      timed: Optional[list] = None) -> SettingRun:
    """Check and time ``peers`` (mlpgrad first) on ``cells_`` in this process, with every peer at ``threads``
    (None: its default). JAX's threads follow ``XLA_FLAGS`` as they were when JAX was imported. ``timed``: the
    names of the peers to time (default: all); the others are only checked (mlpgrad is the reference)."""
    start = time.perf_counter()
    cells_ = list(cells_)
    report = progress or (lambda _d, _t, _w: None)
    infos = _load(peers, threads)
    active = [p for p, i in zip(peers, infos) if i.status == "available"]
    dtypes = list(dict.fromkeys(c.dtype for c in cells_))
    with thread_limits(threads):
        before = {}
        for dtype in dtypes:
            report(0, len(cells_), f"peak probe, {dtype}")
            before[dtype] = fma_peak(dtype, threads)
        results = []
        for step, cell in enumerate(cells_):
            report(step, len(cells_), cell.describe())
            results.append((cell, _run_cell(make_problem(cell, seed), active, infos, repeats, run_ns, timed)))
        peaks = {}
        for dtype in dtypes:
            report(len(cells_), len(cells_), f"peak probe again, {dtype}")
            after = fma_peak(dtype, threads)
            concurrent = [p.concurrent_gflops for p in (before[dtype], after) if p.concurrent_gflops is not None]
            peaks[dtype] = Peak(f"{before[dtype].label}, best of {2 * PEAK_REPEATS} before and after the cells",
                                max(before[dtype].gflops, after.gflops), max(concurrent) if concurrent else None)
    report(len(cells_), len(cells_), "done")
    return SettingRun(threads, infos, peaks, results, time.perf_counter() - start)


def _run_cell(problem: Problem, active, infos, repeats, run_ns, timed=None) -> dict:
    cell = problem.cell
    out = {i.name: Measurement("skipped", reason=i.reason) for i in infos if i.status != "available"}
    ref_peer = active[0]
    ref_call = ref_peer.bind(problem)
    ref = ref_peer.result(problem, ref_call())
    calls = {ref_peer.name: ref_call}
    computes_x = getattr(ref_peer, "computes_x", cell.input_grad)
    out[ref_peer.name] = Measurement("timed", flops=flops(cell.widths, cell.B, computes_x), check=0.0,
                                     computes_x=computes_x)
    # check() scales ŷ by Σ|α_i ∂/∂α_i| / Σ|dy|: the sum Σ_b ŷ_b is one output of seed dy = 1
    scale = SimpleNamespace(dy=1.0, alpha=problem.alpha)
    tol = TOLERANCES[cell.dtype]
    for peer in active[1:]:
        try:
            call = peer.bind(problem)
            err, worst = check(scale, peer.result(problem, call()), ref)
        except Exception as exc:  # noqa: BLE001 -- one peer failing must not stop the others
            out[peer.name] = Measurement("failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        if not err <= tol:
            out[peer.name] = Measurement("wrong", check=err, worst=worst, computes_x=cell.input_grad,
                                         reason=f"disagrees with mlpgrad: {worst} off by {err:.1e} (tolerance "
                                                f"{tol:.0e}); not timed")
            continue
        out[peer.name] = Measurement("timed", flops=flops(cell.widths, cell.B, cell.input_grad), check=err,
                                     worst=worst, computes_x=cell.input_grad)
        calls[peer.name] = call
    if timed is not None:
        calls = {name: call for name, call in calls.items() if name in timed}
    for name, ns in time_side_by_side(calls, repeats, run_ns).items():
        out[name].ns = ns
    return {i.name: out[i.name] for i in infos}


# ----------------------------------------------------------------------------- one child per thread setting
# argv: the spec, then the CPU to bind the whole process to before anything starts threads ("" for none).
_CHILD = ("import os, sys; sys.argv[2] and os.sched_setaffinity(0, {int(sys.argv[2])}); "
          "from mlpgrad.bench.training_step import _child_main; sys.exit(_child_main(sys.argv[1]))")


def _one_cpu() -> Optional[int]:
    """A CPU this process may run on, to bind a pinned child to (None where affinity cannot be set)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    return min(os.sched_getaffinity(0))
_PROGRESS = "@@progress "


def _child_main(spec_json: str) -> int:
    """Run one thread setting and print its :class:`SettingRun` as JSON (progress lines go to stderr)."""
    spec = json.loads(spec_json)
    note = peers_mod.configure_xla_threads(spec["threads"])  # before anything imports jax

    def progress(done, total, what):
        print(f"{_PROGRESS}{done} {total} {what}", file=sys.stderr, flush=True)

    run = run_training_step([Cell(tuple(c["widths"]), c["B"], c["dtype"], c["input_grad"]) for c in spec["cells"]],
                            training_peers(spec["peers"]), threads=spec["threads"], repeats=spec["repeats"],
                            run_ns=spec["run_ns"], seed=spec["seed"], progress=progress, timed=spec.get("timed"))
    if note:
        run.notes.append(note)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if spec["threads"] == 1 and len(cpus) == 1:
        run.notes.append(f"pinned: the child process ran bound to CPU {cpus[0]} (sched_setaffinity before any thread "
                         "started), so no library could use a second core whatever its thread settings (XLA's CPU "
                         "client runs threads of its own despite its thread flags)")
    json.dump(run.as_dict(), sys.stdout)
    return 0


def _run_child(spec: dict, label: str, report, offset: int, total: int) -> SettingRun:
    """One child interpreter running ``spec`` (see :func:`_child_main`), its progress forwarded to ``report``."""
    # the JSON goes to a file, not a pipe: a pipe that nobody reads while we follow stderr could fill and stall
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stdout:
        cpu = _one_cpu() if spec["threads"] == 1 else None
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec), "" if cpu is None else str(cpu)],
                                stdout=stdout, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        other = []
        for line in proc.stderr:
            if line.startswith(_PROGRESS):
                done, _, what = line[len(_PROGRESS):].rstrip("\n").split(" ", 2)
                report(offset + int(done), total, f"{label}: {what}")
            else:
                other.append(line)
        if proc.wait() != 0:
            raise RuntimeError(f"the {label} measurement failed (exit code {proc.returncode}):\n"
                               f"{''.join(other[-20:])}")
        stdout.seek(0)
        return SettingRun.from_dict(json.load(stdout))


def _median_of_rounds(rounds: list, name: str) -> SettingRun:
    """One SettingRun from rounds of the same child (same cells, peers): each cell's ``name`` time is the
    median over the rounds of each round's median."""
    first = rounds[0]
    results = []
    for k, (cell, ms) in enumerate(first.results):
        merged = dict(ms)
        times = [r.results[k][1][name].ns for r in rounds if r.results[k][1][name].ns is not None]
        if times:
            merged[name] = replace(ms[name], ns=float(np.median(times)))
        results.append((cell, merged))
    notes = list(dict.fromkeys(n for r in rounds for n in r.notes))
    return SettingRun(first.threads, first.peers, first.peaks, results, sum(r.seconds for r in rounds), notes)


def _merge_alone(runs: dict, rounds: int = 1) -> SettingRun:
    """One SettingRun from per-peer children (name -> list of SettingRun, one per round, mlpgrad's first): each
    peer's measurements from its own children (median over the rounds), mlpgrad's peaks and notes."""
    runs = {name: _median_of_rounds(r, name) for name, r in runs.items()}
    base = runs["mlpgrad"]
    peers = [base.peers[0]] + [r.peers[-1] for name, r in runs.items() if name != "mlpgrad"]
    results = []
    for k, (cell, ms) in enumerate(base.results):
        merged = {"mlpgrad": ms["mlpgrad"]}
        for name, r in runs.items():
            if name != "mlpgrad":
                merged[name] = r.results[k][1][name]
        results.append((cell, merged))
    notes = list(dict.fromkeys(n for r in runs.values() for n in r.notes))
    notes.append("at default threads each library ran in a child interpreter of its own: the idle threads of one "
                 "(OpenBLAS's and OpenMP's spin after a call) would otherwise take the cores the next one needs"
                 + (f"; the children took turns in {rounds} rounds and each time is the median over the rounds "
                    "(a burst of load on the shared machine hits one round, not one library)" if rounds > 1 else ""))
    return SettingRun(base.threads, peers, base.peaks, results, sum(r.seconds for r in runs.values()), notes)


def run_settings(cells_, peer_names=None, *, thread_settings=THREAD_SETTINGS, repeats: int = 5,
                 run_ns: int = 10_000_000, seed: int = 0, rounds: int = DEFAULT_ROUNDS,
                 progress: Optional[Callable[[int, int, str], None]] = None) -> TrainingStepRun:
    """Run every thread setting in child interpreters (JAX's threads are fixed when it starts) and collect the
    results. Pinned to one thread, the peers are timed side by side in one child; at their default threads each
    library runs in a child of its own (mlpgrad only checks the others there), as a user runs it: in one
    process, a library's threads that keep spinning after its call would slow whichever library runs next.
    Those children take turns ``rounds`` times (mlpgrad, NumPy, …, mlpgrad, NumPy, …) and each time is the
    median over the rounds, so the comparison stays side by side in time though each library runs alone.
    ``progress(done, total, description)`` counts cells over all runs."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    cells_ = list(cells_)
    report = progress or (lambda _d, _t, _w: None)
    names = [p.name for p in training_peers(peer_names)]
    runs_per_setting = [len(names) * rounds if threads is None else 1 for threads in thread_settings]
    total = len(cells_) * sum(runs_per_setting)
    settings, offset = [], 0
    for threads in thread_settings:
        base = {"cells": [asdict(c) for c in cells_], "threads": threads, "repeats": repeats, "run_ns": run_ns,
                "seed": seed}
        if threads is not None:
            label = f"{threads} thread{'s' if threads != 1 else ''}"
            settings.append(_run_child({**base, "peers": names}, label, report, offset, total))
            offset += len(cells_)
            continue
        runs = {name: [] for name in names}
        for r in range(rounds):
            for name in names:
                spec = {**base, "peers": ["mlpgrad", name], "timed": [name]}
                label = f"default threads, {name}" + (f", round {r + 1} of {rounds}" if rounds > 1 else "")
                runs[name].append(_run_child(spec, label, report, offset, total))
                offset += len(cells_)
        settings.append(_merge_alone(runs, rounds))
    report(total, total, "done")
    return TrainingStepRun(settings, {"repeats": repeats, "run_ns": run_ns, "seed": seed})


def ratio(ms: dict, run: SettingRun) -> Optional[float]:
    """Fastest peer's time ÷ mlpgrad's (above 1: mlpgrad is faster), or None."""
    fastest = run.fastest_peer(ms)
    ours = ms.get("mlpgrad")
    if fastest is None or ours is None or ours.ns is None:
        return None
    return fastest[1].ns / ours.ns


def peak_fraction(m: Measurement, peak: Peak) -> Optional[float]:
    return None if m.gflops is None or not peak.gflops > 0 or not math.isfinite(peak.gflops) else m.gflops / peak.gflops

