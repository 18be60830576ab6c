"""Alternating flips (`horizontal_flip: alternate`): each training picture mirrored on every other epoch.

Random flips mirror a picture in about half the epochs, but by chance some pictures are seen the same way round
several epochs running. airbench derandomises them: in the first epoch each picture is mirrored or not at random,
and from then on it alternates, so every picture is seen both ways in every two epochs. Here picture i (its place
in the training split) is mirrored in epoch e when `bit_i XOR (e mod 2)` is 1, `bit_i` drawn once from the
experiment's seed: the same for a resumed run, whatever epoch it starts at.

The epoch's pictures come shuffled (`Examples.ordered`); their places are shuffled alongside with the same seed
(`Examples.shuffled` puts any dataset as long as the examples in the same order), so each picture meets its own
bit. It works on the raw pixels before the other augmentations, in the input pipeline wherever those run.

Example:
>>> pictures = alternately_flipped(examples, examples.ordered(source, seed), seed, epoch, experiment_seed=42)
"""

from cnnrun.data.traced import as_written

FLIP_STREAM = 104_729  # keeps the pictures' first-epoch bits apart from every other use of the experiment's seed


def flipped_first(index, experiment_seed: int):
    """Whether picture `index` is mirrored in even epochs (a scalar bool tensor): its seeded bit."""
    import tensorflow as tf

    seed = tf.stack([tf.constant(experiment_seed * FLIP_STREAM % 2**31, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.stateless_uniform([], seed=seed) < 0.5


def alternately_flipped(examples, pictures, order_seed, epoch, experiment_seed: int):
    """`pictures`, one epoch's `(image, label)` pairs in the order `order_seed` gives them, each image mirrored
    left-right in this `epoch` when its bit says so.

    Args:
        examples: the training examples the pictures come from (their count and their shuffle).
        pictures: `examples.ordered(source, order_seed)`.
        order_seed: the epoch's shuffle seed (None: stored order).
        epoch: the epoch, 0-based (a number or a scalar tensor).
        experiment_seed: the experiment's seed.
    """
    import tensorflow as tf

    places = examples.shuffled(tf.data.Dataset.range(len(examples)), order_seed)
    odd = tf.cast(epoch, tf.int64) % 2 == 1

    def mirror(pair, index):
        image, label = pair
        flip = tf.not_equal(flipped_first(index, experiment_seed), odd)
        return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image), label

    return tf.data.Dataset.zip((pictures, places)).map(as_written(mirror), num_parallel_calls=tf.data.AUTOTUNE)
