"""`cnnrun sweep`: search a hyperparameter space with Optuna, every trial a normal run folder."""

from pathlib import Path
from typing import Annotated

import typer

from cnnrun.cli.common import SetOption, app, quiet_imports


@app.command()
def sweep(
    path: Annotated[Path, typer.Argument(help="The sweep file: an experiment config with a `sweep:` section.",
                                         show_default=False)],
    set_: SetOption = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Trials trained at once, each in its own "
                                         "process (and on its own GPU when there are GPUs).")] = 1,
    worker: Annotated[int | None, typer.Option("--worker", hidden=True, min=0,
                                               help="Internal: this process is worker I of --workers.")] = None,
) -> None:
    """Run the sweep PATH: train its trials into <output.dir>/<name>/, write trials.csv and plots.

    Running it again resumes the sweep until it has `sweep.trials` trials. With an RDB `sweep.storage`, the same
    command on other machines joins the same study.

    Before any trial, every point's config is checked and its model built and compiled (no data read).

    Example: cnnrun sweep configs/quickstart_sweep.yaml --workers 2 --set sweep.trials=2
    """
    from cnnrun.config.sweep import load_sweep
    from cnnrun.devices.backend import prepare

    checked = load_sweep(path, set_)
    prepare(checked.experiment)
    quiet_imports()
    from cnnrun.cli.render import tell
    from cnnrun.cli.render_tasks import show_sweep_results
    from cnnrun.training.callbacks import configured_callbacks
    from cnnrun.training.sweep import (
        check_points,
        open_study,
        prepare_study,
        run_trials,
        start_workers,
        with_objective,
        write_results,
    )

    checked = with_objective(checked)
    configured_callbacks(checked.experiment, None)  # the monitors, and MLflow when asked for: before any trial
    if worker is None:  # (a worker's command has checked them)
        check_points(checked)  # every point's model, built as `cnnrun inspect` builds it
    study = open_study(checked, worker or 0)
    if worker is not None:  # one of --workers N: take trials until the sweep has them
        run_trials(checked, study, tell)
        return
    prepare_study(checked, study, tell)
    code = start_workers(path, workers, set_) if workers > 1 else run_trials(checked, study, tell)
    show_sweep_results(write_results(checked, study))
    if code:
        raise typer.Exit(code)
