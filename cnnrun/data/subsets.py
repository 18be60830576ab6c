"""Part of a dataset: some of its classes (`dataset.classes`), a few training pictures of each (`samples_per_class`).

`chosen_classes` checks the names a config asks for against the dataset's own, before any image is read where
the names are known without reading (`describe`, an image folder's class folders). `only_classes` keeps the
examples of those classes in every split and numbers them in the order asked for. `per_class_sample` draws the
same N training examples of each class for the same seed, whatever else the seed is used for, so a resumed or
evaluated run of arrays recomputes exactly the subset it was trained on (an image folder's run records its files).

Example:
>>> chosen = chosen_classes(["cat", "dog"], CLASS_NAMES["cifar10"], "cifar10")
>>> raw = only_classes(raw, chosen)                  # cat is label 0, dog 1; the other eight classes are gone
>>> train = per_class_sample(raw.train, 500, seed=42, class_names=chosen)
>>> len(train), np.bincount(train.labels).tolist()
(1000, [500, 500])
"""

import dataclasses

import numpy as np

from cnnrun.data.examples import Examples, RawData
from cnnrun.errors import UserError, did_you_mean

SAMPLE_STREAM = 14  # keeps the subset's random numbers apart from every other use of the experiment's seed
LISTED = 30  # class names a message lists before it only counts them


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f", … ({len(names)} in all)" if len(names) > LISTED else "")


def chosen_classes(wanted: list[str] | None, names: list[str], where: str) -> list[str]:
    """The classes to use: `wanted`, each checked against the dataset's own `names`; all of them when None.

    Args:
        wanted: the config's `dataset.classes`, or None.
        names: the dataset's class names, in its own label order.
        where: the dataset as messages name it (`cifar10`, `the image folder data/pets`).

    Raises:
        UserError: a name in `wanted` is not a class of the dataset (with the nearest name and the list).
    """
    if wanted is None:
        return list(names)
    for name in wanted:
        if name not in names:
            raise UserError(f"dataset.classes: {where} has no class '{name}'{did_you_mean(name, names)}; its "
                            f"classes: {_listed(names)}")
    return list(wanted)


def _relabelled(part: Examples | None, new_label: np.ndarray) -> Examples | None:
    """The examples of `part` whose label `new_label` maps to 0 or more, with those labels."""
    if part is None:
        return None
    labels = np.asarray(part.labels)
    known = (labels >= 0) & (labels < len(new_label))  # an npz's test labels may go past its training classes
    mapped = np.full(len(labels), -1, np.int64)
    mapped[known] = new_label[labels[known]]
    rows = np.flatnonzero(mapped >= 0)
    return dataclasses.replace(part.take(rows), labels=mapped[rows])


def only_classes(raw: RawData, chosen: list[str]) -> RawData:
    """`raw` with the examples of the `chosen` classes only, in every split, labelled by their place in `chosen`.

    Returns `raw` itself when `chosen` is its class list already (an image folder reads only the chosen classes'
    folders, numbered in that order, in the first place).

    Args:
        raw: a dataset as loaded, every class.
        chosen: names of `raw.class_names` (see `chosen_classes`).
    """
    if chosen == raw.class_names:
        return raw
    new_label = np.full(len(raw.class_names), -1, np.int64)
    for label, name in enumerate(chosen):
        new_label[raw.class_names.index(name)] = label
    return dataclasses.replace(raw, train=_relabelled(raw.train, new_label), test=_relabelled(raw.test, new_label),
                               validation=_relabelled(raw.validation, new_label), class_names=list(chosen))


def per_class_sample(train: Examples, count: int, seed: int, class_names: list[str], held_out: str = "") -> Examples:
    """`count` training examples of each class, drawn with `seed`, in the order they are stored in.

    The draw depends only on `seed` and the labels of `train`: the same seed gives the same examples, in a
    stream of random numbers of its own (`SAMPLE_STREAM`), so it does not move when the seed's other uses do.

    Args:
        train: the training split, validation and test already held out.
        count: examples of each class (`dataset.samples_per_class`).
        seed: the experiment's seed.
        class_names: the class names, in label order.
        held_out: words for the message of a class with too few examples, saying what was held out before
            (` once validation is held out`); defaults to none.

    Raises:
        UserError: a class has fewer than `count` training examples.
    """
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    labels = np.asarray(train.labels)
    picked = []
    for label, name in enumerate(class_names):
        rows = np.flatnonzero(labels == label)
        if len(rows) < count:
            raise UserError(f"dataset.samples_per_class: {count}, but class '{name}' has only {len(rows)} training "
                            f"pictures{held_out}")
        picked.append(rng.choice(rows, count, replace=False))
    return train.take(np.sort(np.concatenate(picked)))
