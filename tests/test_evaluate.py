"""evaluate and predict: the run's own preprocessing, honest numbers, clear handling of bad files."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data.shapes import make_shapes
from cnnrun.model.scoring import probabilities
from tests.conftest import run_cli, run_here, tiny_config


def _train(folder, config) -> object:
    """Train `config` in this process (`train`'s silence on a terminal is tests/test_train.py's, in a process of its
    own); the run folder."""
    path = folder / "experiment.yaml"
    path.write_text(json.dumps(config))
    result = run_here("train", path, "--output-dir", folder / "runs")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # no library warnings
    (run,) = (folder / "runs").glob("*/*")
    return run


@pytest.fixture(scope="module")
def standardized_run(tmp_path_factory):
    config = tiny_config(train={"epochs": 3, "batch_size": 16})
    config["dataset"]["normalize"] = "standardize"
    return _train(tmp_path_factory.mktemp("std"), config)


def _loss(loss) -> object:
    return validate_experiment(tiny_config(compile={"optimizer": "adam", "loss": loss}), "test")


def test_probabilities_from_logits_softmax_and_one_sigmoid_unit_equal_a_hand_computation():
    logits = np.array([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    e = [math.exp(2.0), math.exp(1.0), math.exp(0.1)]
    expected = [[v / sum(e) for v in e], [1 / 3] * 3]
    from_logits = {"name": "categorical_crossentropy", "from_logits": True}
    np.testing.assert_allclose(probabilities(logits, _loss(from_logits)), expected, rtol=1e-12)
    softmax = np.array([[0.7, 0.2, 0.1]])
    np.testing.assert_array_equal(probabilities(softmax, _loss("categorical_crossentropy")), softmax)
    # one sigmoid unit: two columns, class 0 then class 1; σ(2) = 1 / (1 + e^−2) = 0.8807970779778823
    binary_logits = {"name": "binary_crossentropy", "from_logits": True}
    np.testing.assert_allclose(probabilities(np.array([[2.0], [0.0]]), _loss(binary_logits)),
                               [[1 - 0.8807970779778823, 0.8807970779778823], [0.5, 0.5]], rtol=1e-12)
    np.testing.assert_allclose(probabilities(np.array([[0.25]]), _loss("binary_crossentropy")), [[0.75, 0.25]])


@pytest.mark.slow
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


@pytest.mark.slow
def test_evaluate_on_the_validation_split_says_nothing_on_stderr(standardized_run):
    result = run_cli("evaluate", standardized_run, "--split", "validation", columns=None)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # no start-up chatter or library warnings
    assert (standardized_run / "eval" / "best_validation_metrics.json").exists()


def _write_images(folder, count=4, size=16, channels=1):
    x, y, names = make_shapes(count, image_size=size, channels=channels, num_classes=3, seed=11)
    folder.mkdir()
    for i in range(count):
        image = x[i, :, :, 0] if channels == 1 else x[i]
        Image.fromarray(image).resize((size * 2, size * 2)).save(folder / f"{i}_{names[y[i]]}.png")
    (folder / "notes.png").write_text("this is text, not a picture")
    return folder


@pytest.mark.slow
def test_predict_top_k_with_a_bad_file_lists_it_and_exits_1(standardized_run, tmp_path):
    images = _write_images(tmp_path / "images")
    out = tmp_path / "predictions.csv"
    result = run_here("predict", images, "--run", standardized_run, "--top-k", "2", "--output", out)
    assert result.returncode == 1, result.stderr[-2000:]  # as `data check`: some inputs were not readable
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


@pytest.mark.slow
def test_predict_equals_model_predict_on_the_same_array(standardized_run, tmp_path):
    import keras

    x, _, _ = make_shapes(1, image_size=16, seed=21)
    Image.fromarray(x[0, :, :, 0]).save(tmp_path / "one.png")
    out = tmp_path / "p.csv"
    result = run_cli("predict", tmp_path / "one.png", "--run", standardized_run, "--top-k", "3", "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    (row,) = csv.DictReader(out.open())
    info = json.loads((standardized_run / "dataset.json").read_text())
    model = keras.saving.load_model(standardized_run / "checkpoints" / "best.keras", safe_mode=True)
    expected = model.predict((x.astype(np.float32) - info["mean"]) / (info["std"] + 1e-7), verbose=0)[0]
    names = info["class_names"]
    for i in (1, 2, 3):
        assert float(row[f"probability_{i}"]) == pytest.approx(expected[names.index(row[f"class_{i}"])], abs=1e-5)


@pytest.mark.slow
def test_predict_binary_sigmoid_reports_both_classes(tmp_path):
    import keras

    config = tiny_config(train={"epochs": 1, "batch_size": 16})
    config["dataset"].update(num_classes=2, label_mode="binary")
    config["model"]["layers"] = config["model"]["layers"][:-1] + [{"Dense": {"units": 1, "activation": "sigmoid"}}]
    run = _train(tmp_path, config)
    images = tmp_path / "two"
    images.mkdir()
    x, _, _ = make_shapes(1, image_size=16, seed=1)
    Image.fromarray(x[0, :, :, 0]).save(images / "a.png")
    out = tmp_path / "p.csv"
    result = run_here("predict", images / "a.png", "--run", run, "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = csv.DictReader(out.open())
    model = keras.saving.load_model(run / "checkpoints" / "best.keras", safe_mode=True)
    p = float(model.predict(x.astype(np.float32) / 255.0, verbose=0)[0, 0])  # the sigmoid: P(class 1, square)
    predicted = {row["class_1"]: float(row["probability_1"]), row["class_2"]: float(row["probability_2"])}
    assert predicted == pytest.approx({"circle": 1 - p, "square": p}, abs=1e-5)


@pytest.mark.slow
def test_predict_missing_path_is_a_user_error(standardized_run, tmp_path):
    result = run_here("predict", tmp_path / "nothing.png", "--run", standardized_run)
    assert result.returncode == 2 and "no such file" in result.stderr


@pytest.mark.slow
def test_predict_without_run_uses_the_latest_run_and_refuses_an_experiment_folder(standardized_run, tmp_path):
    import shutil

    x, _, _ = make_shapes(1, image_size=16, seed=21)
    Image.fromarray(x[0, :, :, 0]).save(tmp_path / "one.png")
    experiment = tmp_path / "outputs" / "tiny"  # outputs/<experiment>/<run>, as `cnnrun train` makes it
    shutil.copytree(standardized_run, experiment / standardized_run.name)
    refused = run_here("predict", experiment, tmp_path / "one.png", cwd=tmp_path)
    assert refused.returncode == 2 and "--run" in refused.stderr  # its history.png is not a picture to predict
    out = tmp_path / "p.csv"
    result = run_here("predict", tmp_path / "one.png", "--output", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["file"] for row in csv.DictReader(out.open())] == [str(tmp_path / "one.png")]
    assert f"best.keras of outputs/tiny/{standardized_run.name})" in result.stdout  # the latest run
