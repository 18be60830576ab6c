"""`dataset.classes` (some classes, in a given order) and `dataset.samples_per_class` (a seeded subset of each)."""

import json
from pathlib import Path

import numpy as np
import pytest

from cnnrun.config import validate_experiment
from cnnrun.data import describe, load_splits
from cnnrun.data.shapes import make_shapes
from cnnrun.data.sources import load_raw
from tests.conftest import SHARED_DATA, only_run, run_here, tiny_config
from tests.test_errors import assert_user_error


def write_npz(path: Path, classes: int = 4, per_class: int = 30, test_per_class: int = 6) -> dict[str, np.ndarray]:
    """An npz whose picture i is filled with the value i (train) or 200 + i (test), labels in a seeded order."""
    rng = np.random.default_rng(0)
    y_train = rng.permutation(np.arange(classes * per_class) % classes)
    y_test = rng.permutation(np.arange(classes * test_per_class) % classes)
    x_train = np.broadcast_to(np.arange(len(y_train), dtype=np.uint8)[:, None, None], (len(y_train), 4, 4)).copy()
    x_test = np.broadcast_to((200 + np.arange(len(y_test))).astype(np.uint8)[:, None, None],
                             (len(y_test), 4, 4)).copy()
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return {"y_train": y_train, "y_test": y_test}


def index_of(examples) -> list[int]:
    """Which npz picture each example is (the value it is filled with)."""
    return [int(v) for v in examples.images[:, 0, 0, 0]]


def npz_experiment(path: Path, seed: int = 3, **dataset):
    return validate_experiment({**tiny_config(dataset={"name": "npz", "path": str(path), **dataset}), "seed": seed},
                               "test")


def write_folder(root: Path, counts: dict[str, int], test: int = 0) -> None:
    """Tiny PNGs: `counts[name]` in train/<name>/, `test` in test/<name>/ (no test/ when 0)."""
    from PIL import Image

    for split, sizes in (("train", counts), ("test", dict.fromkeys(counts, test) if test else {})):
        for name, count in sizes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((8, 8, 3), 30 * len(name) + i, np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


def folder_experiment(root: Path, seed: int = 3, **dataset):
    return validate_experiment({**tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 8,
                                                       **dataset}), "seed": seed}, "test")


def test_shapes_keep_only_the_chosen_classes_numbered_in_the_order_given():
    dataset = {"name": "shapes", "image_size": 16, "num_classes": 4, "num_samples": 40, "test_samples": 20,
               "classes": ["triangle", "circle"]}
    experiment = validate_experiment(tiny_config(dataset=dataset), "test")
    assert describe(experiment.dataset) == ((16, 16, 1), ["triangle", "circle"])
    raw = load_raw(experiment.dataset, seed=3)
    assert raw.class_names == ["triangle", "circle"]
    for part, count, seed in ((raw.train, 40, 3), (raw.test, 20, 4)):  # the shapes set draws its test with seed + 1
        x, y, _ = make_shapes(count, image_size=16, channels=1, num_classes=4, seed=seed)
        keep = (y == 2) | (y == 0)  # triangle is shape 2, circle shape 0
        np.testing.assert_array_equal(part.images, x[keep])
        assert part.labels.tolist() == [0 if label == 2 else 1 for label in y[keep]]


