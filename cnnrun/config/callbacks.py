"""The `callbacks:` section: checkpoints (always on), early stopping, rate cuts, TensorBoard (on by default)."""

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cnnrun.config.registry import canonical_metric
from cnnrun.config.sections import Section


class CheckpointConfig(Section):
    monitor: str = Field("val_loss", description="The logged value that decides the best model (`val_acc` "
                         "works). Without validation data, `val_` is dropped.")
    mode: Literal["auto", "min", "max"] = Field("auto", description="min, max, or auto from the name.")
    save_best_only: bool = Field(
        True, description="true: `best.keras` changes only when `monitor` improves; false: every epoch."
    )
    initial_value_threshold: float | None = Field(None, description="`best.keras` is written only once "
                                                  "`monitor` beats this value.")
    verbose: int = Field(0, ge=0, le=1, description="1: print a line when `best.keras` is written.")


class EarlyStoppingConfig(Section):
    monitor: str = Field("val_loss", description="The logged value to watch (`val_acc` works).")
    min_delta: float = Field(0.0, description="A smaller change does not count as an improvement.")
    patience: int = Field(0, ge=0, description="Epochs without improvement before training stops.")
    verbose: int = Field(0, description="1: say when training stops.")
    mode: Literal["auto", "min", "max"] = Field("auto", description="min, max, or auto from the name.")
    baseline: float | None = Field(None, description="Stop unless `monitor` beats this value.")
    restore_best_weights: bool = Field(False, description="End with the best epoch's weights (in this process).")
    start_from_epoch: int = Field(0, ge=0, description="Epochs to wait before watching.")


class ReduceLROnPlateauConfig(Section):
    monitor: str = Field("val_loss", description="The logged value to watch.")
    factor: float = Field(0.1, gt=0, lt=1, description="New learning rate = rate × factor.")
    patience: int = Field(10, ge=0, description="Epochs without improvement before the rate is lowered.")
    verbose: int = Field(0, description="1: say when the rate changes.")
    mode: Literal["auto", "min", "max"] = Field("auto", description="min, max, or auto from the name.")
    min_delta: float = Field(1e-4, description="A smaller change does not count as an improvement.")
    cooldown: int = Field(0, ge=0, description="Epochs to wait after a change before watching again.")
    min_lr: float = Field(0.0, description="The rate never goes below this.")


class TensorBoardConfig(Section):
    log_dir: str | None = Field(None, description="Default: `tensorboard/` in the run folder.")
    histogram_freq: int = Field(0, description="Epochs between weight histograms (0: none).")
    write_graph: bool = Field(True, description="Write the model graph.")
    update_freq: Literal["epoch", "batch"] | int = Field("epoch", description="How often to write metrics.")


class LookaheadConfig(Section):
    every: int = Field(5, ge=1, description="Steps (batches) between updates of the slow weights.")
    decay: float = Field(0.7738, ge=0, lt=1, description="The slow weights' share at the end of training "
                         "(airbench94: 0.95⁵).")
    power: float = Field(3.0, ge=0, description="The share grows as `decay × (step / total) ** power` over the "
                         "run; 0 keeps it at `decay`.")


class CallbacksConfig(Section):
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="Always on: `best.keras` by `monitor`, `last.keras` "
        "after every epoch. Keras' ModelCheckpoint arguments."
    )
    early_stopping: EarlyStoppingConfig | None = Field(None, description="Keras' EarlyStopping arguments.")
    reduce_lr_on_plateau: ReduceLROnPlateauConfig | None = Field(
        None, description="Keras' ReduceLROnPlateau arguments."
    )
    terminate_on_nan: bool = Field(False, description="Stop as soon as the loss is NaN.")
    lookahead: LookaheadConfig | None = Field(
        None, description="airbench94's lookahead: every `every` steps, slow ← d·slow + (1 − d)·weights, then "
        "the weights ← slow (BatchNorm's statistics too), and at the end of every epoch. `{}` or `true`: "
        "airbench's every 5, decay 0.7738, power 3."
    )
    tensorboard: TensorBoardConfig | None = Field(
        default_factory=TensorBoardConfig, description="On by default: Keras' TensorBoard arguments (scalars per "
        "epoch, the learning rate, the graph) into the run folder's `tensorboard/`; `false` turns it off."
    )

    @field_validator("tensorboard", "lookahead", mode="before")
    @classmethod
    def _on_or_off(cls, value: Any) -> Any:
        return None if value is False else {} if value is True else value

    @model_validator(mode="after")
    def _canonical_monitors(self) -> "CallbacksConfig":
        for section in (self.checkpoint, self.early_stopping, self.reduce_lr_on_plateau):
            if section is not None:
                section.monitor = canonical_metric(section.monitor)
        return self
