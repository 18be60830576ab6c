"""The run folder: create it, find it again, hold it, read and write its files, load its checkpoints.

A run folder is `<output_dir>/<name>/<YYYYMMDD-HHMMSS>/` and is the single source of truth for a run (see the
README's "Run folder" section for its files). Every write goes to a file beside the target, then `os.replace`
(`cnnrun.atomic`), so a run killed at any moment leaves only complete files. One process at a time writes a run
folder (`Run.hold`, `run.lock`).

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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnnrun.atomic import atomic_write_csv, atomic_write_json, checkpoint_info, os_error_reason
from cnnrun.errors import UserError
from cnnrun.run_folder.lock import LOCK_NAME, hold_folder

Status = Literal["running", "completed", "stopped_early", "interrupted", "failed", "pruned"]
STATUSES: tuple[str, ...] = get_args(Status)


class Best(BaseModel):
    """What `checkpoints/best.keras` holds: the monitored value and the epoch it was reached at."""

    model_config = ConfigDict(strict=True, extra="forbid")

    monitor: str = Field(description="The logged value that decides best.keras, e.g. `val_loss`.")
    value: float | None = Field(None, description="Its best value so far; None before the first epoch.")
    epoch: int | None = Field(None, ge=1, description="The epoch (from 1) that reached it; None before.")


class RunState(BaseModel):
    """`state.json`: how far a run got and what resume needs to go on exactly.

    Keys the Trainer adds beyond these (e.g. where augmentation runs, whether the test split was scored, the
    phase of `train.phases` training is in) are kept as they are.
    """

    model_config = ConfigDict(strict=True, extra="allow")

    status: Status = Field(description="running, completed, stopped_early, interrupted, failed, or pruned (a "
                         "sweep stopped the trial).")
    epochs_completed: int = Field(0, ge=0, description="Epochs finished and recorded.")
    epochs_planned: int = Field(ge=1, description="The total number of epochs asked for.")
    best: Best | None = Field(None, description="What best.keras holds.")
    callbacks: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Saved state of the stateful Keras callbacks, by config name.")
    fit_seconds: float = Field(0.0, ge=0, description="Time spent in Keras' fit, over every start.")
    ended: str | None = Field(None, description="When the last process working on the run ended (ISO time).")


def _not_a_state(path: Path, data: Any, error: ValidationError) -> UserError:
    shown = json.dumps(data)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the whole file"
    more = f"; {error.error_count() - 1} more" if error.error_count() > 1 else ""
    return UserError(f"{path}: {shown} is not a cnnrun run state ({where}: {first['msg']}{more})")


@dataclass
class Run:
    """One run folder and its files.

    Args:
        path: the run folder, `<output_dir>/<name>/<YYYYMMDD-HHMMSS>`.
    """

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def file(self, name: str) -> Path:
        return self.path / name

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

    def read_state(self) -> RunState:
        """`state.json`, checked against `RunState`: anything else is a one-line UserError naming the file."""
        data = self.read_json("state.json")
        try:
            return RunState.model_validate(data)
        except ValidationError as e:
            raise _not_a_state(self.file("state.json"), data, e) from e

    def update_state(self, **changes: Any) -> RunState:
        """Merge `changes` into state.json and write it back whole; return the new state.

        The state on disk is read and checked first, so a damaged state.json is reported before anything is
        written. A state.json that does not exist yet is created from `changes` alone (they must then hold
        `status` and `epochs_planned`). Changes that make an invalid state are a bug in the caller: pydantic's
        ValidationError is raised and nothing is written.
        """
        old = self.read_state().model_dump() if self.file("state.json").exists() else {}
        state = RunState.model_validate({**old, **changes})
        self.write_json("state.json", state.model_dump())
        return state

    def recorded_best(self) -> dict[str, Any] | None:
        """What `checkpoints/best.keras` holds, `{"monitor", "value", "epoch"}`, as the files on disk say.

        The checkpoint's own record (`atomic_save_model(..., info=...)`) wins over state.json's `best`, which
        lags behind it when a process dies between the two writes. None when neither says.
        """
        info = checkpoint_info(self.checkpoints / "best.keras")
        if info is not None and {"monitor", "value", "epoch"} <= info.keys():
            return {key: info[key] for key in ("monitor", "value", "epoch")}
        state = self.read_state()
        return state.best.model_dump() if state.best is not None else None

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """Write history.csv: one row per completed epoch, `epoch` first (then `phase`, with phases), then Keras'
        log keys."""
        columns = ["epoch"]
        for row in rows:
            columns += [k for k in row if k not in columns]
        atomic_write_csv(self.file("history.csv"), rows, columns)

    def read_history(self) -> list[dict[str, Any]]:
        import csv

        path = self.file("history.csv")
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8") as f:
            return [{k: (int(v) if k in ("epoch", "phase") else float(v)) for k, v in row.items() if v != ""}
                    for row in csv.DictReader(f)]

    def check_writable(self, *subfolders: str) -> None:
        """Make sure files can be written in the run folder (and in each existing `subfolders`, e.g.
        `"checkpoints"`, `"eval"`) before any work starts; a one-line UserError naming the folder if not.

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

        return Run(Path(shutil.copytree(self.path, destination, ignore=shutil.ignore_patterns(LOCK_NAME))))

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
            (path / "checkpoints").mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise UserError(f"{path}: cannot create the run folder ({os_error_reason(e)})") from e
        return Run(path)
    raise UserError(f"{parent}: too many runs started in the same second")


