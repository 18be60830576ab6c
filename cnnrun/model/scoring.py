"""From a model's outputs to class probabilities and scores, and test-time augmentation (TTA).

With TTA a picture is judged by the average of the class probabilities of several views.

The views are those of airbench (Keller Jordan's fast CIFAR-10 training): the mirror image, and the picture moved by
one pixel down-right and up-left with its border reflected. `evaluate.tta: [flip, translate]` weighs them as
airbench does: the picture and its mirror half, the four moved versions the other half.

Example:
>>> [name for name, _ in views(["flip"])]
['identity', 'flip']
>>> views(["translate"])
[('identity', 0.5), ('down-right', 0.25), ('up-left', 0.25)]
"""

from typing import Any

import numpy as np

from cnnrun.atomic import checkpoint_info
from cnnrun.data.traced import as_written
from cnnrun.model.multilabel import DEFAULT_THRESHOLD, choose_thresholds, multilabel_scores, thresholds_record
from cnnrun.model.regression_scoring import score_regression_checkpoints


def probabilities(outputs: np.ndarray, experiment) -> np.ndarray:
    """Class probabilities from model outputs: logits go through softmax (or sigmoid), a sigmoid unit becomes
    two columns (class 0, class 1); several labels a picture (`multi_label`) keep one score a label."""
    loss = experiment.compile.loss
    from_logits = isinstance(loss, dict) and loss.get("from_logits", False)
    if experiment.dataset.label_mode == "multi_label":  # one sigmoid a label: the scores as they are
        return 1 / (1 + np.exp(-outputs)) if from_logits else outputs
    if outputs.shape[-1] == 1:
        p = 1 / (1 + np.exp(-outputs)) if from_logits else outputs
        return np.concatenate([1 - p, p], axis=-1)
    if from_logits:
        shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return outputs


SHIFTS = {"down-right": (0, 0), "up-left": (2, 2)}  # where the picture is cut from its 1-pixel reflected padding


def views(tta: list[str]) -> list[tuple[str, float]]:
    """The views `evaluate.tta` asks for, as (name, weight) pairs; the weights add up to 1."""
    flips = [("identity", 1.0), ("flip", 1.0)] if "flip" in tta else [("identity", 1.0)]
    moves = [("identity", 0.5), ("down-right", 0.25), ("up-left", 0.25)] if "translate" in tta \
        else [("identity", 1.0)]
    combined = []
    for flip, flip_weight in flips:
        for move, move_weight in moves:
            name = "+".join(n for n in (flip, move) if n != "identity") or "identity"
            combined.append((name, flip_weight / len(flips) * move_weight))
    return combined


def transform(images: Any, name: str) -> Any:
    """One view of a batch of pictures (NHWC, any dtype), as TensorFlow ops (they run in `tf.data` on both backends)."""
    import tensorflow as tf

    parts = name.split("+")
    if "flip" in parts:
        images = tf.reverse(images, axis=[2])
    for move, (top, left) in SHIFTS.items():
        if move in parts:
            height, width = tf.shape(images)[1], tf.shape(images)[2]
            padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
            images = padded[:, top:top + height, left:left + width, :]
    return images


def view_of(data, name: str):
    """`data`'s batches with their pictures in view `name` (`transform`); `data` itself for `identity`."""
    if name == "identity":
        return data
    return data.map(as_written(lambda x, *rest: (transform(x, name), *rest)))


def tta_probabilities(model, data, experiment, callbacks=()) -> np.ndarray:
    """The class probabilities of every picture of `data`, averaged over the views of `evaluate.tta`, weighted.

    Args:
        model: a Keras model.
        data: a `tf.data.Dataset` of batches, `(pictures, labels)` or pictures alone.
        experiment: the run's experiment: its `evaluate.tta` lists the views (`[]`: the pictures as they are) and
            its loss says whether the outputs are logits.
        callbacks: Keras callbacks for `predict` (Ctrl-C between batches). Defaults to none.
    """
    total = None
    for name, weight in views(experiment.evaluate.tta):
        moved = view_of(data, name)
        outputs = model.predict(moved, verbose=0, callbacks=list(callbacks))
        total = weight * probabilities(outputs, experiment) + (0 if total is None else total)
    return total


