"""The Trainer: config errors before any data, and the run-folder faults a review found, each reproduced for real."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import PROJECT, TINY_LAYERS, history, only_run, run_here, tiny_config
from tests.test_errors import assert_user_error


def state_of(run) -> dict:
    return json.loads((run / "state.json").read_text())


def zip_record(path) -> dict:
    """The record a checkpoint carries: JSON in its zip comment, after the `cnnrun:` mark (Keras ignores it)."""
    with zipfile.ZipFile(path) as archive:
        mark, _, record = archive.comment.partition(b":")
    assert mark == b"cnnrun", archive.comment
    return json.loads(record)


def photo_folder(root, broken: bool = False):
    """Two class folders of small JPEGs; `broken` adds a truncated one."""
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(root / name / f"{i}.jpg")
    if broken:
        (root / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


# ---------------------------------------------------------------- every config error before any data


def test_a_misspelt_layer_argument_is_reported_before_the_data_is_read(write_config, tmp_path):
    # The folder holds a file that stops data loading (on_bad_file: error); the layer's typo must be found first.
    folder = photo_folder(tmp_path / "photos", broken=True)
    layers = [{"Conv2D": {"filters": 4, "kernel_sise": 3}}, *TINY_LAYERS[1:]]
    config = tiny_config(dataset={"name": "image_folder", "path": str(folder), "image_size": 16,
                                  "on_bad_file": "error"}, model={"layers": layers})
    path = write_config(config)
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "runs"),
                      f"{path}: model.layers[0] (Conv2D)", "kernel_sise", "did you mean 'kernel_size'")
    assert not (tmp_path / "runs").exists()


def test_output_units_that_do_not_match_the_classes_are_found_by_inspect(write_config):
    layers = [*TINY_LAYERS[:-1], {"Dense": {"units": 5, "activation": "softmax"}}]
    assert_user_error(run_here("inspect", write_config(tiny_config(model={"layers": layers}))),
                      "model.layers[3] (Dense)", "(None, 5)", "3 classes", "3 units")


def test_a_binary_label_mode_needs_one_output_unit(write_config):
    config = tiny_config(dataset={"name": "shapes", "image_size": 16, "num_classes": 2, "label_mode": "binary"})
    assert_user_error(run_here("inspect", write_config(config)), "binary", "1 unit")


def test_a_pooling_stack_too_deep_for_the_input_names_the_layer_and_the_shapes(write_config):
    layers = [{"Conv2D": {"filters": 4, "kernel_size": 3}}, {"MaxPooling2D": 2}, {"Conv2D": {"filters": 4,
              "kernel_size": 3}}, {"MaxPooling2D": 2}, {"MaxPooling2D": 2}, {"MaxPooling2D": 2}, "Flatten",
              {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]
    result = run_here("inspect", write_config(tiny_config(model={"layers": layers})))
    # 16 → conv 14 → pool 7 → conv 5 → pool 2 → pool 1 → the fourth pooling gets 1×1
    assert_user_error(result, "model.layers[5] (MaxPooling2D)", "(None, 1, 1, 4)", "zero or negative")


# ---------------------------------------------------------------- names


@pytest.mark.slow
@pytest.mark.parametrize("name", ["_draft", "réseau", "expérience"])
def test_a_name_tensorflow_refuses_as_a_scope_still_trains_into_a_folder_of_that_name(write_config, tmp_path, name):
    config = tiny_config(train={"epochs": 1, "batch_size": 16}, output={"plots": False, "report": False})
    result = run_here("train", write_config(config), "--output-dir", tmp_path, "--set", f"name={name}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / name).is_dir() and state_of(only_run(tmp_path))["status"] == "completed"
    assert "1 epochs" not in result.stdout and "1 epoch," in result.stdout


# ---------------------------------------------------------------- resume: status, best, first epoch, scoring


@pytest.mark.slow
def test_a_resumed_early_stopped_run_that_then_completes_is_completed(write_config, tmp_path):
    # No epoch after the first improves the loss by 100: the run stops after epoch 2 (patience 0).
    config = tiny_config(train={"epochs": 6, "batch_size": 16},
                         callbacks={"early_stopping": {"monitor": "loss", "patience": 0, "min_delta": 100.0}})
    assert run_here("train", write_config(config), "--output-dir", tmp_path).returncode == 0
    run = only_run(tmp_path)
    assert state_of(run)["status"] == "stopped_early" and state_of(run)["epochs_completed"] == 2
    # The user lifts the stopping rule in the run's own config and trains on: nothing stops it now.
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["callbacks"]["early_stopping"].update(patience=10, min_delta=0.0)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    result = run_here("resume", run, "--epochs", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert state_of(run)["status"] == "completed" and state_of(run)["epochs_completed"] == 4


@pytest.mark.slow
def test_the_value_best_keras_holds_is_read_from_the_checkpoint_itself(write_config, tmp_path):
    # mode max on val_loss makes the best epoch an early one, so later epochs are worse. state.json is made to
    # forget the best (as a kill between replacing best.keras and writing state.json would): resume must still
    # know it from best.keras and never replace it with a worse epoch.
    config = tiny_config(train={"epochs": 2, "batch_size": 16},
                         callbacks={"checkpoint": {"monitor": "val_loss", "mode": "max"}})
    assert run_here("train", write_config(config), "--output-dir", tmp_path).returncode == 0
    run = only_run(tmp_path)
    record = zip_record(run / "checkpoints" / "best.keras")
    rows = history(run)
    assert record["value"] == pytest.approx(max(r["val_loss"] for r in rows))
    state = state_of(run)
    state["best"] = {"monitor": "val_loss", "value": -1.0, "epoch": None}
    state["status"] = "interrupted"
    (run / "state.json").write_text(json.dumps(state))

    assert run_here("resume", run, "--epochs", "4").returncode == 0
    rows = history(run)
    best = max(rows, key=lambda r: r["val_loss"])
    assert state_of(run)["best"]["value"] == pytest.approx(best["val_loss"])
    assert state_of(run)["best"]["epoch"] == int(best["epoch"])
    assert zip_record(run / "checkpoints" / "best.keras")["epoch"] == int(best["epoch"])


@pytest.mark.slow
def test_a_run_killed_before_its_first_epoch_ended_starts_again_in_the_same_folder(write_config, tmp_path):
    config = tiny_config(train={"epochs": 2, "batch_size": 16, "deterministic": True},
                         output={"plots": False, "report": False})
    path = write_config(config)
    assert run_here("train", path, "--output-dir", tmp_path / "straight").returncode == 0
    straight = only_run(tmp_path / "straight")
    assert run_here("train", path, "--output-dir", tmp_path / "killed").returncode == 0
    run = only_run(tmp_path / "killed")
    # what a kill during epoch 1 leaves: the run's own files, no epoch, no checkpoint
    for name in ("history.csv", "scores.json"):
        (run / name).unlink()
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    state = state_of(run)
    state.update(status="running", epochs_completed=0, best={"monitor": "val_loss", "value": None, "epoch": None},
                 callbacks={}, fit_ended=None)
    (run / "state.json").write_text(json.dumps(state))

    result = run_here("resume", run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert state_of(run)["status"] == "completed" and [r["epoch"] for r in history(run)] == [1, 2]
    # the same seed, so the same initial weights: the same model as the straight run
    a = keras.saving.load_model(straight / "checkpoints" / "last.keras", safe_mode=True).get_weights()
    b = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True).get_weights()
    for w_a, w_b in zip(a, b, strict=True):
        np.testing.assert_allclose(w_a, w_b, atol=1e-6)


def _start(config_path, output_dir, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "cnnrun", *extra, str(config_path), "--output-dir",
                             str(output_dir)], cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(predicate, process, seconds: float = 120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the process ended first: {process.communicate()[1][-2000:]}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("timed out")


@pytest.mark.slow
def test_ctrl_c_during_the_final_scoring_interrupts_and_resume_scores_the_run(write_config, tmp_path):
    # one short epoch, then a large test split: scoring takes long enough to be interrupted (random arrays, which
    # take no time to make, unlike drawn shapes)
    rng = np.random.default_rng(0)
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, x_train=rng.integers(0, 256, (64, 16, 16, 1), np.uint8), y_train=np.arange(64) % 3,
             x_test=rng.integers(0, 256, (12000, 16, 16, 1), np.uint8), y_test=np.arange(12000) % 3)
    config = tiny_config(train={"epochs": 1, "batch_size": 16}, output={"plots": False, "report": False},
                         dataset={"name": "npz", "path": str(arrays), "validation_split": 0.25})
    process = _start(write_config(config), tmp_path, "train")

    def scoring():
        states = list(tmp_path.glob("*/*/state.json"))
        try:
            return states and json.loads(states[0].read_text()).get("fit_ended") and states[0].parent
        except json.JSONDecodeError:
            return None

    run = _wait_for(scoring, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    state = state_of(run)
    assert state["status"] == "interrupted" and state["epochs_completed"] == 1 and state["fit_seconds"] > 0
    assert not (run / "scores.json").exists()

    result = run_here("resume", run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert state_of(run)["status"] == "completed" and len(history(run)) == 1
    assert set(json.loads((run / "scores.json").read_text())) == {"best", "last"}


@pytest.mark.slow
def test_a_second_process_cannot_write_a_run_folder_that_is_being_trained(write_config, tmp_path):
    config = tiny_config(train={"epochs": 200, "batch_size": 16}, output={"plots": False, "report": False})
    config["dataset"]["num_samples"] = 400
    process = _start(write_config(config), tmp_path, "train")
    try:
        run = _wait_for(lambda: next((p.parent for p in tmp_path.glob("*/*/history.csv")), None), process)
        before = (run / "history.csv").read_text()
        result = run_here("resume", run, "--epochs", "300")
        assert_user_error(result, f"in use by process {process.pid}")
        assert (run / "history.csv").read_text().startswith(before.splitlines()[0])
    finally:
        process.kill()
        process.wait()


def test_verbose_auto_is_a_progress_bar_in_a_terminal_and_one_line_an_epoch_in_a_pipe():
    from cnnrun.training.callbacks import keras_verbosity

    main, side = os.openpty()  # a real terminal
    read, write = os.pipe()
    try:
        with os.fdopen(side, "w") as terminal, os.fdopen(write, "w") as pipe, pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "stdout", terminal)
            assert keras_verbosity("auto") == 1  # Keras' fit: a progress bar
            patch.setattr(sys, "stdout", pipe)
            assert keras_verbosity("auto") == 2  # Keras' fit: one line an epoch
    finally:
        os.close(main)
        os.close(read)
    assert keras_verbosity(0) == 0 and keras_verbosity("2") == 2
