"""Build a `keras.Model` from the experiment's layer list, and the compile arguments from its `compile:` section.

Every layer's arguments are checked against the Keras class's own signature before anything is built, so a
typo is one clear line, not a Keras traceback halfway through.

Example:
>>> model = build_model(experiment, input_shape=(28, 28, 1), num_classes=10)
>>> model.count_params()
412778
"""

import inspect
from typing import Any

from cnnrun.config import Experiment, iter_layer_entries, substitute
from cnnrun.errors import UserError
from cnnrun.registry import LOSSES, OPTIMIZERS, REGULARIZERS, check_arguments, check_layer_name, check_name

DEFAULT_LOSS = {
    "categorical": "categorical_crossentropy",
    "sparse": "sparse_categorical_crossentropy",
    "binary": "binary_crossentropy",
}


def _regularizer(value: Any, where: str):
    """`{l2: 1e-4}`, `{l1: 1e-5}`, `{l1_l2: {l1: .., l2: ..}}` or `{l1: .., l2: ..}` -> a Keras regularizer."""
    import keras

    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict) or not value or not set(value) <= set(REGULARIZERS):
        raise UserError(f"{where}: a regularizer is {{l1: x}}, {{l2: x}} or {{l1_l2: {{l1: x, l2: y}}}}, "
                        f"got {value!r}")
    if "l1_l2" in value:
        args = value["l1_l2"] if isinstance(value["l1_l2"], dict) else {}
        return keras.regularizers.L1L2(**args)
    if set(value) == {"l1", "l2"}:
        return keras.regularizers.L1L2(l1=value["l1"], l2=value["l2"])
    (name, factor), = value.items()
    return getattr(keras.regularizers, REGULARIZERS[name])(factor)


def _layer_arguments(cls: type, args: Any, where: str) -> dict[str, Any]:
    """A layer entry's value as keyword arguments: a mapping, or one value for the first argument."""
    if args is None:
        return {}
    if isinstance(args, dict):
        kwargs = dict(args)
    else:
        first = next(p for p in inspect.signature(cls.__init__).parameters if p != "self")
        kwargs = {first: args}
    check_arguments(cls, kwargs, where)
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "depthwise_regularizer", "pointwise_regularizer"):
        if key in kwargs:
            kwargs[key] = _regularizer(kwargs[key], f"{where}.{key}")
    return kwargs


def precision_policy(experiment: Experiment) -> str:
    """The Keras dtype policy of `train.mixed_precision`: float32, mixed_float16 (GPU) or mixed_bfloat16 (CPU)."""
    from cnnrun.distribute import gpu_visible

    if not experiment.train.mixed_precision:
        return "float32"
    return "mixed_float16" if gpu_visible() else "mixed_bfloat16"


def build_layers(experiment: Experiment, num_classes: int, output_dtype: str | None = None
                 ) -> list[tuple[str, Any]]:
    """Instantiate the experiment's layers (no model yet), after checking every argument.

    Args:
        experiment: the validated experiment.
        num_classes: fills `${num_classes}`.
        output_dtype: a dtype policy for the last layer (float32 under mixed precision), unless it sets its own.

    Returns `(where, layer)` pairs, `where` being the layer's place in the config for error messages.
    """
    import keras

    specs = []
    raw = substitute(experiment.model.layers, {"num_classes": num_classes}, "model.layers")
    for where, name, args in iter_layer_entries(raw):
        cls = getattr(keras.layers, check_layer_name(name, where))
        specs.append((where, cls, _layer_arguments(cls, args, where)))
    if output_dtype and specs:
        specs[-1][2].setdefault("dtype", output_dtype)
    layers = []
    for where, cls, kwargs in specs:
        try:
            layers.append((where, cls(**kwargs)))
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: {str(e).splitlines()[0]}") from e
    return layers


def build_model(experiment: Experiment, input_shape: tuple[int, ...], num_classes: int, augmenter=None):
    """Build the experiment's `keras.Sequential` for inputs of `input_shape` (without the batch axis).

    Args:
        experiment: the validated experiment.
        input_shape: `(height, width, channels)`.
        num_classes: fills `${num_classes}` in the layers.
        augmenter: augmentation layers to put first (active in training only), or None.
    """
    import keras

    policy = precision_policy(experiment)
    keras.config.set_dtype_policy(policy)  # process-wide in Keras: set for every model, mixed or not
    layers = build_layers(experiment, num_classes, output_dtype="float32" if policy != "float32" else None)
    name = experiment.model.name or experiment.name
    model = keras.Sequential(name=_keras_name(name))
    model.add(keras.Input(shape=tuple(input_shape)))
    if augmenter is not None:
        model.add(augmenter)
    for where, layer in layers:
        try:
            model.add(layer)
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: cannot follow the layer before it: {str(e).splitlines()[0]}") from e
    return model


def _keras_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "model"


def _named(value: str | dict[str, Any], table: dict[str, str], what: str, where: str, module) -> Any:
    """An optimizer or loss from `name` or `{name: ..., args...}`, its arguments checked."""
    if isinstance(value, str):
        value = {"name": value}
    args = {k: v for k, v in value.items() if k != "name"}
    cls = getattr(module, check_name(value["name"], table, what, where))
    check_arguments(cls, args, where)
    try:
        return cls(**args)
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: {str(e).splitlines()[0]}") from e


def make_optimizer(experiment: Experiment):
    """The configured Keras optimizer."""
    import keras

    return _named(experiment.compile.optimizer, OPTIMIZERS, "optimizer", "compile.optimizer", keras.optimizers)


def make_loss(experiment: Experiment):
    """The configured Keras loss, defaulting to the crossentropy that fits `dataset.label_mode`."""
    import keras

    loss = experiment.compile.loss or DEFAULT_LOSS[experiment.dataset.label_mode]
    name = loss if isinstance(loss, str) else loss["name"]
    expected = DEFAULT_LOSS[experiment.dataset.label_mode]
    if name in DEFAULT_LOSS.values() and name != expected:
        raise UserError(f"compile.loss: {name} does not fit dataset.label_mode "
                        f"'{experiment.dataset.label_mode}'; use {expected} (or change label_mode)")
    return _named(loss, LOSSES, "loss", "compile.loss", keras.losses)


def compile_model(model, experiment: Experiment) -> None:
    """Compile `model` with the experiment's optimizer, loss, metrics and execution settings."""
    import keras

    for metric in experiment.compile.metrics:
        if metric not in ("accuracy", "crossentropy"):
            try:
                keras.metrics.get(metric)
            except ValueError as e:
                raise UserError(f"compile.metrics: unknown metric '{metric}'") from e
    model.compile(
        optimizer=make_optimizer(experiment),
        loss=make_loss(experiment),
        metrics=list(experiment.compile.metrics),
        jit_compile=experiment.compile.jit_compile,
        steps_per_execution=experiment.compile.steps_per_execution,
    )