def _adds_losses(model) -> bool:
    """Whether running the model adds losses of its own (an activity regularizer): only Keras' `evaluate` sees them."""
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if getattr(layer, "activity_regularizer", None) is not None:
            return True
        stack.extend(getattr(layer, "layers", ()))
    return False


def _replicas() -> int:
    """The replicas a TensorFlow distribution strategy holds: Keras' losses divide by them under `tf.distribute`
    (each replica's share of the global mean, summed across replicas in training), and `evaluate` multiplies the
    loss back, so this does too. 1 without a strategy, or on another backend."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def metrics_of_outputs(model, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The metrics Keras' `evaluate` reports (its loss, with the weights' regularization, and the compiled
    metrics), computed from the model's outputs instead of a second pass of the model over the pictures.

    The loss is the mean over the pictures, as `evaluate` averages its batches' means weighted by their sizes; the
    values agree with `evaluate` to float32 rounding. Not for models that add losses when they run (an activity
    regularizer): `_adds_losses`.

    Args:
        model: a compiled Keras model.
        outputs: its outputs for the pictures, in order (`model.predict`).
        targets: the labels as its loss takes them (the dataset's second element), in the same order.
    """
    model.reset_metrics()
    loss = float(model.compute_loss(y=targets, y_pred=outputs, training=False)) * _replicas()
    results = model.compute_metrics(None, targets, outputs)
    values = {k: float(v) for k, v in results.items()} | {"loss": loss}
    return dict(sorted(values.items()))  # in the order TensorFlow's evaluate gives them (its tf.function sorts)


def scored_probabilities(model, data, experiment, callbacks=()) -> tuple[dict[str, float], np.ndarray]:
    """What `evaluate` reports and the class probabilities `tta_probabilities` gives, in one pass of the model
    over `data` (one per view with `evaluate.tta`) instead of one pass more for `evaluate`.

    Scoring a checkpoint used to run the model over the test pictures twice, `evaluate` then `predict`: with a
    backbone at 128×128 on a 2-core CPU, some 10 s a pass for 2,000 pictures. The metrics are now computed from the
    plain view's outputs (`metrics_of_outputs`); the labels are read from `data` (a pass over the pictures without
    the model). A model with an activity regularizer is still scored by `evaluate`: its loss needs the model run.

    Args:
        model: a compiled Keras model.
        data: a `tf.data.Dataset` of `(pictures, labels)` batches, in a fixed order.
        experiment: the run's experiment (`evaluate.tta`, and whether the outputs are logits).
        callbacks: Keras callbacks for `predict` (Ctrl-C between batches). Defaults to none.

    Returns:
        The metrics, as `model.evaluate(data, return_dict=True)` gives them, with `balanced_accuracy` (of the
        plain view, as Keras' metrics), and the probabilities.
    """
    targets = np.concatenate([np.asarray(y) for y in data.map(as_written(lambda x, y, *rest: y))])
    if _adds_losses(model):
        metrics = model.evaluate(data, verbose=0, return_dict=True, callbacks=list(callbacks))
        total = tta_probabilities(model, data, experiment, callbacks)
        plain = probabilities(model.predict(data, verbose=0, callbacks=list(callbacks)), experiment) \
            if experiment.evaluate.tta else total
        balanced = {} if experiment.dataset.label_mode == "multi_label" else \
            {"balanced_accuracy": balanced_accuracy(class_labels(targets), plain)}
        return {k: float(v) for k, v in metrics.items()} | balanced, total
    total, metrics = None, {}
    for name, weight in views(experiment.evaluate.tta):
        moved = view_of(data, name)
        outputs = model.predict(moved, verbose=0, callbacks=list(callbacks))
        if name == "identity":
            metrics = metrics_of_outputs(model, outputs, targets)
            if experiment.dataset.label_mode != "multi_label":  # no one class a picture to recall
                metrics["balanced_accuracy"] = balanced_accuracy(class_labels(targets),
                                                                 probabilities(outputs, experiment))
        total = weight * probabilities(outputs, experiment) + (0 if total is None else total)
    return metrics, total


