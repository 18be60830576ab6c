"""Sweeps: an Optuna study over Trainers, where every trial is a normal run folder.

A sweep's folder, `<output.dir>/<name>/`, holds the study's storage (`study.journal`, Optuna's journal file
storage, unless `sweep.storage` names an RDB), `trials.csv`, the plots, and one run folder per trial
(`trial-NNN/<time>/`). Running the same command again opens the same study and goes on until `trials` trials are
finished. A trial whose process died (killed, Ctrl-C, a machine that stopped) is failed and queued again with the
same params when the command is next run, so no trial is lost and none counts twice; one that failed with an
error counts as finished (its error is in trials.csv). Trial N trains with the experiment's seed + N; a trial
that runs again keeps the seed of the trial it retries, so a resumed sweep trains what an uninterrupted one does.
Before any trial, the model of every point is built and compiled (`check_points`), as `cnnrun inspect` does.

Several processes (`--workers N`, or the same command on several machines sharing an RDB `storage`) take
trials from the one study: a grid's points are queued in the study before any trial starts (Optuna's
`enqueue_trial`), so each is taken by exactly one process.

Example:
>>> sweep = load_sweep("configs/quickstart_sweep.yaml")
>>> study = open_study(sweep)
>>> run_trials(sweep, study)
>>> write_results(sweep, study)
"""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from cnnrun.atomic import atomic_write_csv, atomic_write_figure
from cnnrun.config.sweep import Sweep, naming_the_point
from cnnrun.errors import UserError
from cnnrun.report import Say, silent
from cnnrun.run_folder.folder import Run, is_run_folder
from cnnrun.run_folder.lock import Holder, process_start
from cnnrun.training.callbacks import monitor_mode, resolve_monitor


def with_objective(sweep: Sweep) -> Sweep:
    """The sweep with its objective metric checked against what a run logs (`val_x` is `x` without validation
    data); a metric that is not logged is a one-line UserError. Needs Keras, so it runs once the backend is set."""
    monitor = resolve_monitor(sweep.config.objective.metric, sweep.experiment,
                              f"{sweep.source}: sweep.objective.metric")
    return dataclasses.replace(sweep, monitor=monitor)


def import_optuna():
    """Optuna, or a one-line UserError naming the extra to install."""
    try:
        import optuna
    except ImportError as e:
        raise UserError("cnnrun sweep needs Optuna, which is not installed; pip install 'cnnrun[sweep]'") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # cnnrun prints each trial itself
    return optuna


def sweep_folder(sweep: Sweep) -> Path:
    return Path(sweep.experiment.output.dir) / sweep.experiment.name


def trial_run_folder(sweep: Sweep, trial) -> str | None:
    """The run folder of a trial: the one it recorded, or, for a process killed between making the folder and
    recording it, the newest folder under `trial-NNN/` (None when it made none)."""
    recorded = trial.user_attrs.get("run_folder")
    if recorded:
        return recorded
    made = sorted((sweep_folder(sweep) / f"trial-{trial.number:03d}").glob("*"))
    return str(made[-1]) if made else None


def direction(sweep: Sweep) -> str:
    return "maximize" if monitor_mode(sweep.monitor, sweep.config.objective.mode) == "max" else "minimize"


