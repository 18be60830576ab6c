"""What every `cnnrun` command shares: the Typer apps, the option types, and quiet library imports.

Heavy libraries (TensorFlow, Keras, matplotlib) are imported inside the functions that need them, so `--help`
and config errors answer at once. A user's mistake ends in one line and exit code 2; `--debug` shows the
traceback. The libraries' warnings and start-up messages are kept out of the terminal (`--debug` shows them too).
"""

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

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


def quiet_imports() -> None:
    """Import TensorFlow and Keras (with its backend) with their C++ start-up chatter kept out of the terminal.

    That chatter (oneDNN, CUDA probing, absl's "log messages before InitializeLog") is written before TensorFlow
    reads TF_CPP_MIN_LOG_LEVEL, so standard error is sent to a temporary file while the libraries load and find
    their devices; if that fails, what they wrote is shown. The backend must be chosen before (`use_backend`).
    """
    from cnnrun.devices.backend import import_keras

    if _debug["on"]:
        import_keras()
        return
    from cnnrun.report import c_messages_hidden

    with c_messages_hidden():
        import_keras()  # TensorFlow, then Keras with its backend (TensorFlow or JAX)
        import tensorflow as tf

        tf.config.list_physical_devices()



RunArg = Annotated[Path | None, typer.Argument(help="A run folder (default: the latest under outputs/).",
                                                show_default=False)]
CheckpointOption = Annotated[Checkpoint, typer.Option("--checkpoint", help="The run's checkpoint to use: the best "
                                                    "epoch's or the last one's.")]


def run_experiment_of(run_dir: Path | None):
    """The experiment of a run folder (RUN_DIR, or the latest under outputs/), read without importing Keras.

    Finding the latest run, a `note:` line on standard error names the run folders skipped for a damaged
    meta.json."""
    from cnnrun.config import load_saved_experiment
    from cnnrun.report import error_console
    from cnnrun.run_folder.folder import open_run

    run = open_run(run_dir)
    if run.skipped:
        error_console.print(f"note: skipped {len(run.skipped)} run folder(s) with a damaged meta.json: "
                            + "; ".join(run.skipped), markup=False, highlight=False, soft_wrap=True)
    return load_saved_experiment(run.config_file)



ImageArg = Annotated[Path, typer.Argument(help="A PNG or JPEG picture.", show_default=False)]
OutOption = Annotated[Path | None, typer.Option("--out", help="Where the figure goes (.png, .jpg, .pdf or .svg; "
                                                "default: named after the image, in the current folder).",
                                                show_default=False)]




def debug_on() -> bool:
    """Whether `--debug` was given: user errors then show their traceback."""
    return _debug["on"]
