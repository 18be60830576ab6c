"""The `dataset:` section: one model per kind of data, each with its own keys, paths recorded absolute."""

import os

import numpy as np
import pytest

from cnnrun.config import experiment_to_yaml, load_experiment
from cnnrun.errors import UserError
from tests.conftest import tiny_config

EVERY_KIND = {
    "shapes": {"name": "shapes", "image_size": 16, "channels": 3, "num_classes": 4, "num_samples": 50,
               "test_samples": 10, "validation_split": 0.2},
    "mnist": {"name": "mnist", "data_dir": "/data/mnist", "holdout_first": 100},
    "cifar10": {"name": "cifar10", "data_dir": "/data/cifar", "cache": "disk", "normalize": "standardize"},
    "npz": {"name": "npz", "path": "/data/mine.npz", "test_split": 0.1, "label_mode": "sparse"},
    "image_folder": {"name": "image_folder", "path": "/data/pics", "image_size": [24, 32], "color_mode": "grayscale",
                     "cache": "none", "on_bad_file": "error"},
}


def load_dataset(write_config, dataset: dict, name: str = "experiment.yaml"):
    return load_experiment(write_config(tiny_config(dataset=dataset), name)).dataset


def error_for(write_config, dataset: dict) -> str:
    path = write_config(tiny_config(dataset=dataset))
    with pytest.raises(UserError) as caught:
        load_experiment(path)
    return str(caught.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_each_kind_keeps_every_key_it_takes(write_config, kind):
    dataset = load_dataset(write_config, EVERY_KIND[kind])
    for key, value in EVERY_KIND[kind].items():
        assert getattr(dataset, key) == (tuple(value) if isinstance(value, list) else value), key


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_a_runs_config_yaml_loads_back_for_each_kind(write_config, kind):
    experiment = load_experiment(write_config(tiny_config(dataset=EVERY_KIND[kind])))
    text = experiment_to_yaml(experiment)
    assert load_experiment(write_config(text, "config.yaml")) == experiment


@pytest.mark.parametrize("dataset, message", [
    ({"name": "shapes", "color_mode": "rgb"},
     "unknown key 'dataset.color_mode' (it is for the image_folder and csv datasets); dataset (name: shapes) takes: "
     "name, validation_split, holdout_first, test_split, normalize, label_mode, classes, samples_per_class, "
     "sampling, fold, image_size, channels, num_classes, num_samples, test_samples"),
    ({"channels": 3, "data_dir": "/data"},  # no name: the shapes set
     "unknown key 'dataset.data_dir' (it is for the fashion_mnist, mnist, cifar10 and cifar100 datasets); "
     "dataset (name: shapes) takes:"),
    ({"name": "npz", "path": "x.npz", "channels": 3},
     "unknown key 'dataset.channels' (it is for the shapes dataset); dataset (name: npz) takes: name, "
     "validation_split, holdout_first, test_split, normalize, label_mode, classes, samples_per_class, sampling, "
     "fold, path"),
    ({"name": "mnist", "path": "x.npz"},
     "unknown key 'dataset.path' (it is for the npz, image_folder and csv datasets); dataset (name: mnist) "
     "takes:"),
    ({"name": "image_folder", "path": "pics", "on_bad_fiel": "skip"},
     "unknown key 'dataset.on_bad_fiel' (did you mean 'on_bad_file'?)"),
    ({"name": "npz"}, "dataset.path: required key is missing"),
    ({"name": "imagenett"}, "dataset.name: unknown dataset 'imagenett'; known: fashion_mnist, mnist, cifar10, "
                            "cifar100, shapes, npz, image_folder"),
    ({"name": "mnist", "validation_split": 0.5, "holdout_first": 10}, "either validation_split or holdout_first"),
    ({"name": "shapes", "image_size": [16, 16]}, "dataset.image_size"),
    ({"name": "image_folder", "path": "pics", "image_size": [7, 32]}, "sides from 8 to 1024"),
])
def test_a_key_a_kind_does_not_take_is_one_line_saying_what_it_takes(write_config, dataset, message):
    assert message in error_for(write_config, dataset)


def test_a_dataset_without_name_is_the_shapes_set(write_config):
    assert load_dataset(write_config, {"num_samples": 40}).name == "shapes"


@pytest.mark.parametrize("size", [8, 10, 12])
def test_shapes_refuses_sizes_its_generator_cannot_draw(write_config, size):
    assert "13 to 1024 pixels" in error_for(write_config, {"name": "shapes", "image_size": size})


def test_the_smallest_shapes_size_draws_every_shape_and_one_less_does_not():
    from cnnrun.data.shapes import make_shapes

    for seed in range(5):
        images, _, _ = make_shapes(100, image_size=13, num_classes=4, seed=seed)
        assert images.shape == (100, 13, 13, 1)
    with pytest.raises(ValueError):  # the generator itself: the schema's bound is what it needs
        for seed in range(5):
            make_shapes(100, image_size=12, num_classes=4, seed=seed)


def test_relative_paths_are_recorded_absolute_and_read_back_from_anywhere(write_config, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    npz = load_experiment(write_config(tiny_config(dataset={"name": "npz", "path": "data/mine.npz"})))
    assert npz.dataset.path == str(tmp_path / "work" / "data" / "mine.npz")
    keras = load_dataset(write_config, {"name": "fashion_mnist", "data_dir": "../shared/fashion"}, "k.yaml")
    assert keras.data_dir == str(tmp_path / "shared" / "fashion")

    run_config = write_config(experiment_to_yaml(npz), "config.yaml")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_experiment(run_config).dataset.path == str(tmp_path / "work" / "data" / "mine.npz")


def test_a_home_relative_path_is_expanded(write_config):
    dataset = load_dataset(write_config, {"name": "image_folder", "path": "~/pictures"})
    assert dataset.path == os.path.join(os.path.expanduser("~"), "pictures")


def test_what_the_data_layer_reads_is_there_for_every_kind(write_config, tmp_path):
    from cnnrun.data.sources import describe

    np.savez(tmp_path / "mine.npz", x_train=np.zeros((6, 8, 8, 1), np.uint8), y_train=np.array([0, 1, 2] * 2))
    shapes = load_experiment(write_config(tiny_config(dataset=EVERY_KIND["shapes"]), "s.yaml"))
    npz = load_experiment(write_config(tiny_config(dataset={"name": "npz", "path": str(tmp_path / "mine.npz")}),
                                       "n.yaml"))
    mnist = load_experiment(write_config(tiny_config(dataset={"name": "mnist"}), "m.yaml"))
    assert describe(shapes.dataset) == ((16, 16, 3), ["circle", "square", "triangle", "cross"])
    assert describe(npz.dataset)[0] == (8, 8, 1)
    assert describe(mnist.dataset) == ((28, 28, 1), [str(d) for d in range(10)])
    assert (shapes.has_validation, npz.has_validation, mnist.has_validation) == (True, False, False)


OLD_RUN_DATASET = {  # a shapes run's config.yaml as cnnrun wrote it before each kind had its own keys
    "name": "shapes", "data_dir": None, "path": None, "validation_split": 0.25, "holdout_first": None,
    "test_split": None, "normalize": "rescale", "label_mode": "categorical", "image_size": 16, "color_mode": "rgb",
    "cache": "auto", "on_bad_file": "skip", "channels": 1, "num_classes": 3, "num_samples": 120, "test_samples": 40,
}


def test_a_run_folder_written_before_the_dataset_kinds_still_opens(write_config):
    from cnnrun.config import load_saved_experiment

    path = write_config(tiny_config(dataset=OLD_RUN_DATASET), "config.yaml")
    with pytest.raises(UserError, match="unknown key 'dataset.data_dir'"):
        load_experiment(path)  # a user's config with another kind's key is refused
    dataset = load_saved_experiment(path).dataset
    assert (dataset.name, dataset.image_size, dataset.num_samples) == ("shapes", 16, 120)
    assert dataset.validation_split == 0.25
