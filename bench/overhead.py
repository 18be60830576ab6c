"""What cnnrun costs over a hand-written Keras script: the course's first Fashion-MNIST CNN, trained both ways.

The plain script below is what the course writes by hand: load the arrays, divide by 255, one-hot labels, the
same `Sequential` model, `rmsprop`, `fit(validation_split=0.3, batch_size=64)`. cnnrun runs
`cnnrun train configs/fashion_mnist.yaml` with the same epochs, which also checkpoints, writes the history, the
state and the plot after every epoch. Both read `../shared/data/fashion-mnist` and run in their own processes,
alternating, `--repeat` times each; the medians are compared.

- fit: the time spent in Keras' `fit` (cnnrun's `fit_seconds` in state.json; the plain script times its call).
- process: the whole process, start to exit, as a user waits for it.

With `--tensorboard`, it compares cnnrun with TensorBoard on (the default: scalars, learning rate, graph) and
off (`callbacks.tensorboard: false`) instead, the two alternating in the same way.

Usage (from any folder):
    .venv/bin/python bench/overhead.py [--epochs 10] [--repeat 3] [--tensorboard] [--data DIR]

Tiny mode (what tests/test_bench.py runs): `--data` a folder of a few hundred pictures in Fashion-MNIST's four
idx files, `--epochs 1 --repeat 1`.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from machine import cpu_line

PROJECT = Path(__file__).resolve().parents[1]
DATA = PROJECT.parent / "shared" / "data" / "fashion-mnist"

PLAIN = """
import gzip, json, sys, time
import numpy as np
import keras

data, epochs = sys.argv[1], int(sys.argv[2])

def read(name, offset):
    with gzip.open(f"{data}/{name}", "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)

x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1).astype("float32") / 255
y = keras.utils.to_categorical(read("train-labels-idx1-ubyte.gz", 8), 10)
keras.utils.set_random_seed(42)
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(64, 2, padding="same", activation="relu"), keras.layers.MaxPool2D(2),
    keras.layers.Dropout(0.3),
    keras.layers.Conv2D(32, 2, padding="same", activation="relu"), keras.layers.MaxPool2D(2),
    keras.layers.Dropout(0.3),
    keras.layers.Flatten(), keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.5),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
started = time.perf_counter()
history = model.fit(x, y, validation_split=0.3, epochs=epochs, batch_size=64, verbose=2)
print(json.dumps({"fit_s": time.perf_counter() - started, "val_accuracy": history.history["val_accuracy"][-1]}))
"""


def plain(data: Path, epochs: int) -> dict:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PLAIN, str(data), str(epochs)], capture_output=True, text=True,
                            env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""})
    if result.returncode != 0:
        raise SystemExit(f"the plain Keras script failed:\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - started}


def cnnrun(data: Path, epochs: int, tensorboard: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "-m", "cnnrun", "train", str(PROJECT / "configs" / "fashion_mnist.yaml"), "--set",
                   f"dataset.data_dir={data}", "--set", f"train.epochs={epochs}", "--set", "train.verbose=2",
                   *([] if tensorboard else ["--set", "callbacks.tensorboard=false"]), "--output-dir", output]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        process = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command[2:])} failed:\n{result.stderr[-3000:]}")
        run = next(Path(output).glob("*/*/"))
        state = json.loads((run / "state.json").read_text())
        history = (run / "history.csv").read_text().splitlines()
    columns = history[0].split(",")
    last = dict(zip(columns, history[-1].split(","), strict=True))
    return {"fit_s": state["fit_seconds"], "process_s": process, "val_accuracy": float(last["val_accuracy"])}


def alternate(trainers: dict[str, Callable[[int], dict]], epochs: int, repeat: int) -> dict[str, dict[str, float]]:
    """Train with each of `trainers` `repeat` times, alternating which goes first; each one's median fit and
    process seconds."""
    runs: dict[str, list[dict]] = {name: [] for name in trainers}
    for i in range(repeat):
        for name in list(trainers) if i % 2 == 0 else list(trainers)[::-1]:
            runs[name].append(trainers[name](epochs))
            r = runs[name][-1]
            print(f"{name}: fit {r['fit_s']:.1f} s, process {r['process_s']:.1f} s, "
                  f"val_accuracy {r['val_accuracy']:.4f}", flush=True)
    return {name: {key: statistics.median(r[key] for r in rs) for key in ("fit_s", "process_s")}
            for name, rs in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tensorboard", action="store_true", help="compare cnnrun with TensorBoard on and off")
    parser.add_argument("--data", type=Path, default=DATA, help="Fashion-MNIST's four idx .gz files")
    args = parser.parse_args()
    data = args.data.resolve()
    if not data.is_dir():
        print(f"{data} not found: this benchmark needs the real Fashion-MNIST files there")
        return 2
    print(cpu_line())
    if args.tensorboard:  # cnnrun with TensorBoard on against off
        median = alternate({"tensorboard off": partial(cnnrun, data, tensorboard=False),
                            "tensorboard on": partial(cnnrun, data, tensorboard=True)}, args.epochs, args.repeat)
        off, on = median["tensorboard off"], median["tensorboard on"]
        print(f"RESULT tensorboard epochs={args.epochs} repeat={args.repeat} off_fit_s={off['fit_s']:.1f} "
              f"on_fit_s={on['fit_s']:.1f} fit_ratio={on['fit_s'] / off['fit_s']:.3f} "
              f"off_process_s={off['process_s']:.1f} on_process_s={on['process_s']:.1f} "
              f"process_ratio={on['process_s'] / off['process_s']:.3f}")
        return 0
    median = alternate({"plain": partial(plain, data), "cnnrun": partial(cnnrun, data)}, args.epochs, args.repeat)
    fit_ratio = median["cnnrun"]["fit_s"] / median["plain"]["fit_s"]
    process_ratio = median["cnnrun"]["process_s"] / median["plain"]["process_s"]
    print(f"RESULT epochs={args.epochs} repeat={args.repeat} plain_fit_s={median['plain']['fit_s']:.1f} "
          f"cnnrun_fit_s={median['cnnrun']['fit_s']:.1f} fit_ratio={fit_ratio:.3f} "
          f"plain_process_s={median['plain']['process_s']:.1f} cnnrun_process_s={median['cnnrun']['process_s']:.1f} "
          f"process_ratio={process_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
