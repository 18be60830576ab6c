"""Tracking: TensorBoard on by default, MLflow's copy of a run read back through MlflowClient."""

import csv
import json
import sys

import pytest
import yaml

from cnnrun.config import load_experiment
from tests.conftest import only_run, run_here, tiny_config
from tests.test_errors import assert_user_error


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny run logged to a SQLite MLflow store, then resumed for one more epoch; test-time augmentation on,
    so scores.json also holds the list of its views beside the scores."""
    folder = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{folder}/mlflow.db"
    config = tiny_config(tracking={"mlflow": {"uri": uri, "experiment": "tiny-tracked"}},
                         train={"epochs": 2, "batch_size": 16, "verbose": 0}, output={"plots": False, "report": False},
                         evaluate={"tta": ["flip"]})
    del config["callbacks"]  # TensorBoard as a user gets it: on by default
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_here("train", path, "--output-dir", folder / "outputs")
    assert result.returncode == 0, result.stderr
    run = only_run(folder / "outputs")
    first_id = json.loads((run / "mlflow.json").read_text())["run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    first = {"params": client.get_run(first_id).data.params, "status": client.get_run(first_id).info.status,
             "scores": json.loads((run / "scores.json").read_text())}
    result = run_here("resume", run, "--epochs", "3")
    assert result.returncode == 0, result.stderr
    return run, client, first_id, first


def rows(run) -> list[dict[str, str]]:
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_mlflow_holds_every_epoch_of_history_csv_through_a_resume(tracked):
    run, client, run_id, _ = tracked
    history = rows(run)
    assert len(history) == 3
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert logged == [(int(row["epoch"]), float(row[key])) for row in history], key
    assert json.loads((run / "mlflow.json").read_text())["run_id"] == run_id  # resume went on in the same run
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny-tracked"]
    assert len(client.search_runs([experiment.experiment_id])) == 1


@pytest.mark.slow
def test_mlflow_holds_the_config_as_params_the_test_scores_the_files_and_tags(tracked):
    run, client, run_id, first = tracked
    assert first["status"] == "FINISHED"
    params = first["params"]
    assert (params["train.epochs"], params["seed"], params["model.layers.0.Conv2D.filters"]) == ("2", "3", "4")
    assert params["dataset.name"] == "shapes" and params["callbacks.tensorboard.update_freq"] == "epoch"
    mlflow_run = client.get_run(run_id)
    scores = json.loads((run / "scores.json").read_text())
    assert scores != first["scores"]  # scored again after the resume: the latest values are MLflow's too
    assert scores["tta"] == ["flip"] and "tta_accuracy" in scores["best"]
    for which in ("best", "last"):
        for key, value in scores[which].items():
            assert mlflow_run.data.metrics[f"test_{which}_{key}"] == value
    tags = mlflow_run.data.tags
    assert (tags["cnnrun.status"], tags["cnnrun.config_name"], tags["cnnrun.version"]) == ("completed", "tiny",
                                                                                            "0.1.0")
    assert tags["cnnrun.run_folder"] == str(run) and mlflow_run.info.status == "FINISHED"
    listed = {a.path for a in client.list_artifacts(run_id)} | \
        {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"history.csv", "state.json", "config.yaml", "checkpoints/best.keras", "checkpoints/last.keras"} <= listed


@pytest.mark.slow
def test_tensorboard_is_on_by_default_with_scalars_learning_rate_and_the_model_graph(tracked):
    import tensorflow as tf

    run, *_ = tracked
    tags = set()
    for events in (run / "tensorboard").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            tags |= {value.tag for value in event.summary.value}
    # `keras`: the model's graph as Keras writes it (TensorBoard's Graphs tab, "conceptual graph")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "keras"} <= tags


def test_tensorboard_false_turns_it_off(write_config, tmp_path):
    from cnnrun.run_folder.folder import Run
    from cnnrun.training.callbacks import configured_callbacks

    default = tiny_config()
    del default["callbacks"]  # as a user writes it: no callbacks section
    on = load_experiment(write_config(default))
    off = load_experiment(write_config(tiny_config(callbacks={"tensorboard": False})))
    (board,) = configured_callbacks(on, Run(tmp_path)).callbacks
    assert type(board).__name__ == "TensorBoard" and board.log_dir == str(tmp_path / "tensorboard")
    assert off.callbacks.tensorboard is None and configured_callbacks(off, Run(tmp_path)).callbacks == []


def test_mlflow_tracking_uri_in_the_environment_turns_tracking_on(write_config, monkeypatch):
    from cnnrun.training.tracking import tracking_uri

    experiment = load_experiment(write_config(tiny_config()))
    assert tracking_uri(experiment) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert tracking_uri(experiment) == "sqlite:///elsewhere.db"


def test_mlflow_missing_when_asked_for_names_the_extra_before_any_data(write_config, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed: `import mlflow` fails
    config = tiny_config(tracking={"mlflow": {"uri": f"sqlite:///{tmp_path}/m.db"}})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "outputs")
    assert_user_error(result, "tracking.mlflow", "pip install 'cnnrun[tracking]'")
    assert not (tmp_path / "outputs").exists()


def test_the_configs_mlflow_uri_wins_over_the_environments(write_config, monkeypatch):
    from cnnrun.training.tracking import tracking_uri

    experiment = load_experiment(write_config(tiny_config(tracking={"mlflow": {"uri": "sqlite:///mine.db"}})))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert tracking_uri(experiment) == "sqlite:///mine.db"


def test_a_sqlite_stores_artifacts_go_beside_its_database_file(tmp_path, monkeypatch):
    from cnnrun.training.tracking import _artifact_location

    assert _artifact_location(f"sqlite:///{tmp_path}/db/mlflow.db") == (tmp_path / "db" / "mlruns").as_uri()
    monkeypatch.chdir(tmp_path)  # a relative database path: beside it, from the current folder
    assert _artifact_location("sqlite:///mlflow.db") == (tmp_path / "mlruns").as_uri()
    assert _artifact_location("http://host:5000") is None


def test_a_windows_drive_path_is_a_local_store_not_an_unknown_scheme():
    from cnnrun.training.tracking import check_store

    check_store("C:/experiments/mlruns")  # one letter before the colon: a drive, which MLflow makes when used
