"""Transfer learning, measured: CIFAR-10's cat-vs-dog task from 1,000 training pictures, trained from scratch and
started from a network trained on the eight other classes, with the same budget of epochs.

Three `cnnrun train` runs, each a normal run folder under `--output-dir`:
1. `configs/cifar10_8class.yaml`: the eight classes that are neither cat nor dog (40,000 pictures less validation);
2. `configs/cifar10_pets_transfer.yaml` with `model.init_from` the first run: the head alone on the frozen
   network, then everything with a small learning rate (its `train.phases`);
3. the same file from scratch: no `init_from`, no phases, as many epochs as the two phases together, the
   optimizer and learning rate of `compile:`.

The two cat-vs-dog runs are trained with `--seeds` seeds (the config's seed, seed + 1, …; each seed also draws its
own 1,000 pictures): one seed's difference is within the noise of training on 1,000 pictures. Prints, per kind of
run, the mean ± standard deviation over the seeds of the test accuracy of best.keras and last.keras (2,000 cat and
dog test pictures), its training time and its wall time (the command from start to end: loading, building,
scoring included), each seed's figure, then the gain (transfer minus scratch, seed by seed).
The figures are read from the run folders, as a user would read them.

Usage (from the project root):
    .venv/bin/python bench/transfer.py --data-dir ../shared/data/cifar10-jpeg [--output-dir bench_transfer] \\
        [--pretrained RUN_DIR] [--seeds 3] [--set KEY=VALUE]...

`--pretrained` reuses an earlier run of the eight classes instead of training one; `--set` goes to all three runs,
`--pretrain-set` to the first only and `--pets-set` to the two cat-vs-dog runs only (say, shorter phases: the
from-scratch run trains as many epochs as the phases then add up to).

Tiny mode (what tests/test_bench.py runs): `--data-dir` a tree of a few pictures per class, `--seeds 1`,
`--set dataset.holdout_first=N --set dataset.samples_per_class=M`, `--pretrain-set train.epochs=1` and
`--pets-set` two phases of one epoch each, `--set model.layers=…` a small network.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnrun.config import resolve_config  # noqa: E402  (the project's own, from its root)

PROJECT = Path(__file__).resolve().parents[1]
PRETRAIN, PETS = PROJECT / "configs" / "cifar10_8class.yaml", PROJECT / "configs" / "cifar10_pets_transfer.yaml"


def train(config: Path, output: Path, name: str, sets: list[str]) -> tuple[Path, float]:
    """Run `cnnrun train` into `output/name/<time>/`; return the run folder and the command's wall seconds."""
    command = [sys.executable, "-m", "cnnrun", "train", str(config), "--output-dir", str(output), "--name", name]
    for item in sets:
        command += ["--set", item]
    print("$ " + " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.returncode)
    return max((output / name).iterdir()), wall


def figures(run: Path, wall: float) -> dict[str, float]:
    scores = json.loads((run / "scores.json").read_text())
    state = json.loads((run / "state.json").read_text())
    return {"epochs": state["epochs_completed"], "best": scores["best"]["accuracy"],
            "last": scores["last"]["accuracy"], "fit": state["fit_seconds"], "wall": wall}


def spread(values: list[float]) -> str:
    """`mean ± sample std` of a list (the value alone for one)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 as a JPEG tree (../shared/data/cifar10-jpeg)")
    parser.add_argument("--output-dir", type=Path, default=Path("bench_transfer"))
    parser.add_argument("--pretrained", type=Path, help="a finished run of configs/cifar10_8class.yaml to reuse")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the two cat-vs-dog runs: 42, 43, …")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override for every run")
    parser.add_argument("--pretrain-set", dest="pretrain_sets", action="append", default=[],
                        help="a config override for the eight classes' run only")
    parser.add_argument("--pets-set", dest="pets_sets", action="append", default=[],
                        help="a config override for the two cat-vs-dog runs only")
    args = parser.parse_args(argv)
    sets = [f"dataset.data_dir={Path(args.data_dir).resolve()}", *args.sets]
    output = args.output_dir.resolve()  # the runs are made from the project root
    pets_sets = [*sets, *args.pets_sets]
    pets = resolve_config(PETS, pets_sets)  # the config as cnnrun reads it, through its `base:` and overrides
    budget, first = sum(phase["epochs"] for phase in pets["train"]["phases"]), pets["seed"]
    print(cpu_line())

    rows: dict[str, list[dict[str, float]]] = {}
    if args.pretrained is None:
        pretrained, wall = train(PRETRAIN, output, "cifar10_8class", [*sets, *args.pretrain_sets])
        rows["8 classes (pretraining)"] = [figures(pretrained, wall)]
    else:
        pretrained = args.pretrained.resolve()
    for seed in range(first, first + args.seeds):  # each seed draws its own 1,000 pictures too
        scratch, wall = train(PETS, output, "pets_scratch",
                              [*pets_sets, f"seed={seed}", "model.init_from=null", "model.replace_head=false",
                               "train.phases=null", f"train.epochs={budget}"])
        rows.setdefault("cat vs dog, from scratch", []).append(figures(scratch, wall))
        transfer, wall = train(PETS, output, "pets_transfer",
                               [*pets_sets, f"seed={seed}", f"model.init_from={pretrained}"])
        rows.setdefault("cat vs dog, from the 8 classes", []).append(figures(transfer, wall))

    print(f"\n{'run':32} {'seeds':>5} {'test best':>15} {'test last':>15} {'fit s':>7} {'wall s':>7}")
    for name, runs in rows.items():
        print(f"{name:32} {len(runs):>5} {spread([r['best'] for r in runs]):>15} "
              f"{spread([r['last'] for r in runs]):>15} {statistics.fmean(r['fit'] for r in runs):>7.1f} "
              f"{statistics.fmean(r['wall'] for r in runs):>7.1f}")
        print("    each seed, best: " + ", ".join(f"{r['best']:.4f}" for r in runs))
    scratch_best = [r["best"] for r in rows["cat vs dog, from scratch"]]
    transfer_best = [r["best"] for r in rows["cat vs dog, from the 8 classes"]]
    gains = [t - s for t, s in zip(transfer_best, scratch_best, strict=True)]
    print(f"RESULT transfer_gain_best={spread(gains)} scratch_best={spread(scratch_best)} "
          f"transfer_best={spread(transfer_best)} epochs={budget} seeds={args.seeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
