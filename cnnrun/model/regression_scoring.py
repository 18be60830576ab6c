"""Scoring a run of numbers a picture (`label_mode: regression`): each checkpoint's test outputs, undone from their
normalisation (`cnnrun.model.regression.denormalized`), scored in the targets' own units: what `scores.json` holds.

Example:
>>> score_regression_checkpoints(run, splits, experiment)["best"]
{'loss': 0.41, 'mae': 6.2, 'rmse': 8.1, 'r2': 0.87}
"""

from typing import Any

import numpy as np

from cnnrun.atomic import checkpoint_info
from cnnrun.model.regression import denormalized, regression_scores


def predicted_numbers(model, data, info, callbacks=()) -> np.ndarray:
    """The model's numbers for every picture of `data` (batches of pictures, or of `(pictures, targets)`), in the
    targets' own units (N × targets, float64)."""
    outputs = model.predict(data, verbose=0, callbacks=list(callbacks))
    return denormalized(outputs, info.target_mean, info.target_std)


def score_regression_checkpoints(run, splits, experiment, callbacks=()) -> dict[str, Any]:
    """The test scores of `best.keras` and `last.keras` (once when both hold the same epoch): Keras' `loss` (on the
    normalised targets, as trained) and `mae`, `rmse`, `r2` in the targets' own units (averaged over the target
    columns, `cnnrun.model.regression.regression_scores`); {} without a test split."""
    from cnnrun.model.checkpoints import load_checkpoint

    if splits.test is None:
        return {}
    truth = np.asarray(splits.examples["test"].labels)
    epochs = {which: (checkpoint_info(run.checkpoint(which)) or {}).get("epoch") for which in ("best", "last")}
    scores: dict[str, Any] = {}
    for which in ("best", "last"):
        if which == "last" and "best" in scores and epochs["best"] is not None and epochs["best"] == epochs["last"]:
            scores["last"] = dict(scores["best"])  # the same epoch's weights: scored once
            continue
        if not run.checkpoint(which).exists():
            continue
        model = load_checkpoint(run.checkpoint(which), use_other=None)
        loss = model.evaluate(splits.test, verbose=0, return_dict=True, callbacks=list(callbacks))["loss"]
        numbers = predicted_numbers(model, splits.test, splits.info, callbacks)
        scores[which] = {"loss": float(loss)} | regression_scores(truth, numbers)
    return scores
