"""Tables of picture files (`dataset.name: csv`): read the table, check every row and its file, list the splits.

A table is a CSV file with a header row: one row per picture, a column of paths (relative to the table's folder, or
absolute), a column of labels (the class names; with `label_mode: multi_label`, each row's several names separated
by `label_separator`, `cat;animal`), and optionally a column saying each row's split (`train`, `validation`,
`test`). `read_table` reads it without opening a picture and lists what is wrong with it, each
problem with its line in the file (the header is line 1; a quoted value over several lines counts them all).
`check_table` then decodes every picture as training will read it (`cnnrun.data.check.check_file`, in parallel):
a file missing, not a picture, or truncated is a bad file of that line. `cnnrun data check table.csv` shows the
report; training reads the table through `cnnrun.data.table_source`.

Example:
>>> report = check_table(Path("pets.csv"), "RGB")
>>> report.class_names, len(report.good), report.problems[:1]
(['cat', 'dog'], 1998, [(7, "empty label (column 'label')")])
"""

import csv
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cnnrun.data.check import BadFile, FileCheck, bomb_warnings_quiet, check_file, not_a_file
from cnnrun.data.folders import SPLIT_NAMES
from cnnrun.errors import UserError, did_you_mean

DEFAULT_SPLIT_COLUMN = "split"  # used when the table has it; another name the user sets must be a column


@dataclass(frozen=True)
class TableRow:
    """One row of a table: its line in the file, the picture's path (resolved), its label and its split; with
    several labels a picture (`label_mode: multi_label`), `names` holds them and `label` their cell's text."""

    line: int
    path: Path
    label: str
    split: str = "train"
    names: tuple[str, ...] = ()
    values: tuple[float, ...] = ()  # a number a target column (`label_mode: regression`)

    @property
    def label_names(self) -> tuple[str, ...]:
        """The row's label names: `names`, or its one `label`."""
        return self.names or (self.label,)


