"""A compiled model's state is built before its train step is traced, so the step is traced once (model/state.py).

Counted the only way that does not depend on Keras' internals: `train_step` is Python, run only while TensorFlow
traces the compiled step, so the calls to it are the traces.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnrun.config import validate_experiment
from cnnrun.model.state import build_state
from cnnrun.training.trainer import Trainer
from tests.conftest import tiny_config


def count_traces(model) -> list[int]:
    """Replace `model.train_step` by one that counts its calls; the count, as a one-item list."""
    count, step = [0], model.train_step

    def counted(data):
        count[0] += 1
        return step(data)

    model.train_step = counted
    return count


def hand_model() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow
def test_a_model_built_ahead_traces_its_train_step_once_and_trains_to_the_same_weights():
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.random((12, 8, 8, 1), np.float32),
                                               rng.integers(0, 2, 12))).batch(4)
    ahead, deferred = hand_model(), hand_model()
    deferred.set_weights(ahead.get_weights())
    traces = {}
    for name, model in (("ahead", ahead), ("deferred", deferred)):
        traces[name] = count_traces(model)
        if name == "ahead":
            build_state(model, data.element_spec)
            assert model.optimizer.built
        model.fit(data, epochs=2, verbose=0)
    assert (traces["ahead"][0], traces["deferred"][0]) == (1, 2)  # Keras alone traces twice: it creates variables
    for a, b in zip(ahead.get_weights(), deferred.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ahead.optimizer.variables, deferred.optimizer.variables, strict=True):  # the moments too
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
def test_a_run_traces_its_train_step_once_a_phase(tmp_path):
    phases = [{"epochs": 1, "trainable": "all"}, {"epochs": 1, "trainable": "all", "learning_rate": 0.001}]
    config = tiny_config(train={"epochs": 2, "batch_size": 16, "phases": phases}, output={"plots": False})
    with Trainer.new(validate_experiment(config, "tiny.yaml"), str(tmp_path)) as trainer:
        traces = count_traces(trainer.model)
        assert trainer.fit() == "completed"
    assert traces[0] == 2  # one trace each phase: each phase compiles a fresh optimizer
