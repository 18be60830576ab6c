"""Imbalanced classes, measured: a CSV table of CIFAR-10 pictures with a rare class, trained as it is, with
`train.class_weight: balanced` and with `dataset.sampling: balanced`, over several seeds.

The table (`imbalanced.csv` in `--output-dir`, written by this script from `--data-dir`'s JPEG tree) lists, per
class of `--counts` (default `airplane=1000,automobile=300,ship=100,truck=30`: 33 to 1), that many training
pictures, a tenth more as validation rows, and as many test pictures of CIFAR-10's test tree in the same
proportions: the test split is as imbalanced as the training data, as it is where such data is met. The
experiment (`imbalanced.yaml` beside it) is a small course-style CNN trained with adam; the three rows differ only
in `train.class_weight` (none, or `balanced`) and `dataset.sampling` (`balanced` in the third). Each run is a
`cnnrun train --seeds` run, a normal run folder.

Prints, per row, the mean ± standard deviation over the seeds of the test accuracy, the balanced accuracy (the
mean of the classes' recalls) and each class's recall of best.keras, each seed's balanced accuracy, and the
difference. The recalls are computed here from the run's stored test predictions
(`eval/best_test_predictions.npz`), independently of cnnrun's `balanced_accuracy` in `scores.json`, which is
printed beside them. `RESULT` line: `balanced_gain=…` (weighted minus unweighted balanced accuracy) and
`sampled_gain=…` (balanced sampling minus unweighted).

Usage (from the project root):
    .venv/bin/python bench/imbalance.py --data-dir ../shared/data/cifar10-jpeg [--output-dir bench_imbalance] \\
        [--counts airplane=1000,automobile=300,ship=100,truck=30] [--seeds 3] [--set KEY=VALUE]...

Tiny mode (what tests/test_bench.py runs): `--data-dir` a tree of a few pictures per class, `--counts` of a few,
`--seeds 1`, `--set train.epochs=1`.
"""

import argparse
import csv
import json
import statistics
from pathlib import Path

import numpy as np
import yaml
from machine import cnnrun, cpu_line

PROJECT = Path(__file__).resolve().parents[1]
ROWS = {  # row: (its runs' folder, its --set items)
    "no class weights": ("unweighted", []),
    "class_weight: balanced": ("weighted", ["train.class_weight=balanced"]),
    "sampling: balanced": ("sampled", ["dataset.sampling=balanced"]),
}


def experiment(table: Path) -> dict:
    """The experiment every row trains: the table, a small CNN (two convolution blocks), adam."""
    conv = {"kernel_size": 3, "padding": "same", "activation": "relu"}
    return {
        "name": "imbalanced",
        "description": "CIFAR-10 pictures with a rare class, from a CSV table (bench/imbalance.py)",
        "seed": 42,
        "dataset": {"name": "csv", "path": str(table), "image_size": 32, "cache": "memory"},
        "model": {"layers": [
            {"Conv2D": {"filters": 32, **conv}}, {"MaxPooling2D": {"pool_size": 2}},
            {"Conv2D": {"filters": 64, **conv}}, {"MaxPooling2D": {"pool_size": 2}},
            {"Flatten": {}}, {"Dropout": 0.3}, {"Dense": {"units": 128, "activation": "relu"}},
            {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]},
        "compile": {"optimizer": {"name": "adam", "learning_rate": 0.001}},
        "train": {"epochs": 15, "batch_size": 32},
        "callbacks": {"checkpoint": {"monitor": "val_loss"}, "tensorboard": False},
        "output": {"plots": False, "report": False},
    }


def counts_wanted(value: str) -> dict[str, int]:
    """`--counts`: `class=N` pairs, comma-separated."""
    try:
        pairs = [item.split("=") for item in value.split(",") if item.strip()]
        counts = {name.strip(): int(count) for name, count in pairs}
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"class=N pairs, comma-separated; got {value!r}") from e
    if len(counts) < 2 or min(counts.values()) < 1:
        raise argparse.ArgumentTypeError(f"at least two classes with a count ≥ 1; got {value!r}")
    return counts


