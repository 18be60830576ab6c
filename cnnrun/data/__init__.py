"""Datasets: load arrays, split off validation, normalise, and feed the model through `tf.data`.

Example:
>>> splits = load_splits(experiment)
>>> splits.info.class_names, splits.info.sizes
(['circle', 'square', 'triangle'], {'train': 2400, 'validation': 600, 'test': 600})
"""

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cnnrun.config import AugmentationConfig, DatasetConfig, Experiment
from cnnrun.data.sources import describe, load_raw
from cnnrun.errors import UserError

__all__ = ["DatasetInfo", "Splits", "load_splits", "training_stream", "describe", "preprocess"]


@dataclass
class DatasetInfo:
    """What evaluate and predict need to treat new images as training did; stored as the run's dataset.json."""

    class_names: list[str]
    input_shape: list[int]
    label_mode: str
    normalize: str
    mean: float = 0.0
    std: float = 1.0
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Splits:
    """The data of one experiment: `tf.data` pipelines per split (None where there is no such split)."""

    train: Any
    validation: Any | None
    test: Any | None
    info: DatasetInfo
    steps_per_epoch: int
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    bad_files: list[dict[str, str]] = field(default_factory=list)  # image_folder files left out (bad_files.json)

    def split(self, name: str):
        """The pipeline of split `name` (train, validation or test), or a UserError when there is none."""
        data = {"train": self.train, "validation": self.validation, "test": self.test}[name]
        if data is None:
            raise UserError(f"this experiment's dataset has no {name} split")
        return data


def preprocess(images, info: DatasetInfo):
    """Turn raw pixel values into what the model was trained on (float32, normalised as `info` says)."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    if info.normalize == "rescale":
        return images / 255.0
    if info.normalize == "standardize":
        return (images - info.mean) / (info.std + 1e-7)
    return images


def _encode_labels(labels, info: DatasetInfo):
    import tensorflow as tf

    if info.label_mode == "categorical":
        return tf.one_hot(labels, info.num_classes)
    if info.label_mode == "binary":
        return tf.cast(tf.expand_dims(labels, -1), tf.float32)
    return labels


def build_augmenter(config: AugmentationConfig, seed: int):
    """Keras preprocessing layers that do what ImageDataGenerator's arguments of the same names do.

    Returns None when nothing is switched on. Works on raw pixel values (0–255).
    """
    import keras

    fill = {"fill_mode": config.fill_mode, "fill_value": config.cval}
    layers = []
    if config.horizontal_flip or config.vertical_flip:
        mode = {(True, True): "horizontal_and_vertical", (True, False): "horizontal",
                (False, True): "vertical"}[(config.horizontal_flip, config.vertical_flip)]
        layers.append(keras.layers.RandomFlip(mode, seed=seed))
    if config.rotation_range:
        # RandomRotation's factor is a fraction of a full turn
        layers.append(keras.layers.RandomRotation(config.rotation_range / 360.0, seed=seed, **fill))
    if config.width_shift_range or config.height_shift_range:
        layers.append(keras.layers.RandomTranslation(config.height_shift_range, config.width_shift_range,
                                                     seed=seed, **fill))
    if config.zoom_range:
        low, high = ((1 - config.zoom_range, 1 + config.zoom_range) if isinstance(config.zoom_range, float | int)
                     else config.zoom_range)
        # ImageDataGenerator scales coordinates by z (z < 1 zooms in); RandomZoom's factor f shows (1 + f)
        # of the image (f < 0 zooms in), so z = 1 + f.
        layers.append(keras.layers.RandomZoom((low - 1, high - 1), seed=seed, **fill))
    if config.shear_range:
        shear = float(np.tan(np.radians(config.shear_range)))
        layers.append(keras.layers.RandomShear(x_factor=shear, seed=seed, **fill))
    if config.brightness_range:
        low, high = config.brightness_range
        layers.append(keras.layers.RandomBrightness((low - 1, high - 1), value_range=(0, 255), seed=seed))
    if config.contrast_range:
        low, high = config.contrast_range
        layers.append(keras.layers.RandomContrast((1 - low, high - 1), value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def _pipeline(x: np.ndarray, y: np.ndarray, info: DatasetInfo, batch_size: int, augmenter=None):
    """Batch, (augment,) normalise and prefetch one pass over `x, y` in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return _prepared(ds, info, augmenter)


