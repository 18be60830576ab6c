"""The experiment schema and YAML loading: `base:` inheritance, `--set` overrides, `${vars}`.

This is the only module that reads YAML. Everything else receives an `Experiment`: typed, complete, validated.
The field descriptions below are the reference documentation of the YAML (the README's config reference
follows them).

Example:
>>> experiment = load_experiment("configs/quickstart.yaml", ["train.epochs=3"])
>>> experiment.train.epochs
3
"""

import ast
import copy
import operator
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnrun.errors import UserError, did_you_mean
from cnnrun.registry import LOSSES, OPTIMIZERS, canonical_metric, check_layer_name, check_name

BUILTIN_DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100")
_DEVICE = re.compile(r"/?(?:device:)?(cpu|gpu):(\d+)", re.IGNORECASE)


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatasetConfig(Section):
    name: Literal["shapes", "fashion_mnist", "mnist", "cifar10", "cifar100", "npz", "image_folder"] = Field(
        "shapes", description="Which data: the built-in `shapes` set, a Keras dataset, your own `npz` arrays, or "
        "an `image_folder` of class folders."
    )
    data_dir: str | None = Field(
        None,
        description="Keras datasets: a folder holding a local copy in Keras' cache layout (or, for cifar10/100, "
        "a `train/` and `test/` tree of class folders). Unset: Keras downloads into ~/.keras/datasets.",
    )
    path: str | None = Field(
        None, description="npz: the file with `x_train, y_train` and optionally `x_test, y_test`. image_folder: a "
        "folder holding `train/` (and optionally `validation/`, `test/`) of class folders, or class folders directly."
    )
    validation_split: float | None = Field(
        None, gt=0, lt=1, description="Fraction of the training data held out for validation: the last part, "
        "before shuffling, as Keras' `fit(validation_split=...)` takes it."
    )
    holdout_first: int | None = Field(
        None, gt=0, description="Hold out the first N training examples for validation (the course's CIFAR-10)."
    )
    test_split: float | None = Field(
        None, gt=0, lt=1, description="For data without a test split of its own (an image folder without "
        "`test/`, an npz without `x_test`): the fraction of the training data held out as the test split, taken "
        "from the end before validation (image folders are in a seeded order, so every class is in it)."
    )
    normalize: Literal["rescale", "standardize", "none"] = Field(
        "rescale", description="`rescale`: ÷255. `standardize`: (x − mean) / std with the training split's "
        "mean and std, stored in the run and reused by evaluate and predict. `none`: raw values."
    )
    label_mode: Literal["categorical", "sparse", "binary"] = Field(
        "categorical", description="`categorical`: one-hot labels. `sparse`: integer labels. `binary`: 0/1 "
        "labels for two classes (a sigmoid output)."
    )
    image_size: int | tuple[int, int] = Field(
        32, description="shapes: side of the square images in pixels. image_folder: [height, width] every "
        "image is resized to."
    )
    color_mode: Literal["rgb", "grayscale", "rgba"] = Field("rgb", description="image_folder: colour mode.")
    cache: Literal["auto", "none", "memory", "disk"] = Field(
        "auto", description="Image folders (and CIFAR's JPEG tree): where decoded images are kept after the first "
        "epoch. `none`: decode every epoch (memory stays flat however large the folder). `memory`: keep them in "
        "memory. `disk`: keep them in a temporary folder, removed at the end. `auto`: `memory` when the decoded "
        "images fit in 1 GiB, else `none`."
    )
    on_bad_file: Literal["skip", "error"] = Field(
        "skip", description="image_folder: what to do with files that do not decode (empty, truncated, not an "
        "image). `skip`: leave them out with one warning; the run's `bad_files.json` lists them. `error`: stop "
        "before training and name them."
    )
    channels: Literal[1, 3] = Field(1, description="shapes: 1 (grayscale) or 3 (colour).")
    num_classes: int = Field(
        3, ge=2, le=4, description="shapes: how many shape classes (circle, square, triangle, cross)."
    )
    num_samples: int = Field(3000, ge=10, description="shapes: number of training images.")
    test_samples: int = Field(600, ge=0, description="shapes: number of test images.")

    @model_validator(mode="after")
    def _consistent(self) -> "DatasetConfig":
        if self.validation_split is not None and self.holdout_first is not None:
            raise ValueError("set either validation_split or holdout_first, not both")
        if (self.validation_split or 0) + (self.test_split or 0) >= 1:
            raise ValueError("validation_split + test_split must leave training data (a sum under 1)")
        if self.name in ("npz", "image_folder") and not self.path:
            raise ValueError(f"the {self.name} dataset needs `path:`")
        if self.name not in ("npz", "image_folder") and self.path:
            raise ValueError(f"`path` is for the npz and image_folder datasets; {self.name} uses `data_dir`")
        sizes = self.image_size if isinstance(self.image_size, tuple) else (self.image_size,)
        if not all(8 <= side <= 1024 for side in sizes):
            raise ValueError(f"image_size: sides from 8 to 1024 pixels, got {self.image_size}")
        if self.name == "shapes" and isinstance(self.image_size, tuple):
            raise ValueError("image_size: the shapes dataset takes one number (square images)")
        if self.data_dir and self.name not in BUILTIN_DATASETS:
            raise ValueError(f"`data_dir` is for the Keras datasets ({', '.join(BUILTIN_DATASETS)})")
        # keys of one kind of dataset, given another value than their default (a run's config.yaml has them all)
        changed = {k for k in self.model_fields_set if getattr(self, k) != type(self).model_fields[k].default}
        own_keys = {"shapes": {"image_size", "channels", "num_classes", "num_samples", "test_samples"},
                    "image_folder": {"image_size", "color_mode", "on_bad_file"}}
        foreign = changed & set().union(*own_keys.values()) - own_keys.get(self.name, set())
        if foreign:
            owners = [n for n, keys in own_keys.items() if foreign & keys]
            raise ValueError(f"{', '.join(sorted(foreign))}: only for the {' and '.join(owners)} dataset")
        return self


