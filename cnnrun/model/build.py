"""Build a `keras.Model` from the experiment's layers, and the compile arguments from its `compile:` section.

A plain layer list builds a `keras.Sequential`; a graph (`id:`, `inputs:`, `model.blocks`) a functional
`keras.Model`, wired by `cnnrun.model.graph`.

Every layer's arguments are checked against the Keras class's own signature before anything is built, so a
typo is one clear line, not a Keras traceback halfway through.

Example:
>>> model = build_model(experiment, input_shape=(28, 28, 1), num_classes=10)
>>> model.count_params()
412778
"""

import contextlib
import inspect
import re
from typing import Any

from cnnrun.config import Experiment, iter_layer_entries, substitute
from cnnrun.config.augmentation import trained_label_mode
from cnnrun.config.dataset import targets_of
from cnnrun.config.graph import expand_graph, is_graph
from cnnrun.config.imbalance import check_class_names
from cnnrun.config.registry import REGULARIZERS, check_arguments, check_layer_name
from cnnrun.devices.distribute import gpu_visible
from cnnrun.devices.machine import CpuFeatures, cpu_features
from cnnrun.errors import UserError
from cnnrun.model.compiling import compile_model
from cnnrun.model.graph import connect, keras_reason, misfit
from cnnrun.model.init_from import copy_matching_weights
from cnnrun.model.initializers import own_initializer
from cnnrun.model.layer_names import name_unnamed
from cnnrun.model.regression import check_linear_head

# the arguments that regularize a layer's kernels (a separable conv has two), which `model.weight_decay` sets
KERNEL_REGULARIZERS = ("kernel_regularizer", "depthwise_regularizer", "pointwise_regularizer")

def _regularizer(value: Any, where: str):
    """`{l2: 1e-4}`, `{l1: 1e-5}`, `{l1_l2: {l1: .., l2: ..}}` or `{l1: .., l2: ..}` -> a Keras regularizer."""
    import keras

    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict) or not value or not set(value) <= set(REGULARIZERS):
        raise UserError(f"{where}: a regularizer is {{l1: x}}, {{l2: x}} or {{l1_l2: {{l1: x, l2: y}}}}, "
                        f"got {value!r}")
    if "l1_l2" in value:
        args = value["l1_l2"] if isinstance(value["l1_l2"], dict) else {}
        return keras.regularizers.L1L2(**args)
    if set(value) == {"l1", "l2"}:
        return keras.regularizers.L1L2(l1=value["l1"], l2=value["l2"])
    (name, factor), = value.items()
    return getattr(keras.regularizers, REGULARIZERS[name])(factor)


def _layer_arguments(cls: type, args: Any, where: str, weight_decay: float = 0.0) -> dict[str, Any]:
    """A layer entry's value as keyword arguments: a mapping, or one value for the first argument.

    Args:
        cls: the Keras layer class.
        args: the entry's value in the config.
        where: the entry's place in the config, for error messages.
        weight_decay: `model.weight_decay`: every kernel the layer has (Conv, Dense; a separable conv's depthwise
            and pointwise kernels) whose regularizer the entry does not set gets `L2(weight_decay / 2)`: Keras' L2
            adds `l2 × Σ w²` to the loss, the papers' decay `weight_decay / 2 × Σ w²` (gradient `weight_decay × w`).
            Defaults to 0 (none).
    """
    if args is None:
        kwargs: dict[str, Any] = {}
    elif isinstance(args, dict):
        kwargs = dict(args)
    else:
        first = next(p for p in inspect.signature(cls.__init__).parameters if p != "self")
        kwargs = {first: args}
    check_arguments(cls, kwargs, where)
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "depthwise_regularizer",
                "pointwise_regularizer", "beta_regularizer", "gamma_regularizer"):  # the last two: BatchNorm's
        if key in kwargs:
            kwargs[key] = _regularizer(kwargs[key], f"{where}.{key}")
    for key in ("kernel_initializer", "depthwise_initializer", "pointwise_initializer"):
        if key in kwargs:
            kwargs[key] = own_initializer(kwargs[key], f"{where}.{key}", cls)
    if weight_decay:
        import keras

        accepted = inspect.signature(cls.__init__).parameters
        for key in KERNEL_REGULARIZERS:
            if key in accepted and key not in kwargs:
                kwargs[key] = keras.regularizers.L2(weight_decay / 2)
    return kwargs


