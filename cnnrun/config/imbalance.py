"""Imbalanced classes as a config writes them: `train.class_weight`, and the weights Keras' `fit` receives.

`train.class_weight` is `balanced` or a weight for each class named, `{cat: 2.0, dog: 1.0}`. Keras' `fit(...,
class_weight={index: weight})` multiplies each training example's loss by its class's weight (and its training
metrics too); validation and test are never weighted. Classes the mapping leaves out weigh 1. `balanced` is
scikit-learn's `compute_class_weight("balanced")`: `n_samples / (n_classes × count_c)` over the training split,
so every class carries the same total weight, and the weights average 1 per example.

Checking a value here needs neither TensorFlow nor Keras; the class names and counts come from the data layer
(`DatasetInfo.class_names`, `DatasetInfo.class_counts["train"]`).

Example:
>>> class_weight_map("balanced", ["circle", "square"], [30, 10])
{0: 0.6666666666666666, 1: 2.0}
>>> class_weight_map({"square": 3}, ["circle", "square"], [30, 10])
{0: 1.0, 1: 3.0}
>>> describe_class_weight("balanced", ["circle", "square"], {0: 0.6666666666666666, 1: 2.0})
'balanced: circle 0.667, square 2'
"""

import math
from collections.abc import Sequence
from typing import Any

from cnnrun.errors import UserError

WHERE = "train.class_weight"
BALANCED = "balanced"
SHOWN = 10  # classes named in the header's row; more are counted


def check_class_weight(value: Any) -> Any:
    """The value of `train.class_weight` as written, or a UserError: `balanced`, or a non-empty mapping from class
    names to positive finite numbers (None, the default, weighs every class 1)."""
    if value is None or value == BALANCED:
        return value
    if not isinstance(value, dict) or not value:
        raise UserError(f"{WHERE}: `balanced` or a weight per class name ({{cat: 2.0, dog: 1.0}}), got {value!r}")
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
                or weight <= 0:
            raise UserError(f"{WHERE}.{name}: a weight is a number > 0, got {weight!r}")
    return {str(name): float(weight) for name, weight in value.items()}


def check_class_names(value: Any, class_names: Sequence[str]) -> None:
    """A UserError when `train.class_weight` names a class the dataset does not have (the classes listed).

    Args:
        value: the checked `train.class_weight` (None, `balanced` or a mapping).
        class_names: the dataset's classes, in label order (declared by the config, or loaded).
    """
    if not isinstance(value, dict):
        return
    unknown = [name for name in value if name not in class_names]
    if unknown:
        raise UserError(f"{WHERE}: no class named {', '.join(map(repr, unknown))}; the dataset's classes are "
                        f"{', '.join(class_names)}")


def class_weight_map(value: Any, class_names: Sequence[str], counts: Sequence[int] | None) -> dict[int, float] | None:
    """The `class_weight` argument of Keras' `fit`: label index → weight, every class present; None for no weights.

    Args:
        value: the checked `train.class_weight` (None, `balanced` or `{class name: weight}`).
        class_names: the dataset's classes, in label order (label i is `class_names[i]`).
        counts: the training split's examples per class, in the same order (`DatasetInfo.class_counts["train"]`);
            `balanced` needs them, a mapping does not.

    Raises:
        UserError: a class name the dataset does not have; `balanced` with a class that has no training example
            (its weight would be infinite) or without counts.
    """
    if value is None:
        return None
    check_class_names(value, class_names)
    if isinstance(value, dict):
        return {index: float(value.get(name, 1.0)) for index, name in enumerate(class_names)}
    if counts is None or len(counts) != len(class_names):
        raise UserError(f"{WHERE}: balanced needs the training split's class counts, which this dataset does not give")
    empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if empty:
        raise UserError(f"{WHERE}: balanced, but {', '.join(empty)} has no training example (an infinite weight); "
                        f"give the weights by name, or leave that class out (dataset.classes)")
    total = sum(counts)
    return {index: total / (len(counts) * count) for index, count in enumerate(counts)}


def describe_class_weight(value: Any, class_names: Sequence[str], weights: dict[int, float] | None) -> str:
    """One line for the run header: `balanced: cat 0.667, dog 2`, `cat 2, dog 1`, or `none` (every class 1)."""
    if weights is None:
        return "none"
    shown = ", ".join(f"{class_names[i]} {weights[i]:.3g}" for i in sorted(weights)[:SHOWN])
    more = f", … ({len(weights)} classes)" if len(weights) > SHOWN else ""
    return (f"{BALANCED}: " if value == BALANCED else "") + shown + more