class ModelConfig(Section):
    name: str | None = Field(None, description="The Keras model's name (default: the experiment's name).")
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Values for `${name}` in the layers (also allowed at the top level)."
    )
    layers: list[Any] = Field(
        min_length=1,
        description="The layers, in order, written as in Keras: `- Conv2D: {filters: 32, kernel_size: 3}`, "
        "`- Dropout: 0.2`, `- Flatten: {}`; `- repeat: {times: N, layers: [...]}` repeats a block. The input "
        "shape comes from the dataset; `${num_classes}` is the number of classes.",
    )

    @model_validator(mode="after")
    def _known_layers(self) -> "ModelConfig":
        for where, name, _ in iter_layer_entries(self.layers):
            check_layer_name(name, where)
        return self


class CompileConfig(Section):
    optimizer: str | dict[str, Any] = Field(
        "rmsprop", description="A name (adam, adamw, rmsprop, sgd, nadam, adamax, adagrad, adadelta, lion) or "
        "`{name: adam, learning_rate: 0.001, ...}` with the Keras optimizer's arguments."
    )
    loss: str | dict[str, Any] | None = Field(
        None, description="A Keras loss name or `{name: ..., from_logits: true, ...}`. Default: the "
        "crossentropy that matches `dataset.label_mode`."
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy"], description="Keras metric names; `acc` is logged as `accuracy`."
    )
    jit_compile: bool | Literal["auto"] = Field("auto", description="XLA compilation, as Keras' `compile`.")
    steps_per_execution: int = Field(1, ge=1, description="Batches per call into the compiled step.")

    @model_validator(mode="after")
    def _known_names(self) -> "CompileConfig":
        name = self.optimizer if isinstance(self.optimizer, str) else self.optimizer.get("name")
        if not isinstance(name, str):
            raise ValueError("optimizer needs a `name:` (adam, rmsprop, sgd, ...)")
        check_name(name, OPTIMIZERS, "optimizer", "compile.optimizer")
        if self.loss is not None:
            loss = self.loss if isinstance(self.loss, str) else self.loss.get("name")
            if not isinstance(loss, str):
                raise ValueError("loss needs a `name:` (categorical_crossentropy, ...)")
            check_name(loss, LOSSES, "loss", "compile.loss")
        self.metrics = [canonical_metric(m) for m in self.metrics]
        return self


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="Total number of epochs.")
    batch_size: int = Field(32, ge=1, description="Examples per batch: under a distribution, the global batch, "
                            "split evenly over the replicas.")
    shuffle: bool = Field(True, description="Shuffle the training data every epoch (seeded).")
    deterministic: bool = Field(
        False, description="Turn on TensorFlow's op determinism: repeatable results, somewhat slower."
    )
    verbose: Literal["auto", 0, 1, 2] = Field("auto", description="Keras' progress output: 1 bar, 2 a line.")
    mixed_precision: bool = Field(
        False, description="Compute in 16-bit floats, keep weights in float32: Keras' `mixed_float16` policy on "
        "a GPU, `mixed_bfloat16` on a CPU. The output layer stays float32 (a stable softmax)."
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
        "`none`: as configured."
    )
    coordinator_timeout: float = Field(
        120, gt=0, description="Several processes: seconds a process other than 0 waits for the coordinator "
        "(the first address of `KERAS_DISTRIBUTION_JOB_ADDRESSES`) to accept connections."
    )

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
    tensorboard: TensorBoardConfig | None = Field(None, description="Keras' TensorBoard arguments.")

    @model_validator(mode="after")
    def _canonical_monitors(self) -> "CallbacksConfig":
        for section in (self.checkpoint, self.early_stopping, self.reduce_lr_on_plateau):
            if section is not None:
                section.monitor = canonical_metric(section.monitor)
        return self


