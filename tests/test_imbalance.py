"""Imbalanced classes: `train.class_weight` (checked, mapped to label indices, reaching Keras' fit through cnnrun's
pipelines in every label mode), the focal losses from config, and balanced accuracy with per-class recall.

The references are hand computations: scikit-learn's `balanced` formula worked out by hand, the weighted loss's
gradient taken by hand (per-example crossentropy × the class's weight, averaged), the focal losses' formulas in
numpy, and recalls counted on a small confusion matrix.
"""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnrun.config import load_experiment
from cnnrun.config.imbalance import class_weight_map, describe_class_weight
from cnnrun.data import load_splits
from cnnrun.errors import UserError
from cnnrun.model.build import build_model
from cnnrun.model.compiling import compile_model, make_loss
from cnnrun.model.scoring import balanced_accuracy, per_class_table, tta_scores
from cnnrun.training.header import fit_class_weight
from tests.conftest import history, only_run, run_here, tiny_config

NAMES = ["circle", "square", "triangle"]


# ---------------------------------------------------------------- the config and its mapping


def test_balanced_is_n_samples_over_classes_times_count():
    """scikit-learn's rule by hand: 60 examples, 3 classes, counts 30, 20, 10 → 60/90, 60/60, 60/30."""
    weights = class_weight_map("balanced", NAMES, [30, 20, 10])
    assert weights == {0: pytest.approx(2 / 3), 1: 1.0, 2: 2.0}
    assert sum(w * c for w, c in zip(weights.values(), [30, 20, 10], strict=True)) == pytest.approx(60)


def test_names_map_to_label_indices_and_the_others_weigh_one():
    assert class_weight_map({"triangle": 4, "circle": 0.5}, NAMES, None) == {0: 0.5, 1: 1.0, 2: 4.0}
    assert class_weight_map(None, NAMES, [1, 2, 3]) is None


def test_the_header_line_names_each_class_weight():
    assert describe_class_weight("balanced", NAMES, {0: 2 / 3, 1: 1.0, 2: 2.0}) == \
        "balanced: circle 0.667, square 1, triangle 2"
    assert describe_class_weight({"square": 3}, NAMES, {0: 1.0, 1: 3.0, 2: 1.0}) == "circle 1, square 3, triangle 1"


def test_balanced_refuses_a_class_without_training_examples():
    with pytest.raises(UserError, match=r"train.class_weight: balanced, but square has no training example"):
        class_weight_map("balanced", NAMES, [5, 0, 5])


@pytest.mark.parametrize("value, message", [
    ({"circle": 0}, "train.class_weight.circle: a weight is a number > 0, got 0"),
    ({"circle": -1.5}, "train.class_weight.circle: a weight is a number > 0, got -1.5"),
    ({"circle": float("nan")}, "train.class_weight.circle: a weight is a number > 0, got nan"),
    ("balance", "train.class_weight: `balanced` or a weight per class name"),
])
def test_a_wrong_value_is_one_line_before_anything_runs(value, message, write_config):
    result = run_here("train", write_config(tiny_config(train={"epochs": 1, "class_weight": value})))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_class_is_one_line_with_the_classes_before_the_data_loads(write_config, tmp_path):
    result = run_here("train", write_config(tiny_config(train={"epochs": 1, "class_weight": {"squre": 2}})),
                      "--output-dir", tmp_path / "runs")
    assert result.returncode == 2
    assert "train.class_weight: no class named 'squre'; the dataset's classes are circle, square, triangle" \
        in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # refused before the data loaded and the run folder was made


# ---------------------------------------------------------------- what fit does with the weights

MODES = {  # label mode, classes, loss of one example (unreduced, Keras' own), output units and activation
    "categorical": (3, keras.losses.categorical_crossentropy, 3, "softmax"),
    "sparse": (3, keras.losses.sparse_categorical_crossentropy, 3, "softmax"),
    "binary": (2, keras.losses.binary_crossentropy, 1, "sigmoid"),
}


