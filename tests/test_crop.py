"""Padding-and-crop and cutout: every output checked exactly against NumPy (np.pad, a square set by hand), on real
Keras layers; checkpoints, training through `cnnrun train`, and the config's bad values."""

import json

import numpy as np
import pytest

from cnnrun.config import AugmentationConfig, validate_experiment
from cnnrun.data import build_augmenter, load_splits
from cnnrun.data.layers import RandomCutout, RandomPaddedCrop
from cnnrun.model.custom_objects import custom_objects
from tests.conftest import run_here, tiny_config
from tests.test_errors import assert_user_error

# Keras' fill_mode words and the np.pad mode that extends a picture the same way
NUMPY_PAD = {"reflect": "symmetric", "constant": "constant", "nearest": "edge", "wrap": "wrap"}


def pictures(batch: int, height: int = 7, width: int = 10, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Random whole-number pixels 1–255 (never 0, so a filled 0 is always a change), not square: a row and a
    column swapped would show."""
    return np.random.default_rng(seed).integers(1, 256, (batch, height, width, channels)).astype(np.float32)


def crop_offsets(images: np.ndarray, out: np.ndarray, padding: int, fill_mode: str, fill_value: float = 0.0):
    """For each image, the (row, column) corners in [0, 2·padding]² at which np.pad's padded image, cut to the
    image's size, equals the output exactly."""
    height, width = images.shape[1:3]
    extra = {"constant_values": fill_value} if fill_mode == "constant" else {}
    found = []
    for image, result in zip(images, out, strict=True):
        padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), NUMPY_PAD[fill_mode], **extra)
        found.append([(r, c) for r in range(2 * padding + 1) for c in range(2 * padding + 1)
                      if np.array_equal(padded[r:r + height, c:c + width], result)])
    return found


@pytest.mark.parametrize("fill_mode", ["reflect", "constant", "nearest", "wrap"])
def test_each_crop_is_the_padded_image_cut_at_its_own_offset_within_twice_the_padding(fill_mode):
    images = pictures(24)
    out = np.asarray(RandomPaddedCrop(3, fill_mode, fill_value=-5.0, seed=1)(images, training=True))
    assert out.shape == images.shape
    offsets = crop_offsets(images, out, 3, fill_mode, fill_value=-5.0)
    assert all(len(found) == 1 for found in offsets), offsets  # random pixels: one offset fits, exactly
    corners = [found[0] for found in offsets]
    assert len(set(corners)) > 12  # drawn per image, not once per batch (Keras' RandomCrop)
    assert {r for r, _ in corners} == set(range(7)) and {c for _, c in corners} == set(range(7))


def test_reflect_repeats_the_edge_pixel_and_constant_fills_the_value():
    # a 3×3 picture padded by 2, written out by hand; every 3×3 window of it is a possible crop
    image = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    reflect = np.array([[5, 4, 4, 5, 6, 6, 5],
                        [2, 1, 1, 2, 3, 3, 2],
                        [2, 1, 1, 2, 3, 3, 2],
                        [5, 4, 4, 5, 6, 6, 5],
                        [8, 7, 7, 8, 9, 9, 8],
                        [8, 7, 7, 8, 9, 9, 8],
                        [5, 4, 4, 5, 6, 6, 5]], np.float32)
    constant = np.full((7, 7), 0.5, np.float32)
    constant[2:5, 2:5] = image[0, ..., 0]
    for fill_mode, padded in (("reflect", reflect), ("constant", constant)):
        windows = {(r, c): padded[r:r + 3, c:c + 3] for r in range(5) for c in range(5)}
        out = np.asarray(RandomPaddedCrop(2, fill_mode, 0.5, seed=2)(np.repeat(image, 300, 0), training=True))
        seen = set()
        for result in out[..., 0]:
            matches = [corner for corner, window in windows.items() if np.array_equal(window, result)]
            assert len(matches) == 1, (fill_mode, result)
            seen.add(matches[0])
        assert seen == set(windows), fill_mode  # all 25 places, the corners (most padding) included


