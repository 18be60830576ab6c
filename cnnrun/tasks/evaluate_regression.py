"""`cnnrun evaluate` of a run of numbers a picture (`label_mode: regression`).

Writes into `RUN_DIR/eval/`, each file named `<checkpoint>_<split>_...`: `metrics.json` (Keras' loss on the
normalised targets; MAE, RMSE and R² in the targets' own units, averaged over the targets and per target),
`residuals.csv` (each picture's file, and per target its true number, the predicted one and the residual
true − predicted), `scatter.png` (predicted against true, one panel a target, the line of perfect predictions) and
`residuals.png` (a histogram of the residuals of each target). Nothing class-based (confusion matrix, calibration,
Grad-CAM of a class) applies to numbers.
"""

from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.atomic import atomic_write_csv, atomic_write_figure, atomic_write_json
from cnnrun.model.regression import per_target, regression_scores
from cnnrun.model.regression_scoring import predicted_numbers


def target_rows(truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """One row a target: its MAE, RMSE, R² (rounded to 4 digits) and the pictures scored."""
    scores = per_target(truth, predicted)
    return [{"target": name, "mae": round(float(scores["mae"][j]), 4), "rmse": round(float(scores["rmse"][j]), 4),
             "r2": round(float(scores["r2"][j]), 4), "support": int(len(truth))} for j, name in enumerate(names)]


def residual_rows(paths: list[str] | None, truth: np.ndarray, predicted: np.ndarray,
                  names: list[str]) -> list[dict[str, Any]]:
    """One row a picture: its file, and per target `<name>_true`, `<name>_predicted`, `<name>_residual`."""
    rows = []
    for i in range(len(truth)):
        row: dict[str, Any] = {"file": paths[i] if paths is not None else i}
        for j, name in enumerate(names):
            row |= {f"{name}_true": float(truth[i, j]), f"{name}_predicted": float(predicted[i, j]),
                    f"{name}_residual": float(truth[i, j] - predicted[i, j])}
        rows.append(row)
    return rows


def _figures(truth: np.ndarray, predicted: np.ndarray, names: list[str], title: str):
    """The scatter of predicted against true and the histogram of residuals, one panel a target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(names)
    scatter, axes = plt.subplots(1, count, figsize=(4.5 * count, 4.5), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        low, high = float(min(truth[:, j].min(), predicted[:, j].min())), float(max(truth[:, j].max(),
                                                                                 predicted[:, j].max()))
        ax.scatter(truth[:, j], predicted[:, j], s=8, alpha=0.6)
        ax.plot([low, high], [low, high], color="firebrick", linewidth=1, label="predicted = true")
        ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=name)
        ax.legend(loc="upper left", fontsize=8)
    scatter.suptitle(title)
    scatter.tight_layout()
    histogram, axes = plt.subplots(1, count, figsize=(4.5 * count, 3.5), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        ax.hist(truth[:, j] - predicted[:, j], bins=30)
        ax.set(xlabel=f"residual (true − predicted) {name}", ylabel="pictures", title=name)
    histogram.suptitle(title)
    histogram.tight_layout()
    return scatter, histogram


def regression_evaluation(run, model, splits, experiment, checkpoint: str, split: str) -> dict[str, Any]:
    """Evaluate a regression checkpoint on one split and write the four files; the fields of an `Evaluation`
    (`cnnrun.tasks.evaluate`, which builds it)."""
    info, data, examples = splits.info, splits.split(split), splits.examples[split]
    truth = np.asarray(examples.labels, np.float64).reshape(len(examples), -1)
    predicted = predicted_numbers(model, data, info)
    loss = model.evaluate(data, verbose=0, return_dict=True)["loss"]
    metrics = {"loss": float(loss)} | regression_scores(truth, predicted)
    rows = target_rows(truth, predicted, info.class_names)
    out, prefix = run.eval_folder, f"{checkpoint}_{split}"
    files = tuple(out / f"{prefix}_{name}" for name in ("metrics.json", "residuals.csv", "scatter.png",
                                                         "residuals.png"))
    title = f"{experiment.name}: {checkpoint}.keras on {split}"
    paths = [_shown(p, splits.root) for p in examples.paths] if hasattr(examples, "paths") else None
    atomic_write_json(files[0], {"checkpoint": checkpoint, "split": split, "examples": int(len(truth)),
                                 "target_mean": info.target_mean, "target_std": info.target_std, **metrics,
                                 "per_target": rows})
    atomic_write_csv(files[1], residual_rows(paths, truth, predicted, info.class_names))
    scatter, histogram = _figures(truth, predicted, info.class_names, title)
    atomic_write_figure(scatter, files[2], dpi=100)
    atomic_write_figure(histogram, files[3], dpi=100)
    return {"title": title, "split": split, "metrics": metrics, "examples": int(len(truth)), "per_class": tuple(rows),
            "files": files, "pattern": f"{out}/{prefix}_*", "warnings": tuple(splits.warnings), "run": run}


def _shown(path: str, root: Path | None) -> str:
    """A picture's path relative to the table's folder when inside it, else as it is."""
    p = Path(path)
    return p.relative_to(root).as_posix() if root is not None and p.is_relative_to(root) else str(p)
