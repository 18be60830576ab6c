"""Calibration: do a model's confidences mean what they say? Reliability bins and expected calibration error.

A model is calibrated when, of the pictures it gives a confidence of about 0.8 (its largest class probability),
about 80 % are right. `reliability` sorts the pictures of a split into equal-width bins of confidence and
compares, in each bin, the mean confidence with the accuracy; the expected calibration error (ECE, Guo et al.
2017, "On Calibration of Modern Neural Networks") is the gap averaged over the bins, each weighed by its share of
the pictures:

    ECE = Σ_bins count / N · |accuracy − confidence|

A perfectly calibrated model has ECE 0; a network that says 0.99 and is right 90 % of the time has about 0.09.
Pure NumPy, no Keras: it works on the probabilities a run's `eval/<checkpoint>_<split>_predictions.npz` holds.
`cnnrun.figures.reliability_figure` draws the result.

Example:
>>> rel = reliability(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]), bins=5)
>>> [(b.lower, b.upper, b.count) for b in rel.bins if b.count]
[(0.6, 0.8, 1), (0.8, 1.0, 1)]
>>> round(rel.ece, 4)  # ½ · |0 − 0.6| + ½ · |1 − 0.9|
0.35
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Bin:
    """One bin of confidence, `[lower, upper)` (the last one `[lower, 1]`), and the pictures that fell in it.

    Args:
        lower: the bin's lower edge.
        upper: its upper edge.
        count: how many pictures have a confidence in the bin.
        confidence: their mean confidence (largest class probability); None when the bin is empty.
        accuracy: the share of them whose most probable class is the true one; None when the bin is empty.
    """

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None

    @property
    def gap(self) -> float:
        """`accuracy − confidence`: below 0 the model is overconfident in this bin, above 0 underconfident; 0 when
        empty."""
        return 0.0 if self.count == 0 else self.accuracy - self.confidence


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's numbers: the bins, the expected calibration error and the split's totals.

    Args:
        bins: the equal-width bins over [0, 1], lowest first (empty ones included).
        ece: the expected calibration error, `Σ count / N · |accuracy − confidence|` over the bins.
        examples: N, the number of pictures.
        accuracy: the share of all pictures whose most probable class is the true one.
        confidence: the mean confidence over all pictures (above `accuracy`: overconfident on the whole).
    """

    bins: tuple[Bin, ...]
    ece: float
    examples: int
    accuracy: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """As JSON takes it: `{"bins": [{"lower", "upper", "count", "confidence", "accuracy"}, ...], "ece", ...}`."""
        return asdict(self) | {"bins": [asdict(b) for b in self.bins]}


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> Reliability:
    """Sort the pictures into `bins` equal-width bins of confidence and measure each bin's accuracy, and the ECE.

    A picture's confidence is its largest class probability, and it counts as right when that class (the first
    of equally probable ones, as `argmax` chooses) is its label. Bin `k` holds the confidences in
    `[k / bins, (k + 1) / bins)`; a confidence of exactly 1.0 goes into the last bin.

    Args:
        probabilities: N × classes, each row a picture's class probabilities (as
            `cnnrun.model.scoring.probabilities` gives them, or a run's predictions file holds them).
        labels: the N true classes, whole numbers.
        bins: how many bins split [0, 1]. Defaults to 15, as Guo et al.

    Returns:
        A `Reliability`.

    Raises:
        ValueError: no pictures, shapes that do not fit each other, or `bins` below 1 (a bug in the caller).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1] or not len(labels):
        raise ValueError(f"reliability: probabilities of shape {probabilities.shape} and labels of shape "
                         f"{labels.shape}; they need N × classes and N, N at least 1")
    if bins < 1:
        raise ValueError(f"reliability: bins={bins}; at least 1")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.arange(bins + 1) / bins  # k / bins, each as close to the exact value as a float gets
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    found, ece = [], 0.0
    for k in range(bins):
        inside = which == k
        count = int(inside.sum())
        if count:
            mean_confidence, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
            ece += count / len(labels) * abs(accuracy - mean_confidence)
        else:
            mean_confidence = accuracy = None
        found.append(Bin(float(edges[k]), float(edges[k + 1]), count, mean_confidence, accuracy))
    return Reliability(tuple(found), float(ece), int(len(labels)), float(correct.mean()), float(confidence.mean()))
