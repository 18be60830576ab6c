"""Files written whole or not at all: write beside the target, then `os.replace`.

Every file cnnrun writes (run-folder files, figures, CSVs, checkpoints) goes through these, so a process killed
at any moment leaves the old file or the new one, never a part.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_model(model, path: Path) -> None:
    """Save a Keras model (`.keras` format) beside `path`, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)


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
