"""`train.phases`: training in phases, each with its own trainable layers, learning rate and optimizer.

The keras-io guide "Transfer learning & fine-tuning" trains in two phases: first the new head on a frozen base,
then everything with a small learning rate. A config writes that as

    train:
      phases:
        - {epochs: 3, trainable: none, learning_rate: 0.001}
        - {epochs: 2, trainable: all, learning_rate: 1.0e-5, optimizer: {name: adam}}

This module checks the phases (no Keras needed) and answers the questions about epochs that the Trainer, the run
recorder and resume ask: which phase an epoch is in, where each phase starts, what `resume --epochs N` means.
Epochs are counted as Keras counts them: `epoch` is the number of epochs done (0 before the first), so phase 2 of
a 3 + 2 run spans epochs 3 to 5 (shown to the user as epochs 4–5). `cnnrun.model.phases` applies a phase to a model.

Example (`TrainConfig` is `train:`, in `cnnrun.config.schema`):
>>> train = TrainConfig(phases=[{"epochs": 3, "trainable": "none"}, {"epochs": 2, "trainable": "all"}])
>>> train.epochs, phase_spans(train)
(5, [(0, 3), (3, 5)])
>>> phase_index(train, 3), phase_index(train, 4)
(1, 1)
"""

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from cnnrun.config.registry import OPTIMIZERS, check_name, check_optimizer_values
from cnnrun.config.schedules import WHERE, check_learning_rate
from cnnrun.config.sections import Section
from cnnrun.errors import UserError, did_you_mean

TRAINABLE = "none, all, {from: LAYER_NAME} or {last: N}"


def _learning_rate(value: Any, key: str) -> Any:
    """`check_learning_rate`, its errors naming `key` (inside the phase) instead of compile.optimizer's."""
    try:
        return check_learning_rate(value)
    except UserError as e:
        raise e.at(key, replacing=WHERE) from None


class PhaseConfig(Section):
    """One phase of `train.phases`: how long, which layers train, with what rate and optimizer."""

    epochs: int = Field(ge=1, description="The phase's epochs (≥ 1).")
    trainable: str | dict[str, Any] = Field(
        description="Which layers train: `none` (the base is frozen; the head trains), `all`, `{from: LAYER_NAME}` "
        "(the base's layers from that one on) or `{last: N}` (the base's last N layers with weights). "
        "BatchNormalization layers of the base never train."
    )
    learning_rate: float | dict[str, Any] | None = Field(
        None, description="A number or a schedule, as `compile.optimizer.learning_rate`; a schedule's counts start "
        "at the phase's first epoch. Default: the optimizer's own."
    )
    optimizer: str | dict[str, Any] | None = Field(
        None, description="A name or `{name: adam, ...}`, as `compile.optimizer`. Default: `compile.optimizer`."
    )
    cache_features: bool | int = Field(
        False, description="Compute the frozen backbone's outputs once, at the phase's start, and train the head on "
        "them: `true` (no augmentation: every epoch sees the same features), a number K (K augmented views of "
        "every picture, computed once; epoch e trains on view e mod K) or `false` (the backbone runs on every "
        "batch). Only where the backbone is frozen (`trainable: none`). Default: false."
    )

    @field_validator("trainable", mode="before")
    @classmethod
    def _known_trainable(cls, value: Any) -> Any:
        if value in ("none", "all"):
            return value
        if isinstance(value, dict) and len(value) == 1:
            (key, what), = value.items()
            if key == "from" and isinstance(what, str) and what:
                return value
            if key == "last" and isinstance(what, int) and not isinstance(what, bool) and what >= 1:
                return value
            if key in ("from", "last"):
                need = "a layer's name" if key == "from" else "a whole number ≥ 1"
                raise UserError(f"trainable.{key}: {need}, got {what!r}")
        raise UserError(f"trainable: {TRAINABLE}, got {value!r}")

    @field_validator("cache_features", mode="before")
    @classmethod
    def _known_views(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, int) and value >= 1):
            return value
        raise UserError(f"cache_features: true, false or a number of augmented views ≥ 1, got {value!r}")

    @model_validator(mode="after")
    def _frozen_when_cached(self) -> "PhaseConfig":
        if self.cache_features is not False and self.trainable != "none":
            raise UserError(f"cache_features: the backbone trains in this phase (trainable: "
                            f"{describe_trainable(self.trainable)}), so its outputs change every step; features "
                            f"can be cached only in a phase with trainable: none")
        return self

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _known_rate(cls, value: Any) -> Any:
        return None if value is None else _learning_rate(value, "learning_rate")

    @model_validator(mode="after")
    def _known_optimizer(self) -> "PhaseConfig":
        if self.optimizer is None:
            return self
        name = self.optimizer if isinstance(self.optimizer, str) else self.optimizer.get("name")
        if not isinstance(name, str):
            raise UserError("optimizer: needs a `name:` (adam, rmsprop, sgd, ...)")
        check_name(name, OPTIMIZERS, "optimizer", "optimizer")
        if isinstance(self.optimizer, dict):
            check_optimizer_values(self.optimizer, "optimizer")
            if "learning_rate" in self.optimizer:
                if self.learning_rate is not None:
                    raise UserError("learning_rate: given twice, here and in optimizer.learning_rate; keep one")
                rate = _learning_rate(self.optimizer["learning_rate"], "optimizer.learning_rate")
                self.optimizer = {**self.optimizer, "learning_rate": rate}
            if self.optimizer.get("use_ema"):
                raise UserError("optimizer.use_ema: not with phases (each phase starts a fresh optimizer)")
        return self


