"""evaluate and predict: the run's own preprocessing, honest numbers, clear handling of bad files."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cnnrun.data.shapes import make_shapes
from tests.conftest import run_cli, run_here, tiny_config

pytestmark = pytest.mark.slow


def _train(folder, config) -> object:
    path = folder / "experiment.yaml"
    path.write_text(json.dumps(config))
    result = run_cli("train", path, "--output-dir", folder / "runs")
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (folder / "runs").glob("*/*")
    return run


@pytest.fixture(scope="module")
def standardized_run(tmp_path_factory):
    config = tiny_config(train={"epochs": 3, "batch_size": 16})
    config["dataset"]["normalize"] = "standardize"
    return _train(tmp_path_factory.mktemp("std"), config)


@pytest.mark.parametrize("checkpoint", ["best", "last"])
def test_evaluate_reproduces_scores_json(standardized_run, checkpoint):
    result = run_here("evaluate", standardized_run, "--checkpoint", checkpoint)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((standardized_run / "scores.json").read_text())[checkpoint]
    metrics = json.loads((standardized_run / "eval" / f"{checkpoint}_test_metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(scores["accuracy"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(scores["loss"], rel=1e-5)
    with (standardized_run / "eval" / f"{checkpoint}_test_per_class.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == ["circle", "square", "triangle"]
    assert sum(int(r["support"]) for r in rows) == metrics["examples"] == 40
    for name in ("confusion", "misclassified"):
        with Image.open(standardized_run / "eval" / f"{checkpoint}_test_{name}.png") as image:
            assert image.size[0] > 200 and image.size[1] > 200


def test_evaluate_validation_split_and_bad_split(standardized_run):
    assert run_here("evaluate", standardized_run, "--split", "validation").returncode == 0
    assert (standardized_run / "eval" / "best_validation_metrics.json").exists()
    bad = run_here("evaluate", standardized_run, "--split", "train")
    assert bad.returncode == 2 and "use test or validation" in bad.stderr


def _write_images(folder, count=4, size=16, channels=1):
    x, y, names = make_shapes(count, image_size=size, channels=channels, num_classes=3, seed=11)
    folder.mkdir()
    for i in range(count):
        image = x[i, :, :, 0] if channels == 1 else x[i]
        Image.fromarray(image).resize((size * 2, size * 2)).save(folder / f"{i}_{names[y[i]]}.png")
    (folder / "notes.png").write_text("this is text, not a picture")
    return folder


def test_predict_top_k_with_a_bad_file(standardized_run, tmp_path):
    images = _write_images(tmp_path / "images")
    out = tmp_path / "predictions.csv"
    result = run_here("predict", standardized_run, images, "--top-k", "2", "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not a readable image" in result.stdout
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["file"].endswith("notes.png")
    for row in rows:
        if not row["error"]:
            p1, p2 = float(row["probability_1"]), float(row["probability_2"])
            assert 1.0 >= p1 >= p2 >= 0.0
            assert row["class_1"] in ("circle", "square", "triangle")


def test_predict_equals_model_predict_on_the_same_array(standardized_run, tmp_path):
    import keras

    x, _, _ = make_shapes(1, image_size=16, seed=21)
    Image.fromarray(x[0, :, :, 0]).save(tmp_path / "one.png")
    out = tmp_path / "p.csv"
    result = run_here("predict", standardized_run, tmp_path / "one.png", "--top-k", "3", "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = csv.DictReader(out.open())
    info = json.loads((standardized_run / "dataset.json").read_text())
    model = keras.saving.load_model(standardized_run / "checkpoints" / "best.keras", safe_mode=True)
    expected = model.predict((x.astype(np.float32) - info["mean"]) / (info["std"] + 1e-7), verbose=0)[0]
    names = info["class_names"]
    for i in (1, 2, 3):
        assert float(row[f"probability_{i}"]) == pytest.approx(expected[names.index(row[f"class_{i}"])], abs=1e-5)


def test_predict_binary_sigmoid_reports_both_classes(tmp_path):
    config = tiny_config(train={"epochs": 1, "batch_size": 16})
    config["dataset"].update(num_classes=2, label_mode="binary")
    config["model"]["layers"] = config["model"]["layers"][:-1] + [{"Dense": {"units": 1, "activation": "sigmoid"}}]
    run = _train(tmp_path, config)
    images = tmp_path / "two"
    images.mkdir()
    x, _, _ = make_shapes(1, image_size=16, seed=1)
    Image.fromarray(x[0, :, :, 0]).save(images / "a.png")
    out = tmp_path / "p.csv"
    result = run_here("predict", run, images / "a.png", "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = csv.DictReader(out.open())
    assert {row["class_1"], row["class_2"]} == {"circle", "square"}
    assert float(row["probability_1"]) + float(row["probability_2"]) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(float(row["probability_1"]))


def test_predict_missing_path_is_a_user_error(standardized_run, tmp_path):
    result = run_here("predict", standardized_run, tmp_path / "nothing.png")
    assert result.returncode == 2 and "no such file" in result.stderr
