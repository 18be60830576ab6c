"""The `tracking:` section: where a run's parameters, metrics and files are also kept (MLflow)."""

from pydantic import Field

from cnnrun.config.sections import Section


class MlflowConfig(Section):
    """MLflow: the flattened config as params, every epoch's metrics, the test scores, the run folder's files."""

    uri: str | None = Field(None, description="The tracking store, e.g. `sqlite:///mlflow.db` (offline, a file) or "
                            "`http://host:5000`. Default: `$MLFLOW_TRACKING_URI`, else MLflow's own default "
                            "(`./mlruns`).")
    experiment: str | None = Field(None, description="The MLflow experiment the run goes into. Default: the "
                                   "experiment's `name`.")


class TrackingConfig(Section):
    mlflow: MlflowConfig | None = Field(
        None, description="`{uri: sqlite:///mlflow.db, experiment: NAME}` logs the run to MLflow (`pip install "
        "'cnnrun[tracking]'`); `resume` continues the same MLflow run. Without this section, setting "
        "`$MLFLOW_TRACKING_URI` turns it on with the defaults.")