class AugmentationConfig(Section):
    """ImageDataGenerator's words; applied to training batches only (Keras preprocessing layers)."""

    rotation_range: float = Field(0, ge=0, le=180, description="Random rotation, ± degrees.")
    width_shift_range: float = Field(0, ge=0, lt=1, description="Random horizontal shift, ± fraction of width.")
    height_shift_range: float = Field(0, ge=0, lt=1, description="Random vertical shift, ± fraction of height.")
    zoom_range: float | tuple[float, float] = Field(
        0, description="Random zoom: a number z means [1 − z, 1 + z]; or [low, high]. Values < 1 zoom in."
    )
    shear_range: float = Field(0, ge=0, lt=90, description="Random shear, ± degrees.")
    horizontal_flip: bool = Field(False, description="Flip left-right at random.")
    vertical_flip: bool = Field(False, description="Flip upside-down at random.")
    brightness_range: tuple[float, float] | None = Field(
        None, description="Multiply brightness by a random factor in [low, high] (1 = unchanged)."
    )
    contrast_range: tuple[float, float] | None = Field(
        None, description="Scale contrast by a random factor in [low, high] (1 = unchanged)."
    )
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = Field(
        "nearest", description="How pixels outside the image are filled."
    )
    cval: float = Field(0, description="The fill value for `fill_mode: constant`, as a pixel value (0–255).")
    placement: Literal["auto", "pipeline", "model"] = Field(
        "auto", description="Where augmentation runs. `pipeline`: in the `tf.data` input pipeline on the CPU, "
        "overlapping training. `model`: as the model's first layers, on the GPU when there is one (they pass "
        "images through unchanged at inference). `auto`: `model` when a GPU is visible or the backend is not "
        "TensorFlow, else `pipeline`."
    )


class OutputConfig(Section):
    dir: str = Field("outputs", description="Runs go to `<dir>/<name>/<YYYYMMDD-HHMMSS>/`.")
    plots: bool = Field(True, description="Write `history.png` after every epoch.")


