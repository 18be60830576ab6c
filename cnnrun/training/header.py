"""The panel a Trainer prints before it trains: experiment, data, model, epochs, phases, learning rate, devices.

Example:
>>> show_header(trainer)  # in Trainer.fit
"""

from cnnrun.model.compiling import learning_rate_scale
from cnnrun.model.init_from import init_row
from cnnrun.model.phases import describe_phases, experiment_at
from cnnrun.model.schedules import describe_learning_rate
from cnnrun.report import header_panel


def plural(count: int, word: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def show_header(trainer) -> None:
    """Print the training header panel of a Trainer about to fit: what `trainer.splits.info` says of the data,
    what its model and optimizer are now, where it runs, the run it started from (`meta.json`'s `init_from`) and
    whether it continues an earlier process (`cnnrun resume`)."""
    experiment, info, model, placement = trainer.experiment, trainer.splits.info, trainer.model, trainer.placement
    run_path, initial_epoch, resumed = trainer.run.path, trainer.initial_epoch, bool(trainer.meta.get("resumed"))
    sizes = ", ".join(f"{k} {v:,}" for k, v in info.sizes.items())
    classes = ", ".join(info.class_names[:10]) + (" …" if info.num_classes > 10 else "")
    epochs, first = experiment.train.epochs, initial_epoch + 1
    header_panel({
        "experiment": experiment.name + (f" — {experiment.description}" if experiment.description else ""),
        "dataset": f"{experiment.dataset.name}: {sizes}",
        "classes": f"{info.num_classes}: {classes}",
        "model": f"{len(model.layers)} layers, {model.count_params():,} parameters, input "
                 f"{tuple(info.input_shape)}",
        **init_row(trainer.meta, resumed),
        "training": (f"epochs {first}–{epochs}" if first > 1 else plural(epochs, "epoch"))
        + f", batch {experiment.train.batch_size}, best by {trainer.recorder.monitor}"
        + (f", {model.dtype_policy.name}" if model.dtype_policy.name != "float32" else ""),
        **({"phases": describe_phases(experiment)} if experiment.train.phases else {}),
        "backend": f"{placement.backend}, learning rate "
        + describe_learning_rate(model.optimizer, experiment_at(experiment, initial_epoch).compile.schedule,
                                 learning_rate_scale(experiment, placement.replicas)),
        "distribution": placement.describe(experiment.train.batch_size),
        "run folder": str(run_path) if placement.writes_run_folder else
        f"written by process 0; process {placement.process_id} works in {run_path}, removed at the end",
    }, title="cnnrun resume" if resumed else "cnnrun train")
