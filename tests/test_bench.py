"""The comparison bench's plumbing (``python -m mlpgrad bench``, :mod:`mlpgrad.bench.grid`): a tiny grid runs end
to end, the JSON has its fields, missing and wrong peers are reported (a wrong peer is never timed), ``--plot``
writes a PNG. Timings are never asserted: grids are tiny, with one short timed run per measurement."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from rich.console import Console

from mlpgrad import cli
from mlpgrad.bench import grid as grid_mod
from mlpgrad.bench import peers as peers_mod
from mlpgrad.bench import report
from mlpgrad.bench.grid import Cell, CellResult, GridRun, Outcome, PeerInfo, fit_slope, run_grid
from mlpgrad.bench.peers import MlpgradPeer, NumpyPeer, OraclePeer

from bench_support import FAST, Wrong, plain_output, statuses_in_child  # noqa: F401 (plain_output: an autouse fixture)

TINY = [Cell("single", "float64", 4, 2), Cell("single", "float32", 6, 1), Cell("batch", "float64", 5, 2, 3),
        Cell("batch", "float32", 3, 1, 4)]
# a tiny grid through the command line: 2 widths x 2 depths (+ batch of 3) x 2 dtypes, 0.1 ms runs
TINY_ARGS = ["bench", "--widths", "3,5", "--depths", "1,2", "--batch-sizes", "3", "--repeats", "1", "--run-ms", "0.1"]


class WrongAlpha(Wrong, NumpyPeer):
    """NumPy with ∂/∂alpha 1 % too large (off by 0.01 where it is 0: a dead ReLU layer); counts its calls."""

    label = "WrongPeer"

    @staticmethod
    def corrupt(g):
        g.alpha[...] = np.where(g.alpha == 0, 0.01, 1.01 * g.alpha)


class Broken(NumpyPeer):
    name, label = "broken", "BrokenPeer"

    def bind(self, problem):
        raise RuntimeError("cannot bind")


class Slow(NumpyPeer):
    name, label = "slow", "SlowPeer"
    max_call_ns = 1.0  # every call is "too slow"


def _by_name(run: GridRun, cell_index: int = 0) -> dict:
    return run.results[cell_index].outcomes


# ----------------------------------------------------------------------------- the grid
def test_tiny_grid_runs_and_every_peer_agrees():
    run = run_grid(TINY, [MlpgradPeer(), NumpyPeer(), OraclePeer()], **FAST)
    assert [p.name for p in run.peers] == ["mlpgrad", "numpy", "oracle"]
    assert all(p.status == "available" and p.version for p in run.peers)
    assert [r.cell for r in run.results] == TINY  # grid order, although cells run smallest first
    for r in run.results:
        assert list(r.outcomes) == ["mlpgrad", "numpy", "oracle"]
        for name, o in r.outcomes.items():
            assert o.status == "timed", (r.cell, name, o)
            assert isinstance(o.ns, float) and math.isfinite(o.ns) and o.ns > 0
            assert o.check is not None and o.check <= grid_mod.TOLERANCES[r.cell.dtype]
        assert r.speedup("numpy") == r.outcomes["numpy"].ns / r.outcomes["mlpgrad"].ns
    assert run.wrong == []
    assert run.settings["repeats"] == 1 and run.settings["threads"] == 1


def test_progress_is_reported_for_every_cell():
    seen = []
    run_grid(TINY[:2], [MlpgradPeer()], progress=lambda done, total, what: seen.append((done, total, what)), **FAST)
    assert [(d, t) for d, t, _ in seen] == [(0, 2), (1, 2), (2, 2)]
    assert "K=" in seen[0][2] and seen[-1][2] == "done"


def test_problem_is_the_notes_network():
    p = peers_mod.make_problem(8, 3, None, "float32", seed=1)
    assert [w.shape for w in p.weights] == [(8, 8)] * 3 and p.alpha.shape == p.x.shape == (8,)
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in p.weights)
    assert p.dy == 1.0 and p.edges == 3 * 64 and p.work == p.edges
    b = peers_mod.make_problem(8, 3, 5, "float64")
    assert b.x.shape == (5, 8) and b.dy.shape == (5,) and b.work == 5 * b.edges


def test_wrong_peer_is_reported_not_timed():
    wrong = WrongAlpha()
    run = run_grid(TINY, [MlpgradPeer(), NumpyPeer(), wrong], **FAST)
    for r in run.results:
        o = r.outcomes["wrong"]
        assert o.status == "wrong" and o.ns is None and r.speedup("wrong") is None
        assert o.worst == "∂/∂alpha" and o.check > grid_mod.TOLERANCES[r.cell.dtype]
        assert "disagrees with mlpgrad" in o.reason and "not timed" in o.reason
        assert r.outcomes["numpy"].status == "timed"
    assert wrong.calls == len(TINY)  # the one checking call per cell, never a timed run
    assert len(run.wrong) == len(TINY)
    console = Console(record=True, width=250)
    report.render(run, console)
    text = console.export_text()
    assert "WRONG: WrongPeer on single K=4, T=2, float64: disagrees with mlpgrad: ∂/∂alpha off by" in text


def test_broken_and_slow_peers_do_not_stop_the_others():
    run = run_grid(TINY[:1], [MlpgradPeer(), Broken(), Slow(), NumpyPeer()], **FAST)
    o = _by_name(run)
    assert o["broken"].status == "failed" and "RuntimeError: cannot bind" in o["broken"].reason
    assert o["slow"].status == "skipped" and "too slow" in o["slow"].reason and o["slow"].ns is None
    assert o["numpy"].status == "timed" and o["mlpgrad"].status == "timed"


def test_oracle_is_skipped_where_a_call_is_predicted_too_slow():
    oracle = OraclePeer()
    oracle.max_call_ns = 1e6  # 1 ms
    run = run_grid([Cell("single", "float64", 4, 1), Cell("single", "float64", 64, 16)],
                   [MlpgradPeer(), oracle], **FAST)
    assert run.results[0].outcomes["oracle"].status == "timed"
    big = run.results[1].outcomes["oracle"]
    assert big.status == "skipped" and "too slow" in big.reason


def test_missing_peer_is_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" raises ImportError
    monkeypatch.setitem(sys.modules, "jax", None)
    run = run_grid(TINY[:1], peers_mod.default_peers(["numpy", "torch", "jax"]), **FAST)
    info = {p.name: p for p in run.peers}
    for name in ("torch", "jax"):
        assert info[name].status == "skipped" and "not installed" in info[name].reason
        assert "pip install" in info[name].reason
        assert _by_name(run)[name].status == "skipped" and _by_name(run)[name].ns is None
    assert _by_name(run)["numpy"].status == "timed"
    assert [p.name for p in run.available] == ["mlpgrad", "numpy"]


_AGREE = """
import json, sys
from mlpgrad.bench.grid import Cell, run_grid
from mlpgrad.bench.peers import PEERS, MlpgradPeer
cells = [Cell("single", "float64", 4, 2), Cell("single", "float32", 6, 1), Cell("batch", "float64", 5, 2, 3),
         Cell("batch", "float32", 3, 1, 4), Cell("single", "float64", 7, 3), Cell("batch", "float32", 9, 3, 4)]
