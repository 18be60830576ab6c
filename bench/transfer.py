"""Transfer learning, measured: CIFAR-10's cat-vs-dog task from 1,000 training pictures, trained from scratch and
started from a network trained on the eight other classes, with the same budget of epochs.

Three `cnnrun train` runs, each a normal run folder under `--output-dir`:
1. `configs/cifar10_8class.yaml`: the eight classes that are neither cat nor dog (40,000 pictures less validation);
2. `configs/cifar10_pets_transfer.yaml` with `model.init_from` the first run: the head alone on the frozen
   network, then everything with a small learning rate (its `train.phases`);
3. the same file from scratch: no `init_from`, no phases, as many epochs as the two phases together, the
   optimizer and learning rate of `compile:`.

Prints, per run, the test accuracy of best.keras and last.keras (2,000 cat and dog test pictures), its training
time and its wall time (the command from start to end: loading, building, scoring included), then the gain.
The figures are read from the run folders, as a user would read them.

Usage (from the project root):
    .venv/bin/python bench/transfer.py --data-dir ../shared/data/cifar10-jpeg [--output-dir bench_transfer] \\
        [--pretrained RUN_DIR] [--set KEY=VALUE]...

`--pretrained` reuses an earlier run of the eight classes instead of training one; `--set` goes to all three runs.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 as a JPEG tree (../shared/data/cifar10-jpeg)")
    parser.add_argument("--output-dir", type=Path, default=Path("bench_transfer"))
    parser.add_argument("--pretrained", type=Path, help="a finished run of configs/cifar10_8class.yaml to reuse")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override for every run")
    args = parser.parse_args(argv)
    sets = [f"dataset.data_dir={Path(args.data_dir).resolve()}", *args.sets]

    rows = {}
    if args.pretrained is None:
        pretrained, wall = train(PRETRAIN, args.output_dir, "cifar10_8class", sets)
        rows["8 classes (pretraining)"] = figures(pretrained, wall)
    else:
        pretrained = args.pretrained.resolve()
    phases = yaml.safe_load(PETS.read_text())["train"]["phases"]
    budget = sum(phase["epochs"] for phase in phases)
    scratch, wall = train(PETS, args.output_dir, "pets_scratch",
                          [*sets, "model.init_from=null", "model.replace_head=false", "train.phases=null",
                           f"train.epochs={budget}"])
    rows["cat vs dog, from scratch"] = figures(scratch, wall)
    transfer, wall = train(PETS, args.output_dir, "pets_transfer", [*sets, f"model.init_from={pretrained}"])
    rows["cat vs dog, from the 8 classes"] = figures(transfer, wall)

    print(f"\n{'run':32} {'epochs':>6} {'test best':>9} {'test last':>9} {'fit s':>7} {'wall s':>7}")
    for name, row in rows.items():
        print(f"{name:32} {row['epochs']:>6} {row['best']:>9.4f} {row['last']:>9.4f} {row['fit']:>7.1f} "
              f"{row['wall']:>7.1f}")
    gain = rows["cat vs dog, from the 8 classes"]["best"] - rows["cat vs dog, from scratch"]["best"]
    print(f"RESULT transfer_gain_best={gain:+.4f} scratch_best={rows['cat vs dog, from scratch']['best']:.4f} "
          f"transfer_best={rows['cat vs dog, from the 8 classes']['best']:.4f} epochs={budget}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
