"""How fast `cnnrun runs` lists 1,000 run folders (the issue asks for under 2 s).

Makes `--count` copies of a real run folder in a temporary folder (files hard-linked where the file system allows,
so the checkpoints take no space; 1 in 100 copies gets a damaged state.json, as a folder killed mid-write might),
then times each listing `--repeat` times, interleaved, each in a new process as a user runs it, and prints the
medians. The run folder is RUN_DIR, else the latest under outputs/ (train one first:
`cnnrun train configs/quickstart.yaml --set train.epochs=2`).

Usage (from the project root):
    .venv/bin/python bench/runs_listing.py [RUN_DIR] [--count 1000] [--repeat 5]

Besides the times it prints how many runs the JSON listing held and how many of them were damaged: every copy
must be listed, the damaged ones too, each with its problem.

Tiny mode (what tests/test_bench.py runs): a tiny run's folder, `--count 100 --repeat 1`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_line


def link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def make_copies(run: Path, root: Path, count: int) -> None:
    """`count` copies of `run` as `<root>/<name>/<time>-<i>`, every 100th with a damaged state.json."""
    for i in range(count):
        copy = root / run.parent.name / f"{run.name}-{i:04d}"
        shutil.copytree(run, copy, copy_function=link_or_copy, ignore=shutil.ignore_patterns("run.lock"))
        if i % 100 == 99:
            (copy / "state.json").unlink()
            (copy / "state.json").write_text('{"status": "comp')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run folder (default: the latest under outputs/)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cnnrun.run_folder.folder import find_latest_run, open_run

    print(cpu_line())
    run = open_run(args.run_dir) if args.run_dir else find_latest_run("outputs")
    with tempfile.TemporaryDirectory(prefix="runs-bench-") as folder:
        root = Path(folder)
        started = time.perf_counter()
        make_copies(run.path, root, args.count)
        print(f"{args.count} copies of {run.path} in {time.perf_counter() - started:.1f} s")
        cnnrun = [sys.executable, "-m", "cnnrun", "runs", str(root)]
        commands = {
            "cnnrun runs DIR (table)": cnnrun,
            "cnnrun runs DIR --format json": [*cnnrun, "--format", "json"],
            "cnnrun runs DIR --where status=completed --sort -test_best": [*cnnrun, "--where", "status=completed",
                                                                             "--sort", "-test_best"],
            "cnnrun runs DIR --where compile.optimizer=adam (reads config.yaml)": [*cnnrun, "--where",
                                                                                  "compile.optimizer=adam"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        listed: list[dict] = []
        for _ in range(args.repeat):
            for name, command in commands.items():
                started = time.perf_counter()
                result = subprocess.run(command, capture_output=True, text=True)
                times[name].append(time.perf_counter() - started)
                if result.returncode != 0:
                    print(f"{name} failed:\n{result.stderr}")
                    return 1
                if name == "cnnrun runs DIR --format json":
                    listed = json.loads(result.stdout)

    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})")
    listing = statistics.median(times["cnnrun runs DIR (table)"])
    damaged = sum(row["status"] == "damaged" for row in listed)
    print(f"RESULT folders={args.count} table_s={listing:.3f} under_2_s={listing < 2} rows_listed={len(listed)} "
          f"damaged_listed={damaged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
