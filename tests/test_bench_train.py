"""``python -m mlpgrad bench --train`` (mlpgrad.bench.train, train_torch) on tiny cases: what it measures and
writes, never how fast."""

import json

import numpy as np
import pytest

from mlpgrad import cli

pytest.importorskip("sklearn")

from mlpgrad.bench import train as bench_train  # noqa: E402

TINY = (bench_train.Case("iris", "MLPClassifier", (("hidden_layer_sizes", (5,)), ("max_iter", 3))),
        bench_train.Case("diabetes", "MLPRegressor", (("hidden_layer_sizes", (5,)), ("max_iter", 3))))


@pytest.fixture(autouse=True)
def plain_output(monkeypatch):
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def test_cases_fit_both_estimators_with_the_same_parameters():
    results = bench_train.run_cases(TINY, repeats=1)
    assert [r.case for r in results] == ["iris (classifier, adam)", "diabetes (regressor, adam)"]
    for r in results:
        assert r.params["max_iter"] == r.params["n_iter_no_change"] == 3 and r.params["random_state"] == 0
        assert r.sklearn.epochs == r.mlpgrad.epochs == 3
        assert 0 <= r.mlpgrad.test_error and 0 <= r.sklearn.test_error and r.speedup > 0
    assert results[0].shape == "112 × 4 → 3"
    try:
        import torch  # noqa: F401
    except ImportError:
        assert all(r.torch is None and r.note == "PyTorch not installed" for r in results)
    else:
        assert all(r.torch is not None and r.torch.epochs == 3 for r in results)


def test_torch_loop_learns_the_same_task():
    pytest.importorskip("torch")
    case = bench_train.Case("breast_cancer", "MLPClassifier", (("hidden_layer_sizes", (20,)), ("max_iter", 30)))
    r = bench_train.run_cases([case], repeats=1)[0]
    assert r.torch.test_error < 0.1 and r.mlpgrad.test_error < 0.1


def test_bias_steps_are_timed_side_by_side():
    steps = bench_train.run_bias_steps([(8, 8)], batches=(4,), dtypes=("float64",), repeats=2, run_ns=100_000)
    assert [(s.network, s.batch, s.dtype) for s in steps] == [("8-8-1", 4, "float64")]
    assert steps[0].with_ns > 0 and steps[0].without_ns > 0 and steps[0].ratio > 0


def test_time_ratio_alternates_the_order_and_takes_the_median_of_the_pairs_ratios(monkeypatch):
    from mlpgrad.bench import timing

    # Fake clocks: run k of a callable takes times[name][k] ns per call, whatever n.
    times = {"a": [10, 100, 10, 10, 10], "b": [11, 100, 12, 30, 11]}
    order = []

    def fake_run(f, n):
        order.append(f.__name__)
        return n * times[f.__name__][sum(1 for name in order if name == f.__name__) - 1]

    def a():
        pass

    def b():
        pass

    monkeypatch.setattr(timing, "_calls_per_run", lambda f, run_ns: 3)
    monkeypatch.setattr(timing, "_run", fake_run)
    a_ns, b_ns, ratio = timing.time_ratio(a, b, repeats=5)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert (a_ns, b_ns) == (10, 12)
    # pairs 1.1, 1.0, 1.2, 3.0, 1.1: the median 1.1, where the medians' ratio would say 1.2
    assert ratio == pytest.approx(1.1)


def test_command_writes_tables_json_and_markdown(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(bench_train, "CASES", TINY[:1])
    monkeypatch.setattr(bench_train, "BIAS_NETWORKS", ((8, 8),))
    out_json, out_md = tmp_path / "t.json", tmp_path / "t.md"
    assert cli.main(["bench", "--train", "--quick", "--repeats", "1", "--json", str(out_json),
                     "--markdown", str(out_md)]) == 0
    out = capsys.readouterr().out
    assert "iris (classifier, adam)" in out and "with biases" in out and "target mlpgrad ≥ 2×" in out
    data = json.loads(out_json.read_text())
    assert data["command"].startswith("python -m mlpgrad bench --train")
    assert data["cases"][0]["params"]["hidden_layer_sizes"] == [5] and data["speedup_target"] == 2.0
    assert {s["network"] for s in data["bias_steps"]} == {"8-8-1"}
    assert np.isfinite([s["ratio"] for s in data["bias_steps"]]).all()
    assert "| iris (classifier, adam) |" in out_md.read_text()


@pytest.mark.parametrize("argv, match", [
    (["--train", "--widths", "8"], r"--widths: not applicable with --train"),
    (["--train", "--targets"], r"--targets and --train: choose one"),
    (["--train", "--training-step"], r"--training-step and --train: choose one"),
])
def test_bad_options(capsys, argv, match):
    import re

    assert cli.main(["bench", *argv]) == 2
    assert re.search(match, capsys.readouterr().err)
