"""A number per picture, measured: Fashion-MNIST items rotated by a known angle, the angle learnt back with
`dataset.label_mode: regression`.

The script reads Fashion-MNIST's original IDX files in `--data-dir` (read only), takes the first `--train` and the
next `--validation` training pictures and the first `--test` test pictures, and rotates each by an angle drawn
uniformly from [−`--max-angle`, `--max-angle`] degrees (numpy, seed 42; counter-clockwise positive; bilinear, the
black background filling the corners). The rotated pictures go into `--output-dir` as PNG files, with a table
`regression.csv` of `path, angle, split`: the labels are the angles the script itself applied, so they are exact.
The experiment (`regression.yaml` beside it) is a small CNN ending in one linear unit, adam on mean squared error,
the angles standardised by the training split's mean and std (`target_normalize: standardize`), no augmentation (a
flip or a rotation would change the angle). `cnnrun evaluate` then judges best.keras on the test rows.

Prints MAE, RMSE and R² on the test rows (evaluate's `best_test_metrics.json`) beside the baseline that predicts
the training mean for every picture (R² about 0), computed here from the table. `RESULT` line:
`mae=… rmse=… r2=… baseline_mae=… baseline_rmse=… baseline_r2=…`.

Usage (from the project root):
    .venv/bin/python bench/regression.py --data-dir ../shared/data/fashion-mnist [--output-dir bench_regression] \\
        [--train 20000] [--validation 2000] [--test 2000] [--max-angle 45] [--set KEY=VALUE]...

Tiny mode (what tests/test_bench.py runs): `--data-dir` a folder of small IDX files, `--train 8 --validation 4
--test 4 --set train.epochs=1`.
"""

import argparse
import csv
import gzip
import json
from pathlib import Path

import numpy as np
import yaml
from machine import cnnrun, cpu_line
from PIL import Image

SEED = 42


def experiment(table: Path) -> dict:
    """A small CNN (two convolution blocks, a dense layer) ending in one linear unit, adam, mean squared error."""
    conv = {"kernel_size": 3, "padding": "same", "activation": "relu"}
    return {
        "name": "regression",
        "description": "Fashion-MNIST items rotated by a known angle, the angle learnt back (bench/regression.py)",
        "seed": SEED,
        "dataset": {"name": "csv", "path": str(table), "image_size": 28, "color_mode": "grayscale",
                    "cache": "memory", "label_mode": "regression", "target_columns": ["angle"]},
        "model": {"layers": [
            {"Conv2D": {"filters": 32, **conv}}, {"MaxPooling2D": {"pool_size": 2}},
            {"Conv2D": {"filters": 64, **conv}}, {"MaxPooling2D": {"pool_size": 2}},
            {"Flatten": {}}, {"Dense": {"units": 128, "activation": "relu"}},
            {"Dense": {"units": "${num_classes}"}}]},
        "compile": {"optimizer": {"name": "adam", "learning_rate": 0.001}},
        "train": {"epochs": 15, "batch_size": 64},
        "callbacks": {"checkpoint": {"monitor": "val_loss"}, "tensorboard": False},
        "output": {"plots": False, "report": False},
    }


