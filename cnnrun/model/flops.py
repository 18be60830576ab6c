"""The FLOPs of a Keras model's forward pass, per picture, by hand-written formulas: one per layer type.

A multiply-add counts 2 FLOPs. Shapes are the layer's own input and output shapes without the batch axis (a
built model's symbolic `layer.input` / `layer.output`); `prod(S)` is the product of the spatial sizes.

| layer | forward FLOPs per picture |
|---|---|
| Conv1D/2D/3D | 2 · prod(kernel) · (C_in / groups) · C_out · prod(S_out), + C_out · prod(S_out) with a bias |
| Conv2DTranspose | 2 · prod(kernel) · C_in · C_out · prod(S_in), + C_out · prod(S_out) with a bias |
| DepthwiseConv2D | 2 · prod(kernel) · C_in · multiplier · prod(S_out), + the outputs with a bias |
| SeparableConv2D | the depthwise part without bias, + 2 · C_in · multiplier · C_out · prod(S_out), + the bias |
| PatchWhitening (cnnrun) | a k×k valid convolution of C_in → 2·k²·C_in, + the outputs with a bias |
| Dense | 2 · n_in · units · (the positions: the product of the other non-batch axes), + units · positions bias |
| BatchNormalization | 2 per element: y = a · x + b once folded (the batch statistics are not counted) |
| MaxPooling / AveragePooling | prod(pool) per output element (a comparison or an addition each) |
| GlobalMax/AveragePooling | 1 per input element |
| a nested model (a backbone) | the sum of its layers |

Every other layer (activations, Dropout, Flatten, Add, augmentation, …) counts 0 and is marked as not counted,
so a table can list them. A layer a graph calls more than once (shared weights) is counted for its first call.
A training step costs about 3× the forward FLOPs (the forward pass, then the gradients with respect to the inputs
and to the weights, each about as many again); `TRAIN_FACTOR` says so. Keras only: no TensorFlow profiler.

Example:
>>> import keras
>>> conv = keras.layers.Conv2D(4, 3, padding="same")
>>> model = keras.Sequential([keras.Input((8, 8, 3)), conv])
>>> layer_flops(conv)  # 2·3·3·3·4·(8·8) multiply-adds + 4·64 bias additions
14080
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TRAIN_FACTOR = 3  # a training step ≈ forward + backward (inputs) + backward (weights), each ≈ the forward FLOPs


@dataclass(frozen=True)
class LayerFlops:
    """One layer's forward FLOPs per picture.

    Attributes:
        name: the layer's name.
        kind: its class name (`Conv2D`, `Functional` for a nested model).
        flops: forward FLOPs per picture (0 when not counted).
        counted: whether a formula of the table counted it (a nested model: whether any of its layers was).
    """

    name: str
    kind: str
    flops: int
    counted: bool


def _shape(tensor: Any) -> tuple[int, ...]:
    """A symbolic tensor's shape without the batch axis."""
    return tuple(int(n) for n in tensor.shape[1:])


def _bias(layer: Any, outputs: int) -> int:
    return outputs if getattr(layer, "use_bias", False) else 0


