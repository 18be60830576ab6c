"""The `dataset:` section: one model per kind of data, chosen by `name:` (default `shapes`).

Every kind takes the keys of `DatasetBase` (how the data is split, normalised and labelled) and its own: a kind
refuses another kind's keys, so `color_mode` on `shapes` is an unknown key, not a setting that silently does
nothing. `DatasetConfig` is the union of the kinds; `experiment.dataset.name` says which one a config holds.

Example:
>>> dataset = NpzDataset(name="npz", path="data/mine.npz", validation_split=0.1)
>>> os.path.isabs(dataset.path), dataset.path.endswith("data/mine.npz")
(True, True)
"""

import csv
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from cnnrun.config.regression import regression_misfit, without_stratify
from cnnrun.config.sections import Section

KERAS_DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100")
KERAS_PICTURE_SIZES = {"fashion_mnist": (28, 28), "mnist": (28, 28), "cifar10": (32, 32), "cifar100": (32, 32)}
MIN_SHAPES_SIZE = 13  # the shapes generator keeps every shape (up to 0.84 of the side) a pixel inside the image

_RELATIVE = " A relative path is relative to the current folder; it is recorded resolved (absolute) in the run's " \
            "`config.yaml`, so resume and evaluate work from any folder."
_CACHE = "where decoded images are kept after the first epoch. `none`: decode every epoch (memory stays flat " \
         "however large the folder). `memory`: keep them in memory. `disk`: keep them in a temporary folder, " \
         "removed at the end. `auto`: `memory` when the decoded images fit in 1 GiB, else `none`."


def _absolute(path: str) -> str:
    """A path as given (`~` expanded), made absolute against the current folder."""
    return os.path.abspath(os.path.expanduser(path))


# a path as written in the config, stored absolute
ResolvedPath = Annotated[str, StringConstraints(min_length=1), AfterValidator(_absolute)]


