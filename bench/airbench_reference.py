"""airbench94 itself, in PyTorch on the CPU, on the CIFAR-10 JPEG tree cnnrun trains on: the reference for
`configs/cifar10_airbench.yaml`.

cnnrun's port of airbench94 ends near 89.5 % (90.5 % with test-time augmentation) after its ten epochs, on the CPU
and on a GPU alike, where airbench reports 94.01 % (with test-time augmentation, mean of 1,000 runs on the original
CIFAR-10 arrays). Two things differ: the port, and the data (the JPEG copy in ../shared/data, quality about 75 with
4:2:0 chroma subsampling, for training and test pictures alike). This script separates them: it runs Keller
Jordan's own code (github.com/KellerJordan/cifar10-airbench, `legacy/airbench94.py`, MIT licence, the version of
the 1,000-run figure) on the same pictures. What is changed from that file, and only that:

- the device: the CPU in float32 (the original runs half precision on a CUDA GPU, BatchNorm in float32);
- the data: the JPEG tree read with Pillow into the uint8 arrays airbench's loader keeps (classes in the folders'
  sorted order, which is CIFAR-10's), instead of torchvision's download; torchvision's `Normalize` is written
  out (the same per-channel mean and standard deviation);
- the timing: wall-clock time instead of CUDA events, and one run (`--runs`) instead of 25;
- `--epochs` and `--train-limit` for a shorter run (airbench's schedule is stretched over what is asked).

The network, the whitening, Dirac initialisation, the parameter groups (BatchNorm biases at 64× the rate, weight
decay on every trained parameter), Nesterov SGD on the summed loss, the schedule, lookahead, the alternating flips,
the translations and the test-time augmentation are airbench's lines.

PyTorch is not one of cnnrun's dependencies: run this with a Python that has it (`pip install torch`; torchvision is
not needed). Without it the script says so in one line and exits with 2.

Prints one line per epoch (`epoch`, `train_loss`, `train_acc`, `val_acc`, `seconds`), then
`RESULT val_acc=… tta_val_acc=… seconds=… load_seconds=…` (seconds from the start of the process).

Usage (from the project root):
    /path/to/torch/python bench/airbench_reference.py --data-dir ../shared/data/cifar10-jpeg [--epochs 9.9] \\
        [--threads 2] [--seed 0]

Tiny mode (what tests/test_bench.py runs): on a tree of random JPEGs, `--epochs 1 --batch-size 8`, where the
test's Python has PyTorch; where it has not (cnnrun's own environment and CI), the one-line refusal, and the
reading of the tree either way.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_line
from PIL import Image

START = time.perf_counter()
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_split(root: Path, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The pictures of `root/split/<class>/*.jpg` as (N, 32, 32, 3) uint8 and their class numbers, in file order;
    `limit` keeps that many, taken in turn from each class."""
    files = [sorted((root / split / name).glob("*.jpg")) for name in CLASSES]
    if not all(files):
        raise SystemExit(f"{root / split}: needs a folder of .jpg pictures for each of {', '.join(CLASSES)}")
    pairs = [(path, label) for label, paths in enumerate(files) for path in paths]
    if limit:
        pairs = [pair for i in range(max(map(len, files))) for pair in
                 ((paths[i], label) for label, paths in enumerate(files) if i < len(paths))][:limit]
    images = np.stack([np.asarray(Image.open(path).convert("RGB")) for path, _ in pairs])
    return images, np.array([label for _, label in pairs], np.int64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the CIFAR-10 JPEG tree (train/, test/)")
    parser.add_argument("--epochs", type=float, default=9.9, help="airbench's 9.9 (default)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--train-limit", type=int, default=None, help="train on this many pictures")
    parser.add_argument("--test-limit", type=int, default=None, help="judge on this many test pictures")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench/airbench_reference.py needs PyTorch: run it with a Python that has torch", file=sys.stderr)
        raise SystemExit(2) from None
    from airbench94_cpu import run

    print(cpu_line(), flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = read_split(args.data_dir, "train", args.train_limit)
    test = read_split(args.data_dir, "test", args.test_limit)
    load_seconds = time.perf_counter() - START
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(train[0])} training and "
          f"{len(test[0])} test pictures read in {load_seconds:.1f} s", flush=True)
    result = run(train, test, epochs=args.epochs, batch_size=args.batch_size, start=START)
    print(f"RESULT val_acc={result['val_acc']:.4f} tta_val_acc={result['tta_val_acc']:.4f} "
          f"seconds={time.perf_counter() - START:.1f} load_seconds={load_seconds:.1f} steps={result['steps']}")


if __name__ == "__main__":
    main()
