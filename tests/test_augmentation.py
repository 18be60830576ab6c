"""Augmentation: ImageDataGenerator's numbers, checked against Keras' own `apply_affine_transform`, and
`cnnrun augment-preview` (real pictures in tmp_path, real Keras layers)."""

import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import apply_affine_transform
from PIL import Image

from cnnrun.config import AugmentationConfig, validate_experiment
from cnnrun.data import build_augmenter
from cnnrun.data.shapes import make_shapes
from cnnrun.errors import UserError
from tests.conftest import run_cli, run_here, tiny_config


def _augment(x: np.ndarray, **words) -> np.ndarray:
    return np.asarray(build_augmenter(AugmentationConfig(**words), seed=1)(x, training=True))


def square_picture(batch: int = 2) -> np.ndarray:
    """A batch of 32×32 gray pictures, each a 200-bright 16×16 square in the middle (rows and columns 8–23)."""
    x = np.zeros((batch, 32, 32, 1), np.float32)
    x[:, 8:24, 8:24] = 200.0
    return x


def keras_in_rows_and_columns(image: np.ndarray, degrees: float, tx: float, ty: float, shear: float, zx: float,
                              zy: float) -> np.ndarray:
    """Keras' real `apply_affine_transform`, read with the documented meaning: tx, zx along rows; ty, zy along columns.

    ImageDataGenerator draws `tx` from `height_shift_range` and `ty` from `width_shift_range`, but since
    keras-preprocessing #318 `apply_affine_transform` builds its matrix for (x, y) = (column, row) and swaps the
    axes before calling scipy, so its `tx` moves a picture sideways (see the test below). Transposing the picture
    before and after the call makes Keras' matrix act on (row, column): that is the meaning cnnrun follows. Only
    square pictures: Keras centres the matrix on (height/2, width/2) before it swaps the axes.
    """
    assert image.shape[0] == image.shape[1], "the transposition is exact only for square pictures"
    swapped = np.transpose(image, (1, 0, 2))
    out = apply_affine_transform(swapped, theta=degrees, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy, row_axis=0,
                                 col_axis=1, channel_axis=2, fill_mode="nearest", order=1)
    return np.transpose(out, (1, 0, 2))


def test_keras_apply_affine_transform_moves_a_picture_sideways_for_its_tx():
    x = square_picture(1)[0]
    moved = apply_affine_transform(x, tx=4, row_axis=0, col_axis=1, channel_axis=2, fill_mode="constant")
    rows = np.flatnonzero(moved[..., 0].max(axis=1) > 100)
    columns = np.flatnonzero(moved[..., 0].max(axis=0) > 100)
    assert (rows.min(), rows.max()) == (8, 23)  # not up or down, although ImageDataGenerator's tx is a height shift
    assert (columns.min(), columns.max()) == (4, 19)  # input column = output column + 4: the square moves left


@pytest.mark.parametrize("degrees, height_shift, width_shift, shear, zoom_rows, zoom_columns, flip_v, flip_h", [
    (30, 0.1, -0.2, 0, 1, 1, 1, 1),
    (0, 0, 0, 20, 0.8, 1.3, 1, 1),
    (-15, 0.05, 0.1, 10, 1.1, 0.9, 1, -1),
    (10, 0, 0, 0, 1, 1, -1, 1),
    (0, 0.25, 0, 0, 1, 1, 1, 1),
])
def test_random_affine_equals_keras_apply_affine_transform_in_rows_and_columns(
        degrees, height_shift, width_shift, shear, zoom_rows, zoom_columns, flip_v, flip_h):
    from cnnrun.data.layers import affine_maps, warp

    size = 24
    image = np.random.default_rng(3).uniform(0, 255, (size, size, 3)).astype(np.float32)
    values = (degrees, height_shift, width_shift, shear, zoom_rows, zoom_columns, flip_v, flip_h)
    maps = affine_maps(*(np.float32([v]) for v in values), size, size)
    ours = np.asarray(warp(image[np.newaxis], maps))[0]
    theirs = keras_in_rows_and_columns(image, degrees, height_shift * size, width_shift * size, shear, zoom_rows,
                                       zoom_columns)
    theirs = theirs[::-1] if flip_v < 0 else theirs  # ImageDataGenerator flips after the affine transform
    theirs = theirs[:, ::-1] if flip_h < 0 else theirs
    # the border differs by how 'nearest' fills (Keras' layers and scipy extend the picture differently)
    assert np.abs(ours - theirs)[2:-2, 2:-2].max() < 0.05


