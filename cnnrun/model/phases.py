"""Fine-tuning in phases on the Keras model: the base, the head, and which layers train in each phase.

`train.phases` (checked in `cnnrun.config.phases`) trains a model in phases, as the keras-io guide "Transfer
learning & fine-tuning" does: first the new head on a frozen base, then more of the base with a small learning
rate. The Trainer calls `check_phases` on the model it builds before any data is read (a `{from: X}` that trains
nothing of the base is refused there), `start_phase` before each phase, `phase_start_in_checkpoint` to know where a
resumed run is, and `summary_text` for the run's `summary.txt` (which layers train). The words, which other parts
of cnnrun rely on:

- A **backbone** is a nested `keras.Model` layer of the built model (a `keras.applications` network), except
  cnnrun's in-model augmentation (the `keras.Sequential` named `augmentation`).
- The **base** is the layers of the backbones (searched through models nested in them) when the model has any.
  Without a backbone it is every layer except the **head**: the last layer that has weights (BatchNormalization
  aside), e.g. the new Dense head of a model started from an earlier run. With a backbone, every layer outside
  the backbones is the head's.
- `trainable: none` freezes the base (the head trains); `all` trains everything; `{from: X}` trains the base's
  layers from the layer named X on, in the model's order (X: any layer of the model, inside a backbone or not);
  `{last: N}` trains the base's last N layers that have weights (BatchNormalization layers are not counted).
- **BatchNormalization layers of the base never train.** A Keras 3 BatchNormalization layer whose `trainable` is
  False runs in inference mode: it normalises with its moving mean and variance and leaves them as they are, in
  every phase (the guide's advice: unfreezing them would wreck what the base learnt).
- Each phase starts by setting the trainable flags and compiling the model again with the phase's optimizer: a
  fresh optimizer state, its step count (so a schedule's) starting at 0 at the phase's first epoch.

Example:
>>> set_trainable(model, {"from": "block_16_expand"})
>>> [layer.name for layer in model.layers[1].layers if layer.trainable_weights][:3]
['block_16_expand', 'block_16_depthwise', 'block_16_project']
"""

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnrun.atomic import checkpoint_info
from cnnrun.config import Experiment
from cnnrun.config.phases import (
    begins_phase,
    describe_trainable,
    feature_views,
    phase_index,
    phase_optimizer,
    phase_spans,
)
from cnnrun.errors import UserError
from cnnrun.model.backbones import layers_within
from cnnrun.model.build import naming_the_file
from cnnrun.model.compiling import compile_model, make_optimizer
from cnnrun.run_folder.folder import Run

AUGMENTATION = "augmentation"  # the name of cnnrun's in-model augmentation (`cnnrun.data.model_augmenter`)
SUMMARY_WIDTH = 120  # summary.txt's columns: the narrowest at which Keras' Trainable header is whole


def _walk(layers, order: list, positions: dict[str, int]) -> None:
    """Append the layers to `order`, each nested model replaced by its own layers (recursively); note in
    `positions` where each name (a nested model's too: where its first layer goes) sits in `order`."""
    import keras

    for layer in layers:
        positions.setdefault(layer.name, len(order))
        if isinstance(layer, keras.Model):
            _walk(layer.layers, order, positions)
        else:
            order.append(layer)


