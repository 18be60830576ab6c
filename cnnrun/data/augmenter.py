"""The augmentation layers: what `augmentation:` switches on, as one Keras `Sequential` applied per picture.

The same layers run in the `tf.data` input pipeline (on raw pixels, 0–255) or as the model's first layers (on
normalised values); `value_range` and `zero` say which. `cnnrun augment-preview` and `cnnrun data show` draw them.
The batch-level augmentations that mix labels (`mixup`, `cutmix`) are not here: see `cnnrun.data.mixing`.

Example:
>>> augmenter = build_augmenter(AugmentationConfig(horizontal_flip=True, rand_augment=True), seed=42)
>>> [layer.name for layer in augmenter.layers]
['random_affine', 'rand_augment']
"""

from cnnrun.config import AugmentationConfig


def build_augmenter(config: AugmentationConfig, seed: int, value_range: tuple[float, float] = (0, 255),
                    zero: float = 0.0):
    """Keras layers that do what ImageDataGenerator's arguments of the same names do, crop and cutout, and Keras'
    own RandAugment, AugMix, RandomErasing and colour jitter.

    In this order, each drawn per image:
    1. `random_crop`: `RandomPaddedCrop`, a whole-pixel shift with the uncovered border filled. First, as in the
       CIFAR recipes (pad, crop, then flip): the crop is exact, so the one interpolation below still sees
       untouched pixels, and no crop ever pads a border another transform already filled. With flips alone the
       order changes nothing: the shifts are symmetric, so a flipped crop and a crop of the flip are equally likely.
    2. rotation, shifts, shear, zoom and flips: one `RandomAffine` (one interpolation, composed as
       ImageDataGenerator composes them).
    3. brightness: `RandomBrightnessScale` (multiplicative, as there); contrast: Keras' `RandomContrast`, its
       range kept as written (`cnnrun.data.layers.RandomContrast`).
    4. `color_jitter` (Keras' `RandomColorJitter`), then `rand_augment` and `aug_mix` (Keras' `RandAugment`,
       `AugMix`): whole-picture changes, after the geometry, as timm orders them.
    5. `cutout`: `RandomCutout`, so nothing changes the square's value afterwards; then `random_erasing`
       (Keras' `RandomErasing`, filled with the value the model sees as 0 unless `fill: noise`), last as in timm.

    `horizontal_flip: alternate` is not here: it depends on the epoch, and the input pipeline does it before
    these layers (`cnnrun.data.flips`).

    Returns None when nothing is switched on.

    Args:
        config: the experiment's `augmentation:` section.
        seed: seeds the layers, each with a seed of its own derived from it (`RandomAffine` with `seed`).
        value_range: the values black and white pixels have where the layers run: (0, 255) on raw pixels in
            the input pipeline, the normalised values inside the model.
        zero: the value, where the layers run, that normalisation turns into 0 (cutout fills with it): 0 inside
            the model; on raw pixels the dataset's mean under `standardize`, else 0.
    """
    import keras

    from cnnrun.data.layers import (
        RandomAffine,
        RandomBrightnessScale,
        RandomContrast,
        RandomCutout,
        RandomPaddedCrop,
    )

    black, white = value_range

    def pixel_value(cval: float) -> float:
        return black + (white - black) * cval / 255.0

    def own_seed(offset: int) -> int:  # layers seeded alike draw the same numbers: brightness = contrast
        return (seed + offset) % 2**32

    layers = []
    if config.random_crop is not None:
        crop = config.random_crop
        layers.append(RandomPaddedCrop(crop.padding, crop.fill_mode, pixel_value(crop.cval), seed=own_seed(1)))
    zoom = config.zoom_range
    if isinstance(zoom, float | int):
        zoom = (1 - zoom, 1 + zoom)
    if (config.rotation_range or config.height_shift_range or config.width_shift_range or config.shear_range
            or config.zoom_range or config.horizontal_flip is True or config.vertical_flip):
        layers.append(RandomAffine(
            config.rotation_range, config.height_shift_range, config.width_shift_range, config.shear_range, zoom,
            config.horizontal_flip is True, config.vertical_flip, config.fill_mode, fill_value=pixel_value(config.cval),
            seed=seed))
    if config.brightness_range:
        layers.append(RandomBrightnessScale(config.brightness_range, value_range, seed=own_seed(3)))
    if config.contrast_range:
        low, high = config.contrast_range
        layers.append(RandomContrast((low, high), value_range=value_range, seed=own_seed(4)))
    if config.color_jitter is not None:
        jitter = config.color_jitter
        factors = {f"{name}_factor": getattr(jitter, name) or None
                   for name in ("brightness", "contrast", "saturation", "hue")}
        layers.append(keras.layers.RandomColorJitter(value_range=value_range, seed=own_seed(5), **factors))
    if config.rand_augment is not None:
        rand = config.rand_augment
        layers.append(keras.layers.RandAugment(value_range=value_range, num_ops=rand.num_ops, factor=rand.factor,
                                               seed=own_seed(6)))
    if config.aug_mix is not None:
        mix = config.aug_mix
        layers.append(keras.layers.AugMix(value_range=value_range, num_chains=mix.num_chains,
                                          chain_depth=mix.chain_depth, factor=mix.factor, alpha=mix.alpha,
                                          seed=own_seed(7)))
    if config.cutout is not None:
        layers.append(RandomCutout(config.cutout.size, zero, seed=own_seed(2)))
    if config.random_erasing is not None:
        erasing = config.random_erasing
        layers.append(keras.layers.RandomErasing(
            factor=(erasing.probability, erasing.probability), scale=erasing.scale, value_range=value_range,
            fill_value=zero if erasing.fill == "zero" else None, seed=own_seed(8)))
    return keras.Sequential(layers, name="augmentation") if layers else None
