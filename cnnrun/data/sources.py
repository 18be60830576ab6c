"""Where the examples come from: the built-in `shapes` set, Keras' datasets (downloaded or a local copy), npz,
image folders, csv tables of picture files (`table_source`).

One record per kind of dataset (`SOURCES`, keyed by the config's class in the `DatasetConfig` union): its input
shape and class names without the images, and its loader. A new kind is one config class and
one record here.

Each loader returns a `RawData`: per split, examples in memory (uint8 or float images in NHWC layout and integer
labels) or image files that stream from disk; and the class names.
"""

import contextlib
import gzip
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.config import DatasetConfig
from cnnrun.config.dataset import (
    CsvDataset,
    ImageFolderDataset,
    KerasDataset,
    NpzDataset,
    ShapesDataset,
    pictures_of,
)
from cnnrun.data.examples import ArrayExamples, RawData
from cnnrun.data.folders import CHANNELS, PIL_MODES, class_folders, folder_splits, subfolders
from cnnrun.data.image_folder import read_folder_tree
from cnnrun.data.shapes import SHAPE_NAMES, make_shapes
from cnnrun.data.subsets import chosen_classes, only_classes
from cnnrun.data.table_source import load_table, table_shape_and_names
from cnnrun.errors import UserError

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "cifar100": [f"class_{i}" for i in range(100)],
}
INPUT_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3)}

# the files Keras keeps in ~/.keras/datasets/, per dataset
CACHE_FILES = {
    "fashion_mnist": ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
    "mnist": ["mnist.npz"],
    "cifar10": ["cifar-10-batches-py/data_batch_1 … data_batch_5, test_batch"],
    "cifar100": ["cifar-100-python/train, test"],
}


def _arrays(x_train, y_train, x_test, y_test, class_names: list[str]) -> RawData:
    test = ArrayExamples(x_test, np.asarray(y_test).reshape(-1).astype(np.int64)) if x_test is not None else None
    return RawData(ArrayExamples(x_train, np.asarray(y_train).reshape(-1).astype(np.int64)), test, class_names)


@contextlib.contextmanager
def naming_the_config(source: str | None) -> Iterator[None]:
    """Put the config file's name before a UserError raised in the block (unless it starts with it already)."""
    try:
        yield
    except UserError as e:
        if source and not str(e).startswith(f"{source}:"):
            raise UserError(f"{source}: {e}") from e
        raise


def describe(config: DatasetConfig) -> tuple[tuple[int, ...], list[str]]:
    """The input shape and class names of a dataset, without loading its images (npz reads its labels).

    The class names are those `dataset.classes` chooses, checked against the dataset's own (a UserError names
    the config file and an unknown one), so the model's `${num_classes}` is right before any data is loaded.
    """
    source = SOURCES[type(config)]
    with naming_the_config(config.source):
        shape, names = source.shape_and_names(config)
        if names is None:  # two classes by definition; names come with the data
            return shape, list(config.classes or ["class 0", "class 1"])
        return shape, chosen_classes(config.classes, names, pictures_of(config))


def _shapes_shape(config: ShapesDataset) -> tuple[tuple[int, ...], list[str]]:
    size = config.image_size
    return (size, size, config.channels), list(SHAPE_NAMES[: config.num_classes])


def _npz_shape(config: NpzDataset) -> tuple[tuple[int, ...], list[str]]:
    path = Path(config.path)
    with _open_npz(path) as arrays:
        shape = _image_shape(_npz_array(arrays, "x_train", path).shape, config.path)
        return shape, _label_names(_npz_array(arrays, "y_train", path))


def _folder_shape(config: ImageFolderDataset) -> tuple[tuple[int, ...], list[str] | None]:
    height, width = _folder_size(config)
    shape = (height, width, CHANNELS[PIL_MODES[config.color_mode]])
    root = Path(config.path)
    if not root.is_dir() and config.label_mode == "binary":
        return shape, None
    return shape, class_folders(folder_splits(root)["train"])


def _keras_shape(config: KerasDataset) -> tuple[tuple[int, ...], list[str]]:
    return INPUT_SHAPES[config.name], CLASS_NAMES[config.name]


def _folder_size(config: ImageFolderDataset) -> tuple[int, int]:
    size = config.image_size
    return (size, size) if isinstance(size, int) else size


def _load_image_folder(config: ImageFolderDataset, seed: int, stored_files: dict[str, Any] | None) -> RawData:
    """An image_folder dataset: its files, checked, streaming at `image_size` in `color_mode`."""
    return read_folder_tree(Path(config.path), _folder_size(config), PIL_MODES[config.color_mode],
                            config.on_bad_file, "dataset.path", seed, config.cache, stored_files, config.classes,
                            config.samples_per_class)


