"""``python -m mlpgrad bench --dag`` (mlpgrad.bench.dag): the random-DAG generators, the level runs the PyTorch peer
uses, a tiny run end to end (every peer agrees with mlpgrad, slopes fitted, JSON and plot written) and the
options it refuses. Timings are never asserted."""
from __future__ import annotations

import json

import numpy as np
import pytest
import mlpgrad
from mlpgrad import cli
from mlpgrad.bench import dag as bench_dag


@pytest.mark.parametrize("window", [None, 16])
def test_random_dags_are_numbered_topologically_with_in_degree_8(window):
    a = bench_dag.random_dag(4000, np.random.default_rng(1), window=window)
    assert a["src"].size == a["dst"].size == a["weights"].size == 4000
    assert np.all(a["src"] < a["dst"]) and np.all(a["src"] >= 0) and np.all(np.diff(a["dst"]) >= 0)
    np.testing.assert_array_equal(np.bincount(a["dst"])[64:], 8)
    d = mlpgrad.DAG(**a)
    assert d.n_nodes == 64 + 500 and d.n_edges == 4000


def test_level_runs_hold_no_edge_inside_and_cover_every_node_and_edge():
    a = bench_dag.random_dag(3000, np.random.default_rng(2), window=30)
    runs = bench_dag.level_runs(a)
    assert runs[0][0] == 64 and runs[-1][1] == 64 + 375 and runs[0][2] == 0 and runs[-1][3] == 3000
    for (a0, b0, e0, f0), (a1, _, e1, _) in zip(runs, runs[1:]):
        assert b0 == a1 and f0 == e1
    for first, end, e0, e1 in runs:
        assert np.all(a["src"][e0:e1] < first) and np.all((a["dst"][e0:e1] >= first) & (a["dst"][e0:e1] < end))


def test_tiny_dag_bench_runs_and_every_peer_agrees():
    steps = []
    bench = bench_dag.run_dag_bench((500, 2000), repeats=1, run_ns=100_000,
                                    progress=lambda done, total, what: steps.append((done, total)))
    assert not bench.wrong, bench.wrong
    assert [(r["generator"], r["E"]) for r in bench.rows] == [("uniform", 496), ("uniform", 2000), ("local", 496),
                                                              ("local", 2000)]
    assert all(r["single"] > 0 and r["batch"] > 0 for r in bench.rows)
    assert all(r["oracle"] for r in bench.rows if r["generator"] == "uniform")
    assert {"uniform single", "uniform batch", "local single", "local batch"} <= set(bench.slopes)
    assert set(bench.from_mlp) == {1, 16, 256} and bench.bandwidth > 0
    assert steps[-1] == (5, 6)
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    assert all(r["torch"] for r in bench.rows if r["generator"] == "uniform")


def test_cli_dag_writes_json_and_plot(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(bench_dag, "QUICK_EDGES", (300, 600))
    monkeypatch.setenv("COLUMNS", "250")
    out_json, out_png = tmp_path / "dag.json", tmp_path / "dag.png"
    code = cli.main(["bench", "--dag", "--quick", "--repeats", "1", "--run-ms", "0.1", "--json", str(out_json),
                     "--plot", str(out_png)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "log-log slope of time against E, uniform single" in text and "DAG.from_mlp vs MLP" in text
    data = json.loads(out_json.read_text())
    assert data[0]["command"].startswith("python -m mlpgrad bench --dag") and len(data[0]["rows"]) == 4
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--dag", "--targets"], "choose one"),
    (["--dag", "--training-step"], "choose one"),
    (["--dag", "--widths", "3"], "--widths: not applicable with --dag"),
    (["--dag", "--markdown", "x.md"], "--markdown: not applicable with --dag"),
])
def test_cli_bad_dag_options(capsys, argv, message):
    assert cli.main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err