def precision_policy(experiment: Experiment) -> str:
    """The Keras dtype policy of `train.mixed_precision`: float32, mixed_float16 (GPU) or mixed_bfloat16 (CPU)."""

    if not experiment.train.mixed_precision:
        return "float32"
    return "mixed_float16" if gpu_visible() else "mixed_bfloat16"


def emulated_bfloat16(experiment: Experiment, cpu: CpuFeatures | None = None) -> str | None:
    """A one-line warning when `train.mixed_precision` would compute in bfloat16 on a CPU that only emulates it.

    Without AVX512_BF16 or AMX-BF16 (e.g. AVX2 alone) TensorFlow's bfloat16 kernels convert to float32 and back,
    many times slower than float32 itself; the run still trains (its numbers are right), and `train` and `profile`
    show this line before any data loads.

    Args:
        experiment: the validated experiment.
        cpu: the CPU to judge (`cnnrun.devices.machine.CpuFeatures`). Defaults to this machine's /proc/cpuinfo.

    Returns:
        The warning, or None (float32, a GPU, or a CPU with native bfloat16).
    """
    if precision_policy(experiment) != "mixed_bfloat16":
        return None
    cpu = cpu or cpu_features()
    if cpu.native_bf16:
        return None
    return (f"train.mixed_precision: bfloat16 is emulated on this CPU ({cpu.model}; flags: "
            f"{' '.join(cpu.flags) or 'none of note'}; no AVX512_BF16 or AMX-BF16), many times slower than float32; "
            "set it to false here (it pays on a GPU or a CPU with those)")


def layer_specs(entries, output_dtype: str | None = None, weight_decay: float = 0.0
                ) -> list[tuple[str, type, dict[str, Any]]]:
    """Each `(where, name, arguments)` entry as `(where, Keras class, keyword arguments)`, every argument checked.

    Args:
        entries: the layers as the config names them, `where` being a layer's place in the config.
        output_dtype: a dtype policy for the last layer (float32 under mixed precision), unless it sets its own.
        weight_decay: `model.weight_decay`, the papers' L2 on every kernel that sets no regularizer of its own.
    """
    import keras

    specs = []
    for where, name, args in entries:
        class_name = check_layer_name(name, where)
        if class_name == "cnnrun.backbone":  # built on its input's shape: `cnnrun.model.backbones.Backbone`
            from cnnrun.model.backbones import Backbone

            specs.append((where, Backbone, {"config": args, "where": where}))
            continue
        if class_name.startswith("cnnrun."):  # cnnrun's own layers
            from cnnrun.model.whitening import PatchWhitening

            cls = {"cnnrun.PatchWhitening": PatchWhitening}[class_name]
        else:
            cls = getattr(keras.layers, class_name)
        specs.append((where, cls, _layer_arguments(cls, args, where, weight_decay)))
    if output_dtype and specs:
        specs[-1][2].setdefault("dtype", output_dtype)
    return specs


def instantiate(specs: list[tuple[str, type, dict[str, Any]]]) -> list[tuple[str, Any]]:
    """Make the layers of `layer_specs`, unnamed ones named by `name_unnamed`; an argument Keras refuses is one line
    naming the layer."""
    name_unnamed(specs)
    layers = []
    for where, cls, kwargs in specs:
        try:
            layers.append((where, cls(**kwargs)))
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: {str(e).splitlines()[0]}") from e
    return layers


def build_layers(experiment: Experiment, num_classes: int, output_dtype: str | None = None
                 ) -> list[tuple[str, Any]]:
    """Instantiate a chain's layers (no model yet), after checking every argument.

    Args:
        experiment: the validated experiment.
        num_classes: fills `${num_classes}`.
        output_dtype: a dtype policy for the last layer (float32 under mixed precision), unless it sets its own.

    Returns `(where, layer)` pairs, `where` being the layer's place in the config for error messages.
    """
    raw = substitute(experiment.model.layers, {"num_classes": num_classes}, "model.layers")
    return instantiate(layer_specs(iter_layer_entries(raw), output_dtype, experiment.model.weight_decay))


