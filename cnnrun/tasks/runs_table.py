"""`cnnrun runs`: one row per run folder under a folder, filtered, sorted, as a table, CSV or JSON.

Only the run folders' small files are read (state.json, meta.json, scores.json, summary.txt, and config.yaml
when a `--where` or `--sort` key is a config key), never a checkpoint and never TensorFlow, so a thousand runs
list in about a second. A folder whose files cannot be read is one row with status `damaged` and the reason in
`problem`; it never stops the listing.

Example:
>>> rows = select(list_runs(Path("outputs")), where=["status=completed"], sort="-best")
>>> rows[0]["run"], rows[0]["best"]
('quickstart/20261127-162548', 0.875)
"""

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cnnrun.config.load import read_yaml
from cnnrun.errors import UserError, did_you_mean
from cnnrun.run_folder.files import CONFIG, MARKERS, STATE
from cnnrun.run_folder.folder import Run, RunState
from cnnrun.run_folder.lock import held

COLUMNS = ("run", "name", "started", "status", "epochs", "planned", "monitor", "best", "test_best", "test_last",
           "params", "fit_seconds", "backend", "problem")
"""The columns of a row, in order: the run folder (relative to the folder listed), the run's name, its start
(ISO time), status, epochs done and planned, the monitored value and its best, the test accuracy (the main
metric; a regression run's MAE, which the text table names) of best.keras and last.keras, the model's
parameters, the time in Keras' fit, the Keras backend, and what is wrong with a damaged folder."""


GONE = "stopped (process gone)"  # the status of a run that says `running` though no process holds it


def find_run_folders(root: Path) -> list[Path]:
    """Every run folder under `root` (or `root` itself when it is one), sorted by path.

    A run folder is a folder holding state.json, meta.json or checkpoints/; the search does not go into one, so
    a sweep's folder with its trials beside it, or a folder of folders of runs, are found at any depth.
    """
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise UserError(f"{root}: {what}; give a folder of runs, e.g. outputs")
    found = []
    for folder, subfolders, files in os.walk(root):
        if any(marker in files or marker in subfolders for marker in MARKERS):
            found.append(Path(folder))
            subfolders.clear()
        else:
            subfolders.sort()
    return sorted(found)


def _test_metric(scores: dict[str, Any], checkpoint: str) -> tuple[str | None, float | None]:
    """The name and value of the test accuracy (else of the first metric that is not the loss: a regression run's
    `mae`) of `checkpoint` in scores.json; `(None, None)` when there is none."""
    metrics = scores.get(checkpoint) or {}
    names = ["accuracy"] + [k for k in metrics if k != "loss"]
    name = next((k for k in names if k in metrics), None)
    return name, None if name is None else metrics[name]


def _state(run: Run) -> dict[str, Any]:
    """state.json checked against `RunState`; a status this version does not know (a newer one's, say `pruned`)
    is shown as it is. A damaged state is a UserError naming the file."""
    data = run.read_json(STATE)
    try:
        return RunState.model_validate(data).model_dump()
    except ValidationError as e:
        only_status = all(error["loc"] == ("status",) for error in e.errors())
        if only_status and isinstance(data, dict) and isinstance(data.get("status"), str) and data["status"]:
            return RunState.model_validate({**data, "status": "running"}).model_dump() | {"status": data["status"]}
        return run.read_state().model_dump()  # raises the one-line error


def read_row(path: Path, root: Path) -> dict[str, Any]:
    """One run folder as a row of `COLUMNS`; a folder that cannot be read is a row with status `damaged`.

    A run whose state says `running` but that no live process holds (its `run.lock` is gone, or names a process
    that no longer runs) was killed: its status is `stopped (process gone)`, and `cnnrun resume` goes on with it.
    """
    run = Run(path)
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(run=path.relative_to(root).as_posix() if path != root else path.name, name=path.parent.name,
               _path=path)
    try:
        meta = run.read_meta()
        if meta is not None:
            row.update(started=meta.started, backend=meta.distribution.get("backend"))
        state = _state(run)
        best = state.get("best") or {}
        row.update(status=state["status"], epochs=state["epochs_completed"], planned=state["epochs_planned"],
                   monitor=best.get("monitor"), best=best.get("value"), fit_seconds=state["fit_seconds"])
        if row["status"] == "running" and not held(path):
            row["status"] = GONE
        scores = run.read_scores()
        (metric, best), (_, last) = _test_metric(scores, "best"), _test_metric(scores, "last")
        row.update(test_best=best, test_last=last, _test_metric=metric)
        row["params"] = run.parameters()
    except UserError as e:
        row.update(status="damaged", problem=str(e).replace(f"{path}{os.sep}", ""))
    return row


def list_runs(root: Path) -> list[dict[str, Any]]:
    """A row (`COLUMNS`) for every run folder under `root`, oldest start first (undated ones last)."""
    return by_start([read_row(path, root) for path in find_run_folders(root)])


