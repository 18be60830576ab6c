"""How fast one training step of a config's model runs here: pictures per second of `fit` on random data.

Builds and compiles the model exactly as `cnnrun train` does (`new_model`: the config's optimizer, loss, dtype
policy, `jit_compile`), then times `fit` over `--steps` batches of random pictures of the dataset's declared shape
after `--warmup` batches that compile the step. No data is read, so settings (batch size, `compile.jit_compile`,
`train.mixed_precision`, thread counts through the environment) can be compared on the step alone.

Prints the model's parameter count beside the speed, so that a figure is tied to the network it timed; the first
step's time (`first_step_seconds`: the optimizer's and metrics' state built, the step traced and compiled, one
batch trained), what a run spends on its step before its first batch; and how many times the step was traced
(`traces`, the calls to the model's Python `train_step`, which runs only while it is traced). `--deferred-state`
leaves that state to Keras, which on TensorFlow creates it inside the first traced step and so traces the step
twice (what `cnnrun train` did before `cnnrun/model/state.py`).

Usage (from the project root):
    .venv/bin/python bench/step_speed.py configs/cifar10_fast.yaml [--set train.batch_size=512] [--steps 5] \
        [--deferred-state]

Tiny mode (what tests/test_bench.py runs): a small `shapes` config with `--steps 2 --warmup 1`.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, repeatable")
    parser.add_argument("--steps", type=int, default=5, help="timed batches")
    parser.add_argument("--warmup", type=int, default=2, help="batches before the clock starts (at least 1)")
    parser.add_argument("--deferred-state", action="store_true",
                        help="leave the optimizer's and metrics' state to Keras' first traced step")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step traces the step and is timed on its own)")

    from cnnrun.config import load_experiment
    from cnnrun.devices.backend import prepare

    experiment = load_experiment(args.config, args.sets)
    prepare(experiment)
    from cnnrun.model.build import declared_info, new_model
    from cnnrun.model.state import build_state

    info = declared_info(experiment)
    model = new_model(experiment, info, augment_in_model=False, steps_per_epoch=args.warmup + args.steps)
    batch = experiment.train.batch_size
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *info.input_shape)).astype("float32")
    y = rng.integers(0, info.num_classes, batch)
    if experiment.dataset.label_mode == "categorical":
        y = np.eye(info.num_classes, dtype="float32")[y]
    traces, step = [0], model.train_step

    def counted(*args):  # Python, run only while the step is traced: its calls are the traces (JAX's step takes
        traces[0] += 1  # the state before the data)
        return step(*args)

    model.train_step = counted
    started = time.perf_counter()
    if not args.deferred_state:
        build_state(model, (x, y))  # as `cnnrun train` does before its fit
    model.train_on_batch(x, y)
    first = time.perf_counter() - started
    for _ in range(args.warmup - 1):
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    seconds = (time.perf_counter() - started) / args.steps
    print(cpu_line())
    print(f"RESULT config={args.config} sets={','.join(args.sets) or '-'} batch={batch} "
          f"params={model.count_params()} steps={args.steps} seconds_per_step={seconds:.4f} "
          f"images_per_second={batch / seconds:.0f} first_step_seconds={first:.2f} "
          f"state={'deferred' if args.deferred_state else 'ahead'} traces={traces[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
