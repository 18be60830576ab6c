"""Image-folder datasets: check every file, then list the good ones per split, as new or as a run recorded them.

A new run draws its splits from the folder as it is (see `cnnrun.data.split`). A run that goes on (resume) or is
judged (evaluate) must see exactly the files it was trained and tested on, however the folder has changed since:
it passes the run's `splits.json` (`Splits.files()`) as `stored_files`, and each split is rebuilt from those files,
in that order, with the labels their class folders give. Files added since are ignored and files gone are left
out, each with a warning the caller shows.

Example:
>>> raw = read_folder_tree(Path("pets"), (150, 150), "RGB", "skip", "dataset.path", seed=7)
>>> raw.train.paths[:2], raw.warnings
(['pets/train/dog/17.jpg', 'pets/train/cat/3.jpg'], ())
"""

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.data.check import FolderReport, check_image_folder
from cnnrun.data.examples import FileExamples, RawData
from cnnrun.data.folders import CHANNELS, SPLIT_NAMES, class_folders, folder_splits, is_image_file, suffix_list
from cnnrun.data.subsets import chosen_classes
from cnnrun.errors import UserError

MEMORY_CACHE_LIMIT = 1 << 30  # `cache: auto` keeps decoded folder images in memory up to this many bytes
SHOWN = 3  # files named in a warning or an error; the rest are counted


def first_few(names: list[str]) -> str:
    """The first `SHOWN` of `names` joined by `; `, with `…` when there are more (for a warning or an error)."""
    return "; ".join(names[:SHOWN]) + ("; …" if len(names) > SHOWN else "")


def read_folder_tree(root: Path, size: tuple[int, int], mode: str, on_bad_file: str, key: str, seed: int,
                     cache: str = "auto", stored_files: dict[str, Any] | None = None, classes: list[str] | None = None,
                     samples_per_class: int | None = None) -> RawData:
    """Check every file of an image-folder tree (in parallel) and list the good ones, each split in a seeded order.

    A folder tree lists its images class by class; the seeded order makes `holdout_first` and
    `validation_split` take every class, as they do on Keras' own (shuffled) datasets. Files that do not decode
    are left out with one warning (`skip`, listed in `RawData.bad_files`) or stop loading (`error`). Class
    folders without a usable image get a warning. Warnings are returned in `RawData.warnings`, not printed.

    Args:
        root: `train/` (and optionally `validation/`, `test/`) of class folders, or class folders directly.
        size: (height, width) every image is resized to.
        mode: Pillow colour mode: RGB, L or RGBA.
        on_bad_file: `skip` or `error`.
        key: the config key named in messages.
        seed: the seed of the order.
        cache: `auto`, `none`, `memory` or `disk` (see `FileExamples`); `auto` is `memory` when the decoded
            images take at most `MEMORY_CACHE_LIMIT` bytes, else `none`.
        stored_files: a run's recorded splits (`Splits.files()`): each split is exactly those files, in that
            order; None draws the splits from the folder as it is.
        classes: read only these class folders, labelled in this order (`dataset.classes`); the others are
            neither checked nor listed. Defaults to None: every class folder, in sorted order.
        samples_per_class: `dataset.samples_per_class`: a class folder with fewer pictures in the training
            split folder is an error before any file is decoded; defaults to None. (The subset itself is drawn
            after the split, by `cnnrun.data.subsets.per_class_sample`; a run's `stored_files` hold it already.)

    Returns:
        A `RawData`; `presplit` is True when the splits came from `stored_files`.
    """
    train_folder = folder_splits(root)["train"]
    names = chosen_classes(classes, class_folders(train_folder), f"the image folder {root}")
    if samples_per_class and stored_files is None:
        _enough_files(train_folder, names, samples_per_class)
    report = check_image_folder(root, mode, classes=names)
    warnings: list[str] = []
    bad = report.bad_files
    if bad:
        first = first_few([f"{b.path}: {b.reason}" for b in bad])
        if on_bad_file == "error":
            raise UserError(f"{key}: {len(bad)} file(s) in {root} cannot be read: {first}; remove or fix them, "
                            f"or set dataset.on_bad_file: skip (see `cnnrun data check {root}`)")
        warnings.append(f"{key}: {len(bad)} bad file(s) left out ({first}); the full list goes to the run's "
                        f"bad_files.json")
    warnings += [f"{folder}: no usable image in this class folder" for folder in report.empty_classes]
    warnings += report.notes
    if cache == "auto":
        decoded = report.num_images * size[0] * size[1] * CHANNELS[mode]
        cache = "memory" if decoded <= MEMORY_CACHE_LIMIT else "none"
    cache_dir = disk_cache_dir() if cache == "disk" else None
    if stored_files is None:
        listed = _drawn(report, seed)
    else:
        listed = _recorded(report, root, stored_files, warnings, sampled=bool(samples_per_class))
    converted = {k: v for classes in report.splits.values() for entry in classes.values()
                 for k, v in entry.converted.items()}
    loaded = {split: FileExamples(paths, labels, size, CHANNELS[mode], converted, cache, cache_dir)
              for split, (paths, labels) in listed.items()}
    return RawData(loaded["train"], loaded.get("test"), report.class_names, loaded.get("validation"),
                   bad_files=tuple(b.to_dict() for b in bad), warnings=tuple(warnings), root=root,
                   presplit=stored_files is not None)