def _number_as_name(value: Any) -> Any:
    """MNIST's and an npz's classes are named 0, 1, 2…: `classes: [3, 5]` means the names "3" and "5"."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# a class name as written in the config
ClassName = Annotated[str, BeforeValidator(_number_as_name), StringConstraints(min_length=1)]


class FoldConfig(Section):
    """One fold of k-fold cross-validation: which of `count` folds of the training pictures validates this run."""

    count: int = Field(ge=2, le=100, description="How many folds the training pictures are dealt into.")
    index: int = Field(ge=1, description="The fold that validates this run, 1 to `count`; the others train.")

    @model_validator(mode="after")
    def _one_of_them(self) -> "FoldConfig":
        if self.index > self.count:
            raise ValueError(f"index {self.index} of {self.count} folds; 1 to {self.count}")
        return self


class DatasetBase(Section):
    """What every kind of data takes: how it is split, normalised and labelled."""

    _source: str | None = PrivateAttr(default=None)  # the config file it was read from (`validate_experiment`)

    @property
    def source(self) -> str | None:
        """The config file this section was read from, named in the data's errors; None when unknown."""
        return self._source

    name: str = Field(description="Which data; each kind below says its own keys.")
    validation_split: float | None = Field(
        None, gt=0, lt=1, description="Fraction of the training data held out for validation: the last part, "
        "before shuffling, as Keras' `fit(validation_split=...)` takes it (image folders and tables: that "
        "fraction of each class, see `stratify`)."
    )
    holdout_first: int | None = Field(
        None, gt=0, description="Hold out the first N training examples for validation (the course's CIFAR-10)."
    )
    test_split: float | None = Field(
        None, gt=0, lt=1, description="For data without a test split of its own (an image folder without "
        "`test/`, an npz without `x_test`, a table without test rows): the fraction of the training data held out as "
        "the test split, taken from the end before validation (image folders and tables are in a seeded order, "
        "and take that fraction of each class: see `stratify`)."
    )
    normalize: Literal["rescale", "standardize", "none"] = Field(
        "rescale", description="`rescale`: ÷255. `standardize`: (x − mean) / std with the training split's "
        "mean and std, stored in the run and reused by evaluate and predict. `none`: raw values."
    )
    label_mode: Literal["categorical", "sparse", "binary", "multi_label", "regression"] = Field(
        "categorical", description="`categorical`: one-hot labels. `sparse`: integer labels. `binary`: 0/1 "
        "labels for two classes (a sigmoid output). `multi_label` (csv tables only): any number of labels per "
        "picture (`cat;animal`), trained as multi-hot vectors on one sigmoid per label; see \"Several labels per "
        "picture\". `regression` (csv tables only): one or more numbers per picture (`target_columns`), a linear "
        "head; see \"A number per picture\"."
    )
    classes: list[ClassName] | None = Field(
        None, description="Use only these classes, in this order (the first is label 0), by the dataset's own "
        "names (CIFAR-10's `cat`, an image folder's class folders, MNIST's `3`); the others are left out of "
        "every split. Unset: every class. The run's `dataset.json` names exactly these."
    )
    samples_per_class: int | None = Field(
        None, gt=0, description="Train on N pictures of each class, drawn with the experiment's `seed` from the "
        "training split once validation and test are held out (they keep all their pictures). Unset: all."
    )
    sampling: Literal["natural", "balanced"] = Field(
        "natural", description="How a training epoch draws its pictures. `natural`: each once, in a shuffled order. "
        "`balanced`: as many pictures, but an equal share from every class (a rare class's pictures repeated, a "
        "common class's drawn in part), seeded per epoch: an alternative to `train.class_weight` for imbalanced "
        "classes, not to combine with it. Validation and test are never resampled."
    )

    fold: FoldConfig | None = Field(
        None, description="`{count: 5, index: 2}`: validate on fold 2 of 5 stratified folds of the training "
        "pictures (dealt per class with the experiment's seed, once the test split is held out) and train on the "
        "others. `cnnrun train CONFIG --folds K` sets it for each of its K runs; instead of `validation_split` and "
        "`holdout_first`."
    )

    @field_validator("classes")
    @classmethod
    def _two_different_classes(cls, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        twice = sorted({name for name in classes if classes.count(name) > 1})
        if twice:
            raise ValueError(f"{', '.join(repr(name) for name in twice)} listed twice; name each class once")
        if len(classes) < 2:
            raise ValueError(f"at least 2 classes to tell apart, got {len(classes)}")
        return classes

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> "DatasetBase":
        if self.validation_split is not None and self.holdout_first is not None:
            raise ValueError("set either validation_split or holdout_first, not both")
        if self.fold is not None and (self.validation_split is not None or self.holdout_first is not None):
            raise ValueError("fold takes the validation pictures from the training split: remove validation_split "
                             "and holdout_first")
        if (self.validation_split or 0) + (self.test_split or 0) >= 1:
            raise ValueError("validation_split + test_split must leave training data (a sum under 1)")
        if self.label_mode == "binary" and self.classes is not None and len(self.classes) != 2:
            raise ValueError(f"label_mode: binary takes 2 classes; classes lists {len(self.classes)}")
        if self.label_mode == "regression":
            regression_misfit(self)
        if self.label_mode == "multi_label":
            if self.name != "csv":
                raise ValueError(f"label_mode: multi_label reads several labels per picture from a table's label "
                                 f"column: use it with name: csv, not {self.name}")
            if self.samples_per_class is not None:
                raise ValueError("samples_per_class draws N pictures of each class, but with label_mode: "
                                 "multi_label a picture has several labels; leave samples_per_class out")
            if self.sampling == "balanced":
                raise ValueError("sampling: balanced gives each class an equal share of an epoch, but with "
                                 "label_mode: multi_label a picture has several labels; give sampling: natural")
        return self


class ShapesDataset(DatasetBase):
    """`shapes`: cnnrun's own seeded pictures of circles, squares, triangles and crosses; no download."""

    name: Literal["shapes"] = Field("shapes", description="The built-in shapes set.")
    image_size: int = Field(
        32, description=f"Side of the square images in pixels, {MIN_SHAPES_SIZE} to 1024 (the generator needs "
        f"{MIN_SHAPES_SIZE} to draw every shape inside the image)."
    )
    channels: Literal[1, 3] = Field(1, description="1 (grayscale) or 3 (colour).")
    num_classes: int = Field(3, ge=2, le=4, description="How many shape classes (circle, square, triangle, cross).")
    num_samples: int = Field(3000, ge=10, description="Number of training images.")
    test_samples: int = Field(600, ge=0, description="Number of test images.")

    @field_validator("image_size")
    @classmethod
    def _drawable(cls, size: int) -> int:
        if not MIN_SHAPES_SIZE <= size <= 1024:
            raise ValueError(f"the shapes dataset draws images of {MIN_SHAPES_SIZE} to 1024 pixels a side "
                             f"(smaller ones cannot hold every shape)")
        return size


class KerasDataset(DatasetBase):
    """A dataset Keras ships: downloaded into ~/.keras/datasets, or read from a local copy in `data_dir`."""

    name: Literal["fashion_mnist", "mnist", "cifar10", "cifar100"] = Field(
        description="Which of Keras' datasets."
    )
    data_dir: ResolvedPath | None = Field(
        None, description="A folder holding a local copy in Keras' cache layout (or, for cifar10/100, a `train/` "
        "and `test/` tree of class folders). Unset: Keras downloads into ~/.keras/datasets." + _RELATIVE
    )
    cache: Literal["auto", "none", "memory", "disk"] = Field(
        "auto", description="CIFAR's JPEG tree in `data_dir` (the other datasets are arrays in memory): " + _CACHE
    )


class NpzDataset(DatasetBase):
    """`npz`: your own arrays in one NumPy `.npz` file."""

    name: Literal["npz"] = Field(description="Your own arrays.")
    path: ResolvedPath = Field(
        description="The file with `x_train, y_train` and optionally `x_test, y_test`." + _RELATIVE
    )


def _sides(size: int | tuple[int, int]) -> int | tuple[int, int]:
    if not all(8 <= side <= 1024 for side in (size if isinstance(size, tuple) else (size,))):
        raise ValueError("sides from 8 to 1024 pixels")
    return size


# the keys of the kinds whose pictures are files (image_folder, csv), each with its meaning
ImageSize = Annotated[int | tuple[int, int], AfterValidator(_sides), Field(
    description="[height, width] every image is resized to (one number: a square), 8 to 1024 pixels.")]
ColorMode = Annotated[Literal["rgb", "grayscale", "rgba"], Field(description="The colour mode images are read in.")]
Cache = Annotated[Literal["auto", "none", "memory", "disk"], Field(description=_CACHE[0].upper() + _CACHE[1:])]
OnBadFile = Annotated[Literal["skip", "error"], Field(
    description="What to do with files that do not decode (empty, truncated, not an image) or, in a table, are "
    "missing. `skip`: leave them out with one warning; the run's `bad_files.json` lists them. `error`: stop "
    "before training and name them.")]
Stratify = Annotated[bool, Field(
    description="`true`: `validation_split` and `test_split` take that fraction of each class (the last pictures "
    "of each class in the seeded order), so every split keeps the class proportions; the split sizes are those "
    "of `false`. `false`: they take the last part of all the pictures in the seeded order, whatever their "
    "class. `holdout_first` is not affected: it takes the first N.")]


class ImageFolderDataset(DatasetBase):
    """`image_folder`: pictures in one folder per class, read and resized as they stream."""

    name: Literal["image_folder"] = Field(description="Your own pictures, one folder per class.")
    path: ResolvedPath = Field(
        description="A folder holding `train/` (and optionally `validation/`, `test/`) of class folders, or "
        "class folders directly." + _RELATIVE
    )
    image_size: ImageSize = 32
    color_mode: ColorMode = "rgb"
    cache: Cache = "auto"
    on_bad_file: OnBadFile = "skip"
    stratify: Stratify = True


class CsvDataset(DatasetBase):
    """`csv`: a table of picture files and their labels, one row a picture."""

    name: Literal["csv"] = Field(description="Your own pictures, listed in a CSV table with their labels.")
    path: ResolvedPath = Field(
        description="The CSV file: a header row naming its columns, then one row per picture. The pictures' "
        "paths in it are relative to the CSV file's folder (absolute paths are used as they are)." + _RELATIVE
    )
    path_column: str = Field("path", min_length=1, description="The column holding each picture's path.")
    label_column: str = Field("label", min_length=1, description="The column holding each picture's class name; "
                              "the classes are the labels found, sorted (or `classes`). With `label_mode: "
                              "multi_label`, the picture's label names, separated by `label_separator`.")
    label_separator: str = Field(";", min_length=1, description="With `label_mode: multi_label`: what separates "
                                 "a picture's labels in the label column (`cat;animal`). Ignored otherwise.")
    target_columns: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None, min_length=1, description="With `label_mode: regression`: the column(s) of numbers the model learns, "
        "one output each, in this order (`[angle]`). Unset: `label_column` alone.")
    target_normalize: Literal["standardize", "none"] = Field(
        "standardize", description="With `label_mode: regression`: `standardize` trains on (target − mean) / std "
        "with the training split's mean and std of each target (recorded in dataset.json; every score and "
        "prediction is in the targets' own units); `none`: the numbers as they are.")
    split_column: str | None = Field(
        "split", min_length=1, description="The column saying each picture's split: `train`, `validation` or "
        "`test`. Used when the table has it; a table without it is all training data, held out by "
        "`validation_split` and `test_split`. A name other than `split` must be a column of the table. `null`: "
        "ignore any such column."
    )
    image_size: ImageSize = 32
    color_mode: ColorMode = "rgb"
    cache: Cache = "auto"
    on_bad_file: OnBadFile = "skip"
    stratify: Stratify = True

    @model_validator(mode="before")
    @classmethod
    def _stratify_one_class(cls, data: Any) -> Any:
        """Stratifying deals each class apart: a picture of several labels has no one class to be dealt by, so
        `stratify` is false for `multi_label` (and `true` a mistake)."""
        if isinstance(data, dict) and data.get("label_mode") == "regression":
            return without_stratify(data)
        if not isinstance(data, dict) or data.get("label_mode") != "multi_label":
            return data
        if data.get("stratify", False) is not False:
            raise ValueError("stratify: true takes each class's share, but with label_mode: multi_label a picture "
                             "has several labels; remove stratify (multi_label holds out the last part of the "
                             "seeded order)")
        return {**data, "stratify": False}


