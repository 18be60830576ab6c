"""The run folder's files: every file name and every file's schema, in one place; no Keras, no TensorFlow.

Nothing else in cnnrun names a run-folder file: the rest asks `cnnrun.run_folder.folder.Run` (`run.read_state()`,
`run.write_scores(...)`, `run.dataset_info()`, `run.read_history()`, `run.checkpoint("best")`, ...), which reads
and writes them through the names and schemas here. A file that does not match its schema is a one-line
UserError naming the file and what is wrong.

The files of `<output_dir>/<name>/<YYYYMMDD-HHMMSS>/`:

- `config.yaml`: the resolved experiment (`cnnrun.config`'s schema).
- `state.json`: `RunState`, how far the run got; rewritten after every epoch.
- `meta.json`: `Meta`, how and where it ran, and the experiment it began with (`config`), which resume compares
  with `config.yaml`.
- `dataset.json`: `cnnrun.data.DatasetInfo`, what evaluate and predict need to treat pictures as training did.
- `splits.json`: `SplitFiles`, an image folder's (or a csv table's) files of each split, a table's with their labels.
- `bad_files.json`: the files an image folder's check left out, `[{"path", "reason"}]`.
- `scores.json`: `Scores`, the test metrics of both checkpoints.
- `thresholds.json`: `Thresholds`, with several labels a picture (`label_mode: multi_label`), each checkpoint's
  threshold per label, chosen on the validation split; evaluate and predict use them.
- `history.csv`: one row per finished epoch (`parse_history`).
- `summary.txt`: Keras' model summary (`parameters_in`).
- `history.png`, `samples.png`: figures.
- `checkpoints/best.keras`, `checkpoints/last.keras`: the checkpoints, each carrying its own record
  (`cnnrun.atomic.checkpoint_info`): best's `{monitor, value, epoch}`, last's `{epoch}`, and with `train.phases`
  the `phase` each was written in.
- `run.lock`: the process that writes the folder now (`cnnrun.run_folder.lock`).
- `eval/<checkpoint>_<split>_predictions.npz` (`predictions_name`): the class probabilities of every picture of
  a split, `probabilities` (float32, N × classes, averaged over the views with `evaluate.tta`), and their true
  classes, `labels` (N whole numbers); train and resume write the test split's for both checkpoints, evaluate
  those of the checkpoint and split it judges (`Run.write_predictions`, `Run.read_predictions`).
- `report.html`: the run's page (`cnnrun report`).
- `eval/`, `export/`, `tensorboard/`, `mlflow.json`: what evaluate, export, TensorBoard and MLflow write.

Run folders of the previous release open as they are: every key its state.json and meta.json held is a field
here (a field added since has a default), so no key needs a migration.
"""

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnnrun.errors import UserError

CONFIG = "config.yaml"
STATE = "state.json"
META = "meta.json"
DATASET = "dataset.json"
SPLITS = "splits.json"
BAD_FILES = "bad_files.json"
SCORES = "scores.json"
THRESHOLDS = "thresholds.json"
HISTORY = "history.csv"
HISTORY_PLOT = "history.png"
SUMMARY = "summary.txt"
SAMPLES = "samples.png"
CHECKPOINTS = "checkpoints"
LOCK = "run.lock"
EVAL = "eval"
EXPORT = "export"
TENSORBOARD = "tensorboard"
MLFLOW = "mlflow.json"
REPORT = "report.html"

Checkpoint = Literal["best", "last"]
CHECKPOINT_NAMES: tuple[str, ...] = get_args(Checkpoint)
SPLIT_NAMES = ("train", "validation", "test")
MARKERS = (STATE, META, CHECKPOINTS)  # what a run folder holds from its first second on


def checkpoint_name(which: str) -> str:
    """`best.keras` or `last.keras`; anything else is a bug in the caller."""
    if which not in CHECKPOINT_NAMES:
        raise ValueError(f"no checkpoint named {which!r}; a run has {', '.join(CHECKPOINT_NAMES)}")
    return f"{which}.keras"


def explained_name(checkpoint: str, split: str) -> str:
    """`eval/<checkpoint>_<split>_explained.png`: evaluate's Grad-CAM of the top losses, relative to the run folder."""
    return f"{EVAL}/{checkpoint}_{split}_explained.png"