def open_study(sweep: Sweep, worker: int = 0):
    """The sweep's Optuna study, created or loaded; an unreachable storage is a one-line UserError, before the
    sweep folder is made.

    The sampler (random or TPE) is seeded from the experiment's seed, the worker's number and the trials the
    study already holds: a rerun from nothing draws the same params, and a resumed sweep draws new ones (not
    again the first process's).

    Args:
        sweep: the checked sweep file.
        worker: this process's number among the workers (0 for the first).
    """
    optuna = import_optuna()
    config, folder = sweep.config, sweep_folder(sweep)
    if config.storage is not None:
        from sqlalchemy.engine import make_url

        shown = make_url(config.storage).render_as_string(hide_password=True)
        try:
            storage: Any = optuna.storages.RDBStorage(config.storage, heartbeat_interval=config.heartbeat)
        except Exception as e:  # a driver that is not installed, a server that does not answer, a refused login
            reason = " ".join(str(e).split())[:200]
            raise UserError(f"{sweep.source}: sweep.storage: cannot open {shown} ({type(e).__name__}: {reason})") \
                from e
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{folder}: cannot create the sweep folder ({e.strerror})") from e
    if config.storage is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
        shown = str(folder / "study.journal")
    pruner = {"none": optuna.pruners.NopPruner(),
              "median": optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials),
              "hyperband": optuna.pruners.HyperbandPruner(min_resource=1,
                                                          max_resource=sweep.experiment.train.epochs)}[config.pruner]
    study = optuna.create_study(study_name=sweep.experiment.name, storage=storage, pruner=pruner,
                                direction=direction(sweep), load_if_exists=True)
    study.sampler = sampler(sweep, worker, len(study.get_trials(deepcopy=False)))
    if worker == 0:
        from cnnrun.atomic import atomic_write_json

        atomic_write_json(folder / "sweep.json", {"study": sweep.experiment.name, "storage": shown,
                                                  "method": config.method, "objective": sweep.monitor,
                                                  "direction": direction(sweep), "trials": sweep.planned})
    return study