def _phase_error(index: int, error: ValidationError | UserError) -> UserError:
    """A phase's first problem as one line naming `train.phases.<index>.<key>` (the path `--set` takes)."""
    where = f"train.phases.{index}"
    if isinstance(error, UserError):
        return UserError(f"{where}.{error}")
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return UserError(f"{where}.{key}: required key is missing")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return UserError(f"{where}.{key}: {first['msg'].removeprefix('Value error, ')}{shown}")


def check_phases(value: Any) -> list[PhaseConfig] | None:
    """`train.phases` as written, checked phase by phase: a mistake is one line naming the phase and the key."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise UserError(f"train.phases: a list of phases, each {{epochs: N, trainable: {TRAINABLE}}}, got {value!r}")
    phases = []
    for index, item in enumerate(value):
        if isinstance(item, PhaseConfig):
            phases.append(item)
            continue
        if not isinstance(item, dict):
            raise UserError(f"train.phases.{index}: a phase is {{epochs: N, trainable: ...}}, got {item!r}")
        known = list(PhaseConfig.model_fields)
        unknown = [key for key in item if key not in known]
        if unknown:
            raise UserError(f"train.phases.{index}: unknown key '{unknown[0]}'{did_you_mean(str(unknown[0]), known)}; "
                            f"a phase takes: {', '.join(known)}")
        try:
            phases.append(PhaseConfig.model_validate(item))
        except (ValidationError, UserError) as e:
            raise _phase_error(index, e) from None
    return phases


def total_epochs(phases: list[PhaseConfig], epochs: int, epochs_given: bool) -> int:
    """`train.epochs` with phases: their sum; an `epochs` given beside them must be that sum."""
    total = sum(phase.epochs for phase in phases)
    if epochs_given and epochs != total:
        raise UserError(f"train.epochs: {epochs}, but train.phases add up to {total} epochs; leave train.epochs out "
                        f"(it is the phases' sum) or make them agree")
    return total


def phase_spans(train) -> list[tuple[int, int]]:
    """`(first, end)` epoch counts of each phase: it trains from `first` epochs done to `end`. [] without phases."""
    spans, first = [], 0
    for phase in train.phases or []:
        spans.append((first, first + phase.epochs))
        first += phase.epochs
    return spans


def phase_index(train, epoch: int) -> int:
    """The index (from 0) of the phase that trains the epoch after `epoch` epochs done; the last past the end."""
    spans = phase_spans(train)
    return next((i for i, (_, end) in enumerate(spans) if epoch < end), len(spans) - 1)


def begins_phase(train, epoch: int) -> bool:
    """Whether a phase starts after `epoch` epochs done (a fresh optimizer, callbacks started afresh)."""
    return any(first == epoch for first, _ in phase_spans(train))


def fit_spans(train, initial_epoch: int) -> list[tuple[int, int]]:
    """The `(initial_epoch, epochs)` of each Keras fit from `initial_epoch` on: one per phase left, or one."""
    spans = phase_spans(train) or [(0, train.epochs)]
    return [(max(first, initial_epoch), end) for first, end in spans if end > initial_epoch]


def with_total_epochs(train, epochs: int):
    """`train` for `resume --epochs N`: with phases, the last phase grows (or shrinks) to make the total N.

    The earlier phases keep their epochs, so N must leave the last phase at least one.
    """
    if not train.phases:
        return train.model_copy(update={"epochs": epochs})
    last = train.phases[-1]
    before = train.epochs - last.epochs
    if epochs <= before:
        raise UserError(f"--epochs {epochs}: the run's phases before the last take {before} epochs; with phases, "
                        f"--epochs N sets the last phase's length to N − {before}, so give N > {before}")
    phases = [*train.phases[:-1], last.model_copy(update={"epochs": epochs - before})]
    return train.model_copy(update={"epochs": epochs, "phases": phases})


def phase_optimizer(optimizer: str | dict[str, Any], phase: PhaseConfig) -> str | dict[str, Any]:
    """The `compile.optimizer` value a phase trains with: its own optimizer (default `optimizer`) and rate."""
    chosen = phase.optimizer if phase.optimizer is not None else optimizer
    if phase.learning_rate is None:
        return chosen
    config = {"name": chosen} if isinstance(chosen, str) else dict(chosen)
    return {**config, "learning_rate": phase.learning_rate}


def feature_views(phase: PhaseConfig) -> int:
    """How many views of every picture a phase caches the backbone's outputs of: 0 (no cache), 1 (`true`) or K."""
    views = phase.cache_features
    return int(views) if isinstance(views, bool) else views


def describe_trainable(trainable: str | dict[str, Any]) -> str:
    """`none`, `all`, `from block_16_expand`, `last 4`: a phase's trainable set in a few words."""
    if isinstance(trainable, str):
        return trainable
    (key, value), = trainable.items()
    return f"{key} {value}"
