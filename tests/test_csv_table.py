"""`dataset.name: csv`: a table of picture files and labels, its check line by line (`cnnrun data check`), its one-line
errors in `train`, and its splits recorded with their labels; stratified splits of tables and image folders."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.data.split import allotted, stratified_tail
from cnnrun.errors import UserError
from cnnrun.run_folder.files import SplitFiles
from tests.conftest import only_run, run_here, tiny_config


def picture(path: Path, value: int = 0) -> str:
    """An 8×8 grey PNG at `path` (folders made); its path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value % 256, np.uint8)).save(path)
    return str(path)


def write_table(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("path", "label", "split")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([list(header), *rows])
    return path


def labelled(root: Path, counts: dict[str, int], split: str | None = None) -> list[list[str]]:
    """Rows of `counts[label]` new pictures of each label under `root/pics` (paths relative to `root`)."""
    rows = []
    for label, count in counts.items():
        for i in range(count):
            relative = f"pics/{label}_{split or 'all'}_{i}.png"
            picture(root / relative, i * 7)
            rows.append([relative, label] + ([split] if split else []))
    return rows


def csv_experiment(table: Path, **dataset):
    config = tiny_config(dataset={"name": "csv", "path": str(table), "image_size": 16, "label_mode": "sparse",
                                  **dataset})
    return validate_experiment(config, "test")


def labels_of(splits, name: str) -> dict[str, str]:
    """Each file of split `name` with the class name its label stands for."""
    part = splits.examples[name]
    return {path: splits.info.class_names[label] for path, label in zip(part.paths, part.labels, strict=True)}


def test_a_table_gives_each_picture_its_own_label_and_split(tmp_path):
    rows = labelled(tmp_path, {"dog": 3, "cat": 4}, "train") + labelled(tmp_path, {"cat": 1, "dog": 2}, "test") \
        + labelled(tmp_path, {"dog": 1, "cat": 1}, "Validation ")  # the split's case and spaces do not matter
    elsewhere = picture(tmp_path / "other" / "bird.png")  # an absolute path, outside the table's folder
    rows.append([elsewhere, "bird", "train"])
    table = write_table(tmp_path / "table" / "t.csv", [[f"../{p}" if not Path(p).is_absolute() else p, label, split]
                                                      for p, label, split in rows])
    experiment = csv_experiment(table)
    assert experiment.has_validation  # the rows of the validation split: val_loss can be monitored
    splits = load_splits(experiment)
    assert splits.info.class_names == ["bird", "cat", "dog"]  # the labels, sorted
    assert splits.info.class_counts == {"train": [1, 4, 3], "validation": [0, 1, 1], "test": [0, 1, 2]}
    expected = {str((tmp_path / "table" / f"../{p}") if not Path(p).is_absolute() else p): label
                for p, label, _ in rows}
    for name in ("train", "validation", "test"):
        assert labels_of(splits, name).items() <= expected.items()
    assert elsewhere in splits.examples["train"].paths

    files = splits.files()
    assert files["root"] == str(tmp_path / "table") and files["table"] == str(table)
    assert elsewhere in files["train"]  # outside the root: kept absolute
    assert all(not Path(p).is_absolute() for p in files["test"])
    assert SplitFiles.model_validate(files).to_dict() == files  # what splits.json holds

    Path(elsewhere).unlink()  # the bird's picture: not even checked when the bird is not chosen
    chosen = load_splits(csv_experiment(table, classes=["dog", "cat"]))  # in this order; the bird is in no split
    assert chosen.info.class_counts == {"train": [3, 4], "validation": [1, 1], "test": [2, 1]}
    assert chosen.warnings == () and chosen.bad_files == ()
    with pytest.raises(UserError, match="has its own validation split; remove validation_split"):
        load_splits(csv_experiment(table, validation_split=0.2))


def test_a_table_without_split_column_is_training_data_split_by_the_fractions_of_each_class(tmp_path):
    rows = labelled(tmp_path, {"cat": 30, "dog": 10})
    table = write_table(tmp_path / "t.csv", rows, ("path", "label"))
    assert not csv_experiment(table).has_validation
    splits = load_splits(csv_experiment(table, test_split=0.2, validation_split=0.25))
    # test: 8 of 40, a fifth of each class; validation: 10 of 40, a quarter of each class (7.5 and 2.5: the tie
    # goes to the first class)
    assert splits.info.class_counts == {"train": [16, 6], "validation": [8, 2], "test": [6, 2]}
    unstratified = load_splits(csv_experiment(table, test_split=0.2, validation_split=0.25, stratify=False))
    assert unstratified.info.sizes == splits.info.sizes == {"train": 22, "validation": 10, "test": 8}
    whole = load_splits(csv_experiment(table)).examples["train"].paths  # the seeded order, nothing held out
    listed = [str(tmp_path / path) for path, _ in rows]  # the table's own order: the cats, then the dogs
    # a seeded draw, not the table's order (which the last of each class would then be): 1 in 40! to be it
    assert sorted(whole) == sorted(listed) and whole != listed
    assert load_splits(csv_experiment(table)).examples["train"].paths == whole  # the same seed, the same draw
    assert unstratified.examples["test"].paths == whole[-8:]  # without stratify: the last part, as before
    assert unstratified.examples["validation"].paths == whole[-18:-8]
    sampled = load_splits(csv_experiment(table, validation_split=0.25, samples_per_class=5))
    assert sampled.info.class_counts == {"train": [5, 5], "validation": [8, 2]}


def test_stratified_image_folder_splits_keep_each_class_share(tmp_path):
    for name, count in (("a", 12), ("b", 6), ("c", 2)):
        for i in range(count):
            picture(tmp_path / "pics" / name / f"{i}.png", i)
    experiment = validate_experiment(tiny_config(dataset={
        "name": "image_folder", "path": str(tmp_path / "pics"), "image_size": 16, "test_split": 0.25,
        "validation_split": 0.2}), "test")
    assert experiment.dataset.stratify is True  # the default
    splits = load_splits(experiment)
    # test: 5 of 20 → a 3, b 1.5, c 0.5 → 3, 2, 0 (b's and c's half: the tie goes to b); validation: 4 of 20, from
    # the 9, 4, 2 left → 2.4, 1.07, 0.53 → 2, 1, 1
    assert splits.info.class_counts == {"train": [7, 3, 1], "validation": [2, 1, 1], "test": [3, 2, 0]}
    holdout = load_splits(validate_experiment(tiny_config(dataset={
        "name": "image_folder", "path": str(tmp_path / "pics"), "image_size": 16, "holdout_first": 4}), "test"))
    whole = load_splits(validate_experiment(tiny_config(dataset={
        "name": "image_folder", "path": str(tmp_path / "pics"), "image_size": 16}), "test"))
    assert holdout.examples["validation"].paths == whole.examples["train"].paths[:4]  # holdout_first: the first N


def test_shares_are_each_class_fraction_rounded_and_add_up():
    assert allotted(np.array([6, 2]), 4).tolist() == [3, 1]
    assert allotted(np.array([5, 5, 5]), 4).tolist() == [2, 1, 1]  # equal remainders: the first classes
    assert allotted(np.array([1, 9]), 3).tolist() == [0, 3]  # 0.3 and 2.7: the larger remainder
    assert allotted(np.array([0, 0]), 0).tolist() == [0, 0]
    assert stratified_tail(np.array([0, 1, 0, 0, 1, 0, 0, 0]), 4).tolist() == [4, 5, 6, 7]  # each class's last


def test_recorded_splits_keep_the_files_and_labels_the_run_was_trained_on(tmp_path):
    rows = labelled(tmp_path, {"cat": 6, "dog": 6})
    table = write_table(tmp_path / "t.csv", rows + [["gone.png", "cat"]], ("path", "label"))  # line 14: no file
    experiment = csv_experiment(table, validation_split=0.25)
    first = load_splits(experiment)
    assert first.bad_files == ({"path": str(tmp_path / "gone.png"), "reason": "no such file", "line": 14},)
    assert "line 14: " in first.warnings[0] and first.info.sizes == {"train": 9, "validation": 3}
    recorded = SplitFiles.model_validate(first.files()).to_dict()  # through splits.json's schema
    swapped = [[p, {"cat": "dog", "dog": "cat"}[label]] for p, label in rows]
    write_table(table, swapped + labelled(tmp_path, {"cow": 3}), ("path", "label"))  # relabelled, a class added
    again = load_splits(experiment, stored_files=recorded)
    assert again.info.class_names == ["cat", "dog"]
    for name in ("train", "validation"):
        assert labels_of(again, name) == labels_of(first, name)
        assert again.examples[name].paths == first.examples[name].paths
    Path(first.examples["validation"].paths[0]).unlink()
    gone = load_splits(experiment, stored_files=recorded)
    assert len(gone.examples["validation"]) == 2 and "1 file(s) of the run's splits missing" in gone.warnings[0]
    with pytest.raises(UserError, match="not the record of a csv run"):
        load_splits(experiment, stored_files={**recorded, "labels": None})


def test_data_check_lists_every_problem_of_a_table_with_its_line(tmp_path):
    for name in "abcd":
        picture(tmp_path / f"{name}.png")
    (tmp_path / "broken.png").write_text("not a picture")
    table = write_table(tmp_path / "t.csv", [
        ["a.png", "cat", "train"],        # line 2: good
        ["a.png", "dog", "test"],         # 3: the same file again
        ["nowhere.png", "cat", "train"],  # 4: missing
        ["broken.png", "dog", "train"],   # 5: undecodable
        [str(tmp_path / "b.png"), "", "train"],  # 6: empty label
        ["c.png", "Cat", "train"],        # 7: not one of --classes
        ["d.png", "cat", "val"],          # 8: bad split value
    ])
    result = run_here("data", "check", table, "--classes", "cat,dog")
    assert result.returncode == 1, result.stdout + result.stderr
    listed = [line.split("│")[1:3] for line in result.stdout.splitlines() if line.count("│") == 3]
    found = {int(number): text.strip() for number, text in listed}
    assert sorted(found) == [3, 4, 5, 6, 7, 8]
    assert "listed on line 2 already" in found[3]
    assert found[4] == f"{tmp_path / 'nowhere.png'}: no such file"
    assert "broken.png: not an image" in found[5]
    assert found[6].startswith("empty label (column 'label')")
    assert found[7] == "label 'Cat' is not one of the classes (did you mean 'cat'?): cat, dog"
    assert found[8].startswith("split 'val' should be train, validation or test")
    assert "1 good picture(s), 6 problem(s)" in result.stdout
    write_table(table, [["a.png", "cat"], ["b.png", "dog"]], ("path", "label"))  # a clean table
    assert run_here("data", "check", table).returncode == 0


@pytest.mark.parametrize("header, row, settings, message", [
    (("file", "label"), ["a.png", "cat"], {}, "line 1: no column 'path' (path column); the header has 'file', "
                                               "'label': set dataset.path_column to one of them"),
    (("path", "label", "split"), ["a.png", "cat", "training"], {},
     "line 3: split 'training' should be train, validation or test (column 'split') (did you mean 'train'?)"),
    (("path", "label"), ["gone.png", "cat"], {"on_bad_file": "error"}, "line 3: {root}/gone.png: no such file"),
    (("path", "label"), ["a.png", "cat"], {"split_column": "part"}, "line 1: no column 'part' (split column)"),
])
def test_a_bad_table_stops_train_with_one_line_naming_its_line(tmp_path, write_config, header, row, settings,
                                                                message):
    picture(tmp_path / "a.png"), picture(tmp_path / "b.png")
    table = write_table(tmp_path / "t.csv", [["b.png", "dog", "train"][:len(header)], row], header)
    config = write_config(tiny_config(dataset={"name": "csv", "path": str(table), "image_size": 16, **settings}))
    result = run_here("train", config, "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {config}: dataset.path: {table} ") and message.format(root=tmp_path) in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_on_a_table_records_its_splits_and_evaluate_and_resume_reuse_them(tmp_path, write_config):
    rows = labelled(tmp_path, {"cat": 8, "dog": 8}, "train") + labelled(tmp_path, {"cat": 2, "dog": 2}, "validation") \
        + labelled(tmp_path, {"cat": 3, "dog": 3}, "test")
    table = write_table(tmp_path / "t.csv", rows)
    config = tiny_config(dataset={"name": "csv", "path": str(table), "image_size": 16},
                         model={"layers": [{"Flatten": {}}, {"Dense": {"units": "${num_classes}",
                                                                       "activation": "softmax"}}]},
                         train={"epochs": 1, "batch_size": 8}, output={"plots": False, "report": False})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    run = only_run(tmp_path / "out")
    recorded = json.loads((run / "splits.json").read_text())
    assert {name: sorted(zip(recorded[name], recorded["labels"][name], strict=True)) for name in
            ("train", "validation", "test")} == {name: sorted((p, label) for p, label, split in rows if split == name)
                                                 for name in ("train", "validation", "test")}
    assert "val_loss" in (run / "history.csv").read_text().splitlines()[0]  # the validation rows validate
    write_table(table, [[p, "dog", split] for p, _, split in rows])  # the table changes: every label dog
    result = run_here("evaluate", run)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    assert metrics["examples"] == 6
    result = run_here("resume", run, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run / "splits.json").read_text()) == recorded
    assert json.loads((run / "dataset.json").read_text())["class_counts"]["test"] == [3, 3]
