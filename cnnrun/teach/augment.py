"""`cnnrun augment-preview`: what random augmentation does to one picture, before a whole training run uses it.

The picture goes through the same Keras preprocessing layers training uses (`build_augmenter`), N times; each
version is written as a PNG, and one grid figure shows the original beside them.
"""

from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.config import AugmentationConfig, load_experiment
from cnnrun.config.augmentation import mixes_labels
from cnnrun.errors import UserError
from cnnrun.teach.images import FIGURE_DPI, Lesson, pyplot, read_image, show

# the course's ImageDataGenerator for cats vs dogs
COURSE_AUGMENTATION = {
    "rotation_range": 40, "width_shift_range": 0.2, "height_shift_range": 0.2, "zoom_range": 0.2,
    "horizontal_flip": True, "fill_mode": "nearest", "brightness_range": (0.4, 1.5),
}


def augmentation_from(config: str | Path | None):
    """The `AugmentationConfig` of experiment `config`, or the course's values when `config` is None.

    Raises:
        UserError: the config has no `augmentation:` section, or it switches nothing on.
    """

    if config is None:
        return AugmentationConfig(**COURSE_AUGMENTATION)
    augmentation = load_experiment(config).augmentation
    if augmentation is None:
        raise UserError("has no `augmentation:` section", where=str(config),
                        fix="add one (e.g. `augmentation: {rotation_range: 40, horizontal_flip: true}`) or leave out "
                        "--config for the course's values")
    return augmentation


def augment_images(image: np.ndarray, augmentation, count: int, seed: int = 0) -> np.ndarray:
    """`count` augmented versions of one picture, as uint8 `(count, height, width, channels)`.

    Args:
        image: `(h, w)` or `(h, w, c)` pixels, 0–255 (16-bit pictures are scaled down).
        augmentation: an `AugmentationConfig`.
        count: how many versions.
        seed: seeds the augmentation layers; the same seed gives the same pictures.
    """
    from cnnrun.data import build_augmenter

    pixels = np.asarray(image, np.float32)
    if image.dtype != np.uint8 and pixels.max(initial=0) > 255:
        pixels = pixels / 257.0
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    augmenter = build_augmenter(augmentation, seed)
    if augmenter is None and mixes_labels(augmentation):
        raise UserError("mixup and cutmix blend the pictures of a batch, not one picture", where="augmentation",
                        fix="`cnnrun data show CONFIG` draws a mixed batch (samples_mixed.png)")
    if augmenter is None:
        raise UserError("switches nothing on", where="augmentation",
                        fix="set at least one key (rotation_range, horizontal_flip, …)")
    batch = np.repeat(pixels[np.newaxis], count, axis=0)
    out = np.asarray(augmenter(batch, training=True))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def augment_preview(image_path: str | Path, config: str | Path | None = None, count: int = 8,
                    out: str | Path | None = None, seed: int = 0) -> Lesson:
    """Write `count` augmented versions of a picture (PNG files) and a grid of the original and them.

    Args:
        image_path: the picture.
        config: an experiment whose `augmentation:` section is used; None: the course's values (rotation 40,
            shifts 0.2, zoom 0.2, horizontal flip, fill nearest, brightness [0.4, 1.5]).
        count: how many versions. Defaults to 8.
        out: the folder the files go to; default `<image stem>_augmented` in the current folder.
        seed: seeds the augmentation; the same seed writes the same pictures. Defaults to 0.

    Returns:
        A `Lesson`: a line naming the picture and the augmentation; the files written, the versions then the
        grid (nothing is printed).

    Example:
    >>> augment_preview("cat.jpg", count=4).figure.name
    'cat_grid.png'
    """
    from PIL import Image

    if count < 1:
        raise UserError(str(count), where="-n", fix="give a number of versions ≥ 1")
    image_path = Path(image_path)
    augmentation = augmentation_from(config)
    image = read_image(image_path)
    folder = Path(out) if out is not None else Path.cwd() / f"{image_path.stem}_augmented"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file", where="--out", fix="give a folder for the pictures")
    folder.mkdir(parents=True, exist_ok=True)

    changes = {k: v for k, v in augmentation.model_dump().items() if v not in (0, False, None)}
    line = (f"{image_path}: {image.shape}; augmentation ({'course values' if config is None else config}): "
            + ", ".join(f"{k}={v}" for k, v in changes.items()))
    versions = augment_images(image, augmentation, count, seed)
    written = []
    for i, version in enumerate(versions, 1):
        path = folder / f"{image_path.stem}_aug{i:02d}.png"
        Image.fromarray(version[..., 0] if version.shape[-1] == 1 else version).save(path)
        written.append(path)

    plt = pyplot()
    panels = [(np.asarray(image), "original")] + [(v[..., 0] if v.shape[-1] == 1 else v, f"#{i}")
                                                   for i, v in enumerate(versions, 1)]
    columns = min(len(panels), 5)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (pixels, title) in zip(axes.flat, panels, strict=False):
        if pixels.dtype != np.uint8:
            pixels = np.clip(pixels / (257.0 if pixels.max(initial=0) > 255 else 1.0), 0, 255).astype(np.uint8)
        show(ax, pixels, title)
    fig.suptitle(f"{image_path.name}: original and {count} augmented versions (seed {seed})", fontsize=10)
    fig.tight_layout()
    grid = folder / f"{image_path.stem}_grid.png"
    atomic_write_figure(fig, grid, FIGURE_DPI)
    written.append(grid)
    return Lesson((line,), tuple(written))
