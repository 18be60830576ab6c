"""One config's training step on each Keras backend: TensorFlow, JAX and PyTorch, pictures per second here.

cnnrun builds and compiles CONFIG's model as `cnnrun train` does, then writes it in Keras' own formats: the
architecture as JSON (`model.to_json()`), the optimizer's and the loss's configs. Each backend then loads that in a
process of its own (`KERAS_BACKEND=tensorflow|jax|torch`, with the Python given by `--python BACKEND=PATH` or this
one), makes the weights anew from the layers' initialisers, and times `train_on_batch` on random pictures of the
config's shape: the first step alone (it traces and compiles the step), `--warmup` more, then `--steps` timed. Like
for like: the same layers, data format (channels last, as cnnrun's models are), batch, optimizer, loss and
float32; each backend with its own default threads; XLA on TensorFlow as cnnrun chose it for the config, JAX's
step compiled as JAX always does, PyTorch's eager (Keras' `jit_compile="auto"` there). Nothing is read from disk
but the config.

Keras 3's PyTorch backend is not one cnnrun offers (`backend:` takes `tensorflow` or `jax`); this bench is how
that choice is measured (docs/performance.md, "Keras backends"). PyTorch is not one of cnnrun's dependencies: give
a Python that has it and Keras (`--python torch=/path/to/venv/bin/python`), and for a config with layers of
cnnrun's own (`cifar10_fast.yaml`'s `PatchWhitening`) also pydantic, pyyaml and scikit-image, which cnnrun's layer
modules import (this tree is put on its path; TensorFlow is not needed). A backend that cannot be imported is
skipped with one line saying so; the others are still measured.

Prints one line per backend and `RESULT backend=… images_per_s=… first_step_s=…` lines, then each backend's speed
as a ratio of TensorFlow's.

Usage (from the project root):
    .venv/bin/python bench/backends.py configs/cifar10_bn.yaml [--backends tensorflow,jax,torch] \\
        [--python torch=/tmp/torchvenv/bin/python] [--steps 10] [--warmup 2] [--set KEY=VALUE]...

Tiny mode (what tests/test_bench.py runs): a small `shapes` config, `--steps 2 --warmup 1`; there TensorFlow's
worker runs in the test's process (CNNRUN_BENCH_IN_PROCESS=1, as bench/machine.py's commands), JAX's in its own.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_line, here_on

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # this tree's cnnrun, in the driver and in each backend's process
BACKENDS = ("tensorflow", "jax", "torch")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, nargs="?")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, from " + ", ".join(BACKENDS))
    parser.add_argument("--python", action="append", default=[], metavar="BACKEND=PATH",
                        help="the Python that runs that backend's process (repeatable); default: this one")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="steps after the first, not timed")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, repeatable")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # BACKEND SPEC_FILE, in the backend's process
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if args.config is None:
        parser.error("give a config")
    args.backends = args.backends.split(",")
    unknown = [name for name in args.backends if name not in BACKENDS]
    if unknown:
        parser.error(f"--backends: unknown {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    pythons = {}
    for item in args.python:
        name, sep, path = item.partition("=")
        if not sep or name not in BACKENDS:
            parser.error(f"--python {item}: give BACKEND=PATH, BACKEND one of {', '.join(BACKENDS)}")
        pythons[name] = path
    args.python = pythons
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    return args


def write_spec(config: Path, sets: list[str], spec_file: Path) -> dict:
    """Build and compile CONFIG's model as `cnnrun train` does; write what every backend loads; return its facts."""
    from cnnrun.config import load_experiment
    from cnnrun.devices.backend import prepare

    experiment = load_experiment(config, sets)
    prepare(experiment)
    import keras

    from cnnrun.model.build import declared_info, new_model

    info = declared_info(experiment)
    model = new_model(experiment, info, augment_in_model=False)
    spec = {"model": model.to_json(), "optimizer": keras.optimizers.serialize(model.optimizer),
            "loss": keras.losses.serialize(model.loss) if not isinstance(model.loss, str) else model.loss,
            "batch": experiment.train.batch_size, "shape": list(info.input_shape), "classes": info.num_classes,
            "one_hot": experiment.dataset.label_mode == "categorical", "params": model.count_params(),
            "jit_compile": bool(getattr(model, "jit_compile", False))}
    spec_file.write_text(json.dumps(spec))
    return spec


