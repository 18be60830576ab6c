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


@pytest.mark.slow
def test_the_bias_trains_its_epochs_then_stays_and_a_resume_keeps_it(tmp_path):
    layers = [{"PatchWhitening": {"patch_size": 2, "bias_epochs": 2, "name": "whitening"}},
              {"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]
    config = tiny_config(model={"layers": layers}, train={"epochs": 4, "batch_size": 32},
                         output={"dir": str(tmp_path / "runs"), "plots": False, "report": False})
    weights = Weights()
    with Trainer.new(validate_experiment(config, "t.yaml"), callbacks=[weights]) as trainer:
        trainer.fit()
        run = trainer.finish()
    bias, kernel = weights.bias, weights.kernel
    assert not np.array_equal(bias[0], bias[1])  # epoch 2 still trains it
    np.testing.assert_array_equal(bias[2], bias[1])  # epochs 3 and 4 keep epoch 2's value
    np.testing.assert_array_equal(bias[3], bias[1])
    assert not np.array_equal(kernel[3], kernel[2])  # while the rest trains on
    resumed = resume_run(run.path, epochs=6)
    last = load_checkpoint(resumed.path / "checkpoints" / "last.keras")
    np.testing.assert_array_equal(np.array(last.get_layer("whitening").bias), bias[1])
    assert not np.array_equal(np.array(last.layers[-1].kernel), kernel[3])


def test_bias_epochs_without_a_bias_is_refused():
    from cnnrun.model.whitening import PatchWhitening

    with pytest.raises(ValueError, match="bias_epochs"):
        PatchWhitening(use_bias=False, bias_epochs=3)
    assert PatchWhitening(bias_epochs=3).get_config()["bias_epochs"] == 3


JAX_SCRIPT = """
import pathlib, sys
import keras
assert keras.backend.backend() == "jax"
from tests.test_whitening_bias import test_the_bias_trains_its_epochs_then_stays_and_a_resume_keeps_it as test
test(pathlib.Path(sys.argv[1]))
"""


@pytest.mark.slow
def test_the_same_on_the_jax_backend(tmp_path):
    # JAX's optimizer keeps a state per variable it was built with: the bias cannot leave the trainable ones mid-run
    import os
    import subprocess
    import sys

    from tests.conftest import PROJECT

    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(PROJECT)}
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, tmp_path], env=env, cwd=PROJECT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