DATASET_KINDS: dict[str, type[DatasetBase]] = {
    **{name: KerasDataset for name in KERAS_DATASETS},
    "shapes": ShapesDataset, "npz": NpzDataset, "image_folder": ImageFolderDataset, "csv": CsvDataset,
}

DatasetConfig = Annotated[ShapesDataset | KerasDataset | NpzDataset | ImageFolderDataset | CsvDataset,
                          Field(discriminator="name")]


def picture_size(dataset: DatasetBase) -> tuple[int, int] | None:
    """The `(height, width)` of the pictures the model receives, as the config says it; None for an npz (the
    arrays say it once they are read)."""
    if isinstance(dataset, ShapesDataset):
        return dataset.image_size, dataset.image_size
    if isinstance(dataset, ImageFolderDataset | CsvDataset):
        size = dataset.image_size
        return (size, size) if isinstance(size, int) else size
    return KERAS_PICTURE_SIZES.get(dataset.name)


def pictures_of(dataset: DatasetBase) -> str:
    """The dataset as messages name it: `fashion_mnist`, `the image folder data/pets`, `npz (data/mine.npz)`."""
    if isinstance(dataset, ImageFolderDataset):
        return f"the image folder {dataset.path}"
    if isinstance(dataset, CsvDataset):
        return f"the table {dataset.path}"
    return f"{dataset.name} ({dataset.path})" if isinstance(dataset, NpzDataset) else dataset.name


