"""Bad input about the data (issue 21, B.4, B.9 and B.12): errors that name the config file, names in an image
folder that are no files, a download that cannot happen, an npz too small for its augmentation, contrast ranges
that mean what they say."""

import os

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import AugmentationConfig, validate_experiment
from cnnrun.data import build_augmenter, load_splits
from cnnrun.data.check import check_image_folder
from cnnrun.errors import UserError
from tests.conftest import run_here, tiny_config
from tests.test_errors import assert_user_error


def picture_folder(root, names=("cats", "dogs"), count: int = 4):
    """Class folders of small PNGs, each picture filled with its own gray value."""
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((12, 12, 3), 20 * k + i, np.uint8)).save(root / name / f"{i}.png")
    return root


# ---------------------------------------------------------------- every config error names the config file


@pytest.mark.parametrize("dataset, fragment", [
    ({"name": "shapes", "image_size": 16, "classes": ["circle", "hexagon"]}, "shapes has no class 'hexagon'"),
    ({"name": "cifar10", "classes": ["cat", "dgo"]}, "cifar10 has no class 'dgo' (did you mean 'dog'?)"),
])
def test_an_unknown_class_names_the_config_file(write_config, tmp_path, dataset, fragment):
    path = write_config(tiny_config(dataset=dataset))
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "out"), f"{path}: dataset.classes: ",
                      fragment)
    assert_user_error(run_here("inspect", path), f"{path}: dataset.classes: ", fragment)
    assert not (tmp_path / "out").exists()


def test_an_image_folders_unknown_class_and_its_data_errors_name_the_config_file(write_config, tmp_path):
    root = picture_folder(tmp_path / "pets")
    path = write_config(tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 12,
                                             "classes": ["cats", "mice"]}))
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "out"),
                      f"{path}: dataset.classes: the image folder {root} has no class 'mice'")
    experiment = validate_experiment(tiny_config(dataset={"name": "image_folder", "path": str(root),
                                                          "image_size": 12, "label_mode": "binary",
                                                          "classes": ["cats", "dogs"], "samples_per_class": 9}),
                                     "mine.yaml")
    with pytest.raises(UserError, match=r"^mine.yaml: dataset.samples_per_class: 9, but class 'cats' has only 4"):
        load_splits(experiment)


# ---------------------------------------------------------------- names in an image folder that are no files


def test_a_link_to_nothing_and_a_pipe_named_like_pictures_are_bad_files_with_their_reasons(tmp_path):
    root = picture_folder(tmp_path / "pets")
    (root / "cats" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    os.mkfifo(root / "dogs" / "pipe.png")  # opening it would wait for a writer for ever: it must not be opened
    (root / "dogs" / "album.jpg").mkdir()  # a folder named like a picture is a folder, not a bad file
    report = check_image_folder(root)
    reasons = {bad.path.name: bad.reason for bad in report.bad_files}
    assert reasons == {"gone.jpg": f"a symbolic link to a missing file ({tmp_path / 'deleted.jpg'})",
                       "pipe.png": "not a regular file: a named pipe (FIFO)"}
    assert report.num_images == 8
    experiment = validate_experiment(tiny_config(dataset={"name": "image_folder", "path": str(root),
                                                          "image_size": 12, "on_bad_file": "error"}), "pets.yaml")
    with pytest.raises(UserError, match=r"2 file\(s\) in .* cannot be read: .*gone.jpg: a symbolic link"):
        load_splits(experiment)
    skipped = load_splits(experiment.model_copy(update={"dataset": experiment.dataset.model_copy(
        update={"on_bad_file": "skip"})}))
    assert sorted(bad["path"] for bad in skipped.bad_files) == [str(root / "cats" / "gone.jpg"),
                                                                 str(root / "dogs" / "pipe.png")]
    assert "2 bad file(s) left out" in skipped.warnings[0]


def test_data_check_lists_them(tmp_path):
    root = picture_folder(tmp_path / "pets")
    (root / "cats" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    result = run_here("data", "check", root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gone.jpg" in result.stdout and "symbolic link to a missing file" in result.stdout


# ---------------------------------------------------------------- a download without network


def test_a_keras_dataset_that_cannot_be_downloaded_is_one_line_with_nothing_before_it(write_config, tmp_path,
                                                                                        offline):
    """An empty Keras cache and a proxy that refuses every connection: offline, as a new user's laptop on a train."""
    config = tiny_config(dataset={"name": "cifar10"}, model={"layers": ["Flatten", {"Dense": {
        "units": "${num_classes}", "activation": "softmax"}}]})
    path = write_config(config)
    result = run_here("train", path, "--output-dir", tmp_path / "out")
    assert result.stdout == "", result.stdout  # Keras' "Downloading data from …" was printed here
    assert_user_error(result, f"{path}: could not download cifar10", "set dataset.data_dir to it")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- augmentation and pictures


def test_an_npz_too_small_for_its_cutout_is_refused_once_its_arrays_are_read(write_config, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", x_train=rng.integers(0, 255, (40, 8, 10), np.uint8),
             y_train=np.arange(40) % 2)
    path = write_config(tiny_config(dataset={"name": "npz", "path": str(tmp_path / "tiny.npz")},
                                    augmentation={"cutout": {"size": 9}}))
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "out"),
                      f"{path}: augmentation.cutout.size: 9 is larger than the 8×10 pictures of npz", "at most 8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("low, high", [(0.5, 0.5), (0.6, 0.8), (0.5, 1.2), (1.2, 1.5)])
def test_contrast_factors_are_drawn_from_the_range_as_written(low, high):
    """Keras' RandomContrast sorts its two bounds: [0.5, 1.2] drew from [0.8, 1.5], and [0.6, 0.8] was refused."""
    x = np.random.default_rng(0).uniform(60, 190, (256, 6, 6, 1)).astype(np.float32)
    out = np.asarray(build_augmenter(AugmentationConfig(contrast_range=(low, high)), seed=1)(x, training=True))
    mean = x.mean(axis=(1, 2), keepdims=True)
    factors = ((out - mean) / (x - mean)).reshape(len(x), -1)
    unclipped = (out > 0).all(axis=(1, 2, 3)) & (out < 255).all(axis=(1, 2, 3))
    factor = np.median(factors, axis=1)[unclipped]  # one factor per picture: (out − mean) = f · (x − mean)
    assert factor.min() >= low - 1e-4 and factor.max() <= high + 1e-4
    assert factor.min() <= low + 0.1 * (high - low) + 1e-4 and factor.max() >= high - 0.1 * (high - low) - 1e-4
