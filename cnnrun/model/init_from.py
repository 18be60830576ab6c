"""`model.init_from`: a new run starts from the weights of an earlier run's checkpoint, layer by layer.

A layer of the new model takes the weights of the checkpoint's layer of the same name when each of its weights
has the same shape there: kernel and bias, BatchNormalization's moving statistics (Keras' `layer.weights`,
trainable or not); never the optimizer's state. A layer of a nested model (a backbone) is named by its path,
`backbone/Conv1`, and matched the same way. Layers without weights (pooling, Flatten, the augmentation layers)
take no part. cnnrun's layer names depend on the config alone (`cnnrun.model.layer_names`), so two runs of different
configs agree on them: `conv2d`, `conv2d_1`, … `dense`, in order, or the config's own `name:` and `id:`.

With `model.replace_head: true` the model's last Dense layer keeps its fresh initialisation (a head for this
dataset's classes). Without it, a last Dense whose shapes differ from the run's layer of that name (another number
of classes) is an error that says so, and so is a model that would load nothing: not a silent random start. A run
that is still training (a live process holds its `run.lock`) is refused, naming that process: its checkpoints change.

`new_model` copies the weights (`copy_matching_weights`): a new run starts from them, and so does a resumed run
killed before its first epoch ended (it starts again from the beginning). A resumed run with a `last.keras`
restores that and never reads the earlier run again. `inspect` shows the same matching (`plan_init`); the Trainer
records it in `meta.json` (`init_record`) and in its header (`init_row`).

Example:
>>> matching = plan_init(model, experiment)
>>> matching.loaded, matching.new
(['conv2d', 'conv2d_1'], {'dense': 'the head (replace_head)'})
>>> matching.describe()
'/work/outputs/shapes/20261127-101500 (best.keras): 2 layers loaded, 1 new (dense)'
"""

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnrun.config import Experiment
from cnnrun.config.model import split_init_from
from cnnrun.errors import UserError
from cnnrun.model.checkpoints import load_checkpoint
from cnnrun.run_folder.folder import Run, is_run_folder, open_run, runs_under
from cnnrun.run_folder.lock import LOCK_NAME, Holder, parse_holder


@dataclass(frozen=True)
class Source:
    """The weights of an earlier run's checkpoint, by layer path.

    Attributes:
        run: the run folder.
        checkpoint: `best.keras` or `last.keras`.
        weights: each layer's weights as NumPy arrays (in `layer.weights` order), by path (`conv2d`, `backbone/Conv1`).
    """

    run: str
    checkpoint: str
    weights: dict[str, list[Any]]


@dataclass(frozen=True)
class Matching:
    """Which layers of a model take an earlier run's weights, and which start fresh.

    Attributes:
        run: the run folder the weights come from.
        checkpoint: `best.keras` or `last.keras`.
        loaded: the paths of the layers that take the checkpoint's weights, in the model's order.
        new: the paths of the layers that keep their fresh initialisation, each with why.
    """

    run: str
    checkpoint: str
    loaded: list[str]
    new: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """What `meta.json` records under `init_from`: `{run, checkpoint, loaded: [...], new: [...]}`."""
        return {"run": self.run, "checkpoint": self.checkpoint, "loaded": list(self.loaded), "new": list(self.new)}

    def describe(self) -> str:
        """One line: `RUN (best.keras): 9 layers loaded, 1 new (dense_1)`."""
        return describe(self.to_dict())

    def status(self, layer: Any) -> str:
        """What `inspect` shows for a layer of the model's top level: `loaded`, `new: why`, `150 loaded, 2 new`
        for a nested model, or nothing for a layer without weights."""
        if layer.name in self.loaded:
            return "loaded"
        if layer.name in self.new:
            return f"new: {self.new[layer.name]}"
        inner = [sum(path.startswith(f"{layer.name}/") for path in paths) for paths in (self.loaded, self.new)]
        return f"{inner[0]} loaded, {inner[1]} new" if any(inner) else ""