def predictions_name(checkpoint: str, split: str) -> str:
    """`eval/<checkpoint>_<split>_predictions.npz`, relative to the run folder; a name that is not a checkpoint
    or split is a bug in the caller.

    Example:
    >>> predictions_name("best", "test")
    'eval/best_test_predictions.npz'
    """
    checkpoint_name(checkpoint)
    if split not in SPLIT_NAMES:
        raise ValueError(f"no split named {split!r}; a dataset has {', '.join(SPLIT_NAMES)}")
    return f"{EVAL}/{checkpoint}_{split}_predictions.npz"


# ---------------------------------------------------------------- state.json

Status = Literal["running", "completed", "stopped_early", "interrupted", "failed", "pruned"]
STATUSES: tuple[str, ...] = get_args(Status)


class Best(BaseModel):
    """What `checkpoints/best.keras` holds: the monitored value and the epoch it was reached at."""

    model_config = ConfigDict(strict=True, extra="forbid")

    monitor: str = Field(description="The logged value that decides best.keras, e.g. `val_loss`.")
    value: float | None = Field(None, description="Its best value so far; None before the first epoch.")
    epoch: int | None = Field(None, ge=1, description="The epoch (from 1) that reached it; None before.")


class RunState(BaseModel):
    """`state.json`: how far a run got and what resume needs to go on exactly. No other key is allowed."""

    model_config = ConfigDict(strict=True, extra="forbid")

    status: Status = Field(description="running, completed, stopped_early, interrupted, failed, or pruned (a "
                                       "sweep stopped the trial).")
    epochs_completed: int = Field(0, ge=0, description="Epochs finished and recorded.")
    epochs_planned: int = Field(ge=1, description="The total number of epochs asked for.")
    best: Best | None = Field(None, description="What best.keras holds.")
    callbacks: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Saved state of the stateful Keras callbacks, by config name.")
    fit_seconds: float = Field(0.0, ge=0, description="Time spent in Keras' fit, over every start.")
    ended: str | None = Field(None, description="When the last process working on the run ended (ISO time).")
    augmentation: Literal["model", "pipeline"] | None = Field(
        None, description="Where augmentation runs, decided once when the run began; None without augmentation.")
    fit_ended: Literal["completed", "stopped_early"] | None = Field(
        None, description="How training ended, once it has: the test scoring may still be ahead.")
    phase: int | None = Field(None, ge=1, description="With `train.phases`: the phase training is in (from 1).")


# ---------------------------------------------------------------- meta.json


def _iso_time(value: Any) -> Any:
    from datetime import datetime

    if value is None:
        return value
    if not isinstance(value, str):
        raise ValueError("is not a time")
    try:
        datetime.fromisoformat(value)
    except ValueError as e:
        raise ValueError("is not an ISO time") from e
    return value


class Resumed(BaseModel):
    """One `cnnrun resume` of the run."""

    model_config = ConfigDict(extra="forbid")

    at_epoch: int = Field(ge=0, description="The epochs done when it went on.")
    time: str = Field(description="When (ISO time).")
    command: list[str] = Field(default_factory=list, description="Its command line.")
    distribution: dict[str, Any] = Field(default_factory=dict, description="Where it ran.")
    checkpoint: Checkpoint | None = Field(None, description="The checkpoint it went on from; None: the beginning.")


