"""Learning-rate schedules as a config writes them: `compile.optimizer.learning_rate: {schedule: …}`.

One pydantic model per schedule, chosen by `schedule:`. Checking one needs neither TensorFlow nor Keras; the Keras
objects are made by `cnnrun.model.schedules.make_learning_rate`. Every count (`boundaries`, `decay_steps`,
`warmup_steps`, the first number of each `points` pair) is in `unit`: `steps` (optimizer updates, Keras' own
unit) or `epochs` (converted with the run's real steps per epoch once its data has loaded).

Example:
>>> schedule = parse_schedule({"schedule": "piecewise_constant", "boundaries": [91, 136],
...                            "values": [0.1, 0.01, 0.001], "unit": "epochs"})
>>> schedule.describe()
'0.1, 0.01 after 91 epochs, 0.001 after 136 epochs'
>>> schedule.keras_arguments(steps_per_epoch=352)
('PiecewiseConstantDecay', {'boundaries': [32031, 47871], 'values': [0.1, 0.01, 0.001]})
"""

from abc import abstractmethod
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from cnnrun.config.sections import Section
from cnnrun.errors import UserError, did_you_mean

WHERE = "compile.optimizer.learning_rate"


def _count(value: float, unit: str) -> str:
    return f"{value:g} {unit[:-1] if value == 1 else unit}"


class ScheduleBase(Section):
    """What every schedule has: the unit of its counts, and how it becomes a Keras schedule.

    Subclasses add `schedule: Literal[name]` and Keras' own argument names, and say how they scale, read and
    convert to steps.
    """

    unit: Literal["steps", "epochs"] = Field(
        "steps", description="What the schedule's counts are in: `steps` (optimizer updates, as Keras counts) or "
        "`epochs` (multiplied by the run's real steps per epoch, ⌈training examples ÷ batch_size⌉)."
    )

    def steps(self, count: float, steps_per_epoch: int) -> float:
        """`count` in this schedule's unit, as optimizer steps."""
        return count * steps_per_epoch if self.unit == "epochs" else count

    @abstractmethod
    def scaled(self, factor: float) -> "ScheduleBase":
        """The same schedule with every learning rate multiplied by `factor` (`train.scale_learning_rate`)."""

    @abstractmethod
    def describe(self) -> str:
        """The schedule in a few words, for the training header."""

    @abstractmethod
    def keras_arguments(self, steps_per_epoch: int) -> tuple[str, dict[str, Any]]:
        """The Keras schedule class's name and its arguments, every count in steps."""


