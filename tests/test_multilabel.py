"""Several labels per picture (`label_mode: multi_label`): average precision, F1 and thresholds against figures
worked out by hand on a fixed 4-picture × 3-label example; the config's refusals, each one line naming the key."""

import numpy as np
import pytest

from cnnrun.config import experiment_to_yaml, load_saved_experiment, validate_experiment
from cnnrun.errors import UserError
from cnnrun.model.multilabel import (
    average_precision,
    best_threshold,
    choose_thresholds,
    label_table,
    labels_above,
    mean_average_precision,
    multilabel_scores,
)
from tests.conftest import tiny_config

# 4 pictures, 3 labels: the truth and the model's scores
TRUTH = np.array([[1, 0, 1],
                  [0, 1, 1],
                  [1, 1, 0],
                  [0, 0, 1]])
SCORES = np.array([[0.9, 0.2, 0.8],
                   [0.6, 0.7, 0.3],
                   [0.4, 0.6, 0.5],
                   [0.1, 0.3, 0.9]])


def test_average_precision_is_the_mean_precision_at_each_positive_rank():
    # label 0, ranked by score: pictures 0 (yes), 1 (no), 2 (yes), 3 (no): precision 1/1 at rank 1, 2/3 at rank 3
    assert average_precision(TRUTH[:, 0], SCORES[:, 0]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # label 1: pictures 1 (yes), 2 (yes), 3, 0: both positives on top
    assert average_precision(TRUTH[:, 1], SCORES[:, 1]) == pytest.approx(1.0)
    # label 2: pictures 3 (yes), 0 (yes), 2 (no), 1 (yes): 1/1, 2/2, 3/4
    assert average_precision(TRUTH[:, 2], SCORES[:, 2]) == pytest.approx((1 + 1 + 3 / 4) / 3)
    # mAP: (5/6 + 1 + 11/12) / 3 = 11/12
    assert mean_average_precision(TRUTH, SCORES) == pytest.approx(11 / 12)


def test_pictures_of_equal_score_are_one_step_and_a_label_without_positives_is_left_out_of_the_mean():
    # two tied on top, one of them positive (listed first): the step's precision 1/2 for it, not 1/1; then the
    # third, precision 2/3
    assert average_precision(np.array([1, 0, 1]), np.array([0.8, 0.8, 0.1])) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert np.isnan(average_precision(np.array([0, 0]), np.array([0.3, 0.9])))
    truth = np.array([[1, 0], [0, 0]])
    assert mean_average_precision(truth, np.array([[0.9, 0.1], [0.2, 0.8]])) == pytest.approx(1.0)


def test_f1_at_the_thresholds_by_hand():
    thresholds = [0.5, 0.5, 0.5]
    # predicted (score >= 0.5): label 0 pictures 0, 1; label 1 pictures 1, 2; label 2 pictures 0, 2, 3
    rows = label_table(TRUTH, SCORES, thresholds, ["cat", "dog", "animal"])
    assert [(r["label"], r["precision"], r["recall"], r["f1"], r["support"]) for r in rows] == [
        ("cat", 0.5, 0.5, 0.5, 2),  # tp 1 (picture 0), fp 1 (picture 1), fn 1 (picture 2)
        ("dog", 1.0, 1.0, 1.0, 2),  # tp 2
        ("animal", 0.6667, 0.6667, 0.6667, 3),  # tp 2 (pictures 0, 3), fp 1 (2), fn 1 (1)
    ]
    assert [r["average_precision"] for r in rows] == [0.8333, 1.0, 0.9167]
    scores = multilabel_scores(TRUTH, SCORES, thresholds)
    assert scores["macro_f1"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert scores["micro_f1"] == pytest.approx(5 / 7)  # tp 5, fp 2, fn 2 over all the decisions
    assert scores["exact_match"] == pytest.approx(0.5)  # pictures 0 and 3 get exactly their labels
    assert scores["mean_average_precision"] == pytest.approx(11 / 12)
    # lower thresholds, where precision and recall differ: label 0 >= .35 takes pictures 0, 1, 2 (P 2/3, R 1);
    # label 2 >= .25 takes all four (P 3/4, R 1)
    rows = label_table(TRUTH, SCORES, [0.35, 0.5, 0.25], ["cat", "dog", "animal"])
    assert [(r["precision"], r["recall"], r["f1"]) for r in rows] == [
        (0.6667, 1.0, 0.8), (1.0, 1.0, 1.0), (0.75, 1.0, round(6 / 7, 4))]
    assert multilabel_scores(TRUTH, SCORES, [0.35, 0.5, 0.25])["macro_f1"] == pytest.approx((0.8 + 1 + 6 / 7) / 3)


def test_each_label_gets_the_threshold_of_its_best_f1_halfway_between_two_scores():
    # label 0 (scores .9 .6 .4 .1, truth 1 0 1 0): F1 at >= .9: 2/3, >= .6: 1/2, >= .4: 4/5, >= .1: 2/3 -> (.4 + .1) / 2
    # label 1 (.2 .7 .6 .3, truth 0 1 1 0): >= .6 takes both positives alone, F1 1 -> (.6 + .3) / 2
    # label 2 (.8 .3 .5 .9, truth 1 1 0 1): >= .9: 1/2, >= .8: 4/5, >= .5: 2/3, >= .3: 6/7 -> .3 / 2
    assert choose_thresholds(TRUTH, SCORES) == pytest.approx([0.25, 0.45, 0.15])
    # no positive on validation: 0.5
    assert choose_thresholds(np.zeros((2, 1)), np.array([[0.9], [0.1]])) == [0.5]


def test_on_a_tie_of_f1_the_higher_threshold_wins():
    # scores .9 .8 .7 .1, truth 1 0 0 1: F1 at >= .9: 2/3, >= .8: 1/2, >= .7: 2/5, >= .1: 2/3 (all four). The top
    # one alone ties with all four: the smaller set, (.9 + .8) / 2, not .1 / 2
    assert best_threshold(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(0.85)


def test_predict_lists_every_label_at_or_above_its_own_threshold():
    assert labels_above(np.array([0.45, 0.2, 0.6]), [0.45, 0.5, 0.7], ["cat", "dog", "animal"]) == [("cat", 0.45)]
    assert labels_above(np.array([0.9, 0.6, 0.8]), [0.5, 0.5, 0.5], ["cat", "dog", "animal"]) == [
        ("cat", 0.9), ("animal", 0.8), ("dog", 0.6)]


def multi_config(**changes) -> dict:
    dataset = {"name": "csv", "path": "t.csv", "label_mode": "multi_label", **changes.pop("dataset", {})}
    return tiny_config(dataset=dataset, **changes)


@pytest.mark.parametrize(("changes", "words"), [
    ({"dataset": {"name": "shapes", "path": None}}, "label_mode: multi_label reads several labels"),
    ({"dataset": {"stratify": True}}, "stratify: true takes each class's share"),
    ({"dataset": {"samples_per_class": 5}}, "samples_per_class draws N pictures of each class"),
    ({"train": {"epochs": 1, "class_weight": "balanced"}}, "train.class_weight: weighs each picture by its one"),
    ({"augmentation": {"mixup": True}}, "augmentation.mixup/cutmix: not with dataset.label_mode: multi_label"),
])
def test_what_does_not_fit_several_labels_is_refused_naming_the_key(changes, words):
    config = multi_config(**changes)
    if config["dataset"].get("path") is None:
        config["dataset"] = {k: v for k, v in config["dataset"].items() if k != "path"}
    with pytest.raises(UserError) as caught:
        validate_experiment(config, "x.yaml")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_multi_label_tables_are_not_stratified_and_the_saved_config_reads_back(tmp_path):
    experiment = validate_experiment(multi_config(), "x.yaml")
    assert experiment.dataset.stratify is False
    saved = tmp_path / "config.yaml"  # what the run folder keeps: resume and evaluate read it back
    saved.write_text(experiment_to_yaml(experiment))
    assert load_saved_experiment(saved).dataset.stratify is False


def test_folds_of_multi_hot_labels_deal_all_the_pictures_together():
    from cnnrun.data.folds import fold_rows

    labels = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [1, 1], [1, 0]], np.float32)
    folds = [fold_rows(labels, 3, index, seed=5) for index in (1, 2, 3)]
    assert sorted(np.concatenate(folds).tolist()) == list(range(7))  # every picture in exactly one fold
    assert sorted(len(fold) for fold in folds) == [2, 2, 3]  # sizes within one of each other


@pytest.mark.parametrize(("loss", "kind"), [(None, "BinaryCrossentropy"),
                                            ("binary_focal_crossentropy", "BinaryFocalCrossentropy")])
def test_the_loss_is_one_binary_crossentropy_per_label(loss, kind):
    from cnnrun.model.compiling import make_loss

    experiment = validate_experiment(multi_config(compile={"optimizer": "adam", "loss": loss}), "x.yaml")
    assert type(make_loss(experiment)).__name__ == kind