def _prepared(ds, info: DatasetInfo, augmenter=None):
    import tensorflow as tf

    def prepare(images, labels):
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images, training=True)
        return preprocess(images, info), _encode_labels(labels, info)

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def training_stream(splits: "Splits", experiment: Experiment, initial_epoch: int = 0):
    """Every remaining epoch's training batches in one stream, each epoch shuffled with its own seed.

    Epoch e is shuffled with seed `(seed, e)`, whatever epoch the process started at, so a resumed run sees
    the same order as a straight one. Keras' fit reads it with `steps_per_epoch`.

    Args:
        splits: the loaded data (its training arrays are used).
        experiment: the experiment (batch size, epochs, shuffle, seed, augmentation).
        initial_epoch: the epochs already trained; the stream starts after them.
    """
    import tensorflow as tf

    x, y = splits.arrays["train"]
    train = experiment.train
    augmenter = build_augmenter(experiment.augmentation, experiment.seed) if experiment.augmentation else None
    examples = tf.data.Dataset.from_tensor_slices((x, y))

    def one_epoch(epoch):
        data = examples
        if train.shuffle:
            data = data.shuffle(len(x), seed=experiment.seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
        return data.batch(train.batch_size)

    epochs = tf.data.Dataset.range(initial_epoch, max(train.epochs, initial_epoch + 1))
    return _prepared(epochs.flat_map(one_epoch), splits.info, augmenter)


def _split_validation(config: DatasetConfig, raw):
    """Hold out validation data as the config says: the first N, or the last fraction (as Keras' fit)."""
    x, y = raw.x_train, raw.y_train
    if raw.x_val is not None:
        if config.validation_split is not None or config.holdout_first is not None:
            raise UserError(f"dataset: {config.path} has its own validation/ folder; remove validation_split "
                            f"and holdout_first")
        return x, y, raw.x_val, raw.y_val
    if config.holdout_first is not None:
        n = config.holdout_first
        if n >= len(x):
            raise UserError(f"dataset.holdout_first: {n} leaves no training data (the set has {len(x)})")
        return x[n:], y[n:], x[:n], y[:n]
    if config.validation_split is not None:
        cut = int(len(x) * (1 - config.validation_split))
        return x[:cut], y[:cut], x[cut:], y[cut:]
    return x, y, None, None


def load_splits(experiment: Experiment, stored: DatasetInfo | None = None) -> Splits:
    """Load the experiment's dataset and make train, validation and test pipelines.

    Normalisation statistics come from the training split only and are applied to every split.

    Args:
        experiment: the validated experiment.
        stored: the run's own dataset.json; its normalisation statistics are used instead of new ones.
    """
    config = experiment.dataset
    raw = load_raw(config, experiment.seed)
    if config.label_mode == "binary" and len(raw.class_names) != 2:
        raise UserError(f"dataset.label_mode: binary needs 2 classes; {config.name} has {len(raw.class_names)}")
    x_train, y_train, x_val, y_val = _split_validation(config, raw)
    info = DatasetInfo(class_names=raw.class_names, input_shape=list(x_train.shape[1:]),
                       label_mode=config.label_mode, normalize=config.normalize)
    if stored is not None:
        info.mean, info.std = stored.mean, stored.std
    elif config.normalize == "standardize":
        info.mean, info.std = float(x_train.mean(dtype=np.float64)), float(x_train.std(dtype=np.float64))
    info.sizes = {"train": len(x_train)}
    if x_val is not None:
        info.sizes["validation"] = len(x_val)
    if raw.x_test is not None:
        info.sizes["test"] = len(raw.x_test)

    batch = experiment.train.batch_size
    validation = _pipeline(x_val, y_val, info, batch) if x_val is not None else None
    test = _pipeline(raw.x_test, raw.y_test, info, batch) if raw.x_test is not None else None
    arrays = {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (raw.x_test, raw.y_test)}
    splits = Splits(None, validation, test, info, steps_per_epoch=-(-len(x_train) // batch),
                    arrays={k: v for k, v in arrays.items() if v[0] is not None}, bad_files=raw.bad_files or [])
    splits.train = training_stream(splits, experiment)
    return splits
