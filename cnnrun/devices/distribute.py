"""Backend and distribution: which Keras backend trains, on which devices, in how many processes.

cnnrun trains on the engines Keras and TensorFlow maintain, nothing of its own:

- one machine, several GPUs, TensorFlow backend: `tf.distribute.MirroredStrategy`;
- one machine or several, JAX backend: Keras' `keras.distribution.DataParallel`; the processes of a cluster join
  through `keras.distribution.initialize()`, which reads `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
  `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` (JAX's CPU collectives: gloo).

TensorFlow's MultiWorkerMirroredStrategy does not work with Keras 3's `fit` (keras-team/keras#20585), so several
machines train on the JAX backend.

`cnnrun.devices.backend.prepare` runs before Keras is imported (backend choice, cluster checks); `place` calls it again
(which changes nothing) and then starts the strategy or distribution.

Example:
>>> placement = place(experiment)            # calls prepare(experiment) first
>>> with placement.scope():
...     model = build_model(experiment, input_shape, num_classes)
"""

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cnnrun.config import Experiment
from cnnrun.devices.backend import Cluster, check_batch_size, prepare
from cnnrun.errors import UserError


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

    def feed(self, splits, batch_size: int):
        """The splits with training and validation batches that fit the replicas (a new `Splits`; `splits` as is).

        DataParallel shards every batch over the replicas, so a last partial batch of `r` examples is filled up to
        `batch_size` by repeating its own examples (each still weighs 1/r in the mean, up to rounding); the number
        of steps per epoch stays that of one device, and resume counts epochs the same way on any placement.
        """
        if self.strategy != "data_parallel" or self.replicas == 1:
            return splits
        validation = None if splits.validation is None else _full_batches(splits.validation, batch_size)
        return splits.with_pipelines(train=_full_batches(splits.train, batch_size), validation=validation)

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

    return dataset.map(tf.autograph.experimental.do_not_convert(fill))  # as written: see cnnrun.data.traced


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


def _place_tensorflow(distribution: str, devices: list[str] | None) -> Placement:
    import tensorflow as tf

    gpus = [f"/gpu:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
    if distribution == "none" or (distribution == "auto" and not devices and len(gpus) < 2):
        return Placement("tensorflow", "none", gpus[:1] or ["/cpu:0"])
    devices = devices or gpus or ["/cpu:0"]
    missing = [d for d in devices if d.startswith("/gpu") and d not in gpus]
    if missing:
        raise UserError(f"{', '.join(missing)} not found; this machine has {len(gpus)} "
                        f"GPU{'s' if len(gpus) != 1 else ''}{': ' if gpus else ''}{', '.join(gpus)}",
                        where="train.devices")
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
        raise UserError(f"the processor can be split into {count} CPU devices only before TensorFlow starts",
                        where="train.devices", fix="run cnnrun in a new process") from e


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
            raise UserError(f"could not join the cluster at {cluster.coordinator}: {first}",
                            where=f"process {cluster.process_id} of {cluster.num_processes}") from e
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
