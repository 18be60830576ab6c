"""k-fold cross-validation: the folds counted by hand, the splits they make, and `train --folds K` going on where
an earlier command stopped."""

import json

import numpy as np
import pytest

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.data.folds import fold_rows
from cnnrun.errors import UserError
from cnnrun.run_folder.folder import Run
from cnnrun.training.folds import folds_summary
from tests.conftest import history, run_here, tiny_config


def test_every_picture_is_in_one_fold_and_each_fold_keeps_the_class_proportions():
    labels = np.repeat([0, 1, 2], [7, 5, 3])  # 15 pictures: 7, 5 and 3 of the classes
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]
    folds = [fold_rows(labels, 3, k, seed=11) for k in (1, 2, 3)]
    assert sorted(np.concatenate(folds).tolist()) == list(range(15))  # each picture in exactly one fold
    assert [len(f) for f in folds] == [5, 5, 5]
    per_class = np.array([np.bincount(labels[f], minlength=3) for f in folds])
    assert per_class.sum(axis=0).tolist() == [7, 5, 3]
    for column, share in zip(per_class.T, (7 / 3, 5 / 3, 3 / 3), strict=True):
        assert all(abs(n - share) < 1 for n in column)  # 7 → 3, 2, 2; 5 → 2, 2, 1; 3 → 1, 1, 1
    again = fold_rows(labels, 3, 2, seed=11)
    np.testing.assert_array_equal(again, folds[1])
    assert not np.array_equal(fold_rows(labels, 3, 2, seed=12), folds[1])


def test_a_fold_validates_and_the_rest_trains_with_the_test_split_untouched():
    plain = tiny_config()
    del plain["dataset"]["validation_split"]
    whole = load_splits(validate_experiment(plain, "t.yaml"))
    train_labels = np.asarray(whole.examples["train"].labels)
    seen = []
    for index in (1, 2, 3):
        config = tiny_config()
        config["dataset"] = {**plain["dataset"], "fold": {"count": 3, "index": index}}
        splits = load_splits(validate_experiment(config, "t.yaml"))
        validation = splits.examples["validation"]
        expected = fold_rows(train_labels, 3, index, seed=config["seed"])
        np.testing.assert_array_equal(validation.images, whole.examples["train"].images[expected])
        assert len(splits.examples["train"]) + len(validation) == len(train_labels)
        np.testing.assert_array_equal(splits.examples["test"].images, whole.examples["test"].images)
        seen.append(len(validation))
    assert sum(seen) == len(train_labels) == 120


@pytest.mark.parametrize("fold, words", [
    ({"count": 3, "index": 4}, "index 4 of 3 folds"),
    ({"count": 1, "index": 1}, "count"),
])
def test_a_fold_that_cannot_be_is_one_line(fold, words):
    config = tiny_config()
    config["dataset"] = {**config["dataset"], "fold": fold}
    del config["dataset"]["validation_split"]
    with pytest.raises(UserError, match=words):
        validate_experiment(config, "t.yaml")
    config["dataset"] = {**config["dataset"], "fold": {"count": 3, "index": 1}, "validation_split": 0.2}
    with pytest.raises(UserError, match="fold takes the validation pictures from the training split"):
        validate_experiment(config, "t.yaml")


@pytest.mark.slow
def test_train_folds_keeps_finished_folds_and_goes_on_with_the_others(tmp_path, write_config):
    out = tmp_path / "runs"
    config = tiny_config(train={"epochs": 1, "batch_size": 32}, output={"dir": str(out), "plots": False,
                                                                        "report": False})
    path = write_config(config)
    # fold 1 of 2 trained alone earlier, for one epoch, under the name `--folds 2` gives it
    first = run_here("train", path, "--name", "tiny-fold1of2", "--set", "dataset.fold={count: 2, index: 1}",
                     "--set", "dataset.validation_split=null")
    assert first.returncode == 0, first.stderr
    (fold1,) = (out / "tiny-fold1of2").iterdir()
    done = run_here("train", path, "--folds", "2", "--set", "train.epochs=2")
    assert done.returncode == 0, done.stderr
    assert "the folds replace dataset.validation_split 0.25" in done.stdout
    assert f"fold 1 of 2: {fold1} goes on to 2 epochs" in done.stdout
    assert list((out / "tiny-fold1of2").iterdir()) == [fold1] and len(history(fold1)) == 2
    (fold2,) = (out / "tiny-fold2of2").iterdir()
    recorded = json.loads((fold2 / "meta.json").read_text())["config"]["dataset"]
    assert recorded["fold"] == {"count": 2, "index": 2} and recorded["validation_split"] is None
    assert "2-fold cross-validation" in done.stdout and "test accuracy, best.keras" in done.stdout
    at_best = [row for fold in (fold1, fold2) for row in history(fold)
               if row["epoch"] == json.loads((fold / "state.json").read_text())["best"]["epoch"]]
    listed = ", ".join(f"{row['val_accuracy']:.4f}" for row in at_best)
    assert f"({listed})" in next(line for line in done.stdout.splitlines() if "validation accuracy, best" in line)
    again = run_here("train", path, "--folds", "2", "--set", "train.epochs=2")
    assert again.returncode == 0, again.stderr
    assert f"fold 1 of 2: finished before, kept: {fold1}" in again.stdout
    assert f"fold 2 of 2: finished before, kept: {fold2}" in again.stdout
    assert len(list((out / "tiny-fold2of2").iterdir())) == 1
    # a fold that stopped early is finished whatever train.epochs says now: kept, not resumed
    for fold in (fold1, fold2):
        state = json.loads((fold / "state.json").read_text())
        (fold / "state.json").write_text(json.dumps({**state, "status": "stopped_early"}))
    longer = run_here("train", path, "--folds", "2", "--set", "train.epochs=3")
    assert longer.returncode == 0, longer.stderr
    assert f"fold 2 of 2: finished before, kept: {fold2}" in longer.stdout and len(history(fold2)) == 2


def test_the_summary_shows_each_folds_validation_at_its_best_epoch_not_its_last(tmp_path):
    runs = []
    for index, (at_best, at_last) in enumerate(((0.75, 0.5), (0.625, 0.25)), start=1):
        folder = tmp_path / f"fold{index}"
        folder.mkdir()
        (folder / "history.csv").write_text(f"epoch,loss,val_loss,val_accuracy\n1,1.0,0.9,{at_best}\n"
                                            f"2,0.8,1.2,{at_last}\n")
        (folder / "state.json").write_text(json.dumps({"status": "completed", "epochs_completed": 2,
                                                       "epochs_planned": 2, "best": {"monitor": "val_accuracy",
                                                                                     "value": at_best, "epoch": 1}}))
        runs.append(Run(folder))
    rows = dict(folds_summary("tiny", 2, runs).rows)
    # (0.75 + 0.625) / 2, and the sample standard deviation of two values: |0.75 − 0.625| / √2
    assert rows["validation accuracy, best epoch"] == "0.6875 ± 0.0884  (0.7500, 0.6250)"
    assert rows["validation loss, best epoch"] == "0.9000 ± 0.0000  (0.9000, 0.9000)"