def sampler(sweep: Sweep, worker: int, trials_before: int):
    """Optuna's TPESampler (method tpe) or RandomSampler (random; a grid's points come from the study's queue),
    seeded from the experiment's seed, the worker's number and the number of trials the study held before."""
    import numpy as np

    optuna = import_optuna()
    seed = int(np.random.SeedSequence([sweep.experiment.seed, worker, trials_before]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed) if sweep.config.method == "tpe" else \
        optuna.samplers.RandomSampler(seed=seed)


def trial_seed(sweep: Sweep, number: int) -> int:
    """The seed trial `number` trains with: the experiment's seed plus the number."""
    return (sweep.experiment.seed + number) % 2**32


def check_points(sweep: Sweep) -> None:
    """Build and compile the model of every point of the sweep (`Sweep.points`) as `cnnrun inspect` and a
    Trainer do before reading data, and check its monitors, before any trial: a point Keras refuses (`filters:
    -3`) is a one-line UserError naming the point, not a trial that fails."""
    from cnnrun.data import augmentation_in_model
    from cnnrun.model.build import declared_info, new_model
    from cnnrun.model.features import check_cacheable
    from cnnrun.model.phases import check_phases
    from cnnrun.training.callbacks import configured_callbacks

    for params in sweep.points():
        with naming_the_point(sweep, params):
            experiment = sweep.trial_experiment(params, sweep.experiment.seed)
            resolve_monitor(experiment.callbacks.checkpoint.monitor, experiment, "callbacks.checkpoint.monitor")
            configured_callbacks(experiment, None)
            model = new_model(experiment, declared_info(experiment), augmentation_in_model(experiment))
            check_phases(model, experiment)
            check_cacheable(model, experiment)


def prepare_study(sweep: Sweep, study, say: Say = silent) -> None:
    """Before any worker starts: queue a grid's points, and queue again the trials whose process died (each
    retry is told to `say`)."""
    from optuna.trial import TrialState

    if sweep.config.method == "grid":
        for params in sweep.grid()[:sweep.planned]:
            study.enqueue_trial(params, skip_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        # without a worker: its process died between taking the trial and saying who it is (one machine only: a
        # shared RDB's trials are judged by their heartbeat below)
        dead = not Holder(worker["pid"], worker["host"], "", worker["start"], "").alive() if worker \
            else sweep.config.storage is None
        if dead:
            study.tell(trial.number, state=TrialState.FAIL)
    if sweep.config.storage is not None:
        import optuna

        optuna.storages.fail_stale_trials(study)  # trials of machines whose heartbeat stopped
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == TrialState.FAIL and "error" not in trial.user_attrs and trial.number not in retried:
            # a process killed after taking a queued grid point but before drawing it has no params yet: its
            # point is in the queue's fixed params
            params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
            # the seed of the trial it retries (a retry's own came from the trial it retried): the seed follows
            # the trial, not the attempt, so a resumed sweep trains as an uninterrupted one
            seed = trial.user_attrs.get("seed", trial_seed(sweep, trial.number))
            study.enqueue_trial(params, user_attrs={"retry_of": trial.number, "seed": seed})
            folder = trial_run_folder(sweep, trial)
            if folder and is_run_folder(Path(folder)):
                with Run(Path(folder)).hold() as run:  # takes over the dead process's lock
                    if run.read_state().status == "running":
                        run.update_state(status="interrupted")
            say(f"trial {trial.number} did not finish (its process ended); it runs again")


def count(study) -> dict[str, int]:
    """Trials by what they count as: `done` (finished, or failed with an error), `running`, `waiting`."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) or
               (t.state == TrialState.FAIL and "error" in t.user_attrs and t.number not in retried) for t in trials)
    return {"done": done, "running": sum(t.state == TrialState.RUNNING for t in trials),
            "waiting": sum(t.state == TrialState.WAITING for t in trials)}


def run_trials(sweep: Sweep, study, say: Say = silent) -> None:
    """Take trials from the study and train them, one after another, until the sweep has its trials; each
    trial's start, failure or pruning, and the timeout, are told to `say` (the CLI prints them)."""
    deadline = time.monotonic() + sweep.config.timeout if sweep.config.timeout else None
    while True:
        counts = count(study)
        if counts["done"] >= sweep.planned:
            return
        if not counts["waiting"] and counts["done"] + counts["running"] >= sweep.planned:
            return  # the other workers are training the last ones
        if deadline is not None and time.monotonic() > deadline:
            say(f"timeout: {sweep.config.timeout:g} s passed; no new trial starts")
            return
        study.optimize(lambda trial: run_trial(sweep, trial, say), n_trials=1, catch=(Exception,))


def run_trial(sweep: Sweep, trial, say: Say = silent) -> float:
    """One trial: its params drawn, its experiment trained by a Trainer into `trial-NNN/<time>/`."""
    import optuna

    from cnnrun.training.trainer import Trainer

    trial.set_user_attr("worker", {"pid": os.getpid(), "host": socket.gethostname(),
                                   "start": process_start(os.getpid())})
    params = {name: space.suggest(trial, name) for name, space in sweep.config.params.items()}
    seed = trial.user_attrs.get("seed", trial_seed(sweep, trial.number))  # a retry's: the retried trial's
    trial.set_user_attr("seed", seed)
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    say(f"trial {trial.number} ({count(trial.study)['done'] + 1} of {sweep.planned}): {shown}")
    try:
        experiment = sweep.trial_experiment(params, seed)
        pruning = PruneTrial(trial, sweep.monitor, say) if sweep.config.pruner != "none" else None
        with Trainer.new(experiment, str(sweep_folder(sweep)), f"trial-{trial.number:03d}",
                         callbacks=[pruning] if pruning else [], say=say) as trainer:
            trial.set_user_attr("run_folder", str(trainer.run.path))
            trainer.fit()
            run = trainer.finish()
            if pruning is not None and pruning.pruned:
                run.update_state(status="pruned")
            if experiment.callbacks.tensorboard is not None:
                log_hparams(experiment.callbacks.tensorboard.log_dir or run.tensorboard_folder, params,
                            f"trial-{trial.number:03d}")
    except Exception as e:
        trial.set_user_attr("error", " ".join(str(e).split())[:300] or type(e).__name__)
        say(f"trial {trial.number} failed: {e}")
        raise
    values = [row[sweep.monitor] for row in run.read_history() if sweep.monitor in row]
    if not values:
        trial.set_user_attr("error", f"{sweep.monitor} was not logged")
        raise UserError(f"trial {trial.number}: {sweep.monitor} was not logged")
    best = max(values) if direction(sweep) == "maximize" else min(values)
    trial.set_user_attr("objective", best)
    if pruning is not None and pruning.pruned:
        raise optuna.TrialPruned(f"pruned at epoch {len(values)}")
    return best


class PruneTrial(keras.callbacks.Callback):
    """Reports the monitored value to the Optuna trial after every epoch, and stops training when the study's
    pruner says the trial is doing worse than the others did at the same epoch.

    Training then ends after that epoch, as an early stop does: the run folder is complete and scored, and the
    sweep marks it `pruned`.

    Args:
        trial: the Optuna trial.
        monitor: the logged value reported (the sweep's objective metric).
    """

    def __init__(self, trial, monitor: str, say: Say = silent):
        super().__init__()
        self.trial, self.monitor, self.say, self.pruned = trial, monitor, say, False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        self.trial.report(float(value), epoch + 1)
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True
            self.say(f"trial {self.trial.number}: pruned after epoch {epoch + 1} ({self.monitor} {float(value):.4f})")


def log_hparams(log_dir: str | Path, params: dict[str, Any], trial_id: str) -> None:
    """Write the trial's params as a TensorBoard HParams session, beside its scalars (the HParams view)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    plain = {k: v if isinstance(v, bool | int | float | str) else json.dumps(v) for k, v in params.items()}
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp.hparams(plain, trial_id=trial_id)


def trial_rows(sweep: Sweep, study) -> list[dict[str, Any]]:
    """trials.csv's rows: number, status, objective, params, seed, run folder, what it retried, its error, and
    the process that trained it (`host:pid`)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        worker = trial.user_attrs.get("worker")
        objective = trial.value if trial.value is not None else trial.user_attrs.get("objective")
        rows.append({"trial": trial.number, "status": trial.state.name.lower(), sweep.monitor: objective,
                     **{name: trial.params.get(name) for name in sweep.config.params},
                     "seed": trial.user_attrs.get("seed"), "run_folder": trial_run_folder(sweep, trial),
                     "retry_of": trial.user_attrs.get("retry_of"), "error": trial.user_attrs.get("error"),
                     "worker": f"{worker['host']}:{worker['pid']}" if worker else None})
    return rows


@dataclass(frozen=True)
class SweepResults:
    """What `write_results` wrote and found: the sweep folder, notes (no trial complete, a plot not drawn) and the
    rows of the summary table (empty when no trial has completed)."""

    title: str
    folder: Path
    notes: list[str]
    rows: list[tuple[str, str]]


def write_results(sweep: Sweep, study) -> SweepResults:
    """Write trials.csv and the plots (optimisation history, param importances); the best trial."""
    from optuna.trial import TrialState

    folder = sweep_folder(sweep)
    title = f"{sweep.experiment.name}: sweep"
    atomic_write_csv(folder / "trials.csv", trial_rows(sweep, study))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return SweepResults(title, folder, [f"no trial has completed yet; trials.csv is in {folder}"], [])
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    notes = []
    for name, plot in (("optimization_history.png", plot_optimization_history),
                       ("param_importances.png", plot_param_importances)):
        try:
            axes = plot(study)
        except (ValueError, RuntimeError) as e:  # importances need two completed trials that differ
            notes.append(f"{name}: not drawn ({e})")
            continue
        atomic_write_figure(axes.figure, folder / name)
    best = study.best_trial
    counts = {state: sum(t.state.name.lower() == state for t in study.trials)
              for state in ("complete", "pruned", "fail")}
    return SweepResults(title, folder, notes, [
        ("trials", f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed "
                   f"(planned {sweep.planned})"),
        ("best trial", f"{best.number}: {sweep.monitor} {best.value:.4f}"),
        ("its params", ", ".join(f"{k}={v}" for k, v in best.params.items())),
        ("its run folder", str(best.user_attrs.get("run_folder"))),
        ("sweep folder", f"{folder} (trials.csv, optimization_history.png, param_importances.png)"),
    ])


def gpu_count() -> int:
    """The GPUs `nvidia-smi` lists (0 without it), so that each worker can be given its own."""
    if shutil.which("nvidia-smi") is None:
        return 0
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in result.stdout.splitlines()) if result.returncode == 0 else 0


def start_workers(path: Path, workers: int, overrides: list[str] | None = None) -> int:
    """Run `cnnrun sweep PATH --worker I` (with the same `--set` overrides) in `workers` processes at once (each
    on its own GPU when there are GPUs, through `CUDA_VISIBLE_DEVICES`); wait for them; return the first non-zero
    exit code, else 0."""
    gpus = gpu_count()
    processes = []
    for index in range(workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        sets = [arg for assignment in overrides or [] for arg in ("--set", assignment)]
        processes.append(subprocess.Popen([sys.executable, "-m", "cnnrun", "sweep", str(path), *sets, "--worker",
                                           str(index)], env=env))
    codes = [process.wait() for process in processes]
    return next((code for code in codes if code), 0)
