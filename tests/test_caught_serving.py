"""Serving a run: export's check fails loudly (exit 1) beyond its tolerance, the export formats are one table of
records, and `predict` averages the views of `evaluate.tta` as evaluate does."""

import csv
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from cnnrun.errors import UserError
from cnnrun.tasks import export
from tests.conftest import only_run, run_here, tiny_config
from tests.test_errors import assert_user_error
from tests.test_recipe_pieces import expected as hand_tta

FLIP = [("identity", 0.5), ("flip", 0.5)]  # the views of `evaluate.tta: [flip]` and their weights


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory):
    """A 1-epoch tiny run whose config asks for test-time augmentation by mirroring."""
    folder = tmp_path_factory.mktemp("serving")
    path = folder / "tta.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="tta", evaluate={"tta": ["flip"]}, train={"epochs": 1,
                                                                                              "batch_size": 16},
                                               output={"plots": False, "report": False})))
    result = run_here("train", path, "--output-dir", folder / "runs")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    return only_run(folder / "runs")


# ---------------------------------------------------------------- export


def test_every_export_format_is_one_frozen_record_of_one_table():
    from cnnrun.cli.manage import ExportFormat

    assert list(export.FORMATS) == ["saved_model", "onnx", "litert"] == [f.value for f in ExportFormat]
    for name, kind in export.FORMATS.items():
        assert dataclasses.is_dataclass(kind) and kind.name == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            kind.suffix = ".zip"
    assert [kind.default_name("best") for kind in export.FORMATS.values()] == [
        "best_saved_model", "best.onnx", "best.tflite"]
    assert [kind.packages for kind in export.FORMATS.values()] == [
        (), ("tf2onnx", "onnx", "onnxruntime"), ("ai_edge_litert",)]


def test_a_format_that_is_not_in_the_table_is_an_error_naming_the_known_ones(tmp_path):
    for call in (lambda: export.export_format("tflite"), lambda: export.check_packages("tflite"),
                 lambda: export.write_export(None, "tflite", tmp_path / "model.tflite")):
        with pytest.raises(UserError, match=r"--format tflite: .*saved_model, onnx, litert"):
            call()
    assert not (tmp_path / "model.tflite").exists()


@pytest.mark.slow
def test_an_export_that_differs_from_the_checkpoint_by_more_than_the_tolerance_exits_1(tta_run, monkeypatch):
    result = run_here("export", tta_run, "--format", "onnx")
    assert result.returncode == 0, result.stdout + result.stderr
    difference = float(result.stdout.split("max difference ")[1].split()[0])
    assert 0 <= difference <= 1e-4 and "(within 0.0001)" in result.stdout
    # the same export judged with a tolerance below the difference it has (none below 0): it must fail
    monkeypatch.setattr(export, "TOLERANCE", -1.0)
    result = run_here("export", tta_run, "--format", "onnx")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "(MORE than -1)" in result.stdout
    assert "does not predict what best.keras predicts" in result.stdout


@pytest.mark.slow
def test_export_names_the_known_formats_for_an_out_file_that_fits_none(tta_run, tmp_path):
    assert_user_error(run_here("export", tta_run, "--format", "onnx", "--out", tmp_path / "model.tflite"),
                      "a onnx model is one file ending in .onnx")


# ---------------------------------------------------------------- predict


@pytest.mark.slow
def test_predict_averages_the_views_of_evaluate_tta_as_evaluate_does(tta_run, tmp_path):
    from cnnrun.config import load_saved_experiment
    from cnnrun.model.scoring import tta_probabilities

    info = json.loads((tta_run / "dataset.json").read_text())
    assert info["normalize"] == "rescale" and info["input_shape"] == [16, 16, 1]
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (5, 16, 16)).astype(np.uint8)
    (tmp_path / "pics").mkdir()
    for i, picture in enumerate(raw):
        Image.fromarray(picture, mode="L").save(tmp_path / "pics" / f"{i}.png")
    classes = info["class_names"]
    result = run_here("predict", tmp_path / "pics", "--run", tta_run, "--top-k", len(classes), "--output",
                      tmp_path / "predictions.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "averaged over flip views" in result.stdout
    with (tmp_path / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    got = np.zeros((5, len(classes)))
    for row in rows:  # each picture's classes, most probable first
        for i in range(1, len(classes) + 1):
            got[int(row["file"][-5]), classes.index(row[f"class_{i}"])] = float(row[f"probability_{i}"])

    model = keras.saving.load_model(tta_run / "checkpoints" / "best.keras", safe_mode=True)
    pictures = raw[..., None].astype(np.float32) / 255.0
    by_hand = hand_tta(model, pictures, FLIP)  # the mirror image and the picture, each weighed 1/2, in NumPy
    np.testing.assert_allclose(got, by_hand, atol=2e-6)
    experiment = load_saved_experiment(tta_run / "config.yaml")  # what evaluate averages, on the same pictures
    evaluated = tta_probabilities(model, tf.data.Dataset.from_tensor_slices(pictures).batch(2), experiment)
    np.testing.assert_allclose(got, evaluated, atol=2e-6)
    assert np.abs(by_hand - model.predict(pictures, verbose=0)).max() > 1e-3  # the views change the answer
