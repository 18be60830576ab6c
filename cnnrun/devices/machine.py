"""What the machine offers a training step: the CPU's instruction sets, the thread settings, and a matmul probe.

Speed figures mean little without the machine they ran on (one of ours had AVX-512 and AMX, another only AVX2),
so `cnnrun profile` states all three beside its timings. The probe is the ceiling a convolution can hope for:
square matrix products on the same cores, in the precision the model computes in, through the Keras backend.

Example:
>>> cpu = cpu_features()
>>> "avx2" in cpu.flags  # on a CPU of the last ten years
True
>>> probe = matmul_ceiling("float32", size=256, repeats=2)
>>> probe.gflops > 0
True
"""

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# the instruction sets that decide how fast convolutions and matrix products can be, oldest first
SPEED_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
               "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                    "KMP_AFFINITY", "KMP_BLOCKTIME")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU as /proc/cpuinfo describes it.

    Attributes:
        model: the first processor's `model name` ("unknown" where /proc/cpuinfo is not readable).
        flags: which of `SPEED_FLAGS` it has, in that order.
        cores: the processors this process may run on (its affinity), else `os.cpu_count()`.
    """

    model: str
    flags: tuple[str, ...]
    cores: int

    @property
    def native_bf16(self) -> bool:
        """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16)."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags


@dataclass(frozen=True)
class ThreadSettings:
    """The settings that decide how many threads a step uses.

    Attributes:
        backend: the Keras backend.
        intra_op: TensorFlow's intra-op threads (0: TensorFlow chooses, one per core); None on another backend.
        inter_op: TensorFlow's inter-op threads, likewise.
        environment: each of `THREAD_VARIABLES` that is set, with its value.
    """

    backend: str
    intra_op: int | None
    inter_op: int | None
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MatmulProbe:
    """The best of `repeats` square matrix products of `size`, in `dtype`: the machine's ceiling.

    Attributes:
        dtype: float32, bfloat16 or float16.
        size: the side of the square matrices (one product is 2·size³ FLOPs).
        seconds: the fastest product's time.
        gflops: 2·size³ / seconds / 10⁹.
    """

    dtype: str
    size: int
    seconds: float
    gflops: float


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
    """Read the CPU's model and instruction sets from `cpuinfo` (the first processor's lines)."""
    model, flags = "unknown", set()
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return CpuFeatures(model, tuple(flag for flag in SPEED_FLAGS if flag in flags), cores)


def thread_settings() -> ThreadSettings:
    """The Keras backend, TensorFlow's thread pools and the environment variables that set threads."""
    import keras

    backend = keras.backend.backend()
    intra = inter = None
    if backend == "tensorflow":
        import tensorflow as tf

        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
    environment = {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ}
    return ThreadSettings(backend, intra, inter, environment)


def compute_dtype(policy: str) -> str:
    """The dtype a Keras dtype policy computes in: `mixed_bfloat16` → bfloat16, `mixed_float16` → float16."""
    return {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(policy, policy)


@functools.cache
def matmul_ceiling(dtype: str = "float32", size: int = 2048, repeats: int = 3) -> MatmulProbe:
    """Time `repeats` products of two random `size`×`size` matrices in `dtype` through the Keras backend (after one
    product to warm up) and return the fastest as GFLOP/s: the most a training step on these cores can reach.
    Measured once a process for each set of arguments (the cores and threads do not change; about 1 s each)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32), dtype=dtype)
            for _ in range(2))
    def wait(product):  # waits for the product and copies one number (as float32: NumPy has no bfloat16)
        keras.ops.convert_to_numpy(keras.ops.cast(product[0, 0], "float32"))

    wait(keras.ops.matmul(a, b))  # warm-up: kernels chosen, threads started
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        wait(keras.ops.matmul(a, b))
        best = min(best, time.perf_counter() - started)
    return MatmulProbe(dtype, size, best, 2 * size**3 / best / 1e9)
