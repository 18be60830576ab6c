"""The `cnnrun` command line: one small function per command.

Heavy libraries (TensorFlow, Keras, matplotlib) are imported inside the functions that need them, so `--help`
and config errors answer at once. A user's mistake ends in one line and exit code 2; `--debug` shows the
traceback. The libraries' warnings and start-up messages are kept out of the terminal (`--debug` shows them too).
"""

import os
import sys
from enum import StrEnum
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


# Options whose values are a fixed set: Typer lists the values in --help and refuses any other (exit 2).
Checkpoint = StrEnum("Checkpoint", ["best", "last"])  # the best epoch's checkpoint or the last one's
Split = StrEnum("Split", ["test", "validation"])  # the split evaluate judges on
Padding = StrEnum("Padding", ["valid", "same"])  # Conv2D's paddings: none, or output size ceil(n / stride)
Pool = StrEnum("Pool", ["max", "average"])  # kernel-demo's poolings


ConfigArg = Annotated[Path, typer.Argument(help="The experiment's YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a key: --set train.epochs=3 (dotted path, value read as YAML). "
                 "Repeatable.", show_default=False),
]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of user errors, and the "
                                              "libraries' warnings and start-up messages.")] = False) -> None:
    _debug["on"] = debug
    if not debug:
        _keep_chatter_out()


def _keep_chatter_out() -> None:
    """Keep the libraries' own messages out of the terminal: cnnrun says what a user needs to know.

    Python warnings (Keras' `UserWarning`s, Pillow's `DecompressionBombWarning`, …) are ignored, the loggers of
    TensorFlow, JAX and absl show only errors, and TensorFlow's C++ log only errors (`TF_CPP_MIN_LOG_LEVEL=2`,
    unless the environment says otherwise). `--debug` leaves all of it on.
    """
    import logging
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "jax", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _quiet_imports() -> None:
    """Import TensorFlow and Keras (with its backend) with their C++ start-up chatter kept out of the terminal.

    That chatter (oneDNN, CUDA probing, absl's "log messages before InitializeLog") is written before TensorFlow
    reads TF_CPP_MIN_LOG_LEVEL, so standard error is sent to a temporary file while the libraries load and find
    their devices; if that fails, what they wrote is shown. The backend must be chosen before (`use_backend`).
    """
    import tempfile

    if _debug["on"]:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (imports the backend: TensorFlow or JAX)
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
    _quiet_imports()
    from cnnrun.trainer import train_experiment

    train_experiment(experiment, output_dir=output_dir, name=name)


@app.command()
def inspect(
    config: ConfigArg,
    set_: SetOption = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the model into this PNG file (needs "
                                              "pydot and Graphviz: pip install 'cnnrun[plot]').",
                                              show_default=False)] = None,
) -> None:
    """Validate CONFIG and build its model: layers (a graph's with their inputs), output shapes and parameters.

    No data, no training.

    Example: cnnrun inspect configs/cifar10_resnet20.yaml --plot resnet20.png
    """
    from cnnrun.backend import use_backend
    from cnnrun.config import load_experiment

    experiment = load_experiment(config, set_)
    use_backend(experiment.backend)
    _quiet_imports()
    from cnnrun.inspect import inspect_experiment

    inspect_experiment(experiment, plot)


RunArg = Annotated[Path | None, typer.Argument(help="A run folder (default: the latest under outputs/).",
                                                show_default=False)]
CheckpointOption = Annotated[Checkpoint, typer.Option("--checkpoint", help="The run's checkpoint to use: the best "
                                                    "epoch's or the last one's.")]


def _run_experiment(run_dir: Path | None):
    """The experiment of a run folder (RUN_DIR, or the latest under outputs/), read without importing Keras."""
    from cnnrun.config import load_saved_experiment
    from cnnrun.runs import open_run

    return load_saved_experiment(open_run(run_dir).file("config.yaml"))


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
    _quiet_imports()
    from cnnrun.trainer import resume_run

    resume_run(run_dir, epochs)


