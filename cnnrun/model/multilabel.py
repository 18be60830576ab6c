"""Several labels per picture (`dataset.label_mode: multi_label`): thresholds, precision / recall / F1, and mean
average precision, in plain NumPy.

A multi-label model gives one sigmoid score per label, each in [0, 1], and a picture may have any number of its
labels. A label is predicted where its score is at or above that label's threshold. The thresholds are chosen on
the validation split (`choose_thresholds`: the one that gives the label its best F1 there, halfway between two
scores), saved with the run
(`thresholds.json`) and used by `evaluate` and `predict`.

Average precision (AP) judges a label's scores without any threshold: rank the pictures by the label's score,
highest first; at the rank of each picture that has the label, take the precision among the pictures ranked so
far; AP is the mean of those precisions (scikit-learn's `average_precision_score`; pictures of equal score are
ranked together, as one step). The mean over the labels (those with at least one positive picture) is the mean
average precision, mAP.

Example (one label, four pictures; the ones with the label are ranked 1st and 3rd):
>>> average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))  # (1/1 + 2/3) / 2
0.8333333333333333
>>> best_threshold(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.75, 0.25]))   # the top three, F1 0.8
0.5
"""

from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label without a positive validation picture (or a run without validation)


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """The average precision of one label: N 0/1 truths and N scores; NaN when no picture has the label.

    Pictures of equal score form one step of the ranking: each of them counts the precision of the whole step
    (scikit-learn's `average_precision_score`). Without ties this is the mean, over the pictures with the label,
    of the precision at their rank.

    >>> average_precision(np.array([0, 1]), np.array([0.5, 0.5]))  # one step of two, one of them right
    0.5
    """
    truth = np.asarray(truth).astype(bool)
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    ranked, ranked_scores = truth[order], np.asarray(scores, np.float64)[order]
    hits = np.cumsum(ranked)
    step_ends = np.r_[np.flatnonzero(np.diff(ranked_scores)), len(ranked) - 1]  # last rank of each equal score
    precision = hits[step_ends] / (step_ends + 1)
    new_hits = np.diff(np.r_[0, hits[step_ends]])  # the positives each step adds
    return float(np.sum(new_hits * precision) / positives)


def mean_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """mAP: the mean of `average_precision` over the labels (columns) with at least one positive; NaN if none has.

    Args:
        truth: N × labels, 0/1.
        scores: N × labels, the model's sigmoid scores.
    """
    values = [average_precision(truth[:, j], scores[:, j]) for j in range(truth.shape[1])]
    present = [v for v in values if not np.isnan(v)]
    return float(np.mean(present)) if present else float("nan")


def f1_of(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from the counts; each 0 where its denominator is.

    >>> f1_of(2, 1, 1)
    (0.6666666666666666, 0.6666666666666666, 0.6666666666666666)
    """
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def best_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that gives one label its best F1 on these pictures (predicted where score ≥ threshold).

    Each set of pictures a threshold can pick is the top of the ranking down to some score; its threshold is
    halfway between that score and the next lower one (half the lowest score for all of them), so a picture
    scored a little below the lowest positive one still counts. On a tie of F1 the smaller set wins (the higher
    threshold). `DEFAULT_THRESHOLD` when no picture has the label.

    >>> best_threshold(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.75, 0.25]))  # the top three: F1 0.8
    0.5
    """
    truth = np.asarray(truth).astype(bool)
    scores = np.asarray(scores, np.float64)
    if not truth.any():
        return DEFAULT_THRESHOLD
    distinct = np.unique(scores)[::-1]  # highest first: a tie keeps the higher threshold
    lower = np.r_[distinct[1:], 0.0]  # the next lower score of each (0 below the lowest)
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    for score, below in zip(distinct, lower, strict=True):
        predicted = scores >= score
        f1 = f1_of(int(np.sum(predicted & truth)), int(np.sum(predicted & ~truth)), int(np.sum(~predicted & truth)))[2]
        if f1 > best_f1:
            best, best_f1 = float((score + below) / 2), f1
    return best


def choose_thresholds(truth: np.ndarray, scores: np.ndarray) -> list[float]:
    """Each label's `best_threshold` (columns of N × labels arrays), in label order."""
    return [best_threshold(truth[:, j], scores[:, j]) for j in range(truth.shape[1])]


def label_table(truth: np.ndarray, scores: np.ndarray, thresholds: list[float], names: list[str]) -> list[dict]:
    """One row per label at its threshold: precision, recall, F1, average precision, support (pictures having it).

    Args:
        truth: N × labels, 0/1.
        scores: N × labels.
        thresholds: one per label.
        names: the label names, in column order.
    """
    truth = np.asarray(truth).astype(bool)
    predicted = np.asarray(scores) >= np.asarray(thresholds)
    rows = []
    for j, name in enumerate(names):
        t, p = truth[:, j], predicted[:, j]
        precision, recall, f1 = f1_of(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p)))
        ap = average_precision(t, scores[:, j])
        rows.append({"label": name, "threshold": round(float(thresholds[j]), 4), "precision": round(precision, 4),
                     "recall": round(recall, 4), "f1": round(f1, 4),
                     "average_precision": None if np.isnan(ap) else round(ap, 4), "support": int(t.sum())})
    return rows


def multilabel_scores(truth: np.ndarray, scores: np.ndarray, thresholds: list[float]) -> dict[str, float]:
    """The headline figures: `mean_average_precision`, `macro_f1` (the mean of the labels' F1 at their
    thresholds), `micro_f1` (F1 of all the label decisions pooled) and `exact_match` (pictures whose predicted
    labels are exactly their labels)."""
    truth = np.asarray(truth).astype(bool)
    predicted = np.asarray(scores) >= np.asarray(thresholds)
    f1s = [f1_of(int(np.sum(truth[:, j] & predicted[:, j])), int(np.sum(~truth[:, j] & predicted[:, j])),
                 int(np.sum(truth[:, j] & ~predicted[:, j])))[2] for j in range(truth.shape[1])]
    micro = f1_of(int(np.sum(truth & predicted)), int(np.sum(~truth & predicted)), int(np.sum(truth & ~predicted)))
    return {"mean_average_precision": mean_average_precision(truth, scores), "macro_f1": float(np.mean(f1s)),
            "micro_f1": micro[2], "exact_match": float(np.mean(np.all(truth == predicted, axis=1)))}


def labels_above(scores: np.ndarray, thresholds: list[float], names: list[str]) -> list[tuple[str, float]]:
    """The labels of one picture whose score is at or above their threshold, highest score first.

    >>> labels_above(np.array([0.9, 0.2, 0.6]), [0.5, 0.5, 0.7], ["cat", "dog", "animal"])
    [('cat', 0.9)]
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    return [(names[j], float(scores[j])) for j in order if scores[j] >= thresholds[j]]


def thresholds_record(names: list[str], thresholds: list[float], chosen_on: str) -> dict[str, Any]:
    """What `thresholds.json` holds: `{"chosen_on": "validation", "thresholds": {label: threshold}}`."""
    return {"chosen_on": chosen_on, "thresholds": {name: float(t) for name, t in zip(names, thresholds, strict=True)}}
