"""What must happen before Keras is imported: the backend choice and the cluster checks.

Keras fixes its backend when it is first imported, so `prepare` runs first (the CLI calls it before anything
imports Keras): it checks the environment, sets `KERAS_BACKEND` and, in a cluster, waits for the coordinator.
Nothing here imports Keras or TensorFlow; `cnnrun.devices.distribute` starts the strategies afterwards.

Example:
>>> cluster = prepare(experiment)     # None on one machine
>>> import keras                      # now on experiment.backend
"""

import errno
import importlib.util
import os
import socket
import sys
import time
from dataclasses import dataclass

from cnnrun.config import Experiment
from cnnrun.errors import UserError

CLUSTER_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                     "KERAS_DISTRIBUTION_PROCESS_ID")
GUIDE = "see the README, 'Training on several GPUs / machines'"


@dataclass(frozen=True)
class Cluster:
    """The processes that `KERAS_DISTRIBUTION_*` describe; process 0 runs the coordinator."""

    coordinator: str
    num_processes: int
    process_id: int

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.coordinator.rpartition(":")
        return host.strip("[]"), int(port)


def read_cluster() -> Cluster | None:
    """The cluster that this process's `KERAS_DISTRIBUTION_*` variables describe, or None when none is set."""
    environ = os.environ
    present = [name for name in CLUSTER_VARIABLES if environ.get(name)]
    if not present:
        return None
    missing = [name for name in CLUSTER_VARIABLES if name not in present]
    if missing:
        raise UserError(f"{', '.join(present)} set but not {', '.join(missing)}: a process of a cluster needs all "
                        "three", fix=GUIDE)
    addresses = [a.strip() for a in environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")]
    host, _, port = addresses[0].rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"'{addresses[0]}' is not HOST:PORT (e.g. 10.0.0.1:1234), the address of process 0",
                        where="KERAS_DISTRIBUTION_JOB_ADDRESSES")
    try:
        num_processes = int(environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
        process_id = int(environ["KERAS_DISTRIBUTION_PROCESS_ID"])
    except ValueError as e:
        raise UserError("whole numbers, e.g. 2 and 0",
                        where="KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID") from e
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UserError(f"{process_id} is not one of 0 … {num_processes - 1} (KERAS_DISTRIBUTION_NUM_PROCESSES is "
                        f"{num_processes})", where="KERAS_DISTRIBUTION_PROCESS_ID")
    if len(addresses) > 1 and len(addresses) != num_processes:
        raise UserError(f"{len(addresses)} addresses for {num_processes} processes",
                        where="KERAS_DISTRIBUTION_JOB_ADDRESSES", fix="give one per process, or only process 0's")
    return Cluster(addresses[0], num_processes, process_id)


def use_backend(backend: str) -> None:
    """Make `backend` the Keras backend of this process: it must be chosen before keras is first imported.

    Args:
        backend: `tensorflow` or `jax`.
    """
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        raise UserError("jax is not installed", where="backend",
                        fix="pip install 'cnnrun[jax]' (or set backend: tensorflow)")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise UserError(f"{backend}, but Keras already runs on {keras.backend.backend()} in this process",
                            where="backend",
                            fix=f"start a new one (or set KERAS_BACKEND={backend} before importing keras)")
        return
    os.environ["KERAS_BACKEND"] = backend


def import_keras() -> None:
    """Import TensorFlow and Keras on the backend `use_backend` chose, without importing JAX on TensorFlow's.

    TensorFlow's import reaches `tensorflow.lite.python.util`, which imports JAX whenever it is installed (for
    TFLite's JAX converter, which cnnrun never uses): 0.9 s of the 6 s TensorFlow takes to start on our 2-core CPU,
    in every `cnnrun train`, `evaluate` or `predict` where the `jax` extra is installed. On the TensorFlow backend
    JAX is hidden while TensorFlow imports (`sys.modules["jax"] = None` makes `import jax` raise ImportError, which
    TensorFlow expects) and shown again at once, so a later `import jax` works as before. On the JAX backend, or
    when TensorFlow or JAX is already imported, it is a plain import.

    On the JAX backend, compiled steps are kept on disk for the next process (JAX's persistent compilation cache,
    in `jax/` beside `cnnrun.devices.jit_record`'s file, unless `JAX_COMPILATION_CACHE_DIR` says where): a run of a
    network compiled before skips most of its compilation (measured: the first step of `cifar10_fast.yaml` on the
    2-core CPU, 4.6 s, then 2.2 s; docs/performance.md).
    """
    if os.environ.get("KERAS_BACKEND") == "jax" and "jax" not in sys.modules:
        from cnnrun.devices.jit_record import record_file

        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(record_file().parent / "jax"))
    hide = (os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow" and "tensorflow" not in sys.modules
            and "jax" not in sys.modules)
    if hide:
        sys.modules["jax"] = None  # type: ignore[assignment]
    try:
        import tensorflow  # noqa: F401
    finally:
        if hide:
            del sys.modules["jax"]
    import keras  # noqa: F401


