"""What a run keeps of its predictions, for the report: class counts, predictions files, calibration, top losses."""

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from cnnrun.atomic import atomic_write_figure
from cnnrun.config import validate_experiment
from cnnrun.data.shapes import make_shapes
from cnnrun.errors import UserError
from cnnrun.figures import reliability_figure
from cnnrun.model.calibration import reliability
from cnnrun.model.scoring import top_losses
from cnnrun.run_folder.files import predictions_name
from cnnrun.run_folder.folder import Run
from tests.conftest import run_here, tiny_config

# 6 pictures, 3 classes; the confidence is the largest probability, right when its class is the label
PROBABILITIES = np.array([
    [0.50, 0.30, 0.20],  # label 0: confidence 0.50, right  -> bin 2 [0.4, 0.6)
    [0.40, 0.35, 0.25],  # label 1: confidence 0.40, wrong  -> bin 2 (a lower edge belongs to its bin)
    [0.35, 0.33, 0.32],  # label 1: confidence 0.35, wrong  -> bin 1 [0.2, 0.4)
    [0.05, 0.15, 0.80],  # label 2: confidence 0.80, right  -> bin 4 [0.8, 1.0]
    [0.00, 0.00, 1.00],  # label 2: confidence 1.00, right  -> bin 4 (1.0 goes into the last bin)
    [0.90, 0.05, 0.05],  # label 1: confidence 0.90, wrong  -> bin 4
])
LABELS = np.array([0, 1, 1, 2, 2, 1])


def test_reliability_bins_and_ece_equal_a_hand_computation():
    rel = reliability(PROBABILITIES, LABELS, bins=5)
    assert [(b.lower, b.upper) for b in rel.bins] == [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)]
    assert [b.count for b in rel.bins] == [0, 1, 2, 0, 3]
    assert [b.confidence for b in rel.bins] == pytest.approx([None, 0.35, (0.50 + 0.40) / 2, None,
                                                              (0.80 + 1.00 + 0.90) / 3])
    assert [b.accuracy for b in rel.bins] == pytest.approx([None, 0 / 1, 1 / 2, None, 2 / 3])
    # ECE = 1/6 · |0 − 0.35| + 2/6 · |0.5 − 0.45| + 3/6 · |2/3 − 0.9| = (0.35 + 0.1 + 0.7) / 6
    assert rel.ece == pytest.approx(1.15 / 6, abs=1e-12)
    assert rel.examples == 6
    assert len(reliability(PROBABILITIES, LABELS).bins) == 15  # the default, as Guo et al.
    assert rel.accuracy == pytest.approx(3 / 6) and rel.confidence == pytest.approx(3.95 / 6)
    assert rel.bins[4].gap == pytest.approx(2 / 3 - 0.9) and rel.bins[0].gap == 0.0
    assert json.loads(json.dumps(rel.to_dict()))["bins"][1] == {"lower": 0.2, "upper": 0.4, "count": 1,
                                                               "confidence": 0.35, "accuracy": 0.0}
    # float32, as the predictions file holds them: the same bins (none of these confidences sits just below an edge)
    assert [b.count for b in reliability(PROBABILITIES.astype(np.float32), LABELS, bins=5).bins] == [0, 1, 2, 0, 3]


def test_reliability_edge_cases_certainty_one_bin_and_wrong_input():
    certain = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    rel = reliability(certain, np.array([0, 1, 1]), bins=10)
    assert [b.count for b in rel.bins] == [0] * 9 + [3]  # 1.0 exactly: the last bin, not an eleventh
    assert rel.bins[9].confidence == 1.0 and rel.bins[9].accuracy == pytest.approx(2 / 3)
    assert rel.ece == pytest.approx(1 / 3)  # 3/3 · |2/3 − 1|
    assert all(b.confidence is None and b.accuracy is None for b in rel.bins[:9])
    one = reliability(PROBABILITIES, LABELS, bins=1)  # one bin: |accuracy − mean confidence| of the whole split
    assert one.ece == pytest.approx(abs(3 / 6 - 3.95 / 6)) and one.bins[0].count == 6
    assert reliability(certain, np.array([0, 1, 0])).ece == 0.0  # right and sure of it: calibrated
    with pytest.raises(ValueError):
        reliability(PROBABILITIES, LABELS[:5])
    with pytest.raises(ValueError):
        reliability(PROBABILITIES, LABELS, bins=0)


def test_reliability_figure_draws_the_bins_it_is_given(tmp_path):
    rel = reliability(PROBABILITIES, LABELS, bins=5)
    fig = reliability_figure(rel, "tiny: best.keras on test")
    top, below = fig.axes
    accuracy, gap = top.containers[0], top.containers[1]
    assert [bar.get_height() for bar in accuracy] == pytest.approx([0.0, 0.5, 2 / 3])  # the bins with pictures
    assert [bar.get_x() for bar in accuracy] == pytest.approx([0.2, 0.4, 0.8])
    assert [bar.get_height() for bar in gap] == pytest.approx([0.35, 0.45 - 0.5, 0.9 - 2 / 3])
    assert [bar.get_height() for bar in below.containers[0]] == [0, 1, 2, 0, 3]
    assert fig.get_suptitle() == "tiny: best.keras on test\nexpected calibration error 0.1917"
    atomic_write_figure(fig, tmp_path / "reliability.png")
    with Image.open(tmp_path / "reliability.png") as image:
        assert image.size == (500, 560)


