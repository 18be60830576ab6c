"""`label_mode: regression`, without training: MAE, RMSE and R² against a 4-picture × 2-target example worked by
hand; the table's numbers read and recorded; the config's refusals; bad cells, columns, heads and losses one line,
exit 2; `cnnrun data check --targets` listing every problem."""

import csv
import json

import numpy as np
import pytest

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.data.regression import target_moments
from cnnrun.errors import UserError
from cnnrun.model.regression import denormalized, per_target, regression_scores
from tests.conftest import run_here, tiny_config
from tests.regression_data import HEAD, number_table, write


def config_for(table, **changes) -> dict:
    dataset = {"name": "csv", "path": str(table), "image_size": 8, "color_mode": "grayscale",
               "label_mode": "regression", "target_columns": ["size", "half"], **changes.pop("dataset", {})}
    return tiny_config(dataset=dataset, model={"layers": changes.pop("layers", HEAD)},
                       compile={"optimizer": {"name": "adam", "learning_rate": 0.05}, **changes.pop("compile", {})},
                       train={"epochs": 3, "batch_size": 8, **changes.pop("train", {})},
                       output={"plots": False, "report": False}, **changes)


def test_mae_rmse_and_r2_against_a_case_worked_by_hand():
    # target a: true 2 4 6 8, predicted 3 4 5 8: errors 1 0 1 0 → MAE 2/4 = .5, MSE 2/4, RMSE √.5;
    #   mean 5, SS_tot 9+1+1+9 = 20, SS_res 2, R² 1 − 2/20 = .9
    # target b: true 0 0 1 1, predicted .5 0 1 .5: errors .5 0 0 .5 → MAE .25, MSE .5/4 = .125, RMSE √.125;
    #   mean .5, SS_tot 4 × .25 = 1, SS_res .5, R² .5
    truth = np.array([[2, 0], [4, 0], [6, 1], [8, 1]], float)
    predicted = np.array([[3, .5], [4, 0], [5, 1], [8, .5]])
    each = per_target(truth, predicted)
    assert each["mae"] == pytest.approx([.5, .25])
    assert each["rmse"] == pytest.approx([.5 ** .5, .125 ** .5])
    assert each["r2"] == pytest.approx([.9, .5])
    assert regression_scores(truth, predicted) == pytest.approx(
        {"mae": .375, "rmse": (.5 ** .5 + .125 ** .5) / 2, "r2": .7})


def test_a_target_whose_true_numbers_are_all_equal_has_no_r2_and_is_left_out_of_the_average():
    truth = np.array([[2, 7], [4, 7], [6, 7], [8, 7]], float)
    predicted = np.array([[3, 7], [4, 6], [5, 7], [8, 7]], float)
    assert np.isnan(per_target(truth, predicted)["r2"][1])
    assert regression_scores(truth, predicted)["r2"] == pytest.approx(.9)


def test_a_target_whose_training_numbers_are_all_equal_is_standardised_by_std_1_not_0():
    # column 0: 1 and 3, mean 2, population std 1; column 1: 5 and 5, std 0, which would divide by zero: 1 instead
    assert target_moments(np.array([[1.0, 5.0], [3.0, 5.0]]), "standardize") == {
        "target_mean": [2.0, 5.0], "target_std": [1.0, 1.0]}
    assert target_moments(np.array([[1.0], [4.0]]), "standardize")["target_std"] == [1.5]  # ddof 0, not 1


def test_denormalized_is_output_times_std_plus_mean_column_by_column():
    outputs = np.array([[0.0, 1.0], [-2.0, 0.5]])
    assert denormalized(outputs, [10.0, -1.0], [3.0, 4.0]) == pytest.approx(np.array([[10, 3], [4, 1]]))


def test_a_table_of_numbers_gives_float_rows_recorded_in_splits_json_and_standardised_by_train(tmp_path):
    table, truth = number_table(tmp_path, 20)
    splits = load_splits(validate_experiment(config_for(table), "x.yaml"))
    info = splits.info
    assert info.class_names == ["size", "half"] and info.label_mode == "regression" and info.class_counts == {}
    for name in ("train", "validation", "test"):
        part = splits.examples[name]
        assert part.labels.shape == (len(part), 2)
        for path, row in zip(part.paths, part.labels, strict=True):
            assert tuple(row) == pytest.approx(truth[path])
    train = np.array([truth[p] for p in splits.examples["train"].paths])
    assert info.target_mean == pytest.approx(train.mean(axis=0))
    assert info.target_std == pytest.approx(np.sqrt(((train - train.mean(axis=0)) ** 2).mean(axis=0)))
    # the model learns (number − mean) / std
    _, encoded = next(iter(splits.validation))
    raw = np.array([truth[p] for p in splits.examples["validation"].paths][:len(encoded)])
    assert np.asarray(encoded) == pytest.approx((raw - train.mean(axis=0)) / train.std(axis=0), abs=1e-5)
    recorded = splits.files()
    assert recorded["labels"]["test"][0] == list(truth[splits.examples["test"].paths[0]])
    again = load_splits(validate_experiment(config_for(table), "x.yaml"), stored=info,
                        stored_files=json.loads(json.dumps(recorded)))
    for name in ("train", "validation", "test"):
        assert again.examples[name].paths == splits.examples[name].paths
        assert np.array_equal(again.examples[name].labels, splits.examples[name].labels)