@pytest.mark.parametrize("label_mode", ["sparse", "categorical", "binary"])
def test_npz_classes_are_relabelled_in_every_split_and_label_mode(tmp_path, label_mode):
    written = write_npz(tmp_path / "mine.npz")
    experiment = npz_experiment(tmp_path / "mine.npz", classes=[3, 1], label_mode=label_mode, validation_split=0.25)
    splits = load_splits(experiment)
    assert splits.info.class_names == ["3", "1"]
    new_label = {3: 0, 1: 1}
    rows = [i for i, label in enumerate(written["y_train"]) if label in new_label]
    cut = len(rows) - int(len(rows) * 0.25)
    test_rows = [i for i, label in enumerate(written["y_test"]) if label in new_label]
    for name, expected in (("train", rows[:cut]), ("validation", rows[cut:]),
                           ("test", [200 + i for i in test_rows])):
        part = splits.examples[name]
        assert index_of(part) == expected
        y = written["y_test"] if name == "test" else written["y_train"]
        assert part.labels.tolist() == [new_label[int(y[i % 200])] for i in expected]
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in splits.test])
    wanted = np.asarray([new_label[int(written["y_test"][i])] for i in test_rows])
    if label_mode == "categorical":
        wanted = np.eye(2)[wanted]
    elif label_mode == "binary":
        wanted = wanted[:, None].astype(np.float32)
    np.testing.assert_array_equal(labels, wanted)


def test_an_image_folder_reads_only_the_chosen_class_folders(tmp_path):
    write_folder(tmp_path / "pics", {"a": 4, "b": 4, "c": 4}, test=2)
    (tmp_path / "pics" / "train" / "b" / "broken.png").write_text("not a picture")  # would stop a check of b
    experiment = folder_experiment(tmp_path / "pics", classes=["c", "a"], on_bad_file="error", label_mode="sparse")
    splits = load_splits(experiment)
    assert splits.info.class_names == ["c", "a"] and splits.warnings == ()
    assert splits.info.sizes == {"train": 8, "test": 4}
    for name in ("train", "test"):
        part = splits.examples[name]
        folders = [Path(p).parent.name for p in part.paths]
        assert sorted(folders) == sorted(["a", "c"] * (4 if name == "train" else 2))
        assert part.labels.tolist() == [{"c": 0, "a": 1}[folder] for folder in folders]


def test_samples_per_class_draws_n_of_each_class_after_validation_and_test(tmp_path):
    written = write_npz(tmp_path / "mine.npz", per_class=30)
    y = written["y_train"]
    cut = len(y) - int(len(y) * 0.25)  # validation: the last quarter, of the whole training data

    def splits_of(seed: int):
        return load_splits(npz_experiment(tmp_path / "mine.npz", seed, samples_per_class=5, validation_split=0.25))

    first, again, other = splits_of(3), splits_of(3), splits_of(4)
    train = index_of(first.examples["train"])
    assert len(train) == 20 and np.bincount(y[train]).tolist() == [5, 5, 5, 5]
    assert set(train) <= set(range(cut))
    assert first.examples["train"].labels.tolist() == y[train].tolist()
    assert first.info.sizes == {"train": 20, "validation": 30, "test": 24}
    for splits in (first, other):
        assert index_of(splits.examples["validation"]) == list(range(cut, len(y)))
        assert index_of(splits.examples["test"]) == [200 + i for i in range(24)]
    assert index_of(again.examples["train"]) == train
    assert index_of(other.examples["train"]) != train


def test_samples_per_class_of_an_image_folder_are_recorded_and_reloaded(tmp_path):
    write_folder(tmp_path / "pics", {"a": 8, "b": 8})
    whole = load_splits(folder_experiment(tmp_path / "pics", validation_split=0.25))
    experiment = folder_experiment(tmp_path / "pics", validation_split=0.25, samples_per_class=3)
    splits = load_splits(experiment)
    train = splits.examples["train"].paths
    assert sorted(Path(p).parent.name for p in train) == ["a"] * 3 + ["b"] * 3
    assert set(train) <= set(whole.examples["train"].paths)
    assert splits.examples["validation"].paths == whole.examples["validation"].paths
    reloaded = load_splits(experiment, stored=splits.info, stored_files=splits.files())
    assert reloaded.examples["train"].paths == train
    assert reloaded.warnings == ()  # the pictures the subset left out are not "new files"


