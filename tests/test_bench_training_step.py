"""The training-step grid of the bench (``python -m mlpgrad bench --training-step``,
:mod:`mlpgrad.bench.training_step` and :mod:`mlpgrad.bench.training_report`): its flops and problem, the FMA
probe's structure, a tiny grid end to end with every peer checked against mlpgrad first, wrong and missing
peers, the command line's tables, JSON and Markdown, and how the peers' children are run at their default
threads and pinned. Timings are never asserted."""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
from rich.console import Console

import mlpgrad
from mlpgrad import cli
from mlpgrad.bench import grid as grid_mod
from mlpgrad.bench import training_report as tr
from mlpgrad.bench import training_step as ts

from bench_support import FAST, Wrong, plain_output, statuses_in_child  # noqa: F401 (plain_output: an autouse fixture)

TS_TINY = [ts.Cell((5, 4, 3, 1), 3, "float64", True), ts.Cell((5, 4, 3, 1), 3, "float64", False),
           ts.Cell((6, 2, 1), 4, "float32", True), ts.Cell((6, 2, 1), 4, "float32", False)]
TS_ARGS = ["bench", "--training-step", "--networks", "5-4-3-1", "--batch-sizes", "3", "--dtypes", "float32",
           "--repeats", "1", "--run-ms", "0.1"]


def test_training_step_flops():
    # 784-256-256-1, B = 256: forward W z per layer, αᵀz; backward ∂W per layer, ∂Z of the second layer, ∂α
    layers = 784 * 256 + 256 * 256
    params = 2 * 256 * (2 * layers + 256 * 256 + 2 * 256)
    assert ts.flops((784, 256, 256, 1), 256, input_grad=False) == params
    assert ts.flops((784, 256, 256, 1), 256, input_grad=True) == params + 2 * 256 * 784 * 256
    assert ts.flops((6, 1), 2, input_grad=True) == 2 * 2 * 2 * 6  # depth 0: ŷ = Xα and ∂α only
    assert [c.widths for c in ts.cells()][::8] == list(ts.NETWORKS) and len(ts.cells()) == 3 * 2 * 2 * 2


def test_training_step_problem():
    p = ts.make_problem(ts.Cell((5, 4, 3, 1), 2, "float32", False), seed=3)
    assert [w.shape for w in p.weights] == [(4, 5), (3, 4)] and p.alpha.shape == (3,) and p.x.shape == (2, 5)
    assert all(a.dtype == np.float32 for a in p.weights + [p.alpha, p.x, p.dy]) and p.dy.tolist() == [1.0, 1.0]
    assert p.T == 2 and p.batch == 2


def test_concurrent_fma_probe_runs_one_probe_per_thread(monkeypatch):
    """n probes at once on n threads, their rates summed. The structure is checked with a stand-in probe (a
    comparison of two measured rates failed once on a shared machine: a short single probe ran at 24 GFLOP/s,
    the pair at 114); the real probe only has to give a positive, finite sum."""
    import threading

    from mlpgrad import _core

    calls = []
    both_waiting = threading.Barrier(2, timeout=10)

    def stand_in(dtype, ms, repeats):
        calls.append((threading.get_ident(), dtype, ms, repeats))
        rate = 10.0 * len(calls)  # 10 for the first probe, 20 for the second
        both_waiting.wait()  # returns only when the other probe runs at the same time
        return rate

    with monkeypatch.context() as m:
        m.setattr(_core, "_fma_peak_gflops", stand_in)
        assert ts.concurrent_fma_gflops("float32", 2) == 10.0 + 20.0
    assert len({c[0] for c in calls}) == 2 and {c[1:] for c in calls} == {("float32", 20.0, ts.PEAK_REPEATS)}
    both = ts.concurrent_fma_gflops("float64", 2)
    assert 0 < both < math.inf
    peak = ts.fma_peak("float64", None)
    if mlpgrad.get_num_threads() > 1:
        assert peak.concurrent_gflops is not None and peak.concurrent_gflops > 0
    else:
        assert peak.concurrent_gflops is None


