"""``python -m mlpgrad train`` (mlpgrad.train_command, train_data, train_plot): each task with --save, a CSV and
an NPZ, the folded standardisation, --plot, and bad arguments."""

import re
import sys

import numpy as np
import pytest

import mlpgrad
from mlpgrad import cli, losses
from mlpgrad.train_data import DataError, load, sine, spirals



@pytest.fixture(autouse=True)
def plain_output(monkeypatch):
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "140")


def final_row(out, split):
    m = re.search(rf"{split}\s+[│|]\s+([\d,]+)\s+[│|]\s+(\S+)(?:\s+[│|]\s+(\S+) %)?", out)
    assert m, out
    return int(m.group(1).replace(",", "")), float(m.group(2)), None if m.group(3) is None else float(m.group(3))


# ----------------------------------------------------------------------------- the data
def test_builtin_tasks_are_deterministic_and_shaped():
    a, b = sine(seed=3), sine(seed=3)
    assert a.X.shape == (512, 1) and np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    s = spirals()
    assert s.X.shape == (600, 2) and sorted(np.unique(s.y)) == [0, 1] and s.kind == "classification"


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return str(path)


def test_csv_loader_picks_the_target_by_name_or_index(tmp_path):
    f = write_csv(tmp_path / "d.csv", ["a", "t", "b"], [[1, 10, 2], [3, 30, 4], [5, 50, 6]])
    for target in ("t", "1", "-2"):
        d = load(f, target, classify=False)
        assert d.X.tolist() == [[1, 2], [3, 4], [5, 6]] and d.y.tolist() == [10, 30, 50]
        assert d.feature_names == ["a", "b"]
    d = load(f, "a", classify=True)
    assert d.classes == ["1", "3", "5"] and d.y.tolist() == [0, 1, 2]


def test_npz_loader_x_and_y_or_columns(tmp_path):
    np.savez(tmp_path / "xy.npz", X=np.arange(6.0).reshape(3, 2), y=np.array([1.0, 2.0, 3.0]))
    d = load(str(tmp_path / "xy.npz"), None, classify=False)
    assert d.X.shape == (3, 2) and d.y.tolist() == [1, 2, 3]
    np.savez(tmp_path / "cols.npz", u=np.arange(3.0), v=np.ones(3), w=np.array([0, 1, 0]))
    d = load(str(tmp_path / "cols.npz"), "w", classify=True)
    assert d.X.tolist() == [[0, 1], [1, 1], [2, 1]] and d.y.tolist() == [0, 1, 0] and d.feature_names == ["u", "v"]


@pytest.mark.parametrize("content, target, match", [
    ("a,b\n1,2\n3,x\n", "b", r"line 3: 'x' is not a number"),
    ("a,b\n1,2\n3\n", "b", r"line 3: 1 values but the header has 2 columns"),
    ("a,b\n1,2\n3,nan\n", "b", r"the target hold NaN or infinite values \(first in example 1\)"),
    ("a,b\n1,2\n,4\n", "b", r"the inputs hold NaN"),
    ("a,b\n1,2\n3,4\n", "c", r"no column 'c'; the columns are a, b"),
    ("a,b\n1,2\n3,4\n", None, r"give the target column with --target NAME \(one of a, b\)"),
    ("a,b\n1,2\n", "b", r"1 example\(s\)"),
    ("a\n1\n2\n", "a", r"no input columns besides the target"),
    ("a,b\n", "b", r"expected a header row and at least one row"),
])
def test_csv_errors_name_the_problem(tmp_path, content, target, match):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(DataError, match=match):
        load(str(f), target, classify=False)


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match=r"expected a \.csv or \.npz file"):
        load(str(tmp_path / "d.txt"), "a", classify=False)
    with pytest.raises(DataError, match=r"No such file"):
        load(str(tmp_path / "missing.csv"), "a", classify=False)
    np.savez(tmp_path / "odd.npz", a=np.ones(3), b=np.ones(4))
    with pytest.raises(DataError, match=r"expected arrays X and y, or 1-D columns with --target NAME"):
        load(str(tmp_path / "odd.npz"), None, classify=False)
    with pytest.raises(DataError, match=r"every array must be a 1-D column of the same length"):
        load(str(tmp_path / "odd.npz"), "a", classify=False)


