"""`cnnrun train CONFIG --folds K`: k-fold cross-validation, K runs that each validate on one fold of the training
pictures, and the mean ± standard deviation of their scores.

Fold i's run is a normal run folder, `<output.dir>/<name>-fold<i>of<K>/<time>/`, whose `config.yaml` holds
`dataset.fold: {count: K, index: i}` (the split itself: `cnnrun.data.folds`); the test split is the same for
every fold and untouched. The same command again goes on where it stopped: a fold whose latest run of the same
config finished is kept (or goes on, when `train.epochs` grew since), one that was killed or interrupted is
resumed, the others are trained.

Example:
>>> summary = train_folds(experiment, 5)
>>> summary.rows[0]
('folds', '5 (stratified; validation: fold i of run i)')
"""

from pathlib import Path

from cnnrun.config import Experiment
from cnnrun.config.dataset import FoldConfig
from cnnrun.errors import UserError
from cnnrun.report import Say, silent
from cnnrun.run_folder.folder import Run, runs_under
from cnnrun.training.reopen import KEPT, config_changes
from cnnrun.training.seeds import SeedsSummary, summarise


def fold_experiment(experiment: Experiment, count: int, index: int) -> Experiment:
    """`experiment` validating on fold `index` of `count`: `dataset.fold` set, `validation_split` and
    `holdout_first` dropped (the fold replaces them)."""
    dataset = experiment.dataset.model_copy(update={"fold": FoldConfig(count=count, index=index),
                                                    "validation_split": None, "holdout_first": None})
    dataset._source = experiment.dataset.source
    return experiment.model_copy(update={"dataset": dataset}, deep=True)


def fold_name(name: str, count: int, index: int) -> str:
    """The run name of fold `index` of `count`: `cifar10-fold2of5`."""
    return f"{name}-fold{index}of{count}"


def earlier_run(folder: Path, experiment: Experiment) -> Run | None:
    """The latest run folder under `folder` that began with exactly `experiment` (keys resume may change
    aside), or None."""
    for path in reversed(runs_under(folder)):
        run = Run(path)
        try:
            meta = run.read_meta()
        except UserError:  # a damaged meta.json: not a run to go on with
            continue
        if meta is None or meta.config is None:
            continue
        changes = config_changes(meta.config, experiment)
        if all(any(key == kept or key.startswith(f"{kept}.") for kept in KEPT) for key, _, _ in changes):
            return run
    return None


def train_folds(experiment: Experiment, count: int, output_dir: str | None = None, name: str | None = None,
                say: Say = silent) -> SeedsSummary:
    """Train (or finish) the `count` fold runs of `experiment`, one after another; the mean ± std of their test
    metrics and of their best validation epoch's.

    Args:
        experiment: the validated experiment.
        count: how many folds (runs), 2 or more.
        output_dir, name: as `cnnrun train`'s options. Default to the experiment's.
        say: where progress goes. Defaults to nowhere.
    """
    from cnnrun.training.trainer import resume_run, train_experiment

    base = name or experiment.name
    replaced = [f"{key} {value}" for key, value in (("validation_split", experiment.dataset.validation_split),
                                                    ("holdout_first", experiment.dataset.holdout_first))
                if value is not None]
    if replaced:
        say(f"note: the folds replace dataset.{' and '.join(replaced)}")
    runs = []
    for index in range(1, count + 1):
        folded = fold_experiment(experiment, count, index)
        run_name = fold_name(base, count, index)
        earlier = earlier_run(Path(output_dir or experiment.output.dir) / run_name, folded)
        state = earlier.read_state() if earlier is not None else None
        if state is not None and (state.status == "stopped_early" or (
                state.status == "completed" and state.epochs_completed >= folded.train.epochs)):
            say(f"fold {index} of {count}: finished before, kept: {earlier.path}")
            runs.append(earlier)
        elif state is not None and state.status == "completed":  # train.epochs grew since
            say(f"fold {index} of {count}: {earlier.path} goes on to {folded.train.epochs} epochs")
            runs.append(resume_run(earlier.path, epochs=folded.train.epochs, say=say) or earlier)
        elif earlier is not None:
            say(f"fold {index} of {count}: going on with {earlier.path}")
            runs.append(resume_run(earlier.path, say=say) or earlier)
        else:
            runs.append(train_experiment(folded, output_dir=output_dir, name=run_name, say=say))
    unstratified = {"multi_label": "several labels a picture", "regression": "numbers, not classes"}
    return folds_summary(experiment.name, count, runs, unstratified.get(experiment.dataset.label_mode))


def folds_summary(name: str, count: int, runs: list[Run], not_stratified: str | None = None) -> SeedsSummary:
    """The table of `train --folds`: each fold's best validation score and the test metrics, mean ± std; the
    folds of several labels a picture, or of numbers, are dealt in one seeded order, not stratified
    (`not_stratified` says why)."""
    how = f"one seeded deal, not stratified: {not_stratified}" if not_stratified else "stratified"
    rows = [("folds", f"{count} ({how}; validation: fold i of run i)")]
    validation = [{"best": _validation_at_best(run)} for run in runs]
    for metric, (mean, spread, values) in summarise(validation).get("best", {}).items():
        rows.append((f"validation {metric}, best epoch", _spread(mean, spread, values)))
    for which, metrics in summarise([run.read_scores() for run in runs]).items():
        for metric, (mean, spread, values) in metrics.items():
            rows.append((f"test {metric}, {which}.keras", _spread(mean, spread, values)))
    rows.append(("run folders", "\n".join(str(run.path) for run in runs)))
    return SeedsSummary(f"{name}: {count}-fold cross-validation (mean ± standard deviation)", rows, runs)


def _spread(mean: float, spread: float, values: list[float]) -> str:
    return f"{mean:.4f} ± {spread:.4f}  ({', '.join(f'{v:.4f}' for v in values)})"


def _validation_at_best(run: Run) -> dict[str, float]:
    """The validation metrics (`val_…` in history.csv, without the prefix) of the epoch best.keras holds."""
    best = run.recorded_best()
    rows = [row for row in run.read_history() if best and row.get("epoch") == best.get("epoch")]
    return {key.removeprefix("val_"): float(value) for key, value in (rows[-1] if rows else {}).items()
            if key.startswith("val_") and isinstance(value, int | float)}
