"""Scoring a multi-label run's checkpoints (`dataset.label_mode: multi_label`): thresholds chosen on validation,
test figures at those thresholds.

For each checkpoint, `best.keras` and `last.keras`: its scores on the validation pictures give each label the
threshold of its best F1 there (`cnnrun.model.multilabel.choose_thresholds`; 0.5 each without validation data),
written to the run's `thresholds.json`; its test scores are then judged at those thresholds (macro and micro F1,
exact match) and without any (mean average precision), beside Keras' own metrics, into `scores.json`.

Example:
>>> scores = score_multilabel_checkpoints(run, splits, experiment)
>>> sorted(scores["best"])[:4]
['accuracy', 'exact_match', 'loss', 'macro_f1']
"""

from typing import Any

from cnnrun.model.multilabel import DEFAULT_THRESHOLD, choose_thresholds, multilabel_scores, thresholds_record


def checkpoint_thresholds(model, splits, experiment, callbacks=()) -> tuple[list[float], str]:
    """A checkpoint's threshold per label, and where they were chosen: `validation`, or `default` (0.5 each)."""
    from cnnrun.model.scoring import tta_probabilities

    if splits.validation is None:
        return [DEFAULT_THRESHOLD] * splits.info.num_classes, "default"
    scores = tta_probabilities(model, splits.validation, experiment, callbacks)
    return choose_thresholds(splits.examples["validation"].labels, scores), "validation"


def score_multilabel_checkpoints(run, splits, experiment, callbacks=()) -> dict[str, Any]:
    """Choose and write each checkpoint's thresholds (`thresholds.json`); return the test metrics of both
    checkpoints (`scores.json`'s content, {} without a test split).

    Args: as `cnnrun.model.scoring.score_checkpoints`.
    """
    from cnnrun.model.checkpoints import load_checkpoint
    from cnnrun.model.scoring import scored_probabilities

    names = splits.info.class_names
    record: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    for which in ("best", "last"):
        path = run.checkpoint(which)
        if not path.exists():
            continue
        model = load_checkpoint(path, use_other=None)
        thresholds, chosen_on = checkpoint_thresholds(model, splits, experiment, callbacks)
        record |= {"chosen_on": chosen_on, which: thresholds_record(names, thresholds, chosen_on)["thresholds"]}
        if splits.test is not None:
            metrics, probabilities = scored_probabilities(model, splits.test, experiment, callbacks)
            scores[which] = metrics | multilabel_scores(splits.examples["test"].labels, probabilities, thresholds)
    if record:
        run.write_thresholds(record)
    tta = experiment.evaluate.tta
    return scores | ({"tta": tta} if tta and scores else {})
