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

Usage (from the project root):
    .venv/bin/python bench/throughput.py [--steps 96] [--configs NAME ...] [--settings NAME ...]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ARRAYS = Path(tempfile.gettempdir()) / "cnnrun-bench-cifar10.npz"
# name → (config, its data): the CIFAR-10 JPEG tree streamed from disk, or decoded once into an npz of arrays
DATA = {
    "fashion_mnist": ("fashion_mnist", [f"dataset.data_dir={SHARED / 'fashion-mnist'}"]),
    "cifar10_bn": ("cifar10_bn", [f"dataset.data_dir={SHARED / 'cifar10-jpeg'}"]),
    "cifar10_bn_arrays": ("cifar10_bn", ["dataset.name=npz", f"dataset.path={ARRAYS}"]),
    "cifar10_resnet20": ("cifar10_resnet20", [f"dataset.data_dir={SHARED / 'cifar10-jpeg'}"]),
}
SETTINGS = {
    "default": [],
    "xla": ["compile.jit_compile=true"],
    "spe16": ["compile.steps_per_execution=16"],
    "bf16": ["compile.steps_per_execution=16", "train.mixed_precision=true"],
    "xla_bf16": ["compile.jit_compile=true", "compile.steps_per_execution=16", "train.mixed_precision=true"],
    "course": [],
}


def measure(config: str, setting: str, steps: int) -> dict:
    """Runs in a child process: build what `cnnrun train` builds, time the second of two `fit` epochs."""
    from cnnrun.cli.common import quiet_imports as _quiet_imports
    from cnnrun.config import load_experiment

    _quiet_imports()
    import keras

    from cnnrun.data import load_splits
    from cnnrun.model.build import new_model

    name, data = DATA[config]
    if config == "cifar10_bn_arrays" and not ARRAYS.exists():
        write_arrays(load_experiment("configs/cifar10_bn.yaml", DATA["cifar10_bn"][1]))
    experiment = load_experiment(f"configs/{name}.yaml", [*data, *SETTINGS[setting]])
    splits = load_splits(experiment)  # augmented in the pipeline, as on a CPU (placement: auto)
    model = new_model(experiment, splits.info, augment_in_model=False)
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
            "policy": model.dtype_policy.name}


def as_arrays(examples):
    """A split's images and labels as two arrays."""
    import numpy as np

    images, labels = [], []
    for x, y in examples.dataset().batch(4096).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def write_arrays(experiment) -> None:
    """Decode the CIFAR-10 JPEG tree once into an npz (x_train, y_train, x_test, y_test) for the arrays runs."""
    import numpy as np

    from cnnrun.data.sources import load_raw

    raw = load_raw(experiment.dataset, experiment.seed)
    (x_train, y_train), (x_test, y_test) = as_arrays(raw.train), as_arrays(raw.test)
    np.savez(ARRAYS, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--configs", nargs="+", default=["fashion_mnist", "cifar10_bn"], choices=list(DATA))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(*args.worker, args.steps)))
        return 0
    for config in args.configs:
        for setting in args.settings:
            if setting == "course" and not config.startswith("cifar10_bn"):
                continue
            result = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--worker", config,
                                     setting], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{config} {setting}: failed: {result.stderr.strip().splitlines()[-1]}", flush=True)
                continue
            r = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"RESULT config={config} setting={setting} images_per_s={r['images_per_s']:.0f} "
                  f"policy={r['policy']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