def build_model(experiment: Experiment, input_shape: tuple[int, ...], num_classes: int, augmenter=None):
    """Build the experiment's model for inputs of `input_shape` (without the batch axis).

    A chain (a plain layer list) is a `keras.Sequential`; a graph (ids, inputs, blocks) a functional
    `keras.Model`. A layer that cannot take its input (a window larger than its input, a join of shapes that do
    not fit) and an output layer that does not fit the classes and `dataset.label_mode` are one-line errors
    naming the layer.

    Args:
        experiment: the validated experiment.
        input_shape: `(height, width, channels)`.
        num_classes: fills `${num_classes}` in the layers.
        augmenter: augmentation layers to put first (active in training only), or None.
    """
    import keras

    policy = precision_policy(experiment)
    keras.config.set_dtype_policy(policy)  # process-wide in Keras: set for every model, mixed or not
    output_dtype = "float32" if policy != "float32" else None
    name = keras_name(experiment.model.name or experiment.name)
    if is_graph(experiment.model.layers, experiment.model.blocks):
        model, last = _graph_model(experiment, input_shape, num_classes, augmenter, output_dtype, name)
    else:
        model, last = _chain_model(experiment, input_shape, num_classes, augmenter, output_dtype, name)
    if experiment.dataset.label_mode == "regression":  # one linear number a target column
        check_linear_head(model, targets_of(experiment.dataset) or [], last)
        return model
    check_output(model, num_classes, experiment.dataset.label_mode, last)
    if experiment.dataset.label_mode == "multi_label":
        loss = experiment.compile.loss
        check_sigmoid(model, last, isinstance(loss, dict) and bool(loss.get("from_logits")))
    return model


def _chain_model(experiment: Experiment, input_shape, num_classes: int, augmenter, output_dtype, name):
    """The `keras.Sequential` of a plain layer list, and the place of its last layer (a backbone adds two)."""
    import keras

    from cnnrun.model.backbones import Backbone

    layers = build_layers(experiment, num_classes, output_dtype)
    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=tuple(input_shape)))
    if augmenter is not None:
        model.add(augmenter)
    for where, layer in layers:
        before = tuple(model.output_shape) if model.layers else (None, *input_shape)
        for part in layer.layers(before[1:]) if isinstance(layer, Backbone) else [layer]:
            try:
                model.add(part)
            except (ValueError, TypeError) as e:
                raise misfit(where, "the layer before it", before, e) from e
    return model, layers[-1][0]


def _graph_model(experiment: Experiment, input_shape, num_classes: int, augmenter, output_dtype, name):
    """The functional `keras.Model` of a graph, and the place of its output node.

    A block's `${p}` takes its value from the use's `args:`, else from the vars; a node's id names its Keras layer
    (`basic2_body` in the second copy of block `basic`), so `inspect` and `plot_model` show the config's names.
    """
    import keras

    variables = {**experiment.vars, **experiment.model.vars, "num_classes": num_classes}
    nodes = expand_graph(experiment.model.layers, experiment.model.blocks, variables)
    specs = layer_specs([(node.where, node.layer, node.args) for node in nodes], output_dtype,
                        experiment.model.weight_decay)
    for node, (_, _, kwargs) in zip(nodes, specs, strict=True):
        if node.name:
            kwargs.setdefault("name", node.name)
    layers = [layer for _, layer in instantiate(specs)]
    inputs = keras.Input(shape=tuple(input_shape))
    output = connect(nodes, layers, augmenter(inputs) if augmenter is not None else inputs)
    try:
        model = keras.Model(inputs, output, name=name)
    except ValueError as e:  # two layers of one name: an id and a `name:` argument, say
        raise UserError(f"model.layers: {keras_reason(e)} (an id is its layer's name: choose another id)") from e
    return model, nodes[-1].where


def check_output(model, num_classes: int, label_mode: str, where: str) -> None:
    """The last layer must give one value per class (`categorical`, `sparse`) or one value (`binary`)."""
    shape = tuple(model.output_shape)
    wanted = 1 if label_mode == "binary" else num_classes
    if len(shape) != 2 or shape[-1] != wanted:
        need = "1 unit (a sigmoid)" if label_mode == "binary" else f"{num_classes} units (`units: ${{num_classes}}`)"
        raise UserError(f"{where}: the model's output has shape {shape}, but dataset.label_mode {label_mode} with "
                        f"{num_classes} classes needs one value per example{'' if wanted == 1 else ' per class'}: "
                        f"end with Flatten (or a pooling layer) and a Dense layer of {need}")


