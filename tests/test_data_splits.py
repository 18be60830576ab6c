"""`Splits`: built once and never patched, its training stream (cache, epochs, augmentation), and the files of each
split recorded and reused."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.data.shapes import make_shapes
from cnnrun.errors import UserError
from tests.conftest import tiny_config


def photo_folder(root: Path, count: int = 24, start: int = 0, size: int = 20) -> Path:
    """Class folders of JPEG photos (shapes with noise), `count` of them numbered from `start`."""
    x, y, names = make_shapes(start + count, image_size=size, channels=3, num_classes=2, seed=11)
    for i in range(start, start + count):
        folder = root / names[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i:03d}.jpg", quality=95)
    return root


def folder_experiment(root: Path, train: dict | None = None, **dataset):
    config = tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 16,
                                  "label_mode": "sparse", **dataset})
    if train:
        config["train"] = {**config["train"], **train}
    return validate_experiment(config, "test")


def shapes_splits(**kwargs):
    return load_splits(validate_experiment(tiny_config(), "test"), **kwargs)


def batches(dataset, count: int) -> list[np.ndarray]:
    return [images.numpy() for images, _ in dataset.take(count)]


def test_splits_cannot_be_patched_after_they_are_built():
    splits = shapes_splits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        splits.train = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        splits.info.mean = 0.5
    with pytest.raises(TypeError):
        splits.examples["train"] = splits.examples["test"]


def test_with_pipelines_returns_new_splits_and_leaves_the_old_ones_whole():
    splits = shapes_splits()
    other = splits.with_pipelines(validation=splits.test)
    assert other.validation is splits.test and other.train is splits.train
    assert splits.validation is not splits.test  # the original is as it was
    with pytest.raises(TypeError, match="nothing"):
        splits.with_pipelines(nothing=None)


def test_the_distribution_fills_batches_into_new_splits_not_in_place():
    from cnnrun.devices.distribute import Placement

    splits = shapes_splits()  # 90 training examples: the last batch of 16 holds 10
    placement = Placement("tensorflow", "data_parallel", ["/cpu:0", "/cpu:1"], engine=object())
    fed = placement.feed(splits, 16)
    assert fed is not splits and fed.train is not splits.train
    sizes = [len(images) for images, _ in fed.train.take(splits.steps_per_epoch)]
    assert sizes == [16] * splits.steps_per_epoch  # the partial batch filled up
    assert [len(images) for images, _ in splits.train.take(splits.steps_per_epoch)][-1] == 90 % 16


def test_the_distribution_fills_the_validation_batches_too():
    from cnnrun.devices.distribute import Placement

    splits = shapes_splits()  # 30 validation examples: batches of 16 and 14
    placement = Placement("jax", "data_parallel", ["cpu:0", "cpu:1"], engine=object())
    fed = placement.feed(splits, 16)
    assert [len(images) for images, _ in splits.validation] == [16, 14]
    filled = list(fed.validation)
    assert [len(images) for images, _ in filled] == [16, 16]
    last = list(splits.validation)[1][0].numpy()
    # the 14 examples, then the first 2 again: index i % 14
    np.testing.assert_array_equal(filled[1][0].numpy(), last[np.arange(16) % 14])


def test_the_header_line_gives_each_replica_its_share_of_the_global_batch():
    from cnnrun.devices.distribute import Placement

    placement = Placement("tensorflow", "mirrored", ["/cpu:0", "/cpu:1"], engine=object())
    assert placement.describe(64) == ("MirroredStrategy: 2 replicas (/cpu:0, /cpu:1), 32 examples per replica of "
                                      "the global batch 64")  # 64 / 2 replicas


def test_augment_false_leaves_augmentation_to_the_caller():
    augmented = tiny_config(augmentation={"vertical_flip": True, "brightness_range": [0.5, 0.6]})
    plain = load_splits(validate_experiment(tiny_config(), "test"))
    without = load_splits(validate_experiment(augmented, "test"), augment=False)
    with_it = load_splits(validate_experiment(augmented, "test"), augment=True)
    for one, two in zip(batches(plain.train, 2), batches(without.train, 2), strict=True):
        np.testing.assert_array_equal(one, two)
    assert not np.allclose(batches(plain.train, 1)[0], batches(with_it.train, 1)[0])


def test_a_resumed_stream_gives_each_epoch_the_order_of_a_straight_run():
    straight = shapes_splits()
    steps = straight.steps_per_epoch
    second_epoch = batches(straight.train, 2 * steps)[steps:]
    for resumed in (straight.from_epoch(1), shapes_splits(initial_epoch=1)):
        for one, two in zip(second_epoch, batches(resumed.train, steps), strict=True):
            np.testing.assert_array_equal(one, two)


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["memory", "disk", "auto"])
def test_a_cached_folder_trains_its_second_epoch_from_the_cache_after_the_pictures_are_gone(tmp_path, cache):
    import keras

    from cnnrun.model.build import build_model
    from cnnrun.model.compiling import compile_model

    root = photo_folder(tmp_path / "photos", count=160, size=16)
    experiment = folder_experiment(root, cache=cache, train={"epochs": 2, "batch_size": 4})
    splits = load_splits(experiment)
    model = build_model(experiment, tuple(splits.info.input_shape), splits.info.num_classes)
    compile_model(model, experiment)

    class DeletePictures(keras.callbacks.Callback):
        """Delete every picture once the first batch is done: the shuffled first epoch has then read (and
        cached) all of them, and the pipeline cannot yet have read far into the second epoch."""

        def on_train_batch_end(self, batch, logs=None):
            for path in root.rglob("*.jpg"):
                path.unlink()

    history = model.fit(splits.train, epochs=2, steps_per_epoch=splits.steps_per_epoch,
                        callbacks=[DeletePictures()], shuffle=False, verbose=0)
    assert not list(root.rglob("*.jpg"))
    assert len(history.history["loss"]) == 2


def test_an_image_folder_records_the_files_of_each_split_relative_to_its_root(tmp_path):
    root = photo_folder(tmp_path / "photos")
    splits = load_splits(folder_experiment(root, test_split=0.25, validation_split=0.25))
    files = splits.files()
    assert files["root"] == str(root)
    assert {name: len(files[name]) for name in ("train", "validation", "test")} == {"train": 12, "validation": 6,
                                                                                   "test": 6}
    for name in ("train", "validation", "test"):
        assert [str(root / p) for p in files[name]] == splits.examples[name].paths  # relative, in stored order
    assert all(not Path(p).is_absolute() for p in files["train"])
    assert shapes_splits().files() is None  # arrays have no files


def test_recorded_splits_are_reused_though_pictures_were_added_since(tmp_path):
    root = photo_folder(tmp_path / "photos")
    experiment = folder_experiment(root, test_split=0.25, validation_split=0.25)
    first = load_splits(experiment)
    recorded = first.files()
    photo_folder(root, count=10, start=24)  # 10 more pictures
    drawn_again = load_splits(experiment)
    assert set(drawn_again.examples["test"].paths) != set(first.examples["test"].paths)  # what went wrong before
    again = load_splits(experiment, stored_files=recorded)
    for name in ("train", "validation", "test"):
        assert again.examples[name].paths == first.examples[name].paths
        np.testing.assert_array_equal(again.examples[name].labels, first.examples[name].labels)
    assert "10 new file(s) in" in " ".join(again.warnings) and "ignored" in " ".join(again.warnings)
    assert again.info.sizes == first.info.sizes


def test_recorded_files_that_are_gone_are_reported_and_an_emptied_split_is_an_error(tmp_path):
    root = photo_folder(tmp_path / "photos")
    experiment = folder_experiment(root, test_split=0.25)
    recorded = load_splits(experiment).files()
    gone = recorded["train"][:2]
    for relative in gone:
        (root / relative).unlink()
    again = load_splits(experiment, stored_files=recorded)
    assert len(again.examples["train"]) == len(recorded["train"]) - 2
    (warning,) = [line for line in again.warnings if "missing" in line]
    assert warning.startswith("2 file(s)") and gone[0] in warning
    for relative in recorded["test"]:
        (root / relative).unlink()
    with pytest.raises(UserError, match="test split"):
        load_splits(experiment, stored_files=recorded)


def test_a_splits_file_of_the_wrong_shape_is_one_line(tmp_path):
    root = photo_folder(tmp_path / "photos", count=8)
    with pytest.raises(UserError, match="splits.json: not a cnnrun splits file"):
        load_splits(folder_experiment(root), stored_files={"train": "all of them"})


@pytest.mark.slow
def test_evaluate_and_resume_see_the_runs_own_splits_after_pictures_were_added(tmp_path, write_config):
    import json

    from tests.conftest import run_here

    root = photo_folder(tmp_path / "photos")
    config = tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 16, "test_split": 0.25,
                                  "validation_split": 0.25}, train={"epochs": 1, "batch_size": 8})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (tmp_path / "out" / "tiny").iterdir()
    recorded = json.loads((run / "splits.json").read_text())
    assert len(recorded["test"]) == 6 and recorded["root"] == str(root)
    photo_folder(root, count=10, start=24)
    result = run_here("evaluate", run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 new file(s)" in result.stderr
    assert json.loads((run / "eval" / "best_test_metrics.json").read_text())["examples"] == 6
    result = run_here("resume", run, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 new file(s)" in result.stderr
