"""Checkpoints: load a `.keras` file in Keras' safe mode, and a run's model with what it needs to judge pictures.

A checkpoint that cannot be loaded is one line that says what is wrong with it and, for a run's `best.keras` or
`last.keras`, whether the other one is intact. Every object of cnnrun's own that a checkpoint may name comes from
the one table, `cnnrun.model.custom_objects`.

Example:
>>> experiment, info, model = load_run_model(open_run("outputs/quickstart/20260101-120000"), "best")
"""

from pathlib import Path

from cnnrun.config import load_saved_experiment
from cnnrun.errors import UserError
from cnnrun.model.custom_objects import custom_objects
from cnnrun.run_folder.files import CHECKPOINTS, checkpoint_name
from cnnrun.run_folder.folder import Run


def load_run_model(run: Run, checkpoint: str):
    """The run's experiment, stored dataset info and the chosen checkpoint, loaded in safe mode (for the commands
    that take `--checkpoint best|last`)."""
    experiment = load_saved_experiment(run.config_file)
    info = run.dataset_info()
    model = load_checkpoint(run.checkpoint(checkpoint))
    return experiment, info, model


def load_checkpoint(path: Path, use_other: str | None = "--checkpoint "):
    """Load a `.keras` checkpoint in Keras' safe mode (no code from a checkpoint ever runs).

    A checkpoint that cannot be loaded is a one-line UserError that says what is wrong with it (missing,
    truncated or not a `.keras` file, refused by safe mode and why) and, for a run's `best.keras` or
    `last.keras`, whether the other one is intact.

    Args:
        path: the `.keras` file.
        use_other: how the message asks for the other checkpoint, followed by `best` or `last`. Defaults to the
            commands' `--checkpoint ` (`model.init_from` asks for `RUN_DIR:`); None for a caller that has no way
            to choose (training, resume): the message then says only what is wrong with the file.
    """
    import keras

    try:
        if not path.is_file():
            raise FileNotFoundError(path)
        return keras.saving.load_model(path, safe_mode=True, custom_objects=custom_objects())
    except Exception as e:  # a damaged zip or model file raises many kinds of errors
        raise UserError(f"{path}: {_what_is_wrong(path, e)}{_other_checkpoint(path, use_other)}") from e


def _what_is_wrong(path: Path, error: Exception) -> str:
    import zipfile

    if not path.is_file():
        return "checkpoint missing"
    if not zipfile.is_zipfile(path):
        return "damaged checkpoint: truncated or not a .keras file (not a whole zip archive)"
    text = " ".join(str(error).split())
    if "`Lambda` layer" in text:
        return ("refused: holds a Lambda layer, which safe mode does not load — "
                "cnnrun never runs code from a checkpoint")
    if "safe_mode" in text or "unsafe" in text:
        return "refused by Keras' safe mode — cnnrun never runs code from a checkpoint"
    return f"damaged checkpoint ({type(error).__name__}: {text[:160]})"


def _other_checkpoint(path: Path, use_other: str | None) -> str:
    """`; checkpoints/last.keras is intact: use --checkpoint last` (or `is damaged too`), for best/last."""
    names = {checkpoint_name("best"): "last", checkpoint_name("last"): "best"}
    if use_other is None or path.parent.name != CHECKPOINTS or path.name not in names:
        return ""
    other = path.with_name(checkpoint_name(names[path.name]))
    shown = f"{CHECKPOINTS}/{other.name}"
    if not other.is_file():
        return f"; {shown} is missing too"
    try:
        import keras

        keras.saving.load_model(other, safe_mode=True, custom_objects=custom_objects())
    except Exception:
        return f"; {shown} is damaged too"
    return f"; {shown} is intact: use {use_other}{names[path.name]}"