def class_labels(targets: np.ndarray) -> np.ndarray:
    """Integer labels from targets as a loss takes them: one-hot rows, one 0/1 column (binary) or integers."""
    targets = np.asarray(targets)
    if targets.ndim > 1 and targets.shape[-1] > 1:
        return targets.argmax(axis=-1)
    return np.rint(targets.reshape(len(targets))).astype(np.int64)


def balanced_accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The mean of the recalls of the classes present in `labels` (scikit-learn's `balanced_accuracy_score`): each
    class counts the same however many pictures it has; on balanced data it is the accuracy.

    Args:
        labels: the N true classes.
        probabilities: N × classes (`probabilities`); the prediction is the most probable class.

    Example (recalls 2/3 and 1/1):
    >>> balanced_accuracy(np.array([0, 0, 0, 1]), np.array([[.9, .1], [.8, .2], [.3, .7], [.4, .6]]))
    0.8333333333333333
    """
    labels = np.asarray(labels)
    predicted = np.asarray(probabilities).argmax(axis=-1)
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else 0.0


def tta_scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and crossentropy of averaged probabilities against integer labels."""
    chosen = probabilities[np.arange(len(labels)), labels]
    return {"tta_accuracy": float(np.mean(probabilities.argmax(axis=-1) == labels)),
            "tta_balanced_accuracy": balanced_accuracy(labels, probabilities),
            "tta_loss": float(np.mean(-np.log(np.clip(chosen, 1e-7, 1.0))))}


def top_losses(probabilities: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """The indices of the `count` pictures with the largest loss, `−log p(true class)`, largest first.

    The pictures the model was most sure were something else: normally its mistakes, the most confident first,
    and, when it made fewer than `count`, its least sure right answers after them. Equal losses keep the pictures'
    order. The pictures are ordered by `p(true class)`, smallest first, which is the same order without taking a
    logarithm of 0.

    Args:
        probabilities: N × classes, as `probabilities` gives them (or a run's predictions file holds them).
        labels: the N true classes.
        count: how many at most; 0 gives none.

    Example:
    >>> top_losses(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 0, 1]), 2)  # p(true): .9 .2 .4
    array([1, 2])
    """
    labels = np.asarray(labels)
    truth = np.asarray(probabilities)[np.arange(len(labels)), labels]
    return np.argsort(truth, kind="stable")[:max(count, 0)]


def score_checkpoints(run, splits, experiment, callbacks=()) -> dict[str, Any]:
    """Test-split metrics of a run's `best.keras` and `last.keras`, loaded from the run folder in safe mode: what
    `scores.json` holds. When both checkpoints hold the same epoch (their records say so) it is scored once. With
    `evaluate.tta`, also the metrics of the averaged views (`tta_accuracy`, `tta_loss`) and the views' names.

    Each checkpoint's class probabilities for the test pictures (averaged over the views with `evaluate.tta`) go
    into the run folder as `eval/<checkpoint>_test_predictions.npz` (`run.write_predictions`), for the report.

    Args:
        run: the run folder (`cnnrun.run_folder.folder.Run`).
        splits: the run's data (`cnnrun.data.Splits`); without a test split the scores are empty.
        experiment: the run's experiment.
        callbacks: Keras callbacks for `evaluate` and `predict` (Ctrl-C between batches). Defaults to none.
    """
    from cnnrun.model.checkpoints import load_checkpoint

    if experiment.dataset.label_mode == "multi_label":  # thresholds first, then the test at them
        return score_multilabel_checkpoints(run, splits, experiment, callbacks)
    if experiment.dataset.label_mode == "regression":  # numbers, scored in their own units
        return score_regression_checkpoints(run, splits, experiment, callbacks)
    if splits.test is None:
        return {}
    tta, scores, predicted = experiment.evaluate.tta, {}, {}
    labels = splits.examples["test"].labels
    epochs = {which: (checkpoint_info(run.checkpoint(which)) or {}).get("epoch")
              for which in ("best", "last")}
    for which in ("best", "last"):
        path = run.checkpoint(which)
        if which == "last" and "best" in scores and epochs["best"] is not None and epochs["best"] == epochs["last"]:
            scores["last"] = dict(scores["best"])  # the same epoch's weights: scored once
            predicted["last"] = predicted["best"]
        elif path.exists():
            model = load_checkpoint(path, use_other=None)  # train and resume have no --checkpoint
            scores[which], predicted[which] = scored_probabilities(model, splits.test, experiment, callbacks)
            if tta:
                scores[which] |= tta_scores(predicted[which], labels)
        if which in predicted:
            run.write_predictions(which, "test", predicted[which], labels)
    return scores | ({"tta": tta} if tta and scores else {})


def checkpoint_thresholds(model, splits, experiment, callbacks=()) -> tuple[list[float], str]:
    """Several labels a picture: a checkpoint's threshold per label (the best F1 of each on the validation split,
    `cnnrun.model.multilabel.choose_thresholds`), and where they were chosen: `validation`, or `default` (0.5 each,
    for data without validation)."""
    if splits.validation is None:
        return [DEFAULT_THRESHOLD] * splits.info.num_classes, "default"
    scores = tta_probabilities(model, splits.validation, experiment, callbacks)
    return choose_thresholds(splits.examples["validation"].labels, scores), "validation"


def score_multilabel_checkpoints(run, splits, experiment, callbacks=()) -> dict[str, Any]:
    """`score_checkpoints` for several labels a picture (`label_mode: multi_label`): each checkpoint's thresholds
    chosen on validation and written to the run's `thresholds.json`, then its test metrics at those thresholds
    (`cnnrun.model.multilabel.multilabel_scores`: macro and micro F1, exact match) and without any (mean average
    precision), beside Keras' own; {} without a test split. No predictions file (it holds one class a picture)."""
    from cnnrun.model.checkpoints import load_checkpoint

    record: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    epochs = {which: (checkpoint_info(run.checkpoint(which)) or {}).get("epoch") for which in ("best", "last")}
    for which in ("best", "last"):
        if which == "last" and "best" in record and epochs["best"] is not None and epochs["best"] == epochs["last"]:
            record["last"] = dict(record["best"])  # the same epoch's weights: chosen and scored once
            scores |= {"last": dict(scores["best"])} if "best" in scores else {}
            continue
        if not run.checkpoint(which).exists():
            continue
        model = load_checkpoint(run.checkpoint(which), use_other=None)
        thresholds, chosen_on = checkpoint_thresholds(model, splits, experiment, callbacks)
        record |= {"chosen_on": chosen_on,
                   which: thresholds_record(splits.info.class_names, thresholds, chosen_on)["thresholds"]}
        if splits.test is not None:
            metrics, probabilities = scored_probabilities(model, splits.test, experiment, callbacks)
            scores[which] = metrics | multilabel_scores(splits.examples["test"].labels, probabilities, thresholds)
    if record:
        run.write_thresholds(record)
    return scores | ({"tta": experiment.evaluate.tta} if experiment.evaluate.tta and scores else {})


def per_class_table(truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[dict]]:
    """The confusion matrix (rows: true class) and precision, recall, F1 and support per class."""
    n = len(names)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    rows = []
    for i, name in enumerate(names):
        tp, predicted_i, actual_i = matrix[i, i], matrix[:, i].sum(), matrix[i].sum()
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / actual_i if actual_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": round(float(precision), 4), "recall": round(float(recall), 4),
                     "f1": round(float(f1), 4), "support": int(actual_i)})
    return matrix, rows
