"""The training input pipeline alone: cnnrun's `tf.data` stream against the course's ImageDataGenerator.

Both read the same JPEG folder tree (default `../shared/data/cifar10-jpeg`), resize to 32×32, apply
`configs/cifar10_bn.yaml`'s augmentation (rotation 15, shifts 0.1, both flips), normalise and batch by 128;
nothing trains. Each runs in its own process, so each peak memory (RSS) is its own.

- cnnrun: `load_splits` as `cnnrun train` calls it (the folder check, the normalisation statistics), then one
  epoch of the training stream (decode, augment, batch), then a second one (served from `cache: auto`).
- course: `tf_keras`' `ImageDataGenerator(...).flow_from_directory(...)`, the pipeline the course used, for as
  many images as cnnrun's epoch. Needs `pip install tf-keras==2.21.*` (for this benchmark only).

Usage (from any folder):
    .venv/bin/python bench/pipeline.py [--data ../shared/data/cifar10-jpeg] [--cache auto] [--set KEY=VALUE]...

`--set` overrides go to cnnrun's side (the course's side has its settings written below). Without tf_keras the
course's side is not run: the cnnrun line is printed, the course's says why, and the exit code is 1.

Prints one line per pipeline and a `RESULT` line: the first epoch with what each side does before it (cnnrun's
folder check and statistics, the course's directory listing), and the later epochs, each with its ratio.

Tiny mode (what tests/test_bench.py runs): `--data` a tree of a few pictures per class, with
`--set dataset.holdout_first=N --set train.batch_size=B` to fit it.
"""

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_line

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
CONFIG = PROJECT / "configs" / "cifar10_bn.yaml"
NO_TF_KERAS = "tf_keras is not installed: pip install tf-keras==2.21.*"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cnnrun(data: str, cache: str, sets: list[str]) -> dict:
    from cnnrun.cli.common import quiet_imports as _quiet_imports
    from cnnrun.config import load_experiment

    _quiet_imports()
    from cnnrun.data import load_splits

    experiment = load_experiment(CONFIG, [f"dataset.data_dir={data}", f"dataset.cache={cache}", *sets])
    started = time.perf_counter()
    splits = load_splits(experiment)
    load = time.perf_counter() - started
    steps = splits.steps_per_epoch
    epochs = []
    stream = iter(splits.train)
    for _ in range(2):
        started = time.perf_counter()
        images = sum(int(next(stream)[0].shape[0]) for _ in range(steps))
        epochs.append(time.perf_counter() - started)
    return {"pipeline": "cnnrun", "images": images, "load_s": load, "epoch_s": epochs[0],
            "images_per_s": images / epochs[0], "cached_epoch_images_per_s": images / epochs[1],
            "cache": splits.examples["train"].cache, "peak_rss_mb": peak_rss_mb()}


def run_course(data: str, images: int) -> dict:
    from cnnrun.cli.common import quiet_imports as _quiet_imports

    _quiet_imports()
    try:
        from tf_keras.preprocessing.image import ImageDataGenerator
    except ImportError:
        return {"pipeline": "course", "error": NO_TF_KERAS}

    generator = ImageDataGenerator(rescale=1 / 255, rotation_range=15, width_shift_range=0.1,
                                   height_shift_range=0.1, horizontal_flip=True, vertical_flip=True)
    started = time.perf_counter()
    flow = generator.flow_from_directory(f"{data}/train", target_size=(32, 32), batch_size=128,
                                         class_mode="categorical", seed=42)
    load = time.perf_counter() - started
    started = time.perf_counter()
    done = 0
    while done < images:
        done += len(next(flow)[0])
    seconds = time.perf_counter() - started
    return {"pipeline": "course", "images": done, "load_s": load, "epoch_s": seconds,
            "images_per_s": done / seconds, "peak_rss_mb": peak_rss_mb()}


def child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg"))
    parser.add_argument("--cache", default="auto", choices=["auto", "none", "memory", "disk"])
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override for cnnrun's side")
    parser.add_argument("--worker", choices=["cnnrun", "course"], help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "cnnrun":
        print(json.dumps(run_cnnrun(args.data, args.cache, args.sets)))
        return 0
    if args.worker == "course":
        print(json.dumps(run_course(args.data, args.images)))
        return 0
    if not Path(args.data, "train").is_dir():
        print(f"{args.data}/train not found; give --data, a folder with train/ and test/ of class folders")
        return 2
    print(cpu_line())
    ours = child("--worker", "cnnrun", "--data", args.data, "--cache", args.cache,
                 *(a for s in args.sets for a in ("--set", s)))
    print(f"cnnrun: {ours['images']} images, check+load {ours['load_s']:.1f} s, first epoch {ours['epoch_s']:.1f} s "
          f"= {ours['images_per_s']:.0f} images/s (cache {ours['cache']}: next epoch "
          f"{ours['cached_epoch_images_per_s']:.0f} images/s), peak RSS {ours['peak_rss_mb']:.0f} MB")
    # asked here, before a process that would load TensorFlow only to find tf_keras missing
    course = child("--worker", "course", "--data", args.data, "--images", str(ours["images"])) \
        if importlib.util.find_spec("tf_keras") else {"error": NO_TF_KERAS}
    if "error" in course:
        print(f"course: {course['error']}")
        return 1
    print(f"course: {course['images']} images, listing {course['load_s']:.1f} s, {course['epoch_s']:.1f} s "
          f"= {course['images_per_s']:.0f} images/s, peak RSS {course['peak_rss_mb']:.0f} MB")
    # like for like: each side's first epoch with what it does before it (cnnrun's folder check and statistics,
    # the course's directory listing), and the later epochs
    ours_first = ours["images"] / (ours["load_s"] + ours["epoch_s"])
    course_first = course["images"] / (course["load_s"] + course["epoch_s"])
    print(f"RESULT first_epoch_with_setup: cnnrun {ours_first:.0f} course {course_first:.0f} images/s "
          f"({ours_first / course_first:.1f}x); later_epochs: cnnrun {ours['cached_epoch_images_per_s']:.0f} "
          f"course {course['images_per_s']:.0f} images/s "
          f"({ours['cached_epoch_images_per_s'] / course['images_per_s']:.1f}x); "
          f"cnnrun_peak_rss_mb={ours['peak_rss_mb']:.0f} course_peak_rss_mb={course['peak_rss_mb']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
