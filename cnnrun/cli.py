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
    from cnnrun.config import load_experiment

    experiment = load_experiment(config, set_)
    _quiet_tensorflow()
    from cnnrun.train import train_experiment

    train_experiment(experiment, output_dir=output_dir, name=name)


@app.command()
def inspect(config: ConfigArg, set_: SetOption = None) -> None:
    """Validate CONFIG and build its model: layers, output shapes and parameters. No data, no training.

    Example: cnnrun inspect configs/cifar10.yaml --set model.vars.base_filters=64
    """
    from cnnrun.config import load_experiment

    experiment = load_experiment(config, set_)
    _quiet_tensorflow()
    from cnnrun.inspect import inspect_experiment

    inspect_experiment(experiment)


@config_app.command("show")
def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved experiment: after `base:`, `--set` and `${vars}`, with every default filled in.

    Example: cnnrun config show configs/cifar10_bn.yaml --set train.epochs=5
    """
    from rich.syntax import Syntax

    from cnnrun.config import experiment_to_yaml, load_experiment
    from cnnrun.report import console

    console.print(Syntax(experiment_to_yaml(load_experiment(config, set_)), "yaml", background_color="default"))


def main() -> None:
    """Entry point of the `cnnrun` console script."""
    from cnnrun.report import error_console

    try:
        app()
    except UserError as e:
        if _debug["on"]:
            raise
        error_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
