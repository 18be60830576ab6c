"""resume: a run picks up exactly where it stopped, after finishing, Ctrl-C or SIGKILL; damage is reported."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.conftest import PROJECT, history, only_run, run_cli, run_here, tiny_config

pytestmark = pytest.mark.slow

NO_DROPOUT = tiny_config(train={"epochs": 4, "batch_size": 16, "deterministic": True},
                         callbacks={"checkpoint": {"monitor": "val_loss"},
                                    "early_stopping": {"monitor": "val_loss", "patience": 5},
                                    "reduce_lr_on_plateau": {"monitor": "val_loss", "patience": 1, "factor": 0.5}})




def weights(run, which="last"):
    return keras.saving.load_model(run / "checkpoints" / f"{which}.keras", safe_mode=True).get_weights()


def test_resume_is_exact_with_determinism(write_config, tmp_path):
    path = write_config(NO_DROPOUT)
    straight = run_here("train", path, "--output-dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    split = run_here("train", path, "--output-dir", tmp_path / "split", "--set", "train.epochs=2")
    assert split.returncode == 0, split.stderr[-2000:]
    run = only_run(tmp_path / "split")
    # resumed in a new process, as after a crash: nothing but the run folder carries over from the first two epochs
    resumed = run_cli("resume", run, "--epochs", "4")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = history(only_run(tmp_path / "straight")), history(run)
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for row_a, row_b in zip(a, b, strict=True):
        for key in ("loss", "val_loss", "accuracy", "learning_rate"):
            assert row_b[key] == pytest.approx(row_a[key], abs=1e-5), (key, row_a, row_b)
    for w_a, w_b in zip(weights(only_run(tmp_path / "straight")), weights(run), strict=True):
        np.testing.assert_allclose(w_a, w_b, atol=1e-5)
    state_a = json.loads((only_run(tmp_path / "straight") / "state.json").read_text())
    state_b = json.loads((run / "state.json").read_text())
    assert state_b["best"]["epoch"] == state_a["best"]["epoch"]
    assert state_b["best"]["value"] == pytest.approx(state_a["best"]["value"], abs=1e-5)
    for name in ("early_stopping", "reduce_lr_on_plateau"):
        for key, value in state_a["callbacks"][name].items():
            assert state_b["callbacks"][name][key] == pytest.approx(value, abs=1e-5), (name, key)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["resumed"][0]["at_epoch"] == 2


def test_early_stopping_patience_counts_across_resume(write_config, tmp_path):
    # min_delta is so large that no epoch after the first counts as an improvement: a straight run stops after
    # epoch 3 (patience 2); stopped after epoch 2 and resumed, it must stop after epoch 3 too, not 4.
    config = tiny_config(train={"epochs": 2, "batch_size": 16},
                         callbacks={"early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 100.0}})
    assert run_here("train", write_config(config), "--output-dir", tmp_path).returncode == 0
    run = only_run(tmp_path)
    assert json.loads((run / "state.json").read_text())["callbacks"]["early_stopping"]["wait"] == 1
    result = run_here("resume", run, "--epochs", "6")
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "stopped_early"
    assert state["epochs_completed"] == 3


def test_completed_run_says_so(write_config, tmp_path):
    path = write_config(tiny_config(train={"epochs": 1, "batch_size": 16}))
    assert run_here("train", path, "--output-dir", tmp_path).returncode == 0
    result = run_here("resume", only_run(tmp_path))
    assert result.returncode == 0
    assert "nothing to resume" in result.stdout


def _start_long_training(write_config, tmp_path):
    config = tiny_config(train={"epochs": 200, "batch_size": 16})
    config["dataset"]["num_samples"] = 400
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # A shell without job control starts background jobs with SIGINT ignored, and children inherit that;
    # give the training process the default disposition, as in a terminal, so Ctrl-C reaches it.
    process = subprocess.Popen([sys.executable, "-m", "cnnrun", "train", str(write_config(config)),
                                "--output-dir", str(tmp_path)], cwd=PROJECT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:
        states = list(tmp_path.glob("*/*/state.json"))
        if states and json.loads(states[0].read_text()).get("epochs_completed", 0) >= 2:
            return process, states[0].parent
        time.sleep(0.2)
    process.kill()
    pytest.fail("training did not reach epoch 2 in time")


def test_sigkill_mid_epoch_loses_at_most_that_epoch(write_config, tmp_path):
    process, run = _start_long_training(write_config, tmp_path)
    time.sleep(0.3)  # somewhere inside a later epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = json.loads((run / "state.json").read_text())
    steps_per_epoch = -(-300 // 16)  # 400 shapes, the last quarter held out for validation
    # last.keras is the truth: state.json is written just before it, so a kill between the two leaves state one ahead
    saved = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    done = int(saved.optimizer.iterations.numpy()) // steps_per_epoch
    assert before["epochs_completed"] in (done, done + 1)
    assert before["status"] == "running"  # it never got to say otherwise
    result = run_here("resume", run, "--epochs", str(done + 2))
    assert result.returncode == 0, result.stderr[-2000:]
    epochs = [int(r["epoch"]) for r in history(run)]
    assert epochs == list(range(1, done + 3))  # each epoch exactly once
    assert json.loads((run / "meta.json").read_text())["resumed"][-1]["at_epoch"] == done  # not from epoch 0
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "completed" and state["epochs_completed"] == done + 2
    model = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    assert int(model.optimizer.iterations.numpy()) == (done + 2) * steps_per_epoch
    # best.keras is only ever replaced by a better model: val_loss never goes up
    assert state["best"]["value"] <= before["best"]["value"]
    assert state["best"]["value"] == pytest.approx(min(r["val_loss"] for r in history(run)))


def test_ctrl_c_marks_the_run_interrupted(write_config, tmp_path):
    process, run = _start_long_training(write_config, tmp_path)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted"
    assert len(history(run)) == state["epochs_completed"]
    evaluated = run_here("evaluate", run, "--checkpoint", "last")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A run that finished one epoch and was interrupted before its second."""
    folder = tmp_path_factory.mktemp("interrupted")
    path = folder / "tiny.yaml"
    path.write_text(json.dumps(tiny_config(train={"epochs": 1, "batch_size": 16})))
    assert run_here("train", path, "--output-dir", folder).returncode == 0
    run = only_run(folder)
    state = json.loads((run / "state.json").read_text())
    state["status"] = "interrupted"
    (run / "state.json").write_text(json.dumps(state))
    return run


def _fingerprint(run):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}


# A damaged or missing checkpoint is no longer a dead end: resume goes on from the other one, or from the first
# epoch (tests/test_run_folder_resume.py). What resume cannot go on without is reported and left alone:
@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "config.yaml").unlink(), "config.yaml: missing"),
    (lambda run: (run / "state.json").write_text("{"), "state.json"),
    (lambda run: (run / "state.json").write_text(json.dumps({**json.loads((run / "state.json").read_text()),
                                                             "scored": True})), "state.json"),
    (lambda run: (run / "dataset.json").write_text('{"class_names": "abc"}'), "dataset.json: "),
    (lambda run: (run / "meta.json").write_text('{"started": "last tuesday"}'), "meta.json: started"),
    (lambda run: (run / "splits.json").write_text('{"train": []}'), "splits.json: "),
    (lambda run: (run / "history.csv").write_text("epoch,loss\n1,0.5\n3,0.4\n"), "history.csv: damaged"),
])
def test_damaged_run_folder_is_reported_and_left_alone(one_epoch_run, tmp_path, damage, message):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    damage(run)
    before = _fingerprint(run)
    result = run_here("resume", run, "--epochs", "3")
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert _fingerprint(run) == before