def by_start(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows oldest start first, undated ones last, then by folder."""
    return sorted(rows, key=lambda row: (row["started"] is None, row["started"] or "", row["run"]))


def config_value(config: Any, key: str) -> tuple[bool, Any]:
    """`(found, value)` of the dotted `key` (`compile.optimizer.learning_rate`) in a run's config.

    A mapping with a `name` (an optimizer, a loss) stands for its name, so `compile.optimizer` is `sgd`.
    """
    value = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    if isinstance(value, dict) and "name" in value:
        value = value["name"]
    return True, value


def _config_rows(rows: list[dict[str, Any]], keys: list[str]) -> None:
    """Add the config `keys` (those that are not columns) to every row, checking that each is some run's key."""

    wanted = [key for key in dict.fromkeys(keys) if key not in COLUMNS]
    if not wanted:
        return
    seen = dict.fromkeys(wanted, False)
    for row in rows:
        try:
            config = read_yaml(row["_path"] / CONFIG, c_parser=True)
        except UserError:
            config = None
        for key in wanted:
            found, value = config_value(config, key)
            seen[key] |= found
            row[key] = value if found else None
    for key, found in seen.items():
        if not found and rows:
            raise UserError(f"--where / --sort: {key!r} is not a column ({', '.join(COLUMNS)}) nor a config key "
                            f"of any run (a dotted path such as train.epochs){did_you_mean(key, COLUMNS)}")


def _matches(value: Any, wanted: str) -> bool:
    """Whether a value equals the text given in `--where` (numbers as numbers: 0.002 = 2e-3, 2 = 2.0)."""
    if value is None:
        return wanted in ("", "null", "none", "None")
    text = json.dumps(value) if isinstance(value, bool | list | dict) else str(value)
    if text == wanted:
        return True
    try:
        return float(text) == float(wanted)
    except ValueError:
        return False


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return 1, str(value)
    if isinstance(value, int | float):
        return 0, value
    return 1, json.dumps(value) if isinstance(value, list | dict) else str(value)


def select(rows: list[dict[str, Any]], where: list[str] | None = None, sort: str | None = None) -> list[dict[str, Any]]:
    """The rows that match every `--where KEY=VALUE`, sorted by `--sort KEY` (`-KEY`: descending).

    A key is a column (`COLUMNS`) or a dotted config key (`compile.optimizer=sgd`, `train.epochs=2`); a config
    key becomes a column of its own. Rows without a value for the sort key come last either way.

    Args:
        rows: rows of `list_runs` (each holds its folder as `_path`, where config keys are read).
        where: `KEY=VALUE` conditions, all of which must hold. Defaults to None (every row).
        sort: the column to sort by, `-` first for descending. Defaults to None (by start).
    """
    conditions = []
    for item in where or []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UserError(f"--where {item!r}: write KEY=VALUE, e.g. --where status=completed or "
                            f"--where compile.optimizer=sgd")
        conditions.append((key.strip(), value.strip()))
    descending = bool(sort and sort.startswith("-"))
    sort_key = sort.lstrip("-").strip() if sort else None
    if sort is not None and not sort_key:
        raise UserError(f"--sort {sort!r}: give a column or a config key, e.g. --sort -best")
    _config_rows(rows, [key for key, _ in conditions] + ([sort_key] if sort_key else []))
    kept = [row for row in rows if all(_matches(row[key], value) for key, value in conditions)]
    if sort_key:
        present = sorted((row for row in kept if row[sort_key] is not None), key=lambda row: _sort_key(row[sort_key]),
                         reverse=descending)
        kept = present + [row for row in kept if row[sort_key] is None]
    return kept


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """`COLUMNS`, then the config keys `select` added (in the order asked)."""
    extra = [key for key in (rows[0] if rows else {}) if key not in COLUMNS and not key.startswith("_")]
    return [*COLUMNS, *extra]


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text with a header (`columns_of`); a missing value is an empty field."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns_of(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return out.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    """The rows as a JSON list of objects (`columns_of`); a missing value is null."""
    columns = columns_of(rows)
    return json.dumps([{key: row.get(key) for key in columns} for row in rows], indent=2) + "\n"


def _shown(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return json.dumps(value) if isinstance(value, list | dict | bool) else str(value)


def _scored(row: dict[str, Any], column: str) -> str:
    """A test score as the table shows it: the accuracy alone, another metric with its name (`mae 2.215`)."""
    metric = row.get("_test_metric")
    shown = _shown(row[column])
    return shown if metric in (None, "accuracy") or row[column] is None else f"{metric} {shown}"


def table_text(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table: the run, start, status, epochs done/planned, best monitored value, test
    accuracy of best.keras and last.keras, parameters, fit time, backend, then any config keys and problems.

    Plain text, not a rich table: rich measures every cell, which takes seconds for a thousand runs.
    """
    extra = columns_of(rows)[len(COLUMNS):]
    header = ["run", "started", "status", "epochs", "best", "test best", "test last", "params", "fit time",
              "backend", *extra] + (["problem"] if any(row["problem"] for row in rows) else [])
    right = {"epochs", "test best", "test last", "params", "fit time"}
    lines = [header]
    for row in rows:
        cells = [row["run"], (row["started"] or "—")[:19].replace("T", " "), str(row["status"]),
                 f"{_shown(row['epochs'])}/{_shown(row['planned'])}" if row["planned"] else "—",
                 f"{row['monitor']} {_shown(row['best'])}" if row["monitor"] else "—",
                 _scored(row, "test_best"), _scored(row, "test_last"),
                 f"{row['params']:,}" if row["params"] is not None else "—",
                 f"{row['fit_seconds']:.1f} s" if row["fit_seconds"] is not None else "—",
                 _shown(row["backend"]), *(_shown(row[key]) for key in extra)]
        lines.append(cells + ([row["problem"] or ""] if len(header) > len(cells) else []))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    lines.insert(1, ["─" * width for width in widths])

    def joined(cells: list[str]) -> str:
        return "  ".join(cell.rjust(width) if name in right else cell.ljust(width)
                         for cell, width, name in zip(cells, widths, header, strict=True)).rstrip()

    return "".join(joined(line) + "\n" for line in lines)
