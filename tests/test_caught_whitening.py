"""PatchWhitening is fitted on the pictures as the model receives them (standardised here), and only on the first
5,000 training pictures: two bugs a review put in that the suite let through."""

import json

import keras
import numpy as np
import pytest
import yaml

from cnnrun.model.whitening import PATCHES_FROM, PatchWhitening
from tests.conftest import only_run, run_here, tiny_config
from tests.test_whitening import covariance_of_outputs

SMOOTH = 5000  # pictures with smooth, correlated pixels; the ones after them are checkerboards


def pictures() -> np.ndarray:
    """5,000 smooth 4×4 pictures around 100, then 100 checkerboards of 0 and 255: whitening fitted on all of them
    does not whiten the first 5,000."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(SMOOTH, 5, 5, 1))
    smooth = (base[:, :-1, :-1] + base[:, 1:, :-1] + base[:, :-1, 1:] + base[:, 1:, 1:]) / 2
    first = np.clip(100 + 15 * smooth + 3 * rng.normal(size=(SMOOTH, 4, 4, 1)), 0, 255).astype(np.uint8)
    checker = (np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8)[None, ..., None]
    return np.concatenate([first, checker.repeat(100, axis=0)])


@pytest.fixture(scope="module")
def whitened_run(tmp_path_factory):
    """A 1-epoch standardised run on the 5,100 pictures (no validation split: every one is a training picture, in
    order); its PatchWhitening layer and the run's mean and std."""
    folder = tmp_path_factory.mktemp("whitening")
    images = pictures()
    assert PATCHES_FROM == SMOOTH < len(images)
    np.savez(folder / "arrays.npz", x_train=images, y_train=np.arange(len(images)) % 2)
    layers = [{"PatchWhitening": {"patch_size": 2}}, {"Activation": "gelu"}, {"GlobalAveragePooling2D": {}},
              {"Dense": {"units": 2, "activation": "softmax"}}]
    config = tiny_config(dataset={"name": "npz", "path": str(folder / "arrays.npz"), "normalize": "standardize"},
                         model={"layers": layers}, train={"epochs": 1, "batch_size": 512},
                         output={"plots": False, "report": False})
    path = folder / "whitening.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_here("train", path, "--output-dir", folder / "runs")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    run = only_run(folder / "runs")
    info = json.loads((run / "dataset.json").read_text())
    model = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    (layer,) = [lay for lay in model.layers if isinstance(lay, PatchWhitening)]
    return layer, images, info


def standardised(images: np.ndarray, info: dict) -> np.ndarray:
    return (images.astype(np.float64) - info["mean"]) / (info["std"] + 1e-7)


def distance_from_white(layer: PatchWhitening, images: np.ndarray) -> float:
    return float(np.abs(covariance_of_outputs(layer, images) - np.eye(4)).max())


@pytest.mark.slow
def test_whitening_is_fitted_on_the_standardised_pictures_the_model_receives(whitened_run):
    layer, images, info = whitened_run
    assert info["normalize"] == "standardize"
    first = images[:SMOOTH]
    assert distance_from_white(layer, standardised(first, info)) < 1e-2
    raw = PatchWhitening(patch_size=2)  # what fitting on the raw pixels gives: far from white on what it receives
    raw.adapt(first.astype(np.float64))
    assert distance_from_white(raw, standardised(first, info)) > 0.5


@pytest.mark.slow
def test_whitening_is_fitted_on_the_first_5000_training_pictures_only(whitened_run):
    layer, images, info = whitened_run
    assert distance_from_white(layer, standardised(images[:SMOOTH], info)) < 1e-2
    every = PatchWhitening(patch_size=2)  # what fitting on all 5,100 gives: the checkerboards pull it away
    every.adapt(standardised(images, info))
    assert distance_from_white(every, standardised(images[:SMOOTH], info)) > 0.5
