"""How fast the command line answers: `cnnrun --help`, `config show` and a config error, against `python -c pass`.

None of them imports TensorFlow. Each command runs `--repeat` times, interleaved, and the median wall time is
printed. Each must end as it should (0, and 2 for the config error): a command that fails, or a "config error"
that starts training, would time something else, so the bench stops and says which.

Usage (from any folder):
    .venv/bin/python bench/cli.py [--repeat 7]

Tiny mode (what tests/test_bench.py runs): `--repeat 1`.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_line

PROJECT = Path(__file__).resolve().parents[1]
CNNRUN = str(Path(sys.executable).with_name("cnnrun"))
# name: (command, the exit code it must end with)
COMMANDS = {
    "python -c pass": ([sys.executable, "-c", "pass"], 0),
    "cnnrun --help": ([CNNRUN, "--help"], 0),
    "cnnrun config show configs/cifar10_bn.yaml": (
        [CNNRUN, "config", "show", str(PROJECT / "configs" / "cifar10_bn.yaml")], 0),
    "cnnrun train (config error)": (
        [CNNRUN, "train", str(PROJECT / "configs" / "quickstart.yaml"), "--set", "train.epochs=zero"], 2),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(cpu_line())
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, (command, expected) in COMMANDS.items():
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            times[name].append(time.perf_counter() - started)
            if result.returncode != expected:
                print(f"{name}: exit code {result.returncode}, expected {expected}; not timed\n"
                      f"{result.stderr[-2000:]}")
                return 1
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})")
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"RESULT help_s={medians['cnnrun --help']:.3f} python_pass_s={medians['python -c pass']:.3f} "
          f"slowest_s={max(medians.values()):.3f} under_half_second={max(medians.values()) < 0.5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
