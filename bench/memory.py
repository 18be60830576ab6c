"""Peak memory of training on an image folder as the folder grows: 5,000 against 50,000 CIFAR-10 JPEGs.

Builds two folder trees of links into `../shared/data/cifar10-jpeg/train` (the first N/10 pictures of each class;
nothing is written beside the data) with the same 1,000-picture test split, and trains one epoch of
`configs/cifar10_bn.yaml` on each with `cnnrun train`, in a fresh process each time, with `dataset.cache` `none`
(decode every epoch) and `auto` (here: decoded images kept in memory, 3 KB each). Prints each peak RSS and the
50,000 / 5,000 ratio.

Usage (from any folder):
    .venv/bin/python bench/memory.py [--sizes 5000 50000] [--cache none auto] [--data DIR] [--test-size 1000] \\
        [--set KEY=VALUE]...

Each size must be a multiple of the class count, and the tree must hold that many pictures of each class: the
bench stops otherwise, rather than measure a smaller folder than it names.

Tiny mode (what tests/test_bench.py runs): `--data` a tree of a few pictures per class,
`--sizes 20 40 --test-size 10 --cache none`, plots and TensorBoard off and a small network (`--set`).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_line

PROJECT = Path(__file__).resolve().parents[1]
JPEG = PROJECT.parent / "shared" / "data" / "cifar10-jpeg"
PEAK = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); " \
       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def link_tree(data: Path, root: Path, size: int, test_size: int) -> dict[str, int]:
    """train/ with `size` pictures (the same share of every class) and test/ with `test_size`, as links into
    `data`; returns the links made per split."""
    made = {}
    for split, count in (("train", size), ("test", test_size)):
        classes = sorted(p for p in (data / split).iterdir() if p.is_dir())
        if count % len(classes):
            raise SystemExit(f"{split}: {count} pictures do not share evenly among {len(classes)} classes")
        made[split] = 0
        for folder in classes:
            target = root / split / folder.name
            target.mkdir(parents=True)
            pictures = sorted(folder.iterdir())[: count // len(classes)]
            if len(pictures) < count // len(classes):
                raise SystemExit(f"{folder} holds {len(pictures)} pictures; {count // len(classes)} are needed")
            for picture in pictures:
                (target / picture.name).symlink_to(picture.resolve())
            made[split] += len(pictures)
    return made


def train_peak_mb(tree: Path, cache: str, output: Path, sets: list[str]) -> tuple[float, float, dict[str, int]]:
    """Train one epoch on `tree` in a fresh process: its peak RSS in MB, the wall seconds, and the split sizes
    the run folder's dataset.json records (what was really trained on)."""
    command = [sys.executable, "-m", "cnnrun", "train", str(PROJECT / "configs" / "cifar10_bn.yaml"),
               "--output-dir", str(output), "--name", f"{tree.name}-{cache}",
               "--set", f"dataset.data_dir={tree}", "--set", "dataset.holdout_first=null", "--set",
               "dataset.validation_split=0.1", "--set", f"dataset.cache={cache}", "--set", "train.epochs=1",
               "--set", "train.verbose=0", *(a for s in sets for a in ("--set", s))]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed:\n{result.stderr[-3000:]}")
    (run,) = (output / f"{tree.name}-{cache}").iterdir()
    sizes = json.loads((run / "dataset.json").read_text())["sizes"]
    return int(result.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - started, sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[5000, 50000])
    parser.add_argument("--cache", nargs="+", default=["none", "auto"], choices=["none", "auto", "memory", "disk"])
    parser.add_argument("--data", type=Path, default=JPEG, help="the CIFAR-10 JPEG tree (train/, test/)")
    parser.add_argument("--test-size", type=int, default=1000, help="test pictures in every tree (default 1000)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, repeatable")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"{args.data} not found: this benchmark needs the CIFAR-10 JPEG tree")
        return 2
    print(cpu_line())
    with tempfile.TemporaryDirectory() as scratch:
        trees = {}
        for size in args.sizes:
            trees[size] = Path(scratch) / str(size)
            made = link_tree(args.data, trees[size], size, args.test_size)
            print(f"tree of {size}: {made['train']} training and {made['test']} test pictures linked", flush=True)
        for cache in args.cache:
            peaks = {}
            for size, tree in trees.items():
                peaks[size], seconds, sizes = train_peak_mb(tree, cache, Path(scratch) / "runs", args.sets)
                print(f"cache={cache} images={size}: peak RSS {peaks[size]:.0f} MB, {seconds:.0f} s "
                      f"(trained on {sizes['train']}, validation {sizes['validation']}, test {sizes['test']})",
                      flush=True)
            small, large = args.sizes
            print(f"RESULT cache={cache} peak_mb_{small}={peaks[small]:.0f} peak_mb_{large}={peaks[large]:.0f} "
                  f"ratio={peaks[large] / peaks[small]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