@pytest.mark.parametrize("mode", MODES)
def test_fit_weighs_each_example_by_its_class_in_every_label_mode(mode, write_config):
    """One SGD step on cnnrun's training pipeline, with the weights `fit_class_weight` gives, moves the weights as
    the hand-weighted loss's gradient says: mean over the batch of weight[class] × the example's loss."""
    classes, example_loss, units, activation = MODES[mode]
    weights = {"circle": 0.25, "square": 3.0, "triangle": 1.5} if classes == 3 else {"square": 4.0}
    config = tiny_config(
        dataset={"name": "shapes", "image_size": 16, "num_samples": 24, "test_samples": 0, "num_classes": classes,
                 "label_mode": mode},
        model={"layers": [{"Flatten": {}}, {"Dense": {"units": units, "activation": activation}}]},
        compile={"optimizer": {"name": "sgd", "learning_rate": 0.5}},
        train={"epochs": 1, "batch_size": 24, "class_weight": weights, "shuffle": False})
    experiment = load_experiment(write_config(config))
    splits = load_splits(experiment)
    model = build_model(experiment, tuple(splits.info.input_shape), classes)
    compile_model(model, experiment, splits.steps_per_epoch)
    kernel, bias = (v.numpy() for v in model.layers[-1].weights)

    x, y = next(iter(splits.train))  # the one batch of the epoch: every training picture
    labels = splits.examples["train"].labels
    per_class = np.array([{**dict.fromkeys(NAMES, 1.0), **weights}[name] for name in splits.info.class_names])
    assert sorted(np.asarray(labels).tolist()) == sorted(
        (np.argmax(y, -1) if mode == "categorical" else np.ravel(y)).astype(int).tolist())
    given = np.argmax(y, -1) if mode == "categorical" else np.rint(np.ravel(y)).astype(int)
    with tf.GradientTape(persistent=True) as tape:
        losses = example_loss(y, model(x))
        weighted, plain = tf.reduce_mean(losses * per_class[given]), tf.reduce_mean(losses)
    expected = [w.numpy() - 0.5 * g.numpy() for w, g in zip(model.layers[-1].weights,
                                                              tape.gradient(weighted, model.layers[-1].weights),
                                                              strict=True)]
    unweighted = kernel - 0.5 * tape.gradient(plain, model.layers[-1].kernel).numpy()
    model.layers[-1].kernel.assign(kernel)
    model.layers[-1].bias.assign(bias)
    model.fit(splits.train, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False,
              class_weight=fit_class_weight(experiment, splits.info))
    for got, want in zip(model.layers[-1].weights, expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.layers[-1].kernel.numpy(), unweighted, rtol=1e-3)  # the weights changed the step


# ---------------------------------------------------------------- focal losses

Y = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype="float32")
P = np.array([[0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.05, 0.15, 0.8]], dtype="float32")


def test_categorical_focal_crossentropy_from_config_is_the_formula_and_kerass(write_config):
    """−alpha (1 − p_true)^gamma log p_true, averaged over the pictures."""
    experiment = load_experiment(write_config(tiny_config(compile={"optimizer": "adam", "loss": {
        "name": "categorical_focal_crossentropy", "alpha": 0.5, "gamma": 3.0}})))
    loss = make_loss(experiment)
    p_true = (Y * P).sum(axis=1).astype("float64")
    by_hand = np.mean(-0.5 * (1 - p_true) ** 3 * np.log(p_true))
    assert float(loss(Y, P)) == pytest.approx(by_hand, rel=1e-5)
    keras_own = keras.losses.categorical_focal_crossentropy(Y, P, alpha=0.5, gamma=3.0)
    assert float(loss(Y, P)) == pytest.approx(float(np.mean(keras_own)), rel=1e-6)


def test_binary_focal_crossentropy_from_config_balances_with_alpha_only_when_asked(write_config):
    """BCE × (1 − p_t)^gamma, × (alpha for class 1, 1 − alpha for class 0) with `apply_class_balancing`: Keras'
    `alpha` alone does nothing."""
    y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype="float32")
    p = np.array([[0.9], [0.4], [0.3], [0.05]], dtype="float32")
    y64, p64 = y.astype("float64"), p.astype("float64")
    bce = -(y64 * np.log(p64) + (1 - y64) * np.log(1 - p64))
    p_t = y64 * p64 + (1 - y64) * (1 - p64)
    for balancing, factor in ((True, y64 * 0.8 + (1 - y64) * 0.2), (False, 1.0)):
        experiment = load_experiment(write_config(tiny_config(
            dataset={"name": "shapes", "image_size": 16, "num_samples": 24, "num_classes": 2,
                     "label_mode": "binary"},
            compile={"optimizer": "adam", "loss": {"name": "binary_focal_crossentropy", "alpha": 0.8, "gamma": 1.5,
                                                   "apply_class_balancing": balancing}})))
        by_hand = np.mean(factor * (1 - p_t) ** 1.5 * bce)
        assert float(make_loss(experiment)(y, p)) == pytest.approx(by_hand, rel=1e-5)
        keras_own = keras.losses.binary_focal_crossentropy(y, p, apply_class_balancing=balancing, alpha=0.8,
                                                           gamma=1.5)
        assert float(make_loss(experiment)(y, p)) == pytest.approx(float(np.mean(keras_own)), rel=1e-6)


