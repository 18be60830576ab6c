"""`cnnrun inspect`: build an experiment's model and show its layers, output shapes and parameter counts.

A graph's table also names the inputs of every node; `--plot FILE.png` draws the model with Keras' `plot_model`.
"""

from dataclasses import dataclass
from pathlib import Path

from cnnrun.config import Experiment
from cnnrun.errors import UserError
from cnnrun.model.compiling import compile_model
from cnnrun.teach import shape_math


@dataclass(frozen=True)
class LayerRow:
    """One layer of `inspect`'s table."""

    index: int
    name: str
    kind: str  # the class name, or the Keras application a nested backbone came from
    inputs: str | None  # a graph's: the layers it takes, by name (None for a Sequential model)
    size: str  # the output-size arithmetic, or ""
    output_shape: str
    params: int
    params_formula: str  # the parameter-count arithmetic, or ""
    init_from: str | None  # with model.init_from: taken from the run, or fresh (None without)


@dataclass(frozen=True)
class Inspection:
    """What `inspect_experiment` found: the layers, parameter counts and notes; the CLI shows it as a table."""

    title: str  # `<experiment>: input (h, w, c), N classes`
    graph: bool  # a functional model: the table has an `inputs` column
    layers: tuple[LayerRow, ...]
    backbones: tuple[str, ...]  # a line per nested Keras application
    total: int
    trainable: int
    init_from: str | None  # model.init_from summed up
    phases: str | None  # train.phases described
    drawn: Path | None  # the --plot file written

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable


def inspect_experiment(experiment: Experiment, plot: Path | None = None) -> Inspection:
    """Build and compile the model on the dataset's declared shape and class count (no images loaded).

    Every error a training would meet before its first step is found here: layer arguments, shapes that do not
    fit (a join of two shapes included), an output that does not match the classes, the optimizer, the loss
    against `dataset.label_mode`. A graph's table has an `inputs` column: the layers each node takes, by name (a
    node's `id:` is its layer's name). With `model.init_from`, an `init_from` column says which layers would take
    the run's weights and which start fresh (`cnnrun.model.init_from.plan_init`), and a line sums it up.

    Args:
        experiment: the validated experiment.
        plot: also draw the model into this PNG file with `keras.utils.plot_model` (needs pydot and Graphviz).

    Returns an `Inspection` (nothing is printed).
    """
    from cnnrun.model.backbones import describe_backbones, find_backbones
    from cnnrun.model.build import build_model, declared_info, naming_the_file
    from cnnrun.model.features import check_cacheable
    from cnnrun.model.init_from import plan_init
    from cnnrun.model.phases import check_phases, describe_phases

    if plot is not None:
        check_plotting()
    info = declared_info(experiment)
    input_shape, class_names = tuple(info.input_shape), info.class_names
    with naming_the_file(experiment):
        model = build_model(experiment, input_shape, len(class_names))
        compile_model(model, experiment)  # the optimizer, the loss against dataset.label_mode, the metrics
        matching = plan_init(model, experiment)  # model.init_from: the run's checkpoint read and matched
    check_phases(model, experiment)  # train.phases: their layer names and optimizers
    check_cacheable(model, experiment)  # their cache_features: a model cut at its backbone
    graph = not _is_sequential(model)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    applications = {backbone.name: application for application, backbone in find_backbones(model)}
    rows = []
    for i, layer in enumerate(layers):
        size, params = layer_arithmetic(layer)
        rows.append(LayerRow(i, layer.name, applications.get(layer.name, type(layer).__name__),
                             ", ".join(layer_inputs(layer)) if graph else None, size, str(tuple(layer.output.shape)),
                             layer.count_params(), params, matching.status(layer) if matching else None))
    if plot is not None:
        draw(model, plot)
    return Inspection(
        title=f"{experiment.name}: input {input_shape}, {len(class_names)} classes", graph=graph, layers=tuple(rows),
        backbones=tuple(describe_backbones(model)), total=model.count_params(),
        trainable=sum(int(w.numpy().size) for w in model.trainable_weights),
        init_from=matching.describe() if matching is not None else None,
        phases=describe_phases(experiment) if experiment.train.phases else None, drawn=plot)


