"""The one table from the names a config uses to Keras classes.

Config names are Keras' own class names (layers) or Keras' string identifiers (optimizers, losses), so a user
can paste from the Keras documentation. Adding a layer is one line in `LAYERS`.

Only strings live here, so the table can be read (for validation and suggestions) without importing Keras.
"""

import inspect
from typing import Any

from cnnrun.errors import UserError, did_you_mean

# config name -> class name in `keras.layers`
LAYERS: dict[str, str] = {
    "Conv2D": "Conv2D",
    "Convolution2D": "Conv2D",
    "SeparableConv2D": "SeparableConv2D",
    "DepthwiseConv2D": "DepthwiseConv2D",
    "Conv2DTranspose": "Conv2DTranspose",
    "MaxPooling2D": "MaxPooling2D",
    "MaxPool2D": "MaxPooling2D",
    "AveragePooling2D": "AveragePooling2D",
    "AvgPool2D": "AveragePooling2D",
    "GlobalAveragePooling2D": "GlobalAveragePooling2D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "GlobalMaxPooling2D": "GlobalMaxPooling2D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "ZeroPadding2D": "ZeroPadding2D",
    "Cropping2D": "Cropping2D",
    "Dropout": "Dropout",
    "SpatialDropout2D": "SpatialDropout2D",
    "GaussianNoise": "GaussianNoise",
    "Flatten": "Flatten",
    "Reshape": "Reshape",
    "Dense": "Dense",
    "Activation": "Activation",
    "ReLU": "ReLU",
    "LeakyReLU": "LeakyReLU",
    "ELU": "ELU",
    "Softmax": "Softmax",
    "BatchNormalization": "BatchNormalization",
    "LayerNormalization": "LayerNormalization",
    "Rescaling": "Rescaling",
    "Resizing": "Resizing",
    "PatchWhitening": "cnnrun.PatchWhitening",  # cnnrun's own (cnnrun/whitening.py): airbench's frozen first layer
    "backbone": "cnnrun.backbone",  # a keras.applications network (cnnrun/backbones.py; its keys: config/backbone.py)
    # joins: they take the outputs of two or more nodes of a graph (`inputs: [a, b]`)
    "Add": "Add",
    "Concatenate": "Concatenate",
    "Multiply": "Multiply",
    "Average": "Average",
    "Maximum": "Maximum",
    "Minimum": "Minimum",
    "Subtract": "Subtract",
}

# the layers of `LAYERS` that join several inputs into one (Keras' merge layers); Subtract takes exactly two
MERGE_LAYERS = frozenset({"Add", "Concatenate", "Multiply", "Average", "Maximum", "Minimum", "Subtract"})

# config name -> class name in `keras.optimizers`
OPTIMIZERS: dict[str, str] = {
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
    "nadam": "Nadam",
    "adamax": "Adamax",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "lion": "Lion",
    "muon": "ConvolutionMuon",  # cnnrun's: Keras' Muon, convolution kernels included (cnnrun.model.muon)
}

# config name -> class name in `keras.losses`
LOSSES: dict[str, str] = {
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy",
    "categorical_hinge": "CategoricalHinge",
    "hinge": "Hinge",
    "kl_divergence": "KLDivergence",
    "mean_squared_error": "MeanSquaredError",
    "mse": "MeanSquaredError",
    "mean_absolute_error": "MeanAbsoluteError",
    "mae": "MeanAbsoluteError",
    "huber": "Huber",
}

# config name -> class name in `keras.regularizers`
REGULARIZERS: dict[str, str] = {"l1": "L1", "l2": "L2", "l1_l2": "L1L2"}

# arguments every Keras layer takes besides its own
COMMON_LAYER_ARGS = {"name", "dtype", "trainable"}

# Metric names the course writes; Keras 3 logs them under the long name.
METRIC_ALIASES: dict[str, str] = {"acc": "accuracy"}


def canonical_metric(name: str) -> str:
    """Map a metric or monitor name to the key Keras logs (`val_acc` -> `val_accuracy`).

    Example:
    >>> canonical_metric("val_acc")
    'val_accuracy'
    """
    prefix = "val_" if name.startswith("val_") else ""
    bare = name[len(prefix):]
    return prefix + METRIC_ALIASES.get(bare, bare)


def check_layer_name(name: str, where: str) -> str:
    """Return the Keras class name for a config layer name, or raise a UserError with suggestions."""
    if name not in LAYERS:
        raise UserError(
            f"{where}: unknown layer '{name}'{did_you_mean(name, LAYERS)}; "
            f"known layers: {', '.join(sorted(LAYERS))}"
        )
    return LAYERS[name]


def check_name(name: str, table: dict[str, str], what: str, where: str) -> str:
    """Return the Keras class name for `name` in `table` (optimizers, losses), or raise a UserError."""
    key = name.lower()
    if key not in table:
        raise UserError(
            f"{where}: unknown {what} '{name}'{did_you_mean(key, table)}; known: {', '.join(sorted(table))}"
        )
    return table[key]


def accepted_arguments(cls: type) -> list[str]:
    """The keyword arguments a Keras class accepts: its own signature, plus what every layer takes."""
    import keras

    params = inspect.signature(cls.__init__).parameters
    own = [p for p, v in params.items() if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)]
    common = COMMON_LAYER_ARGS if issubclass(cls, keras.layers.Layer) else set()
    return own + sorted(common - set(own))


def check_arguments(cls: type, kwargs: dict[str, Any], where: str) -> None:
    """Raise a UserError naming the first argument `cls` does not accept, with suggestions.

    Args:
        cls: a Keras class (layer, optimizer or loss).
        kwargs: the arguments from the config.
        where: the config path shown to the user, e.g. `model.layers[3] (Conv2D)`.
    """
    accepted = accepted_arguments(cls)
    for key in kwargs:
        if key not in accepted:
            raise UserError(
                f"{where}: {cls.__name__} has no argument '{key}'{did_you_mean(key, accepted)}; "
                f"it takes: {', '.join(accepted)}"
            )


# optimizer arguments that are amounts: Keras takes any number for them, and a negative one trains, wrongly
# (a negative weight_decay grows the weights each step); the moment terms are fractions
NON_NEGATIVE_OPTIMIZER_ARGS = ("weight_decay", "epsilon", "clipnorm", "clipvalue", "global_clipnorm")
FRACTION_OPTIMIZER_ARGS = ("momentum", "beta_1", "beta_2", "rho", "ema_momentum")


def check_optimizer_values(optimizer: dict[str, Any], where: str) -> None:
    """A UserError when an optimizer's amount (`weight_decay`, `epsilon`, clipping) is negative, a moment
    term (`momentum`, `beta_1`, …) is outside 0–1, or `gradient_accumulation_steps` is not a whole number ≥ 1;
    `where` is its key (`compile.optimizer`)."""
    for key in (*NON_NEGATIVE_OPTIMIZER_ARGS, *FRACTION_OPTIMIZER_ARGS):
        value = optimizer.get(key)
        if value is None:
            continue
        fraction = key in FRACTION_OPTIMIZER_ARGS
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (fraction and value > 1):
            need = "a number from 0 to 1" if fraction else "a number ≥ 0"
            hint = " (a negative decay would grow the weights every step)" if key == "weight_decay" else ""
            raise UserError(f"{where}.{key}: {need}{hint}, got {value!r}")
    steps = optimizer.get("gradient_accumulation_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise UserError(f"{where}.gradient_accumulation_steps: a whole number ≥ 1 (batches whose gradients are "
                        f"averaged into one update; 1: none), got {steps!r}")
