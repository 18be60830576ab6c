"""Transfer learning, measured: CIFAR-10's cat-vs-dog task from 1,000 training pictures, trained from scratch,
started from a network trained on the eight other classes, and on MobileNetV2 pretrained on ImageNet; and how much
faster a frozen phase trains on backbone features computed once.

Each run is a `cnnrun train` run, a normal run folder under `--output-dir`. The rows (`--rows`, default all):
- `scratch` and `8class`: `configs/cifar10_pets_transfer.yaml` from scratch (no `init_from`, no phases, as many
  epochs as the two phases together, the optimizer and learning rate of `compile:`) and with `model.init_from` a
  run of `configs/cifar10_8class.yaml` (the eight classes that are neither cat nor dog, trained first unless
  `--pretrained` names one): the head alone on the frozen network, then everything with a small learning rate;
- `imagenet`: `configs/cifar10_pets_imagenet.yaml`, the same pictures upscaled, on MobileNetV2 with torchvision's
  ImageNet weights (../shared/weights): the head on features computed once, then the last blocks fine-tuned;
- `speed`: that config's first phase alone (the head on the frozen backbone, `--speed-epochs` epochs), trained with
  `cache_features: true` and with `false`: the same seed, pictures, batches and epochs, so the same head.

The cat-vs-dog runs are trained with `--seeds` seeds (the config's seed, seed + 1, …; each seed also draws its own
1,000 pictures): one seed's difference is within the noise of training on 1,000 pictures. Prints, per kind of
run, the mean ± standard deviation over the seeds of the test accuracy of best.keras and last.keras (2,000 cat and
dog test pictures), its training time (fit s, the features' pass included) and its wall time (the command from
start to end: loading, building, scoring included), each seed's figure, then the gain (8 classes minus scratch,
seed by seed). The speed table adds each phase's time per epoch (fit seconds less the one pass computing the
features, over the epochs) and the speed-ups of the cached run: per epoch, for the phase (fit s, the pass
included) and for the whole command (wall s). The figures are read from the run folders, as a user would read
them. `RESULT` lines: `transfer_gain_best=…` (scratch and 8class), `imagenet_best=…`, `cache_speedup_phase=…`.

Usage (from the project root):
    .venv/bin/python bench/transfer.py --data-dir ../shared/data/cifar10-jpeg [--output-dir bench_transfer] \\
        [--rows scratch,8class,imagenet,speed] [--pretrained RUN_DIR] [--seeds 3] [--speed-epochs 10] \\
        [--set KEY=VALUE]...

`--pretrained` reuses an earlier run of the eight classes instead of training one; `--set` goes to every run,
`--pretrain-set` to the eight classes' run only, `--pets-set` to the scratch and 8-class runs only (say, shorter
phases: the from-scratch run trains as many epochs as the phases then add up to) and `--imagenet-set` to the
`imagenet` and `speed` runs only. `--rows imagenet,speed` leaves out the long 8-class pretraining.

Tiny mode (what tests/test_bench.py runs): `--data-dir` a tree of a few pictures per class, `--seeds 1`,
`--set dataset.holdout_first=N --set dataset.samples_per_class=M`, `--pretrain-set train.epochs=1` and
`--pets-set` two phases of one epoch each, `--pets-set model.layers=…` a small network, `--imagenet-set
model.layers=…` a small backbone (MobileNet with alpha 0.25, random weights, at 32×32), `--imagenet-set
train.phases=…` two short phases and `--speed-epochs 2`.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from machine import cnnrun, cpu_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnrun.config import resolve_config  # noqa: E402  (the project's own, from its root)

PROJECT = Path(__file__).resolve().parents[1]
PRETRAIN, PETS = PROJECT / "configs" / "cifar10_8class.yaml", PROJECT / "configs" / "cifar10_pets_transfer.yaml"
IMAGENET = PROJECT / "configs" / "cifar10_pets_imagenet.yaml"
ROWS = ("scratch", "8class", "imagenet", "speed")
LABELS = {"scratch": "cat vs dog, from scratch", "8class": "cat vs dog, from the 8 classes",
          "imagenet": "cat vs dog, ImageNet MobileNetV2"}
SPEED = {True: "phase 1, features cached", False: "phase 1, backbone every batch"}


def train(config: Path, output: Path, name: str, sets: list[str]) -> tuple[Path, float]:
    """Run `cnnrun train` into `output/name/<time>/`; return the run folder and the command's wall seconds."""
    wall = cnnrun("train", config, "--output-dir", output, "--name", name,
                  *(arg for item in sets for arg in ("--set", item)))
    return max((output / name).iterdir()), wall


