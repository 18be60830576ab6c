"""Sweeps: what the suite let through (the objective of the best epoch, `log: true`), the samplers, `trials`,
`timeout` and `step`, the shipped quickstart sweep, a point Keras refuses, and the seed of a retried trial."""

import csv
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from cnnrun.config.sweep import SweepConfig, load_sweep
from tests.conftest import PROJECT, history, run_here
from tests.test_errors import assert_user_error
from tests.test_sweep import FILTERS, LR, done, sweep_config, trials_csv, write

QUICKSTART_SWEEP = PROJECT / "configs" / "quickstart_sweep.yaml"
QUICK_FILTERS = "model.layers.0.repeat.layers.0.Conv2D.filters"


def journal_study(sweep_dir: Path, name: str) -> optuna.Study:
    """The sweep's study, read back from its journal file with Optuna's own storage."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def dead_pid() -> int:
    """The id of a process that has ended."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(ended.stdout)


def kill(trial) -> None:
    """Mark a trial as taken by a process that has died, as one killed mid-trial leaves it."""
    trial.set_user_attr("worker", {"pid": dead_pid(), "host": socket.gethostname(), "start": None})


# ---------------------------------------------------------------- spaces: Optuna's own distributions


def suggested(space: dict, draws: int = 30) -> tuple[list, set]:
    """Values a space suggests on Optuna trials of a random-sampled study, and the distributions they were
    drawn from, as Optuna records them on each trial."""
    config = SweepConfig.model_validate({"params": {"p": space}, "method": "random", "trials": 1})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values, distributions = [], set()
    for _ in range(draws):
        trial = study.ask()
        values.append(config.params["p"].suggest(trial, "p"))
        distributions.add(trial.distributions["p"])
    return values, distributions


def test_log_true_draws_from_a_log_uniform_distribution():
    values, distributions = suggested({"float": [1e-5, 1e-1], "log": True})
    assert distributions == {FloatDistribution(1e-5, 1e-1, log=True)}
    assert all(1e-5 <= v <= 1e-1 for v in values)
    values, distributions = suggested({"int": [1, 1024], "log": True})
    assert distributions == {IntDistribution(1, 1024, log=True)}
    _, distributions = suggested({"float": [1e-5, 1e-1]})
    assert distributions == {FloatDistribution(1e-5, 1e-1, log=False)}


def test_step_draws_on_the_steps_from_lo():
    values, distributions = suggested({"int": [2, 10], "step": 4})
    assert distributions == {IntDistribution(2, 10, step=4)} and set(values) <= {2, 6, 10}
    values, distributions = suggested({"float": [0.1, 0.5], "step": 0.2})
    assert distributions == {FloatDistribution(0.1, 0.5, step=0.2)}
    assert {round(v, 9) for v in values} <= {0.1, 0.3, 0.5}
    values, distributions = suggested({"choice": [[3, 3], [5, 5]]})  # lists travel as JSON text
    assert distributions == {CategoricalDistribution(["[3, 3]", "[5, 5]"])} and {tuple(v) for v in values} == {
        (3, 3), (5, 5)}


def test_each_method_gets_its_sampler(tmp_path):
    from cnnrun.training.sweep import open_study, with_objective

    kinds = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
    for method, kind in kinds.items():
        config = sweep_config(tmp_path, name=method, method=method, trials=2)
        study = open_study(with_objective(load_sweep(write(tmp_path, config, f"{method}.yaml"))))
        assert type(study.sampler) is kind


# ---------------------------------------------------------------- sweeps that train


