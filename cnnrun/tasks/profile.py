"""`cnnrun profile`: where a training step's time goes, on the machine at hand.

The model and the input pipeline are made exactly as `train` makes them (`Trainer.new`'s pieces: the placement,
`new_model` checked on the declared shape before any data, `load_splits`, the model built again for the data's
statistics, the whitening filled, the first phase started, the batches fed to the replicas), but no run folder is
written. Then `warmup` training steps, then `steps` timed ones: each is the time to get the next batch from the
tf.data iterator (waiting for input) and Keras' own `train_on_batch` on it (the model's compiled train step; it
returns the loss as a number, so the step has finished when the clock stops).

Per layer: the forward FLOPs per picture by `cnnrun.model.flops`' formulas, the layer's forward+backward time
measured alone on its real input shape (`cnnrun.model.layer_timing`, which says why not TensorFlow's profiler),
its share of the summed layer times, and its achieved GFLOP/s, counting a training step as `TRAIN_FACTOR` (3) ×
the forward FLOPs. The machine's ceiling is a matmul probe in the precision the model computes in
(`cnnrun.devices.machine`), beside the CPU's instruction sets and thread settings. Nothing is printed here: the
CLI shows the `Profile`.
"""

import contextlib
import importlib.util
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cnnrun.config import Experiment
from cnnrun.data import augmentation_in_model, load_splits
from cnnrun.devices.distribute import place
from cnnrun.devices.jit_record import record_verdict
from cnnrun.devices.machine import (
    CpuFeatures,
    MatmulProbe,
    ThreadSettings,
    compute_dtype,
    cpu_features,
    matmul_ceiling,
    thread_settings,
)
from cnnrun.errors import UserError
from cnnrun.model.build import declared_info, emulated_bfloat16, new_model, precision_policy
from cnnrun.model.compiling import compile_model, training_step_key
from cnnrun.model.flops import TRAIN_FACTOR, model_flops
from cnnrun.model.layer_timing import time_layers
from cnnrun.model.phases import check_phases, start_phase
from cnnrun.model.state import build_state
from cnnrun.model.whitening import adapt_whitening


@dataclass(frozen=True)
class LayerProfile:
    """One layer's row: FLOPs, time alone, share and speed.

    Attributes:
        name: the layer's name (a nested backbone is one row).
        kind: its class name.
        flops: forward FLOPs per picture (0 when no formula counts the layer: `counted` is False).
        counted: whether a formula of `cnnrun.model.flops` counted it.
        seconds: its forward+backward time on one batch, measured alone; None when it could not be timed.
        share: `seconds` over the sum of every timed layer's seconds (0–1); None when not timed.
        gflops: achieved GFLOP/s, `TRAIN_FACTOR` × flops × batch / seconds; None when not timed or not counted.
        note: why the layer was not timed, else "".
    """

    name: str
    kind: str
    flops: int
    counted: bool
    seconds: float | None
    share: float | None
    gflops: float | None
    note: str = ""


@dataclass(frozen=True)
class StepTimes:
    """The timed training steps.

    Attributes:
        total: each step's seconds, waiting for its batch included.
        waiting: the seconds of each step spent getting its batch from the tf.data iterator.
    """

    total: tuple[float, ...]
    waiting: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.total)

    @property
    def spread(self) -> tuple[float, float]:
        """The fastest and the slowest step."""
        return min(self.total), max(self.total)

    @property
    def compute_median(self) -> float:
        """The median step without its wait for input: the train step itself."""
        return statistics.median(t - w for t, w in zip(self.total, self.waiting, strict=True))

    @property
    def input_share(self) -> float:
        """The share of the steps' time spent waiting for input (0–1)."""
        return sum(self.waiting) / sum(self.total)