@dataclass
class TableReport:
    """What `read_table` (and `check_table`) found in a table.

    Args:
        table: the CSV file.
        rows: the rows with a path, a label and a split (their files not yet checked by `read_table`).
        problems: what is wrong with the table itself, `(line, what)`: a column missing, an empty path or label,
            a split value that is none of `train`, `validation`, `test`, a file listed twice, a label not among
            the classes asked for. Such rows are not in `rows`.
        split_column: the column that gave the splits, or None when every row is training data.
        good: the rows whose file decodes (`check_table`).
        bad: the rows whose file is missing or does not decode, each with the reason (`check_table`).
        sizes: `(height, width)` of each good row's picture, in `good`'s order.
        converted: PNG bytes, by path, of the pictures TensorFlow cannot decode as they are.
        notes: remarks on good files (very large pictures).
        targets: the columns of numbers (`label_mode: regression`), which stand for the classes; None: labels.
    """

    table: Path
    rows: list[TableRow]
    problems: list[tuple[int, str]] = field(default_factory=list)
    split_column: str | None = None
    good: list[TableRow] = field(default_factory=list)
    bad: list[tuple[TableRow, str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    converted: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    targets: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        """The distinct labels of the rows, sorted (each of a row's several labels counts); with numbers a picture,
        the target columns, in their order."""
        if self.targets is not None:
            return list(self.targets)
        return sorted({name for row in self.rows for name in row.label_names})

    @property
    def bad_files(self) -> list[BadFile]:
        """The bad rows as `BadFile`s, the reason beginning with the line (`line 7: no such file`)."""
        return [BadFile(row.path, f"line {row.line}: {reason}") for row, reason in self.bad]

    def line_problems(self) -> list[tuple[int, str]]:
        """Every problem, the table's and its files', `(line, what)` in line order."""
        return sorted(self.problems + [(row.line, f"{row.path}: {reason}") for row, reason in self.bad])


def _lines(table: Path):
    """`(line, values)` of each non-blank record of the CSV file; the line is where the record starts."""
    try:
        with table.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: the byte-order mark Excel writes
            reader = csv.reader(f)
            start = 1
            for values in reader:
                if any(value.strip() for value in values):
                    yield start, values
                start = reader.line_num + 1
    except FileNotFoundError as e:
        raise UserError(f"dataset.path: {table} not found (a CSV table of picture paths and labels)") from e
    except IsADirectoryError as e:
        raise UserError(f"dataset.path: {table} is a folder; give the CSV file (or use name: image_folder)") from e
    except UnicodeDecodeError as e:
        raise UserError(f"dataset.path: {table} is not UTF-8 text; save the table as CSV (UTF-8)") from e
    except csv.Error as e:
        raise UserError(f"dataset.path: {table} line {reader.line_num}: not readable as CSV ({e})") from e


def _column(header: list[str], name: str, what: str, problems: list[tuple[int, str]]) -> int | None:
    """The index of column `name`, or None with a problem on line 1 naming the columns there are."""
    if name in header:
        return header.index(name)
    problems.append((1, f"no column '{name}' ({what}); the header has {', '.join(map(repr, header))}: set "
                        f"dataset.{what.replace(' ', '_')} to one of them"))
    return None


def _label_problems(label: str, names: tuple[str, ...], column: str, classes: list[str] | None,
                    separator: str | None) -> list[str]:
    """What is wrong with a row's labels: an empty one, one not among `classes`."""
    if not label:
        return [f"empty label (column '{column}'); give each row its class name"
                + (f" (several separated by '{separator}')" if separator else "")]
    if separator and any(not name for name in names):
        return [f"empty label in '{label}' (column '{column}'): two '{separator}' in a row, or one at an end"]
    return [f"label '{name}' is not one of the classes{did_you_mean(name, classes or [])}: {', '.join(classes or [])}"
            for name in names if classes is not None and name not in classes]


def _numbers(cells: list[str], at: list[int], columns: list[str]) -> tuple[tuple[float, ...], list[str]]:
    """A row's numbers in its target columns, and what is wrong with them (an empty cell, not a finite number)."""
    values, wrong = [], []
    for index, column in zip(at, columns, strict=True):
        text = cells[index]
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):
            wrong.append(f"empty cell in column '{column}'; give each row a number there" if not text else
                         f"'{text}' in column '{column}' is not a number; give a number like 12.5")
        values.append(value)
    return tuple(values), wrong


def read_table(table: Path, path_column: str = "path", label_column: str = "label",
               split_column: str | None = DEFAULT_SPLIT_COLUMN, classes: list[str] | None = None,
               separator: str | None = None, targets: list[str] | None = None) -> TableReport:
    """Read a table's rows and list its problems, without opening a picture.

    Args:
        table: the CSV file.
        path_column: the column of picture paths; defaults to `path`.
        label_column: the column of labels; defaults to `label`.
        split_column: the column of splits, used when the table has it (a name other than `split` must be
            there); None ignores it. Defaults to `split`.
        classes: the labels the rows may have: any other is a problem (`cnnrun data check --classes`). Defaults
            to None: any label. (Training passes it with several labels a picture only: with one, there
            `dataset.classes` leaves the other rows out.)
        separator: several labels a picture, separated by it in the label column (`cat;animal`,
            `label_mode: multi_label`); None: one label a row. Defaults to None.
        targets: the columns of numbers (`label_mode: regression`), read instead of the label column: a missing
            column, an empty cell or a cell that is not a finite number is a problem. Defaults to None: labels.

    Raises:
        UserError: the file is missing, a folder, not UTF-8 text, not CSV, or has no header row.
    """
    records = _lines(table)
    first = next(records, None)
    if first is None:
        raise UserError(f"dataset.path: {table} is empty; it should begin with a header row naming its columns "
                        f"('{path_column}', '{label_column}')")
    header = [name.strip() for name in first[1]]
    problems: list[tuple[int, str]] = []
    path_at = _column(header, path_column, "path column", problems)
    if targets is None:
        label_at = _column(header, label_column, "label column", problems)
    else:
        target_at = [_column(header, name, "target columns", problems) for name in targets]
        label_at = None if None in target_at else 0
    split_at = None
    if split_column is not None and (split_column in header or split_column != DEFAULT_SPLIT_COLUMN):
        split_at = _column(header, split_column, "split column", problems)
    if path_at is None or label_at is None:
        return TableReport(table, [], problems, targets=targets)
    rows, seen = [], {}
    for line, values in records:
        cell = [value.strip() for value in values] + [""] * (len(header) - len(values))
        path, label = cell[path_at], cell[label_at]
        names = tuple(dict.fromkeys(name.strip() for name in label.split(separator))) if separator else ()
        split = cell[split_at].lower() if split_at is not None else "train"
        wrong = [what for what, is_wrong in (
            (f"empty path (column '{path_column}'); give each row a picture's path", not path),
            (f"split '{cell[split_at] if split_at is not None else ''}' should be train, validation or test "
             f"(column '{split_column}'){did_you_mean(split, SPLIT_NAMES)}", split not in SPLIT_NAMES)) if is_wrong]
        if targets is None:
            wrong += _label_problems(label, names or (label,), label_column, classes, separator)
        else:
            values, bad_numbers = _numbers(cell, target_at, targets)
            wrong += bad_numbers
            label = ";".join(cell[i] for i in target_at)
        resolved = table.parent / os.path.expanduser(path)
        if path and str(resolved) in seen:
            wrong.append(f"{path} is listed on line {seen[str(resolved)]} already (a picture is in one row)")
        if wrong:
            problems += [(line, what) for what in wrong]
            continue
        seen[str(resolved)] = line
        rows.append(TableRow(line, resolved, label, split, names, values if targets is not None else ()))
    if not rows and not problems:
        problems.append((1, "no rows below the header; list one picture a row"))
    return TableReport(table, rows, problems, header[split_at] if split_at is not None else None, targets=targets)


def _check_row(path: Path, mode: str | None) -> FileCheck:
    """`check_file` for a path a table names, which may be missing or not a file at all."""
    if not os.path.lexists(path):
        return FileCheck(None, "no such file")
    if path.is_dir():
        return FileCheck(None, "a folder, not a picture")
    reason = not_a_file(path)
    return FileCheck(None, reason) if reason is not None else check_file(path, mode)


def check_files(report: TableReport, rows: list[TableRow] | None = None, mode: str | None = None,
                workers: int | None = None) -> TableReport:
    """Decode the pictures of `rows` (default: the report's rows) in parallel; fill the report's `good`, `bad`,
    `sizes`, `converted` and `notes`, and return it.

    Args:
        report: a table's report (`read_table`).
        rows: the rows to check; defaults to None: all of `report.rows`.
        mode: the Pillow mode (L, RGB, RGBA) training reads the pictures in; None checks only.
        workers: threads; defaults to ThreadPoolExecutor's choice.
    """
    rows = report.rows if rows is None else rows
    with bomb_warnings_quiet(), ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4)) as pool:
        for row, (size, reason, converted, note) in zip(rows, pool.map(lambda r: _check_row(r.path, mode), rows),
                                                        strict=True):
            if reason is not None:
                report.bad.append((row, reason))
                continue
            report.good.append(row)
            report.sizes.append(size)
            if converted is not None:
                report.converted[str(row.path)] = converted
            if note is not None:
                report.notes.append(f"line {row.line}: {note}")
    return report


def check_table(table: Path, mode: str | None = None, path_column: str = "path", label_column: str = "label",
                split_column: str | None = DEFAULT_SPLIT_COLUMN, classes: list[str] | None = None,
                separator: str | None = None, targets: list[str] | None = None) -> TableReport:
    """Read a table and decode every picture it lists: `cnnrun data check table.csv`.

    Args: as `read_table`, and `mode` as `check_files` (defaults to None: check only).
    """
    return check_files(read_table(Path(table), path_column, label_column, split_column, classes, separator,
                                  targets), mode=mode)


def first_problem(report: TableReport, key: str = "dataset.path") -> UserError | None:
    """The one-line error for a table with problems (the first, and how many more); None for a table without."""
    problems = sorted(report.problems)
    if not problems:
        return None
    line, what = problems[0]
    targets = f" --targets {','.join(report.targets)}" if report.targets else ""  # numbers: their columns
    more = f" (and {len(problems) - 1} more problem(s): `cnnrun data check {report.table}{targets}` lists them)" \
        if len(problems) > 1 else ""
    return UserError(f"{key}: {report.table} line {line}: {what}{more}")
