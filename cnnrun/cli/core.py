"""The commands of a run's life: train, inspect, resume, evaluate, predict, and `config show`."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from cnnrun.cli.common import (
    Checkpoint,
    CheckpointOption,
    ConfigArg,
    RunArg,
    SetOption,
    Split,
    app,
    config_app,
    quiet_imports,
    run_experiment_of,
)
from cnnrun.errors import UserError


def write_page(run) -> None:
    """The run's page (`cnnrun report`), written at the end of train, resume and evaluate unless its config says
    `output.report: false`; a run the command did not finish (None) gets none."""
    from cnnrun.config import load_saved_experiment

    # not a run of another process of a multi-process run either: it trained into a temporary folder, gone by now
    # (process 0 writes the run folder, and its page)
    if run is None or not run.path.is_dir() or not load_saved_experiment(run.config_file).output.report:
        return
    from cnnrun.cli.render_tasks import show_report
    from cnnrun.tasks.report import write_run_report

    show_report(write_run_report(run), after=True)


@app.command()
def train(
    config: ConfigArg,
    set_: SetOption = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir", help="Where runs go (default: "
                                                   "the config's output.dir, `outputs`).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The run's name (default: the experiment's).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Train with this many seeds (seed, seed + 1, …) "
                                       "into sibling run folders; print the mean ± std of every test metric.")] = 1,
    folds: Annotated[int | None, typer.Option(
        "--folds", min=2, help="k-fold cross-validation: K runs, run i validating on fold i of K stratified folds "
        "of the training pictures (the test split untouched); the same command again finishes what is left.")] = None,
) -> None:
    """Train the experiment CONFIG into a new run folder.

    Example: cnnrun train configs/quickstart.yaml --set train.epochs=3 --seeds 3 (or --folds 5)
    """
    from cnnrun.config.sweep import load_experiment_or_sweep
    from cnnrun.devices.backend import prepare
    from cnnrun.run_folder.folder import check_run_name

    if name is not None:  # `--name ''` too: an empty name is not the experiment's
        check_run_name(name)
    experiment, _ = load_experiment_or_sweep(config, set_, sweeps=False)
    prepare(experiment)
    quiet_imports()
    if folds is not None:
        if seeds > 1:
            raise UserError("--folds and --seeds: give one of them (each fold is one seed's run)")
        from cnnrun.cli.render import tell
        from cnnrun.cli.render_tasks import show_seeds
        from cnnrun.training.folds import train_folds

        summary = train_folds(experiment, folds, output_dir=output_dir, name=name, say=tell)
        for run in summary.runs:
            write_page(run)
        show_seeds(summary)
        return
    if seeds > 1:
        from cnnrun.cli.render import tell
        from cnnrun.cli.render_tasks import show_seeds
        from cnnrun.training.seeds import train_seeds

        summary = train_seeds(experiment, seeds, output_dir=output_dir, name=name, say=tell)
        for run in summary.runs:
            write_page(run)
        show_seeds(summary)
        return
    from cnnrun.cli.render import tell
    from cnnrun.training.trainer import train_experiment

    write_page(train_experiment(experiment, output_dir=output_dir, name=name, say=tell))


@app.command()
def inspect(
    config: ConfigArg,
    set_: SetOption = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the model into this PNG file (needs "
                                              "pydot and Graphviz: pip install 'cnnrun[plot]').",
                                              show_default=False)] = None,
) -> None:
    """Validate CONFIG and build its model: layers (a graph's with their inputs), output shapes and parameters.

    No data, no training. A sweep file: its experiment, and every point's model built.

    Example: cnnrun inspect configs/cifar10_resnet20.yaml --plot resnet20.png
    """
    from cnnrun.config.sweep import load_experiment_or_sweep
    from cnnrun.devices.backend import use_backend

    experiment, sweep = load_experiment_or_sweep(config, set_)
    use_backend(experiment.backend)
    quiet_imports()
    from cnnrun.cli.render import show_inspection
    from cnnrun.tasks.inspect import inspect_experiment

    show_inspection(inspect_experiment(experiment, plot))
    if sweep is not None:
        from cnnrun.cli.render import say
        from cnnrun.training.sweep import check_points

        check_points(sweep)
        say(sweep.describe())


@app.command()
def resume(
    run_dir: RunArg = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="The new total number of epochs.")] = None,
) -> None:
    """Continue a run where it stopped: weights, optimizer, history, best value and callback state.

    Example: cnnrun resume outputs/quickstart/20260101-120000 --epochs 12
    """
    from cnnrun.devices.backend import prepare

    prepare(run_experiment_of(run_dir))
    quiet_imports()
    from cnnrun.cli.render import tell
    from cnnrun.training.trainer import resume_run

    write_page(resume_run(run_dir, epochs, say=tell))


@app.command()
def evaluate(
    run_dir: RunArg = None,
    checkpoint: CheckpointOption = Checkpoint.best,
    split: Annotated[Split, typer.Option("--split", help="The split to judge on.")] = Split.test,
    explain: Annotated[int, typer.Option("--explain", min=0, help="Draw Grad-CAM over the N top losses, the "
                                         "pictures of largest −log p(true class), normally the most confident "
                                         "mistakes (eval/<checkpoint>_<split>_explained.png); 0: none.")] = 12,
) -> None:
    """Judge a run's checkpoint on a split: metrics, predictions, confusion matrix, top losses into RUN_DIR/eval/.

    Example: cnnrun evaluate --checkpoint last --split validation
    """
    from cnnrun.devices.backend import use_backend

    use_backend(run_experiment_of(run_dir).backend)
    quiet_imports()
    from cnnrun.cli.render import show_evaluation
    from cnnrun.tasks.evaluate import evaluate_run

    evaluation = evaluate_run(run_dir, checkpoint.value, split.value, explain)
    show_evaluation(evaluation)
    write_page(evaluation.run)


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
    from cnnrun.run_folder.folder import is_run_folder, runs_under

    for path in paths:
        runs = [path] if is_run_folder(path) else runs_under(path)
        if runs:
            what = "is a run folder" if runs == [path] else "holds run folders"
            raise UserError(f"{what}, not pictures", where=str(path),
                            fix=f"name the run with --run {runs[-1]} and give the pictures as arguments")
    from cnnrun.devices.backend import use_backend

    use_backend(run_experiment_of(run).backend)
    quiet_imports()
    from cnnrun.cli.render_tasks import show_predictions
    from cnnrun.tasks.predict import predict_files

    predictions = predict_files(run, paths, top_k, checkpoint.value, output)
    show_predictions(predictions)
    if predictions.unreadable:
        raise typer.Exit(1)


@config_app.command("show")
def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved experiment: after `base:`, `--set` and `${vars}`, with every default filled in.

    A sweep file: its experiment, then its `sweep:` section.

    On a terminal the YAML is coloured; written to a file or a pipe it is the YAML as it is, never wrapped, so
    `cnnrun config show CONFIG > resolved.yaml` saves a config that loads back to the same experiment.

    Example: cnnrun config show configs/cifar10_bn.yaml --set train.epochs=5
    """
    from cnnrun.config import experiment_to_yaml
    from cnnrun.config.sweep import load_experiment_or_sweep

    experiment, sweep = load_experiment_or_sweep(config, set_)
    text = experiment_to_yaml(experiment) if sweep is None else sweep.to_yaml()
    if not sys.stdout.isatty():
        sys.stdout.write(text)
        return
    from rich.syntax import Syntax

    from cnnrun.report import console

    console.print(Syntax(text, "yaml", background_color="default", word_wrap=True))