def load_raw(config: DatasetConfig, seed: int, stored_files: dict[str, Any] | None = None) -> RawData:
    """Load a dataset's examples as the config says, only those of the classes `dataset.classes` chooses.

    An image folder reads only the chosen class folders; datasets of arrays are loaded whole and then keep the
    chosen classes' examples (see `cnnrun.data.subsets.only_classes`). `samples_per_class` is left to the split.

    Args:
        config: the experiment's `dataset:` section.
        seed: the seed of an image folder's order.
        stored_files: a run's recorded splits of an image folder or a table (`Splits.files()`), reused exactly;
            ignored for datasets of arrays.
    """
    source = SOURCES[type(config)]
    with naming_the_config(config.source):
        raw = source.load(config, seed, stored_files)
        return only_classes(raw, chosen_classes(config.classes, raw.class_names, pictures_of(config)))


def _load_shapes(config: ShapesDataset, seed: int, stored_files: dict[str, Any] | None) -> RawData:
    args = dict(image_size=config.image_size, channels=config.channels, num_classes=config.num_classes)
    x_train, y_train, names = make_shapes(config.num_samples, seed=seed, **args)
    x_test, y_test, _ = make_shapes(config.test_samples, seed=seed + 1, **args) if config.test_samples \
        else (None, None, None)
    return _arrays(x_train, y_train, x_test, y_test, names)


def _load_keras(config: KerasDataset, seed: int, stored_files: dict[str, Any] | None) -> RawData:
    if config.data_dir:
        return _load_local_copy(config, Path(config.data_dir), seed, stored_files)
    return _download(config.name)


def _open_npz(path: Path):
    if not path.is_file():
        raise UserError(f"dataset.path: {path} not found (an .npz file with x_train and y_train)")
    try:
        arrays = np.load(path, allow_pickle=False)
    except EOFError as e:  # an empty file; left to the CLI, click would print only "Aborted."
        raise UserError(f"dataset.path: {path} is empty (0 bytes); it should be an .npz file with x_train and "
                        f"y_train") from e
    except (OSError, ValueError) as e:
        raise UserError(f"dataset.path: {path} is not a readable .npz file ({e})") from e
    missing = {"x_train", "y_train"} - set(arrays.files)
    if missing:
        held = f"it has {', '.join(arrays.files)}" if arrays.files else "it holds no arrays"
        raise UserError(f"dataset.path: {path} lacks {', '.join(sorted(missing))}; {held}")
    return arrays


def _npz_array(arrays, key: str, path: Path) -> np.ndarray:
    """One numeric array of an open .npz file, with at least one example; never unpickled.

    Raises:
        UserError: the array holds Python objects (numpy would have to unpickle them, which can run code), is
            not numeric, or has no examples.
    """
    try:
        array = arrays[key]
    except ValueError as e:  # numpy refuses object arrays when allow_pickle is False
        raise UserError(f"dataset.path: {path}: {key} holds Python objects (dtype=object), which cnnrun does not "
                        f"unpickle; save it as a numeric array (uint8 or float images, integer labels)") from e
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise UserError(f"dataset.path: {path}: {key} has dtype {array.dtype}; it must be numeric "
                        f"(uint8 or float images, integer labels)")
    if array.ndim == 0 or len(array) == 0:
        raise UserError(f"dataset.path: {path}: {key} holds no examples (shape {array.shape})")
    return array


def _image_shape(shape: tuple[int, ...], source: str) -> tuple[int, ...]:
    if len(shape) == 3:
        return (*shape[1:], 1)
    if len(shape) == 4 and shape[-1] in (1, 3, 4):
        return tuple(shape[1:])
    raise UserError(f"{source}: images must be (N, height, width) or (N, height, width, channels), got {shape}")


def _label_names(labels: np.ndarray) -> list[str]:
    labels = np.asarray(labels).reshape(-1)
    return [str(i) for i in range(int(labels.max()) + 1)]


def _as_nhwc(x: np.ndarray) -> np.ndarray:
    return x[..., np.newaxis] if x.ndim == 3 else x


def _load_npz(path: Path) -> RawData:
    with _open_npz(path) as arrays:
        x_train, y_train = _npz_array(arrays, "x_train", path), _npz_array(arrays, "y_train", path).reshape(-1)
        _image_shape(x_train.shape, str(path))
        has_test = "x_test" in arrays.files and "y_test" in arrays.files
        x_test = _as_nhwc(_npz_array(arrays, "x_test", path)) if has_test else None
        y_test = _npz_array(arrays, "y_test", path).reshape(-1) if has_test else None
    if len(x_train) != len(y_train):
        raise UserError(f"dataset.path: {path}: x_train has {len(x_train)} images but y_train {len(y_train)} labels")
    if not np.issubdtype(y_train.dtype, np.integer) or y_train.min() < 0:
        raise UserError(f"dataset.path: {path}: y_train must hold class numbers 0, 1, 2, …")
    return _arrays(_as_nhwc(x_train), y_train, x_test, y_test, _label_names(y_train))


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def _missing_files_error(name: str, folder: Path) -> UserError:
    files = ", ".join(CACHE_FILES[name])
    return UserError(f"dataset.data_dir: {folder} has no local copy of {name}; put {files} there "
                     f"(the layout of ~/.keras/datasets)")


