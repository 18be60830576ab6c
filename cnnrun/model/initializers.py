"""cnnrun's own kernel initializers, by the name a config gives them: `kernel_initializer: dirac`.

`dirac` is airbench's identity ("Dirac") initialisation of a convolution: the kernel is first drawn as usual (the
`base` initializer, Keras' default `glorot_uniform`), then its first `min(in, out)` filters are overwritten so that
filter i passes input channel i through unchanged (a 1 at the kernel's centre, zeros elsewhere), as PyTorch's
`torch.nn.init.dirac_(w[:w.size(1)])` does in airbench94. A deep network so started passes its input through at
initialisation and learns what to add to it. The other filters keep their random values.

Example:
>>> layer = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, kernel_initializer=PartialDirac())
>>> x = np.random.rand(1, 5, 5, 3).astype("float32")
>>> np.allclose(layer(x)[..., :3], x)
True
"""

from typing import Any

import keras

from cnnrun.errors import UserError

NAMES = {"dirac": "PartialDirac"}  # the names a config gives cnnrun's initializers


@keras.saving.register_keras_serializable(package="cnnrun")
class PartialDirac(keras.initializers.Initializer):
    """A convolution kernel whose first `min(in, out)` filters are the identity and the others drawn by `base`.

    Args:
        base: the Keras initializer (a name or an instance) that draws the kernel first. Defaults to
            `glorot_uniform`, Keras' default for convolutions (PyTorch's, which airbench keeps, is
            `VarianceScaling(1/3, "fan_in", "uniform")`).
        seed: the base initializer's seed. Defaults to None (Keras' global seed).
    """

    def __init__(self, base: Any = "glorot_uniform", seed: int | None = None):
        self.base, self.seed = base, seed

    def __call__(self, shape, dtype=None):
        shape = tuple(int(side) for side in shape)
        if len(shape) < 3:
            raise ValueError(f"dirac initialises a convolution's kernel (height, width, in, out); got shape {shape}")
        base = keras.initializers.get(self.base)
        if self.seed is not None and hasattr(base, "seed"):
            base = base.__class__.from_config({**base.get_config(), "seed": self.seed})
        kernel = keras.ops.convert_to_numpy(base(shape, dtype=dtype)).copy()
        channels_in, channels_out = shape[-2], shape[-1]
        kept = min(channels_in, channels_out)
        centre = tuple(side // 2 for side in shape[:-2])
        kernel[..., :kept] = 0
        for channel in range(kept):
            kernel[(*centre, channel, channel)] = 1
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        base = self.base if isinstance(self.base, str) else keras.initializers.serialize(self.base)
        return {"base": base, "seed": self.seed}


def own_initializer(value: Any, where: str, layer: type) -> Any:
    """A layer argument's initializer as Keras takes it: cnnrun's own for `dirac` or `{name: dirac, base: …,
    seed: …}`, any other value unchanged (Keras' names and mappings).

    Args:
        value: the argument as the config gives it.
        where: the argument's place in the config, for messages.
        layer: the Keras layer class it is for.

    Raises:
        UserError: `dirac` for a layer that is not a convolution, or with arguments it does not take.
    """
    name = value.get("name") if isinstance(value, dict) else value
    if name not in NAMES:
        return value
    if "Conv" not in layer.__name__:
        raise UserError(f"{where}: dirac initialises a convolution's kernel (Conv1D, Conv2D, Conv3D), not "
                        f"{layer.__name__}'s")
    args = {key: item for key, item in value.items() if key != "name"} if isinstance(value, dict) else {}
    unknown = sorted(set(args) - {"base", "seed"})
    if unknown:
        raise UserError(f"{where}: dirac takes base (a Keras initializer) and seed, not {', '.join(unknown)}")
    return PartialDirac(**args)