@pytest.mark.parametrize("loss, mode, fits", [
    ("categorical_focal_crossentropy", "sparse", "sparse_categorical_crossentropy"),
    ("categorical_focal_crossentropy", "binary", "binary_focal_crossentropy"),
    ("binary_focal_crossentropy", "categorical", "categorical_focal_crossentropy"),
])
def test_a_focal_loss_for_other_labels_is_refused(loss, mode, fits, write_config):
    classes = 2 if mode == "binary" else 3
    experiment = load_experiment(write_config(tiny_config(
        dataset={"name": "shapes", "image_size": 16, "num_samples": 24, "num_classes": classes, "label_mode": mode},
        compile={"optimizer": "adam", "loss": loss})))
    with pytest.raises(UserError, match=f"compile.loss: {loss} does not fit dataset.label_mode '{mode}'; use {fits}"):
        make_loss(experiment)


# ---------------------------------------------------------------- balanced accuracy and per-class recall

TRUTH = np.array([0, 0, 0, 0, 1, 1, 2])
PREDICTED = np.array([0, 0, 1, 2, 1, 1, 0])  # recalls 2/4, 2/2, 0/1; accuracy 4/7


def test_balanced_accuracy_and_recalls_by_hand():
    probabilities = np.eye(4)[PREDICTED] * 0.7 + 0.075  # a 4th class nobody is: no recall, left out (as sklearn)
    assert balanced_accuracy(TRUTH, probabilities) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    matrix, rows = per_class_table(TRUTH, PREDICTED, NAMES)
    assert matrix.tolist() == [[2, 1, 1], [0, 2, 0], [1, 0, 0]]
    assert [r["recall"] for r in rows] == [0.5, 1.0, 0.0]
    assert [r["support"] for r in rows] == [4, 2, 1]
    scores = tta_scores(np.eye(3)[PREDICTED] * 0.7 + 0.1, TRUTH)
    assert scores["tta_balanced_accuracy"] == pytest.approx(0.5)
    assert scores["tta_accuracy"] == pytest.approx(4 / 7)


# ---------------------------------------------------------------- one real run


@pytest.mark.slow
def test_a_run_with_class_weights_and_accumulation_trains_resumes_and_evaluates(write_config, tmp_path):
    """Weighing circles 100 times makes the training loss (weighted) far above the validation loss (never
    weighted) in the first fit and in resume's; the header says the weights and the batches an update takes;
    resume counts accumulated batches as epochs; the test scores and evaluate give balanced accuracy and recalls."""
    config = tiny_config(
        dataset={"name": "shapes", "image_size": 16, "num_samples": 48, "test_samples": 24, "validation_split": 0.25},
        compile={"optimizer": {"name": "adam", "gradient_accumulation_steps": 2}},
        train={"epochs": 1, "batch_size": 12, "class_weight": {"circle": 100}},
        output={"plots": False, "report": False})
    trained = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert trained.returncode == 0, trained.stderr
    assert "class weights  circle 100, square 1, triangle 1" in trained.stdout
    assert "batch 12 × 2 accumulated = 24 an update" in trained.stdout
    run = only_run(tmp_path / "runs")
    resumed = run_here("resume", run, "--epochs", "2")  # 3 batches an epoch: 1 update and a half
    assert resumed.returncode == 0, resumed.stderr
    for epoch in history(run):
        assert epoch["loss"] > 10 * epoch["val_loss"]  # circles are a third of the data: their losses × 100
    scores = json.loads((run / "scores.json").read_text())
    assert 0 <= scores["best"]["balanced_accuracy"] <= 1
    evaluated = run_here("evaluate", run, "--explain", "0")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    rows = list(csv.DictReader((run / "eval" / "best_test_per_class.csv").open()))
    recalls = [float(r["recall"]) for r in rows]
    assert metrics["balanced_accuracy"] == pytest.approx(np.mean(recalls), abs=1e-4)  # every class in the test split
    assert "balanced_accuracy" in evaluated.stdout and "recall" in evaluated.stdout
