"""A frozen, data-dependent first layer: airbench's 2×2 patch whitening, as a registered Keras layer.

Keller Jordan's airbench starts its CIFAR-10 network with a convolution whose kernels are not learnt but computed
once from the training images: the eigenvectors of the covariance of every k×k patch, each divided by the square
root of its eigenvalue, so that the layer's outputs on those patches are uncorrelated with unit variance
("whitened"). Each filter comes twice, with both signs, so a following ReLU or GELU keeps both halves.

`model.layers: [{PatchWhitening: {patch_size: 2}}, ...]` puts it in a model; the Trainer fills its kernel before
the first epoch of a new run from the training split only (`adapt_whitening`), and the kernel is saved in the
checkpoints like any weight (a resumed run keeps it). The bias is trained: in every epoch, or, with
`bias_epochs: N` (airbench: 3), in the first N epochs only, then frozen (`FreezeWhiteningBias`).

Example:
>>> import numpy as np
>>> layer = PatchWhitening(patch_size=2)
>>> layer.build((None, 32, 32, 3))
>>> layer.kernel.shape  # 2·2·3 = 12 directions, each with both signs
(2, 2, 3, 24)
"""

from typing import Any

import keras
import numpy as np

PATCHES_FROM = 5000  # training images whose patches estimate the covariance (airbench: 5,000)


@keras.saving.register_keras_serializable(package="cnnrun")
class PatchWhitening(keras.layers.Layer):
    """A `patch_size`×`patch_size` convolution (stride 1, valid) with frozen whitening kernels and a trained bias.

    Args:
        patch_size: the side of the patches, k. Defaults to 2 (airbench). The layer has 2·k²·channels outputs,
            and its output is k − 1 pixels smaller than its input.
        epsilon: added to each eigenvalue before its square root, so near-constant directions are not blown up.
            Defaults to 5e-4 (airbench).
        use_bias: whether a trained bias follows the frozen kernels. Defaults to True.
        bias_epochs: train the bias in the first N epochs only, then freeze it (airbench: 3). Defaults to None:
            in every epoch.
    """

    def __init__(self, patch_size: int = 2, epsilon: float = 5e-4, use_bias: bool = True,
                 bias_epochs: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if patch_size < 1:
            raise ValueError(f"patch_size must be at least 1, got {patch_size}")
        if bias_epochs is not None and (not use_bias or bias_epochs < 0):
            raise ValueError(f"bias_epochs is a number of epochs ≥ 0 for a layer with a bias, got {bias_epochs}")
        self.patch_size, self.epsilon, self.use_bias = patch_size, epsilon, use_bias
        self.bias_epochs = bias_epochs

    def build(self, input_shape):
        k, channels = self.patch_size, input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(k, k, channels, 2 * k * k * channels),
                                      initializer="zeros", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(2 * k * k * channels,), initializer="zeros") \
            if self.use_bias else None

    def call(self, inputs):
        outputs = keras.ops.conv(inputs, keras.ops.cast(self.kernel, inputs.dtype), padding="valid")
        return outputs + keras.ops.cast(self.bias, outputs.dtype) if self.use_bias else outputs

    def compute_output_shape(self, input_shape):
        k = self.patch_size
        shrink = [None if n is None else n - k + 1 for n in input_shape[1:3]]
        return (input_shape[0], *shrink, 2 * k * k * input_shape[-1])

    def adapt(self, images: np.ndarray) -> None:
        """Set the kernels from `images` (N, H, W, C) as this layer receives them: the eigenvectors of the k×k
        patches' (uncentred) covariance, scaled by 1/√(eigenvalue + epsilon), largest eigenvalue first."""
        k = self.patch_size
        if not self.built:
            self.build((None, *images.shape[1:]))
        patches = patches_of(images.astype(np.float64), k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + self.epsilon)
        kernel = scaled.reshape(k, k, images.shape[-1], -1)
        self.kernel.assign(np.concatenate([kernel, -kernel], axis=-1).astype("float32"))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "epsilon": self.epsilon,
                "use_bias": self.use_bias, "bias_epochs": self.bias_epochs}


def patches_of(images: np.ndarray, k: int) -> np.ndarray:
    """Every k×k patch of every image (stride 1), flattened in the order of a Keras kernel: (row, column, channel)."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (k, k), axis=(1, 2))  # N, H', W', C, k, k
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * images.shape[-1])


def adapt_whitening(model, splits) -> int:
    """Fill every `PatchWhitening` layer of a new model from the first `PATCHES_FROM` training images as the model
    receives them (normalised, not augmented), each layer from its own input. Returns how many it filled.

    Args:
        model: the new, untrained model.
        splits: the run's data (`cnnrun.data.Splits`); only its training split is read.
    """
    from cnnrun.data import preprocess

    layers = [layer for layer in model.layers if isinstance(layer, PatchWhitening)]
    if layers:
        train = splits.examples["train"]
        training_images = preprocess(train.pixels(np.arange(min(PATCHES_FROM, len(train)))), splits.info).numpy()
    for layer in layers:
        inputs = training_images if layer is model.layers[0] else \
            keras.Model(model.inputs, layer.input).predict(training_images, verbose=0)
        layer.adapt(np.asarray(inputs))
    return len(layers)


def whitening_layers(model) -> list[PatchWhitening]:
    """Every `PatchWhitening` layer of `model`, nested models searched too."""
    found = []
    for layer in getattr(model, "layers", []):
        found += [layer] if isinstance(layer, PatchWhitening) else whitening_layers(layer)
    return found


class FreezeWhiteningBias(keras.callbacks.Callback):
    """Freeze the bias of every `PatchWhitening` layer with `bias_epochs: N` when epoch N + 1 begins.

    The optimizer skips the bias from then on (`cnnrun.model.rates`, `freeze`: no update, no momentum, no weight
    decay, as airbench's `requires_grad = False`) and Keras' train step is built again, so the rest of the model
    trains on while the bias keeps the value of its N-th epoch. An optimizer without per-variable rates (a checkpoint
    of an older cnnrun) has the bias made non-trainable instead, which only the TensorFlow backend takes mid-run.
    A resumed run past epoch N freezes it when its first epoch begins. The Trainer gives it to the fits of a model
    whose config sets `bias_epochs`.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)  # under loss scaling
        skips = hasattr(optimizer, "freeze")  # cnnrun's optimizers with per-variable rates
        due = [layer for layer in whitening_layers(self.model)
               if layer.bias_epochs is not None and epoch >= layer.bias_epochs and layer.bias.trainable
               and not (skips and optimizer.is_frozen(layer.bias))]
        if skips:
            optimizer.freeze([layer.bias for layer in due])
        else:
            for layer in due:
                layer.bias.trainable = False
        if due:
            self.model.make_train_function(force=True)


def freezes_whitening_bias(model) -> bool:
    """Whether a `PatchWhitening` layer of `model` has `bias_epochs` (its optimizer must be able to `freeze`)."""
    return any(layer.bias_epochs is not None for layer in whitening_layers(model))