class Experiment(Section):
    name: str = Field(description="The experiment's name; default: the config file's name.")
    description: str | None = Field(None, description="Free text, shown in the header.")
    seed: int = Field(42, description="Seeds Python, NumPy and Keras; recorded in the run.")
    backend: Literal["tensorflow", "jax"] = Field(
        default_factory=lambda: os.environ.get("KERAS_BACKEND", "tensorflow"),
        description="The Keras backend: `tensorflow`, or `jax` (`pip install cnnrun[jax]`), which several "
        "machines need. Default: `$KERAS_BACKEND`, else tensorflow. Input pipelines are `tf.data` on both.",
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, value: Any) -> Any:
        if value not in ("tensorflow", "jax"):
            raise ValueError("use tensorflow or jax (the default comes from $KERAS_BACKEND)")
        return value
    vars: dict[str, Any] = Field(default_factory=dict, description="Values for `${name}` anywhere in the file.")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig
    compile: CompileConfig = Field(default_factory=CompileConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    augmentation: AugmentationConfig | None = None
    callbacks: CallbacksConfig = Field(default_factory=CallbacksConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @property
    def has_validation(self) -> bool:
        dataset = self.dataset
        own_folder = dataset.name == "image_folder" and (Path(dataset.path) / "validation").is_dir()
        return dataset.validation_split is not None or dataset.holdout_first is not None or own_folder


def iter_layer_entries(layers: list[Any], where: str = "model.layers"):
    """Yield `(where, layer_name, arguments)` for every layer entry, expanding `repeat:` blocks.

    An entry is `{Name: {args}}`, `{Name: value}` (the first argument, e.g. `Dropout: 0.2`) or a bare `Name`.
    """
    for i, entry in enumerate(layers):
        here = f"{where}[{i}]"
        if isinstance(entry, str):
            yield here, entry, {}
            continue
        if not isinstance(entry, dict) or len(entry) != 1:
            raise UserError(f"{here}: a layer is one `Name: {{arguments}}` pair, got {entry!r}")
        (name, args), = entry.items()
        if name == "repeat":
            if not isinstance(args, dict) or set(args) != {"times", "layers"}:
                raise UserError(f"{here}: repeat takes `{{times: N, layers: [...]}}`, got {args!r}")
            if not isinstance(args["times"], int) or args["times"] < 1:
                raise UserError(f"{here}.repeat.times: a whole number ≥ 1, got {args['times']!r}")
            if not isinstance(args["layers"], list) or not args["layers"]:
                raise UserError(f"{here}.repeat.layers: a non-empty list of layers")
            for _ in range(args["times"]):
                yield from iter_layer_entries(args["layers"], f"{here}.repeat.layers")
            continue
        yield f"{here} ({name})", name, args


# ---------------------------------------------------------------- YAML reading


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML mapping; a missing file or a syntax error is a UserError naming file and line."""
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(f"{where}: YAML syntax error: {e.problem}") from e
    except yaml.YAMLError as e:
        raise UserError(f"{path}: YAML error: {e}") from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UserError(f"{path}: an experiment is a YAML mapping (key: value), got {type(doc).__name__}")
    return doc


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` into a copy of `base`: mappings merge key by key, lists and values are replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config and the chain of `base:` files it extends (paths relative to each file)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise UserError(f"{path}: `base:` files form a loop: {chain}")
    doc = read_yaml(path)
    base = doc.pop("base", None)
    if base is None:
        return doc
    if not isinstance(base, str):
        raise UserError(f"{path}: base: a path to another YAML file, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise UserError(f"{path}: base: {base_path} not found")
    return deep_merge(load_with_bases(base_path, (*seen, path)), doc)


def apply_override(doc: dict[str, Any], assignment: str) -> None:
    """Apply one `--set KEY=VALUE`: KEY is a dotted path (list items by number), VALUE is read as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set {assignment}: write KEY=VALUE, e.g. --set train.epochs=3")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise UserError(f"--set {assignment}: the value is not valid YAML ({e})") from e
    parts = key.split(".")
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {key}: '{'.'.join(parts[:i])}' is a list of {len(node)}; "
                                f"'{part}' is not an index in it")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
            if not last and node.get(part) is None:
                node[part] = {}
        else:
            raise UserError(f"--set {key}: '{'.'.join(parts[:i])}' is a value, not a section")
        if last:
            node[index] = value
        else:
            node = node[index]


# ---------------------------------------------------------------- ${vars}

_VAR = re.compile(r"\$\{([^}]*)\}")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}
# filled in later from the dataset, when the model is built
LATE_VARS = ("num_classes",)