@dataclass(frozen=True)
class Profile:
    """What `profile_experiment` measured; the CLI shows it as tables.

    Attributes:
        title: the experiment's name, its input shape and batch.
        batch_size: the global batch of a step.
        policy: the Keras dtype policy (float32, mixed_bfloat16, mixed_float16).
        jit_compile: whether the train step is compiled with XLA.
        warmup: the steps run before timing.
        steps: the timed steps.
        layers: a row per layer, in the model's order.
        flops_per_picture: the forward FLOPs of one picture, every layer summed.
        ceiling: the matmul probe.
        cpu: the CPU's model, instruction sets and cores.
        threads: the backend and its thread settings.
        trace: one line about the profiler trace (written where, or why not); "" when none was asked for.
        warnings: lines the user should see (from loading the data).
        other_jit: the same steps timed with `jit_compile` the other way (`--compare-jit`), or None.
        recorded: the file where the faster way was recorded for `jit_compile: auto` (`--compare-jit`), or None.
    """

    title: str
    batch_size: int
    policy: str
    jit_compile: bool
    warmup: int
    steps: StepTimes
    layers: tuple[LayerProfile, ...]
    flops_per_picture: int
    ceiling: MatmulProbe
    cpu: CpuFeatures
    threads: ThreadSettings
    trace: str = ""
    warnings: tuple[str, ...] = ()
    other_jit: StepTimes | None = None
    recorded: Path | None = None

    def jit_verdict(self) -> str:
        """Which way of `jit_compile` stepped faster here, by the medians: `without XLA, 1.23× faster: set
        compile.jit_compile: false`; "" without `other_jit`."""
        if self.other_jit is None:
            return ""
        times = {self.jit_compile: self.steps.median, not self.jit_compile: self.other_jit.median}
        faster = min(times, key=times.get)
        ratio = times[not faster] / times[faster]
        way = "with XLA" if faster else "without XLA"
        return f"{way}, {ratio:.2f}× faster: set compile.jit_compile: {str(faster).lower()}"

    @property
    def layer_seconds(self) -> float:
        """The sum of the timed layers' forward+backward times."""
        return sum(layer.seconds for layer in self.layers if layer.seconds is not None)

    @property
    def step_gflops(self) -> float:
        """Achieved GFLOP/s of the train step: `TRAIN_FACTOR` × forward FLOPs × batch / the median step without
        its wait for input."""
        return TRAIN_FACTOR * self.flops_per_picture * self.batch_size / self.steps.compute_median / 1e9

    @property
    def uncounted(self) -> tuple[str, ...]:
        """The layers no formula counts (0 FLOPs)."""
        return tuple(layer.name for layer in self.layers if not layer.counted)


def prepared(experiment: Experiment):
    """The model and the data as `Trainer.new` makes them, without a run folder: `(model, splits, placement,
    resources)`; leaving `resources` leaves the placement's scope. Config errors come before any data is read."""
    resources = contextlib.ExitStack()
    try:
        placement = place(experiment)
        resources.enter_context(placement.scope())
        in_model = augmentation_in_model(experiment)
        declared = declared_info(experiment)
        model = new_model(experiment, declared, in_model, placement.replicas)  # every config error, before any data
        check_phases(model, experiment)
        splits = load_splits(experiment, augment=not in_model)
        schedule = experiment.compile.schedule
        if (in_model and experiment.dataset.normalize == "standardize") or \
                list(splits.info.input_shape) != list(declared.input_shape) or \
                splits.info.class_names != declared.class_names:
            model = new_model(experiment, splits.info, in_model, placement.replicas, splits.steps_per_epoch)
        elif schedule is not None and schedule.unit == "epochs":
            compile_model(model, experiment, splits.steps_per_epoch, placement.replicas)
        adapt_whitening(model, splits)
        start_phase(model, experiment, 0, splits.steps_per_epoch, placement.replicas)
        splits = placement.feed(splits, experiment.train.batch_size)
        return model, splits, placement, resources
    except BaseException:
        resources.close()
        raise


def _batches(train, size: int) -> Iterator:
    """The training stream's batches of `size` examples, over and over (a short dataset ends before the steps
    do); an epoch's last, partial batch is left out, so that every timed step has the same shape (a compiled step
    is traced again for a new shape)."""
    import keras

    as_numpy = keras.backend.backend() != "tensorflow"
    for batch in train.repeat():
        if batch[0].shape[0] == size:
            yield tuple(t.numpy() for t in batch) if as_numpy else batch


def time_steps(model, batches: Iterator, count: int) -> StepTimes:
    """Run `count` training steps on the next batches; time each, and its wait for the batch."""
    total, waiting = [], []
    for _ in range(count):
        started = time.perf_counter()
        x, y = next(batches)[:2]
        got = time.perf_counter()
        model.train_on_batch(x, y)  # returns the loss as numbers: the step is done
        total.append(time.perf_counter() - started)
        waiting.append(got - started)
    return StepTimes(tuple(total), tuple(waiting))


