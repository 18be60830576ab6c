"""How large the page `cnnrun report` writes is, and how long it takes to write: one quick-start run, and a folder
of three runs.

Without RUN_DIR it first trains configs/quickstart.yaml (`--config` and `--set` change that) with `cnnrun train`,
as `make demo` does. The folder of three runs is `--runs FOLDER` when given, else three copies of the run
(hard-linked where the file system allows, as bench/runs_listing.py makes them): the page of many runs reads each
run's files the same way, so copies cost what runs do. Each page is then written `--repeat` times by
`cnnrun.tasks.report.write_report` in this process, and `--repeat` times by `cnnrun report … --out FILE` in a new
process, as a user runs it (Python's start and the imports included).

Prints per page its size in MB (10⁶ bytes) and the medians (with min and max) of both timings, then one RESULT
line. The run and the pages are written in a temporary folder and removed, unless `--output-dir DIR` is given:
then the trained run is kept in DIR/runs, the copies in DIR/three, the pages as DIR/run.html and DIR/runs.html.

Usage (from the project root):
    .venv/bin/python bench/report.py [RUN_DIR] [--runs FOLDER] [--config configs/quickstart.yaml] [--set K=V]...
        [--repeat 3] [--output-dir DIR]

Tiny mode (what tests/test_bench.py runs): `--config` a small `shapes` config of two epochs, `--repeat 1`,
`--output-dir`.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cnnrun, cpu_line

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished run folder (default: train one)")
    parser.add_argument("--runs", type=Path, help="a folder of runs (default: three copies of the run)")
    parser.add_argument("--config", type=Path, default=PROJECT / "configs" / "quickstart.yaml",
                        help="what to train when no RUN_DIR is given")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, repeatable")
    parser.add_argument("--repeat", type=int, default=3, help="writes of each page, by each way")
    parser.add_argument("--output-dir", type=Path, help="keep the run, the copies and the pages here")
    return parser.parse_args(argv)


def train(config: Path, sets: list[str], output: Path) -> Path:
    """`cnnrun train CONFIG --set …` into `output` (its output shown); the run folder it made."""
    overrides = [arg for value in sets for arg in ("--set", value)]
    cnnrun("train", config, *overrides, "--output-dir", output, cwd=Path.cwd())
    (run,) = [path for path in output.glob("*/*") if path.is_dir()]
    return run


def link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def three_copies(run: Path, root: Path) -> Path:
    """`root/<name>/<time>-copy1…3`: three copies of `run` (its report.html and run.lock left out); `root`."""
    for i in (1, 2, 3):
        shutil.copytree(run, root / run.parent.name / f"{run.name}-copy{i}", copy_function=link_or_copy,
                        ignore=shutil.ignore_patterns("run.lock", "report.html"))
    return root


def timed(what, repeat: int) -> list[float]:
    """The seconds each of `repeat` calls of `what()` took."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        what()
        seconds.append(time.perf_counter() - started)
    return seconds


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def measure(label: str, paths: list[Path], page: Path, repeat: int) -> dict[str, str]:
    """Write the page of `paths` to `page` `repeat` times in this process and by the command; print and return
    the figures."""
    from cnnrun.tasks.report import write_report

    written = []
    in_process = timed(lambda: written.append(write_report(paths, page)), repeat)
    size = page.stat().st_size
    with tempfile.TemporaryDirectory(prefix="report-bench-") as scratch:
        command = [sys.executable, "-m", "cnnrun", "report", *map(str, paths), "--out", str(Path(scratch) / "p.html")]
        by_command = timed(lambda: subprocess.run(command, check=True, capture_output=True), repeat)
    print(f"{label}: {written[-1].kind} page of {written[-1].runs} run(s), {size / 1e6:.2f} MB ({size:,} bytes); "
          f"write_report {summary(in_process)}; cnnrun report (a new process) {summary(by_command)}")
    return {"bytes": str(size), "mb": f"{size / 1e6:.2f}", "s": f"{statistics.median(in_process):.3f}",
            "command_s": f"{statistics.median(by_command):.3f}"}


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.repeat < 1:
        print("--repeat: at least 1")
        return 2
    with tempfile.TemporaryDirectory(prefix="report-bench-") as scratch:
        folder = args.output_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        run = args.run_dir or train(args.config, args.sets, folder / "runs")
        runs = args.runs or three_copies(run, folder / "three")
        print(cpu_line())
        one = measure(f"run {run.resolve()}", [run], folder / "run.html", args.repeat)
        many = measure(f"runs {runs.resolve()}", [runs], folder / "runs.html", args.repeat)
    print("RESULT " + " ".join(f"{page}_{key}={value}" for page, figures in (("run", one), ("runs", many))
                               for key, value in figures.items()) + f" repeat={args.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
