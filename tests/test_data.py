"""Datasets: shapes, splits, normalisation statistics, npz arrays and the real Fashion-MNIST copy."""

import numpy as np
import pytest

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.data.shapes import make_shapes
from cnnrun.data.sources import load_raw
from cnnrun.errors import UserError
from tests.conftest import SHARED_DATA, tiny_config


def test_shapes_are_seeded_and_balanced():
    x1, y1, names = make_shapes(40, image_size=20, channels=3, num_classes=4, seed=5)
    x2, y2, _ = make_shapes(40, image_size=20, channels=3, num_classes=4, seed=5)
    assert x1.shape == (40, 20, 20, 3) and x1.dtype == np.uint8
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert names == ["circle", "square", "triangle", "cross"]
    assert np.bincount(y1).tolist() == [10, 10, 10, 10]


def _splits(**dataset):
    experiment = validate_experiment(tiny_config(dataset={"name": "shapes", "image_size": 16, "num_samples": 100,
                                                          "test_samples": 20, **dataset}), "test")
    return load_splits(experiment)


def test_validation_split_takes_the_last_part_as_keras_fit():
    splits = _splits(validation_split=0.2)
    assert splits.info.sizes == {"train": 80, "validation": 20, "test": 20}


def test_holdout_first_and_standardize_use_training_split_only():
    splits = _splits(holdout_first=30, normalize="standardize")
    raw = load_raw(validate_experiment(tiny_config(dataset={"name": "shapes", "image_size": 16, "num_samples": 100,
                                                            "test_samples": 20}), "test").dataset, seed=3)
    train_part = raw.train.images[30:].astype(np.float64)
    assert splits.info.sizes["train"] == 70
    assert splits.info.mean == pytest.approx(train_part.mean())
    assert splits.info.std == pytest.approx(train_part.std())
    images, labels = next(iter(splits.validation))
    expected = (raw.train.images[:16].astype(np.float32) - splits.info.mean) / (splits.info.std + 1e-7)
    np.testing.assert_allclose(images.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert labels.shape == (16, 3)  # one-hot


def test_both_validation_settings_is_an_error():
    with pytest.raises(UserError, match="either validation_split or holdout_first"):
        _splits(validation_split=0.2, holdout_first=10)


def test_npz_dataset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=rng.integers(0, 255, (30, 12, 12), dtype=np.uint8), y_train=np.arange(30) % 3,
             x_test=rng.integers(0, 255, (9, 12, 12), dtype=np.uint8), y_test=np.arange(9) % 3)
    experiment = validate_experiment(tiny_config(dataset={"name": "npz", "path": str(path),
                                                          "label_mode": "sparse"}), "test")
    splits = load_splits(experiment)
    assert splits.info.input_shape == [12, 12, 1]
    assert splits.info.class_names == ["0", "1", "2"]
    images, labels = next(iter(splits.test))
    assert images.shape == (9, 12, 12, 1) and float(images.numpy().max()) <= 1.0
    assert labels.numpy().tolist() == [0, 1, 2] * 3


@pytest.mark.skipif(not (SHARED_DATA / "fashion-mnist").is_dir(), reason="../shared/data/fashion-mnist is absent")
def test_fashion_mnist_from_a_local_copy():
    experiment = validate_experiment(tiny_config(dataset={"name": "fashion_mnist", "validation_split": 0.3,
                                                          "data_dir": str(SHARED_DATA / "fashion-mnist")}), "test")
    raw = load_raw(experiment.dataset, seed=0)
    assert raw.train.images.shape == (60000, 28, 28, 1) and raw.test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(raw.train.labels).tolist() == [6000] * 10
    assert raw.class_names[9] == "Ankle boot"
    splits = load_splits(experiment)
    assert splits.info.sizes == {"train": 42000, "validation": 18000, "test": 10000}


