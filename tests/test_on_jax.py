"""What the JAX backend alone can show, in one JAX process (each costs seconds to start):

- the quick start trained, scored and written on JAX, Keras' augmentation layers in the model;
- `cnnrun explain`'s Grad-CAM maps of a run trained on TensorFlow, opened on JAX, equal to TensorFlow's
  (tests/test_explain.py's tiny run);
- cnnrun's crop and cutout layers exact eagerly and in a compiled step (tests/test_crop.py's references);
- lookahead's updates against the loop written by hand (tests/test_lookahead.py);
- the whitening bias frozen after its epochs while the rest trains on (tests/test_whitening_bias.py);
- the compiled steps kept on disk for the next process.

Lookahead and the bias failed on JAX before: a callback must ask for the model before it reads the weights
mid-epoch, and JAX's optimizer keeps one state per variable it was built with, so a variable cannot stop being
trainable in the middle of a run."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import PROJECT, only_run, run_here
from tests.test_crop import check_crop_and_cutout, pictures
from tests.test_distribution import QUIET
from tests.test_explain import tiny_run

SCRIPT = """
import pathlib, sys
from cnnrun.devices.backend import import_keras
import_keras()  # as cnnrun's commands import it
import keras
assert keras.backend.backend() == "jax"
import json
from cnnrun import cli
for command in json.loads(sys.argv[4]):  # cnnrun commands, as a user types them, each through its entry point
    argv, sys.argv = sys.argv, ["cnnrun", *command]
    try:
        cli.main()
    except SystemExit as stop:
        assert not stop.code, (command, stop.code)
    sys.argv = argv
from tests import test_crop, test_lookahead, test_whitening_bias
test_crop.crop_and_cutout_here(sys.argv[1], sys.argv[2])
test_lookahead.test_every_four_steps_and_at_each_epoch_end_with_the_decay_growing_over_the_run()
test_lookahead.test_with_steps_per_execution_the_update_comes_at_the_end_of_the_execution_that_reaches_a_multiple()
test_whitening_bias.bias_trains_then_stays(pathlib.Path(sys.argv[3]), epochs=3, resume=False)
test_whitening_bias.frozen_under_loss_scaling()
"""


@pytest.mark.slow
def test_a_quick_start_explain_crop_cutout_lookahead_and_the_whitening_bias_on_the_jax_backend(tmp_path):
    images = pictures(16)
    np.save(tmp_path / "x.npy", images)
    trained, explained, _ = tiny_run(tmp_path / "tf_run")  # a copy that says `backend: jax` is explained on JAX
    shutil.copytree(trained, tmp_path / "run")
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace("backend: tensorflow", "backend: jax"))
    assert "backend: jax" in config.read_text()
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(PROJECT),
           "CNNRUN_CACHE_DIR": str(tmp_path / "cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # keep every compiled step, however quick
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    commands = [["explain", str(tmp_path / "run"), str(explained), "--out", str(tmp_path / "jax")],
                ["train", str(PROJECT / "configs" / "quickstart.yaml"), "--set", "train.epochs=1", "--set",
                 "dataset.num_samples=200", "--set", "dataset.test_samples=40", "--set", "backend=jax", *QUIET,
                 "--set", "augmentation={rotation_range: 10, horizontal_flip: true, brightness_range: [0.8, 1.2]}",
                 "--output-dir", str(tmp_path / "quickstart")]]
    result = subprocess.run([sys.executable, "-c", SCRIPT, tmp_path / "x.npy", tmp_path / "out.npz", tmp_path,
                             json.dumps(commands)], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path / "quickstart")
    assert json.loads((run / "state.json").read_text())["status"] == "completed"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["distribution"]["backend"] == "jax" and "jax" in meta["versions"]
    assert set(json.loads((run / "scores.json").read_text())) == {"best", "last"}
    assert "augmentation" in (run / "summary.txt").read_text()  # not TensorFlow: augmentation runs in the model
    assert run_here("explain", trained, explained, "--out", tmp_path / "tf").returncode == 0
    jax_maps, tf_maps = (np.load(tmp_path / kind / "gradcam_heat_maps.npz")["maps"] for kind in ("jax", "tf"))
    assert np.allclose(jax_maps, tf_maps, atol=1e-4)
    check_crop_and_cutout(images, np.load(tmp_path / "out.npz"))
    # JAX's compiled steps were kept for the next process, beside the jit records
    assert len(list((tmp_path / "cache" / "jax").iterdir())) > 5
