"""Backend and distribution: which Keras backend trains, on which devices, in how many processes.

cnnrun trains on the engines Keras and TensorFlow maintain, nothing of its own:

- one machine, several GPUs, TensorFlow backend: `tf.distribute.MirroredStrategy`;
- one machine or several, JAX backend: Keras' `keras.distribution.DataParallel`; the processes of a cluster join
  through `keras.distribution.initialize()`, which reads `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
  `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` (JAX's CPU collectives: gloo).

TensorFlow's MultiWorkerMirroredStrategy does not work with Keras 3's `fit` (keras-team/keras#20585), so several
machines train on the JAX backend.

Keras fixes its backend when it is first imported, so `prepare` runs before that: it checks the environment, sets
`KERAS_BACKEND` and, in a cluster, waits for the coordinator. `place` then starts the strategy or distribution.

Example:
>>> placement = place(experiment)            # calls prepare(experiment) first
>>> with placement.scope():
...     model = build_model(experiment, input_shape, num_classes)
"""

import contextlib
import errno
import hashlib
import importlib.util
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
        raise UserError(f"{', '.join(present)} set but not {', '.join(missing)}: a process of a cluster needs "
                        f"all three; {GUIDE}")
    addresses = [a.strip() for a in environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")]
    host, _, port = addresses[0].rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"KERAS_DISTRIBUTION_JOB_ADDRESSES: '{addresses[0]}' is not HOST:PORT (e.g. 10.0.0.1:1234), "
                        f"the address of process 0")
    try:
        num_processes = int(environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
        process_id = int(environ["KERAS_DISTRIBUTION_PROCESS_ID"])
    except ValueError as e:
        raise UserError("KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID: whole numbers, "
                        "e.g. 2 and 0") from e
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UserError(f"KERAS_DISTRIBUTION_PROCESS_ID: {process_id} is not one of 0 … {num_processes - 1} "
                        f"(KERAS_DISTRIBUTION_NUM_PROCESSES is {num_processes})")
    if len(addresses) > 1 and len(addresses) != num_processes:
        raise UserError(f"KERAS_DISTRIBUTION_JOB_ADDRESSES: {len(addresses)} addresses for "
                        f"{num_processes} processes; give one per process, or only process 0's")
    return Cluster(addresses[0], num_processes, process_id)


def use_backend(backend: str) -> None:
    """Make `backend` the Keras backend of this process: it must be chosen before keras is first imported.

    Args:
        backend: `tensorflow` or `jax`.
    """
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        raise UserError("backend: jax is not installed; pip install 'cnnrun[jax]' (or set backend: tensorflow)")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise UserError(f"backend: {backend}, but Keras already runs on {keras.backend.backend()} in this "
                            f"process; start a new one (or set KERAS_BACKEND={backend} before importing keras)")
        return
    os.environ["KERAS_BACKEND"] = backend


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
                        f"backend: jax with KERAS_DISTRIBUTION_* set instead; unset TF_CONFIG ({GUIDE})")
    cluster = read_cluster()
    if cluster and backend != "jax":
        raise UserError(f"KERAS_DISTRIBUTION_* are set (training in {cluster.num_processes} processes), which runs "
                        f"on Keras' distribution API with the JAX backend; set backend: jax (now {backend})")
    if cluster and train.distribution in ("none", "mirrored"):
        raise UserError(f"train.distribution: {train.distribution}, but KERAS_DISTRIBUTION_* are set; processes of "
                        f"a cluster train with data_parallel (or auto), or unset KERAS_DISTRIBUTION_*")
    if train.distribution == "mirrored" and backend != "tensorflow":
        raise UserError("train.distribution: mirrored is TensorFlow's MirroredStrategy; on backend: jax use "
                        "data_parallel (or auto)")
    if train.distribution == "data_parallel" and backend != "jax":
        raise UserError("train.distribution: data_parallel is Keras' distribution API, which cnnrun runs on the JAX "
                        "backend; set backend: jax, or use mirrored on tensorflow")
    if train.devices and (backend != "tensorflow" or train.distribution not in ("auto", "mirrored")):
        raise UserError("train.devices: only for distribution: mirrored on the tensorflow backend; data_parallel "
                        "trains on every device of every process")
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
        raise UserError(f"KERAS_DISTRIBUTION_JOB_ADDRESSES: cannot resolve '{host}' ({e.strerror})") from e
    with socket.socket(family, kind) as probe:
        try:
            probe.bind(address)
        except OSError as e:
            what = (f"port {port} is in use; choose a free one" if e.errno == errno.EADDRINUSE else
                    f"{host} is not an address of this machine; process 0 runs the coordinator, so the first "
                    f"address must be its own" if e.errno == errno.EADDRNOTAVAIL else e.strerror)
            raise UserError(f"KERAS_DISTRIBUTION_JOB_ADDRESSES: {cluster.coordinator}: {what}") from e


