"""Time to accuracy: train a config with several seeds and record, after every epoch (or every N-th and the last:
`--judge-every N`), the wall time and the test accuracy with and without test-time augmentation.

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

Ablation: `--ablate NAME SET [SET …]` (repeatable) adds a variant of the config with one piece switched off, named
NAME, made by the overrides SET; each variant trains with the same seeds after the config as it is, and a table
compares their final test accuracies (mean ± std over the seeds, plain and with TTA), the difference each piece
makes and the minutes. A short proxy is the same command with fewer epochs (`--set vars.epochs=4` for
configs/cifar10_airbench.yaml: the schedule follows) or fewer pictures (`--set dataset.samples_per_class=1000`);
the full run is without them. `--judge-every N` judges the test split only after every N-th epoch and the last
(and where training stops early): the table needs only the last, and judging CIFAR-10's test split plain and in
six views sends 70,000 pictures through the network (30,000 with the proxy's `evaluate.tta=[flip]`), where an
epoch of the proxy trains on 10,000. airbench94's pieces, switched off one at a time (docs/performance.md,
"Ablation"):

    .venv/bin/python bench/time_to_accuracy.py configs/cifar10_airbench.yaml --seeds 2 \\
        --set dataset.data_dir=../shared/data/cifar10-jpeg --set dataset.samples_per_class=1000 \\
        --set vars.epochs=4 --set "evaluate.tta=[flip]" --judge-every 4 --out ablation.png \\
        --ablate whitening_bias model.layers.0.PatchWhitening.bias_epochs=null \\
        --ablate dirac model.vars.init=glorot_uniform \\
        --ablate alternating_flips augmentation.horizontal_flip=true \\
        --ablate bn_bias_rate compile.rate_multipliers=null \\
        --ablate lookahead callbacks.lookahead=false

(`--ablate label_smoothing compile.loss.label_smoothing=0` switches off one more piece, which airbench has too.)

(Test-time augmentation needs no variant: every row reports the test accuracy with and without it.)

Tiny mode (what tests/test_bench.py runs): a small `shapes` config of three epochs, `--seeds 2`, low `--targets`,
`--judge-every 2`, one `--ablate` (which also stops early, after the second epoch).
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
    parser.add_argument("--ablate", nargs="+", action="append", default=[], metavar="NAME SET",
                        help="a variant with one piece off: its name, then the config overrides that switch it off "
                        "(repeatable); trained with the same seeds, compared in a table")
    parser.add_argument("--judge-every", type=int, default=1, metavar="N",
                        help="judge the test split after every N-th epoch and the last (default 1: every epoch)")
    args = parser.parse_args(argv)
    if args.judge_every < 1:
        parser.error(f"--judge-every {args.judge_every}: give a whole number of epochs, 1 or more")
    for name, *sets in args.ablate:
        if not sets or "=" in name or any("=" not in one for one in sets):
            parser.error(f"--ablate {' '.join([name, *sets])}: give a name, then overrides KEY=VALUE")
    return args


def test_accuracy_each_epoch(experiment, started: float, every: int = 1):
    """A Keras callback that judges the test split after every `every`-th epoch and the last (the weights
    checkpoints hold: it runs after cnnrun's own callbacks) and keeps (epoch, minutes, plain accuracy, TTA
    accuracy), the judging's time taken out."""
    import keras

    from cnnrun.model.scoring import tta_probabilities

    views = experiment.evaluate.tta or ["flip", "translate"]
    plain_views, with_views = (experiment.model_copy(update={"evaluate": experiment.evaluate.model_copy(
        update={"tta": tta})}) for tta in ([], views))

    class TestEachEpoch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.splits, self.rows, self.judging, self.seen = None, [], 0.0, 0

        def on_epoch_end(self, epoch, logs=None):
            self.seen = epoch + 1
            if self.seen % every == 0:
                self.judge()

        def on_train_end(self, logs=None):  # the last epoch (planned, or where early stopping ended the fit)
            if self.seen and (not self.rows or self.rows[-1][0] != self.seen):
                self.judge()

        def judge(self):
            begun = time.perf_counter()
            labels = self.splits.examples["test"].labels
            plain = tta_probabilities(self.model, self.splits.test, plain_views)
            averaged = tta_probabilities(self.model, self.splits.test, with_views)
            minutes = (begun - started - self.judging) / 60
            self.judging += time.perf_counter() - begun
            self.rows.append((self.seen, minutes, float(np.mean(plain.argmax(-1) == labels)),
                              float(np.mean(averaged.argmax(-1) == labels))))
            print(f"  epoch {self.seen}: {minutes:6.2f} min, test accuracy {self.rows[-1][2]:.4f}, "
                  f"with {'+'.join(views)} {self.rows[-1][3]:.4f}", flush=True)

    return TestEachEpoch()


