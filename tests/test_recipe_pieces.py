"""The fast CIFAR-10 recipe's pieces, each a config key any experiment can use: test-time augmentation, label
smoothing of integer labels, and the optimizer's moving average of the weights judged and saved."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnrun.config import load_experiment
from cnnrun.model.losses import SmoothedSparseCategoricalCrossentropy
from cnnrun.model.scoring import tta_probabilities, views
from tests.conftest import only_run, run_here, tiny_config


def left_or_right_model() -> keras.Model:
    """A hand-made model that answers class 0 for a picture brighter on its left half and class 1 for one brighter
    on its right: flipping a picture changes its answer."""
    inputs = keras.Input((4, 4, 1))
    side = np.where(np.arange(16).reshape(4, 4) % 4 < 2, 1.0, -1.0).reshape(16, 1)
    scores = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, scores(keras.layers.Flatten()(inputs)))
    scores.set_weights([np.hstack([side, -side]) / 50, np.zeros(2)])
    return model


def expected(model, pictures, parts):
    """The views computed with NumPy: mirror, or move by one pixel with the border reflected (TensorFlow's and
    NumPy's `reflect`: the edge pixel is not repeated), weighted as airbench weighs them."""
    def view(name):
        x = pictures[:, :, ::-1] if "flip" in name else pictures
        padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
        if "down-right" in name:
            return padded[:, :-2, :-2]
        return padded[:, 2:, 2:] if "up-left" in name else x
    return sum(weight * model.predict(view(name), verbose=0) for name, weight in parts)


@pytest.mark.parametrize("tta", [[], ["flip"], ["translate"], ["flip", "translate"]])
def test_test_time_augmentation_averages_the_views_as_numpy_computes_them(tta, write_config):
    model = left_or_right_model()
    pictures = np.random.default_rng(0).uniform(0, 255, (6, 4, 4, 1)).astype("float32")
    experiment = load_experiment(write_config(tiny_config(evaluate={"tta": tta})))
    data = tf.data.Dataset.from_tensor_slices((pictures, np.zeros(6))).batch(4)
    got = tta_probabilities(model, data, experiment)
    weights = {(): [("identity", 1)], ("flip",): [("identity", .5), ("flip", .5)],
               ("translate",): [("identity", .5), ("down-right", .25), ("up-left", .25)],
               ("flip", "translate"): [("identity", .25), ("down-right", .125), ("up-left", .125), ("flip", .25),
                                       ("flip+down-right", .125), ("flip+up-left", .125)]}[tuple(tta)]
    assert views(tta) == weights
    np.testing.assert_allclose(got, expected(model, pictures, weights), atol=1e-6)
    if "flip" in tta:  # the model was sure of each picture; with its mirror image it is not
        plain = model.predict(pictures, verbose=0)
        assert not np.allclose(got, plain, atol=0.05)


def test_sparse_label_smoothing_is_kerass_categorical_smoothing_of_one_hot_labels():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 8)
    logits = rng.normal(size=(8, 5)).astype("float32")
    for from_logits in (True, False):
        predictions = logits if from_logits else keras.ops.convert_to_numpy(keras.ops.softmax(logits))
        ours = SmoothedSparseCategoricalCrossentropy(label_smoothing=0.2, from_logits=from_logits)
        keras_own = keras.losses.CategoricalCrossentropy(label_smoothing=0.2, from_logits=from_logits)
        assert float(ours(labels, predictions)) == pytest.approx(
            float(keras_own(np.eye(5)[labels], predictions)), rel=1e-6)


def test_a_run_with_tta_and_smoothed_sparse_labels_scores_both_and_evaluate_and_predict_agree(write_config, tmp_path):
    dataset = tiny_config()["dataset"] | {"label_mode": "sparse"}
    config = tiny_config(dataset=dataset, evaluate={"tta": ["flip"]},
                         compile={"optimizer": "adam", "loss": {"name": "sparse_categorical_crossentropy",
                                                                "label_smoothing": 0.1}})
    assert run_here("train", write_config(config), "--output-dir", tmp_path).returncode == 0
    run = only_run(tmp_path)
    scores = json.loads((run / "scores.json").read_text())
    assert scores["tta"] == ["flip"]
    assert {"loss", "accuracy", "tta_accuracy", "tta_loss"} <= set(scores["best"])
    result = run_here("evaluate", run, "--checkpoint", "best")
    assert result.returncode == 0, result.stderr
    report = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    assert report["tta"] == ["flip"]
    assert report["tta_accuracy"] == pytest.approx(scores["best"]["tta_accuracy"], abs=1e-6)
    assert report["accuracy"] == pytest.approx(scores["best"]["accuracy"], abs=1e-6)


def weights_of(run, which="last"):
    return keras.saving.load_model(run / "checkpoints" / f"{which}.keras", safe_mode=True).get_weights()


def ema_config(momentum: float | None, epochs: int, one_step: bool = False) -> dict:
    optimizer = {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}
    if momentum is not None:
        optimizer |= {"use_ema": True, "ema_momentum": momentum}
    config = tiny_config(compile={"optimizer": optimizer}, train={"epochs": epochs, "batch_size": 16},
                         output={"plots": False, "report": False})
    if one_step:  # 16 training pictures: one batch, one optimizer step per epoch
        config["dataset"] |= {"num_samples": 20, "validation_split": 0.2}
    return config


@pytest.mark.slow
def test_checkpoints_hold_the_averaged_weights_not_the_trained_ones(write_config, tmp_path):
    # Keras' average starts at the weights after the first step; with momentum 0.999999 it stays there. So the
    # checkpoint of a 3-step run with that average holds the weights a 1-step run ends with, while the same 3-step
    # run without the average ends far from them.
    for name, momentum, epochs in (("averaged", 0.999999, 3), ("one_step", None, 1), ("trained", None, 3)):
        config = write_config(ema_config(momentum, epochs, one_step=True), f"{name}.yaml")
        assert run_here("train", config, "--output-dir", tmp_path / name).returncode == 0
    averaged, one_step, trained = (weights_of(only_run(tmp_path / name)) for name in ("averaged", "one_step",
                                                                                     "trained"))
    for a, b in zip(averaged, one_step, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert max(np.abs(t - b).max() for t, b in zip(trained, one_step, strict=True)) > 1e-3


@pytest.mark.slow
def test_a_resumed_run_with_averaged_weights_trains_as_a_straight_one(write_config, tmp_path):
    straight = write_config(ema_config(0.9, epochs=3), "straight.yaml")
    assert run_here("train", straight, "--output-dir", tmp_path / "straight").returncode == 0
    split = write_config(ema_config(0.9, epochs=1), "split.yaml")
    assert run_here("train", split, "--output-dir", tmp_path / "split").returncode == 0
    run = only_run(tmp_path / "split")
    assert run_here("resume", run, "--epochs", "3").returncode == 0
    for a, b in zip(weights_of(only_run(tmp_path / "straight")), weights_of(run), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