def _wait_for_coordinator(cluster: Cluster, timeout: float) -> None:
    """Wait until the coordinator accepts TCP connections, at most `timeout` seconds."""
    host, port = cluster.host_port
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except socket.gaierror as e:
            raise UserError(f"KERAS_DISTRIBUTION_JOB_ADDRESSES: cannot resolve '{host}' ({e.strerror})") from e
        except OSError as e:
            if time.monotonic() >= deadline:
                raise UserError(f"process {cluster.process_id}: cannot reach the coordinator {cluster.coordinator} "
                                f"(process 0) within {timeout:g} s ({e.strerror or e}); start process 0, check the "
                                f"address and that its port is open (train.coordinator_timeout sets the wait)") from e
        time.sleep(0.25)


@dataclass
class Placement:
    """Where training runs: the backend, the strategy and its replicas, and this process's place in a cluster.

    Args:
        backend: `tensorflow` or `jax`.
        strategy: `none`, `mirrored` or `data_parallel`.
        devices: the devices that hold a replica (in a cluster, those of every process).
        process_id: this process's number in the cluster (0 alone).
        processes: the number of processes.
        engine: the `tf.distribute.MirroredStrategy` or `keras.distribution.DataParallel`, or None.
    """

    backend: str
    strategy: str
    devices: list[str]
    process_id: int = 0
    processes: int = 1
    engine: Any = field(default=None, repr=False)

    @property
    def replicas(self) -> int:
        return len(self.devices) if self.engine is not None else 1

    @property
    def writes_run_folder(self) -> bool:
        """Only process 0 writes the run folder."""
        return self.process_id == 0

    def scope(self):
        """The context in which models are built, loaded, compiled and trained."""
        return self.engine.scope() if self.engine is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def locally(self) -> Iterator[None]:
        """A context in which Keras computes on this process's own default device (scoring every test example).

        Keras' DataParallel needs every batch to split evenly over the replicas; scores are computed outside it.
        """
        if self.strategy != "data_parallel":
            yield
            return
        import keras

        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(self.engine)

    @contextlib.contextmanager
    def private_folder(self) -> Iterator[str | None]:
        """None for process 0; for the others a temporary folder to write into, removed at the end."""
        if self.writes_run_folder:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix=f"cnnrun-process{self.process_id}-") as folder:
            yield folder

    def feed(self, splits, batch_size: int) -> None:
        """Make the training and validation batches fit the replicas (in place).

        DataParallel shards every batch over the replicas, so a last partial batch of `r` examples is filled up to
        `batch_size` by repeating its own examples (each still weighs 1/r in the mean, up to rounding); the number
        of steps per epoch stays that of one device, and resume counts epochs the same way on any placement.
        """
        if self.strategy == "data_parallel" and self.replicas > 1:
            splits.train = _full_batches(splits.train, batch_size)
            if splits.validation is not None:
                splits.validation = _full_batches(splits.validation, batch_size)

    def describe(self, batch_size: int) -> str:
        """One line for the header: strategy, replicas, processes and the per-replica batch."""
        if self.engine is None:
            return f"none: one device ({self.devices[0]}), batch {batch_size}"
        name = {"mirrored": "MirroredStrategy", "data_parallel": "DataParallel"}[self.strategy]
        where = f" in {self.processes} processes" if self.processes > 1 else ""
        shown = ", ".join(self.devices[:8]) + (" …" if len(self.devices) > 8 else "")
        return (f"{name}: {self.replicas} replica{'s' if self.replicas > 1 else ''}{where} ({shown}), "
                f"{batch_size // self.replicas} examples per replica of the global batch {batch_size}")

    def to_dict(self) -> dict[str, Any]:
        """What meta.json records."""
        return {"backend": self.backend, "strategy": self.strategy, "replicas": self.replicas,
                "processes": self.processes, "devices": self.devices}