def test_training_step_tiny_grid_agrees_and_reports_gflops():
    run = ts.run_training_step(TS_TINY, [ts.MlpgradStep(), ts.NumpyStep()], threads=1, **FAST)
    assert run.threads == 1 and [p.name for p in run.peers] == ["mlpgrad", "numpy"]
    assert set(run.peaks) == {"float64", "float32"}
    assert run.peaks["float64"].label == ("FMA probe (double vector FMA chains), 1 thread, best of 10 before and "
                                          "after the cells")
    assert run.peaks["float64"].gflops > 0
    assert run.peaks["float32"].label.startswith("FMA probe (float vector FMA chains), 1 thread")
    assert [c for c, _ in run.results] == TS_TINY
    for cell, ms in run.results:
        assert list(ms) == ["mlpgrad", "numpy"]
        for name, m in ms.items():
            assert m.status == "timed" and m.ns > 0 and m.check <= grid_mod.TOLERANCES[cell.dtype], (cell, name, m)
            assert m.gflops == m.flops / m.ns
        # both compute ∂x only where the cell asks for it (mlpgrad through parameter-only gradients)
        for name in ("mlpgrad", "numpy"):
            assert ms[name].computes_x == cell.input_grad
            assert ms[name].flops == ts.flops(cell.widths, cell.B, cell.input_grad)
        assert ts.ratio(ms, run) == ms["numpy"].ns / ms["mlpgrad"].ns
        assert ts.peak_fraction(ms["mlpgrad"], run.peaks[cell.dtype]) == ms["mlpgrad"].gflops / run.peaks[cell.dtype].gflops


class WrongStep(Wrong, ts.NumpyStep):
    """The NumPy step with ∂/∂W[0] 1 % too large; counts its calls."""

    label = "WrongStep"

    @staticmethod
    def corrupt(g):
        g.weights[0][...] *= 1.01


@pytest.fixture
def fake_peak(monkeypatch):
    """A stand-in for the peak probe (seconds of 2048³ products) where the test is about something else."""
    monkeypatch.setattr(ts, "fma_peak", lambda dtype, threads: ts.Peak(f"fake {dtype} peak", 100.0))


def test_training_step_wrong_peer_is_reported_not_timed(monkeypatch, fake_peak):
    monkeypatch.setitem(ts.STEP_PEERS, "wrong", WrongStep)
    wrong = WrongStep()
    run = ts.run_training_step(TS_TINY[:2], [ts.MlpgradStep(), wrong, ts.NumpyStep()], threads=1, **FAST)
    for cell, ms in run.results:
        assert ms["wrong"].status == "wrong" and ms["wrong"].ns is None and ms["wrong"].worst == "∂/∂weights[0]"
        assert ms["numpy"].status == "timed"
        assert ts.ratio(ms, run) == ms["numpy"].ns / ms["mlpgrad"].ns  # the fastest peer among those timed
    assert wrong.calls == 2  # one checking call per cell, never a timed run
    result = ts.TrainingStepRun([run], {"repeats": 1, "run_ns": 100_000, "seed": 0})
    console = Console(record=True, width=250)
    tr.render(result, console)
    assert "WRONG: WrongStep on 5-4-3-1, B=3, float64, with ∂x, every peer pinned to one thread: disagrees" \
           in console.export_text()


def test_training_step_missing_peers_are_skipped(monkeypatch, fake_peak):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "jax", None)
    run = ts.run_training_step(TS_TINY[:1], ts.training_peers(["torch", "jax"]), threads=1, **FAST)
    assert [(p.name, p.status) for p in run.peers] == [("mlpgrad", "available"), ("torch", "skipped"),
                                                      ("jax", "skipped")]
    ms = run.results[0][1]
    assert ms["torch"].status == ms["jax"].status == "skipped" and "not installed" in ms["torch"].reason
    assert ts.ratio(ms, run) is None


_TS_AGREE = """
import json, sys
from mlpgrad.bench import training_step as ts
cells = [ts.Cell((5, 4, 3, 1), 3, d, x) for d in ("float64", "float32") for x in (True, False)]
cells += [ts.Cell((9, 7, 1), 2, "float32", False), ts.Cell((4, 1), 2, "float64", True)]
run = ts.run_training_step(cells, ts.training_peers([sys.argv[1]]), threads=1, repeats=1, run_ns=100_000)
json.dump([[c.describe(), ms[sys.argv[1]].status, ms[sys.argv[1]].reason] for c, ms in run.results], sys.stdout)
"""