def evaluate_expression(text: str, variables: dict[str, Any], where: str) -> Any:
    """Evaluate `name`, a number, or arithmetic on them (`base_filters * 2`): no calls, no attributes."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in variables:
                known = ", ".join(sorted(variables)) or "none defined"
                raise UserError(f"{where}: unknown variable '{node.id}'{did_you_mean(node.id, variables)}; "
                                f"vars: {known}")
            return variables[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise UserError(f"{where}: '${{{text}}}' is not a variable or arithmetic (+ - * / // **) on variables")

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise UserError(f"{where}: '${{{text}}}' is not a valid expression") from e
    try:
        return walk(tree)
    except TypeError as e:
        raise UserError(f"{where}: '${{{text}}}' cannot be computed: {e}") from e


def substitute(value: Any, variables: dict[str, Any], where: str, keep: tuple[str, ...] = LATE_VARS) -> Any:
    """Replace `${...}` in every string of `value`; a string that is only `${...}` takes the value's type.

    Names in `keep` that are not in `variables` are left for later (`${num_classes}`).
    """
    if isinstance(value, dict):
        return {k: substitute(v, variables, f"{where}.{k}" if where else str(k), keep) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables, f"{where}[{i}]", keep) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _VAR.fullmatch(value.strip())
    if whole:
        expr = whole.group(1).strip()
        if expr in keep and expr not in variables:
            return value
        return evaluate_expression(expr, variables, where)

    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr in keep and expr not in variables:
            return match.group(0)
        return str(evaluate_expression(expr, variables, where))

    return _VAR.sub(one, value)


def resolve_vars(doc: dict[str, Any]) -> dict[str, Any]:
    """Substitute the top-level `vars:` and `model.vars:` (the latter wins) everywhere but in the vars."""
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    top, local = doc.get("vars") or {}, model.get("vars") or {}
    if not isinstance(top, dict) or not isinstance(local, dict):
        raise UserError("vars: a mapping of names to values, e.g. `vars: {base_filters: 32}`")
    variables = {**top, **local}
    resolved = {}
    for key, value in doc.items():
        if key == "vars":
            resolved[key] = value
        elif key == "model" and isinstance(value, dict):
            resolved[key] = {k: v if k == "vars" else substitute(v, variables, f"model.{k}")
                             for k, v in value.items()}
        else:
            resolved[key] = substitute(value, variables, key)
    return resolved


# ---------------------------------------------------------------- validation


def _field_names_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema accepts at `loc` (for "did you mean" on an unknown key)."""
    cls: Any = Experiment
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return []
        annotation = cls.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        cls = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return []


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line for the first problem pydantic found: file, key path, what is wrong, what would be right."""
    first = error.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    key = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        known = _field_names_at(loc[:-1])
        hint = did_you_mean(str(loc[-1]), known)
        section = ".".join(str(p) for p in loc[:-1]) or "the top level"
        return f"{source}: unknown key '{key}'{hint}; {section} takes: {', '.join(known)}"
    if first["type"] == "missing":
        return f"{source}: {key}: required key is missing"
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{source}: {key}: {message}{shown}"


def resolve_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a config with its bases, apply `--set` overrides, substitute vars: a plain dict."""
    path = Path(path)
    doc = load_with_bases(path)
    for assignment in overrides or []:
        apply_override(doc, assignment)
    doc = resolve_vars(doc)
    doc.setdefault("name", path.stem)
    return doc


def validate_experiment(doc: dict[str, Any], source: str) -> Experiment:
    """Validate a resolved config dict; problems become a one-line UserError naming `source` and the key."""
    try:
        return Experiment.model_validate(doc)
    except ValidationError as e:
        raise UserError(format_validation_error(e, source)) from e
    except UserError as e:  # raised by a section's own check (unknown layer, optimizer, loss)
        raise UserError(f"{source}: {e}") from e


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Load, resolve and validate an experiment file.

    Args:
        path: the YAML file.
        overrides: `KEY=VALUE` strings, as given to `--set`.
    """
    return validate_experiment(resolve_config(path, overrides), str(path))


def experiment_to_yaml(experiment: Experiment) -> str:
    """The complete experiment (defaults included) as YAML: what a run's `config.yaml` holds."""
    return yaml.safe_dump(experiment.model_dump(mode="json"), sort_keys=False, allow_unicode=True,
                          width=float("inf"))  # a long value stays on its line, as written