def _is_sequential(model) -> bool:
    import keras

    return isinstance(model, keras.Sequential)


def layer_inputs(layer) -> list[str]:
    """The names of the layers a layer of a functional model takes (`input` for the model's input).

    Example:
    >>> layer_inputs(model.get_layer("add"))
    ['basic1_body', 'basic1_short']
    """
    nodes = getattr(layer, "_inbound_nodes", [])
    parents = nodes[0].parent_nodes if nodes else []
    return ["input" if type(parent.operation).__name__ == "InputLayer" else parent.operation.name
            for parent in parents]


PLOT_FIX = ("pip install 'cnnrun[plot]' (pydot), and Graphviz's `dot` program (apt install graphviz, brew install "
            "graphviz, conda install graphviz)")


def check_plotting() -> None:
    """Raise a UserError saying what to install unless pydot imports and Graphviz's `dot` is on the PATH."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("pydot") is None or shutil.which("dot") is None:
        raise UserError("needs pydot and Graphviz", where="--plot", fix=PLOT_FIX)


def draw(model, path: Path) -> None:
    """Draw `model` into `path` with `keras.utils.plot_model`: every layer with its name, type and shapes."""
    import keras

    if path.suffix.lower() != ".png":
        raise UserError("not a .png file", where=f"--plot {path}", fix="write the drawing to a .png file")
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True, dpi=96)
    except (ImportError, OSError) as e:
        raise UserError(f"needs pydot and Graphviz ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                        where="--plot", fix=PLOT_FIX) from e


SIZE_LAYERS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "MaxPooling2D", "AveragePooling2D")


def layer_arithmetic(layer) -> tuple[str, str]:
    """The output-size formula and the parameter-count formula of a built Keras layer, with its numbers.

    Size: Conv2D, SeparableConv2D, DepthwiseConv2D, MaxPooling2D and AveragePooling2D, e.g.
    `(28 + 2·1 − 3)/1 + 1 = 28` (rows and columns separately when they differ). Parameters: Conv2D, Dense,
    DepthwiseConv2D and SeparableConv2D, e.g. `(3·3·1 + 1)·16 = 160`. Other layers give empty strings; so does
    a layer whose own count differs from the formula (say a Conv2D with groups), rather than a wrong sum.

    Example:
    >>> layer_arithmetic(model.layers[0])
    ('(28 + 2·1 − 3)/1 + 1 = 28', '(3·3·1 + 1)·16 = 160')
    """

    kind = type(layer).__name__
    if isinstance(layer.input, list | tuple):  # a join: no size or parameter formula
        return "", ""
    in_shape = tuple(layer.input.shape)[1:]
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    size = params = ""
    if kind in SIZE_LAYERS and len(in_shape) == 3:
        h, w = in_shape[1:] if channels_first else in_shape[:2]
        window = layer.pool_size if "Pooling" in kind else layer.kernel_size
        dilation = getattr(layer, "dilation_rate", (1, 1))
        if h is not None and w is not None:
            rows = shape_math.conv_size(h, window[0], layer.strides[0], layer.padding, dilation[0])
            cols = shape_math.conv_size(w, window[1], layer.strides[1], layer.padding, dilation[1])
            size = shape_math.axes_formula(rows, cols)
    channels = in_shape[0 if channels_first else -1] if in_shape else None
    if channels is not None:
        use_bias = getattr(layer, "use_bias", True)
        count = None
        if kind == "Conv2D":
            count = shape_math.conv2d_params(*layer.kernel_size, channels, layer.filters, use_bias)
        elif kind == "Dense":
            count = shape_math.dense_params(channels, layer.units, use_bias)
        elif kind == "DepthwiseConv2D":
            count = shape_math.depthwise_params(*layer.kernel_size, channels, layer.depth_multiplier, use_bias)
        elif kind == "SeparableConv2D":
            count = shape_math.separable_params(*layer.kernel_size, channels, layer.filters,
                                                layer.depth_multiplier, use_bias)
        if count is not None and count.total == layer.count_params():
            params = count.formula()
    return size, params
