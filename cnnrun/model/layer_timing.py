"""Each layer of a model timed alone: its forward and backward pass on a batch of its real input shape.

Why in isolation, not TensorFlow's profiler grouped by layer name: the profiler's op names follow the scopes of
`tf.function` tracing, which XLA (`jit_compile`) fuses and renames, so its per-layer sums miss or mislabel much of
a compiled step; and it needs an optional package. Timing a layer alone gives every layer a time on any backend,
with or without XLA, at the price of what fusion across layers saves (the sum of the layers' times is shown beside
the step's, so the difference is in plain view).

What one measurement runs, in the model's own precision and compiler setting (`model.jit_compile`): the layer
called with `training=True` on random inputs of its input shape with the batch axis filled in, then the backward
pass a training step runs through it: random output gradients (what the layers after it would send back) carried
to its trainable weights and, unless its input is the model's input (nothing before it needs a gradient), to its
input. The outputs and gradients are returned, so that neither TensorFlow's graph pruning nor XLA can drop any of
the work (a gradient of `sum(outputs)` would let them skip the forward pass of a linear layer). The first call
compiles; the median of `repeats` calls after it is the layer's time.

Twins are timed once: a layer of the same class and settings (its config but its name), input shapes, dtype policy
and gradient as one already timed runs the same work, so it gets that time (a ResNet-56's 196 layers repeat a
few kinds many times, and each timing compiles a function).
"""

import inspect
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerTime:
    """A layer's forward+backward time on one batch, or why it was not timed.

    Attributes:
        name: the layer's name.
        seconds: the median time of one forward and backward pass on a batch; None when it could not be timed.
        note: why it was not timed (the library's first line), else "".
    """

    name: str
    seconds: float | None
    note: str = ""


def _random(tensor: Any, batch: int, rng: Any) -> Any:
    """A random tensor (normal, or 0/1 for an integer one) of a symbolic tensor's shape and dtype, with the
    batch axis filled in."""
    import keras
    import numpy as np

    shape = (batch, *(int(n) for n in tensor.shape[1:]))
    dtype = str(tensor.dtype)
    values = rng.integers(0, 2, shape) if "int" in dtype else rng.standard_normal(shape, dtype=np.float32)
    return keras.ops.convert_to_tensor(values, dtype=dtype)


def _random_batch(layer: Any, batch: int) -> tuple[Any, list[Any]]:
    """Random inputs of the layer's input structure, and a random gradient for each of its outputs (what the
    layers after it would send back)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = keras.tree.map_structure(lambda t: _random(t, batch, rng), layer.input)
    return inputs, [_random(t, batch, rng) for t in keras.tree.flatten(layer.output)]


def _tensorflow_pass(layer: Any, inputs: Any, output_gradients: list[Any], input_gradient: bool,
                     jit: bool) -> Callable[[], Any]:
    """One forward and backward pass: `(outputs, gradients)`, the gradients with respect to the floating inputs
    (when `input_gradient`) and then the trainable weights. Everything is an argument or a result, so that
    neither TensorFlow nor XLA can leave out a part of the work as unused."""
    import keras
    import tensorflow as tf

    flat_inputs = keras.tree.flatten(inputs)

    @tf.function(jit_compile=jit, reduce_retracing=True, autograph=False)  # as written: see cnnrun.data.traced
    def forward_backward(flat, gradients):
        sources = [t for t in flat if t.dtype.is_floating] if input_gradient else []
        with tf.GradientTape() as tape:
            tape.watch(sources)
            outputs = keras.tree.flatten(layer(keras.tree.pack_sequence_as(inputs, flat), training=True))
        targets = [*sources, *layer.trainable_variables]
        return outputs, tape.gradient(outputs, targets, output_gradients=gradients) if targets else []

    return lambda: forward_backward(flat_inputs, output_gradients)


def _jax_pass(layer: Any, inputs: Any, output_gradients: list[Any], input_gradient: bool,
              jit: bool) -> Callable[[], Any]:
    """`_tensorflow_pass` on JAX: the outputs and the vector-Jacobian product with `output_gradients`."""
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    # stateless_call hands its keywords to `call` as they are (Layer.__call__ drops `training` where it is not taken)
    training = {"training": True} if "training" in inspect.signature(layer.call).parameters else {}

    def forward(weights, x):
        outputs, _ = layer.stateless_call(weights, non_trainable, x, **training)
        return jax.tree_util.tree_leaves(outputs)

    def forward_backward(weights, x, gradients):
        if input_gradient:
            outputs, pullback = jax.vjp(forward, weights, x)
            return outputs, pullback(gradients)
        outputs, pullback = jax.vjp(lambda w: forward(w, x), weights)
        return outputs, pullback(gradients)

    step = jax.jit(forward_backward) if jit else forward_backward
    return lambda: jax.block_until_ready(step(trainable, inputs, output_gradients))


def time_layer(layer: Any, batch: int, input_gradient: bool, jit: bool, repeats: int) -> LayerTime:
    """Time one built layer's forward and backward pass on a random batch of `batch` inputs (see the module)."""
    import keras

    make = _jax_pass if keras.backend.backend() == "jax" else _tensorflow_pass
    try:
        run = make(layer, *_random_batch(layer, batch), input_gradient, jit)
        run()  # traces and compiles
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
    except Exception as e:  # a layer that has no gradient (a random crop's projective transform), say
        return LayerTime(layer.name, None, (str(e).strip().splitlines() or [type(e).__name__])[0][:120])
    return LayerTime(layer.name, statistics.median(times))


def time_layers(model: Any, batch: int, repeats: int = 3) -> list[LayerTime]:
    """Time each of the model's layers alone (its input layers left out), in the model's order; a nested model
    (a backbone) is timed as one layer."""
    import keras

    model_inputs = {id(t) for t in keras.tree.flatten(model.inputs)}
    jit = bool(getattr(model, "jit_compile", False))
    timed, twins = [], {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        from_data = all(id(t) in model_inputs for t in keras.tree.flatten(layer.input))
        key = twin_key(layer, not from_data)
        if key not in twins:
            twins[key] = time_layer(layer, batch, not from_data, jit, repeats)
        timed.append(LayerTime(layer.name, twins[key].seconds, twins[key].note))
    return timed


def twin_key(layer: Any, input_gradient: bool) -> str:
    """What makes two layers' timings the same work: class, config without the name, input shapes and dtypes,
    dtype policy, whether the gradient goes back to the input. A layer whose config cannot be read has its own."""
    import keras

    try:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
    except Exception:  # a custom layer without get_config: never a twin
        return f"id {id(layer)}"
    inputs = [(tuple(t.shape), str(t.dtype)) for t in keras.tree.flatten(layer.input)]
    return json.dumps([type(layer).__qualname__, config, inputs, str(layer.dtype_policy), input_gradient],
                      sort_keys=True, default=str)
