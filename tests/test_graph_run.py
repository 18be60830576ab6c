"""A graph trains, resumes from its checkpoint, is evaluated and trains under MirroredStrategy like any model: the
run folder holds a functional Keras model whose layers keep the config's names."""

import json

import keras
import pytest

from tests.conftest import run_here, tiny_config

pytestmark = pytest.mark.slow

RESIDUAL_NET = {
    "blocks": {"res": [
        {"Conv2D": {"filters": "${f}", "kernel_size": 3, "padding": "same", "activation": "relu"}},
        {"Conv2D": {"filters": "${f}", "kernel_size": 3, "padding": "same"}, "id": "body"},
        {"Add": {}, "inputs": ["in", "body"]},
        "ReLU",
    ]},
    "layers": [
        {"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same"}},
        {"block": "res", "args": {"f": 4}, "repeat": 2},
        {"MaxPooling2D": {"pool_size": 2}},
        "Flatten",
        {"Dense": {"units": "${num_classes}", "activation": "softmax"}},
    ],
}


def test_a_graph_trains_resumes_and_evaluates(write_config, tmp_path):
    config = tiny_config(model=RESIDUAL_NET, train={"epochs": 1, "batch_size": 16},
                         augmentation={"horizontal_flip": True, "placement": "model"})
    trained = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]

    resumed = run_here("resume", run, "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 2

    evaluated = run_here("evaluate", run, "--checkpoint", "last")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert (run / "eval").is_dir()

    model = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    assert not isinstance(model, keras.Sequential)
    assert {"augmentation", "res1_body", "res2_body"} <= {layer.name for layer in model.layers}
    assert type(model.layers[1]).__name__ == "Sequential"  # the augmentation layers come first, as for chains
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 2


def test_a_graph_trains_under_mirrored_strategy_on_two_cpu_devices(write_config, tmp_path):
    config = tiny_config(model=RESIDUAL_NET, train={"epochs": 1, "batch_size": 16, "distribution": "mirrored",
                                                    "devices": ["/cpu:0", "/cpu:1"]})
    trained = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")  # (conftest: two CPUs)
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]
    assert json.loads((run / "state.json").read_text())["status"] == "completed"
    assert json.loads((run / "meta.json").read_text())["distribution"] == {
        "backend": "tensorflow", "strategy": "mirrored", "replicas": 2, "processes": 1, "devices": ["/cpu:0", "/cpu:1"]}
    model = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    assert "res2_body" in {layer.name for layer in model.layers}