def test_top_losses_are_the_largest_minus_log_p_true_ties_by_index():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.3, 0.7], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 0, 1, 0])
    # −log p(true): 0.105, 1.609, 0.916, 0.357, 0.357, inf
    losses = [-math.log(p[y]) if p[y] > 0 else math.inf for p, y in zip(probabilities, labels, strict=True)]
    by_hand = sorted(range(6), key=lambda i: (-losses[i], i))
    assert by_hand == [5, 1, 2, 3, 4, 0]
    assert top_losses(probabilities, labels, 4).tolist() == by_hand[:4]  # 3 before 4: equal losses, index order
    assert top_losses(probabilities, labels, 10).tolist() == by_hand
    assert top_losses(probabilities, labels, 0).tolist() == []


def test_predictions_file_round_trip_absent_and_damaged(tmp_path):
    run = Run(tmp_path)
    assert run.read_predictions("best", "test") is None
    assert predictions_name("last", "validation") == "eval/last_validation_predictions.npz"
    with pytest.raises(ValueError):
        predictions_name("middle", "test")
    run.write_predictions("best", "test", PROBABILITIES, LABELS)
    path = tmp_path / "eval" / "best_test_predictions.npz"
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [path.name]  # no partial file left
    with np.load(path) as saved:  # what another program reading the file sees
        assert saved["probabilities"].dtype == np.float32 and saved["labels"].dtype == np.int64
        np.testing.assert_array_equal(saved["probabilities"], PROBABILITIES.astype(np.float32))
    probabilities, labels = run.read_predictions("best", "test")
    np.testing.assert_array_equal(probabilities, PROBABILITIES.astype(np.float32))
    np.testing.assert_array_equal(labels, LABELS)

    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=f"^{path}: damaged"):
        run.read_predictions("best", "test")
    path.write_bytes(b"not an npz")
    with pytest.raises(UserError, match=f"^{path}: damaged"):
        run.read_predictions("best", "test")
    for arrays, words in [({"probabilities": PROBABILITIES, "labels": LABELS[:5]}, "labels are int64 of shape"),
                          ({"probabilities": PROBABILITIES[0], "labels": LABELS}, "probabilities are"),
                          ({"probabilities": PROBABILITIES, "labels": LABELS + 1}, "labels run from 1 to 3"),
                          ({"probabilities": PROBABILITIES, "labels": LABELS - 1}, "labels run from -1 to 1"),
                          ({"probabilities": PROBABILITIES}, "no labels array")]:
        with path.open("wb") as f:
            np.savez(f, **arrays)
        with pytest.raises(UserError, match="damaged") as caught:
            run.read_predictions("best", "test")
        assert str(caught.value).startswith(str(path)) and words in str(caught.value) and "\n" not in str(caught.value)


