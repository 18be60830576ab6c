"""The run folder: create it, find it again, and write its files whole or not at all.

A run folder is `<output_dir>/<name>/<YYYYMMDD-HHMMSS>/` and is the single source of truth for a run (see the
README's "Run folder" section for its files). Every write goes to a file beside the target, then `os.replace`,
so a run killed at any moment leaves only complete files.
"""

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnrun.atomic import atomic_write_json, atomic_write_text
from cnnrun.errors import UserError


@dataclass
class Run:
    """One run folder and its files."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def file(self, name: str) -> Path:
        return self.path / name

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise UserError(f"{path}: missing; is {self.path} a cnnrun run folder?") from e
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: damaged JSON ({e})") from e

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.file(name), obj)

    def update_state(self, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into state.json and write it back whole."""
        path = self.file("state.json")
        state = self.read_json("state.json") if path.exists() else {}
        state.update(changes)
        self.write_json("state.json", state)
        return state

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """Write history.csv: one row per completed epoch, `epoch` first, then Keras' log keys."""
        keys: list[str] = ["epoch"]
        for row in rows:
            keys += [k for k in row if k not in keys]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.file("history.csv"), out.getvalue())

    def read_history(self) -> list[dict[str, Any]]:
        path = self.file("history.csv")
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8") as f:
            return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
                    for row in csv.DictReader(f)]


def create_run(output_dir: str | Path, name: str) -> Run:
    """Make a new run folder `<output_dir>/<name>/<YYYYMMDD-HHMMSS>[-N]/` and return it."""
    parent = Path(output_dir) / name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"output.dir: cannot create {parent} ({e.strerror})") from e
    for suffix in ["", *(f"-{i}" for i in range(1, 1000))]:
        path = parent / f"{stamp}{suffix}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir()
        return Run(path)
    raise UserError(f"{parent}: too many runs started in the same second")


def find_latest_run(output_dir: str | Path = "outputs") -> Run:
    """The run under `output_dir` whose meta.json records the latest start time (not the folder's mtime)."""
    runs = []
    for meta in Path(output_dir).glob("*/*/meta.json"):
        try:
            started = json.loads(meta.read_text(encoding="utf-8")).get("started") or ""
        except (OSError, json.JSONDecodeError):
            continue
        runs.append((datetime.fromisoformat(started).timestamp() if started else 0.0, meta.parent))
    if not runs:
        raise UserError(f"no runs under {output_dir}/; give a run folder, e.g. {output_dir}/<name>/<time>")
    return Run(max(runs)[1])


def open_run(path: str | Path | None, output_dir: str | Path = "outputs") -> Run:
    """The run folder at `path` (or the latest under `output_dir`), checked to hold a config and a state."""
    run = find_latest_run(output_dir) if path is None else Run(Path(path))
    if not run.path.is_dir():
        raise UserError(f"{run.path}: no such run folder")
    for name in ("config.yaml", "state.json"):
        if not run.file(name).is_file():
            raise UserError(f"{run.file(name)}: missing; {run.path} is not a complete cnnrun run folder")
    return run


def load_checkpoint(path: Path):
    """Load a `.keras` checkpoint in Keras' safe mode; a missing or damaged file is a UserError."""
    import keras

    from cnnrun.data.layers import CUSTOM_OBJECTS

    if not path.is_file():
        raise UserError(f"{path}: checkpoint missing")
    try:
        return keras.saving.load_model(path, safe_mode=True, custom_objects=CUSTOM_OBJECTS)
    except Exception as e:  # a damaged zip or model file raises many kinds of errors
        raise UserError(f"{path}: damaged checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:100]})") from e