def _drawn(report: FolderReport, seed: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each split folder's good files with their labels, in an order drawn with `seed`."""
    listed = {}
    for split, classes in report.splits.items():
        paths = [str(p) for entry in classes.values() for p in entry.good]
        if not paths:
            raise UserError(f"{report.folders[split]}: no readable images ({suffix_list()}) in its class folders")
        labels = np.asarray([label for label, entry in enumerate(classes.values()) for _ in entry.good], np.int64)
        order = np.random.default_rng(seed).permutation(len(paths))
        listed[split] = ([paths[i] for i in order], labels[order])
    return listed


def _enough_files(train_folder: Path, names: list[str], count: int) -> None:
    """A UserError when a class folder of the training split holds fewer than `count` pictures (not decoded)."""
    for name in names:
        found = sum(1 for path in (train_folder / name).iterdir() if is_image_file(path))
        if found < count:
            raise UserError(f"dataset.samples_per_class: {count}, but class '{name}' has only {found} pictures in "
                            f"{train_folder / name}")


def _recorded(report: FolderReport, root: Path, stored: dict[str, Any], warnings: list[str],
              sampled: bool = False) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each split of a run's recorded files that is still readable, with the label its class folder gives.

    Adds to `warnings` the count of good files in the folder that no split records (ignored) and of recorded
    files that are gone or unreadable now (left out, the first few named). When the run `sampled` its training
    pictures (`samples_per_class`), the training split folder's files outside the splits are the ones the subset
    left out, not new ones: they are not counted.
    """
    _check_recorded(stored)
    good = {str(p): p for classes in report.splits.values() for entry in classes.values() for p in entry.good}
    label_of = {name: i for i, name in enumerate(report.class_names)}
    listed, recorded, gone = {}, set(), []
    for split in SPLIT_NAMES:
        if stored.get(split) is None:
            continue
        paths = []
        for relative in stored[split]:
            path = str(root / relative)
            recorded.add(path)
            if path in good and good[path].parent.name in label_of:
                paths.append(path)
            else:
                gone.append(relative)
        if not paths:
            raise UserError(f"{root}: none of the {len(stored[split])} file(s) the run recorded in its {split} "
                            f"split (splits.json) is readable there now; put them back, or train a new run")
        listed[split] = (paths, np.asarray([label_of[Path(p).parent.name] for p in paths], np.int64))
    if "train" not in listed:
        raise UserError(f"splits.json: no train split recorded for {root}")
    left_out = {str(p) for entry in report.splits["train"].values() for p in entry.good} if sampled else set()
    new = len(set(good) - recorded - left_out)
    if new:
        warnings.append(f"{new} new file(s) in {root} not in the run's splits, ignored")
    if gone:
        warnings.append(f"{len(gone)} file(s) of the run's splits missing or unreadable in {root}, left out: "
                        f"{first_few(gone)}")
    return listed


def _check_recorded(stored: Any) -> None:
    """A UserError unless `stored` has the shape `Splits.files()` gives (lists of relative paths per split)."""
    def listed(paths: Any) -> bool:
        return paths is None or (isinstance(paths, list) and all(isinstance(p, str) for p in paths))

    shaped = isinstance(stored, dict) and all(listed(stored.get(split)) for split in SPLIT_NAMES)
    if not shaped:
        raise UserError("splits.json: not a cnnrun splits file (it should map train, validation and test to lists "
                        "of paths relative to the dataset folder)")


def disk_cache_dir() -> str:
    """A temporary folder for `cache: disk`, removed when the process ends."""
    folder = tempfile.mkdtemp(prefix="cnnrun-cache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