def describe(record: dict[str, Any]) -> str:
    """A `Matching.to_dict()` record (as `meta.json` keeps it) in one line."""
    loaded, new = record["loaded"], record["new"]
    return (f"{record['run']} ({record['checkpoint']}): {len(loaded)} layer{'' if len(loaded) == 1 else 's'} "
            f"loaded, {len(new)} new" + (f" ({_few(new)})" if new else ""))


def _few(names: Any, count: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:count]) + (f", … ({len(names) - count} more)" if len(names) > count else "")


def weighted_layers(model: Any, prefix: str = "") -> dict[str, Any]:
    """The layers of `model` that hold weights, by path: `conv2d`; `backbone/Conv1` inside a nested model."""
    import keras

    found: dict[str, Any] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(weighted_layers(layer, f"{prefix}{layer.name}/"))
        elif layer.weights:
            found[prefix + layer.name] = layer
    return found


def read_source(init_from: str) -> Source:
    """The weights of the checkpoint `model.init_from` names (`RUN_DIR:best` or `RUN_DIR:last`).

    A folder that is not a run folder, a checkpoint that is missing or cannot be loaded are one-line UserErrors
    naming what is missing or wrong. The last checkpoint read is kept: the Trainer builds its model twice and then
    records the matching, and reads the file once.
    """
    folder, which = split_init_from(init_from)
    try:
        run = open_run(latest_finished(Path(folder)))
    except UserError as e:
        raise e.at("model.init_from") from e
    holder = live_holder(run.path)
    if holder is not None:
        where = "" if holder.host == socket.gethostname() else f" on {holder.host}"
        raise UserError(f"model.init_from: {run.path} is still training (process {holder.pid}{where} has held its "
                        f"{LOCK_NAME} since {holder.since}); its checkpoints change as it trains: wait for it to end, "
                        f"or start from a finished run")
    path = run.checkpoint(which)
    if not path.is_file():
        other = "last" if which == "best" else "best"
        hint = f"; use {run.path}:{other}" if run.checkpoint(other).is_file() else \
            " (it has not finished an epoch)"
        raise UserError(f"model.init_from: {path}: missing; {run.path} has no checkpoints/{which}.keras{hint}")
    stat = path.stat()
    return _read_checkpoint(str(run.path), path.name, stat.st_mtime_ns, stat.st_size)


