"""Several labels per picture, measured: CIFAR-10 pictures labelled with their class and with `animal` or `vehicle`
(`cat;animal`, `truck;vehicle`), trained with `dataset.label_mode: multi_label`.

The table (`multilabel.csv` in `--output-dir`, written by this script from `--data-dir`'s JPEG tree) lists, per
CIFAR-10 class, its first `--per-class` training pictures (sorted names) as training rows, the next
`--validation-per-class` as validation rows (where each label's threshold is chosen) and the first
`--test-per-class` pictures of the test tree as test rows. Each picture has two of the twelve labels: its class
(one of ten) and its kind (airplane, automobile, ship and truck are vehicles, the six others animals). The labels
are derived from CIFAR-10's own classes, so they are exact, not guessed. The experiment (`multilabel.yaml` beside
it) is a small CNN ending in twelve sigmoids, trained with adam on binary crossentropy; then `cnnrun evaluate`
judges best.keras on the test rows at the thresholds chosen on validation.

Prints each label's threshold, precision, recall, F1, average precision and test pictures (from evaluate's
`best_test_per_label.csv`), and beside each label's AP the AP a random ranking would get (its share of the test
pictures); then mAP, macro F1 and exact match. `RESULT` line: `map=… macro_f1=… exact_match=… chance_map=…`.

Usage (from the project root):
    .venv/bin/python bench/multilabel.py --data-dir ../shared/data/cifar10-jpeg [--output-dir bench_multilabel] \\
        [--per-class 200] [--validation-per-class 50] [--test-per-class 100] [--set KEY=VALUE]...

Tiny mode (what tests/test_bench.py runs): `--data-dir` a tree of a few pictures per class, `--per-class 2
--validation-per-class 1 --test-per-class 1 --set train.epochs=1`.
"""

import argparse
import csv
import json
from pathlib import Path

import yaml
from machine import cnnrun, cpu_line

VEHICLES = ("airplane", "automobile", "ship", "truck")


def experiment(table: Path) -> dict:
    """A small CNN (three convolution blocks) ending in one sigmoid per label, adam, binary crossentropy."""
    conv = {"kernel_size": 3, "padding": "same", "activation": "relu"}
    return {
        "name": "multilabel",
        "description": "CIFAR-10 pictures labelled with their class and animal/vehicle (bench/multilabel.py)",
        "seed": 42,
        "dataset": {"name": "csv", "path": str(table), "image_size": 32, "cache": "memory",
                    "label_mode": "multi_label"},
        "model": {"layers": [
            {"Conv2D": {"filters": 32, **conv}}, {"MaxPooling2D": {"pool_size": 2}},
            {"Conv2D": {"filters": 64, **conv}}, {"MaxPooling2D": {"pool_size": 2}},
            {"Conv2D": {"filters": 64, **conv}}, {"GlobalAveragePooling2D": {}},
            {"Dense": {"units": 128, "activation": "relu"}}, {"Dropout": 0.3},
            {"Dense": {"units": "${num_classes}", "activation": "sigmoid"}}]},
        "compile": {"optimizer": {"name": "adam", "learning_rate": 0.002}},
        "train": {"epochs": 30, "batch_size": 64},
        "augmentation": {"horizontal_flip": True},
        "callbacks": {"checkpoint": {"monitor": "val_loss"}, "tensorboard": False},
        "output": {"plots": False, "report": False},
    }


def write_table(data_dir: Path, counts: dict[str, int], table: Path) -> dict[str, int]:
    """The CSV of each class's pictures as the module's docstring says; returns the rows per split."""
    rows = []
    classes = sorted(path.name for path in (data_dir / "train").iterdir() if path.is_dir())
    for name in classes:
        kind = "vehicle" if name in VEHICLES else "animal"
        train = sorted((data_dir / "train" / name).glob("*.jpg"))
        test = sorted((data_dir / "test" / name).glob("*.jpg"))
        needed = counts["train"] + counts["validation"]
        if len(train) < needed or len(test) < counts["test"]:
            raise SystemExit(f"{data_dir}: {name} has {len(train)} training and {len(test)} test pictures; "
                             f"{needed} and {counts['test']} are needed")
        for split, paths in (("train", train[:counts["train"]]), ("validation", train[counts["train"]:needed]),
                             ("test", test[:counts["test"]])):
            rows += [(str(path.resolve()), f"{name};{kind}", split) for path in paths]
    table.parent.mkdir(parents=True, exist_ok=True)
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return {split: sum(row[2] == split for row in rows) for split in ("train", "validation", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="CIFAR-10 as a train/ and test/ JPEG tree")
    parser.add_argument("--output-dir", type=Path, default=Path("bench_multilabel"))
    parser.add_argument("--per-class", type=int, default=200, help="training pictures of each class")
    parser.add_argument("--validation-per-class", type=int, default=50, help="validation pictures of each class")
    parser.add_argument("--test-per-class", type=int, default=100, help="test pictures of each class")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    args = parser.parse_args()

    print(cpu_line())
    output = args.output_dir.resolve()
    counts = {"train": args.per_class, "validation": args.validation_per_class, "test": args.test_per_class}
    listed = write_table(args.data_dir.resolve(), counts, output / "multilabel.csv")
    print("pictures: " + ", ".join(f"{split} {count}" for split, count in listed.items()))
    config = output / "multilabel.yaml"
    config.write_text(yaml.safe_dump(experiment(output / "multilabel.csv"), sort_keys=False))
    sets = [item for pair in (("--set", item) for item in args.sets) for item in pair]
    wall = cnnrun("train", str(config), "--output-dir", str(output), *sets)
    run = sorted((output / "multilabel").iterdir())[-1]
    cnnrun("evaluate", str(run), "--explain", "0")

    metrics = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    with (run / "eval" / "best_test_per_label.csv").open() as f:
        rows = list(csv.DictReader(f))
    tested = metrics["examples"]
    print(f"\n{'label':12} {'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>7} {'AP':>7} {'chance AP':>9} "
          f"{'pictures':>8}")
    chance = []
    for row in rows:
        share = int(row["support"]) / tested
        chance.append(share)
        ap = f"{float(row['average_precision']):.4f}" if row["average_precision"] else "—"
        print(f"{row['label']:12} {float(row['threshold']):>9.4f} {float(row['precision']):>9.4f} "
              f"{float(row['recall']):>7.4f} {float(row['f1']):>7.4f} {ap:>7} {share:>9.4f} {row['support']:>8}")
    chance_map = sum(chance) / len(chance)
    print(f"mAP {metrics['mean_average_precision']:.4f} (chance {chance_map:.4f}), macro F1 {metrics['macro_f1']:.4f}, "
          f"micro F1 {metrics['micro_f1']:.4f}, exact match {metrics['exact_match']:.4f}; training {wall:.0f} s "
          f"wall (with start-up)")
    print(f"RESULT map={metrics['mean_average_precision']:.4f} macro_f1={metrics['macro_f1']:.4f} "
          f"exact_match={metrics['exact_match']:.4f} chance_map={chance_map:.4f} train_wall_s={wall:.0f}")


if __name__ == "__main__":
    main()
