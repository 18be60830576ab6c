"""The run folder: create it, find it again, hold it, read and write its files.

A run folder is `<output_dir>/<name>/<YYYYMMDD-HHMMSS>/` and is the single source of truth for a run. Its file
names and their schemas are `cnnrun.run_folder.files`; `Run` is the only way in, typed: `run.read_state()`,
`run.read_history()`, `run.dataset_info()`, `run.write_scores(...)`, `run.checkpoint("best")`, ... Every write
goes to a file beside the target, then `os.replace` (`cnnrun.atomic`), so a run killed at any moment leaves only
complete files. One process at a time writes a run folder (`Run.hold`, `run.lock`).

Example:
>>> run = create_run("outputs", "quickstart")
>>> with run.hold():
...     run.update_state(status="running", epochs_completed=0, epochs_planned=5,
...                      best={"monitor": "val_loss", "value": None, "epoch": None})
"""

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cnnrun.atomic import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    checkpoint_info,
    os_error_reason,
)
from cnnrun.errors import UserError
from cnnrun.run_folder import files
from cnnrun.run_folder.files import STATUSES, Best, Meta, RunState, Scores, SplitFiles, Status, schema_error
from cnnrun.run_folder.lock import hold_folder

__all__ = ["Run", "RunState", "Best", "Meta", "Status", "STATUSES", "create_run", "open_run", "find_latest_run",
           "check_run_name", "is_run_folder", "runs_under"]


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a run folder (it holds a state.json)."""
    return (path / files.STATE).is_file()


def runs_under(folder: Path) -> list[Path]:
    """The run folders directly under `folder` (`outputs/NAME` holds `outputs/NAME/<time>`), sorted by path."""
    return sorted(state.parent for state in folder.glob(f"*/{files.STATE}"))


@dataclass
class Run:
    """One run folder and its files, read and written through their schemas (`cnnrun.run_folder.files`).

    Args:
        path: the run folder, `<output_dir>/<name>/<YYYYMMDD-HHMMSS>`.
        skipped: found as the latest run (`find_latest_run`): the other run folders skipped on the way because
            their meta.json is damaged, each `FOLDER (why)`, for the caller to mention. Defaults to none.
    """

    path: Path
    skipped: tuple[str, ...] = field(default=(), compare=False)

    # ------------------------------------------------------------------ where things are

    @property
    def checkpoints(self) -> Path:
        return self.path / files.CHECKPOINTS

    def checkpoint(self, which: str) -> Path:
        """`checkpoints/best.keras` or `checkpoints/last.keras`."""
        return self.checkpoints / files.checkpoint_name(which)

    def file(self, name: str) -> Path:
        """The file `name` of the run folder: one of `cnnrun.run_folder.files`' names."""
        return self.path / name

    @property
    def config_file(self) -> Path:
        return self.file(files.CONFIG)

    @property
    def history_plot(self) -> Path:
        return self.file(files.HISTORY_PLOT)

    @property
    def samples(self) -> Path:
        return self.file(files.SAMPLES)

    @property
    def eval_folder(self) -> Path:
        return self.file(files.EVAL)

    @property
    def export_folder(self) -> Path:
        return self.file(files.EXPORT)

    @property
    def tensorboard_folder(self) -> Path:
        return self.file(files.TENSORBOARD)

    def has(self, name: str) -> bool:
        return self.file(name).is_file()

    # ------------------------------------------------------------------ JSON files

    def read_json(self, name: str) -> Any:
        """The JSON file `name` in the run folder; missing or damaged is a one-line UserError."""
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise UserError(f"{path}: missing; is {self.path} a cnnrun run folder?") from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: damaged JSON ({e})") from e
        except OSError as e:
            raise UserError(f"{path}: cannot read ({os_error_reason(e)})") from e

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.file(name), obj)

    def _read_checked(self, name: str, schema: Any, what: str) -> Any:
        data = self.read_json(name)
        try:
            return schema.model_validate(data)
        except ValidationError as e:
            raise schema_error(self.file(name), data, e, what) from e

    # ------------------------------------------------------------------ state.json

    def read_state(self) -> RunState:
        """`state.json`, checked against `RunState`: anything else is a one-line UserError naming the file."""
        return self._read_checked(files.STATE, RunState, "a cnnrun run state")

    def update_state(self, **changes: Any) -> RunState:
        """Merge `changes` into state.json and write it back whole; return the new state.

        The state on disk is read and checked first, so a damaged state.json is reported before anything is
        written. A state.json that does not exist yet is created from `changes` alone (they must then hold
        `status` and `epochs_planned`). Changes that make an invalid state (a key `RunState` does not have
        included) are a bug in the caller: pydantic's ValidationError is raised and nothing is written.
        """
        old = self.read_state().model_dump() if self.has(files.STATE) else {}
        state = RunState.model_validate({**old, **changes})
        self.write_json(files.STATE, state.model_dump())
        return state

    def recorded_best(self) -> dict[str, Any] | None:
        """What `checkpoints/best.keras` holds, `{"monitor", "value", "epoch"}`, as the files on disk say.

        The checkpoint's own record (`atomic_save_model(..., info=...)`) wins over state.json's `best`, which
        lags behind it when a process dies between the two writes. None when neither says.
        """
        info = checkpoint_info(self.checkpoint("best"))
        if info is not None and {"monitor", "value", "epoch"} <= info.keys():
            return {key: info[key] for key in ("monitor", "value", "epoch")}
        state = self.read_state()
        return state.best.model_dump() if state.best is not None else None

    # ------------------------------------------------------------------ the other files

    def read_meta(self) -> Meta | None:
        """`meta.json` checked against `Meta`; None when the run has none yet (killed before writing it)."""
        return self._read_checked(files.META, Meta, "a cnnrun run's meta") if self.has(files.META) else None

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write `meta.json` (checked against `Meta` first: a key it does not have is a bug in the caller)."""
        self.write_json(files.META, Meta.model_validate(meta).to_dict())

    def dataset_info(self, required: bool = True):
        """`dataset.json` as a `cnnrun.data.DatasetInfo`; missing (when `required`) or of the wrong shape is a
        one-line UserError. None when it is missing and not `required`."""
        from pydantic import TypeAdapter

        from cnnrun.data import DatasetInfo

        if not required and not self.has(files.DATASET):
            return None
        data = self.read_json(files.DATASET)
        try:
            return TypeAdapter(DatasetInfo).validate_python(data)
        except ValidationError as e:
            raise schema_error(self.file(files.DATASET), data, e, "a cnnrun dataset description") from e

    def write_dataset_info(self, info) -> None:
        self.write_json(files.DATASET, info.to_dict())

    def read_splits(self) -> dict[str, Any] | None:
        """`splits.json` (an image folder's or a table's files of each split), checked; None for arrays."""
        if not self.has(files.SPLITS):
            return None
        return self._read_checked(files.SPLITS, SplitFiles, "a cnnrun split record").to_dict()

    def write_splits(self, split_files: dict[str, Any]) -> None:
        self.write_json(files.SPLITS, SplitFiles.model_validate(split_files).to_dict())

    def write_bad_files(self, bad_files: list[dict[str, str]]) -> None:
        self.write_json(files.BAD_FILES, bad_files)

    def read_scores(self) -> dict[str, Any]:
        """`scores.json` (`{"best": {metric: value}, "last": {...}, "tta": [...]}`), checked; {} when not scored."""
        if not self.has(files.SCORES):
            return {}
        return self._read_checked(files.SCORES, Scores, "a cnnrun score record").to_dict()

    def write_scores(self, scores: dict[str, Any]) -> None:
        self.write_json(files.SCORES, Scores.model_validate(scores).to_dict())

    def read_thresholds(self) -> dict[str, Any]:
        """`thresholds.json` (several labels a picture), checked; {} when the run has none."""
        return self._read_checked(files.THRESHOLDS, files.Thresholds, "a cnnrun threshold record").model_dump(
            exclude_none=True) if self.has(files.THRESHOLDS) else {}

    def write_thresholds(self, record: dict[str, Any]) -> None:
        self.write_json(files.THRESHOLDS, files.Thresholds.model_validate(record).model_dump(exclude_none=True))

    def write_config(self, text: str) -> None:
        """Write `config.yaml` (the resolved experiment as YAML)."""
        atomic_write_text(self.config_file, text)

    def write_summary(self, lines: list[str]) -> None:
        """Write `summary.txt`, Keras' model summary, one line each."""
        atomic_write_text(self.file(files.SUMMARY), "\n".join(lines) + "\n")

    def parameters(self) -> int | None:
        """The model's parameters, as summary.txt counts them (`files.parameters_in`); None without one."""
        try:
            text = self.file(files.SUMMARY).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return files.parameters_in(text)

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """Write history.csv: one row per completed epoch, `epoch` first (then `phase`, with phases), then Keras'
        log keys."""
        atomic_write_csv(self.file(files.HISTORY), rows, files.history_columns(rows))

    def read_history(self) -> list[dict[str, Any]]:
        """history.csv's rows, one per finished epoch ([] before the first); damaged is a one-line UserError."""
        path = self.file(files.HISTORY)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except UnicodeDecodeError:
            raise UserError(f"{path}: damaged: not UTF-8 text") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read ({os_error_reason(e)})") from e
        return files.parse_history(path, text)

    def predictions_file(self, checkpoint: str, split: str) -> Path:
        """`eval/<checkpoint>_<split>_predictions.npz` (`files.predictions_name`)."""
        return self.file(files.predictions_name(checkpoint, split))

    def write_predictions(self, checkpoint: str, split: str, probabilities: Any, labels: Any) -> None:
        """Write a checkpoint's class probabilities for every picture of a split, and their true classes, whole or
        not at all: `eval/<checkpoint>_<split>_predictions.npz`, which the report reads without running a model.

        Args:
            checkpoint: `best` or `last`.
            split: `train`, `validation` or `test`.
            probabilities: N × classes (stored as float32), as `cnnrun.model.scoring.probabilities` gives them.
            labels: the N true classes (stored as int64).
        """
        atomic_write_bytes(self.predictions_file(checkpoint, split), files.predictions_bytes(probabilities, labels))

    def read_predictions(self, checkpoint: str, split: str) -> tuple[Any, Any] | None:
        """`(probabilities, labels)` of `eval/<checkpoint>_<split>_predictions.npz` (float32 N × classes, int64 N);
        None when the run has none. A damaged file is a one-line UserError naming it."""
        path = self.predictions_file(checkpoint, split)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise UserError(f"{path}: cannot read ({os_error_reason(e)})") from e
        return files.parse_predictions(path, data)

    # ------------------------------------------------------------------ the folder

    def check_writable(self, *subfolders: str) -> None:
        """Make sure files can be written in the run folder (and in each existing `subfolders`, e.g.
        `files.CHECKPOINTS`, `files.EVAL`) before any work starts; a one-line UserError naming the folder if not.

        It writes and removes a small file, so it answers for read-only mounts and for root alike.
        """
        for folder in (self.path, *(self.path / name for name in subfolders)):
            if folder is not self.path and not folder.is_dir():
                continue
            probe = folder / f".write-check.{os.getpid()}-{secrets.token_hex(4)}"
            try:
                fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                os.close(fd)
                probe.unlink()
            except OSError as e:
                raise UserError(f"{folder}: cannot write in the run folder ({os_error_reason(e)}); "
                                f"copy the run folder somewhere writable and use the copy") from e

    def copy(self, destination: Path) -> "Run":
        """A copy of the run folder at `destination`, without `run.lock` (for a process that works on a
        private copy, e.g. a cluster's process other than 0, and may then hold the copy itself)."""
        import shutil

        return Run(Path(shutil.copytree(self.path, destination, ignore=shutil.ignore_patterns(files.LOCK))))

    @contextlib.contextmanager
    def hold(self) -> Iterator["Run"]:
        """Hold the run folder for this process while the block runs (`run.lock`, see `cnnrun.run_folder.lock`).

        A second process gets a one-line UserError naming the holder's PID; a lock left by a process that no
        longer runs is taken over. The lock goes when the block ends, also on an exception or Ctrl-C.
        """
        with hold_folder(self.path):
            yield self


