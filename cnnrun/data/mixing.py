"""MixUp and CutMix: training batches whose pictures are blended with each other, and their labels with them.

Unlike the per-picture augmentations (`cnnrun.data.augmenter`), these work on a whole batch and change the labels:
a picture that is 70 % cat and 30 % dog is labelled `[0.7, 0.3]`. So they always run in the `tf.data` input
pipeline, after the labels are encoded, wherever the other augmentations run, and only on the training stream:
validation and test pictures stay whole. Labels must be one-hot (or binary 0/1) to be blended: `sparse` labels
are trained one-hot when a mix is switched on (`cnnrun.config.augmentation.trained_label_mode`).

The layers are Keras' own (`keras.layers.MixUp`, `keras.layers.CutMix`; CutMix's labels are weighed by the pixels
it pastes, see `batch_mixer`); with both switched on, each batch gets
one of them, drawn with even odds from the batch's number and the experiment's seed (timm's `switch_prob` 0.5).

Example:
>>> mix = batch_mixer(AugmentationConfig(mixup=0.2), seed=42)
>>> stream = mix(batches)          # (images, one-hot labels) batches in, blended batches out
"""

from collections.abc import Callable
from typing import Any

from cnnrun.config import AugmentationConfig
from cnnrun.data.traced import as_written

MIX_STREAM = 7919  # keeps the mix's random numbers apart from the per-picture layers' (seeded seed + 1 … 8)


def batch_mixer(config: AugmentationConfig | None, seed: int) -> Callable[[Any], Any] | None:
    """A function from a `tf.data` dataset of `(images, labels)` batches to the same batches mixed; None when the
    config switches neither `mixup` nor `cutmix` on.

    Args:
        config: the experiment's `augmentation:` section, or None.
        seed: the experiment's seed; the layers and the choice between them are seeded from it.
    """
    if config is None or (config.mixup is None and config.cutmix is None):
        return None
    import keras
    import tensorflow as tf

    layers = []
    if config.mixup is not None:
        layers.append(keras.layers.MixUp(alpha=config.mixup.alpha, seed=(seed + MIX_STREAM) % 2**32))
    if config.cutmix is not None:
        alpha = config.cutmix.alpha  # Keras draws its Beta parameter in [low, high]: fixed at α
        layers.append(keras.layers.CutMix(factor=(alpha, alpha), seed=(seed + MIX_STREAM + 1) % 2**32))

    def mixed(layer, images, labels):
        labels = tf.cast(labels, tf.float32)
        if not isinstance(layer, keras.layers.CutMix):
            out = layer({"images": images, "labels": labels}, training=True)
            return out["images"], out["labels"]
        # Keras' CutMix weighs the labels by its box's fractional area, not by the whole pixels it pastes (on
        # 32×32 pictures up to a few points off): the labels here take the share of pixels kept, as timm does
        change = layer.get_random_transformation({"images": images, "labels": labels}, training=True)
        kept = 1.0 - tf.reduce_mean(tf.cast(change["batch_masks"][..., 0], tf.float32), axis=[1, 2])
        return (layer.transform_images(images, change, training=True),
                layer.transform_labels(labels, {**change, "mix_weight": kept}, training=True))

    if len(layers) == 1:
        return lambda batches: batches.map(as_written(lambda images, labels: mixed(layers[0], images, labels)))

    def either(number, batch):
        images, labels = batch
        draw = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64), number]))
        return tf.cond(draw < 0.5, lambda: mixed(layers[0], images, labels),
                       lambda: mixed(layers[1], images, labels))

    return lambda batches: batches.enumerate().map(as_written(either))
