"""The data side of cached features: the pictures in stored order for computing them, and the features streamed
as the pictures would have been.

A phase with `cache_features` (`cnnrun.training.features`) runs the model's front once over `stored_pass` (the
training pictures as the training stream prepares them, in stored order, each view with its own augmentation),
then trains the head on `feature_stream`: every epoch the features in exactly the order, and batches, in which
`training_stream` gives that epoch's pictures (the same shuffle, seeded `(seed, epoch)`, of as many elements), so
a head trained on cached features sees what the slow way's head sees, batch for batch. `feature_pass` is one
pass in stored order, for the validation split.

The features are a `(views, pictures, ...)` array: in memory, or a `.npy` file opened as a memory map when large
(`numpy.lib.format.open_memmap`); a batch is gathered from it by its indices.
"""

from typing import Any

import numpy as np

from cnnrun.config import Experiment
from cnnrun.data import DatasetInfo, _encode_labels, _prepared, build_augmenter
from cnnrun.data.examples import Examples
from cnnrun.data.sampling import balanced_places
from cnnrun.data.traced import as_written

VIEW_SEED = 7919  # view v's augmentation is seeded experiment.seed + VIEW_SEED·(v + 1): each view draws its own


def stored_pass(examples: Examples, info: DatasetInfo, experiment: Experiment, view: int | None = None):
    """The pictures of `examples` in stored order, batched and normalised as the training stream prepares them;
    with `view` (0, 1, …) augmented by the experiment's augmentation, seeded for that view."""
    augmenter = None
    if view is not None and experiment.augmentation:
        zero = info.mean if info.normalize == "standardize" else 0.0
        augmenter = build_augmenter(experiment.augmentation, experiment.seed + VIEW_SEED * (view + 1), zero=zero)
    return _prepared(examples.dataset().batch(experiment.train.batch_size), info, augmenter)


def _batches(features: Any, labels: np.ndarray, info: DatasetInfo, indices, view):
    """`(features, encoded labels)` batches gathered from `features[view]` by batches of `indices`."""
    import tensorflow as tf

    shape, dtype = tuple(features.shape[2:]), tf.as_dtype(features.dtype)
    if isinstance(features, np.memmap):
        def gather(index, v):
            return tf.numpy_function(lambda i, w: np.asarray(features[int(w)][i]), [index, v], dtype, stateful=False)
    else:
        count = features.shape[1]
        held = tf.constant(features.reshape(-1, *shape))  # view v's picture i at v·count + i: a batch copies its rows

        def gather(index, v):
            return tf.gather(held, v * count + index)

    label_tensor = tf.constant(labels)

    def pair(index):
        found = tf.ensure_shape(gather(index, view), (None, *shape))
        return found, _encode_labels(tf.gather(label_tensor, index), info)

    return indices.map(as_written(pair))


def feature_stream(features: Any, labels: np.ndarray, examples: Examples, info: DatasetInfo, experiment: Experiment,
                   initial_epoch: int = 0):
    """Every remaining epoch's `(features, labels)` batches in one stream, as `training_stream` gives the pictures.

    Args:
        features: the `(views, pictures, ...)` features of `examples`, in stored order.
        labels: their class numbers, in stored order.
        examples: the training examples (their shuffle is the one the pictures had).
        info: the dataset's label mode.
        experiment: batch size, epochs, shuffle and seed, as for the pictures.
        initial_epoch: the epochs already trained; the stream starts after them. Epoch e reads view e mod views.
    """
    import tensorflow as tf

    train, views = experiment.train, features.shape[0]

    def one_epoch(epoch):
        if experiment.dataset.sampling == "balanced":  # the places of a balanced epoch (cnnrun.data.sampling)
            places = balanced_places(labels, info.num_classes, experiment.seed * 1_000_003 + epoch)
            return _batches(features, labels, info, places.batch(train.batch_size), tf.cast(epoch % views, tf.int64))
        seed = experiment.seed * 1_000_003 + epoch if train.shuffle else None
        order = examples.shuffled(tf.data.Dataset.range(len(examples)), seed).batch(train.batch_size)
        return _batches(features, labels, info, order, tf.cast(epoch % views, tf.int64))

    epochs = tf.data.Dataset.range(initial_epoch, max(train.epochs, initial_epoch + 1))
    return epochs.flat_map(as_written(one_epoch)).prefetch(tf.data.AUTOTUNE)


def feature_pass(features: Any, labels: np.ndarray, info: DatasetInfo, batch_size: int):
    """One pass of `(features, labels)` batches in stored order (features of one view: `(1, pictures, ...)`)."""
    import tensorflow as tf

    order = tf.data.Dataset.range(len(labels)).batch(batch_size)
    return _batches(features, labels, info, order, tf.constant(0, tf.int64)).prefetch(tf.data.AUTOTUNE)
