"""Scoring a checkpoint runs the model over the pictures once: the metrics computed from `predict`'s outputs are
those Keras' own `evaluate` reports, and its probabilities those `predict` gives."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnrun.config import load_experiment
from cnnrun.model.scoring import scored_probabilities
from tests.conftest import tiny_config


def small_model(units: int, activation: str, activity: bool = False) -> keras.Model:
    """A convolution with L2 on its kernel (a loss `evaluate` adds), batch normalization, dropout and a head."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(0.05),
                            activity_regularizer=keras.regularizers.L1(0.01) if activity else None)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(x))


CASES = {  # loss, metrics, labels, output units and activation
    "sparse softmax": ("sparse_categorical_crossentropy", ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(2)],
                       "sparse", 3, "softmax"),
    "one-hot logits": (keras.losses.CategoricalCrossentropy(from_logits=True), ["accuracy"], "onehot", 3, None),
    "binary sigmoid": ("binary_crossentropy", ["accuracy", keras.metrics.AUC(name="auc")], "binary", 1, "sigmoid"),
}


def data_for(kind: str, count: int = 37):
    rng = np.random.default_rng(3)
    pictures = rng.uniform(0, 1, (count, 6, 6, 3)).astype("float32")
    labels = rng.integers(0, 3 if kind != "binary" else 2, count)
    targets = {"sparse": labels, "onehot": np.eye(3, dtype="float32")[labels],
               "binary": labels.astype("float32")[:, None]}[kind]
    return tf.data.Dataset.from_tensor_slices((pictures, targets)).batch(8), pictures  # the last batch holds 5


@pytest.mark.parametrize("case", CASES)
def test_one_pass_gives_kerass_evaluate_metrics_and_predict_probabilities(case, write_config):
    loss, metrics, kind, units, activation = CASES[case]
    model = small_model(units, activation)
    model.compile("adam", loss, metrics=metrics)
    data, pictures = data_for(kind)
    model.fit(data, epochs=2, verbose=0)  # moves the batch statistics and weights off their start
    experiment = load_experiment(write_config(tiny_config(
        compile={"optimizer": "adam", "loss": {"name": "categorical_crossentropy", "from_logits": True}})
        if activation is None else tiny_config()))
    expected = model.evaluate(data, verbose=0, return_dict=True)
    got, probabilities = scored_probabilities(model, data, experiment)
    assert list(got) == [*expected, "balanced_accuracy"]  # in the same order: the results table shows them so
    for name, value in expected.items():
        assert got[name] == pytest.approx(float(value), rel=1e-5, abs=1e-6), name
    outputs = model.predict(pictures, verbose=0)
    if activation is None:  # logits: Keras' softmax
        outputs = keras.ops.convert_to_numpy(keras.ops.softmax(outputs))
    if units == 1:
        outputs = np.hstack([1 - outputs, outputs])
    np.testing.assert_allclose(probabilities, outputs, atol=1e-6)
    assert expected["loss"] > 0.1  # the regularization counts: the loss is not the crossentropy alone


def test_a_model_with_an_activity_regularizer_is_scored_by_evaluate(write_config):
    """Its loss needs the model run on the pictures: computed from the outputs alone it would be smaller."""
    model = small_model(3, "softmax", activity=True)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    data, _ = data_for("sparse")
    expected = model.evaluate(data, verbose=0, return_dict=True)
    got, _ = scored_probabilities(model, data, load_experiment(write_config(tiny_config())))
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    outputs = model.predict(data, verbose=0)
    labels = np.concatenate([y for _, y in data])
    crossentropy = float(np.mean(-np.log(outputs[np.arange(len(labels)), labels])))
    weight_penalty = 0.05 * float(np.sum(model.layers[1].kernel.numpy() ** 2))
    assert expected["loss"] > crossentropy + weight_penalty + 1e-4  # what the outputs alone would say


def test_with_test_time_augmentation_the_metrics_are_the_plain_pictures(write_config):
    model = small_model(3, "softmax")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    data, pictures = data_for("sparse")
    experiment = load_experiment(write_config(tiny_config(evaluate={"tta": ["flip"]})))
    got, probabilities = scored_probabilities(model, data, experiment)
    expected = model.evaluate(data, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    plain, mirrored = model.predict(pictures, verbose=0), model.predict(pictures[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(probabilities, (plain + mirrored) / 2, atol=1e-6)
