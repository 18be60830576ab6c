"""MLflow tracking: a Keras callback that keeps a copy of the run in an MLflow tracking store.

The run folder stays the single source of truth; MLflow gets a copy that a team's tracker can search: the
flattened config as params, every epoch's metrics (Keras' log keys and the learning rate, step = the epoch from
1), the test scores of both checkpoints, the run folder's files as artifacts, and tags (config name, status,
cnnrun version, run folder). The MLflow run's id is kept in the run folder's `mlflow.json`, so `cnnrun resume`
goes on logging into the same MLflow run.

It is on when the experiment has `tracking: {mlflow: {...}}` or `$MLFLOW_TRACKING_URI` is set, and needs the
optional extra: `pip install 'cnnrun[tracking]'`.

Example:
>>> tracker = MlflowTracker(run, experiment, "sqlite:///mlflow.db")
>>> model.fit(train, epochs=3, callbacks=[tracker])
>>> tracker.on_run_end()  # after scoring: scores, artifacts, status; the Trainer calls it when it lets go
"""

import logging
import os
import time
from pathlib import Path
from typing import Any

import keras

from cnnrun.config import Experiment
from cnnrun.config.load import dotted_keys
from cnnrun.errors import UserError
from cnnrun.model.schedules import last_step_learning_rate
from cnnrun.run_folder.files import LOCK, SCORES, STATE
from cnnrun.run_folder.files import MLFLOW as MLFLOW_FILE
from cnnrun.run_folder.folder import Run

MAX_PARAM_LENGTH = 6000  # MLflow refuses longer param values
# cnnrun's statuses as MLflow's run statuses
MLFLOW_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "pruned": "FINISHED",
                 "interrupted": "KILLED", "failed": "FAILED", "running": "FAILED"}


def tracking_uri(experiment: Experiment) -> str | None:
    """The MLflow store the experiment logs to: `tracking.mlflow.uri`, else `$MLFLOW_TRACKING_URI`; None: off.

    An experiment with a `tracking.mlflow` section but no `uri` logs to MLflow's own default (`./mlruns`).
    """
    config = experiment.tracking.mlflow
    uri = (config.uri if config else None) or os.environ.get("MLFLOW_TRACKING_URI")
    if config is not None and uri is None:
        return "./mlruns"
    return uri


def check_mlflow(experiment: Experiment) -> None:
    """A one-line UserError, before any data is read, when tracking is asked for but MLflow is not installed."""
    if tracking_uri(experiment) is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError as e:
        asked = "tracking.mlflow" if experiment.tracking.mlflow else "$MLFLOW_TRACKING_URI"
        raise UserError(f"{asked}: MLflow tracking needs MLflow, which is not installed; "
                        f"pip install 'cnnrun[tracking]' (or unset MLFLOW_TRACKING_URI)") from e


def _artifact_location(uri: str) -> str | None:
    """For a SQLite store, artifacts go beside its database file (`mlruns/` there), not into the current folder."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


class MlflowTracker(keras.callbacks.Callback):
    """Logs a run to MLflow as it trains; `on_run_end()` adds the scores, the files and the final status.

    The MLflow run is started (or, for a resumed run, continued) when training begins, and its id written to
    the run folder's `mlflow.json`.

    Args:
        run: the run folder.
        experiment: the experiment (its flattened config becomes the params; `name` the default MLflow
            experiment and the `cnnrun.config_name` tag).
        uri: the tracking store (see `tracking_uri`).
    """

    def __init__(self, run: Run, experiment: Experiment, uri: str):
        super().__init__()
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # their start-up INFO lines ("Creating initial MLflow database tables")
            logging.getLogger(name).setLevel(logging.WARNING)
        self.run, self.experiment, self.uri = run, experiment, uri
        self.client = MlflowClient(uri)
        self.run_id: str | None = None

    def _start(self) -> str:
        """The MLflow run's id: the one in `mlflow.json` (resume), else a new run with params and tags."""
        from mlflow.entities import Param, RunTag

        from cnnrun import __version__

        if self.run_id is not None:
            return self.run_id
        if self.run.file(MLFLOW_FILE).is_file():
            self.run_id = self.run.read_json(MLFLOW_FILE)["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return self.run_id
        config = self.experiment.tracking.mlflow
        name = (config.experiment if config else None) or self.experiment.name
        found = self.client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else \
            self.client.create_experiment(name, artifact_location=_artifact_location(self.uri))
        tags = {"cnnrun.config_name": self.experiment.name, "cnnrun.version": __version__,
                "cnnrun.run_folder": str(self.run.path), "cnnrun.status": "running"}
        mlflow_run = self.client.create_run(experiment_id, run_name=f"{self.experiment.name}/{self.run.path.name}",
                                            tags=tags)
        self.run_id = mlflow_run.info.run_id
        params = [Param(key, str(value)[:MAX_PARAM_LENGTH])
                  for key, value in dotted_keys(self.experiment.model_dump(mode="json")).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("cnnrun.seed", str(self.experiment.seed))])
        self.run.write_json(MLFLOW_FILE, {"tracking_uri": self.uri, "experiment_id": experiment_id,
                                          "run_id": self.run_id})
        return self.run_id

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._start()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Log the epoch's metrics and learning rate, as history.csv records them, at step `epoch + 1`."""
        from mlflow.entities import Metric

        values = {k: float(v) for k, v in (logs or {}).items()}
        values["learning_rate"] = last_step_learning_rate(self.model.optimizer)
        millis = int(time.time() * 1000)
        self.client.log_batch(self._start(), metrics=[Metric(k, v, millis, epoch + 1) for k, v in values.items()])

    def on_run_end(self) -> None:
        """After the Trainer is done with the run: test scores, the run folder's files, status tag, end."""
        run_id = self._start()
        status = self.run.read_state().status if self.run.has(STATE) else "failed"
        if self.run.has(SCORES):
            for which, metrics in self.run.read_scores().items():
                for key, value in metrics.items():
                    self.client.log_metric(run_id, f"test_{which}_{key}", float(value))
        for path in sorted(self.run.path.rglob("*")):
            if path.is_file() and path.name != LOCK and not path.name.startswith("."):
                folder = path.parent.relative_to(self.run.path).as_posix()
                self.client.log_artifact(run_id, str(path), None if folder == "." else folder)
        self.client.set_tag(run_id, "cnnrun.status", status)
        self.client.set_terminated(run_id, MLFLOW_STATUS.get(status, "FINISHED"))