def _is_batch_norm(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def _has_weights(layer) -> bool:
    """A layer that can learn: it has weights, and is not a BatchNormalization layer (which never trains here)."""
    return bool(layer.weights) and not _is_batch_norm(layer)


@dataclass
class Base:
    """The base of a model and where each layer name sits in the model's order.

    Attributes:
        layers: the base's layers (no nested models), in the model's order.
        order: every layer of the model (no nested models), in order.
        positions: each layer's name (nested models' included) → the index in `order` of its first layer.
        backbones: the names of the model's backbones (none: the base is everything but the head).
    """

    layers: list
    order: list
    positions: dict[str, int]
    backbones: list[str]


def find_base(model) -> Base:
    """The base of `model`: its backbones' layers, or without a backbone every layer but the head."""
    import keras

    order: list = []
    positions: dict[str, int] = {}
    base, backbones = [], []
    for layer in model.layers:
        first = len(order)
        _walk([layer], order, positions)
        if isinstance(layer, keras.Model) and layer.name != AUGMENTATION:
            backbones.append(layer.name)
            base += order[first:]
    if not backbones:
        heads = [layer for layer in order if _has_weights(layer)]
        base = [layer for layer in order if not heads or layer is not heads[-1]]
    return Base(base, order, positions, backbones)


def _models(model) -> list:
    """`model` and every model nested in it, outer first."""
    import keras

    return [model, *(layer for layer in layers_within(model) if isinstance(layer, keras.Model))]


def trained_base(model, trainable: str | dict[str, Any], where: str = "trainable") -> list:
    """The base's layers that train under `trainable` (BatchNormalization layers left out: they never train).

    Args:
        model: the built Keras model.
        trainable: `none`, `all`, `{from: LAYER_NAME}` or `{last: N}`, as a phase writes it.
        where: the config key, for errors. Defaults to `trainable`.

    A layer name the model does not have, or more layers than the base has, is a one-line UserError.
    """
    base = find_base(model)
    learning = [layer for layer in base.layers if not _is_batch_norm(layer)]
    if trainable == "none":
        return []
    if trainable == "all":
        return learning
    (key, value), = trainable.items()
    if key == "from":
        if value not in base.positions:
            raise UserError(f"{where}.from: the model has no layer '{value}'{_near(value, base)}")
        place = {id(layer): i for i, layer in enumerate(base.order)}
        return [layer for layer in learning if place[id(layer)] >= base.positions[value]]
    with_weights = [layer for layer in learning if _has_weights(layer)]
    if value > len(with_weights):
        count = f"{len(with_weights)} layer{'' if len(with_weights) == 1 else 's'}"
        raise UserError(f"{where}.last: {value}, but the base has {count} with weights (BatchNormalization "
                        f"aside); give at most {len(with_weights)}, or `all`")
    return with_weights[-value:]


def _near(name: str, base: Base) -> str:
    """`; near names: a, b, c` (or the base's first and last layer when none is near)."""
    close = difflib.get_close_matches(name, list(base.positions), n=5, cutoff=0.5)
    if close:
        return f"; near names: {', '.join(close)}"
    inside = f" of {', '.join(base.backbones)}" if base.backbones else ""
    return f"; the base{inside} runs from '{base.layers[0].name}' to '{base.layers[-1].name}'" if base.layers else ""


def set_trainable(model, trainable: str | dict[str, Any], where: str = "trainable") -> list:
    """Set every layer's `trainable` flag for a phase; return the base's layers that train.

    The head and every layer outside the base train; the base's layers train as `trainable` says; the base's
    BatchNormalization layers never do. The model must be compiled again afterwards (`start_phase` does).

    Args:
        model: the built Keras model.
        trainable: `none`, `all`, `{from: LAYER_NAME}` or `{last: N}`.
        where: the config key, for errors. Defaults to `trainable`.
    """
    base = find_base(model)
    training = {id(layer) for layer in trained_base(model, trainable, where)}
    frozen = {id(layer) for layer in base.layers if id(layer) not in training}
    # Keras' setter reaches nested layers, but on TensorFlow setting a flag to the value it has does nothing at
    # all: so every model (outer first) is made trainable, then each layer set on its own.
    for nested in _models(model):
        nested.trainable = True
    for layer in base.order:
        layer.trainable = id(layer) not in frozen
    return [layer for layer in base.layers if id(layer) in training]


def summary_text(model) -> str:
    """Keras' summary of `model` with its Trainable column (which layers train), as the run's `summary.txt` holds it.

    Keras fits the table to the terminal (80 columns in a pipe) and cuts the Trainable header to `Trai…`; here the
    table is `SUMMARY_WIDTH` columns whatever the terminal, so the file reads the same from any shell and every
    header is whole.
    """
    lines: list[str] = []
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(SUMMARY_WIDTH + 4)  # Keras and rich take the terminal's width from it
    try:
        model.summary(print_fn=lambda line, **_: lines.append(line), show_trainable=True, line_length=SUMMARY_WIDTH)
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(lines) + "\n"


def experiment_at(experiment: Experiment, epoch: int) -> Experiment:
    """`experiment` with `compile.optimizer` replaced by what the phase after `epoch` epochs done trains with
    (`experiment` itself without phases)."""
    train = experiment.train
    if not train.phases:
        return experiment
    optimizer = phase_optimizer(experiment.compile.optimizer, train.phases[phase_index(train, epoch)])
    return experiment.model_copy(update={"compile": experiment.compile.model_copy(update={"optimizer": optimizer})})


def check_phases(model, experiment: Experiment) -> None:
    """Check every phase against the built model before any data is read: layer names, counts, optimizers."""
    with naming_the_file(experiment):
        for index, (phase, (first, _)) in enumerate(zip(experiment.train.phases or [],
                                                        phase_spans(experiment.train), strict=True)):
            where = f"train.phases.{index}"
            trained = trained_base(model, phase.trainable, f"{where}.trainable")
            if isinstance(phase.trainable, dict) and "from" in phase.trainable and \
                    not any(_has_weights(layer) for layer in trained):
                raise UserError(_trains_no_base(model, phase.trainable, f"{where}.trainable"))
            try:
                make_optimizer(experiment_at(experiment, first))
            except UserError as e:
                raise e.at(f"{where}.optimizer", replacing="compile.optimizer") from None


def _trains_no_base(model, trainable: dict[str, Any], where: str) -> str:
    """The message for a `{from: X}` that trains none of the base's weights: X is the head, which trains in every
    phase, or only layers without weights (or BatchNormalization layers, which never train) follow it in the base,
    so the phase trains what `none` trains."""
    base = find_base(model)
    name = trainable["from"]
    within = f"from '{base.layers[0].name}' to '{base.layers[-1].name}'" if base.layers else "empty"
    return (f"{where}.from: from '{name}' on, the base has no layer with weights (the base runs {within}; the "
            f"head trains in every phase anyway), so this phase would train exactly what `none` trains; name an "
            f"earlier layer of the base, or write trainable: none")


def start_phase(model, experiment: Experiment, epoch: int, steps_per_epoch: int, replicas: int = 1) -> None:
    """Make `model` ready to train on from `epoch` epochs done: the phase's trainable set, and its optimizer.

    When a phase begins at `epoch` the model is compiled again with the phase's optimizer (fresh state, a
    schedule counted from the phase's first epoch). Inside a phase (a resumed run) the model from `last.keras`
    already holds the phase's flags and its optimizer's state, which are kept. Without phases nothing changes.

    Args:
        model: the built (or loaded) Keras model.
        experiment: the experiment.
        epoch: epochs done.
        steps_per_epoch: training batches per epoch, for a schedule written in epochs.
        replicas: devices holding a replica, for `train.scale_learning_rate`. Defaults to 1.
    """
    train = experiment.train
    if not train.phases:
        return
    index = phase_index(train, epoch)
    with naming_the_file(experiment):
        set_trainable(model, train.phases[index].trainable, f"train.phases.{index}.trainable")
        if begins_phase(train, epoch):
            compile_model(model, experiment_at(experiment, epoch), steps_per_epoch, replicas)


def phase_start_in_checkpoint(path: Path, experiment: Experiment) -> int:
    """The epochs before the phase a checkpoint was written in (0 without phases).

    Each phase's optimizer counts its steps from 0, so a resumed run has done this many epochs plus the
    checkpoint's `optimizer.iterations // steps_per_epoch`. The phase comes from the record inside the file
    (`RunRecorder` writes it there), never from state.json, which may lag behind the checkpoint.
    """
    spans = phase_spans(experiment.train)
    if not spans:
        return 0
    phase = (checkpoint_info(path) or {}).get("phase")
    if not isinstance(phase, int) or not 1 <= phase <= len(spans):
        says = "has no phase record" if phase is None else f"records phase {phase!r}"
        raise UserError(f"{path}: {says}, but the run's config.yaml has phases 1 to {len(spans)}")
    return spans[phase - 1][0]


def _epochs(first: int, end: int) -> str:
    """`epochs 4–5` (or `epoch 4`) for the epochs after `first` up to `end`, numbered from 1 as Keras shows them."""
    return f"epoch {end}" if end == first + 1 else f"epochs {first + 1}–{end}"


def describe_phases(experiment: Experiment) -> str:
    """The phases in a few words for the header: `1: epochs 1–3, trainable none, rmsprop 0.001; 2: epoch 4, …`."""
    parts = []
    for index, (phase, (first, end)) in enumerate(zip(experiment.train.phases or [], phase_spans(experiment.train),
                                                       strict=True), 1):
        optimizer = phase_optimizer(experiment.compile.optimizer, phase)
        name = optimizer if isinstance(optimizer, str) else optimizer["name"]
        rate = optimizer.get("learning_rate") if isinstance(optimizer, dict) else None
        shown = "" if rate is None else f" {rate:g}" if not isinstance(rate, dict) else f" {rate['schedule']}"
        views = feature_views(phase)
        cached = "" if not views else ", features cached" + (f" ({views} views)" if views > 1 else "")
        parts.append(f"{index}: {_epochs(first, end)}, trainable {describe_trainable(phase.trainable)}, {name}{shown}"
                     f"{cached}")
    return "; ".join(parts)


def announce_phase(model, experiment: Experiment, run: Run, epoch: int) -> str | None:
    """With phases: note in state.json the phase that trains from `epoch` epochs done, and return its line (what
    trains, how many parameters); None without phases."""
    train = experiment.train
    if not train.phases:
        return None
    index = phase_index(train, epoch)
    first, end = phase_spans(train)[index]
    trained = sum(math.prod(w.shape) for w in model.trainable_weights)
    run.update_state(phase=index + 1)
    return (f"phase {index + 1} of {len(train.phases)}: {_epochs(first, end)}, trainable "
            f"{describe_trainable(train.phases[index].trainable)} ({trained:,} of {model.count_params():,} "
            f"parameters train)")