@pytest.mark.parametrize("module", ["torch", "jax"])
def test_training_step_frameworks_agree_with_mlpgrad(module):
    statuses = statuses_in_child(_TS_AGREE, module)
    assert len(statuses) == 6 and all(status == "timed" for _, status, _ in statuses), statuses


def test_cli_training_step_writes_tables_json_and_markdown(tmp_path, capsys):
    """End to end: one child interpreter per thread setting, the tables, the JSON records and the Markdown."""
    out_json, out_md = tmp_path / "ts.json", tmp_path / "ts.md"
    argv = TS_ARGS + ["--peers", "numpy", "--json", str(out_json), "--markdown", str(out_md)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    for needle in ("training step, peers at their default threads", "training step, every peer pinned to one thread",
                   "fastest peer ÷ mlpgrad",
                   "FMA probe (float vector FMA chains), 1 thread, best of 10 before and after the cells: ",
                   f"FMA probe (float vector FMA chains), 1 thread × {mlpgrad.get_num_threads()} (default threads",
                   f"JSON written to {out_json}"):
        assert needle in text, needle
    assert "†" not in text  # mlpgrad skips ∂x where it is not asked for, as the peers do

    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["schema"] == tr.SCHEMA and data["command"] == "python -m mlpgrad " + " ".join(argv)
    assert [s["threads"] for s in data["settings"]] == [None, 1]
    assert {"python", "numpy", "mlpgrad"} <= set(data["machine"]["libraries"])
    records = data["measurements"]
    assert len(records) == 2 * 2 * 2  # 2 thread settings x (with, without ∂x) x (mlpgrad, NumPy)
    for r in records:
        assert r["network"] == "5-4-3-1" and r["B"] == 3 and r["dtype"] == "float32" and r["status"] == "timed"
        assert r["ns_per_call"] > 0 and r["gflops"] == pytest.approx(r["flops"] / r["ns_per_call"])
        assert r["peak_fraction"] > 0 and r["peak"].startswith("FMA probe")
        assert r["computes_x"] == r["input_grad"]
    md = out_md.read_text(encoding="utf-8")
    assert "| network | B | dtype | ∂x | mlpgrad | NumPy | fastest peer ÷ mlpgrad |" in md
    assert "| 5-4-3-1 | 3 | float32 | no |" in md and "†" not in md


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--training-step", "--targets"], "--targets and --training-step: choose one"),
        (["bench", "--training-step", "--plot", "x.png"], "--plot: not applicable with --training-step"),
        (["bench", "--training-step", "--widths", "4"], "--widths: not applicable with --training-step"),
        (["bench", "--training-step", "--threads", "2"], "--threads: not applicable with --training-step"),
        (["bench", "--training-step", "--peers", "oracle"], "--peers oracle: not applicable with --training-step"),
        (["bench", "--training-step", "--batch-sizes", "none"], "--batch-sizes none: not applicable with"),
        (["bench", "--networks", "4-1"], "--networks: only with --training-step"),
        (["bench", "--rounds", "2"], "--rounds: only with --training-step"),
        (["bench", "--train", "--rounds", "2"], "--rounds: not applicable with --train"),
        (["bench", "--dag", "--rounds", "2"], "--rounds: not applicable with --dag"),
        (["bench", "--training-step", "--rounds", "0"], "--rounds"),
        (["bench", "--training-step", "--networks", "4-3"], "networks of positive widths ending in 1"),
        (["bench", "--training-step", "--networks", "4-0-1"], "networks of positive widths ending in 1"),
    ],
)
def test_cli_bad_training_step_options(capsys, argv, message):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "error" in captured.err and message in captured.err