@pytest.mark.slow
def test_the_objective_is_the_best_epochs_value_not_the_last(tmp_path):
    # judged by the largest training loss: the first epoch's, since the loss falls
    config = sweep_config(tmp_path, name="best", epochs=3, pruner="none", objective={"metric": "loss", "mode": "max"},
                          params={LR: {"choice": [0.01]}, FILTERS: {"choice": [4]}})
    result = run_here("sweep", write(tmp_path, config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    sweep_dir = tmp_path / "outputs" / "best"
    (row,) = trials_csv(sweep_dir)
    losses = [epoch["loss"] for epoch in history(Path(row["run_folder"]))]
    assert len(losses) == 3 and max(losses) > losses[-1]
    assert float(row["loss"]) == max(losses)
    assert journal_study(sweep_dir, "best").best_value == max(losses)


@pytest.mark.slow
def test_a_random_sweep_draws_log_uniform_and_stepped_params_and_a_resumed_one_draws_new_ones(tmp_path):
    params = {LR: {"float": [1e-4, 1e-1], "log": True}, FILTERS: {"int": [2, 6], "step": 2}}
    config = sweep_config(tmp_path, name="random", epochs=1, pruner="none", method="random", trials=2, params=params)
    path = write(tmp_path, config)
    assert run_here("sweep", path).returncode == 0
    sweep_dir = tmp_path / "outputs" / "random"
    assert len(done(trials_csv(sweep_dir))) == 2
    config["sweep"]["trials"] = 3  # the same sweep, on to 3 trials
    result = run_here("sweep", write(tmp_path, config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    rows = trials_csv(sweep_dir)
    assert [row["status"] for row in rows] == ["complete"] * 3
    assert [int(row["seed"]) for row in rows] == [3, 4, 5]
    study = journal_study(sweep_dir, "random")
    for trial in study.trials:
        assert trial.distributions == {LR: FloatDistribution(1e-4, 1e-1, log=True),
                                       FILTERS: IntDistribution(2, 6, step=2)}
    draws = [trial.params for trial in study.trials]
    assert draws[2] not in draws[:2]  # a resumed sampler does not draw the first process's params again
    for row in rows:
        trained = yaml.safe_load((Path(row["run_folder"]) / "config.yaml").read_text())
        assert trained["compile"]["optimizer"]["learning_rate"] == float(row[LR])
        assert trained["model"]["layers"][0]["Conv2D"]["filters"] == int(row[FILTERS])


@pytest.mark.slow
def test_a_tpe_sweep_stops_starting_trials_after_its_timeout(tmp_path):
    params = {LR: {"float": [0.001, 0.01], "step": 0.003}, FILTERS: {"choice": [2, 4]}}
    config = sweep_config(tmp_path, name="tpe", epochs=1, pruner="none", method="tpe", trials=3, timeout=0.5,
                          params=params)
    result = run_here("sweep", write(tmp_path, config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "timeout: 0.5 s passed; no new trial starts" in result.stdout
    (row,) = trials_csv(tmp_path / "outputs" / "tpe")  # the first trial took longer than the timeout
    assert row["status"] == "complete" and round(float(row[LR]), 9) in {0.001, 0.004, 0.007, 0.01}
    (trial,) = journal_study(tmp_path / "outputs" / "tpe", "tpe").trials
    assert trial.distributions[LR] == FloatDistribution(0.001, 0.01, step=0.003)


@pytest.mark.slow
def test_a_retried_trial_keeps_the_seed_of_the_trial_it_retries(tmp_path):
    """Trial 0 and then its retry are killed: the retry of the retry still trains with trial 0's seed, as an
    uninterrupted sweep trains that point, and every point is trained once with its own seed."""
    from cnnrun.training.sweep import open_study, prepare_study, with_objective

    config = sweep_config(tmp_path, name="retried", epochs=1, pruner="none",
                          params={LR: {"choice": [0.01]}, FILTERS: {"choice": [2, 4]}})
    path = write(tmp_path, config)
    sweep = with_objective(load_sweep(path))
    study = open_study(sweep)
    prepare_study(sweep, study)  # the grid's points: trials 0 (filters 2, seed 3) and 1 (filters 4, seed 4)
    kill(study.ask())  # trial 0
    prepare_study(sweep, open_study(sweep))  # trial 2 retries trial 0
    kill(study.ask())  # trial 1
    kill(study.ask())  # trial 2
    prepare_study(sweep, open_study(sweep))  # trial 3 retries 1, trial 4 retries 2
    waiting = {t.number: t.user_attrs for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))}
    assert waiting == {3: {"retry_of": 1, "seed": 4}, 4: {"retry_of": 2, "seed": 3}}

    result = run_here("sweep", path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    finished = {int(row[FILTERS]): row for row in done(trials_csv(tmp_path / "outputs" / "retried"))}
    assert {filters: int(row["seed"]) for filters, row in finished.items()} == {2: 3, 4: 4}
    assert {filters: row["trial"] for filters, row in finished.items()} == {2: "4", 4: "3"}
    for row in finished.values():
        assert yaml.safe_load((Path(row["run_folder"]) / "config.yaml").read_text())["seed"] == int(row["seed"])


# ---------------------------------------------------------------- checked before any trial


@pytest.mark.parametrize("sweep, point", [
    ({"params": {LR: {"choice": [0.01]}, FILTERS: {"choice": [2, -3]}}}, f"{LR}=0.01, {FILTERS}=-3"),
    ({"params": {FILTERS: {"int": [-3, 4]}}, "method": "random", "trials": 2}, f"{FILTERS}=-3"),
])
def test_a_point_keras_refuses_is_one_line_naming_it_before_any_trial(tmp_path, sweep, point):
    config = sweep_config(tmp_path, name="refused")
    config["sweep"] |= sweep
    path = write(tmp_path, config)
    assert_user_error(run_here("sweep", path), str(path), f"sweep.params ({point})", "filters",
                      "strictly positive")
    assert not (tmp_path / "outputs").exists()  # no study, no sweep folder, no trial
    assert_user_error(run_here("inspect", path), f"sweep.params ({point})")  # inspect builds every point too


# ---------------------------------------------------------------- the shipped sweep file


def test_inspect_shows_the_shipped_sweeps_experiment_and_says_how_to_run_it():
    result = run_here("inspect", QUICKSTART_SWEEP)
    assert result.returncode == 0, result.stderr
    assert "Total params: 52,980" in result.stdout  # the quick start's model, as `inspect quickstart.yaml` says
    assert "a grid of 4 points, 4 trials" in result.stdout
    assert f"Run the sweep with: cnnrun sweep {QUICKSTART_SWEEP}" in result.stdout


def test_config_show_writes_the_shipped_sweep_resolved_and_it_loads_back_the_same(tmp_path):
    result = run_here("config", "show", QUICKSTART_SWEEP, "--set", "sweep.trials=2")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["name"] == "quickstart_sweep" and shown["train"]["epochs"] == 3  # the file's, over its base's
    assert shown["sweep"]["params"][QUICK_FILTERS] == {"choice": [8, 16]}
    assert (shown["sweep"]["method"], shown["sweep"]["trials"], shown["sweep"]["pruner"]) == ("grid", 2, "median")
    path = tmp_path / "resolved.yaml"
    path.write_text(result.stdout)
    original, again = load_sweep(QUICKSTART_SWEEP, ["sweep.trials=2"]), load_sweep(path)
    assert again.config == original.config and again.experiment == original.experiment


def test_train_on_a_sweep_file_says_which_command_runs_it():
    assert_user_error(run_here("train", QUICKSTART_SWEEP), "a sweep file",
                      f"run it with: cnnrun sweep {QUICKSTART_SWEEP}")


@pytest.mark.slow
def test_the_shipped_sweep_runs_its_first_two_grid_points(tmp_path):
    sets = ["sweep.trials=2", "train.epochs=1", "dataset.num_samples=160", "dataset.test_samples=40",
            f"output.dir={tmp_path}", "output.plots=false", "callbacks.tensorboard=false"]
    result = run_here("sweep", QUICKSTART_SWEEP, *[arg for s in sets for arg in ("--set", s)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    rows = trials_csv(tmp_path / "quickstart_sweep")
    assert [(float(r["compile.optimizer.learning_rate"]), int(r[QUICK_FILTERS]), int(r["seed"])) for r in rows] == [
        (0.0005, 8, 7), (0.0005, 16, 8)]  # the grid in order, seeds 7 + trial
    assert all(row["status"] in ("complete", "pruned") for row in rows)
    for row in rows:
        with (Path(row["run_folder"]) / "history.csv").open() as f:
            assert len(list(csv.DictReader(f))) == 1
    assert "planned 2" in result.stdout


# ---------------------------------------------------------------- spaces, plan and study, without training


@pytest.mark.parametrize("space, values", [
    ({"int": [1, 3]}, [1, 2, 3]),  # both ends included
    ({"int": [2, 6], "step": 2}, [2, 4, 6]),
    ({"int": [3, 3]}, [3]),  # an int range of one value
    ({"float": [0.1, 0.3], "step": 0.1}, [0.1, 0.2, 0.3]),  # (0.3 - 0.1) / 0.1 is 1.999…96 in floats: hi kept
])
def test_a_grid_takes_every_step_of_a_range_both_ends_included(space, values):
    config = SweepConfig.model_validate({"params": {"p": space}, "method": "grid"})
    assert config.params["p"].grid() == values


def test_a_storage_url_with_a_driver_is_accepted():
    config = SweepConfig.model_validate({"params": {"p": {"choice": [1]}}, "method": "grid",
                                         "storage": "postgresql+psycopg2://user@host/db"})
    assert config.storage == "postgresql+psycopg2://user@host/db"


def test_a_grid_with_fewer_trials_than_points_queues_only_the_first_points(tmp_path):
    from cnnrun.training.sweep import open_study, prepare_study, with_objective

    sweep = with_objective(load_sweep(write(tmp_path, sweep_config(tmp_path, pruner="none", trials=2))))
    assert sweep.planned == 2 and "a grid of 4 points, 2 trials" in sweep.describe()
    study = open_study(sweep)
    prepare_study(sweep, study)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    # the grid in order: learning rates [0.01, 1e-9] × filters [2, 4], the first two points
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{LR: 0.01, FILTERS: 2}, {LR: 0.01, FILTERS: 4}]


def test_trial_n_trains_with_the_experiments_seed_plus_n(tmp_path):
    from cnnrun.training.sweep import trial_seed

    sweep = load_sweep(write(tmp_path, sweep_config(tmp_path)))
    assert [trial_seed(sweep, n) for n in (0, 1, 5)] == [3, 4, 8]  # the tiny experiment's seed 3, plus n


def test_a_max_objective_makes_a_maximizing_study(tmp_path):
    from cnnrun.training.sweep import open_study, with_objective

    config = sweep_config(tmp_path, name="maxed", objective={"metric": "val_accuracy", "mode": "max"})
    sweep = with_objective(load_sweep(write(tmp_path, config)))
    assert open_study(sweep).direction == optuna.study.StudyDirection.MAXIMIZE
    sweep_dir = tmp_path / "outputs" / "maxed"
    assert journal_study(sweep_dir, "maxed").direction == optuna.study.StudyDirection.MAXIMIZE  # as stored


def test_a_trial_that_recorded_no_run_folder_is_given_the_newest_under_its_folder(tmp_path):
    from cnnrun.training.sweep import open_study, trial_run_folder, with_objective

    sweep = with_objective(load_sweep(write(tmp_path, sweep_config(tmp_path, name="unrecorded"))))
    study = open_study(sweep)
    study.ask()  # trial 0, killed before it recorded its run folder
    for name in ("20260101-090000", "20260102-090000", "20251231-090000"):
        (tmp_path / "outputs" / "unrecorded" / "trial-000" / name).mkdir(parents=True)
    (trial,) = study.get_trials()
    assert trial_run_folder(sweep, trial) == str(tmp_path / "outputs" / "unrecorded" / "trial-000" / "20260102-090000")