def test_width_shift_moves_the_square_sideways_by_up_to_a_quarter_of_the_width():
    shifted = _augment(square_picture(16), width_shift_range=0.25, fill_mode="constant")[..., 0]
    shifts = []
    for picture in shifted:
        rows = np.flatnonzero(picture.max(axis=1) > 100)
        assert (rows.min(), rows.max()) == (8, 23)  # never up or down
        profile = picture.sum(axis=0)
        shifts.append((profile * np.arange(32)).sum() / profile.sum() - 15.5)  # the square's centre moved by
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 8 + 1e-3  # 0.25 · 32 pixels at most
    assert np.abs(shifts).mean() > 1.5 and shifts.std() > 1.5  # it moved, by a different amount in each picture


def test_brightness_zoom_and_contrast_mean_what_they_mean_in_image_data_generator():
    x = square_picture()
    # brightness multiplies (Keras' RandomBrightness adds): 0.5 halves every pixel, 2 doubles and clips at 255
    np.testing.assert_allclose(_augment(x, brightness_range=(0.5, 0.5)), x * 0.5, atol=1e-4)
    assert _augment(x, brightness_range=(2.0, 2.0)).max() == pytest.approx(255.0)
    # zoom 2 shows twice the picture (the square shrinks to 8×8); 0.5 shows half of it (the square fills it all)
    out = _augment(x, zoom_range=(2.0, 2.0), fill_mode="constant")
    assert (out > 100).sum() == pytest.approx(2 * 8 * 8, rel=0.2)
    assert (_augment(x, zoom_range=(0.5, 0.5)) > 100).all()
    # contrast 2 doubles the distance from the mean, clipped to 0–255
    contrast = _augment(x, contrast_range=(2.0, 2.0))
    mean = x[0].mean()
    np.testing.assert_allclose(contrast[0], np.clip(mean + 2 * (x[0] - mean), 0, 255), atol=1e-3)


def test_brightness_scales_from_the_black_end_of_a_normalised_value_range():
    from cnnrun.data.layers import RandomBrightnessScale

    # black −1, white 1 (pixels normalised to [−1, 1]): factor 0.5 halves the distance from black
    layer = RandomBrightnessScale((0.5, 0.5), value_range=(-1.0, 1.0), seed=0)
    x = np.array([-1.0, 0.0, 1.0], np.float32).reshape(1, 1, 3, 1)
    # −1 + (−1 + 1)·0.5 = −1;  −1 + (0 + 1)·0.5 = −0.5;  −1 + (1 + 1)·0.5 = 0
    np.testing.assert_allclose(np.asarray(layer(x, training=True)).ravel(), [-1.0, -0.5, 0.0], atol=1e-6)


def test_augmentation_keeps_shapes_and_is_identity_at_inference():
    from cnnrun.teach.augment import COURSE_AUGMENTATION

    augmenter = build_augmenter(AugmentationConfig(**COURSE_AUGMENTATION), seed=0)
    x = np.random.default_rng(0).uniform(0, 255, (4, 18, 14, 3)).astype(np.float32)
    assert tuple(augmenter(x, training=True).shape) == x.shape
    assert np.array_equal(np.asarray(augmenter(x, training=False)), x)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).astype(np.int16)