def test_class_counts_per_split_equal_a_hand_count(tmp_path):
    from cnnrun.data import load_splits

    x, _, _ = make_shapes(1, image_size=16, channels=1, seed=2)
    wanted = {"train": {"a": 5, "b": 3, "c": 4}, "test": {"a": 1, "b": 2, "c": 3}}
    for split, classes in wanted.items():
        for name, count in classes.items():
            (tmp_path / "pics" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(x[0, :, :, 0]).save(tmp_path / "pics" / split / name / f"{i}.png")
    experiment = validate_experiment(tiny_config(dataset={"name": "image_folder", "path": str(tmp_path / "pics"),
                                                          "image_size": 16, "color_mode": "grayscale"}), "test")
    info = load_splits(experiment).info
    assert info.class_names == ["a", "b", "c"]
    assert info.class_counts == {"train": [5, 3, 4], "test": [1, 2, 3]}
    assert info.sizes == {"train": 12, "test": 6}


def test_a_dataset_json_without_class_counts_still_loads(tmp_path):
    old = {"class_names": ["a", "b"], "input_shape": [16, 16, 1], "label_mode": "categorical",
           "normalize": "rescale", "mean": 0.0, "std": 1.0, "sizes": {"train": 4}}
    (tmp_path / "dataset.json").write_text(json.dumps(old))
    info = Run(tmp_path).dataset_info()
    assert info.class_counts == {} and info.sizes == {"train": 4}


# ---------------------------------------------------------------- on a trained run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained for 3 epochs (at a rate that spreads its confidences), and a copy of the predictions
    training wrote (before any evaluate)."""
    import yaml

    folder = tmp_path_factory.mktemp("predictions")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(compile={"optimizer": {"name": "adam", "learning_rate": 0.01}},
                                                 train={"epochs": 3, "batch_size": 16})))
    result = run_here("train", config, "--output-dir", folder / "outputs")
    assert result.returncode == 0, result.stderr
    (run,) = (folder / "outputs").glob("*/*")
    shutil.copytree(run / "eval", folder / "written_by_train")
    return run, folder / "written_by_train"


def _model_and_split(run, checkpoint: str, split: str):
    """The checkpoint loaded as Keras loads it, and the split's raw pictures and labels."""
    import keras

    from cnnrun.config.load import load_saved_experiment
    from cnnrun.data import load_splits
    from cnnrun.model.custom_objects import custom_objects

    model = keras.saving.load_model(run / "checkpoints" / f"{checkpoint}.keras", safe_mode=True,
                                    custom_objects=custom_objects())
    examples = load_splits(load_saved_experiment(run / "config.yaml")).examples[split]
    return model, examples.images, examples.labels


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", ["best", "last"])
def test_train_writes_the_test_predictions_of_each_checkpoint(trained, checkpoint):
    run, written = trained
    model, images, labels = _model_and_split(run, checkpoint, "test")
    expected = model.predict(images.astype(np.float32) / 255.0, verbose=0)  # normalize: rescale
    with np.load(written / f"{checkpoint}_test_predictions.npz") as saved:
        np.testing.assert_allclose(saved["probabilities"], expected, atol=1e-5)
        np.testing.assert_array_equal(saved["labels"], labels)
    assert len(labels) == 40


@pytest.mark.slow
def test_evaluate_writes_predictions_ece_and_draws_the_top_losses(trained, tmp_path):
    from cnnrun.tasks.evaluate import evaluate_run

    run, _ = trained
    copy = shutil.copytree(run, tmp_path / "run")
    evaluation = evaluate_run(copy, "last", "validation", explain=5)
    model, images, labels = _model_and_split(copy, "last", "validation")
    probabilities, saved_labels = Run(copy).read_predictions("last", "validation")
    np.testing.assert_allclose(probabilities, model.predict(images.astype(np.float32) / 255.0, verbose=0),
                               atol=1e-5)
    np.testing.assert_array_equal(saved_labels, labels)

    metrics = json.loads((copy / "eval" / "last_validation_metrics.json").read_text())
    confidence, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    ece = 0.0
    for k in range(15):  # 15 bins [k/15, (k+1)/15), the last one closed
        inside = (confidence >= k / 15) & ((confidence < (k + 1) / 15) | (k == 14))
        if inside.any():
            ece += inside.sum() / len(labels) * abs(right[inside].mean() - confidence[inside].mean())
    assert metrics["expected_calibration_error"] == pytest.approx(ece, abs=1e-6)

    losses = [-math.log(max(float(p[y]), 1e-300)) for p, y in zip(probabilities, labels, strict=True)]
    assert evaluation.explained == tuple(sorted(range(len(labels)), key=lambda i: (-losses[i], i))[:5])
    assert (copy / "eval" / "last_validation_explained.png").stat().st_size > 0
    assert copy / "eval" / "last_validation_predictions.npz" in evaluation.files


@pytest.mark.slow
def test_evaluate_with_tta_writes_the_averaged_probabilities(trained, tmp_path):
    run, _ = trained
    copy = shutil.copytree(run, tmp_path / "run")
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("tta: []", "tta: [flip]"))
    assert "tta: [flip]" in config.read_text() or "- flip" in config.read_text()
    result = run_here("evaluate", copy, "--explain", "0")
    assert result.returncode == 0, result.stderr
    assert not (copy / "eval" / "best_test_explained.png").exists()  # --explain 0: none
    model, images, _ = _model_and_split(copy, "best", "test")
    pixels = images.astype(np.float32) / 255.0
    expected = (model.predict(pixels, verbose=0) + model.predict(pixels[:, :, ::-1], verbose=0)) / 2
    probabilities, _ = Run(copy).read_predictions("best", "test")
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert not np.allclose(probabilities, model.predict(pixels, verbose=0), atol=1e-5)  # the flip counted


@pytest.mark.slow
def test_evaluate_counts_each_class_precision_and_recall_from_its_predictions(trained, tmp_path):
    from cnnrun.tasks.evaluate import evaluate_run

    run, _ = trained
    copy = shutil.copytree(run, tmp_path / "run")
    evaluation = evaluate_run(copy, "best", "test", explain=0)
    probabilities, labels = Run(copy).read_predictions("best", "test")
    predicted = probabilities.argmax(axis=1)
    # some class is said more or less often than it is there, so its precision and recall differ
    classes = len(evaluation.per_class)
    assert (np.bincount(predicted, minlength=classes) != np.bincount(labels, minlength=classes)).any()
    for k, row in enumerate(evaluation.per_class):  # recall: right among the class, precision: among those said
        right = ((predicted == k) & (labels == k)).sum()
        assert row["support"] == (labels == k).sum()
        assert row["recall"] == round(right / max((labels == k).sum(), 1), 4)
        assert row["precision"] == round(right / max((predicted == k).sum(), 1), 4)