def figures(run: Path, wall: float) -> dict[str, float]:
    scores = json.loads((run / "scores.json").read_text())
    state = json.loads((run / "state.json").read_text())
    cached = json.loads((run / "meta.json").read_text()).get("cached_features") or []
    return {"epochs": state["epochs_completed"], "best": scores["best"]["accuracy"],
            "last": scores["last"]["accuracy"], "fit": state["fit_seconds"], "wall": wall,
            "features": sum(entry["seconds"] for entry in cached)}


def spread(values: list[float]) -> str:
    """`mean ± sample std` of a list (the value alone for one)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def mean(runs: list[dict[str, float]], key: str) -> float:
    return statistics.fmean(run[key] for run in runs)


def rows_wanted(value: str) -> list[str]:
    """`--rows`: names from ROWS, comma-separated."""
    wanted = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in ROWS]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(f"rows from {', '.join(ROWS)}, comma-separated; got {value!r}")
    return wanted


def speed_phase(imagenet: dict, epochs: int, cached: bool) -> str:
    """`train.phases=[…]`: the config's first phase alone, `epochs` long, with or without cached features."""
    first = {key: value for key, value in imagenet["train"]["phases"][0].items() if value is not None}
    return "train.phases=" + json.dumps([{**first, "epochs": epochs, "cache_features": cached}])