def read_idx(path: Path) -> np.ndarray:
    """The pictures of an IDX image file (gzipped or not): N × rows × columns uint8."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    count, rows, columns = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, np.uint8, count * rows * columns, 16).reshape(count, rows, columns)


def idx_file(data_dir: Path, stem: str) -> Path:
    """`<stem>-idx3-ubyte.gz` (or without .gz) in `data_dir`; exit naming it when absent."""
    for name in (f"{stem}-idx3-ubyte.gz", f"{stem}-idx3-ubyte"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise SystemExit(f"{data_dir}: no {stem}-idx3-ubyte(.gz): give Fashion-MNIST's IDX files")


def write_table(data_dir: Path, counts: dict[str, int], max_angle: float, output: Path) -> list[tuple[str, float,
                                                                                                       str]]:
    """Rotate the chosen pictures, write them and `regression.csv`; the rows `(path, angle, split)`."""
    train, test = read_idx(idx_file(data_dir, "train-images")), read_idx(idx_file(data_dir, "t10k-images"))
    needed = counts["train"] + counts["validation"]
    if len(train) < needed or len(test) < counts["test"]:
        raise SystemExit(f"{data_dir}: {len(train)} training and {len(test)} test pictures; {needed} and "
                         f"{counts['test']} are needed")
    chosen = {"train": train[:counts["train"]], "validation": train[counts["train"]:needed],
              "test": test[:counts["test"]]}
    rng = np.random.default_rng(SEED)
    rows = []
    for split, pictures in chosen.items():
        folder = output / "pictures" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(pictures):
            angle = round(float(rng.uniform(-max_angle, max_angle)), 2)
            path = folder / f"{i:05d}.png"
            Image.fromarray(pixels).rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0).save(path)
            rows.append((path.relative_to(output).as_posix(), angle, split))
    with (output / "regression.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "angle", "split"])
        writer.writerows(rows)
    return rows


def baseline(rows: list[tuple[str, float, str]]) -> dict[str, float]:
    """MAE, RMSE and R² on the test rows of predicting the training rows' mean angle for every picture."""
    mean = np.mean([angle for _, angle, split in rows if split == "train"])
    test = np.array([angle for _, angle, split in rows if split == "test"])
    residual = test - mean
    return {"mae": float(np.abs(residual).mean()), "rmse": float(np.sqrt((residual ** 2).mean())),
            "r2": float(1 - (residual ** 2).sum() / ((test - test.mean()) ** 2).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="Fashion-MNIST's IDX files")
    parser.add_argument("--output-dir", type=Path, default=Path("bench_regression"))
    parser.add_argument("--train", type=int, default=20000, help="training pictures")
    parser.add_argument("--validation", type=int, default=2000, help="validation pictures")
    parser.add_argument("--test", type=int, default=2000, help="test pictures")
    parser.add_argument("--max-angle", type=float, default=45.0, help="angles drawn from [-max, max] degrees")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    args = parser.parse_args()

    print(cpu_line())
    output = args.output_dir.resolve()
    counts = {"train": args.train, "validation": args.validation, "test": args.test}
    rows = write_table(args.data_dir.resolve(), counts, args.max_angle, output)
    print("pictures: " + ", ".join(f"{split} {sum(r[2] == split for r in rows)}" for split in counts))
    config = output / "regression.yaml"
    config.write_text(yaml.safe_dump(experiment(output / "regression.csv"), sort_keys=False))
    sets = [item for pair in (("--set", item) for item in args.sets) for item in pair]
    wall = cnnrun("train", str(config), "--output-dir", str(output), *sets)
    run = sorted((output / "regression").iterdir())[-1]
    cnnrun("evaluate", str(run))

    metrics = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    mean = baseline(rows)
    print(f"\n{'test angles (degrees)':28} {'MAE':>8} {'RMSE':>8} {'R²':>8}")
    print(f"{'best.keras':28} {metrics['mae']:>8.3f} {metrics['rmse']:>8.3f} {metrics['r2']:>8.4f}")
    print(f"{'the training mean, always':28} {mean['mae']:>8.3f} {mean['rmse']:>8.3f} {mean['r2']:>8.4f}")
    print(f"{metrics['examples']} test pictures; training {wall:.0f} s wall (with start-up)")
    print(f"RESULT mae={metrics['mae']:.3f} rmse={metrics['rmse']:.3f} r2={metrics['r2']:.4f} "
          f"baseline_mae={mean['mae']:.3f} baseline_rmse={mean['rmse']:.3f} baseline_r2={mean['r2']:.4f} "
          f"train_wall_s={wall:.0f}")


if __name__ == "__main__":
    main()
