"""Bad input in a config file or on the command line, refused in one line naming the file and the key, before any
data is read (issue 21, B.4 and B.9): keys given twice, negative decay, ranges written backwards, vars that refer
to each other, pictures too small for the augmentation, an empty run name, a folder given as the config."""

import time

import pytest

from cnnrun.config import load_experiment
from cnnrun.config.expressions import resolve_variables
from cnnrun.errors import UserError
from tests.conftest import run_here, tiny_config
from tests.test_errors import assert_user_error


def user_error(path) -> str:
    with pytest.raises(UserError) as caught:
        load_experiment(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


# ---------------------------------------------------------------- YAML keys given twice


TWO_TRAIN_SECTIONS = """\
name: twice
model:
  layers: [Flatten, {Dense: {units: 3, activation: softmax}}]
train:
  epochs: 7
compile: {optimizer: adam}
train:
  batch_size: 8
"""


def test_a_section_given_twice_names_the_file_the_key_and_both_lines(write_config):
    path = write_config(TWO_TRAIN_SECTIONS)
    assert_user_error(run_here("inspect", path), f"{path}:7: key 'train' is given twice", "lines 4 and 7")
    assert_user_error(run_here("config", "show", path), "key 'train' is given twice")


def test_a_key_given_twice_deeper_down_is_refused_too(write_config):
    path = write_config("model:\n  layers: [Flatten, {Dense: {units: 3, units: 4}}]\n")
    assert "key 'units' is given twice in one mapping (lines 2 and 2)" in user_error(path)
    nested = write_config("model:\n  layers: [Flatten]\ntrain:\n  epochs: 2\n  batch_size: 4\n  epochs: 3\n", "n.yaml")
    assert user_error(nested).startswith(f"{nested}:6: key 'epochs' is given twice in one mapping (lines 4 and 6)")


def test_a_merge_may_override_the_keys_it_brings_and_set_values_are_checked_too(write_config):
    text = ("vars: &d {epochs: 2, batch_size: 4}\nmodel: {layers: [Flatten, {Dense: {units: 3}}]}\n"
            "train:\n  <<: *d\n  epochs: 5\n")
    experiment = load_experiment(write_config(text, "merged.yaml"))
    assert (experiment.train.epochs, experiment.train.batch_size) == (5, 4)
    with pytest.raises(UserError, match=r"--set train=\{epochs: 1, epochs: 2\}: key 'epochs' is given twice"):
        load_experiment(write_config(tiny_config(), "plain.yaml"), ["train={epochs: 1, epochs: 2}"])


# ---------------------------------------------------------------- values out of range


@pytest.mark.parametrize("optimizer, key", [
    ({"name": "adamw", "weight_decay": -1}, "compile.optimizer.weight_decay: a number ≥ 0"),
    ({"name": "sgd", "momentum": 1.5}, "compile.optimizer.momentum: a number from 0 to 1"),
    ({"name": "adam", "clipnorm": -0.1}, "compile.optimizer.clipnorm: a number ≥ 0"),
])
def test_a_negative_decay_or_a_moment_past_one_is_refused(write_config, optimizer, key):
    path = write_config(tiny_config(compile={"optimizer": optimizer}))
    assert user_error(path).startswith(f"{path}: {key}")


def test_a_phases_optimizer_is_checked_the_same_way(write_config):
    phases = [{"epochs": 1, "trainable": "none"},
              {"epochs": 1, "trainable": "all", "optimizer": {"name": "adamw", "weight_decay": -0.01}}]
    path = write_config(tiny_config(train={"phases": phases}))
    assert "train.phases.1.optimizer.weight_decay: a number ≥ 0" in user_error(path)


@pytest.mark.parametrize("words, message", [
    ({"brightness_range": [1.5, 0.5]}, "augmentation.brightness_range: [low, high] with low ≤ high, got [1.5, 0.5]"),
    ({"contrast_range": [1.2, 0.8]}, "augmentation.contrast_range: [low, high] with low ≤ high"),
    ({"brightness_range": [-0.5, 1.5]}, "augmentation.brightness_range: factors of at least 0"),
    ({"zoom_range": [1.2, 0.8]}, "augmentation.zoom_range: [low, high] with low ≤ high"),
    ({"zoom_range": [0, 1.2]}, "augmentation.zoom_range: zoom factors above 0"),
    ({"zoom_range": 1.5}, "augmentation.zoom_range: a number z from 0 to under 1"),
])
def test_augmentation_ranges_written_backwards_or_below_zero_are_refused(write_config, words, message):
    path = write_config(tiny_config(augmentation=words))
    assert user_error(path).startswith(f"{path}: {message}")


def test_ranges_in_order_are_kept(write_config):
    words = {"brightness_range": [0.8, 1.2], "contrast_range": [0.5, 0.5], "zoom_range": [0.9, 1.1]}
    augmentation = load_experiment(write_config(tiny_config(augmentation=words))).augmentation
    assert (augmentation.brightness_range, augmentation.contrast_range, augmentation.zoom_range) == \
        ((0.8, 1.2), (0.5, 0.5), (0.9, 1.1))


# ---------------------------------------------------------------- augmentation larger than the pictures


@pytest.mark.parametrize("dataset, words, message", [
    ({"name": "fashion_mnist"}, {"cutout": {"size": 100}},
     "augmentation.cutout.size: 100 is larger than the 28×28 pictures of fashion_mnist; the square would blank "
     "most of every picture: at most 28"),
    ({"name": "cifar10"}, {"random_crop": {"padding": 100}},
     "augmentation.random_crop.padding: 100 is as large as the 32×32 pictures of cifar10; the crop could shift "
     "the picture out of view: at most 31"),
    ({"name": "shapes", "image_size": 16}, {"cutout": {"size": 17}}, "at most 16"),
    ({"name": "image_folder", "path": "pets", "image_size": [24, 40]}, {"random_crop": {"padding": 24}},
     "24×40 pictures of the image folder"),
])
def test_a_cutout_or_crop_padding_larger_than_the_pictures_is_refused_before_any_data(write_config, dataset, words,
                                                                                      message):
    path = write_config(tiny_config(dataset=dataset, augmentation=words))
    assert_user_error(run_here("config", "show", path), f"{path}: ", message)


def test_a_cutout_as_large_as_the_pictures_and_a_padding_one_smaller_are_kept(write_config):
    words = {"cutout": {"size": 16}, "random_crop": {"padding": 15}}
    experiment = load_experiment(write_config(tiny_config(dataset={"name": "shapes", "image_size": 16},
                                                          augmentation=words)))
    assert (experiment.augmentation.cutout.size, experiment.augmentation.random_crop.padding) == (16, 15)


# ---------------------------------------------------------------- vars that refer to each other


def test_vars_that_refer_to_each_other_are_named_at_once(write_config):
    config = tiny_config()
    config["vars"] = {"a": "${b}", "b": "${a}"}
    config["model"]["layers"][0]["Conv2D"]["filters"] = "${a}"
    path = write_config(config)
    started = time.perf_counter()
    result = run_here("inspect", path)
    assert_user_error(result, f"{path}: vars: a and b refer to each other")
    assert time.perf_counter() - started < 5  # it used to build the model first (14 s, 830 MB)


@pytest.mark.parametrize("variables, message", [
    ({"a": "${a + 1}"}, "vars: a refers to itself"),
    ({"a": "${c * 2}", "b": 4, "c": "${d}", "d": "${a - 1}"},
     "vars: a, c and d refer to each other (a → c → d → a)"),
])
def test_a_var_that_refers_to_itself_or_a_longer_circle(variables, message):
    with pytest.raises(UserError) as caught:
        resolve_variables(variables)
    assert str(caught.value).startswith(message)


def test_a_var_may_use_other_vars_in_any_order(write_config):
    config = tiny_config()
    config["vars"] = {"filters": "${base * 2}", "name": "conv_${filters}", "base": 3,
                      "half": "${num_classes // 2}"}
    config["model"]["layers"][0]["Conv2D"].update(filters="${filters}", name="${name}")
    layers = load_experiment(write_config(config)).model.layers
    assert (layers[0]["Conv2D"]["filters"], layers[0]["Conv2D"]["name"]) == (6, "conv_6")
    assert resolve_variables({"half": "${num_classes // 2}"}) == {"half": "${num_classes // 2}"}  # for the model


# ---------------------------------------------------------------- the command line


def test_an_empty_run_name_is_refused_before_the_config_is_read(write_config, tmp_path):
    path = write_config(tiny_config())
    assert_user_error(run_here("train", path, "--name", "", "--output-dir", tmp_path / "out"),
                      "--name / name: one folder name, got ''")
    assert not (tmp_path / "out").exists()


def test_a_folder_given_as_the_config_says_it_is_a_folder(write_config, tmp_path):
    write_config(tiny_config(), "quick.yaml")
    assert_user_error(run_here("train", tmp_path), f"{tmp_path}: is a directory; give an experiment's YAML file",
                      "(it holds quick.yaml)")
