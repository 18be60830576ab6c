"""The `cnnrun` command line: one small function per command.

Heavy libraries (TensorFlow, Keras, matplotlib) are imported inside the functions that need them, so `--help`
and config errors answer at once. A user's mistake ends in one line and exit code 2; `--debug` shows the
traceback.
"""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cnnrun.errors import UserError

app = typer.Typer(
    name="cnnrun",
    help="Train, resume and judge convolutional networks described in YAML (Keras 3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Look at experiment configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")
data_app = typer.Typer(help="Look at datasets before training on them.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_debug = {"on": False}

ConfigArg = Annotated[Path, typer.Argument(help="The experiment's YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a key: --set train.epochs=3 (dotted path, value read as YAML). "
                 "Repeatable.", show_default=False),
]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of user errors.")] = False) -> None:
    _debug["on"] = debug


def _quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter (oneDNN, CUDA probing) kept out of the terminal.

    That chatter is written before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so standard error is sent to a
    temporary file while TensorFlow loads and finds its devices; if that fails, what it wrote is shown.
    """
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _debug["on"]:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@app.command()
def train(
    config: ConfigArg,
    set_: SetOption = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir", help="Where runs go (default: "
                                                   "the config's output.dir, `outputs`).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The run's name (default: the experiment's).")] = None,
) -> None:
    """Train the experiment CONFIG into a new run folder.

    Example: cnnrun train configs/quickstart.yaml --set train.epochs=3
    """
    from cnnrun.backend import prepare
    from cnnrun.config import load_experiment

    experiment = load_experiment(config, set_)
    prepare(experiment)
    _quiet_tensorflow()
    from cnnrun.trainer import train_experiment

    train_experiment(experiment, output_dir=output_dir, name=name)


@app.command()
def inspect(config: ConfigArg, set_: SetOption = None) -> None:
    """Validate CONFIG and build its model: layers, output shapes and parameters. No data, no training.

    Example: cnnrun inspect configs/cifar10.yaml --set model.vars.base_filters=64
    """
    from cnnrun.backend import use_backend
    from cnnrun.config import load_experiment

    experiment = load_experiment(config, set_)
    use_backend(experiment.backend)
    _quiet_tensorflow()
    from cnnrun.inspect import inspect_experiment

    inspect_experiment(experiment)


RunArg = Annotated[Path | None, typer.Argument(help="A run folder (default: the latest under outputs/).",
                                                show_default=False)]
CheckpointOption = Annotated[str, typer.Option("--checkpoint", help="best or last.")]


def _run_experiment(run_dir: Path | None):
    """The experiment of a run folder (RUN_DIR, or the latest under outputs/), read without importing Keras."""
    from cnnrun.config import load_experiment
    from cnnrun.runs import open_run

    return load_experiment(open_run(run_dir).file("config.yaml"))


def _checkpoint(value: str) -> str:
    if value not in ("best", "last"):
        raise UserError(f"--checkpoint {value}: use best or last")
    return value


@app.command()
def resume(
    run_dir: RunArg = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="The new total number of epochs.")] = None,
) -> None:
    """Continue a run where it stopped: weights, optimizer, history, best value and callback state.

    Example: cnnrun resume outputs/quickstart/20260101-120000 --epochs 12
    """
    from cnnrun.backend import prepare

    prepare(_run_experiment(run_dir))
    _quiet_tensorflow()
    from cnnrun.trainer import resume_run

    resume_run(run_dir, epochs)


@app.command()
def evaluate(
    run_dir: RunArg = None,
    checkpoint: CheckpointOption = "best",
    split: Annotated[str, typer.Option("--split", help="test or validation.")] = "test",
) -> None:
    """Judge a run's checkpoint on a split; write metrics, confusion matrix, per-class table into RUN_DIR/eval/.

    Example: cnnrun evaluate --checkpoint last --split validation
    """
    if split not in ("test", "validation"):
        raise UserError(f"--split {split}: use test or validation")
    _checkpoint(checkpoint)
    from cnnrun.backend import use_backend

    use_backend(_run_experiment(run_dir).backend)
    _quiet_tensorflow()
    from cnnrun.evaluate import evaluate_run

    evaluate_run(run_dir, checkpoint, split)


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="[RUN_DIR] then image files or folders.", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes shown per image.")] = 3,
    checkpoint: CheckpointOption = "best",
    output: Annotated[Path | None, typer.Option("--output", help="Also write the predictions to this CSV.")] = None,
) -> None:
    """Predict the classes of images with a run's model: top-k classes and their probabilities.

    The first argument is taken as the run folder when it holds a state.json; otherwise the latest run is used.

    Example: cnnrun predict outputs/quickstart/20260101-120000 my_shapes/ --top-k 2 --output predictions.csv
    """
    run_dir = paths[0] if paths and (paths[0] / "state.json").is_file() else None
    images = paths[1:] if run_dir else paths
    if not images:
        raise UserError("predict: name at least one image file or folder after the run folder")
    _checkpoint(checkpoint)
    from cnnrun.backend import use_backend

    use_backend(_run_experiment(run_dir).backend)
    _quiet_tensorflow()
    from cnnrun.predict import predict_files

    predict_files(run_dir, images, top_k, checkpoint, output)


@config_app.command("show")
def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved experiment: after `base:`, `--set` and `${vars}`, with every default filled in.

    Example: cnnrun config show configs/cifar10_bn.yaml --set train.epochs=5
    """
    from rich.syntax import Syntax

    from cnnrun.config import experiment_to_yaml, load_experiment
    from cnnrun.report import console

    console.print(Syntax(experiment_to_yaml(load_experiment(config, set_)), "yaml", background_color="default"))


def _echo(line: str) -> None:
    """Print one line of a teaching command as it is (no rich markup, no wrapping of long formulas)."""
    from cnnrun.report import console

    console.print(line, markup=False, highlight=False, soft_wrap=True)


ImageArg = Annotated[Path, typer.Argument(help="A PNG or JPEG picture.", show_default=False)]
OutOption = Annotated[Path | None, typer.Option("--out", help="Where the figure goes (.png, .jpg, .pdf or .svg; "
                                                "default: named after the image, in the current folder).",
                                                show_default=False)]


@app.command("kernel-demo")
def kernel_demo(
    image: Annotated[Path | None, typer.Argument(help="A PNG or JPEG picture (default: scikit-image's astronaut "
                                                 "photo).", show_default=False)] = None,
    kernel: Annotated[list[str] | None, typer.Option("--kernel", help="A named kernel: vertical, horizontal, "
                      "sobel_x, sobel_y, laplacian, sharpen, box_blur, gaussian, emboss, outline, identity. "
                      "Repeatable (default: vertical and horizontal).", show_default=False)] = None,
    kernel_values: Annotated[list[str] | None, typer.Option("--kernel-values", help='Your own kernel as a nested '
                             'list, e.g. "[[0,-1,0],[-1,5,-1],[0,-1,0]]". Repeatable.', show_default=False)] = None,
    padding: Annotated[str, typer.Option("--padding", help="valid (no padding) or same, as in Conv2D.")] = "valid",
    stride: Annotated[int, typer.Option("--stride", min=1, help="Step between windows, as Conv2D's strides.")] = 1,
    pool: Annotated[list[str] | None, typer.Option("--pool", help="max or average: add the picture after "
                    "pooling. Repeatable (--pool max --pool average).", show_default=False)] = None,
    pool_size: Annotated[int, typer.Option("--pool-size", min=1, help="The pooling window (and stride).")] = 2,
    out: OutOption = None,
) -> None:
    """Convolve a picture with edge (and other) kernels and write the figure: original, gray, one panel per kernel.

    Prints the shapes and, per kernel, the output-size formula (n + 2p − f)/s + 1 with the numbers.

    Example: cnnrun kernel-demo cat.jpg --kernel sobel_x --kernel sharpen --padding same --stride 2 --pool max
    """
    from cnnrun.demos.kernels import kernel_demo as run_demo

    run_demo(image, kernel, kernel_values, padding, stride, pool, pool_size, out, echo=_echo)


@app.command("image-info")
def image_info(
    image: ImageArg,
    crop: Annotated[str | None, typer.Option("--crop", help="Zoom on rows y0:y1 and columns x0:x1, "
                                             "e.g. 100:164,200:264.", show_default=False)] = None,
    out: OutOption = None,
) -> None:
    """Print a picture's shape, dtype, value range and channels; write a figure with one panel per channel.

    Example: cnnrun image-info cat.png --crop 100:132,200:232
    """
    from cnnrun.demos.channels import image_info as run_info

    run_info(image, crop, out, echo=_echo)


@app.command("conv-shape")
def conv_shape(
    input_: Annotated[str, typer.Option("--input", help="The input, HEIGHTxWIDTHxCHANNELS (e.g. 28x28x1).",
                                        show_default=False)],
    kernel: Annotated[str, typer.Option("--kernel", help="The first Conv2D's kernel size: 3 or 3x5.")] = "3",
    stride: Annotated[int, typer.Option("--stride", help="The first Conv2D's stride.")] = 1,
    padding: Annotated[str, typer.Option("--padding", help="valid or same: the first Conv2D's padding, and the "
                                         "default of later conv steps.")] = "valid",
    filters: Annotated[int, typer.Option("--filters", help="The first Conv2D's number of filters.")] = 1,
    then: Annotated[list[str] | None, typer.Option("--then", help="A further layer, repeatable: "
                    "conv:KHxKWxFILTERS, pool:SIZE (maxpool:, avgpool:), each optionally followed by /STRIDE and "
                    ":same or :valid (conv:5x5x64/2:valid, pool:3/2); flatten; dense:UNITS.",
                    show_default=False)] = None,
) -> None:
    """Work out a Conv2D's output shape and parameters (and those of the layers after it), with the numbers.

    Example: cnnrun conv-shape --input 28x28x1 --kernel 3 --padding same --filters 16 --then pool:2 --then conv:3x3x32
    """
    from cnnrun.report import console
    from cnnrun.shape_math import apply_step, parse_shape, parse_step

    shape = parse_shape(input_, "--input")
    sizes = kernel.strip().lower().replace("×", "x").split("x")
    if len(sizes) not in (1, 2) or not all(s.strip().isdigit() and int(s) > 0 for s in sizes):
        raise UserError(f"--kernel: '{kernel}' is not a kernel size; write 3 or 3x3 (height x width)")
    kh, kw = int(sizes[0]), int(sizes[-1])
    if padding not in ("valid", "same"):
        raise UserError(f"--padding: '{padding}' is not a padding; use valid or same")
    steps = [{"kind": "conv", "kernel_h": kh, "kernel_w": kw, "filters": filters, "stride": stride,
              "padding": padding}]
    steps += [parse_step(text, padding, "--then") for text in then or []]
    _echo(f"Input: {shape}. Output size = (n + 2p − f)/s + 1, rounded down; "
          "Conv2D params = (kh·kw·channels + 1)·filters")
    total = 0
    for i, step in enumerate(steps):
        option = "--kernel/--stride/--filters" if i == 0 else f"--then {then[i - 1]}"
        try:
            layer = apply_step(shape, step)
        except UserError as e:
            raise UserError(f"{option}: {e}") from e
        _echo(f"#{i} {layer.layer} -> {layer.output_shape}")
        if layer.size:
            _echo(f"   size:   {layer.size}" + (f"   ({layer.note})" if layer.note else ""))
        _echo(f"   params: {layer.params.formula()}")
        total += layer.params.total
        shape = layer.output_shape
    console.print(f"Output shape: [bold]{shape}[/]; total params: [bold]{total:,}[/]")


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="An image folder: train/ (validation/, test/) of class folders, or "
                                         "class folders.", show_default=False)],
) -> None:
    """Decode every picture of an image folder; print images, sizes and bad files per split and class.

    Exit code 0 when every picture decodes, 1 when some do not (each is listed with the reason), 2 when PATH is
    not an image folder.

    Example: cnnrun data check data/cats_vs_dogs
    """
    from cnnrun.data.check import check_image_folder, print_report

    report = check_image_folder(path)
    print_report(report)
    if report.bad_files:
        raise typer.Exit(1)


@app.command("augment-preview")
def augment_preview(
    image: ImageArg,
    config: Annotated[Path | None, typer.Option("--config", help="Use this experiment's `augmentation:` section "
                      "(default: the course's rotation 40, shifts 0.2, zoom 0.2, horizontal flip, brightness "
                      "[0.4, 1.5]).", show_default=False)] = None,
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many augmented versions.")] = 8,
    out: Annotated[Path | None, typer.Option("--out", help="The folder the pictures go to (default: "
                   "<image stem>_augmented in the current folder).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the augmentation: the same seed, the same pictures.")]
    = 0,
) -> None:
    """Write N augmented versions of a picture (PNG files) and a grid of the original beside them.

    Example: cnnrun augment-preview cat.jpg -n 8 --config configs/cats_vs_dogs.yaml
    """
    from cnnrun.demos.augment import augment_preview as run_preview

    _quiet_tensorflow()
    run_preview(image, config, count, out, seed, echo=_echo)


def main() -> None:
    """Entry point of the `cnnrun` console script."""
    from rich.markup import escape

    from cnnrun.report import error_console

    try:
        app()
    except UserError as e:
        if _debug["on"]:
            raise
        error_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, emoji=False, soft_wrap=True)
        sys.exit(2)
