"""cnnrun's own Keras layer, for the one ImageDataGenerator argument Keras has no layer for.

Importing this module registers the layer with Keras, so checkpoints that hold it load.
"""

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