def _conv(layer: Any) -> int:
    out = _shape(layer.output)
    c_in, c_out, spatial = _shape(layer.input)[-1], out[-1], math.prod(out[:-1])
    per_output = 2 * math.prod(layer.kernel_size) * (c_in // getattr(layer, "groups", 1))
    return per_output * c_out * spatial + _bias(layer, c_out * spatial)


def _conv_transpose(layer: Any) -> int:
    inp, out = _shape(layer.input), _shape(layer.output)
    macs = math.prod(layer.kernel_size) * inp[-1] * out[-1] * math.prod(inp[:-1])
    return 2 * macs + _bias(layer, math.prod(out))


def _depthwise(layer: Any) -> int:
    out = _shape(layer.output)
    return 2 * math.prod(layer.kernel_size) * math.prod(out) + _bias(layer, math.prod(out))


def _separable(layer: Any) -> int:
    out = _shape(layer.output)
    c_in, spatial = _shape(layer.input)[-1], math.prod(out[:-1])
    depthwise = 2 * math.prod(layer.kernel_size) * c_in * layer.depth_multiplier * spatial
    pointwise = 2 * c_in * layer.depth_multiplier * out[-1] * spatial
    return depthwise + pointwise + _bias(layer, math.prod(out))


def _whitening(layer: Any) -> int:
    out = _shape(layer.output)
    per_output = 2 * layer.patch_size ** 2 * _shape(layer.input)[-1]
    return per_output * math.prod(out) + _bias(layer, math.prod(out))


def _dense(layer: Any) -> int:
    inp, out = _shape(layer.input), _shape(layer.output)
    positions = math.prod(inp[:-1])
    return 2 * inp[-1] * out[-1] * positions + _bias(layer, out[-1] * positions)


def _batch_norm(layer: Any) -> int:
    return 2 * math.prod(_shape(layer.output))


def _pooling(layer: Any) -> int:
    return math.prod(layer.pool_size) * math.prod(_shape(layer.output))


def _global_pooling(layer: Any) -> int:
    return math.prod(_shape(layer.input))


# the table: a class name → its formula (Keras' own classes, and the subclasses they stand for by name)
FORMULAS: dict[str, Callable[[Any], int]] = {
    "Conv1D": _conv, "Conv2D": _conv, "Conv3D": _conv,
    "Conv1DTranspose": _conv_transpose, "Conv2DTranspose": _conv_transpose, "Conv3DTranspose": _conv_transpose,
    "DepthwiseConv1D": _depthwise, "DepthwiseConv2D": _depthwise,
    "SeparableConv1D": _separable, "SeparableConv2D": _separable,
    "PatchWhitening": _whitening,
    "Dense": _dense,
    "BatchNormalization": _batch_norm,
    "MaxPooling1D": _pooling, "MaxPooling2D": _pooling, "MaxPooling3D": _pooling,
    "AveragePooling1D": _pooling, "AveragePooling2D": _pooling, "AveragePooling3D": _pooling,
    "GlobalMaxPooling1D": _global_pooling, "GlobalMaxPooling2D": _global_pooling,
    "GlobalMaxPooling3D": _global_pooling, "GlobalAveragePooling1D": _global_pooling,
    "GlobalAveragePooling2D": _global_pooling, "GlobalAveragePooling3D": _global_pooling,
}


def _formula(layer: Any) -> Callable[[Any], int] | None:
    """The formula of the layer's class, or of the nearest Keras class it derives from."""
    for cls in type(layer).__mro__:
        if cls.__name__ in FORMULAS:
            return FORMULAS[cls.__name__]
    return None


def _nested_layers(layer: Any) -> list[Any] | None:
    """A nested model's layers (a backbone), or None for a plain layer."""
    import keras

    return list(layer.layers) if isinstance(layer, keras.Model) else None


def layer_flops(layer: Any) -> int:
    """The forward FLOPs per picture of one built layer (of a nested model: the sum of its layers); 0 when no
    formula counts it."""
    inner = _nested_layers(layer)
    if inner is not None:
        return sum(layer_flops(part) for part in inner)
    formula = _formula(layer)
    return formula(layer) if formula is not None else 0


def _counted(layer: Any) -> bool:
    inner = _nested_layers(layer)
    if inner is not None:
        return any(_counted(part) for part in inner)
    return _formula(layer) is not None


def model_flops(model: Any, expand: bool = False) -> list[LayerFlops]:
    """A row per layer of a built model (its input layers left out), in the model's order.

    Args:
        model: a built Keras model.
        expand: give a nested model's layers their own rows (named `backbone/block_1_expand`) instead of one row.
    """
    import keras

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if expand and _nested_layers(layer) is not None:
            rows += [LayerFlops(f"{layer.name}/{row.name}", row.kind, row.flops, row.counted)
                     for row in model_flops(layer, expand=True)]
            continue
        rows.append(LayerFlops(layer.name, type(layer).__name__, layer_flops(layer), _counted(layer)))
    return rows
