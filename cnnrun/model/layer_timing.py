"""Each layer of a model timed alone: its forward and backward pass on a batch of its real input shape.

Why in isolation, not TensorFlow's profiler grouped by layer name: the profiler's op names follow the scopes of
`tf.function` tracing, which XLA (`jit_compile`) fuses and renames, so its per-layer sums miss or mislabel much of
a compiled step; and it needs an optional package. Timing a layer alone gives every layer a time on any backend,
with or without XLA, at the price of what fusion across layers saves (the sum of the layers' times is shown beside
the step's, so the difference is in plain view).

What one measurement runs, in the model's own precision and compiler setting (`model.jit_compile`): the layer
called with `training=True` on random inputs of its input shape with the batch axis filled in, then the gradient
of the sum of its outputs with respect to its trainable weights and, unless its input is the model's input
(nothing before it needs a gradient), with respect to its input, as a training step's backward pass computes them.
The first call compiles; the median of `repeats` calls after it is the layer's time.
"""

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


def _random_inputs(layer: Any, batch: int) -> Any:
    """Random inputs (normal, or small integers for an integer input) of the layer's input structure."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)

    def one(tensor):
        shape = (batch, *(int(n) for n in tensor.shape[1:]))
        dtype = str(tensor.dtype)
        values = rng.integers(0, 2, shape) if "int" in dtype else rng.standard_normal(shape, dtype=np.float32)
        return keras.ops.convert_to_tensor(values, dtype=dtype)

    return keras.tree.map_structure(one, layer.input)


def _tensorflow_pass(layer: Any, inputs: Any, input_gradient: bool, jit: bool) -> Callable[[], Any]:
    import keras
    import tensorflow as tf

    flat = [t for t in keras.tree.flatten(inputs) if t.dtype.is_floating] if input_gradient else []

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(flat)
            outputs = layer(x, training=True)
            total = tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in keras.tree.flatten(outputs)])
        return tape.gradient(total, [*flat, *layer.trainable_variables]) if flat or layer.trainable_variables \
            else total

    return lambda: forward_backward(inputs)


def _jax_pass(layer: Any, inputs: Any, input_gradient: bool, jit: bool) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def total(weights, x):
        outputs, _ = layer.stateless_call(weights, non_trainable, x, training=True)
        return sum(jnp.sum(t.astype(jnp.float32)) for t in jax.tree_util.tree_leaves(outputs))

    step = jax.grad(total, argnums=(0, 1) if input_gradient else 0)
    step = jax.jit(step) if jit else step
    return lambda: jax.block_until_ready(step(trainable, inputs))


def time_layer(layer: Any, batch: int, input_gradient: bool, jit: bool, repeats: int) -> LayerTime:
    """Time one built layer's forward and backward pass on a random batch of `batch` inputs (see the module)."""
    import keras

    make = _jax_pass if keras.backend.backend() == "jax" else _tensorflow_pass
    try:
        run = make(layer, _random_inputs(layer, batch), input_gradient, jit)
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
    timed = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        from_data = all(id(t) in model_inputs for t in keras.tree.flatten(layer.input))
        timed.append(time_layer(layer, batch, not from_data, jit, repeats))
    return timed
