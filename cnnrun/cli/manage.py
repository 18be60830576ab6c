"""The commands about many runs and about taking one out: `runs`, `compare`, `export`."""

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnnrun.cli.common import Checkpoint, CheckpointOption, RunArg, app, quiet_imports, run_experiment_of

TableFormat = StrEnum("TableFormat", ["table", "csv", "json"])  # how `runs` prints its rows
ExportFormat = StrEnum("ExportFormat", ["saved_model", "onnx", "litert"])  # what `export` writes


@app.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="A folder of run folders (searched at any depth).")]
    = Path("outputs"),
    sort: Annotated[str | None, typer.Option("--sort", help="Sort by a column or a dotted config key; '-' first "
                                             "for descending: --sort -best.", show_default=False)] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="Keep the runs where KEY=VALUE, KEY a column "
                     "or a dotted config key: --where status=completed --where compile.optimizer=sgd. "
                     "Repeatable (all must hold).", show_default=False)] = None,
    format_: Annotated[TableFormat, typer.Option("--format", help="A table for people, CSV or JSON for "
                       "programs (every column, numbers unrounded).")] = TableFormat.table,
) -> None:
    """List the runs under FOLDER: start, status, epochs, best value, test accuracy, parameters, time, backend.

    Reads only the run folders' small files; a folder whose files are damaged is one row marked damaged.

    Example: cnnrun runs outputs --where status=completed --sort -test_best
    """
    from cnnrun.tasks.runs_table import list_runs, select, table_text, to_csv, to_json

    rows = select(list_runs(folder), where, sort)
    if format_ is TableFormat.csv:
        sys.stdout.write(to_csv(rows))
    elif format_ is TableFormat.json:
        sys.stdout.write(to_json(rows))
    else:
        sys.stdout.write(f"{len(rows)} run{'s' * (len(rows) != 1)} under {folder}\n{table_text(rows)}")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run folders.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Where the learning curves go (.png, .jpg, .pdf or .svg).")]
    = Path("compare.png"),
) -> None:
    """Compare runs: the config keys that differ between them, their scores side by side, and one figure of
    their learning curves overlaid (loss and the main metric, training and validation).

    Example: cnnrun compare outputs/quickstart/20261127-101500 outputs/quickstart/20261127-103000 --out lr.png
    """
    from cnnrun.cli.render_tasks import show_comparison
    from cnnrun.tasks.compare import compare_runs

    show_comparison(compare_runs(run_dirs, out))


@app.command()
def export(
    run_dir: RunArg = None,
    format_: Annotated[ExportFormat, typer.Option("--format", help="saved_model (TensorFlow Serving), onnx "
                       "(ONNX Runtime) or litert (.tflite: phones, microcontrollers).")] = ExportFormat.saved_model,
    checkpoint: CheckpointOption = Checkpoint.best,
    out: Annotated[Path | None, typer.Option("--out", help="Where the exported model goes (default: "
                   "RUN_DIR/export/<checkpoint>_saved_model, <checkpoint>.onnx or <checkpoint>.tflite).",
                   show_default=False)] = None,
) -> None:
    """Export a run's model for serving, with its preprocessing inside (it takes raw pixel values 0-255), and
    check that it predicts what the .keras checkpoint predicts on a few of the run's test images.

    Exit code 0 when the exported model agrees within 1e-4, 1 when it does not.

    Example: cnnrun export outputs/quickstart/20261127-101500 --format onnx
    """
    from cnnrun.devices.backend import use_backend
    from cnnrun.tasks.export import check_packages

    check_packages(format_.value)
    run_experiment_of(run_dir)  # a run folder that is not one: one line, before Keras loads
    use_backend("tensorflow")  # Keras exports through TensorFlow; a .keras checkpoint loads on any backend
    quiet_imports()
    from cnnrun.cli.render_tasks import show_export
    from cnnrun.tasks.export import export_run

    exported = export_run(run_dir, format_.value, checkpoint.value, out)
    show_export(exported)
    if not exported.ok:
        raise typer.Exit(1)


@app.command()
def report(
    paths: Annotated[list[Path] | None, typer.Argument(help="Run folders or folders of runs (default: the latest "
                     "run under outputs/).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="The HTML file to write (default: report.html in the "
                   "run folder or folder of runs; in the current folder for several paths).",
                   show_default=False)] = None,
) -> None:
    """Write one self-contained HTML page of a run, or of many runs, that opens from disk in any browser.

    A run: config, data, machine, curves, test scores, confusion matrix, per-class scores, calibration and top
    losses. Many runs: the `runs` table (sortable), their curves overlaid and what differs between their configs.

    Example: cnnrun report outputs/quickstart/20261127-101500    (or: cnnrun report outputs --out all.html)
    """
    from cnnrun.cli.render_tasks import show_report
    from cnnrun.tasks.report import write_report

    show_report(write_report(list(paths or []), out))
