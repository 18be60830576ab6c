"""`compile.optimizer.gradient_accumulation_steps`: k batches' gradients averaged into one update.

The reference is independent of Keras' accumulation: plain SGD on a model without BatchNormalization, whose loss
is a mean over the batch, takes the same step from two batches of 8 averaged as from one batch of 16.
"""

import keras
import numpy as np
import pytest

from cnnrun.config import load_experiment
from cnnrun.errors import UserError
from cnnrun.model.build import build_model
from cnnrun.model.compiling import compile_model, make_optimizer
from cnnrun.model.schedules import batches_taken, last_step_learning_rate
from tests.conftest import run_here, tiny_config

SOFTMAX = [{"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]


def compiled(write_config, optimizer: dict):
    experiment = load_experiment(write_config(tiny_config(model={"layers": SOFTMAX},
                                                          compile={"optimizer": optimizer})))
    model = build_model(experiment, (3, 3, 1), 3)
    compile_model(model, experiment)
    return model


def test_two_accumulated_batches_of_8_step_as_one_batch_of_16(write_config):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(48, 3, 3, 1)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 48)]
    accumulating = compiled(write_config, {"name": "sgd", "learning_rate": 0.3, "gradient_accumulation_steps": 2})
    plain = compiled(write_config, {"name": "sgd", "learning_rate": 0.3})
    plain.set_weights(accumulating.get_weights())
    for start in range(0, 48, 8):  # 6 batches of 8: 3 updates
        accumulating.train_on_batch(x[start:start + 8], y[start:start + 8])
    for start in range(0, 48, 16):  # 3 batches of 16
        plain.train_on_batch(x[start:start + 16], y[start:start + 16])
    for got, want in zip(accumulating.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(accumulating.optimizer.iterations) == 3  # Keras counts updates
    assert batches_taken(accumulating.optimizer) == 6  # resume and the schedules count batches


def test_a_schedule_counts_batches_with_accumulation(write_config):
    """A rate that halves after 4 steps: Keras' schedule sees the batches, and so does what history.csv records."""
    model = compiled(write_config, {"name": "sgd", "gradient_accumulation_steps": 2, "learning_rate": {
        "schedule": "piecewise_constant", "boundaries": [4], "values": [0.2, 0.1]}})
    x, y = np.zeros((2, 3, 3, 1), "float32"), np.eye(3, dtype="float32")[[0, 1]]
    for _ in range(5):
        model.train_on_batch(x, y)
    assert batches_taken(model.optimizer) == 5
    assert last_step_learning_rate(model.optimizer) == pytest.approx(0.1)  # batch 5's rate (after the boundary)


def test_one_step_is_no_accumulation(write_config):
    experiment = load_experiment(write_config(tiny_config(compile={"optimizer": {
        "name": "adam", "gradient_accumulation_steps": 1}})))
    assert make_optimizer(experiment).gradient_accumulation_steps is None
    assert isinstance(make_optimizer(experiment), keras.optimizers.Adam)


@pytest.mark.parametrize("steps", [0, -2, 1.5, True])
def test_a_count_below_one_or_not_whole_is_one_line(steps, write_config):
    with pytest.raises(UserError, match="compile.optimizer.gradient_accumulation_steps: a whole number ≥ 1"):
        load_experiment(write_config(tiny_config(compile={"optimizer": {"name": "sgd",
                                                                         "gradient_accumulation_steps": steps}})))


def test_the_cli_refuses_it_with_exit_2(write_config):
    result = run_here("train", write_config(tiny_config(compile={"optimizer": {
        "name": "sgd", "gradient_accumulation_steps": 0}})))
    assert result.returncode == 2
    assert "compile.optimizer.gradient_accumulation_steps: a whole number ≥ 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mirrored_strategy_is_refused_in_one_line_before_any_data(write_config):
    """Keras' accumulation branches (`ops.cond`) around the replicas' gradient sum, which TensorFlow's
    MirroredStrategy refuses deep inside the first step; cnnrun says so when it makes the optimizer."""
    import tensorflow as tf

    experiment = load_experiment(write_config(tiny_config(compile={"optimizer": {
        "name": "sgd", "gradient_accumulation_steps": 2}})))
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope(), \
            pytest.raises(UserError, match="gradient_accumulation_steps: not under MirroredStrategy"):
        make_optimizer(experiment)
    assert make_optimizer(experiment).gradient_accumulation_steps == 2  # outside it, as asked
