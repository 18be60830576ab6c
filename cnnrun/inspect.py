"""`cnnrun inspect`: build an experiment's model and show its layers, output shapes and parameter counts."""

from rich.table import Table

from cnnrun.config import Experiment
from cnnrun.report import console


def inspect_experiment(experiment: Experiment):
    """Build and compile the model on the dataset's declared shape and class count (no images loaded); print it.

    Every error a training would meet before its first step is found here: layer arguments, shapes that do not
    fit, an output that does not match the classes, the optimizer, the loss against `dataset.label_mode`.

    Returns the built, compiled Keras model.
    """
    from cnnrun.model import build_model, compile_model, declared_info, naming_the_file

    info = declared_info(experiment)
    input_shape, class_names = tuple(info.input_shape), info.class_names
    with naming_the_file(experiment):
        model = build_model(experiment, input_shape, len(class_names))
        compile_model(model, experiment)  # the optimizer, the loss against dataset.label_mode, the metrics
    table = Table(title=f"{experiment.name}: input {input_shape}, {len(class_names)} classes",
                  title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer")
    table.add_column("type", style="cyan")
    table.add_column("size arithmetic")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    table.add_column("params arithmetic")
    for i, layer in enumerate(model.layers):
        shape = tuple(layer.output.shape)
        size, params = layer_arithmetic(layer)
        table.add_row(str(i), layer.name, type(layer).__name__, size, str(shape), f"{layer.count_params():,}",
                      params)
    console.print(table)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = model.count_params()
    console.print(f"Total params: [bold]{total:,}[/] (trainable {trainable:,}, non-trainable {total - trainable:,})")
    return model


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
    from cnnrun import shape_math

    kind = type(layer).__name__
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