def _trace(model, batches: Iterator, steps: int, trace_dir: Path | None) -> str:
    """Write a profiler trace of `steps` more steps into `trace_dir` when the plugin that reads it is installed;
    one line saying what happened."""
    if trace_dir is None:
        return ""
    if importlib.util.find_spec("tensorboard_plugin_profile") is None:
        return "no trace written: tensorboard-plugin-profile is not installed (pip install tensorboard-plugin-profile)"
    import keras

    trace_dir.mkdir(parents=True, exist_ok=True)
    if keras.backend.backend() == "jax":
        import jax

        with jax.profiler.trace(str(trace_dir)):
            time_steps(model, batches, steps)
    else:
        import tensorflow as tf

        tf.profiler.experimental.start(str(trace_dir))
        try:
            time_steps(model, batches, steps)
        finally:
            tf.profiler.experimental.stop()
    return f"wrote a trace of {steps} steps to {trace_dir} (tensorboard --logdir {trace_dir}, Profile tab)"


def other_jit_steps(model, batches: Iterator, warmup: int, steps: int) -> StepTimes:
    """The same steps with `jit_compile` the other way: the train step compiled again, `warmup` steps, then
    `steps` timed; the model is left as it came (the weights it trained on go on training, as profile's do)."""
    was = bool(model.jit_compile)
    model.jit_compile = not was
    if bool(model.jit_compile) == was:  # Keras keeps XLA off for a layer without it, or under op determinism
        raise UserError("--compare-jit: Keras will not compile this model with XLA (a layer that XLA cannot compile, "
                        "or train.deterministic: true); there is nothing to compare")
    model.train_function = None  # the next step is compiled again, the other way
    try:
        time_steps(model, batches, warmup)
        return time_steps(model, batches, steps)
    finally:
        model.jit_compile = was
        model.train_function = None


def profile_experiment(experiment: Experiment, steps: int = 10, warmup: int = 2,
                       trace_dir: Path | None = None, layer_repeats: int = 3, compare_jit: bool = False) -> Profile:
    """Measure where `experiment`'s training step spends its time (see the module).

    Args:
        experiment: the validated experiment.
        steps: the timed training steps (at least 1).
        warmup: the steps run first and not timed (the first traces and compiles the step).
        trace_dir: where a profiler trace of a few more steps goes; None for none.
        layer_repeats: the timed forward+backward passes of each layer (their median counts).
        compare_jit: also time the steps with `jit_compile` the other way (XLA on or off; TensorFlow only).
    """
    import keras

    if compare_jit and keras.backend.backend() != "tensorflow":
        raise UserError(f"--compare-jit: XLA on or off is TensorFlow's choice; the {keras.backend.backend()} backend "
                        f"compiles every step with XLA")
    model, splits, placement, resources = prepared(experiment)
    with resources:
        # a training set smaller than a batch: one batch of all of it
        batch = min(experiment.train.batch_size, splits.info.sizes.get("train", experiment.train.batch_size))
        batches = _batches(splits.train, batch)
        build_state(model, splits.train.element_spec)  # as `train` does: the step traced once
        time_steps(model, batches, warmup)
        timed = time_steps(model, batches, steps)
        other = other_jit_steps(model, batches, warmup, steps) if compare_jit else None
        trace = _trace(model, batches, min(steps, 3), trace_dir)
        flops = model_flops(model)
        times = time_layers(model, batch // placement.replicas, layer_repeats)
        policy = precision_policy(experiment)
        ceiling = matmul_ceiling(compute_dtype(policy))
        threads = thread_settings()
        jit = bool(getattr(model, "jit_compile", False))
        recorded_in = None
        if other is not None:  # for `jit_compile: auto` on this CPU from now on
            with_xla, without = (timed.median, other.median) if jit else (other.median, timed.median)
            recorded_in = record_verdict(training_step_key(model, experiment), cpu_features(), with_xla < without,
                                         with_xla, without, experiment.name)
    total = sum(t.seconds for t in times if t.seconds is not None) or 1.0
    rows = []
    for counted, measured in zip(flops, times, strict=True):
        seconds = measured.seconds
        gflops = TRAIN_FACTOR * counted.flops * batch / placement.replicas / seconds / 1e9 \
            if seconds and counted.counted else None
        rows.append(LayerProfile(counted.name, counted.kind, counted.flops, counted.counted, seconds,
                                 None if seconds is None else seconds / total, gflops, measured.note))
    shape = "×".join(str(n) for n in splits.info.input_shape)
    return Profile(f"{experiment.name}: input {shape}, batch {batch}", batch, policy, jit, warmup, timed,
                   tuple(rows), sum(r.flops for r in flops), ceiling, cpu_features(), threads, trace,
                   tuple(filter(None, [emulated_bfloat16(experiment), *splits.warnings])), other, recorded_in)
