"""Learning-rate schedules as Keras objects: made from the config, read back from an optimizer.

`make_learning_rate` turns `compile.optimizer.learning_rate` into what a Keras optimizer takes: a float, or one
of Keras' own schedules (`PiecewiseConstantDecay`, `CosineDecay`, `ExponentialDecay`), or cnnrun's
`PiecewiseLinearDecay` where Keras has none. A schedule is a function of the optimizer's step count, which
`last.keras` holds, so a resumed run continues the schedule exactly where it stopped; its counts are converted to
steps when the optimizer is made (the schedule saved in a checkpoint counts steps only).

Example:
>>> rate = make_learning_rate({"schedule": "cosine", "initial_learning_rate": 0.0, "warmup_target": 0.1,
...                            "warmup_steps": 5, "decay_steps": 95, "unit": "epochs"}, steps_per_epoch=100)
>>> optimizer = keras.optimizers.SGD(learning_rate=rate, momentum=0.9)
>>> round(learning_rate_at(optimizer, step=250), 6)  # half-way up the 500-step warm-up
0.05
"""

import itertools
from typing import Any

import keras
from keras import ops

from cnnrun.config.schedules import ScheduleBase, parse_schedule


@keras.saving.register_keras_serializable(package="cnnrun")
class PiecewiseLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate on straight lines between points: warm-ups, one-cycle, linear decay.

    At step `s` between `boundaries[i]` and `boundaries[i + 1]` the rate is interpolated between `values[i]` and
    `values[i + 1]`; before the first boundary it is `values[0]`, after the last `values[-1]`. Registered with
    Keras (`cnnrun>PiecewiseLinearDecay`), so a checkpoint that holds it loads in safe mode.

    Args:
        boundaries: increasing step counts (floats allowed), at least two.
        values: the rates at the boundaries, as many as `boundaries`.
        name: the name of the operations. Defaults to `"PiecewiseLinearDecay"`.

    Example (one cycle over 30 epochs of 100 steps):
    >>> schedule = PiecewiseLinearDecay([0, 1500, 3000], [0.0, 0.4, 0.0])
    >>> round(float(schedule(750)), 6)
    0.2
    """

    def __init__(self, boundaries: list[float], values: list[float], name: str = "PiecewiseLinearDecay"):
        super().__init__()
        if len(boundaries) != len(values) or len(boundaries) < 2:
            raise ValueError(f"PiecewiseLinearDecay: as many values as boundaries, at least two; got {len(boundaries)}"
                             f" boundaries and {len(values)} values")
        if any(b <= a for a, b in itertools.pairwise(boundaries)):
            raise ValueError(f"PiecewiseLinearDecay: increasing boundaries, got {boundaries}")
        self.boundaries = [float(b) for b in boundaries]
        self.values = [float(v) for v in values]
        self.name = name

    def __call__(self, step):
        with keras.name_scope(self.name):
            step = ops.cast(step, "float32")
            rate = ops.where(step <= self.boundaries[0], self.values[0], self.values[-1])
            for (x0, y0), (x1, y1) in itertools.pairwise(zip(self.boundaries, self.values, strict=True)):
                line = y0 + (y1 - y0) * (step - x0) / (x1 - x0)
                rate = ops.where((step > x0) & (step <= x1), line, rate)
            return rate

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}



def make_learning_rate(value: float | dict[str, Any], steps_per_epoch: int | None = None, scale: float = 1.0):
    """`compile.optimizer.learning_rate` as a Keras optimizer takes it: a float or a `LearningRateSchedule`.

    Args:
        value: a number, or a checked schedule mapping (`{schedule: cosine, …}`).
        steps_per_epoch: training batches per epoch, which convert a schedule written in epochs. None converts it
            at one step per epoch: enough to check the config (`inspect`; the Trainer before the data has loaded),
            never to train with.
        scale: multiplies every rate (`train.scale_learning_rate: linear`). Defaults to 1.

    Returns a float or a Keras schedule, every count in steps.
    """
    if not isinstance(value, dict):
        return float(value) * scale
    name, arguments = parse_schedule(value).scaled(scale).keras_arguments(steps_per_epoch or 1)
    cls = PiecewiseLinearDecay if name == "PiecewiseLinearDecay" else getattr(keras.optimizers.schedules, name)
    return cls(**arguments)


def _own_optimizer(optimizer):
    """The optimizer that holds the rate (mixed precision wraps it in a `LossScaleOptimizer`)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def batches_taken(optimizer) -> int:
    """The training batches an optimizer has stepped through, as an int.

    Keras' `iterations` counts updates: with `gradient_accumulation_steps` k it is the batches // k, while its
    learning-rate schedules count batches (its private `_iterations`, what this returns then). Resume counts the
    epochs a checkpoint holds in batches; a schedule's step is a batch.
    """
    own = _own_optimizer(optimizer)
    counter = own._iterations if getattr(own, "gradient_accumulation_steps", None) else optimizer.iterations
    return int(ops.convert_to_numpy(counter))


def learning_rate_at(optimizer, step: int | None = None) -> float:
    """The learning rate `optimizer` uses at `step`, as a float.

    Args:
        optimizer: a Keras optimizer, with a fixed rate or a schedule.
        step: the count of batches before the one in question (`batches_taken`: Keras' `iterations` without
            gradient accumulation). Defaults to the next
            update's. A fixed rate is the same at every step.
    """
    # Keras keeps the schedule itself in `_learning_rate`; its public `learning_rate` is the value at the next step
    schedule = _own_optimizer(optimizer)._learning_rate
    if step is None or not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(ops.convert_to_numpy(optimizer.learning_rate))
    return float(ops.convert_to_numpy(schedule(step)))


def last_step_learning_rate(optimizer) -> float:
    """The rate the optimizer's last update used: what `history.csv` records for the epoch that just ended.

    With a schedule this is the epoch's own rate (a step decay in epochs changes after the epoch, not in the
    row of the epoch before); with a fixed rate it is the rate now, after any change by ReduceLROnPlateau.
    """
    return learning_rate_at(optimizer, max(batches_taken(optimizer) - 1, 0))


def describe_learning_rate(optimizer, schedule: ScheduleBase | None, scale: float = 1.0) -> str:
    """The learning rate in a few words for the training header: `0.001`, or the schedule and its rate now.

    Args:
        optimizer: the compiled model's optimizer (its step count says where a schedule is).
        schedule: the experiment's schedule (`experiment.compile.schedule`), or None for a fixed rate.
        scale: the factor every rate was multiplied by (`train.scale_learning_rate`). Defaults to 1.
    """
    now = learning_rate_at(optimizer)
    if schedule is None:
        return f"{now:g}"
    step = batches_taken(optimizer)
    return f"{schedule.scaled(scale).describe()} (now {now:g}, step {step:,})"
