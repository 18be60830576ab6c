"""`compile.rate_multipliers`: each variable's update is the optimizer's at its multiple of the rate, against the
update worked out by hand from the gradient (a `GradientTape` of the same batch): SGD's step, Adam's first step
(the rate times the gradient's sign, nearly), SGD's weight decay left at the plain rate; a resumed run ending with
the weights of a straight one; the header; and its mistakes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnrun.config import validate_experiment
from cnnrun.model.build import build_model
from cnnrun.model.compiling import compile_model
from cnnrun.model.rates import rates_of, with_rate_multipliers
from tests.conftest import history, run_here, tiny_config

RATE = 0.05


def _model() -> keras.Model:
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, use_bias=False),
                             keras.layers.BatchNormalization(beta_initializer="ones"), keras.layers.Dense(2)])


def _batch():
    rng = np.random.default_rng(1)
    return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def _at_start():
    """The model and its batch, with its weights and the loss's gradients at them, by path."""
    model, (x, y) = _model(), _batch()
    before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x, training=True))
    gradients = {v.path: np.asarray(g) for v, g in
                 zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables), strict=True)}
    return model, x, y, before, gradients


def _one_step(optimizer, multipliers: dict[str, float]) -> tuple[dict, dict, dict]:
    """Weights before and after one `train_on_batch`, and the gradients at the weights before, by path."""
    model, x, y, before, gradients = _at_start()
    for v in model.trainable_variables:  # the tape's forward pass moved nothing trainable; put it back anyway
        v.assign(before[v.path])
    model.compile(optimizer=with_rate_multipliers(optimizer, model, multipliers), loss="mse")
    model.train_on_batch(x, y)
    assert rates_of(model.optimizer, model) == {path: (multipliers.get("beta", 1.0) if path.endswith("beta") else
                                                       multipliers.get("kernel", 1.0) if path.endswith("kernel")
                                                       else 1.0) for path in before}
    return before, {v.path: np.asarray(v.numpy()) for v in model.trainable_variables}, gradients


def test_sgd_moves_each_variable_by_its_multiple_of_the_rate_times_the_gradient():
    before, after, gradients = _one_step(keras.optimizers.SGD(RATE), {"beta": 64.0})
    for path, weights in before.items():
        multiplier = 64.0 if path.endswith("beta") else 1.0
        np.testing.assert_allclose(after[path], weights - RATE * multiplier * gradients[path], rtol=1e-5, atol=1e-6,
                                   err_msg=path)
    beta = next(path for path in before if path.endswith("beta"))
    assert np.abs(after[beta] - before[beta]).max() > 10 * RATE * np.abs(gradients[beta]).max()  # it moved 64×


def test_adams_first_step_is_its_multiple_of_the_rate_in_the_gradients_direction():
    before, after, gradients = _one_step(keras.optimizers.Adam(RATE, epsilon=1e-7), {"beta": 8.0})
    for path, weights in before.items():
        multiplier = 8.0 if path.endswith("beta") else 1.0
        g = gradients[path]  # Adam's first step, Keras' way: −rate × g / (|g| + ε / √(1 − β₂))
        np.testing.assert_allclose(after[path], weights - RATE * multiplier * g / (np.abs(g) + 1e-7 / 0.001**0.5),
                                   rtol=1e-4, atol=1e-6, err_msg=path)


def test_the_first_pattern_found_in_a_path_decides_and_a_fraction_slows_the_variable_down():
    model, x, y, before, gradients = _at_start()
    # beta's path holds both patterns: "beta" comes first, so ×64; gamma's holds only "batch_norm": ×0.5
    multipliers = {"beta": 64.0, "batch_norm": 0.5}
    model.compile(optimizer=with_rate_multipliers(keras.optimizers.SGD(RATE), model, multipliers), loss="mse")
    model.train_on_batch(x, y)
    by_hand = {path: 64.0 if path.endswith("/beta") else 0.5 if path.endswith("/gamma") else 1.0
               for path in before}  # the dense layers' kernels and bias: no pattern, ×1
    assert rates_of(model.optimizer, model) == by_hand
    for v in model.trainable_variables:  # SGD: w − rate × multiplier × g
        np.testing.assert_allclose(v.numpy(), before[v.path] - RATE * by_hand[v.path] * gradients[v.path],
                                   rtol=1e-5, atol=1e-6, err_msg=v.path)


def test_weight_decay_stays_at_the_plain_rate():
    decay = 0.1
    before, after, gradients = _one_step(keras.optimizers.SGD(RATE, weight_decay=decay), {"kernel": 3.0})
    for path, weights in before.items():
        multiplier = 3.0 if path.endswith("kernel") else 1.0
        expected = weights - RATE * decay * weights - RATE * multiplier * gradients[path]
        np.testing.assert_allclose(after[path], expected, rtol=1e-5, atol=1e-6, err_msg=path)


