"""XLA or not on a CPU, as measured on this machine: what `cnnrun profile --compare-jit` found, and what
`compile.jit_compile: auto` follows.

Whether XLA speeds up a training step on a CPU depends on the model and on the machine, and changes from day to
day: on our 2-core AMD EPYC `cifar10_fast.yaml`'s step ran 1.4× faster with XLA on 2026-11-27 and 1.2–1.5× slower
on 2026-12-03; `fashion_mnist.yaml`'s small network 18× slower. So cnnrun does not guess. `profile --compare-jit`
times the step both ways and records which was faster, for this CPU and this step, in one JSON file; afterwards
`jit_compile: auto` on a CPU follows that record (and the header of `train` says so), and where there is none it
is Keras' own `auto` (XLA on a GPU only). `jit_compile: true` or `false` in the config always wins.

The file is `$CNNRUN_CACHE_DIR/jit.json` where that is set, else `$XDG_CACHE_HOME/cnnrun/jit.json`, else
`~/.cache/cnnrun/jit.json`; delete it to forget. A record's
key is the CPU (model, cores, instruction sets) and the step: backend, precision, batch, steps per execution,
optimizer, the model's input and output shapes and each layer's class and parameter count. Another batch size or
one layer more is another step, measured anew. Nothing here imports Keras.

Example:
>>> cpu = cpu_features()  # cnnrun.devices.machine
>>> step = step_key("tensorflow", "float32", 128, 1, "Adam", [(None, 32, 32, 3)], [("Conv2D", 896)], (None, 10))
>>> record_verdict(step, cpu, jit_compile=False, with_xla=5.9, without=4.8, config="cifar10_fast")
>>> recorded(step, cpu).jit_compile
False
"""

import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cnnrun.atomic import atomic_write_text
from cnnrun.devices.machine import CpuFeatures


@dataclass(frozen=True)
class JitRecord:
    """One measurement of a training step both ways.

    Attributes:
        jit_compile: the faster way (True: with XLA).
        with_xla: the median step with XLA, in seconds.
        without: the median step without, in seconds.
        measured: the day (ISO date).
        config: the experiment's name, for a person reading the file.
    """

    jit_compile: bool
    with_xla: float
    without: float
    measured: str
    config: str

    @property
    def ratio(self) -> float:
        """How many times faster the faster way was."""
        slow, fast = (self.without, self.with_xla) if self.jit_compile else (self.with_xla, self.without)
        return slow / fast

    def describe(self) -> str:
        """`on: 1.40× faster with XLA here (cnnrun profile --compare-jit, 2026-12-03)`."""
        way = "on: {:.2f}× faster with XLA" if self.jit_compile else "off: {:.2f}× faster without XLA"
        return way.format(self.ratio) + f" here (cnnrun profile --compare-jit, {self.measured})"


def record_file() -> Path:
    """Where the records live: `$CNNRUN_CACHE_DIR/jit.json`, else `$XDG_CACHE_HOME/cnnrun/jit.json`, else
    `~/.cache/cnnrun/jit.json`."""
    if os.environ.get("CNNRUN_CACHE_DIR"):
        return Path(os.environ["CNNRUN_CACHE_DIR"]) / "jit.json"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cnnrun" / "jit.json"


def cpu_key(cpu: CpuFeatures) -> str:
    """`<model>; <cores> cores; <flags>`: the machine part of a record's key."""
    return f"{cpu.model}; {cpu.cores} cores; {' '.join(cpu.flags) or 'none of note'}"


def step_key(backend: str, policy: str, batch_size: int, steps_per_execution: int, optimizer: str,
             input_shapes: list, layers: list[tuple[str, int]], output_shape) -> str:
    """A short digest of what decides a training step's work (see the module), the step part of a record's key."""
    described = json.dumps([backend, policy, batch_size, steps_per_execution, optimizer, [list(map(str, shape))
                            for shape in input_shapes], [list(layer) for layer in layers], str(output_shape)])
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def _read(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def recorded(step: str, cpu: CpuFeatures) -> JitRecord | None:
    """The record of `step` on `cpu`, or None (none made, or the file unreadable: then Keras' auto applies)."""
    entry = _read(record_file()).get(cpu_key(cpu), {}).get(step)
    try:
        return JitRecord(**entry) if isinstance(entry, dict) else None
    except TypeError:  # a file of another version
        return None


def record_verdict(step: str, cpu: CpuFeatures, jit_compile: bool, with_xla: float, without: float,
                   config: str) -> Path:
    """Record which way `step` was faster on `cpu` (replacing an earlier record of it); the file's path.

    Written whole (`cnnrun.atomic`), so a reader never sees half a file.
    """
    path = record_file()
    records = _read(path)
    entry = JitRecord(jit_compile, with_xla, without, datetime.date.today().isoformat(), config)
    records.setdefault(cpu_key(cpu), {})[step] = asdict(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(records, indent=1, sort_keys=True) + "\n")
    return path
