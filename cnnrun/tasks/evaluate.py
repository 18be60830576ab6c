"""`cnnrun evaluate`: judge a run's checkpoint on a split, with the run's own preprocessing.

Writes into `RUN_DIR/eval/`, each file named `<checkpoint>_<split>_...`: metrics (JSON, with the balanced
accuracy and the expected calibration error), the class probabilities of every picture (`predictions.npz`, see
`Run.write_predictions`), a confusion matrix (PNG), a per-class precision / recall / F1 table (CSV), a grid of
misclassified examples (PNG) and Grad-CAM over the top losses (`explained.png`). A multi-label run
(`label_mode: multi_label`) writes its metrics (at the thresholds of `thresholds.json`, and mean average precision)
and a per-label table (`per_label.csv`: threshold, precision, recall, F1, average precision, support) instead; a
run of numbers a picture (`label_mode: regression`) its errors, R², a scatter and the residuals
(`cnnrun.tasks.evaluate_regression`).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.atomic import atomic_write_csv, atomic_write_figure, atomic_write_json
from cnnrun.figures import overlay_grid
from cnnrun.model.calibration import reliability
from cnnrun.model.checkpoints import load_run_model
from cnnrun.model.multilabel import DEFAULT_THRESHOLD, label_table, multilabel_scores
from cnnrun.model.scoring import per_class_table, scored_probabilities, tta_scores
from cnnrun.run_folder.files import EVAL, explained_name
from cnnrun.run_folder.folder import Run, open_run


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate_run` found and wrote; the CLI shows it (per-class table, then the results)."""

    title: str  # `<experiment>: <checkpoint>.keras on <split>`
    split: str
    metrics: dict[str, float]  # Keras' `evaluate` and balanced_accuracy, with tta_* under `evaluate.tta`
    examples: int
    per_class: tuple[dict[str, Any], ...]  # the rows of <prefix>_per_class.csv (multi-label: _per_label.csv)
    files: tuple[Path, ...]  # everything written into RUN_DIR/eval/
    pattern: str  # `RUN_DIR/eval/<checkpoint>_<split>_*`, the files in one word
    warnings: tuple[str, ...] = ()  # the data layer's (`Splits.warnings`)
    explained: tuple[int, ...] = ()  # the pictures of explained.png (indices into the split), top loss first
    run: Run | None = None  # the run folder evaluated