@pytest.mark.slow
def test_a_run_of_chosen_classes_records_them_and_resumes_and_evaluates(write_config, tmp_path):
    dataset = {"name": "shapes", "image_size": 16, "num_classes": 4, "num_samples": 160, "test_samples": 40,
               "validation_split": 0.25, "classes": ["cross", "circle"], "samples_per_class": 12}
    config = tiny_config(dataset=dataset, train={"epochs": 1, "batch_size": 8})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr[-2000:]
    run = only_run(tmp_path / "runs")
    info = json.loads((run / "dataset.json").read_text())
    _, y_test, _ = make_shapes(40, image_size=16, num_classes=4, seed=4)
    test_count = int(np.isin(y_test, [3, 0]).sum())
    assert info["class_names"] == ["cross", "circle"]
    assert info["sizes"]["train"] == 24 and info["sizes"]["test"] == test_count
    resumed = run_here("resume", run, "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 2
    evaluated = run_here("evaluate", run)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads((run / "eval" / "best_test_metrics.json").read_text())["examples"] == test_count


def _too_few_circles() -> int:
    _, y, _ = make_shapes(120, image_size=16, num_classes=3, seed=3)
    return int((y[:90] == 0).sum())  # validation_split 0.25 holds out the last 30


@pytest.mark.parametrize("dataset, fragments", [
    ({"name": "cifar10", "classes": ["cat", "dgo"]},
     ["dataset.classes", "no class 'dgo'", "did you mean 'dog'", "airplane, automobile, bird, cat"]),
    ({"name": "cifar10", "classes": ["cat", "dog", "cat"]}, ["dataset.classes", "'cat' listed twice"]),
    ({"name": "cifar10", "classes": ["cat"]}, ["dataset.classes", "at least 2 classes"]),
    ({"name": "cifar10", "classes": ["cat", "dog", "bird"], "label_mode": "binary"}, ["binary takes 2 classes"]),
    ({"name": "shapes", "image_size": 16, "num_samples": 120, "validation_split": 0.25, "samples_per_class": 50},
     ["dataset.samples_per_class: 50", f"class 'circle' has only {_too_few_circles()} training pictures once "
                                       f"validation is held out"]),
])
def test_bad_classes_and_samples_are_one_line_and_write_nothing(write_config, tmp_path, dataset, fragments):
    result = run_here("train", write_config(tiny_config(dataset=dataset)), "--output-dir", tmp_path / "runs")
    assert_user_error(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_image_folder_mistakes_are_found_before_any_picture_is_decoded(write_config, tmp_path):
    write_folder(tmp_path / "pics", {"cat": 3, "dog": 4})
    (tmp_path / "pics" / "train" / "dog" / "broken.png").write_text("not a picture")  # a check would stop here
    base = {"name": "image_folder", "path": str(tmp_path / "pics"), "image_size": 8, "on_bad_file": "error"}
    cases = [({"classes": ["dog", "kat"]}, ["dataset.classes", "no class 'kat'", "did you mean 'cat'",
                                            "its classes: cat, dog"]),
             ({"samples_per_class": 4}, ["dataset.samples_per_class: 4", "class 'cat' has only 3 pictures in"])]
    for extra, fragments in cases:
        config = tiny_config(dataset={**base, **extra})
        result = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
        assert_user_error(result, *fragments)
        assert "cannot be read" not in result.stderr
        assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpeg").is_dir(), reason="../shared/data/cifar10-jpeg is absent")
def test_cifar10_cats_and_dogs_from_the_jpeg_tree_give_1000_training_and_2000_test_pictures():
    data_dir = str(SHARED_DATA / "cifar10-jpeg")
    eight = ["airplane", "automobile", "bird", "deer", "frog", "horse", "ship", "truck"]
    experiment = validate_experiment(tiny_config(dataset={"name": "cifar10", "data_dir": data_dir,
                                                          "classes": eight}), "test")
    assert describe(experiment.dataset) == ((32, 32, 3), eight)
    experiment = validate_experiment(tiny_config(dataset={"name": "cifar10", "data_dir": data_dir,
                                                          "classes": ["cat", "dog"], "samples_per_class": 500}), "test")
    splits = load_splits(experiment)  # checks the 12,000 cat and dog JPEGs only (about 3 s), decodes none for training
    assert splits.info.class_names == ["cat", "dog"]
    assert splits.info.sizes == {"train": 1000, "test": 2000}
    for name, each in (("train", 500), ("test", 1000)):
        part = splits.examples[name]
        folders = [Path(p).parent.name for p in part.paths]
        assert folders.count("cat") == each and folders.count("dog") == each
        assert part.labels.tolist() == [["cat", "dog"].index(folder) for folder in folders]


def test_a_class_with_exactly_samples_per_class_pictures_gives_all_of_them():
    from cnnrun.data.examples import ArrayExamples
    from cnnrun.data.subsets import per_class_sample

    labels = np.array([0, 1, 0, 0, 1, 0, 1, 0])  # class 0: 5 pictures, class 1: exactly 3 (rows 1, 4, 6)
    train = ArrayExamples(np.arange(8, dtype=np.uint8).reshape(8, 1, 1, 1), labels)
    picked = per_class_sample(train, 3, seed=3, class_names=["a", "b"])
    assert np.bincount(picked.labels).tolist() == [3, 3]
    assert picked.images.ravel()[picked.labels == 1].tolist() == [1, 4, 6]


def test_the_subset_of_arrays_is_drawn_from_a_stream_of_its_own_so_a_resumed_run_recomputes_it():
    from cnnrun.data.examples import ArrayExamples
    from cnnrun.data.subsets import per_class_sample

    labels = np.arange(20) % 2
    train = ArrayExamples(np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1), labels)
    picked = per_class_sample(train, 3, seed=3, class_names=["a", "b"]).images.ravel().tolist()
    # the recorded draw: NumPy's generator seeded [seed, 14] (14: the subset's own stream), class by class, sorted
    rng = np.random.default_rng([3, 14])
    expected = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 3, replace=False) for c in (0, 1)]))
    assert picked == expected.tolist()
    # not the draw of the plain seed, which the seed's other uses share
    plain = np.random.default_rng(3)
    assert picked != np.sort(np.concatenate([plain.choice(np.flatnonzero(labels == c), 3, replace=False)
                                             for c in (0, 1)])).tolist()