def test_label_column_alone_is_the_one_target_and_none_leaves_the_numbers_as_they_are(tmp_path):
    table, truth = number_table(tmp_path, 10)
    config = config_for(table, dataset={"target_columns": None, "label_column": "half", "target_normalize": "none"})
    splits = load_splits(validate_experiment(config, "x.yaml"))
    assert splits.info.class_names == ["half"] and splits.info.target_mean == [0.0]
    assert splits.info.target_std == [1.0]
    _, encoded = next(iter(splits.train))
    halves = np.array([v[1] for v in truth.values()])
    assert all(np.abs(halves - value).min() < 1e-5 for value in np.asarray(encoded)[:, 0])  # each a half as written


@pytest.mark.parametrize(("dataset", "other", "words"), [
    ({"stratify": True}, {}, "stratify: true takes each class's share, but with label_mode: regression"),
    ({"classes": ["a", "b"]}, {}, "classes chooses classes, but with label_mode: regression"),
    ({"samples_per_class": 3}, {}, "samples_per_class draws N pictures of each class"),
    ({"sampling": "balanced"}, {}, "sampling: balanced gives each class an equal share"),
    ({}, {"train": {"class_weight": "balanced"}}, "train.class_weight: weighs each picture by its class"),
    ({}, {"augmentation": {"mixup": {"alpha": 0.2}}}, "augmentation.mixup/cutmix: not with dataset.label_mode: "
                                                       "regression"),
    ({}, {"evaluate": {"tta": ["flip"]}}, "evaluate.tta: averages the outputs of mirrored and moved pictures"),
])
def test_what_speaks_of_classes_is_refused_with_regression(tmp_path, dataset, other, words):
    with pytest.raises(UserError) as caught:
        validate_experiment(config_for(tmp_path / "t.csv", dataset=dataset, **other), "x.yaml")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_regression_of_another_kind_than_a_table_is_refused():
    with pytest.raises(UserError) as caught:
        validate_experiment(tiny_config(dataset={"name": "shapes", "label_mode": "regression"}), "x.yaml")
    assert "label_mode: regression reads each picture's numbers from a table's columns: use it with name: csv, " \
           "not shapes" in str(caught.value)