def write_table(data_dir: Path, counts: dict[str, int], table: Path) -> dict[str, dict[str, int]]:
    """The CSV of each class's first `count` training pictures (sorted names), a tenth more (at least one) as
    validation rows, and `count` test pictures; returns the rows per split and class."""
    rows, listed = [], {"train": {}, "validation": {}, "test": {}}
    for name, count in counts.items():
        train = sorted((data_dir / "train" / name).glob("*.jpg"))
        test = sorted((data_dir / "test" / name).glob("*.jpg"))
        extra = max(1, count // 10)
        if len(train) < count + extra or len(test) < count:
            raise SystemExit(f"{data_dir}: {name} has {len(train)} training and {len(test)} test pictures; "
                             f"{count + extra} and {count} are needed")
        for split, paths in (("train", train[:count]), ("validation", train[count:count + extra]),
                             ("test", test[:count])):
            rows += [(str(path.resolve()), name, split) for path in paths]
            listed[split][name] = len(paths)
    table.parent.mkdir(parents=True, exist_ok=True)
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return listed


def train(config: Path, output: Path, name: str, seeds: int, sets: list[str]) -> tuple[list[Path], float]:
    """`cnnrun train CONFIG --seeds N` into `output/name/`; the run folders (oldest first) and the wall seconds."""
    wall = cnnrun("train", config, "--output-dir", output, "--name", name, "--seeds", seeds,
                  *(arg for item in sets for arg in ("--set", item)))
    return sorted((output / name).iterdir())[-seeds:], wall


def recalls(run: Path, classes: int) -> np.ndarray:
    """Each class's recall on the test split, from the run's stored predictions of best.keras."""
    with np.load(run / "eval" / "best_test_predictions.npz") as stored:
        probabilities, labels = stored["probabilities"], stored["labels"]
    predicted = probabilities.argmax(axis=1)
    return np.array([(predicted[labels == c] == c).mean() for c in range(classes)])


def spread(values: list[float]) -> str:
    """`mean ± sample std` (the value alone for one)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="CIFAR-10 as a train/ and test/ JPEG tree")
    parser.add_argument("--output-dir", type=Path, default=Path("bench_imbalance"))
    parser.add_argument("--counts", type=counts_wanted, default=counts_wanted("airplane=1000,automobile=300,"
                                                                             "ship=100,truck=30"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    args = parser.parse_args()

    print(cpu_line())
    output = args.output_dir.resolve()
    listed = write_table(args.data_dir.resolve(), args.counts, output / "imbalanced.csv")
    config = output / "imbalanced.yaml"
    config.write_text(yaml.safe_dump(experiment(output / "imbalanced.csv"), sort_keys=False))
    names = list(args.counts)
    print("pictures per class: " + "; ".join(f"{split} " + ", ".join(f"{n} {listed[split][n]}" for n in names)
                                             for split in listed))
    found = {}
    for row, (folder, sets) in ROWS.items():
        runs, wall = train(config, output, folder, args.seeds, args.sets + sets)
        scores = [json.loads((run / "scores.json").read_text())["best"] for run in runs]
        found[row] = {"runs": runs, "wall": wall, "scores": scores,
                      "recalls": [recalls(run, len(names)) for run in runs]}

    print(f"\n{'run':24} {'seeds':>5} {'test accuracy':>15} {'balanced acc.':>15} "
          + " ".join(f"{'recall ' + n:>17}" for n in names) + f" {'wall s':>7}")
    balanced = {}
    for row, result in found.items():
        balanced[row] = [float(r.mean()) for r in result["recalls"]]
        print(f"{row:24} {len(result['runs']):>5} {spread([s['accuracy'] for s in result['scores']]):>15} "
              f"{spread(balanced[row]):>15} "
              + " ".join(f"{spread([float(r[i]) for r in result['recalls']]):>17}" for i in range(len(names)))
              + f" {result['wall']:>7.1f}")
        print("    each seed, balanced accuracy: " + ", ".join(f"{v:.4f}" for v in balanced[row])
              + "; scores.json says: " + ", ".join(f"{s['balanced_accuracy']:.4f}" for s in result["scores"]))
    unweighted, weighted, sampled = balanced.values()
    gain = statistics.fmean(weighted) - statistics.fmean(unweighted)
    sampled_gain = statistics.fmean(sampled) - statistics.fmean(unweighted)
    print(f"RESULT balanced_gain={gain:.4f} sampled_gain={sampled_gain:.4f} unweighted={spread(unweighted)} "
          f"weighted={spread(weighted)} sampled={spread(sampled)} seeds={args.seeds}")


if __name__ == "__main__":
    main()