# ----------------------------------------------------------------------------- option errors
@pytest.mark.parametrize("argv, match", [
    (["--target", "y"], r"--target: only with --data"),
    (["--validation-fraction", "1"], r"--validation-fraction: expected a number in \[0, 1\)"),
    (["--lr", "-1"], r"--lr: expected a finite number >= 0"),
    (["--hidden", "0"], r"--hidden: expected a comma-separated list of widths, got .0."),
    (["--epochs", "0"], r"--epochs: .*positive integer"),
    (["--batch-size", "x"], r"--batch-size: .*positive integer"),
    (["--task", "mnist"], r"invalid choice: 'mnist'"),
    (["--momentum", "1"], r"--momentum: expected a number in \[0, 1\)"),
    (["--seed", "-1"], r"--seed: expected an integer >= 0, got -1"),
])
def test_bad_options_exit_2(capsys, argv, match):
    assert cli.main(["train", *argv]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_missing_data_file_exits_2(capsys, tmp_path):
    assert cli.main(["train", "--data", str(tmp_path / "none.csv"), "--target", "y"]) == 2
    assert "error: --data" in capsys.readouterr().out


def test_plot_without_matplotlib_says_so_before_training(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert cli.main(["train", "--plot", str(tmp_path / "p.png")]) == 2
    out = capsys.readouterr().out
    assert "--plot needs matplotlib" in out and "final losses" not in out


# ----------------------------------------------------------------------------- training
def test_default_task_trains_saves_and_reports(capsys, tmp_path):
    model = tmp_path / "sine.npz"
    assert cli.main(["train", "--save", str(model), "--no-progress"]) == 0
    out = capsys.readouterr().out
    n_train, train_loss, _ = final_row(out, "train")
    n_val, val_loss, _ = final_row(out, "validation")
    assert (n_train, n_val) == (410, 102) and train_loss < 0.05 and val_loss < 0.1
    assert "in mlpgrad" in out and "model written to" in out
    assert set(np.load(model, allow_pickle=False).files)  # a plain .npz
    net = mlpgrad.MLP.load(str(model))
    assert net.widths == (1, 32, 32)
    # the standardisation is folded in: the saved network predicts y from the raw x
    data = sine()
    assert losses.mse(net.forward_batch(data.X), data.y)[0] < 0.1 * np.var(data.y)


def test_spirals_with_save_reports_accuracy(capsys, tmp_path):
    model = tmp_path / "spirals.npz"
    assert cli.main(["train", "--task", "spirals", "--epochs", "150", "--save", str(model), "--no-progress"]) == 0
    out = capsys.readouterr().out
    _, _, train_accuracy = final_row(out, "train")
    assert train_accuracy > 90
    net = mlpgrad.MLP.load(str(model))
    data = spirals()
    assert np.mean((net.forward_batch(data.X) > 0) == (data.y == 1)) > 0.9


def test_csv_regression_predicts_in_the_data_units(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, (300, 2))
    y = 2 * X[:, 0] - X[:, 1] + 100
    f = write_csv(tmp_path / "d.csv", ["x1", "target", "x2"], np.column_stack([X[:, 0], y, X[:, 1]]).tolist())
    model = tmp_path / "m.npz"
    assert cli.main(["train", "--data", f, "--target", "target", "--hidden", "16", "--epochs", "150",
                     "--lr", "0.01", "--save", str(model), "--no-progress"]) == 0
    net = mlpgrad.MLP.load(str(model))
    assert np.sqrt(losses.mse(net.forward_batch(X), y)[0]) < 0.1 * y.std()


def test_npz_softmax_classification(capsys, tmp_path):
    data = spirals(300)
    labels = np.where(data.y == 1, 7, 3)
    labels[:50] = 5  # three classes
    np.savez(tmp_path / "d.npz", X=data.X, y=labels)
    assert cli.main(["train", "--data", str(tmp_path / "d.npz"), "--loss", "softmax_cross_entropy",
                     "--epochs", "5", "--save", str(tmp_path / "m.npz"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 classes" in out and "accuracy" in out
    assert mlpgrad.MLP.load(str(tmp_path / "m.npz")).output_shape == (3,)


@pytest.mark.parametrize("argv, match", [
    (["--task", "spirals", "--loss", "mse"], r"--loss mse: the task is a classification"),
    (["--loss", "logistic"], r"--loss logistic: the task is a regression"),
])
def test_loss_that_does_not_fit_the_task(capsys, argv, match):
    assert cli.main(["train", *argv]) == 2
    assert re.search(match, capsys.readouterr().out)


def test_plot_is_written(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    for task in ("sine", "spirals"):
        png = tmp_path / f"{task}.png"
        assert cli.main(["train", "--task", task, "--epochs", "3", "--plot", str(png), "--no-progress"]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threads_option(capsys):
    before = mlpgrad.get_num_threads()
    try:
        assert cli.main(["train", "--epochs", "2", "--threads", "1", "--no-progress"]) == 0
        assert mlpgrad.get_num_threads() == 1
    finally:
        mlpgrad.set_num_threads(before)  # the command sets the process's threads; other tests need theirs
    assert "1 thread(s)" in capsys.readouterr().out
