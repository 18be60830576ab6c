"""Training images/s of the quick start on one device, two devices and two processes, on TensorFlow and JAX.

Usage (from any folder):
    .venv/bin/python bench/distribution.py [--epochs 4] [--samples 6000] [--setups N ...]

Each setup trains `configs/quickstart.yaml` with `cnnrun train` for `--epochs` epochs, without validation, test split
or plots, and reads Keras' own per-step time of every epoch after the first from process 0's output
(`188/188 - 2s - 13ms/step`); images/s is the global batch (the quick start's 32 in every setup) divided by the
median of those times, so start-up, tracing and XLA compilation (several seconds on JAX) do not count. The first
epoch's time and `fit_seconds` from the run folder's state.json are shown beside it.

Setups: TensorFlow on one device; MirroredStrategy over two logical CPU devices (`train.devices`); JAX on one
device; Keras DataParallel over two processes on 127.0.0.1 (`KERAS_DISTRIBUTION_*`, one CPU device each).
`--setups` picks some of them by number (1–4, in that order). The bench stops if process 0's output does not hold
one step-time line per epoch: a changed Keras progress line must not turn into a wrong median.

Tiny mode (what tests/test_bench.py runs): `--epochs 2 --samples 64` (two steps an epoch), `--setups 2` (two
replicas in one process; two processes on JAX take half a minute to compile even this small, and
tests/test_distribution.py trains them); the test checks every setup's overrides against the config schema. There
(CNNRUN_BENCH_IN_PROCESS=1, as bench/machine.py's commands) a one-process setup on the test's own backend trains
in the test's process, whose processor is already shown to TensorFlow as two devices.
"""

import argparse
import contextlib
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_line, here_on, in_this_process

PROJECT = Path(__file__).resolve().parents[1]
# name: (--set values, processes, replicas)
SETUPS = {
    "tensorflow, one device": (["backend=tensorflow", "train.distribution=none"], 1, 1),
    "tensorflow, MirroredStrategy, 2 logical CPU devices": (
        ["backend=tensorflow", "train.devices=[/cpu:0, /cpu:1]"], 1, 2),
    "jax, one device": (["backend=jax", "train.distribution=none"], 1, 1),
    "jax, DataParallel, 2 processes on 127.0.0.1": (["backend=jax", "train.distribution=data_parallel"], 2, 2),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STEP = re.compile(r"^\s*\d+/\d+ - (\d+)s - (\d+)(s|ms|us)/step", re.MULTILINE)
UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def printed_here(args: list[str]) -> str:
    """What `cnnrun ARGS` prints, run in this process."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = in_this_process(args, PROJECT)
    if code != 0:
        raise SystemExit(f"cnnrun {' '.join(args)} failed (exit {code})")
    return printed.getvalue()


def printed_by_processes(command: list[str], processes: int) -> list[str]:
    """Run `command` in `processes` processes (a cluster on 127.0.0.1 when more than one); what each printed."""
    port = free_port()
    children = []
    for process_id in range(processes):
        cluster = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
                   "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes),
                   "KERAS_DISTRIBUTION_PROCESS_ID": str(process_id),
                   "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}"} if processes > 1 else {}
        children.append(subprocess.Popen(command, cwd=PROJECT, env={**os.environ, **cluster},
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=1200)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
        outputs.append(out)
    return outputs


def train(sets: list[str], processes: int, epochs: int) -> tuple[list[float], list[int], float]:
    """Train once (in `processes` processes): process 0's seconds per step and per epoch, and its `fit_seconds`."""
    with tempfile.TemporaryDirectory() as output:
        args = ["train", str(PROJECT / "configs" / "quickstart.yaml"), "--output-dir", output,
                *(a for s in sets for a in ("--set", s))]
        command = [sys.executable, "-m", "cnnrun", *args]
        backend = next(s.removeprefix("backend=") for s in sets if s.startswith("backend="))
        in_process = processes == 1 and here_on(backend)  # the tests' tiny mode (bench/machine.py)
        outputs = [printed_here(args)] if in_process else printed_by_processes(command, processes)
        state = json.loads(next(Path(output).glob("*/*/state.json")).read_text())
    found = STEP.findall(outputs[0])
    if len(found) != epochs:
        raise SystemExit(f"{' '.join(command)}: {len(found)} step-time lines in process 0's output for {epochs} "
                         f"epochs:\n{outputs[0][-3000:]}")
    return ([int(step) * UNIT[unit] for _, step, unit in found], [int(seconds) for seconds, _, _ in found],
            state["fit_seconds"])


def overrides(epochs: int, samples: int) -> list[str]:
    """What every setup changes in the quick start: the images, no validation, test split or plots, the epochs."""
    return [f"dataset.num_samples={samples}", "dataset.validation_split=null", "dataset.test_samples=0",
            "output.plots=false", "train.verbose=2", f"train.epochs={epochs}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per setup, at least 2 (default 4)")
    parser.add_argument("--samples", type=int, default=6000, help="training images (default 6000)")
    parser.add_argument("--setups", type=int, nargs="+", default=list(range(1, len(SETUPS) + 1)),
                        choices=range(1, len(SETUPS) + 1), help="which setups, by number (default all)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first epoch's steps are left out of the median)")
    common = overrides(args.epochs, args.samples)
    print(cpu_line())
    print(f"quick start, {args.samples} training images, global batch 32, {args.epochs} epochs; "
          f"images/s from the median step time of epochs 2–{args.epochs}")
    print("| setup | replicas | first epoch (s) | step, epochs 2+ (ms) | images/s | fit_seconds |")
    print("|---|---|---|---|---|---|")
    for number, (name, (sets, processes, replicas)) in enumerate(SETUPS.items(), 1):
        if number not in args.setups:
            continue
        steps, seconds, fit = train(common + sets, processes, args.epochs)
        step = statistics.median(steps[1:])
        print(f"| {name} | {replicas} | {seconds[0]} | {step * 1e3:.0f} | {32 / step:,.0f} | {fit:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
