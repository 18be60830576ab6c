"""The fast paths: commands that answer without TensorFlow, mixed precision and XLA on the CPU; output sent to a
file or a pipe (COLUMNS unset) that is never wrapped or cut."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow
import yaml

from cnnrun.config import validate_experiment
from tests.conftest import PROJECT, run_cli, tiny_config

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


LONG = " ".join(f"word{i:03d}" for i in range(25))  # 199 characters


def test_config_show_into_a_pipe_writes_the_yaml_as_it_is(write_config):
    config = write_config(tiny_config(description=LONG))
    result = run_cli("config", "show", config, columns=None)
    assert result.returncode == 0, result.stderr
    assert f"\ndescription: {LONG}\n" in result.stdout  # not wrapped by PyYAML, not cropped at 80 columns
    assert "\x1b" not in result.stdout  # no colours in a file
    assert yaml.safe_load(result.stdout)["model"]["layers"][0]["Conv2D"]["filters"] == 4


def test_tables_sent_to_a_pipe_are_not_cut_at_80_columns_no_chatter_shows_and_jax_stays_out():
    """`cnnrun inspect` into a pipe, COLUMNS unset, in a process of its own: whole rows, an empty standard error,
    and on the TensorFlow backend no JAX imported (TensorFlow's own import reaches for it: `import_keras` hides it),
    while `import jax` still works afterwards."""
    lite = Path(tensorflow.__file__).parent / "lite" / "python" / "util.py"
    assert "from jax import" in lite.read_text()  # why: TensorFlow imports JAX whenever it is installed
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "KERAS_BACKEND")}
    probe = PROBE.format(heavy=HEAVY) + "import jax; print(jax.__name__)\n"
    result = subprocess.run([sys.executable, "-c", probe, "inspect", PROJECT / "configs" / "cifar10.yaml"],
                            capture_output=True, text=True, cwd=PROJECT, env=env, timeout=120)
    *printed, modules, later = result.stdout.splitlines()
    assert json.loads(modules) == [0, ["keras", "matplotlib", "tensorflow"]], result.stderr
    assert later == "jax"
    assert result.stderr == ""  # TensorFlow's start-up messages stay out of the terminal
    result.stdout = "\n".join(printed)
    (row,) = [line for line in result.stdout.splitlines() if " conv2d " in line]
    assert "(32 + 2·1 − 3)/1 + 1 = 32" in row and "(None, 32, 32, 32)" in row and "(3·3·3 + 1)·32 = 896" in row


def test_a_table_into_a_pipe_takes_the_width_it_needs_unless_columns_is_set(tmp_path):
    from PIL import Image

    name = "a_class_folder_whose_name_is_long_" + "x" * 100  # 134 characters
    for folder in (name, "short"):
        (tmp_path / "pictures" / folder).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "pictures" / folder / "one.png")
    piped = run_cli("data", "check", tmp_path / "pictures", columns=None)
    assert piped.returncode == 0, piped.stderr
    assert any(name in line for line in piped.stdout.splitlines())  # whole, on one line
    narrow = run_cli("data", "check", tmp_path / "pictures", columns="60")
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60  # COLUMNS is the user's choice


@pytest.mark.slow
@pytest.mark.parametrize("flags, warned", [("fpu sse4_2 avx fma avx2", True), ("avx2 avx512f avx512_bf16", False),
                                            ("avx2 amx_tile amx_bf16", False)])
def test_bfloat16_on_a_cpu_that_only_emulates_it_is_one_warning_line(tmp_path, flags, warned):
    from cnnrun.devices.machine import cpu_features
    from cnnrun.model.build import emulated_bfloat16

    (cpuinfo := tmp_path / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: Some CPU 3000\nflags\t\t: {flags}\n")
    cpu = cpu_features(cpuinfo)
    mixed = validate_experiment(tiny_config(train={"mixed_precision": True}), "test")
    line = emulated_bfloat16(mixed, cpu)
    if warned:
        assert line == ("train.mixed_precision: bfloat16 is emulated on this CPU (Some CPU 3000; flags: sse4_2 avx "
                        "fma avx2; no AVX512_BF16 or AMX-BF16), many times slower than float32; set it to false here "
                        "(it pays on a GPU or a CPU with those)")
    else:
        assert line is None
    assert emulated_bfloat16(validate_experiment(tiny_config(), "test"), cpu) is None  # float32: nothing to say


def test_mixed_precision_and_xla_train_on_the_cpu():
    import keras

    from cnnrun.data import load_splits
    from cnnrun.model.build import build_model
    from cnnrun.model.compiling import compile_model

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
