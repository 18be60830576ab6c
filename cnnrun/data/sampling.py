"""Balanced sampling (`dataset.sampling: balanced`): every class an equal share of each training epoch.

An epoch still has N batches' worth of pictures (N the training split's size), but instead of every picture once,
each class present gives an equal share of the N (`allotted` over equal counts: N/C each, the remainder one each to
the first classes). A class's share is drawn without repeats while its pictures last: it walks through its
pictures in a shuffled order and starts a fresh shuffle when they run out: a rare class's pictures are seen several
times an epoch, a common class's only some of them (another draw of them each epoch). The places of the classes in
the epoch are shuffled too. Everything is seeded with the epoch's seed, so a resumed run sees the
same epochs as a straight one.

This is tf.data's `choose_from_datasets`: one endless stream per class, and a stream of class numbers that picks
which class gives the next picture. It is an alternative to `train.class_weight` (weighting the losses rather
than the pictures), not to be combined with it. Validation and test are never resampled.

Example:
>>> epoch_classes(np.array([0, 0, 0, 0, 0, 0, 1, 1, 2]), classes=3).tolist()   # 9 places, 3 classes
[3, 3, 3]
>>> epoch_classes(np.array([0, 0, 0, 1]), classes=3).tolist()                  # a class without pictures: none
[2, 2, 0]
"""

import numpy as np

from cnnrun.data.split import allotted

CLASS_STREAM = 7_919  # keeps the classes' seeds apart from the epoch's own


def epoch_classes(labels: np.ndarray, classes: int) -> np.ndarray:
    """How many of an epoch's `len(labels)` places each class fills: equal shares among the classes that have a
    picture (`allotted`), none for a class without one.

    Args:
        labels: the class numbers of the training pictures.
        classes: the number of classes.
    """
    labels = np.asarray(labels, np.int64)
    present = (np.bincount(labels, minlength=classes) > 0).astype(np.int64)
    return allotted(present, len(labels))


def class_parts(labels: np.ndarray, classes: int) -> list[np.ndarray]:
    """The indices of each class's pictures, for the classes with a share (`epoch_classes`), in class order."""
    labels = np.asarray(labels, np.int64)
    return [np.flatnonzero(labels == label) for label, share in enumerate(epoch_classes(labels, classes)) if share]


def balanced_epoch(streams: list, labels: np.ndarray, classes: int, seed):
    """One epoch of `len(labels)` elements, each class's share taken from its own endless stream.

    Args:
        streams: one endless `tf.data` stream per class with a share, in class order (see `class_parts`).
        labels: the class numbers of the training pictures.
        classes: the number of classes.
        seed: the epoch's seed (a number or a scalar tensor): the order in which the classes take their places.
    """
    import tensorflow as tf

    shares = epoch_classes(labels, classes)
    shares = shares[shares > 0]
    places = np.repeat(np.arange(len(shares), dtype=np.int64), shares)
    order = tf.data.Dataset.from_tensor_slices(places).shuffle(len(places), seed=seed,
                                                               reshuffle_each_iteration=False)
    return tf.data.Dataset.choose_from_datasets(streams, order)


def class_seed(seed, index: int):
    """The seed of class stream `index` in the epoch with `seed` (a number or a scalar int64 tensor)."""
    return seed * CLASS_STREAM + index + 1


def balanced_places(labels: np.ndarray, classes: int, seed):
    """One balanced epoch of places (int64 indices into the training pictures): `balanced_epoch` over each class's
    indices, reshuffled whenever they run out. Cached features are read by these places."""
    import tensorflow as tf

    streams = [tf.data.Dataset.from_tensor_slices(part).shuffle(len(part), seed=class_seed(seed, index),
                                                                reshuffle_each_iteration=True).repeat()
               for index, part in enumerate(class_parts(labels, classes))]
    return balanced_epoch(streams, labels, classes, seed)
