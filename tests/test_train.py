"""A real, short training on the shapes set, checked file by file against the run-folder contract."""

import csv
import json

import keras
import numpy as np
import pytest
import yaml

from tests.conftest import run_cli, run_here, tiny_config

pytestmark = pytest.mark.slow


def test_train_writes_the_whole_run_folder(write_config, tmp_path):
    config = tiny_config(callbacks={"checkpoint": {"monitor": "val_acc"},
                                    "reduce_lr_on_plateau": {"patience": 1, "factor": 0.5}},
                         output={"plots": True, "report": False})  # cnnrun's default: plots on
    result = run_cli("train", write_config(config), "--output-dir", tmp_path / "runs", "--set", "train.epochs=3",
                     columns=None)  # a pipe without COLUMNS: Keras would fit its summary to 80 columns
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # no start-up chatter or library warnings on the terminal
    (run,) = (tmp_path / "runs" / "tiny").iterdir()
    assert str(run) in result.stdout.replace("\n", "")

    names = {p.relative_to(run).as_posix() for p in run.rglob("*")}
    for expected in ["config.yaml", "meta.json", "state.json", "summary.txt", "history.csv", "history.png",
                     "checkpoints/best.keras", "checkpoints/last.keras", "scores.json", "dataset.json"]:
        assert expected in names
    assert not [n for n in names if n.endswith(".tmp") or "partial" in n]

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 3

    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "completed"
    assert state["epochs_completed"] == state["epochs_planned"] == 3
    assert state["best"]["monitor"] == "val_accuracy"

    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    best_value = max(float(r["val_accuracy"]) for r in rows)
    assert state["best"]["value"] == pytest.approx(best_value)

    meta = json.loads((run / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["versions"]["keras"] == keras.__version__ and meta["ended"]

    scores = json.loads((run / "scores.json").read_text())
    assert set(scores) == {"best", "last"} and set(scores["best"]) == {"loss", "accuracy", "balanced_accuracy"}
    last = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    assert last.optimizer.iterations.numpy() == 3 * np.ceil(90 / 16)
    summary = (run / "summary.txt").read_text()
    assert "Total params" in summary
    header = next(line for line in summary.splitlines() if "Param #" in line)  # run in a pipe: 80 columns
    assert header.split("┃")[-2].strip() == "Trainable" and "…" not in header


def test_early_stopping_marks_the_run(write_config, tmp_path):
    config = tiny_config(train={"epochs": 6, "batch_size": 16},
                         callbacks={"early_stopping": {"monitor": "val_loss", "patience": 0, "min_delta": 10.0}})
    result = run_here("train", write_config(config), "--output-dir", tmp_path, "--name", "es")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "es").iterdir()
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "stopped_early"
    assert state["epochs_completed"] < 6


def test_sparse_logits_without_validation(write_config, tmp_path):
    layers = tiny_config()["model"]["layers"][:-1] + [{"Dense": {"units": "${num_classes}"}}]
    config = tiny_config(
        dataset={"name": "shapes", "image_size": 16, "num_samples": 60, "test_samples": 0, "label_mode": "sparse"},
        model={"layers": layers},
        compile={"optimizer": "rmsprop", "loss": {"name": "sparse_categorical_crossentropy", "from_logits": True},
                 "metrics": ["acc"]},
        callbacks={"checkpoint": {"monitor": "val_acc"}}, output={"plots": False, "report": False})
    result = run_here("train", write_config(config), "--output-dir", tmp_path, "--set", "train.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "tiny").iterdir()
    state = json.loads((run / "state.json").read_text())
    assert state["best"]["monitor"] == "accuracy"  # no validation data: val_ is dropped
    assert not (run / "scores.json").exists() and not (run / "history.png").exists()
    assert "no test split" in result.stdout
    assert "none: every picture trains; best.keras is chosen by the training accuracy, not on held-out pictures" \
        in result.stdout  # the header says it plainly
    last = run_here("train", write_config(config), "--output-dir", tmp_path, "--set", "train.epochs=1",
                    "--set", "callbacks.checkpoint.save_best_only=false", "--name", "last")
    assert "none: every picture trains; best.keras is the last epoch's (save_best_only: false)" in last.stdout


def test_seed_zero_trains(write_config, tmp_path):
    # TensorFlow refused its global seed 0 with the per-epoch shuffle's tensor seed ("symbolic tf.Tensor as a
    # Python bool") before any epoch ran
    config = tiny_config(seed=0, train={"epochs": 1, "batch_size": 16}, output={"plots": False, "report": False})
    result = run_here("train", write_config(config), "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
