"""`cnnrun inspect`: build an experiment's model and show its layers, output shapes and parameter counts."""

from rich.table import Table

from cnnrun.config import Experiment
from cnnrun.report import console


def inspect_experiment(experiment: Experiment):
    """Build the model from the dataset's shape and class count (no images loaded) and print it.

    Returns the built, uncompiled Keras model.
    """
    from cnnrun.data import describe
    from cnnrun.model import build_model

    input_shape, class_names = describe(experiment.dataset)
    model = build_model(experiment, input_shape, len(class_names))
    table = Table(title=f"{experiment.name}: input {input_shape}, {len(class_names)} classes",
                  title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer")
    table.add_column("type", style="cyan")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    for i, layer in enumerate(model.layers):
        shape = tuple(layer.output.shape)
        table.add_row(str(i), layer.name, type(layer).__name__, str(shape), f"{layer.count_params():,}")
    console.print(table)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = model.count_params()
    console.print(f"Total params: [bold]{total:,}[/] (trainable {trainable:,}, non-trainable {total - trainable:,})")
    return model