def live_holder(folder: Path) -> Holder | None:
    """The process that holds the run folder `folder` (its `run.lock`, see `cnnrun.run_folder.lock`) while it
    trains, or None: no lock, a damaged one, one left by a process that has ended, or this process's own."""
    try:
        holder = parse_holder((folder / LOCK_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    mine = holder.pid == os.getpid() and holder.host == socket.gethostname()
    return holder if holder.alive() and not mine else None


def latest_finished(folder: Path) -> Path:
    """`folder` itself when it is a run folder; for the folder of an experiment's runs (`outputs/NAME`), its most
    recent finished run (completed or stopped early; the folders' names are their start times). `meta.json`
    records which run the weights came from."""
    if is_run_folder(folder) or not folder.is_dir():
        return folder
    finished = sorted(run.path for run in map(Run, runs_under(folder))
                      if _status(run) in ("completed", "stopped_early"))
    if not finished:
        raise UserError(f"model.init_from: {folder} is neither a run folder nor holds a finished run "
                        f"(outputs/NAME/<time> with checkpoints)")
    return finished[-1]


def _status(run: Run) -> str | None:
    """The run's status, or None when its state.json is damaged (such a run is not a source)."""
    try:
        return run.read_state().status
    except UserError:
        return None


@functools.lru_cache(maxsize=1)
def _read_checkpoint(run: str, checkpoint: str, mtime_ns: int, size: int) -> Source:
    """Load a checkpoint in safe mode and keep its weights (a file changed since is read again)."""
    import keras

    try:
        model = load_checkpoint(Run(Path(run)).checkpoints / checkpoint, use_other=f"model.init_from: {run}:")
    except UserError as e:
        raise e.at("model.init_from") from e
    weights = {path: [keras.ops.convert_to_numpy(weight) for weight in layer.weights]
               for path, layer in weighted_layers(model).items()}
    return Source(run, checkpoint, weights)


def match_layers(model: Any, source: Source, replace_head: bool = False) -> Matching:
    """Which layers of `model` take `source`'s weights: the same path, and weights of the same shapes.

    Args:
        model: the new model, built.
        source: the earlier run's weights (`read_source`).
        replace_head: leave the model's last Dense layer (of its top level) fresh even when it matches.
            Defaults to False: then a last Dense whose shapes differ from the run's is a UserError.

    Raises:
        UserError: nothing would be loaded; `replace_head` on a model without a Dense layer; a last Dense of
            other shapes without `replace_head`.
    """
    import keras

    mine = weighted_layers(model)
    dense = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    head = dense[-1] if dense else None
    if replace_head and head is None:
        raise UserError("model.replace_head: the model has no Dense layer to rebuild; end it with a Dense layer "
                        "of `${num_classes}` units or set replace_head: false")
    loaded: list[str] = []
    new: dict[str, str] = {}
    for path, layer in mine.items():
        shapes = [tuple(weight.shape) for weight in layer.weights]
        theirs = [tuple(array.shape) for array in source.weights.get(path, [])]
        if replace_head and path == head:
            new[path] = "the head (replace_head)"
        elif path not in source.weights:
            new[path] = "no layer of this name in the run"
        elif shapes != theirs:
            if path == head:
                raise UserError(f"model.init_from: the last Dense layer '{head}' has weights of shapes {shapes}, "
                                f"the run's {theirs} (another number of classes?): set model.replace_head: true "
                                f"to give it a fresh start")
            new[path] = f"weights {shapes}, the run's {theirs}"
        else:
            loaded.append(path)
    if not loaded:
        but_head = " but the head, which replace_head leaves fresh" if replace_head and head in source.weights else ""
        raise UserError(f"model.init_from: nothing to load from {source.run} ({source.checkpoint}): no layer of "
                        f"this model has the name and weight shapes of one of its layers{but_head} (this model has "
                        f"{_few(mine) or 'no layer with weights'}; the run has "
                        f"{_few(source.weights) or 'no layer with weights'}); give the layers to carry over the "
                        f"same names")
    return Matching(source.run, source.checkpoint, loaded, new)


def plan_init(model: Any, experiment: Experiment) -> Matching | None:
    """The matching between `model` and `experiment`'s `model.init_from` checkpoint; None without `init_from`."""
    if experiment.model.init_from is None:
        return None
    return match_layers(model, read_source(experiment.model.init_from), experiment.model.replace_head)


def copy_matching_weights(model: Any, experiment: Experiment) -> Matching | None:
    """Give each layer of `model` that matches `model.init_from`'s checkpoint that checkpoint's weights.

    Returns the matching, or None without `init_from` (nothing done).
    """
    if experiment.model.init_from is None:
        return None
    source = read_source(experiment.model.init_from)
    matching = match_layers(model, source, experiment.model.replace_head)
    layers = weighted_layers(model)
    for path in matching.loaded:
        layers[path].set_weights(source.weights[path])
    return matching


def init_record(experiment: Experiment, model: Any) -> dict[str, Any]:
    """`{"init_from": {run, checkpoint, loaded, new}}` for a new run's `meta.json`; `{}` without `init_from`."""
    matching = plan_init(model, experiment)
    return {} if matching is None else {"init_from": matching.to_dict()}


def init_row(meta: dict[str, Any], resumed: bool) -> dict[str, str]:
    """The header's `init from` row of a new run whose `meta.json` records one (a resumed run copies nothing)."""
    return {"init from": describe(meta["init_from"])} if "init_from" in meta and not resumed else {}
