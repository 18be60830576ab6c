"""How fast the command line answers: `cnnrun --help`, `config show` and a config error, against `python -c pass`.

None of them imports TensorFlow. Each command runs `--repeat` times, interleaved, and the median wall time is
printed.

Usage (from the project root):
    .venv/bin/python bench/cli.py [--repeat 7]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CNNRUN = str(Path(sys.executable).with_name("cnnrun"))
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "cnnrun --help": [CNNRUN, "--help"],
    "cnnrun config show configs/cifar10_bn.yaml": [CNNRUN, "config", "show", "configs/cifar10_bn.yaml"],
    "cnnrun train (config error)": [CNNRUN, "train", "configs/quickstart.yaml", "--set", "train.epochs=zero"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(command, capture_output=True)
            times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})")
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"RESULT help_s={medians['cnnrun --help']:.3f} python_pass_s={medians['python -c pass']:.3f} "
          f"slowest_s={max(medians.values()):.3f} under_half_second={max(medians.values()) < 0.5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
