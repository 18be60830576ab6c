"""`cnnrun compare`: what differs between runs, how they scored, and their learning curves in one figure.

The configs compared are the runs' own `config.yaml` (the resolved experiment, every default filled in),
flattened into dotted keys, the paths `--set` takes (`compile.optimizer.learning_rate`,
`model.layers.3.Dense.units`); only the keys whose values differ are shown, so two runs of one experiment with
two `--set`s show exactly those two keys.

Example:
>>> compare_runs([Path("outputs/quickstart/20261127-101500"), Path("outputs/quickstart/20261127-103000")],
...              Path("compare.png"))
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnrun.atomic import atomic_write_figure
from cnnrun.config.load import MISSING, differing_keys, read_yaml  # noqa: F401  (MISSING: differing_keys' marker)
from cnnrun.errors import UserError
from cnnrun.report import main_metric
from cnnrun.run_folder.folder import Run, open_run
from cnnrun.tasks.runs_table import read_row

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def run_label(run: Run) -> str:
    """`<name>/<time>`: the last two parts of a run folder's path, which tell runs apart in tables and legends."""
    return "/".join(run.path.resolve().parts[-2:])


def shown(value: Any) -> str:
    """A config value as the comparison shows it: floats to 4 significant digits, the rest as YAML-ish JSON."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def score_rows(runs: list[Run]) -> list[tuple[str, list[str]]]:
    """`(what, [value per run])`: status, epochs, best value, each test score of best.keras and last.keras,
    parameters and fit time, as `cnnrun runs` reads them."""

    rows = [read_row(run.path, run.path.parent) for run in runs]
    scores = [run.read_scores() for run in runs]
    table = [("status", [row["status"] for row in rows]),
             ("epochs", [f"{row['epochs']}/{row['planned']}" for row in rows]),
             ("best", [f"{row['monitor']} {row['best']:.4f}" if row["best"] is not None else "—" for row in rows])]
    for checkpoint in ("best", "last"):
        names = dict.fromkeys(name for score in scores for name in (score.get(checkpoint) or {}))
        for name in names:
            values = [(score.get(checkpoint) or {}).get(name) for score in scores]
            table.append((f"test {name} ({checkpoint}.keras)", [f"{v:.4f}" if v is not None else "—"
                                                                 for v in values]))
    table.append(("params", [f"{row['params']:,}" if row["params"] is not None else "—" for row in rows]))
    table.append(("fit time", [f"{row['fit_seconds']:.1f} s" for row in rows]))
    return table


def curves_figure(histories: list[list[dict[str, Any]]], labels: list[str]):
    """Loss and the main metric per epoch (each run's history.csv rows), every run in its own colour: training
    solid, validation dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metric = next((m for m in (main_metric(h) for h in histories) if m), None)
    keys = ["loss"] + ([metric] if metric else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes[0], keys, strict=True):
        for i, (history, label) in enumerate(zip(histories, labels, strict=True)):
            colour = colours[i % len(colours)]
            epochs = [row["epoch"] for row in history]
            ax.plot(epochs, [row.get(key) for row in history], "o-", color=colour, label=f"{label} training")
            if any(f"val_{key}" in row for row in history):
                ax.plot(epochs, [row.get(f"val_{key}") for row in history], "s--", color=colour,
                        label=f"{label} validation")
        ax.set(xlabel="epoch", ylabel=key, title=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Comparison:
    """What `cnnrun compare` found: the runs' labels, the config keys that differ (each with its value per run),
    the score rows (what, one value per run) and the figure of learning curves written."""

    labels: list[str]
    differing: dict[str, list[Any]]
    scores: list[tuple[str, list[str]]]
    figure: Path


def compare_runs(paths: list[Path], out: Path) -> Comparison:
    """The config keys that differ between the runs and their scores side by side; their learning curves drawn
    into `out`.

    Args:
        paths: two or more run folders.
        out: the figure to write (.png, .jpg, .pdf or .svg).

    Returns:
        The comparison; its `differing` keys are `differing_keys`' (each with its value per run).
    """

    if len(paths) < 2:
        raise UserError(f"compare: give two or more run folders, got {len(paths)}")
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"--out {out}: a figure file ending in {', '.join(FIGURE_SUFFIXES)}")
    runs = [open_run(path) for path in paths]
    resolved = [run.path.resolve() for run in runs]
    twice = next((run.path for run, path in zip(runs, resolved, strict=True) if resolved.count(path) > 1), None)
    if twice is not None:
        raise UserError(f"compare: {twice} is given twice; give different run folders")
    labels = [run_label(run) for run in runs]
    if len(set(labels)) < len(labels):
        labels = [str(run.path) for run in runs]
    differing = differing_keys([read_yaml(run.config_file, c_parser=True) for run in runs])
    histories = [run.read_history() for run in runs]  # a damaged one is said before anything is printed

    atomic_write_figure(curves_figure(histories, labels), out, dpi=100)
    return Comparison(labels, differing, [(what, list(values)) for what, values in score_rows(runs)], out)
