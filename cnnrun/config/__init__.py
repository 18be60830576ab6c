"""The experiment config: the schema (`Experiment` and its sections), loading, and the `${…}` language.

Only this package reads YAML; everything else receives an `Experiment`: typed, complete, validated.

- `schema` and the section modules (`dataset`, `callbacks`, `evaluate`, `tracking`, `sweep`): the pydantic
  models; their field descriptions are the reference documentation.
- `load`: YAML files, `base:` inheritance, `--set` overrides, then validation.
- `expressions`: `${name}` and arithmetic on vars, bounded.
- `graph`: the graph words of `model.layers` (ids, inputs, joins, `model.blocks`), expanded into nodes and checked.
- `registry`: the names a config may use (Keras' layer classes and string identifiers), checked as strings.
- `reference`: writes the configuration reference from the schema (`make docs`).

May import: `cnnrun.errors` only (no Keras at import time), so a config error answers at once.

Example:
>>> experiment = load_experiment("configs/quickstart.yaml", ["train.epochs=3"])
>>> experiment.train.epochs
3
"""

from cnnrun.config.callbacks import (
    CallbacksConfig,
    CheckpointConfig,
    EarlyStoppingConfig,
    ReduceLROnPlateauConfig,
    TensorBoardConfig,
)
from cnnrun.config.dataset import (
    DATASET_KINDS,
    CsvDataset,
    DatasetBase,
    DatasetConfig,
    ImageFolderDataset,
    KerasDataset,
    NpzDataset,
    ShapesDataset,
)
from cnnrun.config.expressions import LATE_VARS, evaluate_expression, resolve_vars, substitute
from cnnrun.config.load import (
    apply_override,
    experiment_to_yaml,
    format_validation_error,
    load_experiment,
    load_saved_experiment,
    read_yaml,
    resolve_config,
    validate_experiment,
)
from cnnrun.config.model import ModelConfig, iter_layer_entries
from cnnrun.config.schema import (
    AugmentationConfig,
    CompileConfig,
    Experiment,
    OutputConfig,
    TrainConfig,
)
from cnnrun.config.sections import Section

__all__ = [
    "DATASET_KINDS", "LATE_VARS", "AugmentationConfig", "CallbacksConfig", "CheckpointConfig", "CompileConfig",
    "CsvDataset", "DatasetBase", "DatasetConfig", "EarlyStoppingConfig", "Experiment", "ImageFolderDataset",
    "KerasDataset",
    "ModelConfig", "NpzDataset", "OutputConfig", "ReduceLROnPlateauConfig", "Section", "ShapesDataset",
    "TensorBoardConfig", "TrainConfig", "apply_override", "evaluate_expression", "experiment_to_yaml",
    "format_validation_error", "iter_layer_entries", "load_experiment", "load_saved_experiment", "read_yaml",
    "resolve_config", "resolve_vars", "substitute", "validate_experiment",
]