class Meta(BaseModel):
    """`meta.json`: how and where the run ran; written when a process starts and when it ends."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(default_factory=list, description="The command line that started the run.")
    seed: int | None = Field(None, description="The experiment's seed.")
    git_commit: str | None = Field(None, description="The commit of the current folder's git repository.")
    versions: dict[str, str] = Field(default_factory=dict, description="cnnrun, Python, TensorFlow, Keras, ...")
    devices: list[str] = Field(default_factory=list, description="The devices that hold a replica.")
    distribution: dict[str, Any] = Field(default_factory=dict, description="Backend, strategy, replicas, ...")
    platform: str | None = Field(None, description="The operating system.")
    started: str | None = Field(None, description="When the run began (ISO time).")
    ended: str | None = Field(None, description="When the last process ended (ISO time); None while one runs.")
    resumed: list[Resumed] = Field(default_factory=list, description="Each `cnnrun resume`.")
    init_from: dict[str, Any] | None = Field(None, description="The run its weights started from "
                                                               "(`model.init_from`).")
    config: dict[str, Any] | None = Field(None, description="The experiment as config.yaml held it when the last "
                                                            "process started (None in older run folders).")
    cached_features: list[dict[str, Any]] = Field(
        default_factory=list, description="Each time a phase's backbone features were computed (`cache_features`): "
        "phase, views, pictures, seconds, kept (memory or file).")

    @field_validator("started", "ended", mode="before")
    @classmethod
    def check_times(cls, value: Any) -> Any:
        return _iso_time(value)

    def to_dict(self) -> dict[str, Any]:
        """As meta.json holds it: the optional records (`init_from`, `config`, `cached_features`) only when there
        are some."""
        data = self.model_dump(mode="json")
        return {key: value for key, value in data.items()
                if value or key not in ("init_from", "config", "cached_features")}


# ---------------------------------------------------------------- splits.json, scores.json


class SplitFiles(BaseModel):
    """`splits.json`: an image folder's root and the files of each split (relative to it), in stored order; for a
    csv table also the table and each file's label (`labels`, split by split, in the same order; with several
    labels a picture, `label_mode: multi_label`, the list of its labels; with numbers a picture, `regression`, the
    list of its numbers)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    root: str
    train: list[str] | None = None
    validation: list[str] | None = None
    test: list[str] | None = None
    table: str | None = None
    labels: dict[str, list[str] | list[list[str]] | list[list[float]] | None] | None = None  # a list: see above

    def to_dict(self) -> dict[str, Any]:
        """As splits.json holds it: `table` and `labels` only for a table (an image folder's file is as before)."""
        data = self.model_dump()
        return {key: value for key, value in data.items() if value is not None or key not in ("table", "labels")}


class Scores(BaseModel):
    """`scores.json`: the test metrics of `best.keras` and `last.keras` (Keras' names), and the TTA views."""

    model_config = ConfigDict(extra="forbid")

    best: dict[str, float] | None = None
    last: dict[str, float] | None = None
    tta: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Thresholds(BaseModel):
    """`thresholds.json`: where the thresholds were chosen (`validation`, or `default`: 0.5 without validation
    data) and each checkpoint's threshold per label, `{"best": {label: threshold}, "last": {...}}`."""

    model_config = ConfigDict(strict=True, extra="forbid")

    chosen_on: Literal["validation", "default"]
    best: dict[str, float] | None = None
    last: dict[str, float] | None = None


def meta_started(meta_path: Path) -> float:
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


