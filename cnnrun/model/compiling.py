"""The compile arguments of an experiment: its optimizer (a learning rate or a schedule, scaled for the replicas),
its loss (the crossentropy that fits the labels by default; label smoothing of integer labels), its metrics.

Example:
>>> compile_model(model, experiment, steps_per_epoch=352)
>>> type(model.optimizer).__name__, type(model.loss).__name__
('SGD', 'SmoothedSparseCategoricalCrossentropy')
"""

from typing import Any

from cnnrun.config import Experiment
from cnnrun.config.augmentation import trained_label_mode
from cnnrun.config.registry import LOSSES, OPTIMIZERS, check_arguments, check_name
from cnnrun.devices.jit_record import JitRecord, recorded, step_key
from cnnrun.devices.machine import cpu_features
from cnnrun.errors import UserError
from cnnrun.model.regression import DEFAULT_LOSS as REGRESSION_LOSS
from cnnrun.model.regression import check_loss

DEFAULT_LOSS = {
    "categorical": "categorical_crossentropy",
    "sparse": "sparse_categorical_crossentropy",
    "binary": "binary_crossentropy",
    "multi_label": "binary_crossentropy",  # one sigmoid a label, each its own yes/no
    "regression": REGRESSION_LOSS,  # one linear number a target (mean_absolute_error and huber fit too)
}
# the focal losses (Lin et al. 2017, crossentropy × (1 − p_true)^gamma, × alpha) and the labels each takes
FOCAL = {"categorical_focal_crossentropy": "categorical", "binary_focal_crossentropy": "binary"}


def _named(value: str | dict[str, Any], table: dict[str, str], what: str, where: str, module) -> Any:
    """An optimizer or loss from `name` or `{name: ..., args...}`, its arguments checked."""
    if isinstance(value, str):
        value = {"name": value}
    args = {k: v for k, v in value.items() if k != "name"}
    name = check_name(value["name"], table, what, where)
    cls = module(name) if callable(module) else getattr(module, name)
    check_arguments(cls, args, where)
    try:
        return cls(**args)
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: {str(e).splitlines()[0]}") from e


def learning_rate_scale(experiment: Experiment, replicas: int) -> float:
    """What every learning rate is multiplied by: the replicas under `train.scale_learning_rate: linear`, else 1."""
    return replicas if experiment.train.scale_learning_rate == "linear" else 1