def _full_batches(dataset, batch_size: int):
    """Fill a partial batch up to `batch_size` by repeating its examples, so that every batch has a static size."""
    import tensorflow as tf

    def fill(*tensors):
        index = tf.range(batch_size) % tf.shape(tensors[0])[0]
        return tuple(tf.ensure_shape(tf.gather(t, index), [batch_size, *t.shape[1:]]) for t in tensors)

    return dataset.map(fill)


def place(experiment: Experiment) -> Placement:
    """Start the distribution the experiment asks for on this machine (or cluster) and return where training runs.

    `train.distribution: auto` picks data_parallel when `KERAS_DISTRIBUTION_*` are set, mirrored (TensorFlow) or
    data_parallel (JAX) with several GPUs or `train.devices`, and none otherwise. The global batch must split
    evenly over the replicas.

    Args:
        experiment: the validated experiment.
    """
    cluster = prepare(experiment)
    train = experiment.train
    if experiment.backend == "tensorflow":
        placement = _place_tensorflow(train.distribution, train.devices)
    else:
        placement = _place_jax(train.distribution, cluster)
    check_batch_size(train.batch_size, placement.replicas)
    return placement


def gpu_visible() -> bool:
    """Whether training can use a GPU: JAX's devices on the JAX backend (where TensorFlow is shown none), else
    TensorFlow's."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def check_batch_size(batch_size: int, replicas: int) -> None:
    """The global batch must split evenly over the replicas."""
    if batch_size % replicas:
        raise UserError(f"train.batch_size: {batch_size} does not split evenly over {replicas} replicas; use a "
                        f"multiple of {replicas}, e.g. {-(-batch_size // replicas) * replicas}")


def _place_tensorflow(distribution: str, devices: list[str] | None) -> Placement:
    import tensorflow as tf

    gpus = [f"/gpu:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
    if distribution == "none" or (distribution == "auto" and not devices and len(gpus) < 2):
        return Placement("tensorflow", "none", gpus[:1] or ["/cpu:0"])
    devices = devices or gpus or ["/cpu:0"]
    missing = [d for d in devices if d.startswith("/gpu") and d not in gpus]
    if missing:
        raise UserError(f"train.devices: {', '.join(missing)} not found; this machine has "
                        f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}{': ' if gpus else ''}{', '.join(gpus)}")
    cpus = [d for d in devices if d.startswith("/cpu")]
    if cpus:
        _split_processor(1 + max(int(d.split(":")[1]) for d in cpus))
    return Placement("tensorflow", "mirrored", devices, engine=tf.distribute.MirroredStrategy(devices))


def _split_processor(count: int) -> None:
    """Show TensorFlow the processor as `count` logical CPU devices (before TensorFlow starts its runtime)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        raise UserError(f"train.devices: the processor can be split into {count} CPU devices only before "
                        f"TensorFlow starts; run cnnrun in a new process") from e


def _place_jax(distribution: str, cluster: Cluster | None) -> Placement:
    import jax
    import keras
    import tensorflow as tf

    # TensorFlow only feeds data (tf.data): leave the GPUs to JAX
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    if cluster:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            keras.distribution.initialize()
        except Exception as e:  # JAX reports a failed join as one of several runtime errors
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UserError(f"process {cluster.process_id} of {cluster.num_processes} could not join the cluster "
                            f"at {cluster.coordinator}: {first}") from e
    devices = keras.distribution.list_devices()
    processes, process_id = (cluster.num_processes, cluster.process_id) if cluster else (1, 0)
    if distribution == "none" or (distribution == "auto" and not cluster and len(devices) < 2):
        return Placement("jax", "none", devices[:1])
    engine = keras.distribution.DataParallel(devices=devices)
    return Placement("jax", "data_parallel", devices, process_id, processes, engine)


def fingerprint(model) -> str:
    """A short hash of a model's weights, to see at a glance that every process ended with the same model."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()[:16]