def test_augment_preview_writes_changed_versions_and_a_grid(tmp_path):
    x, _, _ = make_shapes(1, image_size=40, channels=3, seed=2)
    picture = tmp_path / "shape.png"
    Image.fromarray(x[0]).save(picture)
    result = run_cli("augment-preview", picture, "-n", "3", "--seed", "1", cwd=tmp_path, columns=None)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # TensorFlow's start-up messages and Keras' warnings stay out of the terminal
    files = sorted((tmp_path / "shape_augmented").iterdir())
    assert [f.name for f in files] == ["shape_aug01.png", "shape_aug02.png", "shape_aug03.png", "shape_grid.png"]
    versions = [_pixels(f) for f in files[:3]]
    for version in versions:
        assert version.shape == (40, 40, 3)
        assert np.abs(version - x[0]).mean() > 2  # the course's rotation, shifts, zoom and brightness changed it
    assert not np.array_equal(versions[0], versions[1]) and not np.array_equal(versions[1], versions[2])
    with Image.open(files[3]) as grid:
        assert grid.format == "PNG" and grid.width > 40


def test_augment_preview_with_a_config_is_seeded_and_flips(tmp_path, write_config):
    from cnnrun.teach.augment import augment_preview, augmentation_from

    original = np.random.default_rng(4).integers(0, 256, (24, 24), dtype=np.uint8)
    picture = tmp_path / "gray.png"
    Image.fromarray(original).save(picture)
    with pytest.raises(UserError, match="augmentation"):
        augmentation_from(write_config(tiny_config(), "plain.yaml"))
    config = write_config(tiny_config(augmentation={"vertical_flip": True}))
    first = augment_preview(picture, config, count=6, out=tmp_path / "a", seed=7).files
    again = augment_preview(picture, config, count=6, out=tmp_path / "b", seed=7).files
    assert len(first) == 7
    flipped = 0
    for one, two in zip(first[:6], again[:6], strict=True):
        assert np.array_equal(_pixels(one), _pixels(two))  # seeded: repeatable
        assert _pixels(one).shape == (24, 24)
        # a vertical flip and nothing else: each version is the picture or the picture upside down, exactly
        assert np.array_equal(_pixels(one), original) or np.array_equal(_pixels(one), original[::-1])
        flipped += np.array_equal(_pixels(one), original[::-1])
    assert 0 < flipped < 6


def test_the_pipeline_placement_needs_the_tensorflow_backend(write_config):
    # cnnrun's layers run on the backend's ops, which tf.data's graph cannot take on JAX
    augmentation = {"horizontal_flip": True, "placement": "pipeline"}
    result = run_here("train", write_config(tiny_config(backend="jax", augmentation=augmentation)))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "augmentation.placement: pipeline" in result.stderr and "backend: jax" in result.stderr
    for backend, placement in ("tensorflow", "pipeline"), ("jax", "model"), ("jax", "auto"):
        experiment = validate_experiment(tiny_config(backend=backend, augmentation={**augmentation,
                                                                                  "placement": placement}), "t.yaml")
        assert experiment.augmentation.placement == placement


def test_a_16_bit_picture_is_augmented_after_dividing_it_by_257():
    from cnnrun.teach.augment import augment_images

    picture = np.full((8, 8), 51_400, np.uint16)  # 51,400 / 257 = 200 exactly (/ 256 would round to 201)
    versions = augment_images(picture, AugmentationConfig(horizontal_flip=True), count=2)
    assert versions.dtype == np.uint8 and versions.shape == (2, 8, 8, 1)
    assert np.all(versions == 200)


def test_the_preview_grid_has_five_panels_a_row(tmp_path):
    from cnnrun.teach.augment import augment_preview

    picture = tmp_path / "flat.png"
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(picture)
    grid = augment_preview(picture, count=5, out=tmp_path / "out").figure
    # the original and 5 versions: 2 rows of 5 panels, 3 inches each at 80 dpi: 15 × 80 = 1200 by 6 × 80 = 480
    with Image.open(grid) as drawn:
        assert drawn.size == (1200, 480)