def print_table(rows: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n{'run':32} {'seeds':>5} {'test best':>15} {'test last':>15} {'fit s':>7} {'wall s':>7}")
    for name, runs in rows.items():
        print(f"{name:32} {len(runs):>5} {spread([r['best'] for r in runs]):>15} "
              f"{spread([r['last'] for r in runs]):>15} {mean(runs, 'fit'):>7.1f} {mean(runs, 'wall'):>7.1f}")
        print("    each seed, best: " + ", ".join(f"{r['best']:.4f}" for r in runs))


def print_speed(speed: dict[bool, list[dict[str, float]]], epochs: int) -> None:
    """The like-for-like table of the first phase with and without cached features, and the speed-ups."""
    print(f"\nphase 1 alone, {epochs} epochs, the same seeds, pictures and batches:")
    print(f"{'run':32} {'seeds':>5} {'test best':>15} {'test last':>15} {'features s':>10} {'s/epoch':>8} "
          f"{'fit s':>7} {'wall s':>7}")
    per_epoch = {}
    for cached, runs in speed.items():
        per_epoch[cached] = statistics.fmean((r["fit"] - r["features"]) / r["epochs"] for r in runs)
        print(f"{SPEED[cached]:32} {len(runs):>5} {spread([r['best'] for r in runs]):>15} "
              f"{spread([r['last'] for r in runs]):>15} {mean(runs, 'features'):>10.1f} {per_epoch[cached]:>8.2f} "
              f"{mean(runs, 'fit'):>7.1f} {mean(runs, 'wall'):>7.1f}")
        print("    each seed, best: " + ", ".join(f"{r['best']:.4f}" for r in runs))
    fast, slow = speed[True], speed[False]
    ratios = {"epoch": per_epoch[False] / per_epoch[True], "phase": mean(slow, "fit") / mean(fast, "fit"),
              "run": mean(slow, "wall") / mean(fast, "wall")}
    print(f"speed-up of the cached run: {ratios['epoch']:.1f}× per epoch, {ratios['phase']:.1f}× for the phase "
          f"(the features' pass included), {ratios['run']:.1f}× for the whole command")
    same = sum(f["best"] == s["best"] and f["last"] == s["last"] for f, s in zip(fast, slow, strict=True))
    print(f"RESULT cache_speedup_epoch={ratios['epoch']:.1f} cache_speedup_phase={ratios['phase']:.1f} "
          f"cache_speedup_run={ratios['run']:.1f} cached_best={spread([r['best'] for r in fast])} "
          f"uncached_best={spread([r['best'] for r in slow])} same_accuracy_seeds={same} epochs={epochs} "
          f"seeds={len(fast)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 as a JPEG tree (../shared/data/cifar10-jpeg)")
    parser.add_argument("--output-dir", type=Path, default=Path("bench_transfer"))
    parser.add_argument("--rows", type=rows_wanted, default=list(ROWS),
                        help=f"which rows, comma-separated, from {','.join(ROWS)} (default: all)")
    parser.add_argument("--pretrained", type=Path, help="a finished run of configs/cifar10_8class.yaml to reuse")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the cat-vs-dog runs: 42, 43, …")
    parser.add_argument("--speed-epochs", type=int, default=10, help="epochs of the `speed` rows' phase 1")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override for every run")
    parser.add_argument("--pretrain-set", dest="pretrain_sets", action="append", default=[],
                        help="a config override for the eight classes' run only")
    parser.add_argument("--pets-set", dest="pets_sets", action="append", default=[],
                        help="a config override for the scratch and 8-class cat-vs-dog runs only")
    parser.add_argument("--imagenet-set", dest="imagenet_sets", action="append", default=[],
                        help="a config override for the imagenet and speed runs only")
    args = parser.parse_args(argv)
    sets = [f"dataset.data_dir={Path(args.data_dir).resolve()}", *args.sets]
    output = args.output_dir.resolve()  # the runs are made from the project root
    pets_sets, imagenet_sets = [*sets, *args.pets_sets], [*sets, *args.imagenet_sets]
    pets = resolve_config(PETS, pets_sets)  # the config as cnnrun reads it, through its `base:` and overrides
    imagenet = resolve_config(IMAGENET, imagenet_sets)
    budget, first = sum(phase["epochs"] for phase in pets["train"]["phases"]), pets["seed"]
    print(cpu_line())

    rows: dict[str, list[dict[str, float]]] = {}
    speed: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    if "8class" in args.rows and args.pretrained is None:
        pretrained, wall = train(PRETRAIN, output, "cifar10_8class", [*sets, *args.pretrain_sets])
        rows["8 classes (pretraining)"] = [figures(pretrained, wall)]
    else:
        pretrained = args.pretrained and args.pretrained.resolve()
    for seed in range(first, first + args.seeds):  # each seed draws its own 1,000 pictures too
        if "scratch" in args.rows:
            run, wall = train(PETS, output, "pets_scratch",
                              [*pets_sets, f"seed={seed}", "model.init_from=null", "model.replace_head=false",
                               "train.phases=null", f"train.epochs={budget}"])
            rows.setdefault(LABELS["scratch"], []).append(figures(run, wall))
        if "8class" in args.rows:
            run, wall = train(PETS, output, "pets_transfer", [*pets_sets, f"seed={seed}",
                                                              f"model.init_from={pretrained}"])
            rows.setdefault(LABELS["8class"], []).append(figures(run, wall))
        if "imagenet" in args.rows:
            run, wall = train(IMAGENET, output, "pets_imagenet", [*imagenet_sets, f"seed={seed}"])
            rows.setdefault(LABELS["imagenet"], []).append(figures(run, wall))
        if "speed" in args.rows:
            for cached in (True, False):
                run, wall = train(IMAGENET, output, f"speed_{'cached' if cached else 'uncached'}",
                                  [*imagenet_sets, f"seed={seed}", speed_phase(imagenet, args.speed_epochs, cached)])
                speed[cached].append(figures(run, wall))

    if rows:
        print_table(rows)
    if "scratch" in args.rows and "8class" in args.rows:
        scratch_best = [r["best"] for r in rows[LABELS["scratch"]]]
        transfer_best = [r["best"] for r in rows[LABELS["8class"]]]
        gains = [t - s for t, s in zip(transfer_best, scratch_best, strict=True)]
        print(f"RESULT transfer_gain_best={spread(gains)} scratch_best={spread(scratch_best)} "
              f"transfer_best={spread(transfer_best)} epochs={budget} seeds={args.seeds}")
    if "imagenet" in args.rows:
        runs = rows[LABELS["imagenet"]]
        epochs = sum(phase["epochs"] for phase in imagenet["train"]["phases"])
        print(f"RESULT imagenet_best={spread([r['best'] for r in runs])} "
              f"imagenet_last={spread([r['last'] for r in runs])} epochs={epochs} seeds={args.seeds}")
    if "speed" in args.rows:
        print_speed(speed, args.speed_epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
