"""Training images per second: cnnrun's defaults, tuned settings, and the course's own pipeline, side by side.

For `configs/fashion_mnist.yaml` (arrays) and `configs/cifar10_bn.yaml` (the CIFAR-10 JPEG tree, augmented; or
`cifar10_bn_arrays`: the same pictures decoded once into an npz in the temporary folder), and
`configs/cifar10_resnet20.yaml` (He et al.'s ResNet-20 on the JPEG tree, padded-and-cropped and flipped), it
builds the model and input exactly as `cnnrun train` does and times `fit` over `--steps` batches, twice: the
first epoch compiles and warms up, the second is timed. Settings:

- default: the configs as they are (`jit_compile: auto`, which is off on a CPU; one step per execution);
- xla: `compile.jit_compile: true`;
- spe16: `compile.steps_per_execution: 16`;
- bf16: spe16 plus `train.mixed_precision: true` (mixed_bfloat16 on a CPU, mixed_float16 on a GPU);
- xla_bf16: XLA, spe16 and mixed precision: what a GPU is expected to like;
- course (cifar10_bn only): the arrays standardised up front and augmented by tf_keras' `ImageDataGenerator.flow`,
  fed to the same model, as the course does (needs `pip install tf-keras==2.21.*`).

Usage (from any folder):
    .venv/bin/python bench/throughput.py [--steps 96] [--configs NAME ...] [--settings NAME ...] \\
        [--fashion-mnist DIR] [--cifar10 DIR] [--arrays FILE.npz] [--set KEY=VALUE]...

`--arrays` is the npz that `cifar10_bn_arrays` reads, written from `--cifar10`'s tree when it does not exist yet
(`--write-arrays` only writes it, for bench/gpu.sh's other runs); `--set` goes to every config. Without tf_keras
the course's setting is skipped, and says so. Each line gives the timed epoch's seconds and batch beside images/s.

Tiny mode (what tests/test_bench.py runs): `--cifar10` a tree of a few pictures per class, `--arrays` a file in a
temporary folder, `--steps 2`, `--set dataset.holdout_first=N --set train.batch_size=B` to fit the tree and
`--set model.layers=…` a small network.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_line

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared" / "data"
ARRAYS = Path(tempfile.gettempdir()) / "cnnrun-bench-cifar10.npz"
CONFIGS = ["fashion_mnist", "cifar10_bn", "cifar10_bn_arrays", "cifar10_resnet20"]


def sources(args: argparse.Namespace) -> dict[str, tuple[Path, list[str]]]:
    """name → (config file, its data): the CIFAR-10 JPEG tree streamed from disk, or decoded once into an npz."""
    configs = PROJECT / "configs"
    return {
        "fashion_mnist": (configs / "fashion_mnist.yaml", [f"dataset.data_dir={args.fashion_mnist}"]),
        "cifar10_bn": (configs / "cifar10_bn.yaml", [f"dataset.data_dir={args.cifar10}"]),
        "cifar10_bn_arrays": (configs / "cifar10_bn.yaml", ["dataset.name=npz", f"dataset.path={args.arrays}"]),
        "cifar10_resnet20": (configs / "cifar10_resnet20.yaml", [f"dataset.data_dir={args.cifar10}"]),
    }

SETTINGS = {
    "default": [],
    "xla": ["compile.jit_compile=true"],
    "spe16": ["compile.steps_per_execution=16"],
    "bf16": ["compile.steps_per_execution=16", "train.mixed_precision=true"],
    "xla_bf16": ["compile.jit_compile=true", "compile.steps_per_execution=16", "train.mixed_precision=true"],
    "course": [],
}


def measure(args: argparse.Namespace, config: str, setting: str) -> dict:
    """Runs in a child process: build what `cnnrun train` builds, time the second of two `fit` epochs."""
    from cnnrun.cli.common import quiet_imports as _quiet_imports
    from cnnrun.config import load_experiment

    _quiet_imports()
    import keras

    from cnnrun.data import augmentation_in_model, load_splits
    from cnnrun.model.build import new_model

    steps, data = args.steps, sources(args)
    if config == "cifar10_bn_arrays" and not args.arrays.exists():
        write_arrays(load_experiment(data["cifar10_bn"][0], [*data["cifar10_bn"][1], *args.sets]), args.arrays)
    path, sets = data[config]
    experiment = load_experiment(path, [*sets, *args.sets, *SETTINGS[setting]])
    in_model = augmentation_in_model(experiment)  # as `cnnrun train` places it: in the pipeline on a CPU with
    splits = load_splits(experiment, augment=not in_model)  # TensorFlow, in the model on a GPU or on JAX
    model = new_model(experiment, splits.info, augment_in_model=in_model)
    data = course_stream(splits, experiment) if setting == "course" else splits.train
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            times.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            times[-1] = time.perf_counter() - times[-1]

    model.fit(data, epochs=2, steps_per_epoch=steps, callbacks=[Clock()], verbose=0)
    batch = experiment.train.batch_size
    return {"config": config, "setting": setting, "images_per_s": steps * batch / times[1],
            "policy": model.dtype_policy.name, "batch": batch, "steps": steps, "seconds": times[1]}


def as_arrays(examples):
    """A split's images and labels as two arrays."""
    import numpy as np

    images, labels = [], []
    for x, y in examples.dataset().batch(4096).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def write_arrays(experiment, path: Path) -> None:
    """Decode the CIFAR-10 JPEG tree once into an npz (x_train, y_train, x_test, y_test) for the arrays runs."""
    import numpy as np

    from cnnrun.data.sources import load_raw

    raw = load_raw(experiment.dataset, experiment.seed)
    (x_train, y_train), (x_test, y_test) = as_arrays(raw.train), as_arrays(raw.test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def course_stream(splits, experiment):
    """The course's pipeline: standardised arrays, augmented by ImageDataGenerator.flow, one-hot labels."""
    import numpy as np
    from tf_keras.preprocessing.image import ImageDataGenerator

    images, labels = as_arrays(splits.examples["train"])
    x = (images.astype("float32") - splits.info.mean) / splits.info.std
    y = np.eye(splits.info.num_classes, dtype="float32")[labels]
    a = experiment.augmentation
    generator = ImageDataGenerator(rotation_range=a.rotation_range, width_shift_range=a.width_shift_range,
                                   height_shift_range=a.height_shift_range, horizontal_flip=a.horizontal_flip,
                                   vertical_flip=a.vertical_flip)
    flow = generator.flow(x, y, batch_size=experiment.train.batch_size, seed=experiment.seed)
    return (batch for batch in flow)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--configs", nargs="+", default=["fashion_mnist", "cifar10_bn"], choices=CONFIGS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--fashion-mnist", type=Path, default=SHARED / "fashion-mnist",
                        help="Fashion-MNIST's four idx .gz files")
    parser.add_argument("--cifar10", type=Path, default=SHARED / "cifar10-jpeg", help="the CIFAR-10 JPEG tree")
    parser.add_argument("--arrays", type=Path, default=ARRAYS, help=f"cifar10_bn_arrays' npz (default {ARRAYS})")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, repeatable")
    parser.add_argument("--write-arrays", action="store_true",
                        help="only write --arrays from --cifar10's tree (when it is missing), then stop")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.fashion_mnist, args.cifar10, args.arrays = (p.resolve() for p in (args.fashion_mnist, args.cifar10,
                                                                           args.arrays))
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.worker:
        print(json.dumps(measure(args, *args.worker)))
        return 0
    print(cpu_line())
    if args.write_arrays:
        if not args.arrays.exists():
            from cnnrun.config import load_experiment

            path, sets = sources(args)["cifar10_bn"]
            write_arrays(load_experiment(path, [*sets, *args.sets]), args.arrays)
        print(f"arrays: {args.arrays}")
        return 0
    passed = ["--steps", str(args.steps), "--fashion-mnist", str(args.fashion_mnist), "--cifar10", str(args.cifar10),
              "--arrays", str(args.arrays), *(a for s in args.sets for a in ("--set", s))]
    failed = 0
    for config in args.configs:
        for setting in args.settings:
            if setting == "course" and not config.startswith("cifar10_bn"):
                continue
            if setting == "course" and not importlib.util.find_spec("tf_keras"):
                print(f"{config} {setting}: skipped: tf_keras is not installed (pip install tf-keras==2.21.*)",
                      flush=True)
                continue
            result = subprocess.run([sys.executable, __file__, *passed, "--worker", config, setting],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{config} {setting}: failed: {result.stderr.strip()[-2000:]}", flush=True)
                failed += 1
                continue
            r = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"RESULT config={config} setting={setting} images_per_s={r['images_per_s']:.0f} "
                  f"policy={r['policy']} batch={r['batch']} steps={r['steps']} seconds={r['seconds']:.4f}",
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