def train_seed(config: Path, sets: list[str], seed: int, output: str, every: int = 1):
    """One seed's rows: (epoch, minutes, test accuracy, test accuracy with TTA)."""
    from cnnrun.config import load_experiment
    from cnnrun.devices.backend import prepare

    experiment = load_experiment(config, [*sets, f"seed={seed}"])
    prepare(experiment)
    from cnnrun.cli.render import tell  # the Trainer's header and results, shown as `cnnrun train` shows them
    from cnnrun.training.trainer import Trainer

    started = time.perf_counter()
    judge = test_accuracy_each_epoch(experiment, started, every)
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


COLUMNS = ["config", "seed", "epoch", "minutes", "test_accuracy", "test_accuracy_tta", "ablated"]
AS_CONFIGURED = ""  # the variant without --ablate: the `ablated` column is empty


def write_rows(curves: dict[tuple[str, int], list], config: Path, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for (variant, seed), rows in curves.items():
            writer.writerows([config.name, seed, epoch, f"{minutes:.3f}", f"{plain:.4f}", f"{tta:.4f}", variant]
                             for epoch, minutes, plain, tta in rows)


def label(config: str, seed, variant: str = AS_CONFIGURED) -> str:
    return f"{config}{f' without {variant}' if variant else ''}, seed {seed}"


def read_rows(path: Path) -> dict[str, list]:
    """Another run's curves, keyed by `label`, as the rows `train_seed` returns."""
    curves: dict[str, list] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            accuracies = float(row["test_accuracy"]), float(row["test_accuracy_tta"])
            curves.setdefault(label(row["config"], row["seed"], row.get("ablated") or AS_CONFIGURED), []).append(
                (int(row["epoch"]), float(row["minutes"]), *accuracies))
    return curves


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def ablation_table(curves: dict[tuple[str, int], list], variants: list[str]) -> list[str]:
    """The table of `--ablate`: per variant the final accuracies' mean ± std over the seeds, the difference from
    the config as it is (with TTA), the mean minutes; and a `RESULT ablated=NAME …` line per variant."""
    finals = {variant: [rows[-1] for (name, _), rows in curves.items() if name == variant] for variant in variants}
    base = mean_spread([last[3] for last in finals[AS_CONFIGURED]])[0]
    lines = [f"{'switched off':<24} {'seeds':>5}  {'test accuracy':<16} {'with TTA':<16} {'Δ with TTA':>10}  "
             f"{'minutes':>7}"]
    for variant, lasts in finals.items():
        (plain, plain_sd), (tta, tta_sd) = (mean_spread([last[column] for last in lasts]) for column in (2, 3))
        minutes = statistics.fmean(last[1] for last in lasts)
        change = "—" if variant == AS_CONFIGURED else f"{tta - base:+.4f}"
        lines.append(f"{variant or 'nothing (as configured)':<24} {len(lasts):>5}  {plain:.4f} ± {plain_sd:.4f}  "
                     f"{tta:.4f} ± {tta_sd:.4f}  {change:>10}  {minutes:>7.1f}")
    for variant, lasts in list(finals.items())[1:]:
        tta = mean_spread([last[3] for last in lasts])
        lines.append(f"RESULT ablated={variant} seeds={len(lasts)} final_tta={tta[0]:.4f}±{tta[1]:.4f} "
                     f"change_tta={tta[0] - base:+.4f}")
    return lines


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
    variants = {AS_CONFIGURED: [], **{name: sets for name, *sets in args.ablate}}
    for sets in variants.values():  # a wrong override fails now, not after the first variant's hour
        load_experiment(args.config, [*args.sets, *sets])
    print(cpu_line())
    curves = {}
    with tempfile.TemporaryDirectory() as output:
        for variant, sets in variants.items():
            for seed in range(base, base + args.seeds):
                print(f"seed {seed}" + (f", without {variant} ({' '.join(sets)})" if variant else ""), flush=True)
                curves[variant, seed] = train_seed(args.config, [*args.sets, *sets], seed, output, args.judge_every)
    plain = {seed: rows for (variant, seed), rows in curves.items() if variant == AS_CONFIGURED}
    for seed, rows in plain.items():
        for target in targets:
            print(f"seed {seed}: {target:.0%} {first_reached(rows, 2, target)}; "
                  f"with TTA {first_reached(rows, 3, target)}")
    finals = {name: [rows[-1][column] for rows in plain.values()] for name, column in (("plain", 2), ("tta", 3))}
    for name, values in finals.items():
        mean, spread = mean_spread(values)
        print(f"RESULT config={args.config} seeds={args.seeds} final_{name}={mean:.4f}"
              f"±{spread:.4f} minutes={statistics.fmean(rows[-1][1] for rows in plain.values()):.1f}")
    if args.ablate:
        print("\n".join(ablation_table(curves, list(variants))))
    write_rows(curves, args.config, args.out.with_suffix(".csv"))
    draw({**{label(args.config.name, seed, variant): rows for (variant, seed), rows in curves.items()}, **others},
         args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
