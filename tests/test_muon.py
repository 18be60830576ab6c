"""`compile.optimizer: muon`: Keras' Muon with convolution kernels orthogonalised as matrices, against one step
worked out in numpy (momentum, Nesterov, five Newton–Schulz iterations with Keras' coefficients on the kernel
flattened to `(h·w·in) × out`, Moonlight's rate adjustment); the rest as Keras' Muon; saved and loaded; refused for
a model without convolutions."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnrun.config import validate_experiment
from cnnrun.model.compiling import make_optimizer
from cnnrun.model.custom_objects import custom_objects
from cnnrun.model.muon import ConvolutionMuon
from tests.conftest import run_here, tiny_config

RATE, MOMENTUM = 0.02, 0.95


def _model() -> keras.Model:
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((5, 5, 2)), keras.layers.Conv2D(4, 3, use_bias=False, name="conv"),
                             keras.layers.Flatten(), keras.layers.Dense(3, name="head")])


def _newton_schulz(g: np.ndarray) -> np.ndarray:
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(5):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def _step(optimizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The conv kernel before and after one step of `optimizer`, and its gradient at the start."""
    model = _model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 5, 5, 2)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")
    kernel = model.get_layer("conv").kernel
    before = np.array(kernel.numpy())
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x))
    (gradient,) = tape.gradient(loss, [kernel])
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(x, y)
    return before, np.asarray(kernel.numpy()), np.asarray(gradient)


def test_a_convolution_kernel_takes_muons_step_as_a_flattened_matrix():
    before, after, g = _step(ConvolutionMuon(learning_rate=RATE, momentum=MOMENTUM, weight_decay=0.0,
                                             adam_weight_decay=0.0))
    direction = g + MOMENTUM * g  # the first momentum is the gradient; Nesterov looks one step further
    update = _newton_schulz(direction.reshape(-1, 4))  # (3·3·2) × 4
    update = RATE * update * np.sqrt(max(18, 4)) * 0.2  # Moonlight's adjustment, rms_rate 0.2
    np.testing.assert_allclose(after, before - update.reshape(before.shape), rtol=1e-4, atol=1e-6)
    singular = np.linalg.svd(update.reshape(-1, 4) / (RATE * np.sqrt(18) * 0.2), compute_uv=False)
    assert 0.5 < singular.min() <= singular.max() < 1.5  # nearly orthogonal: every direction about the same step
    # Keras' own Muon leaves a 4-D kernel to AdamW: another step altogether
    _, theirs, _ = _step(keras.optimizers.Muon(learning_rate=RATE, momentum=MOMENTUM, weight_decay=0.0,
                                               adam_weight_decay=0.0))
    assert not np.allclose(theirs, after, atol=1e-5)


def test_the_config_name_builds_it_and_a_checkpoint_keeps_it(tmp_path):
    experiment = validate_experiment(tiny_config(compile={"optimizer": {"name": "muon", "learning_rate": RATE}}),
                                     "t.yaml")
    optimizer = make_optimizer(experiment)
    assert type(optimizer) is ConvolutionMuon and float(optimizer.learning_rate) == pytest.approx(RATE)
    model = _model()
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(np.ones((2, 5, 5, 2), "float32"), np.ones((2, 3), "float32"))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", custom_objects=custom_objects(), safe_mode=True)
    assert type(loaded.optimizer).__name__ == "ConvolutionMuon"
    for ours, saved in zip(loaded.optimizer.variables, optimizer.variables, strict=True):  # momentum included
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(saved))


def test_a_model_without_convolutions_is_refused_before_the_data_loads(write_config, tmp_path):
    config = tiny_config(compile={"optimizer": "muon"},
                         model={"layers": [{"Flatten": {}}, {"Dense": {"units": "${num_classes}",
                                                                       "activation": "softmax"}}]})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert result.returncode == 2
    assert "compile.optimizer: muon orthogonalises the filters of convolutions, and this model has none" \
        in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
