"""`label_mode: multi_label` through the data, the model and the commands: a table of `red;green` labels read into
multi-hot rows and recorded in splits.json; bad tables and heads one line, exit 2; `cnnrun data check` listing every
problem; a tiny run whose thresholds, scores, evaluate and predict are checked against figures recomputed here;
a model set by hand whose test scores.json is counted at its validation thresholds."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from tests.conftest import only_run, run_here, tiny_config

HEAD = [{"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "sigmoid"}}]


def coloured(path: Path, red: bool, green: bool) -> None:
    """An 8×8 picture whose red and green channels say its labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = 220 * red, 220 * green
    Image.fromarray(pixels).save(path)


def colour_table(root: Path, count: int = 60, seed: int = 0) -> tuple[Path, dict[str, set[str]]]:
    """A table of `count` pictures labelled `red`, `green` or `red;green` (their colours), 60 % train, 20 %
    validation, 20 % test; and each picture's labels by its absolute path."""
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in range(count):
        red, green = (bool(v) for v in rng.integers(0, 2, 2))
        red = red or not green  # every picture has a label
        coloured(root / f"p{i}.png", red, green)
        names = [name for name, on in (("red", red), ("green", green)) if on]
        truth[str(root / f"p{i}.png")] = set(names)
        split = "train" if i < 0.6 * count else "validation" if i < 0.8 * count else "test"
        rows.append([f"p{i}.png", ";".join(names), split])
    return write(root / "t.csv", rows), truth


def write(table: Path, rows: list[list[str]]) -> Path:
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"], *rows])
    return table


def config_for(table: Path, **changes) -> dict:
    dataset = {"name": "csv", "path": str(table), "image_size": 8, "label_mode": "multi_label",
               **changes.pop("dataset", {})}
    return tiny_config(dataset=dataset, model={"layers": changes.pop("layers", HEAD)},
                       compile={"optimizer": {"name": "adam", "learning_rate": 0.05}},
                       train={"epochs": 3, "batch_size": 8}, output={"plots": False, "report": False}, **changes)


def test_a_table_of_several_labels_gives_multi_hot_rows_recorded_in_splits_json(tmp_path):
    table, truth = colour_table(tmp_path, 20)
    splits = load_splits(validate_experiment(config_for(table), "x.yaml"))
    assert splits.info.class_names == ["green", "red"] and splits.info.label_mode == "multi_label"
    for name in ("train", "validation", "test"):
        part = splits.examples[name]
        assert part.labels.shape == (len(part), 2)
        for path, row in zip(part.paths, part.labels, strict=True):
            assert {("green", "red")[j] for j in np.flatnonzero(row)} == truth[path]
    train = splits.examples["train"]
    # class_counts: the pictures having each label, counted here from the table
    assert splits.info.class_counts["train"] == [sum("green" in truth[p] for p in train.paths),
                                                 sum("red" in truth[p] for p in train.paths)]
    recorded = splits.files()
    assert all(isinstance(labels, list) for labels in recorded["labels"]["train"])
    again = load_splits(validate_experiment(config_for(table), "x.yaml"), stored_files=recorded)
    for name in ("train", "validation", "test"):
        assert again.examples[name].paths == splits.examples[name].paths
        assert np.array_equal(again.examples[name].labels, splits.examples[name].labels)
    assert (splits.examples["train"].labels.sum(axis=1) == 2).any()  # some pictures with both labels


def test_classes_give_the_labels_their_order(tmp_path):
    table, truth = colour_table(tmp_path, 10)
    splits = load_splits(validate_experiment(config_for(table, dataset={"classes": ["red", "green"]}), "x.yaml"))
    assert splits.info.class_names == ["red", "green"]
    part = splits.examples["train"]
    for path, row in zip(part.paths, part.labels, strict=True):
        assert {("red", "green")[j] for j in np.flatnonzero(row)} == truth[path]


