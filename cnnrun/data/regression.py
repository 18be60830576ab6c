"""The targets of numbers a picture (`label_mode: regression`): their normalisation, from the training split.

With `target_normalize: standardize` the model learns (target − mean) / std, each target column with the mean and
std (population, ddof 0) of its training numbers; a column whose training numbers are all equal has std 1. The
figures go into the run's dataset.json (`target_mean`, `target_std`) and are undone in every score and prediction.

Example:
>>> target_moments(np.array([[1.0], [3.0]]), "standardize")
{'target_mean': [2.0], 'target_std': [1.0]}
>>> target_moments(np.array([[1.0, 5.0]]), "none")
{'target_mean': [0.0, 0.0], 'target_std': [1.0, 1.0]}
"""

from typing import Any

import numpy as np


def target_moments(labels: np.ndarray, normalize: str, stored: Any = None) -> dict[str, list[float]]:
    """`target_mean` and `target_std` of each target column for `DatasetInfo`: a run's recorded ones (`stored`,
    its dataset.json), else the training split's (`standardize`), else 0 and 1 (`none`)."""
    if stored is not None and stored.target_mean is not None:
        return {"target_mean": list(stored.target_mean), "target_std": list(stored.target_std)}
    labels = np.asarray(labels, np.float64).reshape(len(labels), -1)
    if normalize != "standardize":
        return {"target_mean": [0.0] * labels.shape[1], "target_std": [1.0] * labels.shape[1]}
    std = labels.std(axis=0)
    return {"target_mean": [float(v) for v in labels.mean(axis=0)],
            "target_std": [float(v) if v > 0 else 1.0 for v in std]}