def confusion_figure(matrix: np.ndarray, names: list[str], title: str):
    """The confusion matrix as a matplotlib figure: true classes down, predicted across, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.5, 0.55 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    if len(names) <= 20:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    return fig


def misclassified_figure(pixels, truth: np.ndarray, predicted: np.ndarray, names: list[str]):
    """A grid of up to 25 misclassified images titled `true → predicted`; `pixels(indices)` gives their images."""
    wrong = np.flatnonzero(truth != predicted)[:25]
    images = pixels(wrong) if len(wrong) else []
    titles = [f"{names[truth[i]]} → {names[predicted[i]]}" for i in wrong]
    title = "misclassified pictures" if len(wrong) else "no misclassified examples"
    return overlay_grid(np.asarray(images), [None] * len(wrong), titles, ["firebrick"] * len(wrong), title)


def _multilabel_evaluation(run: Run, title: str, checkpoint: str, split: str, metrics: dict[str, float],
                           scores: np.ndarray, truth: np.ndarray, names: list[str],
                           warnings: tuple[str, ...]) -> Evaluation:
    """Several labels a picture: the figures at the checkpoint's thresholds (`thresholds.json`; 0.5 each for a run
    without one) and mean average precision, and a per-label table (`<prefix>_per_label.csv`) instead of the
    confusion matrix and the pictures."""
    thresholds = [run.read_thresholds().get(checkpoint, {}).get(name, DEFAULT_THRESHOLD) for name in names]
    metrics = metrics | multilabel_scores(truth, scores, thresholds)
    rows = label_table(truth, scores, thresholds, names)
    out, prefix = run.eval_folder, f"{checkpoint}_{split}"
    files = (out / f"{prefix}_metrics.json", out / f"{prefix}_per_label.csv")
    atomic_write_json(files[0], {"checkpoint": checkpoint, "split": split, "examples": int(len(truth)),
                                 "thresholds": dict(zip(names, thresholds, strict=True)), **metrics})
    atomic_write_csv(files[1], rows)
    return Evaluation(title, split, metrics, int(len(truth)), tuple(rows), files, f"{out}/{prefix}_*", warnings,
                      run=run)


def evaluate_run(run_path: str | Path | None, checkpoint: str = "best", split: str = "test",
                 explain: int = 12) -> Evaluation:
    """Evaluate a run's checkpoint on one split and write the results into `RUN_DIR/eval/`.

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        checkpoint: `best` or `last`.
        split: `test` or `validation`.
        explain: draw Grad-CAM over the N pictures of largest loss, `−log p(true class)` (normally mistakes,
            the most confident first), into `<checkpoint>_<split>_explained.png`; 0 draws none. Defaults to 12.

    Returns:
        An `Evaluation`: the headline metrics, those Keras' `evaluate` reports and `balanced_accuracy`, computed
        from the one pass of `predict` (`cnnrun.model.scoring.scored_probabilities`; with `evaluate.tta`, also
        `tta_accuracy`, `tta_balanced_accuracy` and `tta_loss`, and the confusion matrix, per-class table and
        calibration are those of the averaged views) and `expected_calibration_error` (15 bins,
        `cnnrun.model.calibration`), the per-class rows (each class's recall among them), the files written and
        the pictures explained. Nothing is printed.
    """
    from cnnrun.data import load_splits

    run = open_run(run_path)
    run.check_writable(EVAL)  # before any work: the results go there
    experiment, info, model = load_run_model(run, checkpoint)
    stored_files = run.read_splits()
    splits = load_splits(experiment, stored=info, stored_files=stored_files)
    if info.label_mode == "regression":  # numbers: errors and R², a scatter and the residuals
        from cnnrun.tasks.evaluate_regression import regression_evaluation

        return Evaluation(**regression_evaluation(run, model, splits, experiment, checkpoint, split))
    data = splits.split(split)
    examples = splits.examples[split]
    truth = examples.labels
    metrics, averaged = scored_probabilities(model, data, experiment)  # one pass (a pass a view with TTA)
    if info.label_mode == "multi_label":
        return _multilabel_evaluation(run, f"{experiment.name}: {checkpoint}.keras on {split}", checkpoint, split,
                                      metrics, averaged, truth, info.class_names, tuple(splits.warnings))
    if experiment.evaluate.tta:
        metrics |= tta_scores(averaged, truth)
    metrics["expected_calibration_error"] = reliability(averaged, truth).ece
    predicted = averaged.argmax(axis=-1)
    matrix, rows = per_class_table(truth, predicted, info.class_names)

    out, prefix = run.eval_folder, f"{checkpoint}_{split}"
    report = {"checkpoint": checkpoint, "split": split, "examples": int(len(truth)), "tta": experiment.evaluate.tta,
              **metrics}
    files = [out / f"{prefix}_{name}" for name in ("metrics.json", "per_class.csv", "confusion.png",
                                                    "misclassified.png")]
    atomic_write_json(files[0], report)
    run.write_predictions(checkpoint, split, averaged, truth)
    files.append(run.predictions_file(checkpoint, split))
    atomic_write_csv(files[1], rows)
    title = f"{experiment.name}: {checkpoint}.keras on {split}"
    atomic_write_figure(confusion_figure(matrix, info.class_names, title), files[2], dpi=100)
    atomic_write_figure(misclassified_figure(examples.pixels, truth, predicted, info.class_names), files[3], dpi=100)
    explained = ()
    if explain:
        from cnnrun.explain.mistakes import explain_top_losses

        files.append(run.path / explained_name(checkpoint, split))
        explained = explain_top_losses(model, info, examples.pixels, truth, averaged, explain, files[-1])
    return Evaluation(title, split, metrics, int(len(truth)), tuple(rows), tuple(files), f"{out}/{prefix}_*",
                      tuple(splits.warnings), tuple(int(i) for i in explained), run)
