"""Find a layer anywhere in a model, nested models included, and run the model with that layer's output taken out
or put in.

A pretrained backbone is a `keras.Model` used as one layer of the outer model. Building a new `keras.Model` from
the outer input to a layer *inside* the backbone fails with Keras' "graph disconnected" error, because that layer
belongs to the backbone's own graph. `forward` never builds a model: it runs the layers one by one (a
`Sequential`'s in order, a functional model's through its own graph), steps into the nested model that holds the
chosen layer, and there takes the layer's output (`tap`) or replaces it by a given value (`put`). Gradients with
respect to a layer's output are then gradients of "the rest of the network" as a function of that value.

Example:
>>> path = find_layer(model, "auto")             # the last layer with a spatial output: 'backbone/conv_3'
>>> features, _ = forward(model, images, path)   # that layer's output, (batch, h, w, channels)
>>> _, scores = forward(model, images, path, put=features)   # the class scores, computed from `features`
"""

from dataclasses import dataclass
from typing import Any

from cnnrun.errors import UserError, did_you_mean

SQUASHING = ("softmax", "sigmoid")  # final activations whose input is the class score


@dataclass(frozen=True)
class LayerPath:
    """A layer and the nested models that hold it, from the outermost: `(backbone, conv_3)`.

    Attributes:
        layers: the nested models, then the layer itself.
    """

    layers: tuple[Any, ...]

    @property
    def layer(self):
        """The layer itself."""
        return self.layers[-1]

    @property
    def name(self) -> str:
        """`backbone/conv_3`: the names from the outermost model in, as `--layer` takes them."""
        return "/".join(layer.name for layer in self.layers)

    @property
    def output_shape(self) -> tuple | None:
        """The layer's output shape with the batch axis (`(None, 14, 14, 16)`), or None when it has several."""
        return output_shape(self.layer)


def output_shape(layer) -> tuple | None:
    """A layer's output shape as Keras built it, or None when the layer has several outputs or none yet."""
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def is_spatial(path: LayerPath) -> bool:
    """Whether the layer's output has height, width and channels, `(batch, h, w, c)`: a map Grad-CAM can weigh."""
    shape = path.output_shape
    return shape is not None and len(shape) == 4


def own_layers(model) -> list:
    """A model's layers in the order they run, without the input layer."""
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def is_model(layer) -> bool:
    """Whether a layer is itself a model with layers (a nested `Sequential` or functional model)."""
    import keras

    return isinstance(layer, keras.Model)


def layer_paths(model, outer: tuple = ()) -> list[LayerPath]:
    """Every layer of `model`, nested ones included, in the order they run (a nested model after its layers)."""
    paths = []
    for layer in own_layers(model):
        if is_model(layer):
            paths += layer_paths(layer, (*outer, layer))
        paths.append(LayerPath((*outer, layer)))
    return paths


def last_spatial(model, outer: tuple = ()) -> LayerPath | None:
    """The last layer with a spatial output, looking inside nested models: a backbone's last feature map.

    A nested model is stepped into whether or not its own output is spatial: a backbone built with
    `pooling: avg` gives one vector per picture, yet its last feature map (MobileNetV2's `out_relu`) is the
    layer Grad-CAM should weigh, not the input-level layers before the backbone (its preprocessing), whose
    maps are the picture itself.
    """
    for layer in reversed(own_layers(model)):
        path = LayerPath((*outer, layer))
        if layer.name == "augmentation":
            continue
        if is_model(layer):
            inner = last_spatial(layer, path.layers)
            if inner is not None:
                return inner
        if is_spatial(path):
            return path
    return None