def worker(backend: str, spec_file: Path, steps: int, warmup: int) -> dict:
    """In the backend's own process: load the model, time its steps; what was measured."""
    import keras
    import numpy as np

    if keras.backend.backend() != backend:
        raise SystemExit(f"Keras started with {keras.backend.backend()}, not {backend}")
    try:  # cnnrun's own layers (PatchWhitening, …) register themselves with Keras when imported
        import cnnrun.model.custom_objects  # noqa: F401
    except ImportError:  # a Python without cnnrun's dependencies: a model of Keras' own layers still loads
        pass
    spec = json.loads(spec_file.read_text())
    keras.utils.set_random_seed(0)
    model = keras.models.model_from_json(spec["model"])
    loss = keras.losses.get(spec["loss"])  # a name or a serialized Loss
    # XLA as cnnrun chose it on TensorFlow; JAX always compiles its step, PyTorch runs it eagerly (Keras' "auto")
    jit = spec["jit_compile"] if backend == "tensorflow" else "auto"
    model.compile(optimizer=keras.optimizers.deserialize(spec["optimizer"]), loss=loss, metrics=["accuracy"],
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(spec["batch"], *spec["shape"])).astype("float32")
    y = rng.integers(0, spec["classes"], spec["batch"])
    if spec["one_hot"]:
        y = np.eye(spec["classes"], dtype="float32")[y]
    started = time.perf_counter()
    model.train_on_batch(x, y)  # returns the loss as numbers: the step is done
    first = time.perf_counter() - started
    for _ in range(warmup):
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - started
    version = __import__(backend).__version__
    return {"backend": backend, "version": version, "keras": keras.__version__, "params": model.count_params(),
            "images_per_s": steps * spec["batch"] / seconds, "step_s": seconds / steps, "first_step_s": first}


def measure(backend: str, python: str, spec_file: Path, steps: int, warmup: int) -> tuple[dict | None, str]:
    """Run the backend's process; its figures, or None and why not.

    Where CNNRUN_BENCH_IN_PROCESS=1 (the tests' tiny mode, bench/machine.py), the backend this process already
    runs Keras on is measured here instead: the same worker, without a second TensorFlow start."""
    if python == sys.executable and here_on(backend):
        return worker(backend, spec_file, steps, warmup), ""
    command = [python, __file__, "--worker", backend, str(spec_file), "--steps", str(steps), "--warmup", str(warmup)]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env)
    except OSError as e:
        return None, f"{python} cannot be run: {e.strerror}"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        missing = next((line for line in reversed(lines) if "No module named" in line), None)
        if missing:
            return None, f"not installed for {python} ({missing.split(': ', 1)[-1]})"
        return None, f"failed: {lines[-1][:300]}"
    return json.loads(result.stdout.strip().splitlines()[-1]), ""


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.worker:
        os.environ["KERAS_BACKEND"] = args.worker[0]  # before Keras is imported
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]), args.steps, args.warmup)))
        return 0
    print(cpu_line())
    measured = {}
    with tempfile.TemporaryDirectory(prefix="backends-bench-") as scratch:
        spec_file = Path(scratch) / "model.json"
        spec = write_spec(args.config, args.sets, spec_file)
        print(f"{args.config}: {spec['params']:,} parameters, batch {spec['batch']} of "
              f"{'×'.join(map(str, spec['shape']))}, {args.steps} steps timed after {1 + args.warmup}, "
              f"XLA {'on' if spec['jit_compile'] else 'off'} on TensorFlow", flush=True)
        for backend in args.backends:
            python = args.python.get(backend, sys.executable)
            figures, why = measure(backend, python, spec_file, args.steps, args.warmup)
            if figures is None:
                print(f"{backend}: skipped: {why}", flush=True)
                continue
            if figures["params"] != spec["params"]:
                raise SystemExit(f"{backend} built {figures['params']:,} parameters, not {spec['params']:,}")
            measured[backend] = figures
            print(f"{backend} {figures['version']} (Keras {figures['keras']}): {figures['images_per_s']:.1f} images/s, "
                  f"{figures['step_s'] * 1000:.1f} ms a step, first step {figures['first_step_s']:.2f} s", flush=True)
            print(f"RESULT backend={backend} images_per_s={figures['images_per_s']:.1f} "
                  f"step_ms={figures['step_s'] * 1000:.1f} first_step_s={figures['first_step_s']:.2f}", flush=True)
    if "tensorflow" in measured:
        base = measured["tensorflow"]["images_per_s"]
        print("against TensorFlow: " + ", ".join(f"{name} {figures['images_per_s'] / base:.2f}×"
                                                  for name, figures in measured.items()))
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