def check_run_name(name: str) -> str:
    """`name` if it is one folder name (the run's folder under the output folder), else a one-line UserError."""
    separators = {"/", os.sep, os.altsep} - {None}
    if name in ("", ".", "..") or "\0" in name or any(sep in name for sep in separators):
        raise UserError(f"--name / name: one folder name, got {name!r} (no '/', not '.' or '..', not empty)")
    return name


def create_run(output_dir: str | Path, name: str) -> Run:
    """Make a new run folder `<output_dir>/<name>/<YYYYMMDD-HHMMSS>[-N]/` and return it.

    Args:
        output_dir: the folder run folders go under (`output.dir`, `--output-dir`).
        name: the run's name (`--name`, or the experiment's name): one folder name.
    """
    parent = Path(output_dir) / check_run_name(name)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{parent}: cannot create the run folder ({os_error_reason(e)})") from e
    for suffix in ["", *(f"-{i}" for i in range(1, 1000))]:
        path = parent / f"{stamp}{suffix}"
        try:
            path.mkdir()
            (path / files.CHECKPOINTS).mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise UserError(f"{path}: cannot create the run folder ({os_error_reason(e)})") from e
        return Run(path)
    raise UserError(f"{parent}: too many runs started in the same second")


def find_latest_run(output_dir: str | Path = "outputs") -> Run:
    """The run under `output_dir` whose meta.json records the latest start time (not the folder's mtime).

    A run folder whose meta.json is damaged or of the wrong shape is skipped; the returned run's `skipped`
    names each and why (the CLI says it in one `note:` line).
    """
    runs, skipped = [], []
    for meta in Path(output_dir).glob(f"*/*/{files.META}"):
        try:
            runs.append((files.meta_started(meta), str(meta.parent)))
        except ValueError as e:
            skipped.append(f"{meta.parent} ({e})")
    if not runs:
        raise UserError(f"no runs under {output_dir}/; give a run folder, e.g. {output_dir}/<name>/<time>")
    return Run(Path(max(runs)[1]), tuple(skipped))


def open_run(path: str | Path | None, output_dir: str | Path = "outputs") -> Run:
    """The run folder at `path` (or the latest under `output_dir`), checked to hold a config and a valid state.

    Nothing is written; a folder that is not a complete run folder, or whose state.json is not a cnnrun run
    state, is a one-line UserError.
    """
    run = find_latest_run(output_dir) if path is None else Run(Path(path))
    if not run.path.is_dir():
        raise UserError(f"{run.path}: no such run folder")
    for name in (files.CONFIG, files.STATE):
        if not run.has(name):
            raise UserError(f"{run.file(name)}: missing; {run.path} is not a complete cnnrun run folder")
    run.read_state()
    return run
