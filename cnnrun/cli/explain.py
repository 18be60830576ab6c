"""The commands that show what a trained network sees (explain, filters, activations) and `data show`."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnnrun.cli.common import (
    Checkpoint,
    CheckpointOption,
    ConfigArg,
    RunArg,
    SetOption,
    app,
    data_app,
    quiet_imports,
    run_experiment_of,
)

Method = StrEnum("Method", [("gradcam", "gradcam"), ("gradcampp", "gradcam++"), ("saliency", "saliency"),
                            ("smoothgrad", "smoothgrad")])  # explain's heat maps


def _is_run(path: Path) -> bool:
    from cnnrun.run_folder.folder import is_run_folder

    return is_run_folder(path)


def _start(run_dir: Path | None) -> None:
    """Choose the run's backend and import Keras quietly."""
    from cnnrun.devices.backend import use_backend

    use_backend(run_experiment_of(run_dir).backend)
    quiet_imports()


@app.command()
def explain(
    paths: Annotated[list[Path], typer.Argument(help="[RUN_DIR] then image files or folders of images (RUN_DIR "
                                                "default: the latest run under outputs/).", show_default=False)],
    method: Annotated[Method, typer.Option("--method", help="gradcam and gradcam++ weigh a layer's feature maps; "
                                           "saliency and smoothgrad are gradients on the picture.")] = Method.gradcam,
    class_: Annotated[str, typer.Option("--class", help="The class explained: top1 (each picture's predicted "
                                        "class) or a class name of the run.")] = "top1",
    layer: Annotated[str, typer.Option("--layer", help="The layer Grad-CAM weighs: auto (the last with a spatial "
                                       "output, inside a nested model too) or a name (backbone/conv_3).")] = "auto",
    checkpoint: CheckpointOption = Checkpoint.best,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Probabilities shown per picture.")] = 3,
    out: Annotated[Path | None, typer.Option("--out", help="The folder (default: explained/ in the current "
                                             "folder).", show_default=False)] = None,
) -> None:
    """Heat maps of where a run's model looked: one PNG per picture (picture, heat map, top-k), a grid of all.

    Also writes the maps as numbers (<method>_heat_maps.npz). A file that is not a picture is named in one line
    (exit code 2) after the others are explained.

    Example: cnnrun explain outputs/quickstart/20260101-120000 my_shapes/ --method gradcam --class circle
    """
    run_dir = paths[0] if len(paths) > 1 and _is_run(paths[0]) else None
    images = paths[1:] if run_dir is not None else paths
    _start(run_dir)
    from cnnrun.cli.render import show_explanation
    from cnnrun.explain.pictures import explain_files

    show_explanation(explain_files(run_dir, images, method.value, class_, layer, checkpoint.value, out, top_k))


@app.command()
def filters(
    run_dir: RunArg = None,
    layer: Annotated[str | None, typer.Option("--layer", help="The convolution layer (default: the first).",
                                              show_default=False)] = None,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="Draw each input channel of a deeper layer's "
                                              "kernels (default: their mean).")] = False,
    checkpoint: CheckpointOption = Checkpoint.best,
    out: Annotated[Path | None, typer.Option("--out", help="The PNG (default: <layer>_filters.png in the current "
                                             "folder).", show_default=False)] = None,
) -> None:
    """Draw the kernels a convolution layer learnt as a grid of small pictures (0 gray, + white, − black).

    Example: cnnrun filters outputs/quickstart/20260101-120000 --layer conv2d_1 --per-channel
    """
    _start(run_dir)
    from cnnrun.cli import render
    from cnnrun.explain.filters import show_filters

    render.show_filters(show_filters(run_dir, layer, checkpoint.value, per_channel, out))


@app.command()
def activations(
    paths: Annotated[list[Path], typer.Argument(help="[RUN_DIR] IMAGE: the run (default: the latest under "
                                                "outputs/) and one picture.", show_default=False)],
    layers: Annotated[str | None, typer.Option("--layers", help="Layer names, comma-separated (default: every "
                                               "convolution and pooling layer).", show_default=False)] = None,
    checkpoint: CheckpointOption = Checkpoint.best,
    out: Annotated[Path | None, typer.Option("--out", help="The folder (default: activations/ in the current "
                                             "folder).", show_default=False)] = None,
) -> None:
    """Write the feature maps of a run's layers for one picture: one grid per layer, its output shape in the title.

    Example: cnnrun activations outputs/quickstart/20260101-120000 circle.png --layers conv2d,max_pooling2d
    """
    from cnnrun.errors import UserError

    if len(paths) > 2 or (len(paths) == 2 and not _is_run(paths[0])):
        raise UserError(f"takes [RUN_DIR] IMAGE: one picture, after the run folder; got {' '.join(map(str, paths))}",
                        where="activations")
    run_dir, image = (paths[0], paths[1]) if len(paths) == 2 else (None, paths[0])
    _start(run_dir)
    from cnnrun.cli import render
    from cnnrun.explain.activations import show_activations

    names = [name.strip() for name in layers.split(",") if name.strip()] if layers else None
    render.show_activations(show_activations(run_dir, image, names, checkpoint.value, out))


@data_app.command("show")
def data_show(
    config: ConfigArg,
    set_: SetOption = None,
    per_class: Annotated[int, typer.Option("--per-class", min=1, help="Pictures per class.")] = 8,
    out: Annotated[Path | None, typer.Option("--out", help="The folder (default: data_show/ in the current "
                                             "folder).", show_default=False)] = None,
) -> None:
    """Look at an experiment's data first: pictures per class as the model receives them, augmented, and counts.

    Writes samples.png, samples_augmented.png (with an augmentation: section) and class_counts.png.

    Example: cnnrun data show configs/quickstart.yaml --per-class 6
    """
    from cnnrun.config import load_experiment
    from cnnrun.devices.backend import use_backend

    experiment = load_experiment(config, set_)
    use_backend(experiment.backend)
    quiet_imports()
    from cnnrun.cli import render
    from cnnrun.data.samples import show_data

    render.show_data(show_data(experiment, per_class, out))
