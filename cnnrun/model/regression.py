"""Numbers a picture (`label_mode: regression`): the head it needs, the losses that fit, and its scores in numpy.

The model's outputs are normalised targets ((target − mean) / std, `cnnrun.data.regression`): `denormalized` turns
them back into the targets' own units before anything is scored or written. The scores, per target column and
then averaged over the columns:

- MAE = mean |y − ŷ|; RMSE = √(mean (y − ŷ)²);
- R² = 1 − SS_res / SS_tot, with SS_res = Σ (y − ŷ)² and SS_tot = Σ (y − ȳ)² (ȳ the mean of the true numbers
  scored): 1 is perfect, 0 is as good as predicting ȳ, below 0 worse. A column whose true numbers are all equal
  has no R² (NaN), left out of the average.

Example (true 1, 2, 3, 4 against 1, 2, 3, 5: one error of 1; SS_tot = 5):
>>> regression_scores(np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[1.0], [2.0], [3.0], [5.0]]))
{'mae': 0.25, 'rmse': 0.5, 'r2': 0.8}
"""

from typing import Any

import numpy as np

from cnnrun.errors import UserError

DEFAULT_LOSS = "mean_squared_error"
LOSSES = ("mean_squared_error", "mse", "mean_absolute_error", "mae", "huber")


def denormalized(outputs: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """The model's outputs (N × targets) in the targets' own units: output × std + mean, column by column.

    >>> denormalized(np.array([[0.5, -1.0]]), [10.0, 0.0], [2.0, 3.0])
    array([[11., -3.]])
    """
    return np.asarray(outputs, np.float64).reshape(len(outputs), -1) * np.asarray(std) + np.asarray(mean)


def per_target(truth: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """MAE, RMSE and R² of each target column (N × targets each), as arrays of one value a column."""
    truth = np.asarray(truth, np.float64).reshape(len(truth), -1)
    predicted = np.asarray(predicted, np.float64).reshape(truth.shape)
    error = truth - predicted
    total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    residual = (error ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.nan)
    return {"mae": np.abs(error).mean(axis=0), "rmse": np.sqrt((error ** 2).mean(axis=0)), "r2": r2}


def regression_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """`mae`, `rmse` and `r2` averaged over the target columns (R² over those that have one; NaN when none)."""
    if len(truth) == 0:
        return {}
    scores = per_target(truth, predicted)
    r2 = scores["r2"][~np.isnan(scores["r2"])]
    return {"mae": float(np.mean(scores["mae"])), "rmse": float(np.mean(scores["rmse"])),
            "r2": float(np.mean(r2)) if len(r2) else float("nan")}


def check_loss(name: str) -> None:
    """A UserError for a loss that does not take numbers (a crossentropy, a hinge)."""
    if name not in LOSSES:
        raise UserError(f"compile.loss: {name} does not fit dataset.label_mode 'regression' (numbers, not classes); "
                        f"use mean_squared_error, mean_absolute_error or huber")


def check_linear_head(model: Any, targets: list[str], where: str) -> None:
    """A UserError unless the model ends in one output a target, with no activation (`linear`): a softmax or a
    sigmoid squeezes the numbers into shares or into 0 to 1."""
    shape = tuple(model.output_shape)
    if len(shape) != 2 or shape[-1] != len(targets):
        raise UserError(f"{where}: the model's output has shape {shape}, but dataset.label_mode regression with "
                        f"{len(targets)} target(s) ({', '.join(targets)}) needs one number per target: end with "
                        f"Flatten (or a pooling layer) and a Dense layer of {len(targets)} unit(s) "
                        f"(`units: ${{num_classes}}`), activation: linear")
    layer = model.layers[-1]
    kind = type(layer).__name__
    activation = {"Softmax": "softmax", "ReLU": "relu"}.get(kind) or \
        getattr(getattr(layer, "activation", None), "__name__", None)
    if activation not in ("linear", None):
        raise UserError(f"{where}: dataset.label_mode regression needs the numbers unsqueezed: end with a Dense "
                        f"layer of activation: linear (or none), not {activation or kind}")