def cutout_centres(images: np.ndarray, out: np.ndarray, size: int):
    """For each image, the centres (row, column) at which setting the paper's square (rows centre − size//2 …
    centre − size//2 + size − 1, likewise columns, cut at the border) to 0 in every channel gives the output."""
    height, width = images.shape[1:3]
    found = []
    for image, result in zip(images, out, strict=True):
        matches = []
        for row in range(height):
            for col in range(width):
                expected = image.copy()
                top, left = row - size // 2, col - size // 2
                expected[max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0.0
                if np.array_equal(expected, result):
                    matches.append((row, col))
        found.append(matches)
    return found


def test_cutout_sets_exactly_one_clipped_square_per_image_and_nothing_else():
    for size in (4, 3):
        images = pictures(64, seed=size)
        out = np.asarray(RandomCutout(size, fill_value=0.0, seed=3)(images, training=True))
        centres = cutout_centres(images, out, size)
        assert all(len(found) == 1 for found in centres), size  # one square, every channel, nothing else touched
        filled = [int((result == 0).all(axis=-1).sum()) for result in out]
        assert max(filled) == size * size and min(filled) < size * size  # whole squares, and squares cut at a border
        assert len({found[0] for found in centres}) > 32  # drawn per image


def test_crop_and_cutout_pass_images_through_unchanged_at_inference_in_a_model():
    import keras

    images = pictures(5)
    model = keras.Sequential([keras.Input(images.shape[1:]), RandomPaddedCrop(3, "reflect", seed=1),
                              RandomCutout(4, seed=1)])
    assert np.array_equal(model.predict(images, verbose=0), images)
    assert np.array_equal(np.asarray(model(images, training=False)), images)
    assert not np.array_equal(np.asarray(model(images, training=True)), images)


def test_build_augmenter_orders_crop_first_and_cutout_last_with_seeds_of_their_own():
    config = AugmentationConfig(random_crop={"padding": 4, "fill_mode": "reflect"}, cutout={"size": 8},
                                rotation_range=10, horizontal_flip=True, brightness_range=(0.9, 1.1),
                                contrast_range=(0.9, 1.1))
    augmenter = build_augmenter(config, seed=7)
    assert [type(layer).__name__ for layer in augmenter.layers] == [
        "RandomPaddedCrop", "RandomAffine", "RandomBrightnessScale", "RandomContrast", "RandomCutout"]
    # seeded alike, two layers draw the same numbers (brightness and contrast would change together)
    assert len({getattr(layer, "seed", None) for layer in augmenter.layers}) == 5
    # crop alone, or cutout alone, is augmentation enough
    assert [type(layer).__name__ for layer in build_augmenter(AugmentationConfig(cutout={"size": 2}), 0).layers] \
        == ["RandomCutout"]


def test_crop_cval_and_cutout_fill_are_converted_to_where_the_layers_run():
    config = AugmentationConfig(random_crop={"padding": 2, "fill_mode": "constant", "cval": 255}, cutout={"size": 3})
    # inside a model of `rescale`d inputs: white is 1.0, and cutout's 0 is the model's 0
    augmenter = build_augmenter(config, seed=0, value_range=(0.0, 1.0))
    assert augmenter.layers[0].fill_value == 1.0 and augmenter.layers[-1].fill_value == 0.0
    # raw pixels of a standardised dataset: cutout fills with the raw value that becomes 0, the mean
    augmenter = build_augmenter(config, seed=0, zero=117.5)
    assert augmenter.layers[0].fill_value == 255.0 and augmenter.layers[-1].fill_value == 117.5


def test_cutout_in_the_pipeline_of_a_standardised_dataset_gives_the_model_zeros():
    config = tiny_config(augmentation={"cutout": {"size": 4}, "placement": "pipeline"},
                         dataset={"name": "shapes", "image_size": 16, "num_samples": 40, "test_samples": 0,
                                  "validation_split": 0.25, "normalize": "standardize"})
    splits = load_splits(validate_experiment(config, "test"))
    images = np.asarray(next(iter(splits.train))[0])
    for image in images:
        zero = (image == 0).all(axis=-1)
        rows, cols = np.flatnonzero(zero.any(axis=1)), np.flatnonzero(zero.any(axis=0))
        assert 2 <= len(rows) <= 4 and 2 <= len(cols) <= 4  # a square of 4, perhaps cut at a border to 2
        assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_a_model_with_crop_and_cutout_saves_and_loads_in_safe_mode(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), RandomPaddedCrop(2, "reflect", 3.0, seed=4),
                              RandomCutout(3, -1.5, seed=5), keras.layers.Flatten(), keras.layers.Dense(2)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, custom_objects=custom_objects())
    crop, cutout = loaded.layers[0], loaded.layers[1]
    assert (type(crop), crop.padding, crop.fill_mode, crop.fill_value, crop.seed) == \
        (RandomPaddedCrop, 2, "reflect", 3.0, 4)
    assert (type(cutout), cutout.size, cutout.fill_value, cutout.seed) == (RandomCutout, 3, -1.5, 5)
    x = pictures(3, 8, 8, 3)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert {"cnnrun>RandomPaddedCrop", "cnnrun>RandomCutout"} <= set(custom_objects())