def check_sigmoid(model, where: str, from_logits: bool) -> None:
    """Several labels a picture: each output is that label's own yes/no, so the last activation is a sigmoid (a
    softmax would make the labels compete for one share); a model trained on logits ends without one."""
    layer = model.layers[-1]
    kind = type(layer).__name__
    activation = "softmax" if kind == "Softmax" else getattr(getattr(layer, "activation", None), "__name__", None)
    wanted = "linear" if from_logits else "sigmoid"
    if activation != wanted and not (from_logits and activation is None):
        raise UserError(f"{where}: dataset.label_mode multi_label needs one independent yes/no per label: end with "
                        f"a Dense layer of activation: {wanted}"
                        + (" (compile.loss has from_logits: true)" if from_logits else "")
                        + f", not {activation or kind}")


def keras_name(name: str) -> str:
    """A name TensorFlow accepts as a scope: ASCII letters, digits and `_.-`, not starting with `_` or `-`.

    The run folder keeps the experiment's own name; only the Keras model's name is cleaned.

    Example:
    >>> keras_name("réseau_1"), keras_name("_draft")
    ('r_seau_1', 'draft')
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_-") or "model"


def declared_info(experiment: Experiment):
    """The dataset's input shape and classes as its config declares them, read without loading any image (the
    classes `train.class_weight` names checked against them)."""
    from cnnrun.data import DatasetInfo, describe

    shape, class_names = describe(experiment.dataset)
    check_class_names(experiment.train.class_weight, class_names)  # `train.class_weight`'s names, before any data
    return DatasetInfo(class_names=list(class_names), input_shape=list(shape),
                       label_mode=trained_label_mode(experiment.dataset.label_mode, experiment.augmentation),
                       normalize=experiment.dataset.normalize)


@contextlib.contextmanager
def naming_the_file(experiment: Experiment):
    """Put the config file's name before a UserError about the model (its layers, optimizer, loss, metrics)."""
    try:
        yield
    except UserError as e:
        if experiment.source:
            raise e.at(experiment.source) from e
        raise


def seed_everything(experiment: Experiment) -> None:
    """Seed Python, NumPy and Keras from the experiment's seed, and turn TensorFlow's op determinism on or off as
    `train.deterministic` says: it is process-wide, so a run after a deterministic one in the same process (a
    sweep's trials, `--seeds`, `--folds`) would otherwise stay deterministic, and slower, without asking."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # its switch off is not in the public API

    from cnnrun.data import allow_tensor_seeds

    keras.utils.set_random_seed(experiment.seed)
    allow_tensor_seeds()  # `seed: 0` is Keras' 0 and TensorFlow's 2³¹ − 2 (see there)
    if experiment.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    elif tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


def new_model(experiment: Experiment, info, augment_in_model: bool, replicas: int = 1,
              steps_per_epoch: int | None = None):
    """The experiment's model for `info`'s shape and classes, built from the experiment's seed, compiled, and its
    layers that match `model.init_from`'s checkpoint given that checkpoint's weights (`cnnrun.model.init_from`).

    Args:
        experiment: the validated experiment.
        info: a `DatasetInfo` (declared, or of the loaded data: its statistics set in-model augmentation's range).
        augment_in_model: put the augmentation layers first in the model.
        replicas: devices holding a replica; `train.scale_learning_rate: linear` multiplies the rate by it.
        steps_per_epoch: training batches per epoch, for a learning-rate schedule written in epochs (see
            `compile_model`). Defaults to None: only good to check the config with such a schedule.
    """
    from cnnrun.data import model_augmenter

    seed_everything(experiment)
    augmenter = model_augmenter(experiment, info) if augment_in_model else None
    with naming_the_file(experiment):
        model = build_model(experiment, tuple(info.input_shape), info.num_classes, augmenter)
        compile_model(model, experiment, steps_per_epoch, replicas)
        copy_matching_weights(model, experiment)
    return model
