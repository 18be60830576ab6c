"""cnnrun's own Keras layers: ImageDataGenerator's augmentation, with its meaning and at Keras-layer speed, and the
CIFAR recipes' padding-and-crop and cutout, drawn per image.

Importing this module registers the layers with Keras, so checkpoints that hold them load.
"""

import math

import keras
from keras import ops


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


@keras.saving.register_keras_serializable(package="cnnrun")
class RandomContrast(keras.layers.RandomContrast):
    """Keras' `RandomContrast` with its factor drawn from `[low, high]` as written, as ImageDataGenerator-style
    `contrast_range` means it.

    Keras takes `factor=(lower, upper)` for factors in `[1 − lower, 1 + upper]` but sorts the pair first, so a
    range not centred on 1 (`[0.5, 1.2]`: lower 0.5, upper 0.2) came out as `[0.8, 1.5]`, and one below 1
    (`[0.6, 0.8]`: upper −0.2) was refused. This layer keeps the pair as given.

    Args:
        contrast_range: `(low, high)`, 0 ≤ low ≤ high: the factor is drawn uniformly from it, once per image.
        value_range: `(black, white)`: the values of black and white pixels; default `(0, 255)`.
        seed: seeds the factors.
    """

    def __init__(self, contrast_range: tuple[float, float], value_range: tuple[float, float] = (0, 255),
                 seed: int | None = None, **kwargs):
        kwargs.pop("factor", None)  # a saved layer's config holds Keras' own key too
        super().__init__(factor=0.0, value_range=value_range, seed=seed, **kwargs)
        self.contrast_range = tuple(float(v) for v in contrast_range)
        low, high = self.contrast_range
        self.factor = (1.0 - low, high - 1.0)  # Keras draws from [1 − factor[0], 1 + factor[1]]

    def get_config(self):
        return {**super().get_config(), "contrast_range": self.contrast_range}


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


def source_index(position, size: int, fill_mode: str):
    """The pixel (0 … size − 1) that fills integer `position` along an axis of `size` pixels, and whether the
    position is outside the picture (where `constant` fills instead).

    The modes extend the picture as Keras' `fill_mode` does (`keras.ops.image.affine_transform`, and so
    ImageDataGenerator): `reflect` (d c b a | a b c d | d c b a, the edge pixel repeated: NumPy's `symmetric`),
    `wrap` (a b c d | a b c d), `nearest` (a a a a | a b c d | d d d d), `constant` (k k k k | a b c d | k k k k).
    Works for any distance past the border.
    """
    outside = ops.logical_or(position < 0, position >= size)
    if fill_mode == "reflect":
        folded = ops.mod(position, 2 * size)
        return ops.where(folded < size, folded, 2 * size - 1 - folded), outside
    if fill_mode == "wrap":
        return ops.mod(position, size), outside
    return ops.clip(position, 0, size - 1), outside  # nearest, and constant (whose outside is filled later)


@keras.saving.register_keras_serializable(package="cnnrun")
class RandomPaddedCrop(keras.layers.Layer):
    """Pad every image by `padding` pixels on each side and cut it back to its size at a random place per image.

    The standard CIFAR augmentation (He et al. 2015, §4.2: "4 pixels are padded on each side, and a 32×32 crop is
    randomly sampled from the padded image"): each image moves by a whole number of pixels, from −padding to
    +padding along each axis, its own draw, and the border it uncovers is filled. Keras' `RandomCrop` cannot do
    this: it crops every image of a batch at one place. No interpolation: every output pixel is an input pixel
    or the fill value, exactly. Active in training only.

    Args:
        padding: pixels added on each side; the crop's corner is drawn from [0, 2·padding]² of the padded image.
        fill_mode: how the padding is filled, in Keras' words: `constant` (`fill_value`), `reflect`
            (d c b a | a b c d: the edge pixel repeated, as Keras' and ImageDataGenerator's `reflect`; PyTorch's
            `padding_mode="reflect"` skips it), `nearest` or `wrap`. Defaults to `constant`.
        fill_value: the value for `constant`, in the values the layer receives. Defaults to 0.
        seed: seeds the places.

    Example:
    >>> layer = RandomPaddedCrop(4, "reflect", seed=1)
    >>> layer(images, training=True).shape == images.shape    # each image shifted by up to 4 pixels
    True
    """

    def __init__(self, padding: int, fill_mode: str = "constant", fill_value: float = 0.0, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if fill_mode not in ("constant", "reflect", "nearest", "wrap"):
            raise ValueError(f"fill_mode: '{fill_mode}'; use constant, reflect, nearest or wrap")
        self.padding, self.fill_mode, self.fill_value, self.seed = int(padding), fill_mode, float(fill_value), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        batch, height, width, channels = ops.shape(images)[0], images.shape[1], images.shape[2], images.shape[3]
        corners = keras.random.randint((batch, 2), 0, 2 * self.padding + 1, seed=self.seed_generator)
        # output pixel (i, j) of image n is padded pixel (corner + i, corner + j): input (corner − padding + i, …)
        rows, rows_out = source_index(corners[:, :1] - self.padding + ops.arange(height), height, self.fill_mode)
        cols, cols_out = source_index(corners[:, 1:] - self.padding + ops.arange(width), width, self.fill_mode)
        first_row = ops.arange(batch)[:, None, None] * height
        flat = (first_row + rows[:, :, None]) * width + cols[:, None, :]  # (batch, height, width) into all pixels
        out = ops.take(ops.reshape(images, (-1, channels)), flat, axis=0)
        if self.fill_mode != "constant":
            return out
        outside = ops.logical_or(rows_out[:, :, None, None], cols_out[:, None, :, None])
        return ops.where(outside, ops.cast(self.fill_value, out.dtype), out)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnnrun")
class RandomCutout(keras.layers.Layer):
    """Fill a `size`×`size` square at a random place in every image with one value (Cutout, DeVries & Taylor 2017).

    The square's centre is drawn uniformly from the image's pixels, its own per image, so the square may reach
    past the border and is then cut there (less of it is filled), as in the paper's code: rows
    `centre − size//2` up to, not including, `centre − size//2 + size`, likewise columns. Every channel is
    filled. Active in training only.

    Args:
        size: the square's side in pixels.
        fill_value: the value the square is set to, in the values the layer receives. The paper sets the
            normalised input to 0 (the dataset's mean); cnnrun's `build_augmenter` passes the value
            normalisation turns into 0. Defaults to 0.
        seed: seeds the places.

    Example:
    >>> layer = RandomCutout(8, seed=1)
    >>> (layer(np.ones((1, 32, 32, 3)), training=True) == 0).sum()    # 8·8·3 when the square is inside
    192
    """

    def __init__(self, size: int, fill_value: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.size, self.fill_value, self.seed = int(size), float(fill_value), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        centres = keras.random.randint((batch, 1), 0, height * width, seed=self.seed_generator)  # a pixel each
        top = ops.floor_divide(centres, width) - self.size // 2
        left = ops.mod(centres, width) - self.size // 2
        rows, cols = ops.arange(height), ops.arange(width)
        in_rows = ops.logical_and(rows >= top, rows < top + self.size)  # (batch, height)
        in_cols = ops.logical_and(cols >= left, cols < left + self.size)  # (batch, width)
        square = ops.logical_and(in_rows[:, :, None, None], in_cols[:, None, :, None])
        return ops.where(square, ops.cast(self.fill_value, images.dtype), images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "fill_value": self.fill_value, "seed": self.seed}