@app.command()
def evaluate(
    run_dir: RunArg = None,
    checkpoint: CheckpointOption = Checkpoint.best,
    split: Annotated[Split, typer.Option("--split", help="The split to judge on.")] = Split.test,
) -> None:
    """Judge a run's checkpoint on a split; write metrics, confusion matrix, per-class table into RUN_DIR/eval/.

    Example: cnnrun evaluate --checkpoint last --split validation
    """
    from cnnrun.backend import use_backend

    use_backend(_run_experiment(run_dir).backend)
    _quiet_imports()
    from cnnrun.evaluate import evaluate_run

    evaluate_run(run_dir, checkpoint.value, split.value)


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders of images.", show_default=False)],
    run: Annotated[Path | None, typer.Option("--run", help="The run whose model predicts (default: the latest "
                                             "under outputs/).", show_default=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes shown per image.")] = 3,
    checkpoint: CheckpointOption = Checkpoint.best,
    output: Annotated[Path | None, typer.Option("--output", help="Also write the predictions to this CSV.")] = None,
) -> None:
    """Predict the classes of images with a run's model: top-k classes and their probabilities.

    Exit code 0 when every input was predicted, 1 when some were not readable images (each is listed).

    Example: cnnrun predict my_shapes/ --run outputs/quickstart/20260101-120000 --top-k 2 --output predictions.csv
    """
    for path in paths:
        runs = [path] if (path / "state.json").is_file() else sorted(p.parent for p in path.glob("*/state.json"))
        if runs:
            what = "is a run folder" if runs == [path] else "holds run folders"
            raise UserError(f"{path}: {what}, not pictures; name the run with --run {runs[-1]} and give the "
                            "pictures as arguments")
    from cnnrun.backend import use_backend

    use_backend(_run_experiment(run).backend)
    _quiet_imports()
    from cnnrun.predict import predict_files

    unreadable = predict_files(run, paths, top_k, checkpoint.value, output)
    if isinstance(unreadable, int) and unreadable:  # the number of inputs that were not readable images
        raise typer.Exit(1)


@config_app.command("show")
def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved experiment: after `base:`, `--set` and `${vars}`, with every default filled in.

    On a terminal the YAML is coloured; written to a file or a pipe it is the YAML as it is, never wrapped, so
    `cnnrun config show CONFIG > resolved.yaml` saves a config that loads back to the same experiment.

    Example: cnnrun config show configs/cifar10_bn.yaml --set train.epochs=5
    """
    from cnnrun.config import experiment_to_yaml, load_experiment

    text = experiment_to_yaml(load_experiment(config, set_))
    if not sys.stdout.isatty():
        sys.stdout.write(text)
        return
    from rich.syntax import Syntax

    from cnnrun.report import console

    console.print(Syntax(text, "yaml", background_color="default", word_wrap=True))


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
    padding: Annotated[Padding, typer.Option("--padding", help="As in Conv2D: valid (no padding) or same.")]
    = Padding.valid,
    stride: Annotated[int, typer.Option("--stride", min=1, help="Step between windows, as Conv2D's strides.")] = 1,
    pool: Annotated[list[Pool] | None, typer.Option("--pool", help="Add the picture after max or average "
                    "pooling. Repeatable (--pool max --pool average).", show_default=False)] = None,
    pool_size: Annotated[int, typer.Option("--pool-size", min=1, help="The pooling window (and stride).")] = 2,
    out: OutOption = None,
) -> None:
    """Convolve a picture with edge (and other) kernels and write the figure: original, gray, one panel per kernel.

    Prints the shapes and, per kernel, the output-size formula (n + 2p − f)/s + 1 with the numbers.

    Example: cnnrun kernel-demo cat.jpg --kernel sobel_x --kernel sharpen --padding same --stride 2 --pool max
    """
    from cnnrun.demos.kernels import kernel_demo as run_demo

    run_demo(image, kernel, kernel_values, padding.value, stride, [p.value for p in pool or []], pool_size, out,
             echo=_echo)


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
    padding: Annotated[Padding, typer.Option("--padding", help="The first Conv2D's padding, and the default of "
                                             "later conv steps.")] = Padding.valid,
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
    from cnnrun.shape_math import chain_lines, conv_chain

    layers = conv_chain(input_, kernel, stride, padding.value, filters, then)
    for line in chain_lines(layers):
        _echo(line)
    total = sum(layer.params.total for layer in layers)
    console.print(f"Output shape: [bold]{layers[-1].output_shape}[/]; total params: [bold]{total:,}[/]")


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="An image folder: train/ (validation/, test/) of class folders, or "
                                         "class folders.", show_default=False)],
) -> None:
    """Decode every picture of an image folder; print images, sizes and bad files per split and class.

    Exit code 0 when every picture decodes, 1 when some do not (each is listed with the reason), 2 when PATH is
    not an image folder.

    Example: cnnrun data check data/cats_and_dogs
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

    _quiet_imports()
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
