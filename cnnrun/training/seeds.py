"""`cnnrun train CONFIG --seeds N`: the same experiment with N seeds, and the mean ± standard deviation of each
test metric: a result quoted from one seed is noise.

Seed i (0-based) is the experiment's `seed + i`; each run is a normal run folder beside the others
(`<output.dir>/<name>/<time>/`), its `config.yaml` holding its own seed.

Example:
>>> summarise([{"best": {"accuracy": 0.90}}, {"best": {"accuracy": 0.92}}])
{'best': {'accuracy': (0.91, 0.014142135623730963, [0.9, 0.92])}}
"""

import statistics
from dataclasses import dataclass
from typing import Any

from cnnrun.config import Experiment
from cnnrun.report import Say, silent
from cnnrun.run_folder.folder import Run


def summarise(scores: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float, list[float]]]]:
    """Per checkpoint and metric: the mean, the sample standard deviation (0 for one run) and every run's value,
    over the runs' `scores.json` contents; a metric is summarised only where every run has it."""
    summary: dict[str, dict[str, tuple[float, float, list[float]]]] = {}
    for which in ("best", "last"):
        if not scores or not all(which in s for s in scores):
            continue
        for metric in scores[0][which]:
            values = [s[which].get(metric) for s in scores]
            if all(isinstance(v, int | float) for v in values):
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                summary.setdefault(which, {})[metric] = (statistics.fmean(values), spread, values)
    return summary


@dataclass(frozen=True)
class SeedsSummary:
    """What `train --seeds N` found: a title, the rows of its table (seeds, each test metric's mean ± std and
    every run's value, the run folders), and the runs."""

    title: str
    rows: list[tuple[str, str]]
    runs: list[Run]


def train_seeds(experiment: Experiment, count: int, output_dir: str | None = None,
                name: str | None = None, say: Say = silent) -> SeedsSummary:
    """Train `experiment` with `count` seeds, one after another; the mean ± std of the test metrics.

    Args:
        experiment: the validated experiment; its `seed` is the first seed.
        count: how many seeds (runs).
        output_dir, name: as `cnnrun train`'s options. Default to the experiment's.
    """
    from cnnrun.training.trainer import train_experiment

    runs = []
    for i in range(count):
        seeded = experiment.model_copy(update={"seed": (experiment.seed + i) % 2**32}, deep=True)
        runs.append(train_experiment(seeded, output_dir=output_dir, name=name, say=say))
    scores = [run.read_scores() for run in runs]
    seeds = ", ".join(str((experiment.seed + i) % 2**32) for i in range(count))
    rows = [("seeds", seeds)]
    for which, metrics in summarise(scores).items():
        for metric, (mean, spread, values) in metrics.items():
            each = ", ".join(f"{v:.4f}" for v in values)
            rows.append((f"test {metric}, {which}.keras", f"{mean:.4f} ± {spread:.4f}  ({each})"))
    if len(rows) == 1:
        rows.append(("test", "no test split"))
    rows += [("run folders", "\n".join(str(run.path) for run in runs))]
    return SeedsSummary(f"{experiment.name}: {count} seeds (mean ± standard deviation)", rows, runs)
