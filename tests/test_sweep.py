"""`cnnrun sweep`: an Optuna study over real Trainers, every trial a run folder; resume, workers, pruning."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT, run_here, tiny_config
from tests.test_errors import assert_user_error

LR, FILTERS = "compile.optimizer.learning_rate", "model.layers.0.Conv2D.filters"
GRID = {(0.01, 2), (0.01, 4), (1e-9, 2), (1e-9, 4)}


def sweep_config(folder: Path, name: str = "grid", epochs: int = 2, **sweep) -> dict:
    """A 4-point grid on the tiny experiment: a learning rate that trains, one that cannot, two widths."""
    config = tiny_config(name=name, compile={"optimizer": {"name": "adam", "learning_rate": 0.01}},
                         train={"epochs": epochs, "batch_size": 16, "verbose": 0},
                         output={"dir": str(folder / "outputs"), "plots": False, "report": False},
                         callbacks={"tensorboard": True})  # each trial's HParams session goes there
    config["sweep"] = {"method": "grid", "params": {LR: {"choice": [0.01, 1e-9]}, FILTERS: {"choice": [2, 4]}},
                       "objective": {"metric": "val_loss", "mode": "min"}, "pruner": "median", **sweep}
    return config


def write(folder: Path, config: dict, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def trials_csv(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def done(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in rows if row["status"] in ("complete", "pruned")]


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    """One 4-trial grid sweep with median pruning, trained in this process."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write(folder, sweep_config(folder))
    result = run_here("sweep", path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return path, folder / "outputs" / "grid", result


@pytest.mark.slow
def test_a_grid_sweep_trains_every_combination_once_into_its_own_run_folder(grid_sweep):
    _, sweep_dir, result = grid_sweep
    rows = trials_csv(sweep_dir)
    assert [row["trial"] for row in rows] == ["0", "1", "2", "3"]
    assert {(float(row[LR]), int(row[FILTERS])) for row in rows} == GRID
    for row in rows:
        run = Path(row["run_folder"])
        assert run.parent.parent == sweep_dir and run.parent.name == f"trial-{int(row['trial']):03d}"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["compile"]["optimizer"]["learning_rate"] == float(row[LR])
        assert config["model"]["layers"][0]["Conv2D"]["filters"] == int(row[FILTERS])
        assert config["seed"] == 3 + int(row["trial"])  # the sweep's seed plus the trial's number
        history = [float(r["val_loss"]) for r in csv.DictReader((run / "history.csv").open())]
        assert float(row["val_loss"]) == min(history)  # the objective: the best epoch's value
    for name in ("study.journal", "sweep.json", "optimization_history.png", "param_importances.png"):
        assert (sweep_dir / name).is_file(), name
    best = min(done(rows), key=lambda row: float(row["val_loss"]))
    assert f"best trial     │ {best['trial']}: val_loss {float(best['val_loss']):.4f}" in result.stdout


@pytest.mark.slow
def test_a_trial_that_does_worse_than_the_median_is_marked_pruned(grid_sweep):
    _, sweep_dir, _ = grid_sweep
    rows = {row["trial"]: row for row in trials_csv(sweep_dir)}
    assert rows["0"]["status"] == "complete"  # the first trial is never pruned (startup_trials: 1)
    hopeless = [row for row in rows.values() if float(row[LR]) == 1e-9]  # cannot learn: worse than the median
    for row in hopeless:
        assert row["status"] == "pruned"
        run = Path(row["run_folder"])
        state = json.loads((run / "state.json").read_text())
        assert (state["status"], state["epochs_completed"], state["epochs_planned"]) == ("pruned", 1, 2)
    run = Path(hopeless[0]["run_folder"])  # a pruned run is still a run: resume leaves it, evaluate judges it
    assert "is pruned after 1 epoch; nothing to resume" in run_here("resume", run).stdout
    assert run_here("evaluate", run).returncode == 0
    assert json.loads((run / "eval" / "best_test_metrics.json").read_text())["examples"] == 40


@pytest.mark.slow
def test_each_trial_writes_its_params_for_the_tensorboard_hparams_view(grid_sweep):
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, sweep_dir, _ = grid_sweep
    row = trials_csv(sweep_dir)[1]
    (events,) = (Path(row["run_folder"]) / "tensorboard").glob("events.out.tfevents.*")
    starts = [value for event in tf.compat.v1.train.summary_iterator(str(events)) for value in event.summary.value
              if value.tag == "_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(starts[0].metadata.plugin_data.content)
    hparams = data.session_start_info.hparams
    assert (hparams[LR].number_value, hparams[FILTERS].number_value) == (float(row[LR]), int(row[FILTERS]))
    assert data.session_start_info.group_name == "trial-001"


@pytest.mark.slow
def test_running_a_finished_sweep_again_trains_nothing_more(grid_sweep):
    path, sweep_dir, _ = grid_sweep
    folders = sorted(sweep_dir.glob("trial-*/*"))
    result = run_here("sweep", path)
    assert result.returncode == 0, result.stderr
    assert "cnnrun train" not in result.stdout
    assert sorted(sweep_dir.glob("trial-*/*")) == folders and len(trials_csv(sweep_dir)) == 4


@pytest.mark.slow
def test_a_killed_two_worker_sweep_resumes_to_exactly_the_planned_trials(tmp_path):
    """Two workers share one journal; both are killed mid-trial; the same command again ends with each grid
    point finished once, the killed trials failed and retried, no run folder written twice."""
    config = sweep_config(tmp_path, name="killed", epochs=3, pruner="none")
    # about the journal and its retries: no TensorBoard, no test split to score (a second less a trial)
    config["callbacks"]["tensorboard"], config["dataset"]["test_samples"] = False, 0
    path = write(tmp_path, config)
    sweep_dir = tmp_path / "outputs" / "killed"
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "cnnrun", "sweep", str(path), "--workers", "2"], cwd=PROJECT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            states = [json.loads(p.read_text())["status"] for p in sweep_dir.glob("trial-*/*/state.json")
                      if (p.parent / "history.csv").is_file()]
            if "completed" in states and "running" in states:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the command and both workers, mid-trial
        process.wait()
    killed = {p.parent for p in sweep_dir.glob("trial-*/*/state.json") if "running" in p.read_text()}
    assert killed

    result = run_here("sweep", path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    rows = trials_csv(sweep_dir)
    finished = done(rows)
    assert len(finished) == 4 and {(float(r[LR]), int(r[FILTERS])) for r in finished} == GRID, rows
    failed = [row for row in rows if row["status"] == "fail"]
    assert killed <= {Path(row["run_folder"]) for row in failed}  # (a trial killed after scoring is retried too)
    assert sorted(int(row["retry_of"]) for row in rows if row["retry_of"]) == sorted(int(r["trial"]) for r in failed)
    folders = [Path(row["run_folder"]) for row in rows if row["run_folder"]]  # none: killed before it had one
    assert len(set(folders)) == len(folders) and set(folders) == set(sweep_dir.glob("trial-*/*"))
    for folder in killed:
        assert json.loads((folder / "state.json").read_text())["status"] == "interrupted"
    before = {row["worker"] for row in rows if not row["retry_of"] and row["worker"] != rows[-1]["worker"]}
    assert len(before) >= 2  # both workers took trials from the one study


# ---------------------------------------------------------------- bad sweep files: one line, before any trial


@pytest.mark.parametrize("change, fragments", [
    ({"params": {"train.epoch": {"choice": [1, 2]}}}, ["sweep.params: 'train.epoch' is not a key",
                                                       "did you mean 'train.epochs'", "train takes: epochs"]),
    ({"params": {"trian.epochs": {"choice": [1, 2]}}}, ["(did you mean 'train.epochs'?)",
                                                        "the top level takes: name"]),
    ({"params": {"model.layers.0.Conv2d.filters": {"choice": [1, 2]}}},
     ["(did you mean 'model.layers.0.Conv2D.filters'?)", "model.layers.0 takes: Conv2D"]),
    ({"params": {"model.layers.7.Dense.units": {"choice": [1, 2]}}},
     ["(did you mean 'model.layers.3.Dense.units'?)", "model.layers takes: items 0 to 3"]),
    ({"params": {"train.epochs": {"choice": []}}}, ["sweep.params.train.epochs.choice", "at least 1"]),
    ({"params": {"train.epochs": {"int": ["a", 3]}}}, ["sweep.params.train.epochs.int"]),
    ({"params": {"train.epochs": {"int": [3, 1]}}}, ["lo < hi"]),
    ({"params": {LR: {"float": [0.001, 0.1]}}}, ["float range without `step`"]),
    ({"params": {LR: {"float": [0.0, 0.1], "log": True}}, "method": "random", "trials": 2},
     ["log: true needs lo > 0"]),
    ({"params": {"train.batch_size": {"choice": [16, 0]}}}, ["sweep.params (train.batch_size=0)",
                                                            "train.batch_size"]),
    ({"method": "tpe"}, ["method tpe needs `trials:`"]),
    ({"storage": "redis://localhost"}, ["storage: an RDB URL"]),
])
def test_a_bad_sweep_section_is_one_line_before_any_trial(tmp_path, change, fragments):
    config = sweep_config(tmp_path)
    config["sweep"].update(change)
    path = write(tmp_path, config)
    assert_user_error(run_here("sweep", path), str(path), *fragments)
    assert not (tmp_path / "outputs").exists()


def test_an_objective_the_run_does_not_log_is_refused(tmp_path):
    config = sweep_config(tmp_path, objective={"metric": "val_auc"})
    assert_user_error(run_here("sweep", write(tmp_path, config)), "sweep.objective.metric", "'val_auc' is not logged")


def test_a_storage_that_cannot_be_reached_is_refused_before_any_trial(tmp_path):
    config = sweep_config(tmp_path, storage=f"sqlite:///{tmp_path}/no/such/folder/study.db")
    assert_user_error(run_here("sweep", write(tmp_path, config)), "sweep.storage: cannot open sqlite:///")
    assert not (tmp_path / "outputs").exists()  # not even an empty sweep folder


def test_a_file_without_a_sweep_section_is_refused(tmp_path):
    path = write(tmp_path, tiny_config())
    assert_user_error(run_here("sweep", path), str(path), "`sweep:` section")


def test_a_grid_point_taken_by_a_process_killed_before_it_drew_it_is_retried_with_the_same_point(tmp_path):
    """The race the two-worker kill test once hit: a worker pops a queued grid point (the trial is RUNNING with no
    params yet) and is killed; the retry must train that point, not a random one (which repeats another)."""
    import optuna

    from cnnrun.config.sweep import load_sweep
    from cnnrun.training.sweep import open_study, prepare_study, with_objective

    sweep = with_objective(load_sweep(write(tmp_path, sweep_config(tmp_path, pruner="none"))))
    study = open_study(sweep)
    prepare_study(sweep, study)
    taken = study.ask()  # what optimize() does first: the first queued point, not yet drawn
    assert taken.params == {}
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    taken.set_user_attr("worker", {"pid": int(ended.stdout), "host": socket.gethostname(), "start": None})
    prepare_study(sweep, open_study(sweep))  # the next command: the dead trial is failed and queued again
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    points = [(t.system_attrs["fixed_params"][LR], t.system_attrs["fixed_params"][FILTERS]) for t in waiting]
    assert sorted(points) == sorted(GRID)  # the three untouched points and the retried first one
    retry = next(t for t in waiting if t.user_attrs.get("retry_of") == taken.number)
    assert retry.system_attrs["fixed_params"] == {LR: 0.01, FILTERS: 2}