def schema_error(path: Path, data: Any, error: ValidationError, what: str) -> UserError:
    """The one line for a file that does not match its schema: the file, the first problem, how many more."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the whole file"
    if first["msg"].startswith("Value error, "):  # a check of cnnrun's own says what the value is not
        return UserError(f"{path}: {where}: {first['input']!r} {first['msg'].removeprefix('Value error, ')}")
    shown = json.dumps(data)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    more = f"; {error.error_count() - 1} more" if error.error_count() > 1 else ""
    return UserError(f"{path}: {shown} is not {what} ({where}: {first['msg']}{more})")


# ---------------------------------------------------------------- history.csv


def _number(path: Path, line: int, column: str, text: str) -> float | int:
    try:
        return int(text) if column in ("epoch", "phase") else float(text)
    except ValueError:
        raise UserError(f"{path}: damaged: line {line}, {column}: {text!r} is not "
                        f"{'a whole number' if column in ('epoch', 'phase') else 'a number'}") from None


def parse_history(path: Path, text: str) -> list[dict[str, Any]]:
    """The rows of `history.csv`'s `text`: one per finished epoch, numbered 1, 2, … in order.

    The header starts with `epoch` (then `phase` with phases, then Keras' log keys); every line has the header's
    number of fields and ends with a line end; every value is a number (a key an epoch did not log is empty).
    Anything else is a one-line UserError naming the file, the line and what is wrong.
    """
    if not text:
        raise UserError(f"{path}: damaged: empty (not even its header line)")
    lines = text.split("\n")
    if lines[-1] != "":
        raise UserError(f"{path}: damaged: line {len(lines)} is cut short (no line end)")
    reader = csv.reader(lines[:-1])
    header = next(reader)
    if not header or header[0] != "epoch" or len(set(header)) != len(header) or "" in header:
        raise UserError(f"{path}: damaged: its header line is {','.join(header)!r}, not epoch,… with one name a "
                        f"column")
    rows = []
    for number, fields in enumerate(reader, 2):
        row = {column: _number(path, number, column, value)
               for column, value in zip(header, fields, strict=False) if value != ""}
        if len(fields) != len(header):
            raise UserError(f"{path}: damaged: line {number} has {len(fields)} fields where the header has "
                            f"{len(header)}")
        if row.get("epoch") != number - 1:
            raise UserError(f"{path}: damaged: line {number} is epoch {row.get('epoch')}, not {number - 1} "
                            f"(one line per epoch, in order)")
        rows.append(row)
    return rows


def history_columns(rows: list[dict[str, Any]]) -> list[str]:
    """history.csv's header: `epoch`, then every other key in order of appearance."""
    columns = ["epoch"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


# ---------------------------------------------------------------- summary.txt


def parameters_in(summary: str) -> int | None:
    """The model's parameters in Keras' summary text: `Trainable params` + `Non-trainable params`.

    Not Keras' `Total params`: once the optimizer is built (a model loaded from a checkpoint, so every resumed
    run) Keras adds its variables there, 158,942 for the quick start's 52,980. Older summaries without the two
    lines give their `Total params`. None when the text holds no count.
    """
    counts: dict[str, int] = {}
    for line in summary.splitlines():
        name, colon, rest = line.strip().partition(":")
        digits = rest.split("(")[0].replace(",", "").strip()
        if colon and name in ("Total params", "Trainable params", "Non-trainable params") and digits.isdigit():
            counts[name] = int(digits)
    if "Trainable params" in counts and "Non-trainable params" in counts:
        return counts["Trainable params"] + counts["Non-trainable params"]
    return counts.get("Total params")


# ---------------------------------------------------------------- eval/<checkpoint>_<split>_predictions.npz


def predictions_bytes(probabilities: Any, labels: Any) -> bytes:
    """A predictions file's content: NumPy's `.npz` of `probabilities` (float32, N × classes) and `labels` (int64,
    N). Shapes that do not fit each other are a bug in the caller (ValueError)."""
    import io

    import numpy as np

    probabilities = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64, casting="same_kind")
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(f"predictions: probabilities of shape {probabilities.shape} and labels of shape "
                         f"{labels.shape}; they need N × classes and N")
    buffer = io.BytesIO()
    np.savez(buffer, probabilities=probabilities, labels=labels)
    return buffer.getvalue()


def parse_predictions(path: Path, data: bytes) -> tuple[Any, Any]:
    """`(probabilities, labels)` from a predictions file's `data`, checked: `probabilities` a float N × classes
    array, `labels` N whole numbers, each one of the classes. Anything else (a damaged or cut-short file, an array
    missing, shapes that do not fit) is a one-line UserError naming the file."""
    import io
    import zipfile
    import zlib

    import numpy as np

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [name for name in ("probabilities", "labels") if name not in archive.files]
            if missing:
                raise UserError(f"{path}: damaged: no {' and no '.join(missing)} array (it holds "
                                f"{', '.join(archive.files) or 'none'})")
            probabilities, labels = archive["probabilities"], archive["labels"]
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{path}: damaged: not a readable .npz file ({e})") from None
    if probabilities.ndim != 2 or probabilities.dtype.kind != "f":
        raise UserError(f"{path}: damaged: probabilities are {probabilities.dtype} of shape {probabilities.shape}, "
                        f"not numbers of shape (pictures, classes)")
    if labels.dtype.kind not in "iu" or labels.shape != probabilities.shape[:1]:
        raise UserError(f"{path}: damaged: labels are {labels.dtype} of shape {labels.shape}, not "
                        f"{probabilities.shape[0]} whole numbers (one per row of probabilities)")
    if len(labels) and not (0 <= labels.min() and labels.max() < probabilities.shape[1]):
        raise UserError(f"{path}: damaged: labels run from {labels.min()} to {labels.max()}, not within the "
                        f"{probabilities.shape[1]} classes")
    return probabilities.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)
