"""What a Trainer tells before and after it trains: the header (experiment, data, model, epochs, phases, learning
rate, devices) and the results (status, best epoch, test scores, time, run folder), as `Rows` the CLI shows.

Example:
>>> trainer.say(header_rows(trainer))  # in Trainer.fit
"""

import numpy as np

from cnnrun.config.imbalance import class_weight_map, describe_class_weight
from cnnrun.data.sampling import epoch_classes
from cnnrun.devices.distribute import fingerprint
from cnnrun.model.compiling import learning_rate_scale, measured_jit
from cnnrun.model.init_from import init_row
from cnnrun.model.phases import describe_phases, experiment_at
from cnnrun.model.rates import describe_multipliers
from cnnrun.model.schedules import describe_learning_rate
from cnnrun.report import Rows, format_metrics
from cnnrun.training.lookahead import describe_lookahead


def plural(count: int, word: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def fit_class_weight(experiment, info) -> dict[int, float] | None:
    """Keras' `fit(class_weight=…)` for the experiment's `train.class_weight` over the loaded data `info` (its
    class names and the training split's class counts); None when every class weighs 1."""
    return class_weight_map(experiment.train.class_weight, info.class_names, info.class_counts.get("train"))


def batch_row(experiment, model) -> str:
    """`batch 32`, or with gradient accumulation `batch 8 × 4 accumulated = 32 an update` (the current
    optimizer's: a phase's own optimizer may have none)."""
    batch = experiment.train.batch_size
    steps = getattr(getattr(model.optimizer, "inner_optimizer", model.optimizer), "gradient_accumulation_steps", None)
    return f"batch {batch}" + (f" × {steps} accumulated = {batch * steps} an update" if steps else "")


def sampling_row(info) -> str:
    """`balanced: 1,000 pictures an epoch, 250 of each of 4 classes (cnnrun.data.sampling)`."""
    shares = epoch_classes(np.repeat(np.arange(info.num_classes), info.class_counts.get("train", [])),
                           info.num_classes)
    given = sorted({int(share) for share in shares if share})
    each = " or ".join(f"{share:,}" for share in given)
    return f"balanced: {int(shares.sum()):,} pictures an epoch, {each} of each of {int((shares > 0).sum())} classes"


def no_validation_row(experiment, monitor: str) -> str:
    """What the checkpoints mean in a run without validation data (airbench trains on all 50,000 pictures)."""
    if not experiment.callbacks.checkpoint.save_best_only:
        return "none: every picture trains; best.keras is the last epoch's (save_best_only: false)"
    return f"none: every picture trains; best.keras is chosen by the training {monitor}, not on held-out pictures"


def header_rows(trainer) -> Rows:
    """The header panel of a Trainer about to fit: what `trainer.splits.info` says of the data (and the class
    weights made of it), what its model and optimizer are now (the batches an update takes), where it runs, the
    run it started from (`meta.json`'s `init_from`) and whether it continues an earlier process (`cnnrun resume`)."""
    experiment, info, model, placement = trainer.experiment, trainer.splits.info, trainer.model, trainer.placement
    run_path, initial_epoch, resumed = trainer.run.path, trainer.initial_epoch, bool(trainer.meta.get("resumed"))
    sizes = ", ".join(f"{k} {v:,}" for k, v in info.sizes.items())
    classes = ", ".join(info.class_names[:10]) + (" …" if info.num_classes > 10 else "")
    epochs, first = experiment.train.epochs, initial_epoch + 1
    rows = {
        "experiment": experiment.name + (f" — {experiment.description}" if experiment.description else ""),
        "dataset": f"{experiment.dataset.name}: {sizes}",
        **({"targets": f"{classes} (mean {_numbers(info.target_mean)}, std {_numbers(info.target_std)} of train)"}
           if info.label_mode == "regression" else {"classes": f"{info.num_classes}: {classes}"}),
        "model": f"{len(model.layers)} layers, {model.count_params():,} parameters, input "
                 f"{tuple(info.input_shape)}",
        **init_row(trainer.meta, resumed),
        "training": (f"epochs {first}–{epochs}" if first > 1 else plural(epochs, "epoch"))
        + f", {batch_row(experiment, model)}, best by {trainer.recorder.monitor}"
        + (f", {model.dtype_policy.name}" if model.dtype_policy.name != "float32" else ""),
        **({"phases": describe_phases(experiment)} if experiment.train.phases else {}),
        **({"validation": no_validation_row(experiment, trainer.recorder.monitor)}
           if trainer.splits.validation is None else {}),
        **({"class weights": describe_class_weight(experiment.train.class_weight, info.class_names,
                                                   fit_class_weight(experiment, info))}
           if experiment.train.class_weight else {}),
        **({"sampling": sampling_row(info)} if experiment.dataset.sampling == "balanced" else {}),
        **({"lookahead": describe_lookahead(**experiment.callbacks.lookahead.model_dump())}
           if experiment.callbacks.lookahead else {}),
        **({"rate multipliers": describe_multipliers(experiment.compile.rate_multipliers, model)}
           if experiment.compile.rate_multipliers else {}),
        **({"XLA": measured.describe()} if (measured := measured_jit(model, experiment)[1])
           and bool(model.jit_compile) == measured.jit_compile else {}),  # (Keras keeps XLA off where it cannot)
        "backend": f"{placement.backend}, learning rate "
        + describe_learning_rate(model.optimizer, experiment_at(experiment, initial_epoch).compile.schedule,
                                 learning_rate_scale(experiment, placement.replicas)),
        "distribution": placement.describe(experiment.train.batch_size),
        "run folder": str(run_path) if placement.writes_run_folder else
        f"written by process 0; process {placement.process_id} works in {run_path}, removed at the end",
    }
    return Rows("cnnrun resume" if resumed else "cnnrun train", tuple(rows.items()), "panel")


def results_rows(trainer, state, scores: dict) -> Rows:
    """The results table of a finished Trainer: status, epochs, best epoch, test scores per checkpoint, (in a
    cluster) the final weights' fingerprint, training time and run folder."""

    best = trainer.recorder.best
    rows = [("status", state.status), ("epochs", f"{state.epochs_completed} of {state.epochs_planned}")]
    if best["epoch"] is not None:
        rows.append(("best epoch", f"{best['epoch']} ({best['monitor']} {best['value']:.4f})"))
    for which in ("best", "last"):
        if which in scores:
            rows.append((f"test, {which}.keras", format_metrics(scores[which])))
    if not scores:
        rows.append(("test", "no test split"))
    if trainer.placement.processes > 1:
        rows.append(("final weights", f"fingerprint {fingerprint(trainer.model)}"))
    rows.append(("training time", f"{state.fit_seconds:.1f} s"))
    rows.append(("run folder", str(trainer.run.path)))
    return Rows(f"{trainer.experiment.name}: results", tuple(rows))


def _numbers(values: list[float] | None) -> str:
    """A target normalisation's figures, 4 significant digits each (`0.4312, 12.5`)."""
    return ", ".join(f"{v:.4g}" for v in values or [])