class PiecewiseConstantSchedule(ScheduleBase):
    """Step decay: `values[0]` for the first `boundaries[0]` steps (or epochs), then `values[1]`, …; Keras'
    `PiecewiseConstantDecay`. He et al.'s ResNet recipe: `{schedule: piecewise_constant, boundaries: [32000, 48000],
    values: [0.1, 0.01, 0.001]}`."""

    schedule: Literal["piecewise_constant"]
    boundaries: list[int] = Field(
        min_length=1, description="Where the rate changes, increasing whole numbers ≥ 1 in "
        "`unit`: after `boundaries[i]` steps (or epochs) in all, the rate is `values[i + 1]`."
    )
    values: list[float] = Field(description="The rates, one more than `boundaries`: `values[0]` first.")

    @model_validator(mode="after")
    def _fits(self) -> "PiecewiseConstantSchedule":
        if self.boundaries[0] < 1 or any(b <= a for a, b in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise UserError(f"{WHERE}.boundaries: increasing whole numbers ≥ 1, got {self.boundaries}")
        if len(self.values) != len(self.boundaries) + 1:
            raise UserError(f"{WHERE}.values: one more value than boundaries ({len(self.boundaries) + 1}), got "
                            f"{len(self.values)}")
        return self

    def scaled(self, factor: float) -> "PiecewiseConstantSchedule":
        return self.model_copy(update={"values": [v * factor for v in self.values]})

    def describe(self) -> str:
        changes = [f"{v:g} after {_count(b, self.unit)}" for b, v in zip(self.boundaries, self.values[1:],
                                                                          strict=True)]
        return ", ".join([f"{self.values[0]:g}", *changes])

    def keras_arguments(self, steps_per_epoch: int) -> tuple[str, dict[str, Any]]:
        # Keras gives values[0] while step <= boundary, and the step is the count of updates made before this
        # one: boundary b − 1 makes exactly b updates at the earlier rate (whole epochs, when unit is epochs).
        boundaries = [int(self.steps(b, steps_per_epoch)) - 1 for b in self.boundaries]
        return "PiecewiseConstantDecay", {"boundaries": boundaries, "values": list(self.values)}


class CosineSchedule(ScheduleBase):
    """Keras' `CosineDecay`: an optional linear warm-up from `initial_learning_rate` to `warmup_target` over
    `warmup_steps`, then a half cosine down to `alpha` × the rate it started from over `decay_steps`, then
    constant."""

    schedule: Literal["cosine"]
    initial_learning_rate: float = Field(ge=0, description="The first rate (where a warm-up starts).")
    decay_steps: float = Field(gt=0, description="How long the cosine decay takes (after the warm-up), in `unit`.")
    alpha: float = Field(0.0, ge=0, le=1, description="The last rate, as a fraction of the rate the "
                         "decay starts from.")
    warmup_target: float | None = Field(None, gt=0, description="The rate a warm-up reaches (default: "
                                        "no warm-up, the decay starts from `initial_learning_rate`).")
    warmup_steps: float = Field(0, ge=0, description="The warm-up's length, in `unit`.")

    @model_validator(mode="after")
    def _warmup(self) -> "CosineSchedule":
        if self.warmup_steps and self.warmup_target is None:
            raise UserError(f"{WHERE}.warmup_target: a warm-up needs the rate it reaches (warmup_steps is "
                            f"{self.warmup_steps:g})")
        return self

    def scaled(self, factor: float) -> "CosineSchedule":
        target = None if self.warmup_target is None else self.warmup_target * factor
        return self.model_copy(update={"initial_learning_rate": self.initial_learning_rate * factor,
                                       "warmup_target": target})

    def describe(self) -> str:
        start = self.initial_learning_rate
        text = ""
        if self.warmup_target is not None:
            text = f"warm-up {start:g} → {self.warmup_target:g} over {_count(self.warmup_steps, self.unit)}, then "
            start = self.warmup_target
        return f"{text}cosine {start:g} → {start * self.alpha:g} over {_count(self.decay_steps, self.unit)}"

    def keras_arguments(self, steps_per_epoch: int) -> tuple[str, dict[str, Any]]:
        return "CosineDecay", {"initial_learning_rate": self.initial_learning_rate,
                               "decay_steps": self.steps(self.decay_steps, steps_per_epoch), "alpha": self.alpha,
                               "warmup_target": self.warmup_target,
                               "warmup_steps": self.steps(self.warmup_steps, steps_per_epoch)}


class ExponentialSchedule(ScheduleBase):
    """Keras' `ExponentialDecay`: `initial_learning_rate × decay_rate ^ (step ÷ decay_steps)`, the exponent
    rounded down with `staircase: true`."""

    schedule: Literal["exponential"]
    initial_learning_rate: float = Field(gt=0, description="The first rate.")
    decay_steps: float = Field(gt=0, description="The period of one `decay_rate` factor, in `unit`.")
    decay_rate: float = Field(gt=0, description="The factor per `decay_steps`.")
    staircase: bool = Field(False, description="Change the rate only every whole `decay_steps`.")

    def scaled(self, factor: float) -> "ExponentialSchedule":
        return self.model_copy(update={"initial_learning_rate": self.initial_learning_rate * factor})

    def describe(self) -> str:
        return (f"{self.initial_learning_rate:g} × {self.decay_rate:g} every {_count(self.decay_steps, self.unit)}"
                + (", in stairs" if self.staircase else ""))

    def keras_arguments(self, steps_per_epoch: int) -> tuple[str, dict[str, Any]]:
        return "ExponentialDecay", {"initial_learning_rate": self.initial_learning_rate,
                                    "decay_steps": self.steps(self.decay_steps, steps_per_epoch),
                                    "decay_rate": self.decay_rate, "staircase": self.staircase}


class PiecewiseLinearSchedule(ScheduleBase):
    """Straight lines through `(count, rate)` points, constant before the first and after the last: warm-ups,
    one-cycle (`points: [[0, 0.0], [15, 0.4], [30, 0.0]], unit: epochs`), linear decay. cnnrun's
    `PiecewiseLinearDecay` (Keras has none)."""

    schedule: Literal["piecewise_linear"]
    points: list[tuple[float, float]] = Field(
        min_length=2, description="`[count, rate]` pairs, counts (in `unit`) ≥ 0 and increasing."
    )

    @model_validator(mode="after")
    def _increasing(self) -> "PiecewiseLinearSchedule":
        counts = [x for x, _ in self.points]
        if counts[0] < 0 or any(b <= a for a, b in zip(counts, counts[1:], strict=False)):
            raise UserError(f"{WHERE}.points: [count, rate] pairs with counts ≥ 0 and increasing, got counts "
                            f"{[float(c) for c in counts]}")
        if any(rate < 0 for _, rate in self.points):
            raise UserError(f"{WHERE}.points: rates ≥ 0, got {[rate for _, rate in self.points]}")
        return self

    def scaled(self, factor: float) -> "PiecewiseLinearSchedule":
        return self.model_copy(update={"points": [(x, rate * factor) for x, rate in self.points]})

    def describe(self) -> str:
        points = ", ".join(f"({x:g}, {rate:g})" for x, rate in self.points)
        return f"piecewise linear through {points}, counts in {self.unit}"

    def keras_arguments(self, steps_per_epoch: int) -> tuple[str, dict[str, Any]]:
        return "PiecewiseLinearDecay", {"boundaries": [self.steps(x, steps_per_epoch) for x, _ in self.points],
                                        "values": [rate for _, rate in self.points]}


SCHEDULES: dict[str, type[ScheduleBase]] = {
    "piecewise_constant": PiecewiseConstantSchedule, "cosine": CosineSchedule,
    "exponential": ExponentialSchedule, "piecewise_linear": PiecewiseLinearSchedule,
}
ScheduleConfig = Annotated[PiecewiseConstantSchedule | CosineSchedule | ExponentialSchedule | PiecewiseLinearSchedule,
                           Field(discriminator="schedule")]
_ADAPTER: TypeAdapter[ScheduleBase] = TypeAdapter(ScheduleConfig)


def parse_schedule(value: dict[str, Any]) -> ScheduleBase:
    """Check a `learning_rate: {schedule: …}` mapping; a mistake is a one-line UserError naming the key.

    Args:
        value: the mapping as the config writes it.

    Returns the schedule's config model.
    """
    name = value.get("schedule")
    if name not in SCHEDULES:
        got = "is missing" if name is None else f"'{name}' is unknown{did_you_mean(str(name), SCHEDULES)}"
        raise UserError(f"{WHERE}.schedule: {got}; one of {', '.join(SCHEDULES)}")
    try:
        return _ADAPTER.validate_python(value)
    except ValidationError as e:
        first = e.errors()[0]
        keys = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"][1:]]  # [0]: the schedule's name
        if first["type"] == "extra_forbidden":
            known = schedule_keys(SCHEDULES[name])
            raise UserError(f"{WHERE}: unknown key '{keys[0][1:]}'{did_you_mean(keys[0][1:], known)}; schedule {name} "
                            f"takes: {', '.join(known)}") from None
        if first["type"] == "missing":
            raise UserError(f"{WHERE}{keys[0]}: required by schedule {name}") from None
        got = first.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        raise UserError(f"{WHERE}{''.join(keys)}: {first['msg'].removeprefix('Value error, ')}{shown}") from None


def schedule_keys(model: type[ScheduleBase]) -> list[str]:
    """A schedule's keys in the order a config writes them: `schedule` first, `unit` last."""
    return ["schedule", *(k for k in model.model_fields if k not in ("schedule", "unit")), "unit"]


def check_learning_rate(value: Any) -> Any:
    """A config's `learning_rate` as it is kept: a number (as a float) or a checked, complete schedule mapping."""
    if isinstance(value, dict):
        schedule = parse_schedule(value)
        values = schedule.model_dump(mode="json")
        return {key: values[key] for key in schedule_keys(type(schedule))}
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise UserError(f"{WHERE}: a number ≥ 0 (0.001) or a schedule mapping ({{schedule: cosine, …}}), "
                        f"got {value!r}")
    return float(value)
