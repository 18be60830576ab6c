"""The CPU a benchmark ran on, as one line every bench script prints beside its figures; and `cnnrun(...)`, a
cnnrun command run as its own process from the project root, timed.

`cpu_line()` reads /proc/cpuinfo: the model name, the logical cores (and how many this process may use), and the
flags that change what TensorFlow's kernels can do (AVX2, AVX-512, AVX-512 BF16, AMX). Elsewhere (no
/proc/cpuinfo) it names what `platform` knows. Run it alone to see the line:

    .venv/bin/python bench/machine.py
"""

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



def cnnrun(*args: str) -> float:
    """Run `cnnrun ARGS` in a new process from the project root, its command printed first; the wall seconds (exit
    with its code on failure)."""
    command = [sys.executable, "-m", "cnnrun", *args]
    print("$ " + " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
    return time.perf_counter() - started


if __name__ == "__main__":
    print(cpu_line())
