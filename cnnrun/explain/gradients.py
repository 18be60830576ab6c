"""Heat maps of where a network looked: Grad-CAM, Grad-CAM++, saliency and SmoothGrad.

Every map starts from a gradient of the class score (the logit before the last softmax, see
`network.forward`) taken through the Keras backend itself: TensorFlow's `GradientTape` or JAX's `jax.grad`, so a
run trained on either backend is explained on it.

- `gradcam` (Selvaraju et al. 2017): the layer's feature maps weighed by the mean gradient of each channel,
  `ReLU(Σ_k α_k A_k)`, `α_k = mean_ij ∂y/∂A_k[i, j]`.
- `gradcam++` (Chattopadhay et al. 2018): each position's positive gradient weighed by
  `g² / (2g² + Σ_ij A · g³)`, which lets several instances of a class each count.
- `saliency` (Simonyan et al. 2014): `max_c |∂y/∂x[i, j, c]|` on the input picture itself.
- `smoothgrad` (Smilkov et al. 2017): the saliency of the mean gradient over 16 noisy copies of the picture
  (noise 15 % of its value range), which keeps the shape and drops the speckle.

Each map is resized to the input's height and width (bilinear) and scaled to [0, 1] by its largest value.

Example:
>>> maps = heat_maps(model, batch, classes=[2, 0], method="gradcam", layer=find_layer(model, "auto"))
>>> maps.shape, float(maps.max())
((2, 28, 28), 1.0)
"""

import numpy as np

from cnnrun.errors import UserError
from cnnrun.explain.network import LayerPath, class_scores, forward

METHODS = ("gradcam", "gradcam++", "saliency", "smoothgrad")
LAYER_METHODS = ("gradcam", "gradcam++")  # the methods that weigh a layer's feature maps
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15  # of the batch's value range, as the paper's 10–20 %


def gradient(function, value) -> np.ndarray:
    """The gradient of `sum(function(value))` with respect to `value`, through the Keras backend.

    `function` maps a batch to one number per example; the examples do not mix (inference mode), so row i of
    the result is the gradient of example i's number.

    Args:
        function: a function of Keras operations.
        value: a NumPy array or a backend tensor.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        value = tf.convert_to_tensor(value)
        with tf.GradientTape() as tape:
            tape.watch(value)
            total = tf.reduce_sum(function(value))
        return tape.gradient(total, value).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda v: jnp.sum(function(v)))(jnp.asarray(value)))
    if backend == "torch":
        import torch

        value = torch.as_tensor(np.asarray(value)).requires_grad_(True)
        function(value).sum().backward()
        return value.grad.detach().cpu().numpy()
    raise UserError(f"explaining needs gradients; the {backend} backend is not supported (tensorflow, jax)")


def _numpy(tensor) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _fit_to(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize `(n, h, w)` maps to `size` (bilinear), then scale each to [0, 1] by its largest value."""
    from skimage.transform import resize

    if maps.shape[1:] != tuple(size):
        maps = np.stack([resize(m, size, order=1, mode="edge", anti_aliasing=False) for m in maps])
    top = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(top > 0, top, 1)[:, None, None]).astype(np.float32)


def layer_gradients(model, x: np.ndarray, classes: np.ndarray, path: LayerPath) -> tuple[np.ndarray, np.ndarray]:
    """A layer's output for `x` and the gradient of each example's class score with respect to it."""
    features, _ = forward(model, x, path)
    if features is None or len(features.shape) != 4:
        raise UserError(f"--layer {path.name}: its output {path.output_shape} has no height and width; Grad-CAM "
                        f"needs a layer with a spatial output (batch, height, width, channels)")

    def scores(value):
        return class_scores(forward(model, x, path, put=value)[1], classes)

    return _numpy(features), gradient(scores, features)


def gradcam(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM: `ReLU(Σ_k α_k A_k)` with `α_k` the mean gradient of channel k; `(n, h, w)`."""
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return np.maximum((weights * features).sum(axis=-1), 0)


def gradcam_plus_plus(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (the closed form for an exponential of the score): `(n, h, w)`."""
    squared, cubed = grads**2, grads**3
    denominator = 2 * squared + features.sum(axis=(1, 2), keepdims=True) * cubed
    alphas = squared / np.where(denominator != 0, denominator, 1)
    weights = (alphas * np.maximum(grads, 0)).sum(axis=(1, 2), keepdims=True)
    return np.maximum((weights * features).sum(axis=-1), 0)


def input_gradients(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The gradient of each example's class score with respect to its input picture."""
    return gradient(lambda value: class_scores(forward(model, value)[1], classes), x)


def smoothgrad(model, x: np.ndarray, classes: np.ndarray, seed: int = 0) -> np.ndarray:
    """The mean input gradient over `SMOOTHGRAD_SAMPLES` noisy copies of each picture."""
    rng = np.random.default_rng(seed)
    spread = (x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True)) * SMOOTHGRAD_NOISE
    total = np.zeros_like(x, dtype=np.float32)
    for _ in range(SMOOTHGRAD_SAMPLES):
        noisy = (x + rng.normal(size=x.shape) * spread).astype(np.float32)
        total += input_gradients(model, noisy, classes)
    return total / SMOOTHGRAD_SAMPLES


def heat_maps(model, x: np.ndarray, classes, method: str = "gradcam", layer: LayerPath | None = None,
              batch_size: int = 32) -> np.ndarray:
    """Where the model looked to score each picture's class, as `(n, height, width)` maps in [0, 1].

    Args:
        model: the Keras model.
        x: the pictures as the model takes them (preprocessed), `(n, height, width, channels)`.
        classes: the class to explain for each picture (its index).
        method: `gradcam`, `gradcam++`, `saliency` or `smoothgrad`. Defaults to `gradcam`.
        layer: the layer whose feature maps Grad-CAM weighs (`network.find_layer`); unused by the others.
        batch_size: pictures per gradient step. Defaults to 32.
    """
    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    x = np.asarray(x, np.float32)
    classes = np.asarray(classes, np.int32)
    maps = []
    for start in range(0, len(x), batch_size):
        part, wanted = x[start:start + batch_size], classes[start:start + batch_size]
        if method in LAYER_METHODS:
            if layer is None:
                raise ValueError(f"{method} needs a layer")
            features, grads = layer_gradients(model, part, wanted, layer)
            maps.append((gradcam if method == "gradcam" else gradcam_plus_plus)(features, grads))
        else:
            grads = input_gradients(model, part, wanted) if method == "saliency" else smoothgrad(model, part, wanted)
            maps.append(np.abs(grads).max(axis=-1))
    return _fit_to(np.concatenate(maps), x.shape[1:3])