def test_a_frozen_variable_keeps_its_value_weight_decay_included_while_the_others_decay():
    decay = 0.1
    model, x, y, before, gradients = _at_start()
    optimizer = with_rate_multipliers(keras.optimizers.SGD(RATE, weight_decay=decay), model, None, freezing=True)
    model.compile(optimizer=optimizer, loss="mse")
    beta = model.layers[1].beta
    optimizer.freeze([beta])
    model.train_on_batch(x, y)
    np.testing.assert_array_equal(beta.numpy(), before[beta.path])  # no step and no decay: ones, as initialised
    for v in model.trainable_variables:
        if v is not beta:  # SGD's decoupled decay, then the step: w − rate × decay × w − rate × g
            expected = before[v.path] - RATE * decay * before[v.path] - RATE * gradients[v.path]
            np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=v.path)


def test_a_batchnorm_bias_at_64_times_the_rate_decays_as_airbench_decays_it(write_config):
    # airbench94's BatchNorm biases: rate lr × 64, PyTorch weight decay wd / (lr × 64), so each SGD step takes
    # lr × wd × β off them, as off every other weight. In a config: `beta_regularizer: {l2: wd / 2 / 64}` beside
    # `rate_multipliers: {beta: 64}` (Keras' L2 gradient is 2 × l2 × β, and the multiplier scales it too).
    lr, wd = 0.05, 0.3
    norm = {"scale": False, "beta_initializer": {"class_name": "RandomUniform",
                                                        "config": {"minval": 0.5, "maxval": 1.5, "seed": 5}}}
    steps = {}
    for decayed in (False, True):
        layers = [{"Flatten": {}}, {"BatchNormalization": norm | ({"beta_regularizer": {"l2": wd / 2 / 64}}
                                                                  if decayed else {})},
                  {"Dense": {"units": "${num_classes}", "activation": "softmax", "use_bias": False}}]
        config = tiny_config(model={"layers": layers}, compile={"optimizer": {"name": "sgd", "learning_rate": lr},
                                                                "rate_multipliers": {"beta": 64}})
        experiment = validate_experiment(config, "decay.yaml")
        keras.utils.set_random_seed(2)
        model = build_model(experiment, (2, 2, 1), 3)
        compile_model(model, experiment)
        beta = model.layers[1].beta
        before = np.array(beta.numpy())
        x = np.random.default_rng(1).normal(size=(8, 2, 2, 1)).astype("float32")
        y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
        model.train_on_batch(x, y)
        steps[decayed] = np.asarray(beta.numpy()) - before
    assert np.abs(before).min() > 0.01
    np.testing.assert_allclose(steps[True] - steps[False], -lr * wd * before, rtol=1e-4, atol=1e-7)


def _experiment(tmp_path, name: str, **compile_section):
    config = tiny_config(compile={"optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                                  **compile_section},
                         model={"layers": [{"Conv2D": {"filters": 4, "kernel_size": 3, "use_bias": False}},
                                           {"BatchNormalization": {}}, {"Activation": "relu"},
                                           {"GlobalAveragePooling2D": {}},
                                           {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]},
                         train={"epochs": 3, "batch_size": 16},
                         output={"dir": str(tmp_path / name), "plots": False, "report": False})
    config["dataset"]["test_samples"] = 0
    return validate_experiment(config, f"{name}.yaml")


@pytest.mark.slow
def test_a_resumed_run_goes_on_with_its_multipliers(tmp_path):
    from cnnrun.model.checkpoints import load_checkpoint
    from cnnrun.training.trainer import Trainer, resume_run, train_experiment
    from tests.test_cached_features import InterruptAt

    said = []
    straight = train_experiment(_experiment(tmp_path, "straight", rate_multipliers={"beta": 64}),
                                say=said.append).path
    assert any("beta ×64 (1 variable)" in str(line) for line in said)  # the header
    plain = train_experiment(_experiment(tmp_path, "plain")).path
    with Trainer.new(_experiment(tmp_path, "resumed", rate_multipliers={"beta": 64}),
                     callbacks=[InterruptAt(1)]) as trainer:
        with pytest.raises(SystemExit):
            trainer.fit()
    resumed = resume_run(trainer.run.path).path
    assert [row["epoch"] for row in history(resumed)] == [1, 2, 3]
    ours, theirs, other = (load_checkpoint(run / "checkpoints" / "last.keras") for run in (resumed, straight, plain))
    for mine, straight_one in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(straight_one), rtol=1e-5, atol=1e-6)
    beta = [i for i, v in enumerate(ours.weights) if v.path.endswith("beta")]
    assert not np.allclose(np.asarray(ours.weights[beta[0]]), np.asarray(other.weights[beta[0]]), atol=1e-3)


@pytest.mark.parametrize("value, message", [
    ({"gamma_": 2}, "compile.rate_multipliers: 'gamma_' matches none of the model's variables"),
    ({"beta": 0}, "compile.rate_multipliers.beta: a multiplier is a number > 0, got 0"),
    ({"(beta": 2}, "compile.rate_multipliers: '(beta' is not a regular expression"),
    ([64], "compile.rate_multipliers: a multiplier per pattern of variable paths"),
])
def test_mistakes_are_one_line_before_the_data_loads(value, message, write_config, tmp_path):
    config = tiny_config(compile={"optimizer": "sgd", "rate_multipliers": value})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
