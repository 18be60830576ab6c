"""Files written whole or not at all: write beside the target, then `os.replace`.

Every file cnnrun writes (run-folder files, figures, CSVs, checkpoints) goes through these, so a process killed
at any moment leaves the old file or the new one, never a part. What they promise the user:

- Two writers never share a partial file: each partial name carries the writer's PID and a random part
  (`.best.4242-9f3a1c07.partial.keras`), so two saves of one checkpoint cannot clash.
- A write that fails (disk full, read-only file system, permission denied) removes its partial file and raises
  one `UserError` line naming the file and the reason, e.g. `…/state.json: cannot write (disk full)`.
- Files get the permissions the user's umask gives (`0o666 & ~umask`, usually 0644), as `open()` would.
- A checkpoint can carry its own record (`atomic_save_model(..., info=...)`, read back by `checkpoint_info`),
  written inside the same file before it is moved into place, so what a checkpoint holds is known from the file
  itself at every instant.

Example:
>>> atomic_write_json(run_folder / "state.json", {"status": "running"})
>>> atomic_save_model(model, run_folder / "checkpoints" / "best.keras",
...                   info={"monitor": "val_loss", "value": 0.41, "epoch": 3})
>>> checkpoint_info(run_folder / "checkpoints" / "best.keras")
{'monitor': 'val_loss', 'value': 0.41, 'epoch': 3}
"""

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnrun.errors import UserError

# What a failed write says, by errno; others use the system's own words.
REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "file too large",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EEXIST: "a file is in the way of a folder",
}

# The zip comment of a checkpoint that carries a record starts with this; the JSON record follows.
INFO_MARK = b"cnnrun:"


def os_error_reason(error: OSError) -> str:
    """The reason an OSError gives, in a user's words (`disk full` for ENOSPC)."""
    return REASONS.get(error.errno, error.strerror or str(error))


def write_error(path: Path, error: OSError) -> UserError:
    """The one-line UserError for a failed write of `path`."""
    return UserError(f"{path}: cannot write ({os_error_reason(error)})")


def partial_path(path: Path) -> Path:
    """A name beside `path` that no other writer uses: `.<stem>.<pid>-<random>.partial<suffix>`.

    The suffix is kept, because some writers (Keras' `model.save`) decide the format by it.
    """
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a partial path to write; when the block ends, move it onto `path` in one step.

    If the block (or the move) raises, the partial file is removed; an OSError becomes a one-line UserError
    naming `path` (see `write_error`), anything else (Ctrl-C included) is raised as it is.

    Args:
        path: the file to write.
    """
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise UserError(f"{path}: cannot write ({path.parent} is a file, not a folder)") from e
    except OSError as e:
        raise write_error(path, e) from e
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from e
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part.

    The file gets the permissions the umask gives (`0o666 & ~umask`), as a file made by `open()` does.
    """
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path`, whole or not at all."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path`, whole or not at all."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_model(model, path: Path, info: dict[str, Any] | None = None) -> None:
    """Save a Keras model (`.keras` format) beside `path`, then move it into place.

    Args:
        model: the Keras model (architecture, weights and optimizer state are saved).
        path: the `.keras` file to write.
        info: a JSON-able record of what this checkpoint is, e.g. `{"monitor": "val_loss", "value": 0.41,
            "epoch": 3}`, stored inside the file (as its zip comment, which Keras ignores) before the move, so
            the file and its record appear together. Read it back with `checkpoint_info`. Defaults to None.
    """
    import zipfile

    with replacing(path) as tmp:
        model.save(tmp)
        with open(tmp, "r+b") as f:
            if info is not None:
                with zipfile.ZipFile(f, "a") as archive:
                    archive.comment = INFO_MARK + json.dumps(info).encode("utf-8")
            f.flush()
            os.fsync(f.fileno())


def atomic_copy_model(source: Path, path: Path, info: dict[str, Any] | None = None) -> None:
    """Copy the `.keras` file `source` onto `path` with its own record, whole or not at all.

    The same model state saved twice costs Keras' whole save twice (about half a second for a MobileNetV2); the
    RunRecorder copies `best.keras` to `last.keras` when both hold the same epoch. The record (`info`, as
    `atomic_save_model` takes it) replaces the one the copy carried.
    """
    import shutil
    import zipfile

    with replacing(path) as tmp:
        shutil.copyfile(source, tmp)
        with open(tmp, "r+b") as f:
            with zipfile.ZipFile(f, "a") as archive:
                archive.comment = (INFO_MARK + json.dumps(info).encode("utf-8")) if info is not None else b""
            f.flush()
            os.fsync(f.fileno())


def checkpoint_info(path: Path) -> dict[str, Any] | None:
    """The record `atomic_save_model` stored in the checkpoint at `path`, or None when it has none.

    A missing, truncated or foreign file has no record (None); `load_checkpoint` says what is wrong with it.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            comment = archive.comment
    except (OSError, zipfile.BadZipFile):
        return None
    if not comment.startswith(INFO_MARK):
        return None
    try:
        info = json.loads(comment[len(INFO_MARK):])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def atomic_write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Write `rows` as a CSV with a header (`columns`, default: every key in order of appearance)."""
    import csv
    import io

    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def atomic_write_figure(fig, path: Path, dpi: int = 100) -> None:
    """Write a matplotlib figure in the format its suffix names (.png, .jpg, .pdf, .svg) and close it."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"), dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