def _load_local_copy(config: KerasDataset, folder: Path, seed: int, stored_files: dict[str, Any] | None) -> RawData:
    """Read a dataset from a folder in Keras' cache layout (or, for CIFAR, a train/test tree of JPEGs)."""
    name = config.name
    if not folder.is_dir():
        raise UserError(f"dataset.data_dir: {folder} is not a folder")
    if name == "fashion_mnist":
        paths = [folder / f for f in CACHE_FILES[name]]
        if not all(p.is_file() for p in paths):
            raise _missing_files_error(name, folder)
        x_train, y_train, x_test, y_test = (
            _read_idx(paths[0], 16).reshape(-1, 28, 28, 1), _read_idx(paths[1], 8),
            _read_idx(paths[2], 16).reshape(-1, 28, 28, 1), _read_idx(paths[3], 8),
        )
    elif name == "mnist":
        if not (folder / "mnist.npz").is_file():
            raise _missing_files_error(name, folder)
        with np.load(folder / "mnist.npz", allow_pickle=False) as f:
            x_train, y_train, x_test, y_test = (
                _as_nhwc(f["x_train"]), f["y_train"], _as_nhwc(f["x_test"]), f["y_test"])
    elif (folder / "train").is_dir() and (folder / "test").is_dir():
        found = subfolders(folder / "train")
        if len(found) != len(CLASS_NAMES[name]):
            raise UserError(f"dataset.data_dir: {folder}/train should hold {len(CLASS_NAMES[name])} class folders "
                            f"for {name}, found {len(found)}")
        return read_folder_tree(folder, INPUT_SHAPES[name][:2], "RGB", "skip", "dataset.data_dir", seed,
                                config.cache, stored_files, config.classes, config.samples_per_class)
    else:
        x_train, y_train, x_test, y_test = _read_cifar_batches(name, folder)
    return _arrays(x_train, y_train, x_test, y_test, CLASS_NAMES[name])


def _read_cifar_batches(name: str, folder: Path):
    """CIFAR's python batches, as Keras caches them (Keras reads the same pickles)."""
    sub = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    root = folder / sub if (folder / sub).is_dir() else folder
    if name == "cifar10":
        train_files, test_files, key = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"
    else:
        train_files, test_files, key = ["train"], ["test"], b"fine_labels"
    if not all((root / f).is_file() for f in train_files + test_files):
        raise _missing_files_error(name, folder)

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            with open(root / f, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch[key]))
        return np.concatenate(xs), np.concatenate(ys)

    return (*read(train_files), *read(test_files))


class _DownloadLineHeld:
    """Standard output while Keras loads a dataset: its `Downloading data from …` line is held back until the
    download shows progress (anything else it prints), so that offline the one-line error comes alone."""

    def __init__(self, real: Any):
        self.real, self.held = real, []

    def write(self, text: str) -> int:
        if text.startswith("Downloading data from"):
            self.held.append(text)
            return len(text)
        self.release()
        return self.real.write(text)

    def release(self) -> None:
        """Write what was held (the download is under way, or done)."""
        for text in self.held:
            self.real.write(text)
        self.held.clear()

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno: the real stream's
        return getattr(self.real, name)


def _download(name: str) -> RawData:
    """Let Keras download (or reuse its cache in ~/.keras/datasets); offline, say which files go where, in one
    line with nothing before it (Keras' `Downloading data from …` is held back until the download progresses)."""
    import keras

    loader = getattr(keras.datasets, name)
    held = _DownloadLineHeld(sys.stdout)
    try:
        with contextlib.redirect_stdout(held):
            (x_train, y_train), (x_test, y_test) = loader.load_data()
        held.release()
    except Exception as e:  # keras.utils.get_file raises a bare Exception when the URL cannot be fetched
        if "URL fetch failure" not in str(e) and not isinstance(e, OSError):
            raise
        reason = str(e).splitlines()[0].split(" -- ")[-1][:100]
        raise UserError(
            f"could not download {name} ({reason}); without network, put {', '.join(CACHE_FILES[name])} "
            f"in a folder and set dataset.data_dir to it"
        ) from e
    return _arrays(_as_nhwc(x_train), y_train, _as_nhwc(x_test), y_test, CLASS_NAMES[name])


@dataclass(frozen=True)
class Source:
    """How one kind of dataset is read.

    Args:
        shape_and_names: the input shape and every class name, without loading the images (None for the names of
            a binary image folder that is not there yet).
        load: its examples, `(config, seed, stored_files) -> RawData`, every class (an image folder's chosen ones).
    """

    shape_and_names: Callable[[Any], tuple[tuple[int, ...], list[str] | None]]
    load: Callable[[Any, int, dict[str, Any] | None], RawData]


SOURCES: dict[type, Source] = {
    ShapesDataset: Source(_shapes_shape, _load_shapes),
    KerasDataset: Source(_keras_shape, _load_keras),
    NpzDataset: Source(_npz_shape, lambda config, seed, stored_files: _load_npz(Path(config.path))),
    ImageFolderDataset: Source(_folder_shape, _load_image_folder),
    CsvDataset: Source(table_shape_and_names, load_table),
}
