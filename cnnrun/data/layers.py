"""cnnrun's own Keras layers: ImageDataGenerator's augmentation, with its meaning and at Keras-layer speed.

Importing this module registers the layer with Keras, so checkpoints that hold it load.
"""

import math

import keras
from keras import ops

from cnnrun.schedules import CUSTOM_OBJECTS as SCHEDULE_OBJECTS


@keras.saving.register_keras_serializable(package="cnnrun")
class RandomBrightnessScale(keras.layers.Layer):
    """Multiply each image's pixel values by a random factor, as ImageDataGenerator's `brightness_range` does.

    Keras' `RandomBrightness` adds a random value; ImageDataGenerator multiplies (0.5 halves every pixel, 1.5
    brightens by half). Values are scaled from the black end of `value_range` and clipped to the range. Active
    in training only.

    Args:
        factor_range: `(low, high)`: the factor is drawn uniformly from it, once per image.
        value_range: `(black, white)`: the values of black and white pixels; default `(0, 255)`.
        seed: seeds the factors.

    Example:
    >>> layer = RandomBrightnessScale((0.5, 0.5))
    >>> layer(np.full((1, 2, 2, 3), 200.0), training=True)[0, 0, 0, 0]    # 100.0
    """

    def __init__(self, factor_range: tuple[float, float], value_range: tuple[float, float] = (0, 255),
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.factor_range = tuple(float(f) for f in factor_range)
        self.value_range = tuple(float(v) for v in value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        black, white = self.value_range
        low, high = self.factor_range
        shape = (ops.shape(images)[0],) + (1,) * (len(images.shape) - 1)
        factors = keras.random.uniform(shape, low, high, dtype=images.dtype, seed=self.seed_generator)
        return ops.clip(black + (images - black) * factors, black, white)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor_range": self.factor_range, "value_range": self.value_range,
                "seed": self.seed}


def affine_maps(degrees, height_shift, width_shift, shear_degrees, zoom_rows, zoom_columns, flip_v, flip_h,
                height: int, width: int):
    """Affine maps from output (row, column) to input (row, column), as ImageDataGenerator builds them.

    ImageDataGenerator's `apply_affine_transform` maps output to input through rotation · shift · shear · zoom
    about the image's centre; its flips then act on the output. Every argument but the image size is a vector
    with one value per image.

    Args:
        degrees: rotation angle.
        height_shift: row shift as a fraction of the height (ImageDataGenerator's `tx`).
        width_shift: column shift as a fraction of the width (`ty`).
        shear_degrees: shear angle.
        zoom_rows: zoom factor of the rows (`zx`; < 1 zooms in).
        zoom_columns: zoom factor of the columns (`zy`).
        flip_v: −1 flips upside-down, 1 does not.
        flip_h: −1 flips left-right, 1 does not.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        `(batch, 6)` maps `[a, b, c, d, e, f]`: input = (a·row + b·col + c, d·row + e·col + f).
    """
    theta, shear = degrees * (math.pi / 180), shear_degrees * (math.pi / 180)
    tx, ty = height_shift * height, width_shift * width
    cos, sin = ops.cos(theta), ops.sin(theta)
    # linear part: rotation · [[zx, −sin(shear)·zy], [0, cos(shear)·zy]]; translation: rotation · shift
    a, b = cos * zoom_rows, -(cos * ops.sin(shear) + sin * ops.cos(shear)) * zoom_columns
    d, e = sin * zoom_rows, (cos * ops.cos(shear) - sin * ops.sin(shear)) * zoom_columns
    c, f = cos * tx - sin * ty, sin * tx + cos * ty
    # about the centre o, after the flips F(q) = flip·q + (1 − flip)/2·(size − 1): input = L·(F(q) − o) + t + o
    o_r, o_c = height / 2 - 0.5, width / 2 - 0.5
    u_r, u_c = (1 - flip_v) / 2 * (height - 1) - o_r, (1 - flip_h) / 2 * (width - 1) - o_c
    return ops.stack([a * flip_v, b * flip_h, a * u_r + b * u_c + c + o_r,
                      d * flip_v, e * flip_h, d * u_r + e * u_c + f + o_c], axis=-1)


def warp(images, maps, fill_mode: str = "nearest", fill_value: float = 0.0):
    """Resample a batch of images through `affine_maps`, bilinearly, one map per image."""
    a, b, c, d, e, f = ops.unstack(maps, 6, axis=-1)
    zeros = ops.zeros_like(a)
    transform = ops.stack([e, d, f, b, a, c, zeros, zeros], axis=-1)  # keras works in (x = column, y = row)
    return ops.image.affine_transform(images, ops.cast(transform, images.dtype), "bilinear", fill_mode, fill_value)


@keras.saving.register_keras_serializable(package="cnnrun")
class RandomAffine(keras.layers.Layer):
    """ImageDataGenerator's geometric augmentation as one random affine transform per image.

    Rotation, shifts, shear, zoom and flips are composed the way ImageDataGenerator composes them (about the
    image's centre, flips last) and applied with a single bilinear interpolation, where a chain of Keras'
    `RandomRotation`, `RandomTranslation`, `RandomShear`, `RandomZoom` and `RandomFlip` layers would interpolate
    once per layer (blurring the picture each time) and run several times slower. Active in training only.

    Args:
        rotation: ± degrees.
        height_shift: ± fraction of the height.
        width_shift: ± fraction of the width.
        shear: ± degrees (shear angle, counter-clockwise).
        zoom: `(low, high)`: each axis scaled by its own factor z from it; z < 1 zooms in.
        horizontal_flip: flip left-right at random.
        vertical_flip: flip upside-down at random.
        fill_mode: `nearest`, `reflect`, `wrap` or `constant`: how points outside the picture are filled.
        fill_value: the value for `constant`.
        seed: seeds the transforms.

    Example:
    >>> layer = RandomAffine(rotation=40, width_shift=0.2, height_shift=0.2, zoom=(0.8, 1.2), horizontal_flip=True)
    >>> layer(images, training=True).shape == images.shape
    True
    """

    def __init__(self, rotation: float = 0.0, height_shift: float = 0.0, width_shift: float = 0.0,
                 shear: float = 0.0, zoom: tuple[float, float] = (1.0, 1.0), horizontal_flip: bool = False,
                 vertical_flip: bool = False, fill_mode: str = "nearest", fill_value: float = 0.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.height_shift, self.width_shift, self.shear = rotation, height_shift, width_shift, shear
        self.zoom = tuple(float(z) for z in zoom)
        self.horizontal_flip, self.vertical_flip = horizontal_flip, vertical_flip
        self.fill_mode, self.fill_value, self.seed = fill_mode, fill_value, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def transforms(self, batch, height: int, width: int):
        """Random `affine_maps` for a batch of `height` × `width` images."""
        low = ops.convert_to_tensor([-self.rotation, -self.height_shift, -self.width_shift, -self.shear,
                                     self.zoom[0], self.zoom[0], 0.0, 0.0])
        high = ops.convert_to_tensor([self.rotation, self.height_shift, self.width_shift, self.shear,
                                      self.zoom[1], self.zoom[1], 1.0, 1.0])
        draws = low + (high - low) * keras.random.uniform((batch, 8), seed=self.seed_generator)
        flip_v = ops.where(draws[:, 6] < 0.5, -1.0, 1.0) if self.vertical_flip else ops.ones_like(draws[:, 6])
        flip_h = ops.where(draws[:, 7] < 0.5, -1.0, 1.0) if self.horizontal_flip else ops.ones_like(draws[:, 7])
        return affine_maps(*ops.unstack(draws[:, :6], 6, axis=-1), flip_v, flip_h, height, width)

    def call(self, images, training=True):
        if not training:
            return images
        maps = self.transforms(ops.shape(images)[0], images.shape[1], images.shape[2])
        return warp(images, maps, self.fill_mode, self.fill_value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "height_shift": self.height_shift,
                "width_shift": self.width_shift, "shear": self.shear, "zoom": self.zoom,
                "horizontal_flip": self.horizontal_flip, "vertical_flip": self.vertical_flip,
                "fill_mode": self.fill_mode, "fill_value": self.fill_value, "seed": self.seed}


# what `keras.saving.load_model` needs to rebuild a model holding these layers or cnnrun's learning-rate schedule
CUSTOM_OBJECTS = {"cnnrun>RandomAffine": RandomAffine, "cnnrun>RandomBrightnessScale": RandomBrightnessScale,
                  **SCHEDULE_OBJECTS}
