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
from cnnrun.data.sources import Examples, RawData, describe, load_raw
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
    """The data of one experiment: `tf.data` pipelines per split (None where there is no such split), and the
    examples behind them (arrays in memory, or image files)."""

    train: Any
    validation: Any | None
    test: Any | None
    info: DatasetInfo
    steps_per_epoch: int
    examples: dict[str, Examples] = field(default_factory=dict)
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


def build_augmenter(config: AugmentationConfig, seed: int, value_range: tuple[float, float] = (0, 255)):
    """Keras layers that do what ImageDataGenerator's arguments of the same names do.

    Rotation, shifts, shear, zoom and flips make one `RandomAffine` (one interpolation, composed as
    ImageDataGenerator composes them); brightness is `RandomBrightnessScale` (multiplicative, as there),
    contrast Keras' `RandomContrast`. Returns None when nothing is switched on.

    Args:
        config: the experiment's `augmentation:` section.
        seed: seeds the layers.
        value_range: the values black and white pixels have where the layers run: (0, 255) on raw pixels in
            the input pipeline, the normalised values inside the model.
    """
    import keras

    from cnnrun.data.layers import RandomAffine, RandomBrightnessScale

    black, white = value_range
    layers = []
    zoom = config.zoom_range
    if isinstance(zoom, float | int):
        zoom = (1 - zoom, 1 + zoom)
    if (config.rotation_range or config.height_shift_range or config.width_shift_range or config.shear_range
            or config.zoom_range or config.horizontal_flip or config.vertical_flip):
        layers.append(RandomAffine(
            config.rotation_range, config.height_shift_range, config.width_shift_range, config.shear_range, zoom,
            config.horizontal_flip, config.vertical_flip, config.fill_mode,
            fill_value=black + (white - black) * config.cval / 255.0, seed=seed))
    if config.brightness_range:
        layers.append(RandomBrightnessScale(config.brightness_range, value_range, seed=seed))
    if config.contrast_range:
        low, high = config.contrast_range
        layers.append(keras.layers.RandomContrast((1 - low, high - 1), value_range=value_range, seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def augmentation_in_model(experiment: Experiment) -> bool:
    """Whether augmentation runs as the model's first layers (on the GPU) rather than in the input pipeline.

    `placement: auto` puts it in the model when a GPU is visible or the Keras backend is not TensorFlow.
    """
    import keras

    from cnnrun.distribute import gpu_visible

    augmentation = experiment.augmentation
    if augmentation is None or augmentation.placement == "pipeline":
        return False
    return augmentation.placement == "model" or keras.backend.backend() != "tensorflow" or gpu_visible()


def model_augmenter(experiment: Experiment, info: DatasetInfo):
    """The augmentation layers for the model's input, which receives normalised images."""
    black, white = (float(preprocess(np.float32(v), info)) for v in (0, 255))
    return build_augmenter(experiment.augmentation, experiment.seed, value_range=(black, white))


def _pipeline(examples: Examples, info: DatasetInfo, batch_size: int):
    """Batch, normalise and prefetch one pass over `examples` in order."""
    return _prepared(examples.dataset().batch(batch_size), info)


def _prepared(ds, info: DatasetInfo, augmenter=None):
    import tensorflow as tf

    def prepare(images, labels):
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images, training=True)
        return preprocess(images, info), _encode_labels(labels, info)

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def training_stream(splits: "Splits", experiment: Experiment, initial_epoch: int = 0, augment: bool = True):
    """Every remaining epoch's training batches in one stream, each epoch shuffled with its own seed.

    Epoch e is shuffled with seed `(seed, e)`, whatever epoch the process started at, so a resumed run sees
    the same order as a straight one. Keras' fit reads it with `steps_per_epoch`.

    Args:
        splits: the loaded data (its training examples are used).
        experiment: the experiment (batch size, epochs, shuffle, seed, augmentation).
        initial_epoch: the epochs already trained; the stream starts after them.
        augment: apply the experiment's augmentation (False when the model holds it).
    """
    import tensorflow as tf

    examples = splits.examples["train"]
    train = experiment.train
    augmenter = build_augmenter(experiment.augmentation, experiment.seed) if augment and experiment.augmentation \
        else None

    def one_epoch(epoch):
        data = examples.epoch(experiment.seed * 1_000_003 + epoch) if train.shuffle else examples.dataset()
        return data.batch(train.batch_size)

    epochs = tf.data.Dataset.range(initial_epoch, max(train.epochs, initial_epoch + 1))
    return _prepared(epochs.flat_map(one_epoch), splits.info, augmenter)


def _split(config: DatasetConfig, raw: RawData) -> dict[str, Examples]:
    """Hold out validation and test data as the config says.

    Of the N training examples, `test_split` takes the last N·test_split and `validation_split` the
    N·validation_split before them (the last part, as in Keras' fit); `holdout_first` takes the first N.
    """
    train, validation, test = raw.train, raw.validation, raw.test
    whole = len(train)
    if config.test_split is not None:
        if test is not None:
            raise UserError(f"dataset.test_split: this {config.name} data has a test split of its own; "
                            f"remove test_split")
        cut = whole - int(whole * config.test_split)
        train, test = train.take(slice(0, cut)), train.take(slice(cut, None))
    if validation is not None:
        if config.validation_split is not None or config.holdout_first is not None:
            raise UserError(f"dataset: {config.path} has its own validation/ folder; remove validation_split "
                            f"and holdout_first")
    elif config.holdout_first is not None:
        if config.holdout_first >= len(train):
            raise UserError(f"dataset.holdout_first: {config.holdout_first} leaves no training data (the set has "
                            f"{len(train)})")
        train, validation = train.take(slice(config.holdout_first, None)), train.take(slice(0, config.holdout_first))
    elif config.validation_split is not None:
        cut = len(train) - int(whole * config.validation_split)
        train, validation = train.take(slice(0, cut)), train.take(slice(cut, None))
    parts = {"train": train, "validation": validation, "test": test}
    for name, part in parts.items():
        if part is not None and len(part) == 0:
            raise UserError(f"dataset: the {name} split is empty; the data has too few examples for the split "
                            f"fractions")
    return {name: part for name, part in parts.items() if part is not None}


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
    examples = _split(config, raw)
    train = examples["train"]
    info = DatasetInfo(class_names=raw.class_names, input_shape=list(train.image_shape),
                       label_mode=config.label_mode, normalize=config.normalize)
    if stored is not None:
        info.mean, info.std = stored.mean, stored.std
    elif config.normalize == "standardize":
        info.mean, info.std = train.moments()
    info.sizes = {name: len(part) for name, part in examples.items()}

    batch = experiment.train.batch_size
    pipelines = {name: _pipeline(part, info, batch) for name, part in examples.items() if name != "train"}
    splits = Splits(None, pipelines.get("validation"), pipelines.get("test"), info,
                    steps_per_epoch=-(-len(train) // batch), examples=examples, bad_files=raw.bad_files or [])
    splits.train = training_stream(splits, experiment, augment=not augmentation_in_model(experiment))
    return splits