statuses = []
for activation, some in (("relu", cells), ("tanh", cells[-2:]), ("softplus", cells[-2:])):
    run = run_grid(some, [MlpgradPeer(), PEERS[sys.argv[1]]()], activation=activation, repeats=1, run_ns=100_000)
    statuses += [[activation, r.cell.describe(), r.outcomes[sys.argv[1]].status, r.outcomes[sys.argv[1]].reason]
                 for r in run.results]
json.dump(statuses, sys.stdout)
"""


@pytest.mark.parametrize("module", ["torch", "jax"])
def test_installed_frameworks_agree_with_mlpgrad(module):
    statuses = statuses_in_child(_AGREE, module)
    assert len(statuses) == 10
    assert all(status == "timed" for _, _, status, _ in statuses), statuses


def test_fit_slope_of_linear_times():
    def result(K, T, ns):
        return CellResult(Cell("single", "float64", K, T), {"mlpgrad": Outcome("timed", ns=ns)})

    sizes = [(64, 1), (64, 4), (128, 4), (256, 4), (16, 4)]  # the last is below FIT_MIN_EDGES: left out
    run = GridRun([PeerInfo("mlpgrad", "mlpgrad", "", "available")],
                  [result(K, T, 3.0 * T * K * K + (1e6 if K == 16 else 0)) for K, T in sizes], {})
    fit = fit_slope(run)
    assert fit.points == 4 and fit.dtype == "float64"
    assert fit.slope == pytest.approx(1.0) and 10 ** fit.intercept == pytest.approx(3.0)
    assert fit_slope(run, dtype="float32") is None


def test_grid_specs():
    cells = grid_mod.DEFAULT_GRID.cells()
    assert {c.K for c in cells if c.mode == "single"} >= {4, 64, 256, 1024}
    assert {c.dtype for c in cells} == {"float64", "float32"} and any(c.mode == "batch" for c in cells)
    quick = grid_mod.QUICK_GRID.cells()
    assert len(quick) < len(cells) / 3 and all(c.work <= 64 * 4 * 64 * 64 for c in quick)


# ----------------------------------------------------------------------------- the command line
def test_cli_tiny_grid_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = TINY_ARGS + ["--peers", "numpy,oracle", "--json", str(out_json), "--markdown", str(out_md)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    for needle in ("value_and_grad, one example", "value_and_grad_batch", "mlpgrad", "NumPy", "oracle",
                   "speed-up", "peers pinned to 1 thread", f"JSON written to {out_json}"):
        assert needle in text, needle

    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["schema"] == report.SCHEMA and data["created"]
    assert data["command"] == "python -m mlpgrad " + " ".join(argv)
    m = data["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["blas"] and m["platform"]
    assert {"python", "numpy", "mlpgrad"} <= set(m["libraries"])
    s = data["settings"]
    assert s["repeats"] == 1 and s["run_ns"] == 100_000 and s["threads"] == 1 and s["activation"] == "relu"
    assert [p["name"] for p in data["peers"]] == ["mlpgrad", "numpy", "oracle"]
    assert all(p["status"] == "available" and p["version"] for p in data["peers"])
    assert "fit" in data  # None here: every cell is below FIT_MIN_EDGES

    records = data["measurements"]
    # 2 widths x 2 depths x 2 dtypes single + the same x 1 batch size, 3 implementations each
    assert len(records) == (8 + 8) * 3
    fields = {"mode", "dtype", "K", "T", "B", "edges", "implementation", "status", "ns_per_call", "speedup",
              "check", "worst", "reason"}
    assert all(set(r) == fields for r in records)
    for r in records:
        assert r["status"] == "timed" and r["ns_per_call"] > 0 and r["edges"] == r["T"] * r["K"] ** 2
        assert (r["speedup"] is None) == (r["implementation"] == "mlpgrad")
        assert (r["B"] is None) == (r["mode"] == "single")
    md = out_md.read_text(encoding="utf-8")
    assert "| dtype | T | K | T·K² | mlpgrad | NumPy | oracle |" in md
    assert "| dtype | T | K | B | T·K² | mlpgrad | NumPy | oracle |" in md


def test_cli_reports_missing_peers_as_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "jax", None)
    out_json = tmp_path / "b.json"
    assert cli.main(TINY_ARGS + ["--dtypes", "float32", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "PyTorch: skipped, not installed (torch): pip install torch  (or: pip install 'mlpgrad[compare]')" in text
    assert "JAX: skipped, not installed (jax): pip install jax jaxlib  (or: pip install 'mlpgrad[compare]')" in text
    peers = {p["name"]: p for p in json.loads(out_json.read_text(encoding="utf-8"))["peers"]}
    assert peers["torch"]["status"] == peers["jax"]["status"] == "skipped"
    assert peers["numpy"]["status"] == "available"


def test_cli_exit_code_1_when_a_peer_is_wrong(capsys, monkeypatch):
    monkeypatch.setitem(peers_mod.PEERS, "wrong", WrongAlpha)
    assert cli.main(TINY_ARGS + ["--peers", "wrong", "--batch-sizes", "none"]) == 1
    text = capsys.readouterr().out
    assert "WRONG: WrongPeer on single K=3, T=1, float64" in text
    assert "WRONG: WrongPeer on single K=5, T=2, float32" in text
    assert "value_and_grad_batch" not in text


def test_cli_sets_xla_threads_before_jax(monkeypatch):
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert peers_mod.configure_xla_threads(3) == ""
    import os

    assert "--xla_cpu_multi_thread_eigen=true" in os.environ["XLA_FLAGS"]
    assert "intra_op_parallelism_threads=3" in os.environ["XLA_FLAGS"]
    peers_mod.configure_xla_threads(1)
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
    monkeypatch.setitem(sys.modules, "jax", object())
    assert "not pinned" in peers_mod.configure_xla_threads(1)


def test_cli_plot_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "speed.png"
    # two sizes at T·K² ≥ 4096, so the slope is fitted and drawn
    assert cli.main(["bench", "--widths", "4,64", "--depths", "1,2", "--batch-sizes", "none", "--dtypes", "float64",
                     "--peers", "numpy", "--repeats", "1", "--run-ms", "0.1", "--plot", str(png)]) == 0
    assert f"plot written to {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def _linear_run() -> GridRun:
    """mlpgrad's times exactly 3 ns per edge from T·K² = 4,096 on (so its fit lies on its own line), NumPy's 10×."""
    sizes = [(4, 4), (16, 4), (32, 4), (64, 4), (128, 4), (256, 4), (64, 1), (128, 1)]
    results = [CellResult(Cell("single", "float64", K, T), {"mlpgrad": Outcome("timed", ns=3.0 * max(T * K * K, 4096)),
                                                            "numpy": Outcome("timed", ns=30.0 * T * K * K + 5e4)})
               for K, T in sizes]
    peers = [PeerInfo("mlpgrad", "mlpgrad", "", "available"), PeerInfo("numpy", "NumPy", "", "available")]
    return GridRun(peers, results, {"threads": 1, "activation": "relu"})


def test_plot_draws_the_fit_line_visibly():
    """The dashed fit the legend lists is drawn over the range it was fitted on and can be seen where it lies on
    mlpgrad's own line: a dark line on top, found in the rendered pixels along its whole length."""
    pytest.importorskip("matplotlib")
    import matplotlib.colors
    import matplotlib.pyplot as plt

    from mlpgrad.bench import plot as plot_mod

    fig = plot_mod.figure(_linear_run())
    try:
        ax = fig.axes[0]
        fits = [line for line in ax.get_lines() if line.get_label().startswith("mlpgrad's fit")]
        assert len(fits) == 1
        fit = fits[0]
        assert fit.get_label() in [t.get_text() for t in ax.get_legend().get_texts()]
        x, y = (np.asarray(v, float) for v in fit.get_data())
        assert x.tolist() == [4096.0, 4 * 256.0**2]  # the fitted cells' range
        np.testing.assert_allclose(y, 3.0 * x, rtol=1e-9)  # the fit of exactly linear times
        (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
        assert x_lo < x.min() and x.max() < x_hi and y_lo < y.min() and y.max() < y_hi
        ours = next(line for line in ax.get_lines() if line.get_label().startswith("mlpgrad (slope"))
        assert matplotlib.colors.to_rgb(fit.get_color()) != matplotlib.colors.to_rgb(ours.get_color())
        assert fit.get_zorder() > max(line.get_zorder() for line in ax.get_lines() if line is not fit)

        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
        height = pixels.shape[0]
        ts = np.linspace(0.05, 0.95, 40)
        points = ax.transData.transform(np.column_stack([x[0] * (x[1] / x[0]) ** ts, y[0] * (y[1] / y[0]) ** ts]))
        dark = 0
        for px, py in points:
            col, row = int(round(px)), height - int(round(py))
            dark += bool((pixels[row - 2:row + 3, col - 2:col + 3].max(axis=-1) < 90).any())
        assert dark >= 0.6 * len(points), f"the fit line shows at only {dark} of {len(points)} points along it"
    finally:
        plt.close(fig)


def test_cli_plot_without_matplotlib_fails_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from mlpgrad.bench import command

    monkeypatch.setattr(command, "run_grid", lambda *a, **k: pytest.fail("measured although --plot cannot work"))
    assert cli.main(TINY_ARGS + ["--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install matplotlib (or: pip install 'mlpgrad[plot]')" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--targets", "--plot", "x.png"], "--plot: not applicable with --targets"),
        (["bench", "--targets", "--threads", "2"], "--threads: not applicable with --targets"),
        (["bench", "--peers", "numpy,tensorflow"], "expected a comma-separated list of peers"),
        (["bench", "--widths", "4,0"], "expected a comma-separated list of widths"),
        (["bench", "--dtypes", "float16"], "expected a comma-separated list of dtypes"),
        (["bench", "--threads", "0"], "expected a positive integer, got 0"),
        (["bench", "--run-ms", "-1"], "--run-ms: expected a positive number"),
    ],
)
def test_cli_bad_bench_options(capsys, argv, message):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "error" in captured.err and message in captured.err
