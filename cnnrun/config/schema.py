"""The experiment schema: what a config may say, checked by pydantic, documented by the field descriptions.

The field descriptions are the reference documentation of the YAML: `python -m cnnrun.config.reference` writes
them into docs/reference.md. Checking a config here needs neither TensorFlow nor Keras: layer, optimizer and loss
names are read from `cnnrun.config.registry`'s tables of strings.
"""

import os
import re
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from cnnrun.config.augmentation import (
    AugmentationConfig,
    alternates_flips,
    check_fits,
    mixes_labels,
    trained_label_mode,
)
from cnnrun.config.callbacks import CallbacksConfig
from cnnrun.config.dataset import (
    DatasetConfig,
    ShapesDataset,
    default_name,
    has_own_validation,
    picture_size,
    pictures_of,
)
from cnnrun.config.evaluate import EvaluateConfig
from cnnrun.config.imbalance import check_class_weight
from cnnrun.config.model import ModelConfig
from cnnrun.config.phases import PhaseConfig, check_phases, phase_optimizer, total_epochs
from cnnrun.config.rates import check_multipliers
from cnnrun.config.registry import LOSSES, OPTIMIZERS, canonical_metric, check_name, check_optimizer_values
from cnnrun.config.regression import experiment_misfit
from cnnrun.config.schedules import ScheduleBase, check_learning_rate, parse_schedule
from cnnrun.config.sections import Section
from cnnrun.config.tracking import TrackingConfig
from cnnrun.errors import UserError

_DEVICE = re.compile(r"/?(?:device:)?(cpu|gpu):(\d+)", re.IGNORECASE)
MAX_INT32 = 2**31 - 1  # TensorFlow counts batches and steps in int32


