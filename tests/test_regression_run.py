"""`label_mode: regression` through a tiny run: scores.json, evaluate and predict checked against the model's own raw
outputs undone here (× std + mean, from dataset.json) and MAE, RMSE and R² computed here from them."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import only_run, run_here
from tests.regression_data import number_table
from tests.test_regression import config_for


def by_hand(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² of each column, averaged over the columns, written out with plain sums."""
    n, maes, rmses, r2s = len(truth), [], [], []
    for j in range(truth.shape[1]):
        errors = [truth[i, j] - predicted[i, j] for i in range(n)]
        mean = sum(truth[:, j]) / n
        maes.append(sum(abs(e) for e in errors) / n)
        rmses.append((sum(e * e for e in errors) / n) ** 0.5)
        r2s.append(1 - sum(e * e for e in errors) / sum((t - mean) ** 2 for t in truth[:, j]))
    return {"mae": sum(maes) / len(maes), "rmse": sum(rmses) / len(rmses), "r2": sum(r2s) / len(r2s)}


@pytest.mark.slow
def test_a_run_scores_evaluates_and_predicts_numbers_in_their_own_units(tmp_path, write_config):
    import keras

    table, truth = number_table(tmp_path, 40)
    result = run_here("train", write_config(config_for(table, train={"epochs": 4})), "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    run = only_run(tmp_path / "out")
    assert "targets       size, half (mean" in result.stdout  # the header: the targets, not classes
    dataset = json.loads((run / "dataset.json").read_text())
    recorded = json.loads((run / "splits.json").read_text())
    train = np.array([truth[str(tmp_path / p)] for p in recorded["train"]])
    assert dataset["target_mean"] == pytest.approx(train.mean(axis=0))
    assert dataset["target_std"] == pytest.approx(train.std(axis=0))

    paths = [str(tmp_path / p) for p in recorded["test"]]
    pictures = np.stack([np.asarray(Image.open(p).convert("L"))[..., None] for p in paths]).astype(np.float32) / 255
    model = keras.saving.load_model(run / "checkpoints" / "best.keras")
    raw = np.asarray(model.predict(pictures, verbose=0), np.float64)
    numbers = raw * np.array(dataset["target_std"]) + np.array(dataset["target_mean"])  # undone here
    expected = by_hand(np.array([truth[p] for p in paths]), numbers)
    scores = json.loads((run / "scores.json").read_text())["best"]
    for name in ("mae", "rmse", "r2"):
        assert scores[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
    assert "accuracy" not in scores and "balanced_accuracy" not in scores

    result = run_here("evaluate", run)
    assert result.returncode == 0, result.stderr[-2000:]
    eval_dir = run / "eval"
    metrics = json.loads((eval_dir / "best_test_metrics.json").read_text())
    for name in ("mae", "rmse", "r2"):
        assert metrics[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
    with (eval_dir / "best_test_residuals.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [str(tmp_path / row["file"]) for row in rows] == paths
    for i, row in enumerate(rows):
        assert float(row["size_predicted"]) == pytest.approx(numbers[i, 0], abs=1e-4)
        assert float(row["half_residual"]) == pytest.approx(truth[paths[i]][1] - numbers[i, 1], abs=1e-4)
    for figure in ("scatter", "residuals"):
        assert Image.open(eval_dir / f"best_test_{figure}.png").size[0] > 300
    assert not list(eval_dir.glob("*confusion*")) and not list(eval_dir.glob("*predictions.npz"))
    result = run_here("report", run)  # the page shows evaluate's figures instead of the class sections
    assert result.returncode == 0, result.stderr[-2000:]
    page = (run / "report.html").read_text()
    assert "best.keras: best_test_scatter" in page and "best.keras: best_test_residuals" in page
    assert "Confusion matrix" not in page

    out = tmp_path / "predicted.csv"
    result = run_here("predict", "--run", run, *paths[:4], "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    with out.open() as f:
        written = list(csv.DictReader(f))
    assert [row["file"] for row in written] == paths[:4]
    assert np.array([[float(row["size"]), float(row["half"])] for row in written]) == \
        pytest.approx(numbers[:4], abs=1e-4)

    # the exported model takes raw pixels and gives the numbers in their own units
    import tensorflow as tf

    result = run_here("export", run)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = tf.saved_model.load(str(run / "export" / "best_saved_model"))  # kept: its variables live in it
    assert np.asarray(loaded.serve(tf.constant(pictures * 255))) == pytest.approx(numbers, abs=1e-3)

    # the normalisation evaluate and predict undo is the one recorded in dataset.json, not one computed again
    (run / "dataset.json").write_text(json.dumps({**dataset, "target_mean": [m + 100 for m in dataset["target_mean"]]}))
    result = run_here("evaluate", run)
    assert result.returncode == 0, result.stderr[-2000:]
    with (eval_dir / "best_test_residuals.csv").open() as f:
        moved = [float(row["size_predicted"]) for row in csv.DictReader(f)]
    assert moved == pytest.approx(numbers[:, 0] + 100, abs=1e-4)
    result = run_here("predict", "--run", run, paths[0], "--output", out)
    with out.open() as f:
        assert float(next(csv.DictReader(f))["half"]) == pytest.approx(numbers[0, 1] + 100, abs=1e-4)

    result = run_here("explain", run, paths[0], "--out", tmp_path / "explained")  # Grad-CAM of a class: refused
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "cnnrun explain shows what makes the model choose a class, but this run (dataset.label_mode: " \
           "regression) gives numbers" in line and not (tmp_path / "explained").exists()


@pytest.mark.slow
def test_folds_of_a_table_of_numbers_split_its_training_pictures_and_say_how(tmp_path, write_config):
    from tests.regression_data import write

    table, _ = number_table(tmp_path, 20)
    rows = list(csv.reader(table.open()))[1:]
    write(table, [row[:3] + ["test" if row[3] == "test" else "train"] for row in rows])
    result = run_here("train", write_config(config_for(table, train={"epochs": 1})), "--folds", "2",
                      "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 (one seeded deal, not stratified: numbers, not classes;" in result.stdout
    validation = [json.loads((next((tmp_path / "out" / f"tiny-fold{i}of2").iterdir()) / "splits.json").read_text())
                  for i in (1, 2)]
    first, second = (set(split["validation"]) for split in validation)
    assert not first & second and first | second == {row[0] for row in rows if row[3] != "test"}
