"""Tiny stand-ins for the real datasets' files, in their real layouts: tests that need CIFAR-10's JPEG tree or
Fashion-MNIST's idx files without the real data (or its size) write these into tmp_path."""

import gzip
import struct
from pathlib import Path

import numpy as np

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def jpeg_tree(root: Path, train: int, test: int) -> Path:
    """CIFAR-10's layout (`train/<class>/`, `test/<class>/`) with `train` and `test` random 32×32 JPEGs a class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for name in CIFAR10:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
    return root


def fashion_files(root: Path, train: int, test: int) -> Path:
    """Fashion-MNIST's four idx .gz files (the layout Keras caches) holding random 28×28 pictures."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for prefix, count in (("train", train), ("t10k", test)):
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, count, 28, 28) + rng.integers(0, 256, count * 784, np.uint8).tobytes())
        with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, count) + rng.integers(0, 10, count, np.uint8).tobytes())
    return root
