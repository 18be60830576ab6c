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

import http.client
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import keras

from cnnrun import __version__
from cnnrun.atomic import os_error_reason
from cnnrun.config import Experiment
from cnnrun.config.load import dotted_keys
from cnnrun.errors import UserError
from cnnrun.model.schedules import last_step_learning_rate
from cnnrun.run_folder.files import LOCK, SCORES, STATE
from cnnrun.run_folder.files import MLFLOW as MLFLOW_FILE
from cnnrun.run_folder.folder import Run

STORE_TIMEOUT = 5.0  # seconds the store check waits for a tracking server before it says it does not answer
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}  # MLflow's database stores, default ports
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
    """A one-line UserError, before any data is read or any folder made, when tracking is asked for but MLflow is
    not installed or its store cannot be used (see `check_store`)."""
    uri = tracking_uri(experiment)
    if uri is None:
        return
    asked = "tracking.mlflow.uri" if experiment.tracking.mlflow else "$MLFLOW_TRACKING_URI"
    try:
        import mlflow  # noqa: F401
    except ImportError as e:
        raise UserError(f"{asked}: MLflow tracking needs MLflow, which is not installed; "
                        f"pip install 'cnnrun[tracking]' (or unset MLFLOW_TRACKING_URI)") from e
    try:
        check_store(uri)
    except UserError as e:
        source = f"{experiment.source}: " if experiment.source and experiment.tracking.mlflow else ""
        raise UserError(f"{source}{asked}: {e}") from None


def check_store(uri: str, timeout: float = STORE_TIMEOUT) -> None:
    """A UserError when MLflow could not use the store `uri`: a scheme MLflow does not know (the message lists
    those it does), an http(s) server that does not answer one GET within `timeout` seconds (MLflow itself
    retries for minutes), or a database server (postgresql, mysql, mssql) that does not accept a connection
    within `timeout`. A local store (a path, `file:`, `sqlite:`) is made by MLflow when first used."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    base = scheme.split("+")[0]  # a database's driver: postgresql+psycopg2
    schemes = _store_schemes()
    if schemes is not None and len(scheme) > 1 and base not in schemes:  # one letter: a Windows drive, a path
        raise UserError(f"{uri}: MLflow knows no tracking store '{scheme}:'; it takes a path or "
                        f"{', '.join(f'{known}:' for known in schemes)} (e.g. sqlite:///mlflow.db, "
                        f"http://host:5000)")
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(urllib.request.Request(uri, method="GET"), timeout=timeout):
                pass
        except urllib.error.HTTPError:
            return  # the server answered (a login page, a 404): MLflow's own requests say the rest
        except http.client.HTTPException as e:
            raise UserError(f"{uri}: not an HTTP server ({type(e).__name__}); give the MLflow server's address") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise UserError(f"{uri}: the MLflow server does not answer ({_why(getattr(e, 'reason', e), timeout)}); "
                            f"start it (mlflow server --port {parts.port or 5000}) or correct the address") from e
    elif base in DATABASE_PORTS:
        port = parts.port or DATABASE_PORTS[base]
        try:
            socket.create_connection((parts.hostname or "localhost", port), timeout=timeout).close()
        except OSError as e:
            raise UserError(f"{parts.hostname or 'localhost'}:{port}: the {scheme} server of the MLflow store "
                            f"does not accept connections ({_why(e, timeout)})") from e


def _why(reason: object, timeout: float) -> str:
    """Why a connection failed, in a few words: `no answer in 5 s`, `connection refused`, `unknown host`."""
    if isinstance(reason, TimeoutError):
        return f"no answer in {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    return os_error_reason(reason).lower() if isinstance(reason, OSError) else str(reason)


def _store_schemes() -> list[str] | None:
    """The tracking-store schemes this MLflow knows (its plugins' too), from MLflow's own registry; None when
    this MLflow keeps them elsewhere (then MLflow's own error has to do)."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
    except ImportError:
        return None
    registry = getattr(_tracking_store_registry, "_registry", None)
    return [scheme for scheme in registry if scheme] if isinstance(registry, dict) else None


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
            scores = self.run.read_scores()
            for which in ("best", "last"):  # beside them, "tta" lists the test-time views: not a metric
                for key, value in scores.get(which, {}).items():
                    self.client.log_metric(run_id, f"test_{which}_{key}", float(value))
        for path in sorted(self.run.path.rglob("*")):
            if path.is_file() and path.name != LOCK and not path.name.startswith("."):
                folder = path.parent.relative_to(self.run.path).as_posix()
                self.client.log_artifact(run_id, str(path), None if folder == "." else folder)
        self.client.set_tag(run_id, "cnnrun.status", status)
        self.client.set_terminated(run_id, MLFLOW_STATUS.get(status, "FINISHED"))
