"""`cnnrun predict`: class probabilities for image files, with the run's own preprocessing; for a multi-label run
(`label_mode: multi_label`), every label whose score is at or above its threshold (`thresholds.json`); for a run of
numbers a picture (`label_mode: regression`), its numbers, in the targets' own units (the normalisation recorded in
dataset.json undone)."""

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.atomic import atomic_write_text
from cnnrun.data.pictures import collect_images, read_images
from cnnrun.model.multilabel import DEFAULT_THRESHOLD, labels_above
from cnnrun.model.scoring import tta_probabilities
from cnnrun.run_folder.folder import open_run


@dataclass(frozen=True)
class Predictions:
    """What `cnnrun predict` found: one result per input, in the order given.

    Args:
        title: what predicted them (checkpoint, run folder, test-time views).
        results: `{"file", "top": [(class, probability), ...]}`, or `{"file", "error"}` for an unreadable input;
            a multi-label run's also `"labels"`: `[(label, score), ...]` above their thresholds, highest first (its
            `top` then holds every label's score); a regression run's `{"file", "numbers": [(target, number), ...]}`
            instead, in the targets' order.
        output: the CSV file written, or None.
    """

    title: str
    results: list[dict[str, Any]]
    output: Path | None

    @property
    def unreadable(self) -> int:
        """How many inputs were not readable images (the CLI exits 1 when any was)."""
        return sum("error" in r for r in self.results)


def predict_files(run_path: str | Path | None, paths: list[Path], top_k: int = 3, checkpoint: str = "best",
                  output: Path | None = None) -> Predictions:
    """Predict the class of each image with a run's checkpoint: the top-k classes of each.

    A file that is not a readable image gets a line saying so; the others are still predicted. The CLI exits 1
    when any input was unreadable (as `cnnrun data check` does).

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        paths: image files or folders of images.
        top_k: how many classes to show per image.
        checkpoint: `best` or `last`.
        output: a CSV file to write the predictions to.

    Returns:
        The predictions, unreadable inputs among them with their reason.
    """
    from cnnrun.data import preprocess
    from cnnrun.model.checkpoints import load_run_model

    files = collect_images(paths)
    run = open_run(run_path)
    experiment, info, model = load_run_model(run, checkpoint)
    images, readable, reasons = read_images(files, info.input_shape)
    results = [{"file": str(path), "error": f"not a readable image: {reason}"} for path, reason in reasons.items()]
    if readable:
        import tensorflow as tf

        batch = tf.data.Dataset.from_tensor_slices(preprocess(images, info)).batch(64)
        if info.label_mode == "regression":  # numbers: the model's outputs × std + mean
            from cnnrun.model.regression_scoring import predicted_numbers

            results += [{"file": str(path), "numbers": list(zip(info.class_names, map(float, row), strict=True))}
                        for path, row in zip(readable, predicted_numbers(model, batch, info), strict=True)]
            readable = []
        # averaged over the views of `evaluate.tta`, if any
        probs = tta_probabilities(model, batch, experiment) if readable else []
        multi = info.label_mode == "multi_label"
        thresholds = [run.read_thresholds().get(checkpoint, {}).get(name, DEFAULT_THRESHOLD)
                      for name in info.class_names] if multi else []
        k = len(info.class_names) if multi else min(top_k, len(info.class_names))
        for path, p in zip(readable, probs, strict=True):
            order = np.argsort(-p)[:k]
            results.append({"file": str(path), "top": [(info.class_names[i], float(p[i])) for i in order],
                            **({"labels": labels_above(p, thresholds, info.class_names)} if multi else {})})
    position = {str(path): i for i, path in enumerate(files)}
    results.sort(key=lambda r: position[r["file"]])

    views = f", averaged over {' and '.join(experiment.evaluate.tta)} views" if experiment.evaluate.tta else ""
    if output and info.label_mode == "regression":
        _write_numbers(results, output, info.class_names)
    elif output:
        _write_csv(results, output, top_k, info.label_mode == "multi_label")
    return Predictions(f"predictions ({checkpoint}.keras of {run.path}{views})", results, output)


def _write_csv(results: list[dict], output: Path, top_k: int, multi: bool = False) -> None:
    if multi:  # the labels above their thresholds, then every label's score
        names = sorted({name for r in results for name, _ in r.get("top", [])})
        rows = [{"file": r["file"], "error": r.get("error", ""),
                 "labels": ";".join(name for name, _ in r.get("labels", [])),
                 **{f"score_{name}": f"{p:.6f}" for name, p in r.get("top", [])}} for r in results]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["file", "error", "labels", *(f"score_{n}" for n in names)],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(output, text.getvalue())
        return
    columns = ["file", "error"] + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("class", "probability")]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = {"file": r["file"], "error": r.get("error", "")}
        for i, (name, p) in enumerate(r.get("top", []), start=1):
            row[f"class_{i}"], row[f"probability_{i}"] = name, f"{p:.6f}"
        writer.writerow(row)
    atomic_write_text(output, text.getvalue())


def _write_numbers(results: list[dict], output: Path, names: list[str]) -> None:
    """A regression run's CSV: `file`, `error`, then one column a target (its number, in the targets' units)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["file", "error", *names], lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({"file": r["file"], "error": r.get("error", ""),
                         **{name: repr(value) for name, value in r.get("numbers", [])}})
    atomic_write_text(output, text.getvalue())
