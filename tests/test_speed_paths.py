"""The fast paths: commands that answer without TensorFlow, mixed precision and XLA on the CPU."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cnnrun.config import validate_experiment
from tests.conftest import PROJECT, tiny_config

HEAVY = ("tensorflow", "keras", "matplotlib", "jax")
PROBE = """
import json, sys
from cnnrun.cli import main
sys.argv = ["cnnrun", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as e:
    code = e.code or 0
print(json.dumps([code, sorted(m for m in {heavy} if m in sys.modules)]))
"""


@pytest.mark.parametrize("args, code", [
    (["--help"], 0), (["train", "--help"], 0), (["config", "show", "configs/cifar10_bn.yaml"], 0),
    (["train", "configs/quickstart.yaml", "--set", "train.epochs=zero"], 2),
    (["train", "no/such/config.yaml"], 2),
])
def test_help_config_show_and_config_errors_do_not_import_tensorflow(args, code):
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                            text=True, cwd=PROJECT, timeout=120)
    exit_code, heavy = json.loads(result.stdout.splitlines()[-1])
    assert heavy == [], f"{args} imported {heavy}"
    assert exit_code == code, result.stdout


def test_mixed_precision_and_xla_train_on_the_cpu():
    import keras

    from cnnrun.data import load_splits
    from cnnrun.model import build_model, compile_model

    experiment = validate_experiment(tiny_config(train={"epochs": 1, "batch_size": 16, "mixed_precision": True},
                                                 compile={"optimizer": "adam", "jit_compile": True,
                                                          "steps_per_execution": 4}), "test")
    try:
        splits = load_splits(experiment)
        model = build_model(experiment, tuple(splits.info.input_shape), splits.info.num_classes)
        compile_model(model, experiment)
        assert model.layers[0].dtype_policy.name == "mixed_bfloat16"  # no GPU here: bfloat16
        assert model.layers[-1].dtype_policy.name == "float32"  # the softmax stays float32
        history = model.fit(splits.train, steps_per_epoch=splits.steps_per_epoch, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        probabilities = model.predict(splits.test, verbose=0)
        assert probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    finally:
        keras.config.set_dtype_policy("float32")
