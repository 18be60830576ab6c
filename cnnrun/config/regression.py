"""What does not fit `dataset.label_mode: regression` (one or more numbers a picture, from a table's columns).

Every key that speaks of classes is refused in one line: a number has no class to stratify by, to weigh, to draw
N pictures of or to blend one-hot. `cnnrun.config.schema` calls `experiment_misfit` for the keys outside
`dataset:`.

Example:
>>> without_stratify({"label_mode": "regression"})["stratify"]
False
"""

from typing import Any

from cnnrun.config.augmentation import mixes_labels

_NO_CLASS = "but with label_mode: regression a picture has a number, not a class"


def without_stratify(data: dict[str, Any]) -> dict[str, Any]:
    """A csv dataset's mapping with `stratify` false: numbers have no class whose share to keep (`true` is a
    mistake)."""
    if data.get("stratify", False) is not False:
        raise ValueError(f"stratify: true takes each class's share, {_NO_CLASS}; remove stratify (regression holds "
                         f"out the last part of the seeded order)")
    return {**data, "stratify": False}


def regression_misfit(dataset: Any) -> None:
    """A ValueError for the `dataset:` keys that do not fit numbers: another kind than csv, `classes`,
    `samples_per_class`, `sampling: balanced`."""
    if dataset.name != "csv":
        raise ValueError(f"label_mode: regression reads each picture's numbers from a table's columns: use it "
                         f"with name: csv, not {dataset.name}")
    if dataset.classes is not None:
        raise ValueError(f"classes chooses classes, {_NO_CLASS}; leave classes out (target_columns names the "
                         f"columns of numbers)")
    if dataset.samples_per_class is not None:
        raise ValueError(f"samples_per_class draws N pictures of each class, {_NO_CLASS}; leave it out")
    if dataset.sampling == "balanced":
        raise ValueError(f"sampling: balanced gives each class an equal share of an epoch, {_NO_CLASS}; give "
                         f"sampling: natural")


def experiment_misfit(experiment: Any) -> str | None:
    """The one-line error for a key outside `dataset:` that does not fit regression, or None."""
    if experiment.dataset.label_mode != "regression":
        return None
    if experiment.train.class_weight is not None:
        return f"train.class_weight: weighs each picture by its class, {_NO_CLASS}; leave class_weight out"
    if mixes_labels(experiment.augmentation):
        return "augmentation.mixup/cutmix: not with dataset.label_mode: regression (cnnrun blends one-hot labels " \
               "only); leave mixup and cutmix out"
    if experiment.evaluate.tta:
        return "evaluate.tta: averages the outputs of mirrored and moved pictures, but with dataset.label_mode: " \
               "regression a mirrored picture may have another number (an angle changes sign); leave tta out"
    return None