def test_training_step_default_threads_merges_one_child_per_library():
    """At default threads each library is timed in a child of its own; the merge takes each one's numbers."""
    cell = ts.Cell((3, 4, 1), 2, "float64", True)
    peak = ts.Peak("probe", 1.0)

    def child(name, ns):
        infos = [ts.PeerInfo("mlpgrad", "mlpgrad", "", "available")]
        ms = {"mlpgrad": ts.Measurement("timed", ns=ns if name == "mlpgrad" else None, flops=10)}
        if name != "mlpgrad":
            infos.append(ts.PeerInfo(name, name, "", "available"))
            ms[name] = ts.Measurement("timed", ns=ns, flops=10)
        return ts.SettingRun(None, infos, {"float64": peak}, [(cell, ms)], 1.0, [f"note {name}"])

    merged = ts._merge_alone({"mlpgrad": [child("mlpgrad", 5.0)], "numpy": [child("numpy", 7.0)]})
    assert [p.name for p in merged.peers] == ["mlpgrad", "numpy"]
    ((got_cell, ms),) = merged.results
    assert got_cell == cell and ms["mlpgrad"].ns == 5.0 and ms["numpy"].ns == 7.0
    assert merged.seconds == 2.0 and "note numpy" in merged.notes and "child interpreter of its own" in merged.notes[-1]
    assert "rounds" not in merged.notes[-1]

    # rounds: each library's time is the median over its rounds, whatever the order the rounds came in
    merged = ts._merge_alone({"mlpgrad": [child("mlpgrad", t) for t in (9.0, 5.0, 6.0)],
                              "numpy": [child("numpy", t) for t in (7.0, 30.0, 8.0)]}, rounds=3)
    ((_, ms),) = merged.results
    assert ms["mlpgrad"].ns == 6.0 and ms["numpy"].ns == 8.0 and ms["numpy"].flops == 10
    assert merged.seconds == 6.0 and "3 rounds" in merged.notes[-1]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_training_step_pinned_child_is_bound_to_one_cpu():
    """The pinned setting's child runs bound to one CPU (XLA ignores its thread flags); default children are not."""
    spec = {"cells": [{"widths": [3, 4, 1], "B": 2, "dtype": "float64", "input_grad": True}], "peers": ["mlpgrad"],
            "repeats": 1, "run_ns": 100_000, "seed": 0}
    pinned = ts._run_child({**spec, "threads": 1}, "pinned", lambda *_: None, 0, 1)
    cpu = min(os.sched_getaffinity(0))
    assert any(f"bound to CPU {cpu}" in n for n in pinned.notes), pinned.notes
    default = ts._run_child({**spec, "threads": None}, "default", lambda *_: None, 0, 1)
    assert not any("bound to CPU" in n for n in default.notes) or len(os.sched_getaffinity(0)) == 1
    ((_, ms),) = pinned.results
    assert ms["mlpgrad"].ns > 0


def test_training_step_default_threads_children_take_turns(monkeypatch):
    """run_settings runs the per-library children in turns, round after round, and rejects rounds < 1."""
    order = []

    def fake_child(spec, label, report, offset, total):
        order.append((spec["threads"], tuple(spec.get("timed") or spec["peers"])))
        cell = ts.Cell(**spec["cells"][0])
        infos = [ts.PeerInfo(n, n, "", "available") for n in spec["peers"]]
        ms = {n: ts.Measurement("timed", ns=float(len(order)), flops=10) for n in spec["peers"]}
        return ts.SettingRun(spec["threads"], infos, {"float64": ts.Peak("probe", 1.0)}, [(cell, ms)], 1.0, [])

    monkeypatch.setattr(ts, "_run_child", fake_child)
    grid = [ts.Cell((3, 4, 1), 2, "float64", True)]
    result = ts.run_settings(grid, ["numpy"], thread_settings=(None,), rounds=2)
    assert order == [(None, ("mlpgrad",)), (None, ("numpy",)), (None, ("mlpgrad",)), (None, ("numpy",))]
    ((_, ms),) = result.settings[0].results
    assert ms["mlpgrad"].ns == 2.0 and ms["numpy"].ns == 3.0  # medians of (1, 3) and (2, 4)
    with pytest.raises(ValueError, match="rounds must be at least 1, got 0"):
        ts.run_settings(grid, ["numpy"], thread_settings=(None,), rounds=0)