@pytest.mark.parametrize(("cell", "words"), [
    ("", "line 3: empty label (column 'label')"),
    ("red;;green", "line 3: empty label in 'red;;green'"),
    ("red;blue", "line 3: label 'blue' is not one of the classes"),
])
def test_a_bad_label_stops_train_with_one_line_naming_the_table_and_line(tmp_path, write_config, cell, words):
    table, _ = colour_table(tmp_path, 10)
    rows = list(csv.reader(table.open()))[1:]
    rows[1][1] = cell
    write(table, rows)
    config = write_config(config_for(table, dataset={"classes": ["green", "red"]}))
    result = run_here("train", config, "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"dataset.path: {table} {words}" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("layers", "words"), [
    ([{"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "softmax"}}],
     "needs one independent yes/no per label: end with a Dense layer of activation: sigmoid, not softmax"),
    ([{"Flatten": {}}, {"Dense": {"units": 3, "activation": "sigmoid"}}], "the model's output has shape (None, 3)"),
])
def test_a_head_that_does_not_fit_several_labels_is_one_line_exit_2(tmp_path, write_config, layers, words):
    table, _ = colour_table(tmp_path, 10)
    result = run_here("train", write_config(config_for(table, layers=layers)), "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert words in line and "model.layers" in line


@pytest.mark.parametrize(("loss", "words"), [
    ("categorical_crossentropy", "compile.loss: categorical_crossentropy does not fit dataset.label_mode "
                                 "'multi_label'; use binary_crossentropy"),
    ({"name": "binary_crossentropy", "from_logits": True},
     "end with a Dense layer of activation: linear (compile.loss has from_logits: true), not sigmoid"),
])
def test_a_loss_that_does_not_fit_several_labels_is_one_line_exit_2(tmp_path, write_config, loss, words):
    table, _ = colour_table(tmp_path, 10)
    config = config_for(table)
    config["compile"]["loss"] = loss
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert words in line, line


def test_data_check_lists_every_label_problem_and_exits_1(tmp_path):
    table, _ = colour_table(tmp_path, 10)
    rows = list(csv.reader(table.open()))[1:]
    rows[0][1], rows[2][1], rows[4][1] = "", "red;", "Red;green"
    write(table, rows)
    result = run_here("data", "check", table, "--label-separator", ";", "--classes", "red,green")
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "3 problem(s)" in out
    for line, words in ((2, "empty label (column 'label')"), (4, "empty label in 'red;'"),
                        (6, "label 'Red' is not one of the classes (did you mean 'red'?)")):
        assert f"│ {line} │ {words}" in out, out


@pytest.mark.slow
def test_a_run_chooses_thresholds_on_validation_and_evaluate_and_predict_use_them(tmp_path, write_config):
    import keras

    table, truth = colour_table(tmp_path, 60)
    result = run_here("train", write_config(config_for(table)), "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    run = only_run(tmp_path / "out")
    thresholds = json.loads((run / "thresholds.json").read_text())
    assert thresholds["chosen_on"] == "validation" and set(thresholds["best"]) == {"green", "red"}
    both = json.loads((run / "scores.json").read_text())
    scores = both["best"]
    if json.loads((run / "state.json").read_text())["best"]["epoch"] == 3:  # best is the last epoch: the same
        assert both["last"] == scores and thresholds["last"] == thresholds["best"]

    # the test split's scores of best.keras, and the average precision worked out here from them
    recorded = json.loads((run / "splits.json").read_text())
    paths = [str(tmp_path / p) for p in recorded["test"]]
    pictures = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).astype(np.float32) / 255
    model = keras.saving.load_model(run / "checkpoints" / "best.keras")
    predicted = np.asarray(model.predict(pictures, verbose=0))
    names = ["green", "red"]
    precisions = []
    for j, name in enumerate(names):
        order = np.argsort(-predicted[:, j])
        has = np.array([name in truth[paths[i]] for i in order])
        precisions.append(np.mean([has[:k + 1].mean() for k in np.flatnonzero(has)]))
    assert scores["mean_average_precision"] == pytest.approx(np.mean(precisions), abs=1e-6)
    # `accuracy` is Keras' binary accuracy: the share of the label decisions at 0.5 that are right
    hot = np.array([[name in truth[p] for name in names] for p in paths])
    assert scores["accuracy"] == pytest.approx(np.mean((predicted >= 0.5) == hot), abs=1e-6)

    def f1(said, has):  # 2·TP / (predicted + actual), 0 where neither has any
        return 2 * np.sum(said & has) / (np.sum(said) + np.sum(has)) if np.sum(said) + np.sum(has) else 0.0

    # each label's threshold is one of the validation split's best: no cut of its scores there gives a higher F1,
    # and it lies halfway between two neighbouring scores (half the lowest below them all)
    valid = [str(tmp_path / p) for p in recorded["validation"]]
    shown = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in valid]).astype(np.float32) / 255
    scored = np.asarray(model.predict(shown, verbose=0))
    for j, name in enumerate(names):
        has, cut = np.array([name in truth[p] for p in valid]), thresholds["best"][name]
        assert all(f1(scored[:, j] >= cut, has) >= f1(scored[:, j] >= other, has) for other in scored[:, j])
        distinct = np.unique(scored[:, j])
        assert np.isclose(cut, np.r_[distinct[:1] / 2, (distinct[1:] + distinct[:-1]) / 2], atol=1e-6).any()
    # the test F1 of scores.json is at those thresholds, counted here
    macro = np.mean([f1(predicted[:, j] >= thresholds["best"][name], hot[:, j]) for j, name in enumerate(names)])
    assert scores["macro_f1"] == pytest.approx(macro, abs=1e-6)

    result = run_here("evaluate", run)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    assert metrics["thresholds"] == thresholds["best"]
    assert metrics["mean_average_precision"] == pytest.approx(scores["mean_average_precision"], abs=1e-6)
    with (run / "eval" / "best_test_per_label.csv").open() as f:
        rows = {row["label"]: row for row in csv.DictReader(f)}
    for j, name in enumerate(names):  # recall at the run's threshold, counted here
        said = predicted[:, j] >= thresholds["best"][name]
        has = np.array([name in truth[p] for p in paths])
        assert float(rows[name]["recall"]) == pytest.approx(round((said & has).sum() / has.sum(), 4))

    out = tmp_path / "predicted.csv"
    result = run_here("predict", "--run", run, *paths[:4], "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    with out.open() as f:
        written = list(csv.DictReader(f))
    listed = {row["file"]: set(filter(None, row["labels"].split(";"))) for row in written}
    for i, row in enumerate(written):  # each label's own sigmoid score, as the model gives it
        assert [float(row["score_green"]), float(row["score_red"])] == pytest.approx(predicted[i], abs=1e-5)
    for i, path in enumerate(paths[:4]):
        assert listed[path] == {name for j, name in enumerate(names) if predicted[i, j] >= thresholds["best"][name]}
    # thresholds of another run's choosing: green listed whatever its score, red never
    (run / "thresholds.json").write_text(json.dumps({**thresholds, "best": {"green": 0.0, "red": 1.5}}))
    result = run_here("predict", "--run", run, *paths[:4], "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    with out.open() as f:
        assert [row["labels"] for row in csv.DictReader(f)] == ["green"] * 4


def test_data_show_counts_each_label_and_each_picture_once(tmp_path):
    from cnnrun.data.samples import show_data

    table, truth = colour_table(tmp_path, 20)
    shown = show_data(validate_experiment(config_for(table), "x.yaml"), 2, tmp_path / "show")
    splits = dict(zip(shown.splits, zip(*(row for _, row in shown.counts), strict=True), strict=True))
    rows = list(csv.reader(table.open()))[1:]
    for split, per_label in splits.items():
        assert per_label == tuple(sum(name in row[1].split(";") and row[2] == split for row in rows)
                                  for name in ("green", "red"))
    assert shown.totals == tuple(sum(row[2] == split for row in rows) for split in shown.splits)


@pytest.mark.slow
def test_folds_of_a_multi_label_table_split_its_training_pictures_and_say_how(tmp_path, write_config):
    table, _ = colour_table(tmp_path, 20)
    rows = list(csv.reader(table.open()))[1:]
    write(table, [row[:2] + ["train" if row[2] != "test" else "test"] for row in rows])
    config = config_for(table)
    config["train"]["epochs"] = 1
    result = run_here("train", write_config(config), "--folds", "2", "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 (one seeded deal, not stratified: several labels a picture;" in result.stdout
    validation = [json.loads((next((tmp_path / "out" / f"tiny-fold{i}of2").iterdir()) / "splits.json").read_text())
                  for i in (1, 2)]
    first, second = (set(split["validation"]) for split in validation)
    assert not first & second and first | second == {row[0] for row in rows if row[2] != "test"}
    assert abs(len(first) - len(second)) <= 1


def colour_scorer():
    """A compiled model set by hand: each label's score is sigmoid(4·m + 1), m the picture's mean of that colour in
    0–1 (green from the green channel, red from the red): 0.731 without the colour, 0.988 with it (220/255)."""
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.array([[0, 4], [4, 0], [0, 0]], np.float32), np.ones(2, np.float32)])
    model.compile(loss="binary_crossentropy", metrics=["accuracy"])
    return model


def test_scores_json_counts_the_test_pictures_at_the_thresholds_chosen_on_validation(tmp_path):
    """`colour_scorer` scores every label above 0.5: at 0.5 every label is said of every picture; at the thresholds
    chosen on validation (between 0.731 and 0.988) each label is said of exactly the pictures that have it."""
    from cnnrun.model.scoring import score_multilabel_checkpoints
    from cnnrun.run_folder.folder import Run

    table, truth = colour_table(tmp_path, 60)
    experiment = validate_experiment(config_for(table, dataset={"normalize": "rescale"}), "x.yaml")
    splits = load_splits(experiment)
    model = colour_scorer()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    model.save(tmp_path / "run" / "checkpoints" / "best.keras")

    scores = score_multilabel_checkpoints(Run(tmp_path / "run"), splits, experiment)["best"]
    thresholds = json.loads((tmp_path / "run" / "thresholds.json").read_text())["best"]
    assert all(0.731 < thresholds[name] < 0.988 for name in ("green", "red")), thresholds
    assert scores["macro_f1"] == scores["micro_f1"] == scores["exact_match"] == 1.0
    # at 0.5 instead: every label said of every test picture, so F1 = 2·has / (pictures + has), below 1
    hot = np.array([[name in truth[p] for name in ("green", "red")] for p in splits.examples["test"].paths])
    at_half = [2 * hot[:, j].sum() / (len(hot) + hot[:, j].sum()) for j in range(2)]
    assert max(at_half) < 1


def test_the_pictures_shown_for_a_label_are_those_having_it():
    from cnnrun.data.samples import sample_indices

    # multi-hot: picture 0 green, 1 red, 2 both, 3 neither
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    green, red = sample_indices(labels, 2, per_class=10, seed=0)
    assert sorted(green.tolist()) == [0, 2] and sorted(red.tolist()) == [1, 2]


def hand_set_run(tmp_path: Path):
    """A run folder set by hand (no training): `colour_scorer` scores every label between 0.731 and 0.988, so a
    threshold of 0 lists the label and one of 1.5 never does; best.keras and last.keras hold it, with thresholds
    green 0, red 1.5 for best and green 1.5, red 0 for last. The colour table is in tmp_path/data."""
    from cnnrun.config.load import experiment_to_yaml
    from cnnrun.data import DatasetInfo
    from cnnrun.run_folder.folder import Run

    table, _ = colour_table(tmp_path / "data", 10)
    experiment = validate_experiment(config_for(table, dataset={"normalize": "rescale"}), "x.yaml")
    run = Run(tmp_path / "run")
    (run.path / "checkpoints").mkdir(parents=True)
    run.write_config(experiment_to_yaml(experiment))
    run.update_state(status="completed", epochs_planned=1, epochs_completed=1)
    run.write_dataset_info(DatasetInfo(class_names=["green", "red"], input_shape=[8, 8, 3], label_mode="multi_label",
                                       normalize="rescale"))
    model = colour_scorer()
    for name in ("best", "last"):
        model.save(run.checkpoint(name))
    run.write_thresholds({"chosen_on": "validation", "best": {"green": 0.0, "red": 1.5},
                          "last": {"green": 1.5, "red": 0.0}})
    return run


def test_predict_with_the_last_checkpoint_uses_the_last_checkpoints_thresholds(tmp_path):
    from cnnrun.tasks.predict import predict_files

    run = hand_set_run(tmp_path)
    picture = tmp_path / "data" / "p0.png"
    for checkpoint, listed in (("best", ["green"]), ("last", ["red"])):
        (result,) = predict_files(run.path, [picture], checkpoint=checkpoint).results
        assert [name for name, _ in result["labels"]] == listed, checkpoint


def test_evaluate_of_the_last_checkpoint_uses_the_last_checkpoints_thresholds(tmp_path):
    from cnnrun.tasks.evaluate import evaluate_run

    run = hand_set_run(tmp_path)
    evaluation = evaluate_run(run.path, "last")
    metrics = json.loads((run.path / "eval" / "last_test_metrics.json").read_text())
    assert metrics["thresholds"] == {"green": 1.5, "red": 0.0}
    # green at 1.5 is never said (recall 0), red at 0 always (recall 1)
    assert [(row["label"], row["threshold"], row["recall"]) for row in evaluation.per_class] == [
        ("green", 1.5, 0.0), ("red", 0.0, 1.0)]
