"""`horizontal_flip: alternate`: every picture mirrored on every other epoch exactly, through the shuffle, for
arrays and for files streamed undecoded, and the same after a resume."""

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.errors import UserError
from tests.conftest import tiny_config

COUNT, BATCH, EPOCHS = 12, 4, 4


def _pictures() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (COUNT, 8, 9, 3), dtype=np.uint8)


def _experiment(dataset: dict, flip="alternate"):
    config = tiny_config(dataset={**dataset, "normalize": "none", "label_mode": "sparse"},
                         train={"epochs": EPOCHS, "batch_size": BATCH},
                         augmentation={"horizontal_flip": flip, "placement": "pipeline"})
    return validate_experiment(config, "t.yaml")


def _seen(splits, pictures: np.ndarray, epochs: int, first: int = 0) -> list[dict[int, bool]]:
    """Per epoch: each picture's place in `pictures` → whether it came mirrored."""
    steps = COUNT // BATCH
    batches = [np.asarray(x) for x, _ in splits.from_epoch(first).train.take(steps * epochs)]
    found = []
    for epoch in range(epochs):
        seen = {}
        for image in np.concatenate(batches[epoch * steps:(epoch + 1) * steps]):
            (i,) = [i for i in range(COUNT) if np.array_equal(image, pictures[i])
                    or np.array_equal(image, pictures[i][:, ::-1])]
            seen[i] = not np.array_equal(image, pictures[i])
        found.append(seen)
    return found


def _check_alternating(seen: list[dict[int, bool]]) -> None:
    assert all(sorted(epoch) == list(range(COUNT)) for epoch in seen)  # every picture once an epoch
    for i in range(COUNT):
        assert [seen[e][i] for e in range(len(seen))] == [seen[0][i] ^ bool(e % 2) for e in range(len(seen))]
    assert 2 <= sum(seen[0].values()) <= COUNT - 2  # the first epoch's flips are drawn at random


def test_arrays_alternate_through_the_shuffle_and_resume_alike(tmp_path):
    pictures = _pictures()
    np.savez(tmp_path / "p.npz", x_train=pictures, y_train=np.arange(COUNT) % 3)
    splits = load_splits(_experiment({"name": "npz", "path": str(tmp_path / "p.npz")}))
    order = np.asarray(splits.examples["train"].images)
    seen = _seen(splits, order, EPOCHS)
    _check_alternating(seen)
    assert _seen(splits, order, 2, first=2) == seen[2:]  # a run resumed at epoch 2 sees epochs 2 and 3 alike


def test_files_decoded_after_the_shuffle_alternate_too(tmp_path):
    pictures = _pictures()
    for i, picture in enumerate(pictures):
        folder = tmp_path / "pics" / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(folder / f"{i:02d}.png")  # PNG: the pixels come back exactly
    splits = load_splits(_experiment({"name": "image_folder", "path": str(tmp_path / "pics"), "image_size": [8, 9],
                                      "cache": "none"}))
    _check_alternating(_seen(splits, pictures, EPOCHS))


def test_the_per_picture_layers_leave_alternate_flips_to_the_pipeline():
    from cnnrun.config import AugmentationConfig
    from cnnrun.data import build_augmenter

    (affine,) = build_augmenter(AugmentationConfig(horizontal_flip="alternate", vertical_flip=True), seed=1).layers
    assert (affine.horizontal_flip, affine.vertical_flip) == (False, True)
    assert build_augmenter(AugmentationConfig(horizontal_flip="alternate"), seed=1) is None


def test_alternate_is_refused_where_it_cannot_be():
    with pytest.raises(UserError, match="horizontal_flip"):
        _experiment({"name": "shapes"}, flip="sometimes")
    config = tiny_config(augmentation={"horizontal_flip": "alternate"},
                         train={"epochs": 1, "phases": [{"epochs": 1, "trainable": "none", "cache_features": 2}]})
    with pytest.raises(UserError, match="horizontal_flip: alternate flips by epoch"):
        validate_experiment(config, "t.yaml")


def test_the_first_epoch_mirrors_exactly_the_pictures_whose_seeded_bit_is_set(tmp_path):
    import tensorflow as tf

    pictures = _pictures()
    np.savez(tmp_path / "p.npz", x_train=pictures, y_train=np.arange(COUNT) % 3)
    experiment = _experiment({"name": "npz", "path": str(tmp_path / "p.npz")})
    splits = load_splits(experiment)
    seen = _seen(splits, np.asarray(splits.examples["train"].images), 2)
    # picture i's bit (the module's docstring): a stateless uniform draw seeded (seed·104729 mod 2³¹, i) below 0.5;
    # mirrored in even epochs when set, in odd epochs when not
    bits = {i: bool(tf.random.stateless_uniform([], seed=tf.constant([experiment.seed * 104_729 % 2**31, i],
                                                                      tf.int64)) < 0.5) for i in range(COUNT)}
    assert seen[0] == bits and seen[1] == {i: not bit for i, bit in bits.items()}