def prepare(experiment: Experiment) -> Cluster | None:
    """Check that the experiment's backend and distribution fit the environment; choose the backend.

    Runs before Keras or TensorFlow is imported (the CLI calls it first, so that mistakes are reported at once;
    `place` calls it again, which changes nothing). In a cluster, a process other than 0 waits up to
    `train.coordinator_timeout` seconds for the coordinator to accept connections; process 0 checks that the
    coordinator's address is its own and its port is free.

    Args:
        experiment: the validated experiment.

    Returns:
        The cluster `KERAS_DISTRIBUTION_*` describe, or None.
    """
    backend, train = experiment.backend, experiment.train
    if os.environ.get("TF_CONFIG"):
        raise UserError("TF_CONFIG is set, but cnnrun does not train with TensorFlow's MultiWorkerMirroredStrategy: "
                        "it does not work with Keras 3's fit (keras-team/keras#20585). Several machines train on "
                        "backend: jax with KERAS_DISTRIBUTION_* set instead", fix=f"unset TF_CONFIG ({GUIDE})")
    cluster = read_cluster()
    if cluster and backend != "jax":
        raise UserError(f"KERAS_DISTRIBUTION_* are set (training in {cluster.num_processes} processes), which runs "
                        "on Keras' distribution API with the JAX backend", fix=f"set backend: jax (now {backend})")
    if cluster and train.distribution in ("none", "mirrored"):
        raise UserError(f"{train.distribution}, but KERAS_DISTRIBUTION_* are set", where="train.distribution",
                        fix="processes of a cluster train with data_parallel (or auto), or unset "
                        "KERAS_DISTRIBUTION_*")
    if train.distribution == "mirrored" and backend != "tensorflow":
        raise UserError("mirrored is TensorFlow's MirroredStrategy", where="train.distribution",
                        fix="on backend: jax use data_parallel (or auto)")
    if train.distribution == "data_parallel" and backend != "jax":
        raise UserError("data_parallel is Keras' distribution API, which cnnrun runs on the JAX backend",
                        where="train.distribution", fix="set backend: jax, or use mirrored on tensorflow")
    if train.devices and (backend != "tensorflow" or train.distribution not in ("auto", "mirrored")):
        raise UserError("only for distribution: mirrored on the tensorflow backend", where="train.devices",
                        fix="data_parallel trains on every device of every process")
    if train.devices:
        check_batch_size(train.batch_size, len(train.devices))
    use_backend(backend)
    if cluster and cluster.process_id == 0:
        _check_own_address(cluster)
    elif cluster:
        _wait_for_coordinator(cluster, train.coordinator_timeout)
    return cluster


def _check_own_address(cluster: Cluster) -> None:
    """Process 0 runs the coordinator: its address must belong to this machine and its port be free."""
    host, port = cluster.host_port
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UserError(f"cannot resolve '{host}' ({e.strerror})", where="KERAS_DISTRIBUTION_JOB_ADDRESSES") from e
    with socket.socket(family, kind) as probe:
        try:
            probe.bind(address)
        except OSError as e:
            what = (f"port {port} is in use; choose a free one" if e.errno == errno.EADDRINUSE else
                    f"{host} is not an address of this machine; process 0 runs the coordinator, so the first "
                    f"address must be its own" if e.errno == errno.EADDRNOTAVAIL else e.strerror)
            raise UserError(what, where=f"KERAS_DISTRIBUTION_JOB_ADDRESSES: {cluster.coordinator}") from e


def _wait_for_coordinator(cluster: Cluster, timeout: float) -> None:
    """Wait until the coordinator accepts TCP connections, at most `timeout` seconds."""
    host, port = cluster.host_port
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except socket.gaierror as e:
            raise UserError(f"cannot resolve '{host}' ({e.strerror})", where="KERAS_DISTRIBUTION_JOB_ADDRESSES") \
                from e
        except OSError as e:
            if time.monotonic() >= deadline:
                raise UserError(f"cannot reach the coordinator {cluster.coordinator} (process 0) within {timeout:g} "
                                f"s ({e.strerror or e})", where=f"process {cluster.process_id}",
                                fix="start process 0, check the address and that its port is open "
                                "(train.coordinator_timeout sets the wait)") from e
        time.sleep(0.25)


def check_batch_size(batch_size: int, replicas: int) -> None:
    """The global batch must split evenly over the replicas."""
    if batch_size % replicas:
        raise UserError(f"{batch_size} does not split evenly over {replicas} replicas", where="train.batch_size",
                        fix=f"use a multiple of {replicas}, e.g. {-(-batch_size // replicas) * replicas}")
