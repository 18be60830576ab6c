"""PatchWhitening: airbench's frozen first layer, filled from the training split before the first epoch."""

import json

import keras
import numpy as np

from cnnrun.model.whitening import PatchWhitening
from tests.conftest import only_run, run_here, tiny_config


def correlated_images(count: int, seed: int = 0) -> np.ndarray:
    """Pictures whose neighbouring pixels and channels are strongly correlated, as in photographs."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(count, 9, 9, 1))
    smooth = (base[:, :-1, :-1] + base[:, 1:, :-1] + base[:, :-1, 1:] + base[:, 1:, 1:]) / 2  # 8x8, correlated
    mix = np.array([[1.0, 0.8, 0.6]])
    return 100 + 40 * (smooth * mix + 0.3 * rng.normal(size=(count, 8, 8, 3)))


def covariance_of_outputs(layer: PatchWhitening, images: np.ndarray) -> np.ndarray:
    """The uncentred covariance of the layer's first half of outputs (without the bias) over every patch."""
    outputs = keras.ops.convert_to_numpy(layer(images.astype("float32"))) - keras.ops.convert_to_numpy(layer.bias)
    first = outputs[..., : outputs.shape[-1] // 2].reshape(-1, outputs.shape[-1] // 2).astype(np.float64)
    np.testing.assert_allclose(outputs[..., outputs.shape[-1] // 2:], -outputs[..., : outputs.shape[-1] // 2],
                               atol=1e-3)  # each direction twice, with both signs
    return first.T @ first / len(first)


def test_the_whitening_layer_makes_the_patches_it_was_fitted_on_uncorrelated_with_unit_variance():
    images = correlated_images(200)
    layer = PatchWhitening(patch_size=2)
    layer.adapt(images)
    assert layer.kernel.shape == (2, 2, 3, 24) and not layer.kernel.trainable
    before = images[:, :2, :2].reshape(len(images), -1)
    assert np.abs(np.corrcoef(before.T) - np.eye(12)).max() > 0.5  # the raw patches are far from white
    np.testing.assert_allclose(covariance_of_outputs(layer, images), np.eye(12), atol=2e-3)


def test_a_one_pixel_kernel_is_one_over_the_root_of_the_mean_square_plus_epsilon():
    # patch_size 1, one channel: the covariance is the mean of x², here (1 + 1 + 9 + 9) / 4 = 5 over the 4 pixels;
    # with epsilon 4 the kernel is ±1 / √(5 + 4) = ±1/3
    layer = PatchWhitening(patch_size=1, epsilon=4.0)
    layer.adapt(np.array([[[1.0], [1.0]], [[3.0], [3.0]]])[None])
    assert layer.kernel.shape == (1, 1, 1, 2)
    np.testing.assert_allclose(sorted(keras.ops.convert_to_numpy(layer.kernel).ravel()), [-1 / 3, 1 / 3], rtol=1e-6)


def test_a_run_fills_the_whitening_layer_from_its_training_split_and_keeps_it_frozen(write_config, tmp_path):
    images = correlated_images(160, seed=1).clip(0, 255).astype(np.uint8)
    labels = np.arange(160) % 2
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, x_train=images, y_train=labels)
    layers = [{"PatchWhitening": {"patch_size": 2}}, {"Activation": "gelu"}, {"GlobalAveragePooling2D": {}},
              {"Dense": {"units": 2, "activation": "softmax"}}]
    config = tiny_config(dataset={"name": "npz", "path": str(arrays), "normalize": "none"},  # no validation split
                         model={"layers": layers}, train={"epochs": 2, "batch_size": 32},
                         compile={"optimizer": {"name": "adam", "learning_rate": 0.05}},
                         output={"plots": False, "report": False})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path / "runs")
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 2
    model = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    (layer,) = [lay for lay in model.layers if isinstance(lay, PatchWhitening)]
    assert np.abs(keras.ops.convert_to_numpy(layer.bias)).max() > 0  # the bias trained ...
    # ... while the kernel is still the whitening of every training picture (normalize: none: as stored)
    np.testing.assert_allclose(covariance_of_outputs(layer, images.astype(np.float64)), np.eye(12), atol=2e-3)
