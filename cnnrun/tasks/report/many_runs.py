"""The page of many runs: the table `cnnrun runs` prints (sortable in the page), what differs between their
configs, and their learning curves overlaid as `cnnrun compare` draws them. Each run's name links to its own
page (`report.html` in its folder) when it has one."""

import os
from pathlib import Path
from typing import Any

from cnnrun.config.load import differing_keys, read_yaml
from cnnrun.errors import UserError
from cnnrun.run_folder import files
from cnnrun.run_folder.folder import Run
from cnnrun.tasks.compare import curves_figure, shown
from cnnrun.tasks.report.html import cell, esc, figure_uri, image, missing, note, table
from cnnrun.tasks.runs_table import by_start, read_row

CURVES_AT_MOST = 12  # more runs than this make the overlaid curves unreadable: the first twelve are drawn
HEADER = ["run", "started", "status", "epochs", "planned", "best", "test best", "test last", "params", "fit time (s)",
          "backend", "problem"]


def _run_cell(row: dict[str, Any], out: Path) -> str:
    page = row["_path"] / files.REPORT
    if not page.exists():
        return cell(row["run"])
    link = Path(os.path.relpath(page, out.parent)).as_posix()
    return f'<td><a href="{esc(link)}">{esc(row["run"])}</a></td>'


def runs_table(rows: list[dict[str, Any]], out: Path) -> str:
    """One row per run (`cnnrun runs`' columns), numbers with their exact values for sorting."""
    body = []
    for row in rows:
        best = f"{row['monitor']} {row['best']:.4f}" if row["monitor"] and row["best"] is not None else None
        body.append([_run_cell(row, out), cell((row["started"] or "")[:19].replace("T", " ") or None),
                     cell(row["status"]), cell(row["epochs"]), cell(row["planned"]),
                     cell(best, attrs=f'data-value="{row["best"]!r}"' if row["best"] is not None else ""),
                     cell(row["test_best"]), cell(row["test_last"]), cell(row["params"]),
                     cell(row["fit_seconds"], 1), cell(row["backend"]), cell(row["problem"])])
    if not any(row["problem"] for row in rows):  # the column of what is wrong, only when something is
        return table(HEADER[:-1], [cells[:-1] for cells in body], sortable=True, attrs='id="runs-table"')
    return table(HEADER, body, sortable=True, attrs='id="runs-table"')


def runs_sections(paths: list[Path], root: Path, out: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The runs page's sections `(anchor, title, body)` and what could not be read."""
    rows = by_start([read_row(path, root) for path in paths])
    problems = [f"{row['run']}: {row['problem']}" for row in rows if row["problem"]]
    configs, labels, histories, drawn = [], [], [], []
    for row in rows:
        run = Run(row["_path"])
        try:
            configs.append(read_yaml(run.config_file, c_parser=True))
            labels.append(row["run"])
        except UserError:
            pass
        try:
            history = run.read_history()
        except UserError as e:
            problems.append(f"{row['run']}: {e}")
            continue
        if history and len(drawn) < CURVES_AT_MOST:
            histories.append(history)
            drawn.append(row["run"])
    sections = [("runs", "Runs", note("Click a column's name to sort by it.") + runs_table(rows, out))]
    if histories:
        more = note(f"The first {CURVES_AT_MOST} runs with a history are drawn.") \
            if len(rows) > CURVES_AT_MOST else ""
        sections.append(("curves", "Learning curves", image(figure_uri(curves_figure(histories, drawn)),
                                                            "learning curves of the runs") + more))
    else:
        sections.append(("curves", "Learning curves", missing("No run has a finished epoch.")))
    sections.append(("differences", "What differs", _differences(configs, labels)))
    return sections, problems


def _differences(configs: list[dict[str, Any]], labels: list[str]) -> str:
    if len(configs) < 2:
        return note("Fewer than two runs have a readable config.yaml: nothing to compare.")
    differing = differing_keys(configs)
    if not differing:
        return note("The runs' configs are the same (they differ in seed or time only).")
    rows = [[cell(key)] + [cell(shown(value)) for value in values] for key, values in differing.items()]
    return table(["config key", *labels], rows)