class CompileConfig(Section):
    optimizer: str | dict[str, Any] = Field(
        "rmsprop", description="A name (adam, adamw, rmsprop, sgd, nadam, adamax, adagrad, adadelta, lion, muon) or "
        "`{name: adam, learning_rate: 0.001, ...}` with the Keras optimizer's arguments. `learning_rate` is a "
        "number or a schedule, `{schedule: piecewise_constant, boundaries: [91, 136], values: [0.1, 0.01, 0.001], "
        "unit: epochs}` (the tables below). `weight_decay` here is Keras' decoupled decay (AdamW-style: "
        "`w ← w − learning_rate × weight_decay × w` each step, outside the loss); the papers' L2 term is "
        "`model.weight_decay`. `gradient_accumulation_steps: k` (a whole number ≥ 1; 1: none) averages the "
        "gradients of k batches into one update: an update of `train.batch_size` × k examples. See \"Gradient "
        "accumulation\"."
    )
    loss: str | dict[str, Any] | None = Field(
        None, description="A Keras loss name or `{name: ..., from_logits: true, ...}`. Default: the "
        "crossentropy that matches `dataset.label_mode`. For imbalanced classes: "
        "`{name: categorical_focal_crossentropy, alpha: 0.25, gamma: 2.0}` (categorical labels) or "
        "`{name: binary_focal_crossentropy, gamma: 2.0, apply_class_balancing: true, alpha: 0.25}` (binary); "
        "see \"Imbalanced classes\"."
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy"], description="Keras metric names; `acc` is logged as `accuracy`."
    )
    jit_compile: bool | Literal["auto"] = Field(
        "auto", description="XLA compilation, as Keras' `compile`. `auto` on a CPU follows this machine's "
        "measurement of the step where `cnnrun profile --compare-jit` made one (recorded in "
        "`~/.cache/cnnrun/jit.json`), else it is Keras' `auto`: XLA only on a GPU.")
    steps_per_execution: int = Field(1, ge=1, le=MAX_INT32, description="Batches per call into the compiled step.")
    rate_multipliers: dict[str, float] | None = Field(
        None, description="Some weights at a multiple of the learning rate: `{beta: 64}` trains every trainable "
        "variable whose path a pattern (a regular expression) is found in at 64× the optimizer's rate (airbench94's "
        "BatchNorm biases); the first matching pattern decides; weight decay stays at the plain rate. A pattern "
        "that matches no variable of the model is refused. See \"Fast training\"."
    )

    @field_validator("rate_multipliers", mode="before")
    @classmethod
    def _multipliers(cls, value: Any) -> Any:
        return check_multipliers(value)

    @model_validator(mode="after")
    def _known_names(self) -> "CompileConfig":
        name = self.optimizer if isinstance(self.optimizer, str) else self.optimizer.get("name")
        if not isinstance(name, str):
            raise ValueError("optimizer needs a `name:` (adam, rmsprop, sgd, ...)")
        check_name(name, OPTIMIZERS, "optimizer", "compile.optimizer")
        if isinstance(self.optimizer, dict):
            check_optimizer_values(self.optimizer, "compile.optimizer")
        if isinstance(self.optimizer, dict) and "learning_rate" in self.optimizer:
            self.optimizer = {**self.optimizer, "learning_rate": check_learning_rate(self.optimizer["learning_rate"])}
        if self.loss is not None:
            loss = self.loss if isinstance(self.loss, str) else self.loss.get("name")
            if not isinstance(loss, str):
                raise ValueError("loss needs a `name:` (categorical_crossentropy, ...)")
            check_name(loss, LOSSES, "loss", "compile.loss")
        self.metrics = [canonical_metric(m) for m in self.metrics]
        return self

    @property
    def schedule(self) -> ScheduleBase | None:
        """The learning-rate schedule of `optimizer.learning_rate`, or None for a fixed rate."""
        rate = self.optimizer.get("learning_rate") if isinstance(self.optimizer, dict) else None
        return parse_schedule(rate) if isinstance(rate, dict) else None


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, le=MAX_INT32, description="Total number of epochs (with `phases`: their sum).")
    batch_size: int = Field(32, ge=1, le=MAX_INT32, description="Examples per batch: under a distribution, the "
                            "global batch, split evenly over the replicas.")
    shuffle: bool = Field(True, description="Shuffle the training data every epoch (seeded).")
    deterministic: bool = Field(
        False, description="Turn on TensorFlow's op determinism: repeatable results, somewhat slower."
    )
    verbose: Literal["auto", 0, 1, 2] = Field("auto", description="Keras' progress output: 1 bar, 2 a line.")
    mixed_precision: bool = Field(
        False, description="Compute in 16-bit floats, keep weights in float32: Keras' `mixed_float16` policy on "
        "a GPU, `mixed_bfloat16` on a CPU. The output layer stays float32 (a stable softmax). On a CPU without "
        "native bfloat16 (no AVX512_BF16 or AMX-BF16, e.g. AVX2 alone) it is emulated and many times slower: "
        "`train` and `profile` say so in one warning line before any data loads."
    )
    distribution: Literal["auto", "none", "mirrored", "data_parallel"] = Field(
        "auto", description="How training spreads over devices and machines. `mirrored`: TensorFlow's "
        "MirroredStrategy over the GPUs (or `devices`) of one machine. `data_parallel`: Keras' DataParallel on the "
        "JAX backend, over every local device or, with `KERAS_DISTRIBUTION_*` set, every process of a cluster. "
        "`auto`: data_parallel when `KERAS_DISTRIBUTION_*` are set; with several GPUs (or `devices`), mirrored on "
        "TensorFlow and data_parallel on JAX; else `none`. `batch_size` is the global batch."
    )
    devices: list[str] | None = Field(
        None, description="mirrored: the devices to train on, e.g. `[/gpu:0, /gpu:1]`; default: every GPU. "
        "Listing CPU devices beyond `/cpu:0` (`[/cpu:0, /cpu:1]`) splits the processor into that many logical "
        "devices, to try several replicas without GPUs."
    )
    scale_learning_rate: Literal["none", "linear"] = Field(
        "none", description="`linear`: a new run's learning rate is the configured one × the number of replicas. "
        "`none`: as configured. A schedule is scaled whole: every rate in it."
    )
    coordinator_timeout: float = Field(
        120, gt=0, description="Several processes: seconds a process other than 0 waits for the coordinator "
        "(the first address of `KERAS_DISTRIBUTION_JOB_ADDRESSES`) to accept connections."
    )
    phases: list[PhaseConfig] | None = Field(
        None, description="Fine-tuning in phases, one after the other: `- {epochs: 3, trainable: none, "
        "learning_rate: 0.001}` then `- {epochs: 2, trainable: all, learning_rate: 1.0e-5}`. Each phase: `epochs`; "
        "`trainable`: `none` (the base is frozen, the head trains), `all`, `{from: LAYER_NAME}` or `{last: N}` "
        "(the base's last N layers with weights); `learning_rate` (a number or a schedule, counted from the "
        "phase's first epoch) and `optimizer` (as `compile.optimizer`, its default); `cache_features` (`true` or "
        "K views: a frozen backbone's outputs computed once at the phase's start, the head trained on them; "
        "default false). Each phase starts with a fresh optimizer; BatchNormalization layers of the base never "
        "train. See \"Phases\"."
    )

    class_weight: Literal["balanced"] | dict[str, float] | None = Field(
        None, description="Weigh each training example's loss by its class: `balanced` (n_samples / (n_classes × "
        "count), scikit-learn's rule, over the training split) or `{cat: 2.0, dog: 1.0}` by class name (classes "
        "left out weigh 1; every weight > 0). Passed to Keras' `fit(class_weight=…)` in every phase and on "
        "resume; training metrics are weighted too, validation and test never. Default: none (every class 1). "
        "See \"Imbalanced classes\"."
    )

    @field_validator("class_weight", mode="before")
    @classmethod
    def _known_class_weight(cls, value: Any) -> Any:
        return check_class_weight(value)

    @field_validator("phases", mode="before")
    @classmethod
    def _known_phases(cls, value: Any) -> Any:
        return check_phases(value)

    @model_validator(mode="after")
    def _epochs_of_phases(self) -> "TrainConfig":
        if self.phases:
            self.epochs = total_epochs(self.phases, self.epochs, "epochs" in self.model_fields_set)
            if self.epochs > MAX_INT32:
                raise UserError(f"train.phases: {self.epochs} epochs in all; at most {MAX_INT32}")
        return self

    @model_validator(mode="after")
    def _known_devices(self) -> "TrainConfig":
        """Devices are written as TensorFlow writes them (`/gpu:0`, `GPU:0`, `/device:GPU:0`), kept as `/gpu:0`."""
        if self.devices is not None:
            names = []
            for name in self.devices:
                match = _DEVICE.fullmatch(name.strip())
                if not match:
                    raise ValueError(f"devices: '{name}' is not a device; write /gpu:0, /gpu:1, … or /cpu:0, /cpu:1")
                names.append(f"/{match.group(1).lower()}:{match.group(2)}")
            if not names or len(set(names)) != len(names):
                raise ValueError(f"devices: a list of different devices, got {self.devices}")
            if len({n.split(":")[0] for n in names}) > 1:
                raise ValueError(f"devices: all GPUs or all CPUs, not both, got {self.devices}")
            self.devices = names
        return self


