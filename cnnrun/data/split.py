"""Hold out validation and test examples from the training data, as the `dataset:` section says.

Of the N training examples, `test_split` takes N·test_split and `validation_split` N·validation_split (rounded
down), `holdout_first` the first N. Without stratification (`stratify: false`, and always for datasets of arrays,
as Keras' `fit(validation_split=...)` cuts) the fractions take the last part of the examples as they are stored:
test the very last, validation the part before it. With it (`stratify: true`, the default for image folders and
tables), each class gives its share of the same count: the last examples *of each class*, as many as
`stratified_tail` allots it, so every split keeps the class proportions. An image folder's and a table's
examples are stored in a seeded order, so "the last" is a seeded draw either way.

Example:
>>> labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])           # 6 of class 0, 2 of class 1
>>> stratified_tail(labels, 4).tolist()                    # half of each class: 3 and 1
[3, 4, 5, 7]
"""

import numpy as np

from cnnrun.config import DatasetConfig
from cnnrun.config.dataset import stratifies
from cnnrun.data.examples import Examples, RawData
from cnnrun.errors import UserError


def allotted(counts: np.ndarray, count: int) -> np.ndarray:
    """How many of `count` held-out examples each class gives, in proportion to its `counts`.

    Each class gets its exact share `count·n_c/N` rounded down, and the examples left over go one each to the
    classes with the largest remainders (the first class on a tie): every class gets its share rounded down or
    up, and the shares add up to `count` exactly.

    Args:
        counts: examples of each class.
        count: examples to hold out in all, at most `counts.sum()`.
    """
    counts = np.asarray(counts, np.int64)
    whole = int(counts.sum())
    if whole == 0:
        return np.zeros_like(counts)
    exact = counts * count
    shares, remainders = exact // whole, exact % whole
    left = count - int(shares.sum())
    order = np.lexsort((np.arange(len(counts)), -remainders))  # largest remainder first, then class order
    shares[order[:left]] += 1
    return shares


def stratified_tail(labels: np.ndarray, count: int) -> np.ndarray:
    """The indices of `count` examples, each class's share (`allotted`) taken from its last examples; sorted.

    Args:
        labels: the class numbers of the examples, in stored order.
        count: examples to take in all.
    """
    labels = np.asarray(labels, np.int64)
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    taken = [np.flatnonzero(labels == label)[len(np.flatnonzero(labels == label)) - share:]
             for label, share in enumerate(allotted(counts, count)) if share]
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)


def _cut(part: Examples, count: int, stratify: bool) -> tuple[Examples, Examples]:
    """`part` less `count` examples, and those examples: the last ones, or each class's last (`stratify`)."""
    if not stratify:
        return part.take(slice(0, len(part) - count)), part.take(slice(len(part) - count, None))
    held = stratified_tail(part.labels, count)
    kept = np.setdiff1d(np.arange(len(part)), held, assume_unique=True)
    return part.take(kept), part.take(held)


def split_examples(config: DatasetConfig, raw: RawData) -> dict[str, Examples]:
    """Hold out validation and test data as the config says (see the module's docstring); a run's recorded
    splits (`raw.presplit`) are kept exactly.

    Raises:
        UserError: the data has a test or validation split of its own and the config asks to hold one out, or a
            split would be empty.
    """
    train, validation, test = raw.train, raw.validation, raw.test
    if raw.presplit:  # a run's recorded splits: exactly those
        return {name: part for name, part in (("train", train), ("validation", validation), ("test", test))
                if part is not None}
    stratify, whole = stratifies(config), len(train)
    if config.test_split is not None:
        if test is not None:
            raise UserError(f"dataset.test_split: this {config.name} data has a test split of its own; "
                            f"remove test_split")
        train, test = _cut(train, int(whole * config.test_split), stratify)
    if validation is not None:
        if config.validation_split is not None or config.holdout_first is not None:
            raise UserError(f"dataset: {config.path} has its own validation split; remove validation_split "
                            f"and holdout_first")
    elif config.holdout_first is not None:
        if config.holdout_first >= len(train):
            raise UserError(f"dataset.holdout_first: {config.holdout_first} leaves no training data (the set has "
                            f"{len(train)})")
        train, validation = train.take(slice(config.holdout_first, None)), train.take(slice(0, config.holdout_first))
    elif config.validation_split is not None:
        train, validation = _cut(train, int(whole * config.validation_split), stratify)
    parts = {"train": train, "validation": validation, "test": test}
    for name, part in parts.items():
        if part is not None and len(part) == 0:
            raise UserError(f"dataset: the {name} split is empty; the data has too few examples for the split "
                            f"fractions")
    return {name: part for name, part in parts.items() if part is not None}


def held_out_words(config: DatasetConfig, raw: RawData) -> str:
    """What the split took from the training data before `samples_per_class` draws from it, for a message."""
    taken = []
    if raw.validation is None and (config.validation_split is not None or config.holdout_first is not None):
        taken.append("validation")
    if config.test_split is not None:
        taken.append("test")
    return f" once {' and '.join(taken)} {'are' if len(taken) > 1 else 'is'} held out" if taken else ""
