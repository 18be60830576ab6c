"""`cnnrun report`: the whole story of a run, or of many, as one HTML page that opens from disk and can be mailed.

One run folder gives the run's page (`RUN_DIR/report.html` unless `--out` says otherwise): what was trained, the
learning curves, the test scores, the confusion matrix and per-class scores, calibration, the top losses, the data
and the machine. A folder of runs, or several run folders, gives the page of many runs: the `cnnrun runs` table,
sortable, their curves overlaid and what differs between their configs. `train`, `resume` and `evaluate` write the
run's page at their end.

The page is built from the run folder's files only; no model runs, so it takes a second or two. What a folder lacks
(no `eval/`, a cut-short `history.csv`) is said in the page, in its place.

Modules: `html` (the page's pieces), `curves` (the learning-curve figure), `one_run`, `many_runs`.

Example:
>>> page = write_report([Path("outputs/quickstart/20261127-101500")])
>>> page.path, page.kind
(PosixPath('outputs/quickstart/20261127-101500/report.html'), 'run')
"""

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from cnnrun import __version__
from cnnrun.atomic import atomic_write_text
from cnnrun.errors import UserError
from cnnrun.run_folder import files
from cnnrun.run_folder.folder import Run, open_run
from cnnrun.tasks.report.html import page
from cnnrun.tasks.runs_table import find_run_folders

REPORT = files.REPORT  # the page's name in a run folder, and in a folder of runs


@dataclass(frozen=True)
class ReportPage:
    """What `write_report` wrote: the page, whether it shows one run or many, how many runs, and what the folders
    lacked (each said in the page too)."""

    path: Path
    kind: Literal["run", "runs"]
    runs: int
    missing: tuple[str, ...]


def _footer(what: str) -> str:
    return f"Written by cnnrun {__version__} on {datetime.now().isoformat(timespec='seconds')} from {what}."


def _check_out(out: Path) -> Path:
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out}: the page is HTML; give a file ending in .html")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file ending in .html")
    return out


def write_run_report(run: Run, out: Path | None = None) -> ReportPage:
    """Write the page of one run (its folder's `report.html` unless `out` is given)."""
    from cnnrun.tasks.report.one_run import run_sections

    target = _check_out(out) if out is not None else run.path / REPORT
    title, subtitle, sections, lacking = run_sections(run)
    atomic_write_text(target, page(f"{title}: a cnnrun run", subtitle, sections, _footer(str(run.path))))
    return ReportPage(target, "run", 1, tuple(lacking))


def write_report(paths: list[Path], out: Path | None = None) -> ReportPage:
    """Write the page of one run or of many.

    Args:
        paths: run folders or folders of runs. None given: the most recently started run under `outputs/`. One
            run folder: its page. One folder of runs (searched at any depth), or several paths: the page of every
            run they hold.
        out: the HTML file to write. Defaults to `report.html` in the run folder or the folder of runs, and to
            `report.html` in the current folder when several paths are given.

    Returns:
        The `ReportPage` written. A path that is neither a run folder nor holds one is a one-line UserError,
        raised before anything is written.
    """
    if out is not None:
        _check_out(out)
    if not paths:
        return write_run_report(open_run(None), out)
    held: dict[Path, None] = {}  # every run folder once, in the order the paths give them
    for path in paths:
        runs = find_run_folders(path)
        if not runs:
            raise UserError(f"{path}: not a run folder and holds none; give a run folder (outputs/NAME/TIME) or a "
                            f"folder of runs (outputs)")
        held.update(dict.fromkeys(runs))
    found = list(held)
    if len(paths) == 1 and found == [paths[0]]:
        return write_run_report(Run(paths[0]), out)
    from cnnrun.tasks.report.many_runs import runs_sections

    target = out if out is not None else (paths[0] / REPORT if len(paths) == 1 else Path(REPORT))
    root = paths[0]
    if len(paths) > 1:  # the rows name each run relative to the folder that holds them all
        found = [path.resolve() for path in found]
        root = _common(found)
    sections, problems = runs_sections(found, root, target)
    title = f"{len(found)} cnnrun runs"
    subtitle = [", ".join(str(path) for path in paths)]
    atomic_write_text(target, page(title, subtitle, sections, _footer(", ".join(str(p) for p in paths))))
    return ReportPage(target, "runs", len(found), tuple(problems))


def _common(paths: list[Path]) -> Path:
    """The folder that holds every one of the (resolved) run folders."""
    common = Path(os.path.commonpath([str(path) for path in paths]))
    return common.parent if common in paths else common