class OutputConfig(Section):
    dir: str = Field("outputs", description="Runs go to `<dir>/<name>/<YYYYMMDD-HHMMSS>/`.")
    plots: bool = Field(True, description="Write `history.png` after every epoch (at most every 5 s).")
    report: bool = Field(True, description="Write `report.html`, the run's page (`cnnrun report`), when `train`, "
                                           "`resume` and `evaluate` end; `cnnrun report` writes it either way.")


class Experiment(Section):
    """A whole experiment: what `cnnrun train` runs, and what a run's `config.yaml` holds (defaults included)."""

    _source: str | None = PrivateAttr(default=None)  # the file it was read from, named in later errors

    @property
    def source(self) -> str | None:
        """The config file this experiment was read from, or None."""
        return self._source

    def __eq__(self, other: object) -> bool:
        """Two experiments are equal when they say the same, whichever file they were read from."""
        return isinstance(other, Experiment) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable, as every pydantic model

    name: str = Field(description="The experiment's name, one folder name (no `/`, not `.` or `..`): runs go to "
                      "`<output.dir>/<name>/`. Default: the config file's name.",
                      json_schema_extra={"default_shown": "the file's name"})
    description: str | None = Field(None, description="Free text, shown in the header.")
    seed: int = Field(42, ge=0, lt=2**32, description="Seeds Python, NumPy and Keras (0 to 2³² − 1); recorded in "
                      "the run.")
    backend: Literal["tensorflow", "jax"] = Field(
        default_factory=lambda: os.environ.get("KERAS_BACKEND", "tensorflow"),
        description="The Keras backend: `tensorflow`, or `jax` (`pip install cnnrun[jax]`), which several "
        "machines need. Default: `$KERAS_BACKEND`, else tensorflow. Input pipelines are `tf.data` on both.",
        json_schema_extra={"default_shown": "`$KERAS_BACKEND`, else `tensorflow`"},
    )
    vars: dict[str, Any] = Field(default_factory=dict, description="Values for `${name}` anywhere in the file.")
    dataset: DatasetConfig = Field(
        default_factory=ShapesDataset, description="What data, how it is split and normalised; the keys depend on "
        "`dataset.name` (one table per kind below)."
    )
    model: ModelConfig = Field(description="The network.")
    compile: CompileConfig = Field(default_factory=CompileConfig, description="Optimizer, loss, metrics.")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Epochs, batch size, distribution over devices and machines."
    )
    augmentation: AugmentationConfig | None = Field(
        None, description="Random changes to training images (absent: none)."
    )
    callbacks: CallbacksConfig = Field(default_factory=CallbacksConfig, description="Checkpoints and Keras "
                                       "callbacks.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs go.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="How checkpoints are judged: "
                                     "train's test scores, `evaluate` and `predict`.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Experiment trackers that also "
                                     "keep the run (MLflow).")

    @model_validator(mode="after")
    def _normalised_once(self) -> "Experiment":
        """A backbone normalises its images itself (its `preprocessing`, unless `none`): the data must not."""
        backbones = [(where, args) for where, args in self.model.backbones()
                     if args.get("preprocessing", "family") != "none"]
        if backbones and self.dataset.normalize != "none":
            where, args = backbones[0]
            mode = args.get("preprocessing", "family")
            applied = f"{args['name']}'s own preprocess_input" if mode == "family" else f"preprocessing: {mode}"
            raise UserError(f"dataset.normalize: {self.dataset.normalize} would normalise the images twice: "
                            f"{where} applies {applied} inside the model, on pixel values 0-255; set "
                            f"dataset.normalize: none")
        return self

    @model_validator(mode="after")
    def _cached_without_chance(self) -> "Experiment":
        """Cached features are fixed: with augmentation, only as a given number of fixed views."""
        for index, phase in enumerate(self.train.phases or []):
            if phase.cache_features is not False and mixes_labels(self.augmentation):
                raise UserError(f"train.phases.{index}.cache_features: augmentation.mixup/cutmix blend pictures "
                                f"before the backbone in every batch, which no cached feature holds; train this "
                                f"phase without mixup and cutmix, or without cache_features")
            if phase.cache_features is not False and alternates_flips(self.augmentation):
                raise UserError(f"train.phases.{index}.cache_features: horizontal_flip: alternate flips by epoch, "
                                f"which no cached view holds; give horizontal_flip: true (K views cache K random "
                                f"draws), or train this phase without cache_features")
            if phase.cache_features is True and self.augmentation:
                raise UserError(f"train.phases.{index}.cache_features: true, but augmentation changes the pictures "
                                f"before the backbone in every epoch; give cache_features: K to cache K fixed "
                                f"augmented views of every picture (epoch e trains on view e mod K), or train this "
                                f"phase without augmentation")
        return self

    @model_validator(mode="after")
    def _one_balancing(self) -> "Experiment":
        """Balanced sampling draws each epoch's pictures anew: not with class weights, nor with alternating flips."""
        if self.dataset.sampling == "balanced" and self.train.class_weight is not None:
            raise UserError("dataset.sampling: balanced already gives every class the same weight in an epoch; "
                            "remove train.class_weight, or give sampling: natural")
        if self.dataset.sampling == "balanced" and alternates_flips(self.augmentation):
            raise UserError("dataset.sampling: balanced draws pictures anew each epoch, which horizontal_flip: "
                            "alternate cannot follow; give horizontal_flip: true, or sampling: natural")
        return self

    @model_validator(mode="after")
    def _one_weight_average(self) -> "Experiment":
        optimizer = self.compile.optimizer
        if self.callbacks.lookahead is not None and isinstance(optimizer, dict) and optimizer.get("use_ema"):
            raise UserError("callbacks.lookahead: not with compile.optimizer.use_ema (two averages of the same "
                            "weights); keep one of them")
        return self

    @model_validator(mode="after")
    def _pipeline_on_tensorflow(self) -> "Experiment":
        if self.backend != "tensorflow" and self.augmentation is not None and self.augmentation.placement == "pipeline":
            raise UserError("augmentation.placement: pipeline runs the layers inside tf.data, which only the "
                            "tensorflow backend can; give placement: model (or auto) with backend: jax")
        return self

    @model_validator(mode="after")
    def _metrics_of_mixed_labels(self) -> "Experiment":
        """Sparse labels are trained one-hot under mixup or cutmix: a metric for class numbers would fail."""
        if trained_label_mode(self.dataset.label_mode, self.augmentation) != self.dataset.label_mode:
            for metric in self.compile.metrics:
                if metric.startswith("sparse_"):
                    raise UserError(f"compile.metrics: {metric} takes class numbers, but augmentation.mixup/cutmix "
                                    f"blend the labels into one-hot shares; use {metric.removeprefix('sparse_')}")
        return self

    @model_validator(mode="after")
    def _regression_fits(self) -> "Experiment":
        """Numbers a picture: no class weights, no mixing of one-hot labels (`cnnrun.config.regression`)."""
        if (error := experiment_misfit(self)) is not None:
            raise UserError(error)
        return self

    @model_validator(mode="after")
    def _multi_label_fits(self) -> "Experiment":
        """Several labels per picture: no class weights (a picture has no one class) and no mixing of labels."""
        if self.dataset.label_mode != "multi_label":
            return self
        if self.train.class_weight is not None:
            raise UserError("train.class_weight: weighs each picture by its one class, but dataset.label_mode: "
                            "multi_label gives a picture several labels; leave class_weight out (or use "
                            "compile.loss: binary_focal_crossentropy)")
        if mixes_labels(self.augmentation):
            raise UserError("augmentation.mixup/cutmix: not with dataset.label_mode: multi_label (cnnrun blends "
                            "one-hot labels only); leave mixup and cutmix out")
        return self

    @model_validator(mode="after")
    def _augmentation_fits(self) -> "Experiment":
        """A cutout or crop padding larger than the pictures (an npz's are checked when its arrays are read)."""
        size = picture_size(self.dataset)
        if size is not None:
            check_fits(self.augmentation, size, pictures_of(self.dataset))
        return self

    @model_validator(mode="after")
    def _one_rate_changer(self) -> "Experiment":
        if self.callbacks.reduce_lr_on_plateau is not None and self.compile.schedule is not None:
            raise UserError("callbacks.reduce_lr_on_plateau: cannot change a learning-rate schedule "
                            "(compile.optimizer.learning_rate); use one or the other")
        for index, phase in enumerate(self.train.phases or []):
            optimizer = phase_optimizer(self.compile.optimizer, phase)
            if isinstance(optimizer, dict) and optimizer.get("use_ema"):
                raise UserError("compile.optimizer.use_ema: not with train.phases (each phase starts a fresh "
                                "optimizer); leave it out or train without phases")
            if self.callbacks.reduce_lr_on_plateau is not None and \
                    isinstance(optimizer, dict) and isinstance(optimizer.get("learning_rate"), dict):
                raise UserError(f"callbacks.reduce_lr_on_plateau: cannot change the learning-rate schedule of "
                                f"train.phases.{index}; use one or the other")
        return self

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, value: Any) -> Any:
        if value not in ("tensorflow", "jax"):
            raise ValueError("use tensorflow or jax (the default comes from $KERAS_BACKEND)")
        return value

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        """The name becomes a folder under `output.dir`: it must not lead anywhere else."""
        if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise ValueError("one folder name, without '/' and not '.' or '..' (runs go to <output.dir>/<name>/)")
        return name

    @field_validator("dataset", mode="before")
    @classmethod
    def _shapes_by_default(cls, value: Any) -> Any:
        return default_name(value)

    @property
    def has_validation(self) -> bool:
        """Whether training has validation data: a split of the training data, or an image folder's or a table's
        own."""
        dataset = self.dataset
        return dataset.validation_split is not None or dataset.holdout_first is not None \
            or has_own_validation(dataset)