def _started(meta_path: Path) -> float:
    """The start time meta.json records, as a timestamp (0 when it records none); ValueError if damaged."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError("not readable JSON") from e
    if not isinstance(meta, dict):
        raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    started = meta.get("started")
    if started is None:
        return 0.0
    if not isinstance(started, str):
        raise ValueError(f"started: {started!r} is not a time")
    try:
        return datetime.fromisoformat(started).timestamp()
    except ValueError as e:
        raise ValueError(f"started: {started!r} is not an ISO time") from e


_noted: set[str] = set()


def find_latest_run(output_dir: str | Path = "outputs") -> Run:
    """The run under `output_dir` whose meta.json records the latest start time (not the folder's mtime).

    A run folder whose meta.json is damaged or of the wrong shape is skipped; one note line on standard error
    (`cnnrun.report.error_console`) names the skipped folders and why, once per process.
    """
    runs, skipped = [], []
    for meta in Path(output_dir).glob("*/*/meta.json"):
        try:
            runs.append((_started(meta), str(meta.parent)))
        except ValueError as e:
            skipped.append(f"{meta.parent} ({e})")
    note = f"note: skipped {len(skipped)} run folder(s) with a damaged meta.json: " + "; ".join(skipped)
    if skipped and note not in _noted:  # once per process, though a command may look for the latest run twice
        from cnnrun.report import error_console

        _noted.add(note)
        error_console.print(note, markup=False, highlight=False, soft_wrap=True)
    if not runs:
        raise UserError(f"no runs under {output_dir}/; give a run folder, e.g. {output_dir}/<name>/<time>")
    return Run(Path(max(runs)[1]))


def open_run(path: str | Path | None, output_dir: str | Path = "outputs") -> Run:
    """The run folder at `path` (or the latest under `output_dir`), checked to hold a config and a valid state.

    Nothing is written; a folder that is not a complete run folder, or whose state.json is not a cnnrun run
    state, is a one-line UserError.
    """
    run = find_latest_run(output_dir) if path is None else Run(Path(path))
    if not run.path.is_dir():
        raise UserError(f"{run.path}: no such run folder")
    for name in ("config.yaml", "state.json"):
        if not run.file(name).is_file():
            raise UserError(f"{run.file(name)}: missing; {run.path} is not a complete cnnrun run folder")
    run.read_state()
    return run
