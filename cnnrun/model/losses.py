"""The one loss cnnrun adds to Keras': sparse categorical crossentropy with label smoothing.

Keras' `CategoricalCrossentropy` smooths one-hot labels (`label_smoothing`), its sparse twin does not; fast
CIFAR-10 recipes (airbench, Page's ResNet-9) smooth integer labels. `compile.loss: {name:
sparse_categorical_crossentropy, label_smoothing: 0.2}` builds this class, which is exactly Keras' categorical
crossentropy of the one-hot labels.

Example:
>>> import numpy as np
>>> loss = SmoothedSparseCategoricalCrossentropy(label_smoothing=0.2)
>>> round(float(loss(np.array([0]), np.array([[0.8, 0.2]]))), 4)  # −(0.9·ln 0.8 + 0.1·ln 0.2)
0.3618
"""

import keras


@keras.saving.register_keras_serializable(package="cnnrun")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Crossentropy of integer labels, smoothed: the true class gets `1 − s + s/K`, each other class `s/K`.

    Args:
        label_smoothing: s, in [0, 1]. Defaults to 0 (Keras' sparse crossentropy).
        from_logits: whether predictions are logits rather than probabilities. Defaults to False.
        reduction, name, dtype: as every Keras loss.
    """

    def __init__(self, label_smoothing: float = 0.0, from_logits: bool = False,
                 reduction: str = "sum_over_batch_size", name: str = "sparse_categorical_crossentropy",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}
