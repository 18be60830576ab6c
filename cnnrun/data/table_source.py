"""A table's pictures for training (`dataset.name: csv`): checked, split as the table says, streaming from disk.

A new run reads the table (`cnnrun.data.csv_table`): a problem in the table itself (a column missing, an empty
label, a bad split value) stops it with one line naming the table and the line, before any picture is decoded.
Then every picture of the chosen classes is decoded once: a missing or broken file is left out with a warning
(`on_bad_file: skip`, listed in the run's `bad_files.json` with its line) or stops the run (`error`). The rows of
each split (from the split column; without one, all rows are training data) are put in a seeded order, as an
image folder's files are, and `cnnrun.data.split` holds out validation and test. With several labels a picture
(`label_mode: multi_label`) each split's labels are multi-hot rows (N × classes of 0/1), and a label outside
`dataset.classes` is a problem of its line, not a row left out.

A run that goes on (resume) or is judged (evaluate) passes its `splits.json` (`Splits.files()`), which for a table
records each file's label beside its path: each split is rebuilt from those, in that order, whatever the table
says now. Recorded files that are gone or unreadable are left out with a warning.

Example:
>>> raw = load_table(CsvDataset(name="csv", path="pets.csv"), seed=7)
>>> raw.class_names, len(raw.train), raw.validation is None
(['cat', 'dog'], 2000, True)
"""

from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.config.dataset import CsvDataset, pictures_of, targets_of
from cnnrun.data.csv_table import TableReport, TableRow, check_files, first_problem, read_table
from cnnrun.data.examples import FileExamples, RawData
from cnnrun.data.folders import CHANNELS, PIL_MODES, SPLIT_NAMES
from cnnrun.data.image_folder import MEMORY_CACHE_LIMIT, disk_cache_dir, first_few
from cnnrun.data.subsets import chosen_classes
from cnnrun.errors import UserError


def _size(config: CsvDataset) -> tuple[int, int]:
    size = config.image_size
    return (size, size) if isinstance(size, int) else size


def _read(config: CsvDataset) -> TableReport:
    """The table's rows; a UserError naming the first problem's line when it has any. With several labels a
    picture, each is one of `dataset.classes` (when given) or the row is a problem."""
    multi = config.label_mode == "multi_label"
    report = read_table(Path(config.path), config.path_column, config.label_column, config.split_column,
                        config.classes if multi else None, config.label_separator if multi else None,
                        targets_of(config))
    error = first_problem(report)
    if error is not None:
        raise error
    return report


def table_shape_and_names(config: CsvDataset) -> tuple[tuple[int, ...], list[str]]:
    """The input shape and the table's class names (its labels, sorted), without decoding a picture."""
    height, width = _size(config)
    return (height, width, CHANNELS[PIL_MODES[config.color_mode]]), _read(config).class_names


def load_table(config: CsvDataset, seed: int, stored_files: dict[str, Any] | None = None) -> RawData:
    """A csv dataset's pictures of the chosen classes, checked, each split in a seeded order (or as recorded).

    Args:
        config: the `dataset:` section.
        seed: the seed of each split's order.
        stored_files: a run's recorded splits (`Splits.files()`, with `labels`): each split is exactly those
            files with those labels, in that order; None reads the table as it is.

    Returns:
        A `RawData` whose `root` is the table's folder and `table` the table; `presplit` when recorded.
    """
    mode = PIL_MODES[config.color_mode]
    table = Path(config.path)
    if stored_files is not None:
        names, rows = _recorded(config, table, stored_files)
        report = TableReport(table, rows)
    else:
        report = _read(config)
        if report.targets is not None:  # numbers a picture: the target columns stand for the classes
            names, rows = report.targets, report.rows
        else:
            names = chosen_classes(config.classes, report.class_names, pictures_of(config))
            rows = [row for row in report.rows if set(row.label_names) <= set(names)]
    check_files(report, rows, mode)
    warnings = _bad_file_warnings(report, config.on_bad_file, stored_files is not None)
    warnings += report.notes
    by_split = {split: [row for row in report.good if row.split == split] for split in SPLIT_NAMES}
    if stored_files is not None:
        for split in SPLIT_NAMES:
            if stored_files.get(split) and not by_split[split]:
                raise UserError(f"{table}: none of the {len(stored_files[split])} file(s) the run recorded in its "
                                f"{split} split (splits.json) is readable now; put them back, or train a new run")
    if not by_split["train"]:
        where = "the run's splits.json" if stored_files is not None else str(table)
        raise UserError(f"dataset.path: {where}: no readable training picture"
                        + (" (every row's split is validation or test)" if report.split_column and not
                           [r for r in rows if r.split == "train"] else ""))
    if stored_files is None and config.label_mode != "regression":
        found = {name for row in by_split["train"] for name in row.label_names}
        warnings += [f"dataset.path: {table}: no readable training picture of class '{name}'" for name in names
                     if name not in found]
    cache = config.cache
    if cache == "auto":
        height, width = _size(config)
        cache = "memory" if len(report.good) * height * width * CHANNELS[mode] <= MEMORY_CACHE_LIMIT else "none"
    cache_dir = disk_cache_dir() if cache == "disk" else None
    label_of = {name: i for i, name in enumerate(names)}
    loaded = {}
    for split, split_rows in by_split.items():
        if not split_rows:
            continue
        if stored_files is None:  # a new run: the seeded order; a recorded one keeps its order
            split_rows = [split_rows[i] for i in np.random.default_rng(seed).permutation(len(split_rows))]
        loaded[split] = FileExamples([str(row.path) for row in split_rows],
                                     _labels(split_rows, label_of, config.label_mode),
                                     _size(config), CHANNELS[mode], report.converted, cache, cache_dir)
    bad_files = tuple({"path": str(row.path), "reason": reason, **({"line": row.line} if row.line else {})}
                      for row, reason in report.bad)
    return RawData(loaded["train"], loaded.get("test"), names, loaded.get("validation"), bad_files=bad_files,
                   warnings=tuple(warnings), root=table.parent, presplit=stored_files is not None, table=table)