def find_layer(model, name: str, option: str = "--layer") -> LayerPath:
    """The layer called `name` (`auto`: the last with a spatial output), by its own name or `outer/inner` path.

    Raises:
        UserError: no layer has that name (with a "did you mean"), or `auto` finds no spatial layer.
    """
    if name == "auto":
        path = last_spatial(model)
        if path is None:
            raise UserError(f"{model.name} has no layer with a spatial output (height, width, channels)",
                            where=f"{option} auto", fix="name a layer")
        return path
    paths = layer_paths(model)
    found = [p for p in paths if p.name == name] or [p for p in paths if p.layer.name == name]
    if not found:
        names = [p.name for p in paths]
        raise UserError(f"{model.name} has no such layer{did_you_mean(name, names)}", where=f"{option} {name}",
                        fix=f"its layers: {', '.join(names)}")
    return found[0]


def _call(layer, args: tuple, kwargs: dict):
    """Call one layer (or a Keras operation of a functional graph) in inference mode."""
    if getattr(layer, "_call_has_training_arg", False):
        kwargs = {**kwargs, "training": False}
    return layer(*args, **kwargs)


def _pre_activation(layer, args: tuple, kwargs: dict):
    """The model's last layer, without a final softmax or sigmoid: the class scores (logits).

    A `Dense` layer with that activation gives `x · kernel + bias`; a `Softmax` layer or an `Activation` of
    that kind gives its input. Any other last layer gives its output as it is (a model trained on logits).
    """
    import keras

    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    kind = type(layer).__name__
    if kind == "Softmax" or (kind == "Activation" and activation in SQUASHING):
        return args[0]
    if kind == "Dense" and activation in SQUASHING and not kwargs and getattr(layer, "lora_rank", None) is None:
        scores = keras.ops.matmul(args[0], layer.kernel)
        return scores + layer.bias if layer.use_bias else scores
    return _call(layer, args, kwargs)


def forward(model, x, path: LayerPath | None = None, put=None, logits: bool = True):
    """Run `model` on `x` in inference mode; take the output of the layer at `path`, or put `put` in its place.

    Args:
        model: a Keras model (Sequential or functional, with nested models or not).
        x: a batch of inputs, as the model takes them.
        path: the layer whose output is taken (or replaced); None: none.
        put: a value used instead of that layer's output, so what follows is computed from it. Defaults to None.
        logits: end with the class scores before the last softmax or sigmoid (see `_pre_activation`), as
            Grad-CAM and saliency use them. Defaults to True.

    Returns:
        `(taken, output)`: the layer's output (None without `path`) and the model's output.
    """
    layers = path.layers if path is not None else ()
    taken: list[Any] = [None]
    last = _output_operation(model) if logits else None

    def run(operation, args: tuple, kwargs: dict):
        if layers and operation is layers[0]:
            if len(layers) > 1:  # the layer is inside this nested model
                inner, out = forward(operation, args[0], LayerPath(layers[1:]), put, logits=False)
                taken[0] = inner
                return out
            taken[0] = _call(operation, args, kwargs)
            return put if put is not None else taken[0]
        if operation is last:
            return _pre_activation(operation, args, kwargs)
        return _call(operation, args, kwargs)

    import keras

    if isinstance(model, keras.Sequential):
        for layer in own_layers(model):
            x = run(layer, (x,), {})
        return taken[0], x
    outputs = model._run_through_graph([x], operation_fn=lambda op: lambda *a, **k: run(op, a, k))
    return taken[0], outputs[0] if isinstance(outputs, list | tuple) else outputs


def _output_operation(model):
    """The layer (or operation) that gives a model's output: a Sequential's last layer, a graph's output node."""
    import keras

    if isinstance(model, keras.Sequential):
        return own_layers(model)[-1]
    return model.outputs[0]._keras_history.operation


def class_scores(output, classes):
    """Each example's score for its class: the column `classes[i]` of row i; a one-unit output scores class 1 by
    its value and class 0 by its negative."""
    import keras

    ops = keras.ops
    classes = ops.convert_to_tensor(classes, "int32")
    if output.shape[-1] == 1:
        return output[:, 0] * ops.cast(2 * classes - 1, output.dtype)
    return ops.sum(output * ops.one_hot(classes, output.shape[-1], dtype=output.dtype), axis=-1)
