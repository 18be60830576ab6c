"""`PatchWhitening: {bias_epochs: N}`: the whitening bias trains in the first N epochs, then keeps that value while
the rest of the network trains on, also after a resume."""

import keras
import numpy as np
import pytest

from cnnrun.config import validate_experiment
from cnnrun.model.checkpoints import load_checkpoint
from cnnrun.training.trainer import Trainer, resume_run
from tests.conftest import tiny_config


class Weights(keras.callbacks.Callback):
    """The whitening bias and the last layer's kernel after every epoch."""

    def __init__(self):
        super().__init__()
        self.bias, self.kernel = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.bias.append(np.array(self.model.get_layer("whitening").bias))
        self.kernel.append(np.array(self.model.layers[-1].kernel))


def bias_trains_then_stays(tmp_path, epochs: int = 4, resume: bool = True) -> None:
    """bias_epochs 2 of `epochs` (≥ 3): the bias changes in epoch 2, keeps that value after it while the last layer
    trains on; with `resume`, also in the run resumed to epoch 6. tests/test_on_jax.py runs it on JAX."""
    layers = [{"PatchWhitening": {"patch_size": 2, "bias_epochs": 2, "name": "whitening"}},
              {"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]
    config = tiny_config(model={"layers": layers}, train={"epochs": epochs, "batch_size": 32},
                         output={"dir": str(tmp_path / "runs"), "plots": False, "report": False})
    weights = Weights()
    with Trainer.new(validate_experiment(config, "t.yaml"), callbacks=[weights]) as trainer:
        trainer.fit()
        run = trainer.finish()
    bias, kernel = weights.bias, weights.kernel
    assert not np.array_equal(bias[0], bias[1])  # epoch 2 still trains it
    for later in bias[2:]:  # the epochs after keep epoch 2's value
        np.testing.assert_array_equal(later, bias[1])
    assert not np.array_equal(kernel[-1], kernel[-2])  # while the rest trains on
    if resume:
        resumed = resume_run(run.path, epochs=6)
        last = load_checkpoint(resumed.path / "checkpoints" / "last.keras")
        np.testing.assert_array_equal(np.array(last.get_layer("whitening").bias), bias[1])
        assert not np.array_equal(np.array(last.layers[-1].kernel), kernel[-1])


@pytest.mark.slow
def test_the_bias_trains_its_epochs_then_stays_and_a_resume_keeps_it(tmp_path):
    bias_trains_then_stays(tmp_path)


def frozen_under_loss_scaling() -> None:
    """mixed_float16, where Keras wraps the optimizer in a LossScaleOptimizer (a GPU's policy; the one the first GPU
    run stopped in): bias_epochs 1 of 3, the bias moves in epoch 1 only. tests/test_on_jax.py runs it on JAX."""
    from cnnrun.model.rates import with_rate_multipliers
    from cnnrun.model.whitening import FreezeWhiteningBias, PatchWhitening

    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(3)
        x = np.random.default_rng(3).normal(size=(32, 6, 6, 3)).astype("float32")
        whitening = PatchWhitening(patch_size=2, bias_epochs=1)
        model = keras.Sequential([keras.Input((6, 6, 3)), whitening, keras.layers.Flatten(),
                                  keras.layers.Dense(2, dtype="float32")])
        whitening.adapt(x)
        optimizer = with_rate_multipliers(keras.optimizers.SGD(0.1, momentum=0.9), model, None, freezing=True)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        start = np.array(whitening.bias)
        biases = []
        model.fit(x, np.arange(32) % 2, batch_size=8, epochs=3, verbose=0, callbacks=[
            FreezeWhiteningBias(), keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: biases.append(np.array(whitening.bias)))])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert not np.array_equal(biases[0], start)
    np.testing.assert_array_equal(biases[1], biases[0])
    np.testing.assert_array_equal(biases[2], biases[0])


def test_the_bias_stays_frozen_under_loss_scaling():
    frozen_under_loss_scaling()


def test_bias_epochs_without_a_bias_is_refused():
    from cnnrun.model.whitening import PatchWhitening

    with pytest.raises(ValueError, match="bias_epochs"):
        PatchWhitening(use_bias=False, bias_epochs=3)
    assert PatchWhitening(bias_epochs=3).get_config()["bias_epochs"] == 3



def test_an_optimizer_that_cannot_freeze_has_the_bias_made_non_trainable():
    # a plain Keras optimizer (a checkpoint of an older cnnrun compiled without per-variable rates): the callback
    # falls back to `trainable = False`, which TensorFlow takes mid-run; the bias moves in epoch 1 only
    from cnnrun.model.whitening import FreezeWhiteningBias, PatchWhitening

    keras.utils.set_random_seed(3)
    x = np.random.default_rng(3).normal(size=(32, 6, 6, 3)).astype("float32")
    whitening = PatchWhitening(patch_size=2, bias_epochs=1)
    model = keras.Sequential([keras.Input((6, 6, 3)), whitening, keras.layers.Flatten(), keras.layers.Dense(2)])
    whitening.adapt(x)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert not hasattr(model.optimizer, "freeze")
    start, biases, kernels = np.array(whitening.bias), [], []
    model.fit(x, np.arange(32) % 2, batch_size=8, epochs=3, verbose=0, callbacks=[
        FreezeWhiteningBias(), keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: (
            biases.append(np.array(whitening.bias)), kernels.append(np.array(model.layers[-1].kernel))))])
    assert not np.array_equal(biases[0], start) and not whitening.bias.trainable
    np.testing.assert_array_equal(biases[1], biases[0])
    np.testing.assert_array_equal(biases[2], biases[0])
    assert not np.array_equal(kernels[2], kernels[1])  # the rest trains on
