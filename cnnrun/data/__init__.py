"""Datasets: load arrays, split off validation, normalise, and feed the model through `tf.data`.

The data layer is one way: `load_splits` reads the dataset once and returns a frozen `Splits`; nothing changes it
afterwards. Whoever needs other pipelines (the distribution's full batches, a resumed run's later epochs) gets a
new `Splits` from `with_pipelines` or `from_epoch`. What the user should hear about the data (bad files left out,
empty class folders, files added since the run recorded its splits) is in `Splits.warnings`, for the caller to
show. Beside it: `sources` (one loader per dataset kind), `check` (`cnnrun data check`), `layers` (cnnrun's own
augmentation layers), `pictures` (files named on the command line), `samples` (`cnnrun data show`, `samples.png`).

May import: the base modules, `config`, `devices`. Nothing above.

Example:
>>> splits = load_splits(experiment, augment=not augmentation_in_model(experiment))
>>> splits.info.class_names, splits.info.sizes
(['circle', 'square', 'triangle'], {'train': 2400, 'validation': 600, 'test': 600})
>>> for line in splits.warnings:
...     print("warning:", line)
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from cnnrun.config import Experiment
from cnnrun.config.augmentation import alternates_flips, check_fits, trained_label_mode
from cnnrun.config.dataset import pictures_of
from cnnrun.data.augmenter import build_augmenter
from cnnrun.data.examples import Examples, FileExamples
from cnnrun.data.faults import data_error
from cnnrun.data.flips import alternately_flipped
from cnnrun.data.folds import with_fold
from cnnrun.data.mixing import batch_mixer
from cnnrun.data.regression import target_moments
from cnnrun.data.sampling import balanced_epoch, class_parts, class_seed
from cnnrun.data.sources import describe, load_raw, naming_the_config
from cnnrun.data.split import held_out_words, split_examples
from cnnrun.data.subsets import per_class_sample
from cnnrun.data.traced import as_written
from cnnrun.devices.distribute import gpu_visible
from cnnrun.errors import UserError

__all__ = ["DatasetInfo", "Splits", "load_splits", "training_stream", "describe", "preprocess", "data_error",
           "augmentation_in_model", "model_augmenter", "build_augmenter"]


@dataclass(frozen=True)
class DatasetInfo:
    """What evaluate and predict need to treat new images as training did; stored as the run's dataset.json.

    `sizes` counts the pictures of each split (`{"train": 90, "validation": 30, "test": 40}`), `class_counts` those
    of each class in each split, in `class_names`' order (`{"train": [31, 29, 30], ...}`; with several labels a
    picture, `label_mode: multi_label`, the pictures having each label); both are empty for a
    dataset described without being loaded, `class_counts` also in a dataset.json written before it existed, and
    with numbers a picture (`label_mode: regression`), where `class_names` are the target columns and
    `target_mean`/`target_std` (one a target) the normalisation the model's outputs are undone by
    (`cnnrun.model.regression.denormalized`); None for classes.
    """

    class_names: list[str]
    input_shape: list[int]
    label_mode: str
    normalize: str
    mean: float = 0.0
    std: float = 1.0
    sizes: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    target_mean: list[float] | None = None
    target_std: list[float] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Splits:
    """The data of one experiment, built once by `load_splits` and never changed.

    Args:
        train: every remaining epoch's training batches in one stream (Keras' fit reads it with
            `steps_per_epoch`); see `training_stream`.
        validation: the validation batches, one pass in stored order, or None.
        test: the test batches, likewise, or None.
        info: class names, input shape, normalisation: the run's dataset.json.
        steps_per_epoch: training batches per epoch.
        examples: the examples behind each split (arrays in memory, or image files), by split name.
        bad_files: an image folder's files left out (bad_files.json), as `{"path", "reason"}`.
        warnings: lines the caller should show the user (as `warning: …`); the data layer prints nothing.
        root: an image folder's root (a table's folder), which `files()` is relative to; None for arrays.
        table: a csv dataset's table, whose labels `files()` records; None for other kinds.
        stream: builds the training stream from a given epoch on (used by `from_epoch`).
    """

    train: Any
    validation: Any | None
    test: Any | None
    info: DatasetInfo
    steps_per_epoch: int
    examples: Mapping[str, Examples] = field(default_factory=dict)
    bad_files: tuple[dict[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    root: Path | None = None
    table: Path | None = None
    stream: Callable[[int], Any] | None = field(default=None, repr=False, compare=False)

    def split(self, name: str):
        """The pipeline of split `name` (train, validation or test), or a UserError when there is none."""
        data = {"train": self.train, "validation": self.validation, "test": self.test}[name]
        if data is None:
            raise UserError(f"this experiment's dataset has no {name} split")
        return data

    def with_pipelines(self, **pipelines: Any) -> "Splits":
        """A new Splits with some pipelines replaced (`train=`, `validation=`, `test=`), the rest as here.

        Example (the distribution fills partial batches):
        >>> splits = splits.with_pipelines(train=full(splits.train), validation=full(splits.validation))
        """
        unknown = set(pipelines) - {"train", "validation", "test"}
        if unknown:
            raise TypeError(f"with_pipelines: no pipeline named {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **pipelines)

    def from_epoch(self, initial_epoch: int) -> "Splits":
        """A new Splits whose training stream starts after `initial_epoch` epochs (resume), each later epoch in
        the order a straight run gives it. Call it before the distribution reshapes the batches."""
        if self.stream is None:
            raise ValueError("from_epoch: these Splits were not made by load_splits (no stream to restart)")
        return dataclasses.replace(self, train=self.stream(initial_epoch))

    def files(self) -> dict[str, Any] | None:
        """Which files are in which split, for the run's splits.json; None for datasets of arrays.

        Returns:
            `{"root": str, "train": [...], "validation": [...] or None, "test": [...] or None}`, the paths relative
            to `root` (a table's path outside its folder stays absolute), each split in its stored order; for a
            table also `"table"` and `"labels"`: `{"train": [class name of each file], ...}`, since its labels come
            from the table, not from the files' folders. `load_splits(..., stored_files=that)` rebuilds exactly
            these splits.
        """
        if self.root is None:
            return None
        files: dict[str, Any] = {"root": str(self.root)}
        parts = {name: part if isinstance(part, FileExamples) else None
                 for name in ("train", "validation", "test") for part in [self.examples.get(name)]}
        for name, part in parts.items():
            files[name] = [_relative(p, self.root) for p in part.paths] if part is not None else None
        if self.table is not None:
            names = self.info.class_names
            files["table"] = str(self.table)
            regression = self.info.label_mode == "regression"
            files["labels"] = {name: [[float(v) for v in label] if regression else _names_of(label, names)
                                      for label in part.labels] if part is not None
                               else None for name, part in parts.items()}
        return files


def _names_of(label: Any, names: list[str]) -> str | list[str]:
    """A class number's name, or the names of a multi-hot row's labels (several labels a picture)."""
    if np.ndim(label):
        return [names[j] for j in np.flatnonzero(label)]
    return names[label]


def label_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    """The pictures of each class: of class numbers, or of multi-hot rows (the pictures having each label)."""
    labels = np.asarray(labels)
    if labels.ndim > 1:
        return np.rint(labels.sum(axis=0)).astype(np.int64).tolist()
    return np.bincount(labels.astype(np.int64), minlength=num_classes).tolist()


def _relative(path: str, root: Path) -> str:
    """`path` relative to `root` when it is inside it, else absolute (a table may list pictures anywhere)."""
    path = Path(path)
    return (path.relative_to(root) if path.is_relative_to(root) else path).as_posix()


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
    if info.label_mode == "multi_label":  # multi-hot rows already
        return tf.cast(labels, tf.float32)
    if info.label_mode == "regression":  # the numbers, normalised as the model learns them
        return (tf.cast(labels, tf.float32) - info.target_mean) / info.target_std
    return labels


def augmentation_in_model(experiment: Experiment) -> bool:
    """Whether augmentation runs as the model's first layers (on the GPU) rather than in the input pipeline.

    `placement: auto` puts it in the model when a GPU is visible or the Keras backend is not TensorFlow.
    """
    import keras

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


def _prepared(ds, info: DatasetInfo, augmenter=None, mixer=None):
    """`ds`'s batches as the model takes them: augmented per picture (`augmenter`), normalised, labels encoded,
    then mixed (`mixer`, see `cnnrun.data.mixing`)."""
    import tensorflow as tf

    def prepare(images, labels):
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images, training=True)
        return preprocess(images, info), _encode_labels(labels, info)

    ds = ds.map(as_written(prepare), num_parallel_calls=tf.data.AUTOTUNE)
    return (mixer(ds) if mixer is not None else ds).prefetch(tf.data.AUTOTUNE)


def allow_tensor_seeds() -> None:
    """Make TensorFlow's global seed one with which an op seed can be a tensor (the training stream's per-epoch
    shuffle): TensorFlow's check for the seed pair (0, 0) asks that tensor for its truth value and fails when the
    global seed is 0 (`keras.utils.set_random_seed(0)`, a config's `seed: 0`). A global 0 becomes 2³¹ − 2; any other
    would do but 2³¹ − 1, which TensorFlow reduces to 0 too. Nothing else changes."""
    import tensorflow as tf
    from tensorflow.python.eager import context  # the global seed's value is not in the public API

    if context.global_seed() == 0:
        tf.random.set_seed(2**31 - 2)


def training_stream(examples: Examples, info: DatasetInfo, experiment: Experiment, initial_epoch: int = 0,
                    augment: bool = True):
    """Every remaining epoch's training batches in one stream, each epoch shuffled with its own seed.

    Epoch e is shuffled with seed `(seed, e)`, whatever epoch the process started at, so a resumed run sees
    the same order as a straight one. The examples' source (and so its cache) is built once and read by every
    epoch: `cache: memory` and `disk` decode each picture once. With `dataset.sampling: balanced` an epoch is
    as many pictures drawn class by class instead (`cnnrun.data.sampling`; each class's part has its own source).
    Keras' fit reads the stream with `steps_per_epoch`. `load_splits` and `Splits.from_epoch` call it.

    Args:
        examples: the training examples.
        info: the dataset's normalisation and label mode.
        experiment: the experiment (batch size, epochs, shuffle, seed, augmentation).
        initial_epoch: the epochs already trained; the stream starts after them.
        augment: apply the experiment's per-picture augmentation (False when the model holds it). MixUp and
            CutMix mix the batches either way (`cnnrun.data.mixing`).
    """
    import tensorflow as tf

    allow_tensor_seeds()
    train = experiment.train
    zero = info.mean if info.normalize == "standardize" else 0.0  # the raw value normalisation turns into 0
    augmenter = build_augmenter(experiment.augmentation, experiment.seed, zero=zero) \
        if augment and experiment.augmentation else None
    balanced = experiment.dataset.sampling == "balanced"
    if balanced:  # one part per class, its source (and cache) built once like the whole split's
        parts = [examples.take(indices) for indices in class_parts(examples.labels, info.num_classes)]
        sources = [part.source() for part in parts]
    else:
        source = examples.source()  # built once: every epoch reads the same cache

    def one_epoch(epoch):
        seed = experiment.seed * 1_000_003 + epoch if train.shuffle or balanced else None
        if balanced:  # cnnrun.data.sampling
            streams = [part.endless(part_source, class_seed(seed, index))
                       for index, (part, part_source) in enumerate(zip(parts, sources, strict=True))]
            return balanced_epoch(streams, examples.labels, info.num_classes, seed).batch(train.batch_size)
        pictures = examples.ordered(source, seed)
        if alternates_flips(experiment.augmentation):  # in the pipeline wherever the other layers run
            pictures = alternately_flipped(examples, pictures, seed, epoch, experiment.seed)
        return pictures.batch(train.batch_size)

    epochs = tf.data.Dataset.range(initial_epoch, max(train.epochs, initial_epoch + 1))
    mixer = batch_mixer(experiment.augmentation, experiment.seed)
    return _prepared(epochs.flat_map(as_written(one_epoch)), info, augmenter, mixer)


def load_splits(experiment: Experiment, *, stored: DatasetInfo | None = None,
                stored_files: dict[str, Any] | None = None, initial_epoch: int = 0, augment: bool = True) -> Splits:
    """Load the experiment's dataset and make train, validation and test pipelines, once.

    Only the classes `dataset.classes` chooses are read, numbered in its order. Validation and test are held
    out first (with `dataset.fold`, validation is a fold of the training pictures: `cnnrun.data.folds`);
    `samples_per_class` then draws the training split's subset (see `per_class_sample`): the same for the same
    seed, so resume and evaluate see the subset training saw. Normalisation statistics come from the training
    split only and are applied to every split. Nothing is printed: what the user should hear is in
    `Splits.warnings`.

    Args:
        experiment: the validated experiment.
        stored: the run's own dataset.json; its normalisation statistics are used instead of new ones.
        stored_files: the run's own splits.json (`Splits.files()`): an image folder's splits are exactly those
            files (added files are ignored and missing ones left out, each with a warning). Ignored for arrays.
        initial_epoch: the epochs already trained; the training stream starts after them.
        augment: whether the input pipeline applies the experiment's augmentation. The caller decides once
            where augmentation runs (see `augmentation_in_model`); False when the model holds it.

    Raises:
        UserError: the data cannot be read, does not fit the config, or a split is empty.
    """
    config = experiment.dataset
    with naming_the_config(experiment.source):
        raw = load_raw(config, experiment.seed, stored_files)
        if config.label_mode == "binary" and len(raw.class_names) != 2:
            raise UserError(f"dataset.label_mode: binary needs 2 classes; {config.name} has {len(raw.class_names)}")
        examples = split_examples(config, raw)
        if config.fold is not None and not raw.presplit:  # a run's recorded splits hold its fold already
            examples = with_fold(examples, config.fold, experiment.seed)
        if config.samples_per_class and not raw.presplit:  # a run's recorded splits hold its subset already
            examples["train"] = per_class_sample(examples["train"], config.samples_per_class, experiment.seed,
                                                 raw.class_names, held_out_words(config, raw))
        check_fits(experiment.augmentation, tuple(examples["train"].image_shape[:2]), pictures_of(config))
    train = examples["train"]
    if stored is not None:
        mean, std = stored.mean, stored.std
    elif config.normalize == "standardize":
        mean, std = train.moments()
    else:
        mean, std = 0.0, 1.0
    regression = config.label_mode == "regression"
    info = DatasetInfo(class_names=raw.class_names, input_shape=list(train.image_shape),
                       label_mode=trained_label_mode(config.label_mode, experiment.augmentation),
                       normalize=config.normalize, mean=mean, std=std,
                       sizes={name: len(part) for name, part in examples.items()},
                       class_counts={} if regression else {name: label_counts(part.labels, len(raw.class_names))
                                                           for name, part in examples.items()},
                       **(target_moments(train.labels, config.target_normalize, stored) if regression else {}))

    batch = experiment.train.batch_size
    pipelines = {name: _pipeline(part, info, batch) for name, part in examples.items() if name != "train"}

    def stream(first_epoch: int):
        return training_stream(train, info, experiment, first_epoch, augment)

    return Splits(stream(initial_epoch), pipelines.get("validation"), pipelines.get("test"), info,
                  steps_per_epoch=-(-len(train) // batch), examples=MappingProxyType(examples), bad_files=raw.bad_files,
                  warnings=raw.warnings, root=raw.root, table=raw.table, stream=stream)