def _mirrored() -> bool:
    """Whether TensorFlow's MirroredStrategy is in scope (`train.distribution: mirrored`)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(tf.distribute.get_strategy(), tf.distribute.MirroredStrategy)


def make_optimizer(experiment: Experiment, steps_per_epoch: int | None = None, replicas: int = 1):
    """The configured Keras optimizer, its learning rate a number or a schedule (`cnnrun.model.schedules`).

    Args:
        experiment: the validated experiment.
        steps_per_epoch: training batches per epoch, which convert a schedule written in epochs to steps. None
            converts at one step per epoch: enough to check the config, never to train with.
        replicas: devices holding a replica (`train.scale_learning_rate: linear` multiplies every rate by it).
            Defaults to 1.
    """
    import keras

    from cnnrun.model.muon import optimizer_class
    from cnnrun.model.schedules import make_learning_rate

    scale = learning_rate_scale(experiment, replicas)
    value = experiment.compile.optimizer
    config = {"name": value} if isinstance(value, str) else dict(value)
    if "learning_rate" in config:
        config["learning_rate"] = make_learning_rate(config["learning_rate"], steps_per_epoch, scale)
    if config.get("gradient_accumulation_steps") == 1:  # one batch an update: Keras takes None (or ≥ 2) for that
        del config["gradient_accumulation_steps"]
    if config.get("gradient_accumulation_steps") and _mirrored():
        raise UserError("compile.optimizer.gradient_accumulation_steps: not under MirroredStrategy (Keras' "
                        "accumulation branches inside the replicas' step, which TensorFlow refuses); train on one "
                        "device or with train.distribution: data_parallel (JAX), or drop it")
    optimizer = _named(config, OPTIMIZERS, "optimizer", "compile.optimizer", optimizer_class)
    if "learning_rate" not in config and scale != 1:  # the optimizer's own default rate
        optimizer.learning_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate)) * scale
    return optimizer


def make_loss(experiment: Experiment):
    """The configured Keras loss, defaulting to the crossentropy that fits `dataset.label_mode`.

    A crossentropy or focal loss for other labels than `dataset.label_mode` gives (one-hot `categorical_*`,
    one sigmoid unit `binary_*`, integers `sparse_*`) is a UserError: Keras would compute something else without a
    word (binary crossentropy of one-hot labels, column by column).
    """
    import keras

    label_mode = trained_label_mode(experiment.dataset.label_mode, experiment.augmentation)
    loss = experiment.compile.loss or DEFAULT_LOSS[label_mode]
    name = loss if isinstance(loss, str) else loss["name"]
    if label_mode == "regression":
        check_loss(name)
        return _named(loss, LOSSES, "loss", "compile.loss", keras.losses)
    expected = DEFAULT_LOSS[label_mode]
    mode = "binary" if label_mode == "multi_label" else label_mode  # the same losses: one 0/1 per output
    if name in DEFAULT_LOSS.values() and name != expected or FOCAL.get(name, mode) != mode:
        if label_mode != experiment.dataset.label_mode:  # sparse labels trained one-hot
            raise UserError(f"compile.loss: {name} takes class numbers, but augmentation.mixup/cutmix blend the "
                            f"labels into one-hot shares; use {expected}")
        focal = [other for other, labels in FOCAL.items() if labels == mode]  # the focal loss for these labels
        fits = focal[0] if name in FOCAL and focal else expected
        raise UserError(f"compile.loss: {name} does not fit dataset.label_mode '{label_mode}'; use {fits} (or change "
                        f"label_mode)")
    if isinstance(loss, dict) and name == "sparse_categorical_crossentropy" and "label_smoothing" in loss:
        from cnnrun.model import losses  # Keras' sparse crossentropy has no label smoothing

        args = {k: v for k, v in loss.items() if k != "name"}
        check_arguments(losses.SmoothedSparseCategoricalCrossentropy, args, "compile.loss")
        return losses.SmoothedSparseCategoricalCrossentropy(**args)
    return _named(loss, LOSSES, "loss", "compile.loss", keras.losses)


def compile_model(model, experiment: Experiment, steps_per_epoch: int | None = None, replicas: int = 1,
                  optimizer=None) -> None:
    """Compile `model` with the experiment's optimizer, loss, metrics and execution settings.

    Compiling again replaces the optimizer: the Trainer does so once the data has loaded when the learning-rate
    schedule is written in epochs, to convert it with the real steps per epoch.

    Args:
        model: the built model.
        experiment: the validated experiment.
        steps_per_epoch: training batches per epoch, for a schedule written in epochs. Defaults to None: one step
            per epoch, enough to check the config (`inspect`), never to train with.
        replicas: devices holding a replica, for `train.scale_learning_rate`. Defaults to 1.
        optimizer: a Keras optimizer to share (the head trained on cached features steps the whole model's,
            so the checkpoint holds its state). Defaults to None: a new one, as the experiment says, with its
            `compile.rate_multipliers` (`cnnrun.model.rates`).
    """
    import keras

    from cnnrun.model.muon import check_muon_fits
    from cnnrun.model.rates import with_rate_multipliers
    from cnnrun.model.whitening import freezes_whitening_bias

    for metric in experiment.compile.metrics:
        if metric not in ("accuracy", "crossentropy"):
            try:
                keras.metrics.get(metric)
            except ValueError as e:
                raise UserError(f"compile.metrics: unknown metric '{metric}'") from e
    if optimizer is None:
        check_muon_fits(model, experiment.compile.optimizer)
        optimizer = with_rate_multipliers(make_optimizer(experiment, steps_per_epoch, replicas), model,
                                          experiment.compile.rate_multipliers, freezing=freezes_whitening_bias(model))
    metrics: list[Any] = list(experiment.compile.metrics)
    if experiment.dataset.label_mode == "multi_label":  # Keras would take `accuracy` of 3 outputs as categorical
        metrics = [keras.metrics.BinaryAccuracy(name=m) if m in ("accuracy", "acc") else m for m in metrics]
    if experiment.dataset.label_mode == "regression":  # no class to be right about: errors (normalised units)
        metrics = [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")] \
            + [m for m in metrics if m not in ("accuracy", "acc", "crossentropy", "mae", "rmse")]
    model.compile(
        optimizer=optimizer,
        loss=make_loss(experiment),
        metrics=metrics,
        jit_compile=measured_jit(model, experiment, optimizer)[0],
        steps_per_execution=experiment.compile.steps_per_execution,
    )


def training_step_key(model, experiment: Experiment, optimizer=None) -> str:
    """The step part of a jit record's key (`cnnrun.devices.jit_record.step_key`) for `model` as `experiment`
    trains it, with `optimizer` (default: the model's own)."""
    import keras

    layers = [(type(layer).__name__, int(layer.count_params()) if layer.built else 0) for layer in model.layers]
    return step_key(keras.backend.backend(), keras.config.dtype_policy().name, experiment.train.batch_size,
                    experiment.compile.steps_per_execution, type(optimizer or model.optimizer).__name__,
                    [tuple(t.shape) for t in model.inputs], layers, tuple(model.outputs[0].shape))


def measured_jit(model, experiment: Experiment, optimizer=None) -> tuple[bool | str, JitRecord | None]:
    """What `compile.jit_compile` becomes for `model`: the config's `true` or `false` as written; `auto` on the
    TensorFlow backend without a GPU follows this CPU's record of the step (`cnnrun.devices.jit_record`), made by
    `cnnrun profile --compare-jit`, and stays Keras' `auto` (XLA on a GPU only) where there is none.

    Returns:
        The value for Keras' `compile`, and the record it followed (None when it followed none).
    """
    import keras

    from cnnrun.devices.distribute import gpu_visible

    jit = experiment.compile.jit_compile
    if jit != "auto" or keras.backend.backend() != "tensorflow" or gpu_visible():
        return jit, None
    try:
        step = training_step_key(model, experiment, optimizer)
    except (AttributeError, ValueError):  # a model not built on an input yet: nothing measured can be its step
        return jit, None
    record = recorded(step, cpu_features())
    return (record.jit_compile, record) if record else ("auto", None)
