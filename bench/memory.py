"""Peak memory of training on an image folder as the folder grows: 5,000 against 50,000 CIFAR-10 JPEGs.

Builds two folder trees of links into `../shared/data/cifar10-jpeg/train` (the first N/10 pictures of each class;
nothing is written beside the data) with the same 1,000-picture test split, and trains one epoch of
`configs/cifar10_bn.yaml` on each with `cnnrun train`, in a fresh process each time, with `dataset.cache` `none`
(decode every epoch) and `auto` (here: decoded images kept in memory, 3 KB each). Prints each peak RSS and the
50,000 / 5,000 ratio.

Usage (from the project root):
    .venv/bin/python bench/memory.py [--sizes 5000 50000] [--cache none auto]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JPEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
PEAK = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); " \
       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def link_tree(root: Path, size: int) -> Path:
    """train/ with `size` pictures (the same share of every class) and test/ with 1,000, as links."""
    for split, count in (("train", size), ("test", 1000)):
        classes = sorted(p for p in (JPEG / split).iterdir() if p.is_dir())
        for folder in classes:
            target = root / split / folder.name
            target.mkdir(parents=True)
            for picture in sorted(folder.iterdir())[: count // len(classes)]:
                (target / picture.name).symlink_to(picture)
    return root


def train_peak_mb(tree: Path, cache: str, output: str) -> tuple[float, float]:
    command = [sys.executable, "-m", "cnnrun", "train", "configs/cifar10_bn.yaml", "--output-dir", output,
               "--set", f"dataset.data_dir={tree}", "--set", "dataset.holdout_first=null", "--set",
               "dataset.validation_split=0.1", "--set", f"dataset.cache={cache}", "--set", "train.epochs=1",
               "--set", "train.verbose=0"]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[5000, 50000])
    parser.add_argument("--cache", nargs="+", default=["none", "auto"])
    args = parser.parse_args()
    if not (JPEG / "train").is_dir():
        print(f"{JPEG} not found: this benchmark needs the CIFAR-10 JPEG tree")
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        trees = {size: link_tree(Path(scratch) / str(size), size) for size in args.sizes}
        for cache in args.cache:
            peaks = {}
            for size, tree in trees.items():
                peaks[size], seconds = train_peak_mb(tree, cache, str(Path(scratch) / "runs"))
                print(f"cache={cache} images={size}: peak RSS {peaks[size]:.0f} MB, {seconds:.0f} s", flush=True)
            small, large = args.sizes
            print(f"RESULT cache={cache} peak_mb_{small}={peaks[small]:.0f} peak_mb_{large}={peaks[large]:.0f} "
                  f"ratio={peaks[large] / peaks[small]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
