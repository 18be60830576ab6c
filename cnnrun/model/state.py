"""Create a compiled model's state (optimizer slots, metric totals, loss trackers) before its first step is traced.

On TensorFlow without a distribution strategy, Keras 3 defers that state to the first call of the compiled train
step; a `tf.function` that creates variables on its first call is traced once to create them and then a second
time to run, so every `fit` traced its train step twice. The second trace cost 2.3 s of cifar10_bn's first step
and 7.9 s of ResNet-56's on a 2-core CPU (`bench/step_speed.py CONFIG [--deferred-state]`, docs/performance.md). Keras
itself builds the state ahead, from symbolic tensors, when a strategy is in scope (`_maybe_symbolic_build`) and
always on JAX; `build_state` does the same for the plain TensorFlow case. The variables are the same ones, created
the same way (zeros), so training gives the same numbers.

Example:
>>> build_state(model, splits.train.element_spec)  # (images, labels) specs, as the dataset gives them
>>> model.optimizer.built
True
"""

from typing import Any


def build_state(model, batch_spec: Any) -> None:
    """Build `model`'s optimizer, compiled metrics and loss from the shapes and dtypes of one batch, where Keras
    would otherwise build them inside the first traced step (TensorFlow, no distribution strategy).

    Args:
        model: a compiled Keras model.
        batch_spec: what one batch of its training data is: a `tf.data.Dataset.element_spec` (`(x, y)` or `(x, y,
            sample_weight)`), or arrays or tensors of that structure; only shapes and dtypes are read.
    """
    import keras

    if keras.backend.backend() != "tensorflow" or getattr(model, "_distribute_strategy", None) is not None:
        return  # JAX builds ahead in every fit; under a strategy the TensorFlow trainer does too
    model._symbolic_build(data_batch=batch_spec)
