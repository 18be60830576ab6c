"""Tables of numbers a picture for the regression tests: 8×8 grey pictures whose brightness is their number."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

HEAD = [{"Flatten": {}}, {"Dense": {"units": "${num_classes}"}}]


def grey(path: Path, value: float) -> None:
    """An 8×8 grey picture of brightness 20 × value + 30 (value 0 to 10)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), round(20 * value + 30), np.uint8)).save(path)


def number_table(root: Path, count: int = 40, seed: int = 0) -> tuple[Path, dict[str, tuple[float, float]]]:
    """A table `path, size, half, split` of `count` pictures (60 % train, 20 % validation, 20 % test): `size` the
    brightness's number (0 to 10), `half` half of it; and each picture's two numbers by its absolute path."""
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in range(count):
        value = round(float(rng.uniform(0, 10)), 2)
        grey(root / f"p{i}.png", value)
        truth[str(root / f"p{i}.png")] = (value, value / 2)
        split = "train" if i < 0.6 * count else "validation" if i < 0.8 * count else "test"
        rows.append([f"p{i}.png", f"{value}", f"{value / 2}", split])
    return write(root / "t.csv", rows), truth


def write(table: Path, rows: list[list[str]]) -> Path:
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "size", "half", "split"], *rows])
    return table