def _labels(rows: list[TableRow], label_of: dict[str, int], label_mode: str) -> np.ndarray:
    """The rows' class numbers, or (several labels a picture) their multi-hot rows, N × classes of 0/1 float32, or
    (numbers a picture) their numbers, N × targets float64 (as written)."""
    if label_mode == "regression":
        return np.asarray([row.values for row in rows], np.float64).reshape(len(rows), len(label_of))
    if label_mode != "multi_label":
        return np.asarray([label_of[row.label] for row in rows], np.int64)
    hot = np.zeros((len(rows), len(label_of)), np.float32)
    for i, row in enumerate(rows):
        hot[i, [label_of[name] for name in row.label_names]] = 1
    return hot


def _bad_file_warnings(report: TableReport, on_bad_file: str, recorded: bool) -> list[str]:
    """The warning about the rows whose file is missing or broken, or the UserError of `on_bad_file: error`."""
    if not report.bad:
        return []
    named = [f"line {row.line}: {row.path}: {reason}" if row.line else f"{row.path}: {reason}"
             for row, reason in report.bad]
    if recorded:
        return [f"{len(named)} file(s) of the run's splits missing or unreadable, left out: {first_few(named)}"]
    if on_bad_file == "error":
        raise UserError(f"dataset.path: {report.table} {named[0]}" + (
            f" (and {len(named) - 1} more bad file(s))" if len(named) > 1 else "")
            + "; fix or remove the row, or set dataset.on_bad_file: skip (see `cnnrun data check "
            f"{report.table}`)")
    return [f"dataset.path: {len(named)} bad file(s) of {report.table} left out ({first_few(named)}); the full list "
            f"goes to the run's bad_files.json"]


def _recorded(config: CsvDataset, table: Path, stored: dict[str, Any]) -> tuple[list[str], list[TableRow]]:
    """The class names and the rows of a run's splits.json (paths relative to its root, or absolute, and the
    label of each); line 0 stands for "no line" (the table is not read)."""
    labels = stored.get("labels") if isinstance(stored, dict) else None
    shaped = isinstance(labels, dict) and all(
        isinstance(stored.get(split), list) == isinstance(labels.get(split), list)
        and len(stored.get(split) or []) == len(labels.get(split) or []) for split in SPLIT_NAMES)
    if not shaped or not isinstance(stored.get("root"), str):
        raise UserError(f"splits.json: not the record of a csv run (it should list, for each split, the files and "
                        f"their labels); train a new run on {table}")
    def row(path: str, label: str | list[str], split: str) -> TableRow:  # a list: several labels a picture
        return TableRow(0, root / path, label, split) if isinstance(label, str) else \
            TableRow(0, root / path, config.label_separator.join(label), split, tuple(label))

    root = Path(stored["root"])
    targets = targets_of(config)
    if targets is not None:  # numbers a picture: a list of numbers a file
        rows = [TableRow(0, root / path, "", split, values=_recorded_numbers(values, targets))
                for split in SPLIT_NAMES
                for path, values in zip(stored.get(split) or [], labels.get(split) or [], strict=True)]
        return targets, rows
    rows = [row(path, label, split) for split in SPLIT_NAMES
            for path, label in zip(stored.get(split) or [], labels.get(split) or [], strict=True)]
    recorded = sorted({name for r in rows for name in r.label_names})
    names = chosen_classes(config.classes, recorded, f"the run's splits of {table}")
    return names, [r for r in rows if set(r.label_names) <= set(names)]



def _recorded_numbers(values: Any, targets: list[str]) -> tuple[float, ...]:
    """A file's recorded numbers (splits.json), one a target column; a UserError for anything else."""
    if not isinstance(values, list) or len(values) != len(targets) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise UserError(f"splits.json: {values!r} is not a list of {len(targets)} number(s), one for each of "
                        f"{', '.join(targets)}; train a new run")
    return tuple(float(v) for v in values)