def crop_and_cutout_here(x_path, out_path) -> None:
    """In a JAX process (tests/test_on_jax.py): crop and cutout of the pictures at `x_path`, drawn eagerly and in a
    compiled training step, written to `out_path`."""
    import keras

    x = np.load(x_path)
    crop = np.asarray(RandomPaddedCrop(3, "reflect", seed=1)(x, training=True))
    cut = np.asarray(RandomCutout(4, seed=1)(x, training=True))
    model = keras.Sequential([keras.Input(x.shape[1:]), RandomPaddedCrop(3, "constant", seed=1),
                              RandomCutout(4, seed=1), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
    model.fit(x, np.arange(len(x)) % 2, batch_size=8, epochs=1, verbose=0)  # a compiled training step draws them
    np.savez(out_path, crop=crop, cut=cut)


def check_crop_and_cutout(images: np.ndarray, out) -> None:
    """Each cropped picture is its picture at one offset, each cut one at one centre, and they vary."""
    offsets = crop_offsets(images, out["crop"], 3, "reflect")
    assert all(len(found) == 1 for found in offsets) and len({found[0] for found in offsets}) > 4
    centres = cutout_centres(images, out["cut"], 4)
    assert all(len(found) == 1 for found in centres) and len({found[0] for found in centres}) > 4


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["pipeline", "model"])
def test_a_config_with_crop_and_cutout_trains_one_epoch(tmp_path, write_config, placement):
    augmentation = {"random_crop": {"padding": 4, "fill_mode": "reflect"}, "horizontal_flip": True,
                    "cutout": {"size": 8}, "placement": placement}
    config = tiny_config(augmentation=augmentation, train={"epochs": 1, "batch_size": 16})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "out" / "tiny").iterdir())
    assert json.loads((run / "state.json").read_text())["status"] == "completed"
    import keras

    model = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True, custom_objects=custom_objects())
    augmenters = [layer for layer in model.layers if layer.name == "augmentation"]
    inside = [type(layer).__name__ for layer in augmenters[0].layers] if augmenters else []
    assert inside == (["RandomPaddedCrop", "RandomAffine", "RandomCutout"] if placement == "model" else [])


@pytest.mark.parametrize("augmentation, fragments", [
    ({"random_crop": {"padding": 0}}, ["augmentation.random_crop.padding"]),
    ({"random_crop": {"padding": 4, "fill_mode": "mirror"}}, ["augmentation.random_crop.fill_mode", "reflect"]),
    ({"random_crop": {"padding": 4, "cval": 300}}, ["augmentation.random_crop.cval"]),
    ({"random_crop": {"fill_mode": "reflect"}}, ["augmentation.random_crop.padding"]),
    ({"cutout": {"size": 0}}, ["augmentation.cutout.size"]),
    ({"cutout": {"size": 8, "fill": 0}}, ["fill"]),
    ({"cutout": 8}, ["augmentation.cutout"]),
])
def test_bad_crop_and_cutout_values_are_one_line_exit_2(write_config, augmentation, fragments):
    assert_user_error(run_here("inspect", write_config(tiny_config(augmentation=augmentation))), *fragments)
