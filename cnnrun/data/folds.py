"""k-fold cross-validation's split: the training pictures dealt into K folds that keep the class proportions.

Each class's pictures are put in a seeded order and dealt round the folds like cards, the deal going on from one
class to the next; so every fold holds each class's share to within one picture, and the folds' sizes differ by
at most one. The deal depends only on the experiment's seed and the labels, in a stream of random numbers of its
own (`FOLD_STREAM`): the K runs of `cnnrun train --folds K` (one seed) see the same folds, and a resumed or
evaluated run recomputes its own. An image folder's run records its files in `splits.json` as ever.

Example:
>>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
>>> [np.bincount(labels[fold_rows(labels, 2, k, seed=42)]).tolist() for k in (1, 2)]
[[2, 3], [2, 3]]
"""

import numpy as np

from cnnrun.config.dataset import FoldConfig
from cnnrun.data.examples import Examples
from cnnrun.errors import UserError

FOLD_STREAM = 15  # keeps the deal's random numbers apart from every other use of the experiment's seed


def fold_rows(labels: np.ndarray, count: int, index: int, seed: int) -> np.ndarray:
    """The rows of fold `index` (1 to `count`) of `labels`, in stored order.

    Multi-hot labels (`label_mode: multi_label`, a row of 0/1 per picture) have no one class to deal by: the
    pictures are dealt all together in a seeded order, so the folds keep their sizes but not each label's share.

    Args:
        labels: the training split's class numbers (or multi-hot rows).
        count: how many folds.
        index: which fold, 1-based.
        seed: the experiment's seed.
    """
    rng = np.random.default_rng([seed, FOLD_STREAM])
    labels = np.asarray(labels)
    if labels.ndim > 1:  # several labels a picture: one deal of them all
        labels = np.zeros(len(labels), np.int64)
    fold_of = np.empty(len(labels), np.int64)
    dealt = 0
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        fold_of[rows] = (dealt + np.arange(len(rows))) % count
        dealt += len(rows)
    return np.flatnonzero(fold_of == index - 1)


def with_fold(examples: dict[str, Examples], fold: FoldConfig, seed: int) -> dict[str, Examples]:
    """The splits with fold `fold.index` of the training split as validation and the other folds as training.

    Raises:
        UserError: the data has a validation split of its own (an image folder's `validation/`), or a fold would
            be empty.
    """
    if "validation" in examples:
        raise UserError("dataset.fold: this data has a validation split of its own (a validation/ folder, or a "
                        "table's validation rows); the folds take their validation pictures from the training "
                        "split: make those pictures training ones")
    train = examples["train"]
    if len(train) < fold.count:
        raise UserError(f"dataset.fold: {fold.count} folds of {len(train)} training pictures leave a fold empty")
    held = fold_rows(train.labels, fold.count, fold.index, seed)
    kept = np.setdiff1d(np.arange(len(train)), held)
    return {**examples, "train": train.take(kept), "validation": train.take(held)}