def test_image_folder_with_its_own_splits(tmp_path):
    from PIL import Image

    x, y, names = make_shapes(24, image_size=20, channels=3, num_classes=2, seed=4)
    for split, rows in (("train", range(0, 16)), ("validation", range(16, 20)), ("test", range(20, 24))):
        for i in rows:
            folder = tmp_path / "pics" / split / names[y[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    (tmp_path / "pics" / "train" / "circle" / "readme.txt").write_text("ignored: not an image suffix")
    experiment = validate_experiment(tiny_config(dataset={
        "name": "image_folder", "path": str(tmp_path / "pics"), "image_size": [12, 10], "label_mode": "binary"}),
        "test")
    assert experiment.has_validation
    splits = load_splits(experiment)
    assert splits.info.class_names == ["circle", "square"]
    assert splits.info.sizes == {"train": 16, "validation": 4, "test": 4}
    images, labels = next(iter(splits.test))
    assert images.shape == (4, 12, 10, 3) and labels.shape == (4, 1)


def test_folder_tree_order_is_seeded_so_validation_holds_every_class(tmp_path):
    from PIL import Image

    x, y, names = make_shapes(40, image_size=16, channels=3, num_classes=2, seed=8)
    for i in range(40):
        folder = tmp_path / "pics" / names[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i:02d}.png")
    config = tiny_config(dataset={"name": "image_folder", "path": str(tmp_path / "pics"), "image_size": 16,
                                  "validation_split": 0.25, "label_mode": "sparse"})
    splits = load_splits(validate_experiment(config, "test"))
    train, validation = splits.examples["train"], splits.examples["validation"]
    assert set(validation.labels.tolist()) == {0, 1}  # a class-by-class listing would give one class only
    assert len(train) + len(validation) == 40
    assert not set(train.paths) & set(validation.paths)  # no image in both splits
    again = load_splits(validate_experiment(config, "test"))
    assert again.examples["validation"].paths == validation.paths  # the same seed, the same split


def test_every_dataset_kind_of_the_config_union_has_one_source_record():
    """A new kind is one config class and one record: the union and the table name the same classes."""
    import typing

    from cnnrun.config.dataset import DatasetConfig
    from cnnrun.data.sources import SOURCES

    union = typing.get_args(typing.get_args(DatasetConfig)[0])
    assert set(union) == set(SOURCES)
    assert len(union) == 5


def test_the_training_stream_is_built_after_keras_was_seeded_with_0():
    # TensorFlow's global seed 0 with a tensor op seed (each epoch's shuffle) fails its (0, 0) check; a run with
    # `seed: 0` never met it (seed_everything), but a process seeded with 0 before `load_splits` did
    import keras
    from tensorflow.python.eager import context

    keras.utils.set_random_seed(0)
    splits = load_splits(validate_experiment(tiny_config(), "tiny.yaml"))
    x, _ = next(iter(splits.train))
    assert x.shape[0] == 16 and context.global_seed() == 2**31 - 2


def test_autograph_rewrites_none_of_the_pipelines_functions(tmp_path):
    """The pipeline's functions go to tf.data as written (`cnnrun.data.traced`): after a training batch of
    decoded, flipped, augmented and mixed pictures and a validation batch, AutoGraph's cache of converted
    functions holds no code of cnnrun's (it holds each function it rewrote, keyed by its code object)."""
    import tensorflow as tf
    from PIL import Image
    from tensorflow.python.autograph.impl import api

    x, y, names = make_shapes(12, image_size=16, channels=3, num_classes=2, seed=4)
    for i in range(12):
        folder = tmp_path / "pics" / ("train" if i < 8 else "validation") / names[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i}.png")
    augmentation = {"horizontal_flip": "alternate", "rotation_range": 10, "mixup": {"alpha": 0.2},
                    "cutmix": {"alpha": 1.0}}
    config = tiny_config(dataset={"name": "image_folder", "path": str(tmp_path / "pics"), "image_size": 16},
                         augmentation=augmentation, train={"epochs": 2, "batch_size": 4})
    api._TRANSPILER._cache._cache.clear()  # forget what earlier tests in this process had converted
    splits = load_splits(validate_experiment(config, "test"))
    images, labels = next(iter(splits.train))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 2)
    assert next(iter(splits.validation))[0].shape == (4, 16, 16, 3)
    tf.data.Dataset.range(2).map(lambda v: v + 1)  # a function as tf.data gets it by default: rewritten
    converted = [code.co_filename for code in list(api._TRANSPILER._cache._cache)]
    assert __file__ in converted  # the cache is where this test looks
    assert not [name for name in converted if "/cnnrun/" in name], converted


def test_an_npz_of_rgba_pictures_keeps_its_four_channels(tmp_path):
    from cnnrun.data import describe

    x = np.random.default_rng(0).integers(0, 256, (6, 5, 5, 4), dtype=np.uint8)
    np.savez(tmp_path / "rgba.npz", x_train=x, y_train=np.array([0, 1, 2, 0, 1, 2]))
    experiment = validate_experiment(tiny_config(dataset={"name": "npz", "path": str(tmp_path / "rgba.npz")}), "test")
    assert describe(experiment.dataset) == ((5, 5, 4), ["0", "1", "2"])
    assert np.array_equal(load_raw(experiment.dataset, seed=0).train.images, x)


def test_cifar10_python_batches_in_a_local_copy_read_as_height_width_channels(tmp_path):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pictures = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        pictures[name] = x
        # CIFAR's layout: a row of 3072 bytes per picture, the red plane, then green, then blue, each row by row
        rows = np.stack([np.concatenate([x[n, :, :, c].ravel() for c in range(3)]) for n in range(2)])
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": [1, 7]}, f)
    experiment = validate_experiment(tiny_config(dataset={"name": "cifar10", "data_dir": str(tmp_path)}), "test")
    raw = load_raw(experiment.dataset, seed=0)
    expected = np.concatenate([pictures[f"data_batch_{i}"] for i in range(1, 6)])
    assert np.array_equal(raw.train.images, expected) and raw.train.labels.tolist() == [1, 7] * 5
    assert np.array_equal(raw.test.images, pictures["test_batch"]) and raw.class_names[7] == "horse"
