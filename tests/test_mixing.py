"""Keras 3's augmentations as config keys: MixUp and CutMix blend labels as they blend pictures, RandAugment,
AugMix, RandomErasing and colour jitter are Keras' own layers with the config's arguments."""

import json

import keras
import numpy as np
import pytest

from cnnrun.config import AugmentationConfig, validate_experiment
from cnnrun.data import build_augmenter, load_splits
from cnnrun.errors import UserError
from tests.conftest import only_run, run_here, tiny_config

CLASSES = 4
SIDE = 8


@pytest.fixture
def noise_npz(tmp_path):
    """64 pictures of random colour noise in 4 classes: two pictures almost never share a pixel's three values."""
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.npz"
    np.savez(path, x_train=rng.integers(0, 256, (64, SIDE, SIDE, 3), dtype=np.uint8),
             y_train=np.arange(64) % CLASSES)
    return path


def _experiment(npz, **augmentation):
    config = tiny_config(dataset={"name": "npz", "path": str(npz), "label_mode": "sparse"},
                         train={"epochs": 1, "batch_size": 16})
    if augmentation:
        config["augmentation"] = {"placement": "pipeline", **augmentation}
    return validate_experiment(config, "test.yaml")


def _first_batches(npz, count: int = 1, **augmentation) -> list[tuple[np.ndarray, np.ndarray]]:
    stream = load_splits(_experiment(npz, **augmentation)).train
    return [(np.asarray(x), np.asarray(y)) for x, y in stream.take(count)]


def _partner(mixed: np.ndarray, batch: np.ndarray, i: int) -> tuple[int, float]:
    """The picture j of `batch` and the weight w with mixed = w·batch[i] + (1 − w)·batch[j], by least squares."""
    best = None
    for j in range(len(batch)):
        if j == i:
            continue
        d = batch[i] - batch[j]
        w = float(np.sum((mixed - batch[j]) * d) / np.sum(d * d))
        error = float(np.abs(w * batch[i] + (1 - w) * batch[j] - mixed).max())
        if best is None or error < best[2]:
            best = (j, w, error)
    j, w, error = best
    if np.abs(mixed - batch[i]).max() < 1e-5:  # blended with itself (or a weight of 1)
        return i, 1.0
    assert error < 1e-4, f"picture {i} is no blend of two pictures of its batch"
    return j, w


def test_mixup_labels_are_blended_by_the_weights_the_pictures_were(noise_npz):
    ((plain, labels),) = _first_batches(noise_npz)
    ((mixed, mixed_labels),) = _first_batches(noise_npz, mixup=0.4)
    one_hot = np.eye(CLASSES)[labels]
    assert mixed_labels.shape == (16, CLASSES)  # sparse labels are trained one-hot
    blended = 0
    for i in range(len(plain)):
        j, w = _partner(mixed[i], plain, i)
        np.testing.assert_allclose(mixed_labels[i], w * one_hot[i] + (1 - w) * one_hot[j], atol=1e-5)
        blended += 0.01 < w < 0.99
    assert blended >= 8  # Beta(0.4, 0.4) leaves few pictures whole


def test_cutmix_labels_share_the_pasted_area(noise_npz):
    ((plain, labels),) = _first_batches(noise_npz)
    ((mixed, mixed_labels),) = _first_batches(noise_npz, cutmix=1.0)
    one_hot = np.eye(CLASSES)[labels]
    pasted_somewhere = 0
    for i in range(len(plain)):
        own = np.all(mixed[i] == plain[i], axis=-1)
        if own.all():
            np.testing.assert_allclose(mixed_labels[i], one_hot[i], atol=1e-6)
            continue
        # the pasted pixels all come from one other picture of the batch: find it, count them
        (j,) = [j for j in range(len(plain)) if j != i and np.all(mixed[i][~own] == plain[j][~own])]
        assert np.all(own | np.all(mixed[i] == plain[j], axis=-1))
        share = 1 - own.mean()
        np.testing.assert_allclose(mixed_labels[i], (1 - share) * one_hot[i] + share * one_hot[j], atol=1e-5)
        pasted_somewhere += 1
    assert pasted_somewhere >= 8


def test_with_both_each_batch_gets_one_and_validation_stays_whole(noise_npz):
    experiment = _experiment(noise_npz, mixup=0.4, cutmix=1.0)
    splits = load_splits(experiment)
    plain = load_splits(_experiment(noise_npz))
    kinds = set()
    for (mixed, _), (whole, _) in zip(splits.train.take(8), plain.train.take(8), strict=True):
        mixed, whole = np.asarray(mixed), np.asarray(whole)
        every_pixel_is_some_picture_s = all(
            np.any([np.all(mixed[i] == whole[j], axis=-1) for j in range(len(whole))], axis=0).all()
            for i in range(len(whole)))
        kinds.add("cutmix" if every_pixel_is_some_picture_s else "mixup")
    assert kinds == {"cutmix", "mixup"}
    assert splits.info.label_mode == "categorical"