@pytest.mark.parametrize(("column", "cell", "words"), [
    (1, "abc", "line 3: 'abc' in column 'size' is not a number; give a number like 12.5"),
    (2, "", "line 3: empty cell in column 'half'; give each row a number there"),
    (1, "nan", "line 3: 'nan' in column 'size' is not a number"),
    (1, "inf", "line 3: 'inf' in column 'size' is not a number"),
])
def test_a_bad_number_stops_train_with_one_line_naming_the_table_and_line(tmp_path, write_config, column, cell,
                                                                         words):
    table, _ = number_table(tmp_path, 10)
    rows = list(csv.reader(table.open()))[1:]
    rows[1][column] = cell
    write(table, rows)
    result = run_here("train", write_config(config_for(table)), "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"dataset.path: {table} {words}" in line, line
    assert not (tmp_path / "out").exists()


def test_the_line_of_several_bad_numbers_names_the_data_check_that_lists_them(tmp_path, write_config):
    table, _ = number_table(tmp_path, 10)
    rows = list(csv.reader(table.open()))[1:]
    rows[3][1], rows[5][2] = "x", ""
    write(table, rows)
    result = run_here("train", write_config(config_for(table)), "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"line 5: 'x' in column 'size' is not a number; give a number like 12.5 (and 1 more problem(s): " \
           f"`cnnrun data check {table} --targets size,half` lists them)" in result.stderr.strip()
    assert run_here("data", "check", table, "--targets", "size,half").returncode == 1  # which does list both


def test_a_missing_target_column_is_one_line_naming_the_key(tmp_path, write_config):
    table, _ = number_table(tmp_path, 10)
    config = config_for(table, dataset={"target_columns": ["size", "angle"]})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"dataset.path: {table} line 1: no column 'angle' (target columns); the header has 'path', 'size', " \
           f"'half', 'split': set dataset.target_columns to one of them" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("layers", "words"), [
    ([{"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "softmax"}}],
     "dataset.label_mode regression needs the numbers unsqueezed: end with a Dense layer of activation: linear "
     "(or none), not softmax"),
    ([{"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "sigmoid"}}], "not sigmoid"),
    ([{"Flatten": {}}, {"Dense": {"units": 3}}],
     "the model's output has shape (None, 3), but dataset.label_mode regression with 2 target(s) (size, half) "
     "needs one number per target"),
])
def test_a_head_that_does_not_fit_numbers_is_one_line_exit_2(tmp_path, write_config, layers, words):
    table, _ = number_table(tmp_path, 10)
    result = run_here("train", write_config(config_for(table, layers=layers)), "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert words in line and "model.layers" in line, line
    assert not (tmp_path / "out").exists()


def test_a_crossentropy_does_not_fit_numbers(tmp_path, write_config):
    table, _ = number_table(tmp_path, 10)
    config = config_for(table, compile={"loss": "categorical_crossentropy"})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "compile.loss: categorical_crossentropy does not fit dataset.label_mode 'regression' (numbers, not " \
           "classes); use mean_squared_error, mean_absolute_error or huber" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("loss", "kind"), [(None, "MeanSquaredError"), ("mean_absolute_error", "MeanAbsoluteError"),
                                            ({"name": "huber", "delta": 2.0}, "Huber")])
def test_the_losses_that_fit_numbers(tmp_path, loss, kind):
    from cnnrun.model.compiling import make_loss

    experiment = validate_experiment(config_for(tmp_path / "t.csv", compile={"loss": loss}), "x.yaml")
    assert type(make_loss(experiment)).__name__ == kind


def test_data_check_lists_every_number_problem_and_exits_1(tmp_path):
    table, _ = number_table(tmp_path, 10)
    rows = list(csv.reader(table.open()))[1:]
    rows[0][1], rows[2][2], rows[4][1] = "", "1,5", "twelve"
    write(table, rows)
    result = run_here("data", "check", table, "--targets", "size,half")
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "3 problem(s)" in out
    for line, words in ((2, "empty cell in column 'size'"), (4, "'1,5' in column 'half' is not a number"),
                        (6, "'twelve' in column 'size' is not a number")):
        assert f"│ {line} │ {words}" in out, out
    result = run_here("data", "check", table, "--targets", "size,angle")
    assert result.returncode == 1 and "no column 'angle' (target columns)" in " ".join(result.stdout.split())


def test_data_show_draws_a_row_per_target_sorted_by_it_and_counts_each_split(tmp_path):
    from cnnrun.data.samples import number_indices, show_data

    numbers = np.array([[5.0, 1.0], [2.0, 9.0], [7.0, 3.0], [1.0, 4.0]])
    size, half = number_indices(numbers, 2, 3, seed=0)
    assert sorted(size) == sorted(half) and len(size) == 3  # the same three pictures
    assert list(numbers[size, 0]) == sorted(numbers[size, 0]) and list(numbers[half, 1]) == sorted(numbers[half, 1])
    table, _ = number_table(tmp_path, 20)
    shown = show_data(validate_experiment(config_for(table), "x.yaml"), 4, tmp_path / "show")
    rows = list(csv.reader(table.open()))[1:]
    assert shown.counts == (("size, half", tuple(sum(row[3] == split for row in rows) for split in shown.splits)),)
    assert [path.name for path in shown.files] == ["samples.png"] and (tmp_path / "show" / "samples.png").exists()


@pytest.mark.parametrize("module", ["cnnrun.model.regression", "cnnrun.data.regression"])
def test_the_numpy_modules_examples_hold(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted >= 2 and result.failed == 0


def test_a_regression_run_reports_mae_and_rmse_whatever_class_metrics_the_config_names(tmp_path):
    from cnnrun.model.build import build_model
    from cnnrun.model.compiling import compile_model

    experiment = validate_experiment(config_for(tmp_path / "t.csv", compile={"metrics": ["accuracy", "crossentropy"]}),
                                     "x.yaml")
    model = build_model(experiment, (8, 8, 1), 2)
    compile_model(model, experiment)
    for layer in model.layers:  # outputs 0 whatever the picture
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    # targets (1, 2) and (3, 4) against outputs 0: errors 1 2 3 4 → MAE 10/4 = 2.5, MSE 30/4 = 7.5, RMSE √7.5
    logs = model.evaluate(np.zeros((2, 8, 8, 1), np.float32), np.array([[1, 2], [3, 4]], np.float32), verbose=0,
                          return_dict=True)
    assert logs == pytest.approx({"loss": 7.5, "mae": 2.5, "rmse": 7.5 ** 0.5})
