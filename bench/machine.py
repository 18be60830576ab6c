"""The CPU a benchmark ran on, as one line every bench script prints beside its figures; and `cnnrun(...)`, a
cnnrun command run as its own process (from the project root unless told another folder), timed.

Every figure is measured with `cnnrun(...)` starting a new process, as a user's command does. Where the variable
`CNNRUN_BENCH_IN_PROCESS=1` is set (tests/test_bench.py sets it for the tiny modes), the command goes through the
same entry point in this process instead: the same code and the same run folders, without the 5–7 s TensorFlow
takes to start in every new process. Wall seconds measured that way leave that start out; the tests check what
the scripts print, not how long it took. `here_on(backend)` says the same to scripts with workers of their own
(bench/backends.py's, bench/distribution.py's one-process setups): with the variable set, work on the backend this
process already runs goes here too.

`cpu_line()` reads /proc/cpuinfo: the model name, the logical cores (and how many this process may use), and the
flags that change what TensorFlow's kernels can do (AVX2, AVX-512, AVX-512 BF16, AMX). Elsewhere (no
/proc/cpuinfo) it names what `platform` knows. Run it alone to see the line:

    .venv/bin/python bench/machine.py
"""

import contextlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_line(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """`CPU: <model>, <n> logical cores (<m> usable), flags: <the notable ones present, or none>`."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        text = cpuinfo.read_text()
    except OSError:
        return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores " \
               f"({usable} usable), flags: unknown (no {cpuinfo})"
    fields = [line.partition(":") for line in text.splitlines()]
    model = next((value.strip() for key, _, value in fields if key.strip() == "model name"), platform.machine())
    cores = sum(key.strip() == "processor" for key, _, _ in fields)
    flags = set(next((value.split() for key, _, value in fields if key.strip() in ("flags", "Features")), []))
    notable = [flag for flag in NOTABLE_FLAGS if flag in flags]
    return f"CPU: {model}, {cores} logical cores ({usable} usable), flags: {' '.join(notable) or 'none of note'}"



def cnnrun(*args: str, cwd: Path = PROJECT) -> float:
    """Run `cnnrun ARGS` in a new process from `cwd` (the project root unless given), its command printed first;
    the wall seconds (exit with its code on failure). In this process where CNNRUN_BENCH_IN_PROCESS=1."""
    command = [sys.executable, "-m", "cnnrun", *map(str, args)]
    print("$ " + " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    if os.environ.get("CNNRUN_BENCH_IN_PROCESS") == "1":
        code = in_this_process(command[3:], cwd)
    else:
        code = subprocess.run(command, cwd=cwd).returncode
    if code != 0:
        raise SystemExit(code)
    return time.perf_counter() - started


def here_on(backend: str) -> bool:
    """Whether work on Keras' `backend` (a worker's, a setup's) runs in this process rather than a new one: where
    CNNRUN_BENCH_IN_PROCESS=1 and this process already runs Keras on that backend."""
    keras = sys.modules.get("keras")
    return os.environ.get("CNNRUN_BENCH_IN_PROCESS") == "1" and keras is not None and \
        keras.backend.backend() == backend


def in_this_process(args: list[str], cwd: Path) -> int:
    """`cnnrun ARGS` through its entry point (`cnnrun.cli.main`) in this process, from `cwd`; its exit code."""
    sys.path.insert(0, str(PROJECT))
    from cnnrun import cli

    argv, sys.argv = sys.argv, ["cnnrun", *args]
    try:
        with contextlib.chdir(cwd):
            cli.main()
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
        return stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        sys.argv = argv
        sys.path.remove(str(PROJECT))
    return 0


if __name__ == "__main__":
    print(cpu_line())