def test_keras_layers_take_the_config_s_arguments():
    rng = np.random.default_rng(1)
    batch = rng.uniform(0, 255, (6, 16, 16, 3)).astype("float32")
    seed = 42
    own = build_augmenter(AugmentationConfig(rand_augment={"num_ops": 3, "factor": 0.7}), seed)
    keras_own = keras.layers.RandAugment(value_range=(0, 255), num_ops=3, factor=0.7, seed=seed + 6)
    np.testing.assert_allclose(own(batch, training=True), keras_own(batch, training=True), atol=1e-3)
    erased = np.asarray(build_augmenter(AugmentationConfig(random_erasing={"probability": 1.0}), seed)(
        batch, training=True))
    for picture, before in zip(erased, batch, strict=True):
        changed = np.any(picture != before, axis=-1)
        assert changed.any() and np.all(picture[changed] == 0)  # a rectangle of the value the model sees as 0
    kept = build_augmenter(AugmentationConfig(random_erasing={"probability": 0.0}), seed)(batch, training=True)
    np.testing.assert_array_equal(kept, batch)
    jitter = build_augmenter(AugmentationConfig(color_jitter={"hue": 0.2}, aug_mix=True), seed)
    assert [type(layer).__name__ for layer in jitter.layers] == ["RandomColorJitter", "AugMix"]
    keras_jitter = keras.layers.RandomColorJitter(value_range=(0, 255), hue_factor=0.2, seed=seed + 5)
    assert {**jitter.layers[0].get_config(), "name": "j"} == {**keras_jitter.get_config(), "name": "j"}
    np.testing.assert_array_equal(jitter(batch, training=False), batch)
    aug_mix = {"num_chains": 2, "chain_depth": 2, "factor": 0.5, "alpha": 0.3}
    mixed = build_augmenter(AugmentationConfig(aug_mix=aug_mix), seed)
    keras_mixed = keras.layers.AugMix(value_range=(0, 255), seed=seed + 7, **aug_mix)
    # Keras' AugMix draws differently each call whatever its seed: its arguments are compared, not its pictures
    assert {**mixed.layers[0].get_config(), "name": "aug_mix"} == {**keras_mixed.get_config(), "name": "aug_mix"}


@pytest.mark.parametrize("change, words", [
    ({"compile": {"optimizer": "adam", "metrics": ["sparse_categorical_accuracy"]}},
     "compile.metrics: sparse_categorical_accuracy takes class numbers"),
    ({"train": {"epochs": 1, "phases": [{"epochs": 1, "trainable": "none", "cache_features": 2}]}},
     "train.phases.0.cache_features: augmentation.mixup/cutmix blend pictures"),
    ({"augmentation": {"random_erasing": {"scale": [0.5, 0.2]}}}, "low ≤ high"),
    ({"augmentation": {"cutmix": 2.0}}, "augmentation.cutmix.alpha"),
])
def test_mixes_that_cannot_work_are_one_line_before_data_loads(change, words):
    config = tiny_config(augmentation={"mixup": True})
    config["dataset"]["label_mode"] = "sparse"
    config.update(change)
    with pytest.raises(UserError, match=words.replace(".", r"\.")):
        validate_experiment(config, "test.yaml")


@pytest.mark.slow
def test_train_with_mixup_and_cutmix_on_sparse_labels_then_evaluate(tmp_path, write_config):
    config = tiny_config(augmentation={"mixup": 0.2, "cutmix": True},
                         train={"epochs": 1, "batch_size": 16}, output={"dir": str(tmp_path / "runs"),
                                                                          "plots": False, "report": False})
    config["dataset"]["label_mode"] = "sparse"
    trained = run_here("train", write_config(config))
    assert trained.returncode == 0, trained.stderr
    run = only_run(tmp_path / "runs")
    assert json.loads((run / "dataset.json").read_text())["label_mode"] == "categorical"
    evaluated = run_here("evaluate", run)
    assert evaluated.returncode == 0, evaluated.stderr
    wrong = run_here("train", write_config({**config, "compile": {"optimizer": "adam", "loss":
                                                                    "sparse_categorical_crossentropy"}}))
    assert wrong.returncode == 2 and "blend the labels into one-hot shares" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def test_data_show_draws_a_mixed_batch_and_preview_says_where(noise_npz, tmp_path, write_config):
    from PIL import Image

    from cnnrun.data.samples import shares, show_data
    from cnnrun.teach.augment import augment_preview

    assert shares(np.array([0.62, 0.0, 0.38]), ["cat", "dog", "ship"]) == "cat .62 · ship .38"
    assert shares(np.array([0.0, 1.0, 0.0]), ["cat", "dog", "ship"]) == "dog 1.00"
    shown = show_data(_experiment(noise_npz, cutmix=True), per_class=2, out=tmp_path / "show")
    assert [path.name for path in shown.files] == ["samples.png", "samples_mixed.png", "class_counts.png"]
    picture = tmp_path / "one.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(picture)
    with pytest.raises(UserError, match="blend the pictures of a batch.*cnnrun data show"):
        augment_preview(picture, write_config(tiny_config(augmentation={"mixup": True})), count=2)