def test_test_labels_past_the_training_classes_are_dropped_when_classes_are_chosen():
    from cnnrun.data.examples import ArrayExamples, RawData
    from cnnrun.data.subsets import only_classes

    def filled(count: int) -> np.ndarray:  # picture i filled with i
        return np.arange(count, dtype=np.uint8).reshape(count, 1, 1, 1)

    # three training classes; the test split also has label 3, a class the training data lacks
    raw = RawData(ArrayExamples(filled(6), np.array([0, 1, 2, 0, 1, 2])),
                  ArrayExamples(filled(5), np.array([0, 3, 2, 3, 1])), ["a", "b", "c"])
    chosen = only_classes(raw, ["c", "a"])
    assert chosen.test.images.ravel().tolist() == [0, 2] and chosen.test.labels.tolist() == [1, 0]  # a → 1, c → 0
    assert chosen.train.images.ravel().tolist() == [0, 2, 3, 5] and chosen.train.labels.tolist() == [1, 0, 1, 0]


def test_an_image_folder_with_exactly_samples_per_class_pictures_loads(tmp_path):
    from cnnrun.data.image_folder import read_folder_tree

    write_folder(tmp_path / "pics", {"cat": 2, "dog": 2})
    raw = read_folder_tree(tmp_path / "pics", (8, 8), "RGB", "skip", "dataset.path", seed=0, samples_per_class=2)
    assert np.bincount(raw.train.labels).tolist() == [2, 2]