def has_own_validation(dataset: DatasetBase) -> bool:
    """Whether the data brings a validation split of its own: an image folder's `validation/`, a table's rows
    whose split column says `validation`. A table that cannot be read says no here; the data layer names the
    problem when it reads the table."""
    if isinstance(dataset, ImageFolderDataset):
        return (Path(dataset.path) / "validation").is_dir()
    if not isinstance(dataset, CsvDataset) or dataset.split_column is None:
        return False
    try:
        with open(dataset.path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            if dataset.split_column not in header:
                return False
            at = header.index(dataset.split_column)
            return any(len(row) > at and row[at].strip().lower() == "validation" for row in reader)
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def stratifies(dataset: DatasetBase) -> bool:
    """Whether `validation_split` and `test_split` take their fraction of each class (`stratify`, a key of the
    kinds whose pictures are files); False for the others, which keep Keras' `fit(validation_split=...)` cut."""
    return bool(getattr(dataset, "stratify", False)) and dataset.label_mode not in ("multi_label", "regression")


def targets_of(dataset: DatasetBase) -> list[str] | None:
    """The columns of numbers a regression learns (`target_columns`, else `label_column`); None for classes."""
    if dataset.label_mode != "regression" or not isinstance(dataset, CsvDataset):
        return None
    return list(dataset.target_columns or [dataset.label_column])


def default_name(value: Any) -> Any:
    """A `dataset:` mapping without `name:` is the shapes set."""
    return {"name": "shapes", **value} if isinstance(value, dict) and "name" not in value else value

