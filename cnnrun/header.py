"""The panel a Trainer prints before it trains: experiment, data, model, epochs, phases, learning rate, devices.

Example:
>>> show_header(experiment, splits.info, model, placement, run.path, initial_epoch=0, monitor="val_loss")
"""

from pathlib import Path

from cnnrun.config import Experiment
from cnnrun.data import DatasetInfo
from cnnrun.distribute import Placement
from cnnrun.model import learning_rate_scale
from cnnrun.phases import describe_phases, experiment_at
from cnnrun.report import header_panel
from cnnrun.schedules import describe_learning_rate


def plural(count: int, word: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def show_header(experiment: Experiment, info: DatasetInfo, model, placement: Placement, run_path: Path,
                initial_epoch: int, monitor: str, resumed: bool = False) -> None:
    """Print the training header panel.

    Args:
        experiment: the experiment being trained.
        info: the loaded data's description (sizes, classes, input shape).
        model: the compiled Keras model (its optimizer says the learning rate now).
        placement: where training runs.
        run_path: the run folder this process writes.
        initial_epoch: the epochs already done.
        monitor: the logged value that decides `best.keras`.
        resumed: the run continues an earlier one (the panel says `cnnrun resume`). Defaults to False.
    """
    sizes = ", ".join(f"{k} {v:,}" for k, v in info.sizes.items())
    classes = ", ".join(info.class_names[:10]) + (" …" if info.num_classes > 10 else "")
    epochs, first = experiment.train.epochs, initial_epoch + 1
    header_panel({
        "experiment": experiment.name + (f" — {experiment.description}" if experiment.description else ""),
        "dataset": f"{experiment.dataset.name}: {sizes}",
        "classes": f"{info.num_classes}: {classes}",
        "model": f"{len(model.layers)} layers, {model.count_params():,} parameters, input "
                 f"{tuple(info.input_shape)}",
        "training": (f"epochs {first}–{epochs}" if first > 1 else plural(epochs, "epoch"))
        + f", batch {experiment.train.batch_size}, best by {monitor}"
        + (f", {model.dtype_policy.name}" if model.dtype_policy.name != "float32" else ""),
        **({"phases": describe_phases(experiment)} if experiment.train.phases else {}),
        "backend": f"{placement.backend}, learning rate "
        + describe_learning_rate(model.optimizer, experiment_at(experiment, initial_epoch).compile.schedule,
                                 learning_rate_scale(experiment, placement.replicas)),
        "distribution": placement.describe(experiment.train.batch_size),
        "run folder": str(run_path) if placement.writes_run_folder else
        f"written by process 0; process {placement.process_id} works in {run_path}, removed at the end",
    }, title="cnnrun resume" if resumed else "cnnrun train")
