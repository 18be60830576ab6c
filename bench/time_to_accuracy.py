"""Time to accuracy: train a config with several seeds and record, after every epoch, the wall time and the test
accuracy with and without test-time augmentation.

The test split is judged only for this report: checkpoints and early stopping still use validation, as in any run.
The clock starts before the Trainer is made, so loading the data and building the model count (the costs before the
first epoch); the time spent judging the test split after each epoch is taken out. Each seed trains in this process
through cnnrun's Trainer into a temporary folder.

Prints one line per epoch, then per seed the minutes at which each target accuracy was first reached (plain and
with TTA, whichever `evaluate.tta` the config has: `[flip, translate]` when it has none), the final accuracies'
mean ± standard deviation, and writes the curves (accuracy against minutes) as a PNG and their rows as a CSV beside
it (`--out curve.png` also writes `curve.csv`). `--with OTHER.csv` draws another config's curves, written earlier by
this bench, on the same plot: the like-for-like comparison of two recipes on one clock.

Usage (from the project root):
    .venv/bin/python bench/time_to_accuracy.py configs/cifar10_fast.yaml --seeds 3 \\
        --set dataset.data_dir=../shared/data/cifar10-jpeg [--targets 0.90,0.93,0.94] [--out time_to_accuracy.png] \\
        [--with cifar10_bn.csv]

Tiny mode (what tests/test_bench.py runs): a small `shapes` config of two epochs, `--seeds 2`, low `--targets`.
"""

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, default=1, help="seeds: the config's seed, seed + 1, …")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, repeatable")
    parser.add_argument("--targets", default="0.90,0.93,0.94", help="test accuracies to time, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("time_to_accuracy.png"),
                        help="the curves' PNG; their rows go to the same name with .csv")
    parser.add_argument("--with", dest="others", type=Path, action="append", default=[],
                        help="a CSV this bench wrote for another config, drawn on the same plot (repeatable)")
    return parser.parse_args(argv)


def test_accuracy_each_epoch(experiment, started: float):
    """A Keras callback that judges the test split after every epoch (the weights checkpoints hold: it runs after
    cnnrun's own callbacks) and keeps (minutes, plain accuracy, TTA accuracy), the judging's time taken out."""
    import keras

    from cnnrun.model.scoring import tta_probabilities

    views = experiment.evaluate.tta or ["flip", "translate"]
    plain_views, with_views = (experiment.model_copy(update={"evaluate": experiment.evaluate.model_copy(
        update={"tta": tta})}) for tta in ([], views))

    class TestEachEpoch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.splits, self.rows, self.judging = None, [], 0.0

        def on_epoch_end(self, epoch, logs=None):
            begun = time.perf_counter()
            labels = self.splits.examples["test"].labels
            plain = tta_probabilities(self.model, self.splits.test, plain_views)
            averaged = tta_probabilities(self.model, self.splits.test, with_views)
            minutes = (begun - started - self.judging) / 60
            self.judging += time.perf_counter() - begun
            self.rows.append((epoch + 1, minutes, float(np.mean(plain.argmax(-1) == labels)),
                              float(np.mean(averaged.argmax(-1) == labels))))
            print(f"  epoch {epoch + 1}: {minutes:6.2f} min, test accuracy {self.rows[-1][2]:.4f}, "
                  f"with {'+'.join(views)} {self.rows[-1][3]:.4f}", flush=True)

    return TestEachEpoch()


def train_seed(config: Path, sets: list[str], seed: int, output: str):
    """One seed's rows: (epoch, minutes, test accuracy, test accuracy with TTA)."""
    from cnnrun.config import load_experiment
    from cnnrun.devices.backend import prepare

    experiment = load_experiment(config, [*sets, f"seed={seed}"])
    prepare(experiment)
    from cnnrun.cli.render import tell  # the Trainer's header and results, shown as `cnnrun train` shows them
    from cnnrun.training.trainer import Trainer

    started = time.perf_counter()
    judge = test_accuracy_each_epoch(experiment, started)
    with Trainer.new(experiment, output, callbacks=[judge], say=tell) as trainer:
        if trainer.splits.test is None:
            raise SystemExit(f"{config}: no test split to judge")
        judge.splits = trainer.splits
        trainer.fit()
        trainer.finish()
    return judge.rows


def first_reached(rows, column: int, target: float) -> str:
    return next((f"at {minutes:.1f} min (epoch {epoch})" for epoch, minutes, *accs in rows
                 if accs[column - 2] >= target), "not reached")


COLUMNS = ["config", "seed", "epoch", "minutes", "test_accuracy", "test_accuracy_tta"]


def write_rows(curves: dict[int, list], config: Path, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for seed, rows in curves.items():
            writer.writerows([config.name, seed, epoch, f"{minutes:.3f}", f"{plain:.4f}", f"{tta:.4f}"]
                             for epoch, minutes, plain, tta in rows)


def label(config: str, seed) -> str:
    return f"{config}, seed {seed}"


def read_rows(path: Path) -> dict[str, list]:
    """Another run's curves, keyed by `label`, as the rows `train_seed` returns."""
    curves: dict[str, list] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            accuracies = float(row["test_accuracy"]), float(row["test_accuracy_tta"])
            curves.setdefault(label(row["config"], row["seed"]), []).append(
                (int(row["epoch"]), float(row["minutes"]), *accuracies))
    return curves


def draw(curves: dict[str, list], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in curves.items():
        minutes = [r[1] for r in rows]
        line, = ax.plot(minutes, [r[3] for r in rows], marker="o", label=f"{name}, with TTA")
        ax.plot(minutes, [r[2] for r in rows], linestyle="--", color=line.get_color(), label=name)
    ax.set(xlabel="minutes (loading and building included)", ylabel="test accuracy", title="time to accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    args = parse(argv)
    from cnnrun.config import load_experiment

    base = load_experiment(args.config, args.sets).seed
    targets = [float(t) for t in args.targets.split(",")]
    others = {}  # read before training, so that a wrong --with fails now, not after an hour
    for other in args.others:
        others.update(read_rows(other))
    print(cpu_line())
    curves = {}
    with tempfile.TemporaryDirectory() as output:
        for seed in range(base, base + args.seeds):
            print(f"seed {seed}", flush=True)
            curves[seed] = train_seed(args.config, args.sets, seed, output)
    for seed, rows in curves.items():
        for target in targets:
            print(f"seed {seed}: {target:.0%} {first_reached(rows, 2, target)}; "
                  f"with TTA {first_reached(rows, 3, target)}")
    finals = {name: [rows[-1][column] for rows in curves.values()] for name, column in (("plain", 2), ("tta", 3))}
    for name, values in finals.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"RESULT config={args.config} seeds={args.seeds} final_{name}={statistics.fmean(values):.4f}"
              f"±{spread:.4f} minutes={statistics.fmean(rows[-1][1] for rows in curves.values()):.1f}")
    write_rows(curves, args.config, args.out.with_suffix(".csv"))
    draw({**{label(args.config.name, seed): rows for seed, rows in curves.items()}, **others}, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
