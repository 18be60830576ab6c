"""`dataset.sampling: balanced`: every training epoch an equal share of each class, counted picture by picture
through the real input pipelines (arrays, files decoded as they stream, files cached in memory, cached features),
the same after a resume, refused where it cannot be, and shown in a real run's header.

The reference is counting: 30 pictures of one class and 10 of another, 40 places an epoch, so each class fills
exactly 20; the rare class's 10 pictures are each seen exactly twice (two full passes), the common class's 20
are 20 different pictures of its 30.
"""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.data.sampling import balanced_places
from cnnrun.errors import UserError
from cnnrun.training.header import sampling_row
from tests.conftest import history, only_run, run_here, tiny_config

COMMON, RARE, BATCH, EPOCHS = 30, 10, 8, 3
COUNT = COMMON + RARE


def _pictures() -> tuple[np.ndarray, np.ndarray]:
    pictures = np.random.default_rng(11).integers(0, 256, (COUNT, 8, 9, 3), dtype=np.uint8)
    labels = np.array([0] * COMMON + [1] * RARE)
    return pictures, np.random.default_rng(2).permutation(labels)  # the classes mixed in the stored order


def _experiment(dataset: dict, **train):
    config = tiny_config(dataset={**dataset, "normalize": "none", "label_mode": "sparse", "sampling": "balanced"},
                         train={"epochs": EPOCHS, "batch_size": BATCH, **train})
    return validate_experiment(config, "t.yaml")


def _epochs(splits, pictures: np.ndarray, epochs: int, first: int = 0) -> list[list[int]]:
    """Per epoch: the place in `pictures` of each picture the training stream gave, in the order given."""
    steps = COUNT // BATCH
    batches = [np.asarray(x) for x, _ in splits.from_epoch(first).train.take(steps * epochs)]
    seen = [[next(i for i in range(COUNT) if np.array_equal(image, pictures[i])) for image in batch]
            for batch in batches]
    return [sum(seen[e * steps:(e + 1) * steps], []) for e in range(epochs)]


def _check_balanced(epochs: list[list[int]], labels: np.ndarray) -> None:
    for seen in epochs:
        assert len(seen) == COUNT
        assert Counter(int(labels[i]) for i in seen) == {0: 20, 1: 20}
        times = Counter(seen)
        assert sorted(times[i] for i in np.flatnonzero(labels == 1)) == [2] * RARE  # each rare picture twice
        common = [i for i in seen if labels[i] == 0]
        assert len(set(common)) == 20  # 20 different common pictures, none repeated
    assert epochs[0] != epochs[1]  # each epoch its own draw


def test_arrays_give_each_class_an_equal_share_and_resume_alike(tmp_path):
    pictures, labels = _pictures()
    np.savez(tmp_path / "p.npz", x_train=pictures, y_train=labels)
    splits = load_splits(_experiment({"name": "npz", "path": str(tmp_path / "p.npz")}, shuffle=False))
    epochs = _epochs(splits, pictures, EPOCHS)  # shuffle: false does not stop balanced draws
    _check_balanced(epochs, labels)
    assert _epochs(splits, pictures, 1, first=2) == epochs[2:]  # a run resumed at epoch 2 sees epoch 2 alike


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_files_streamed_or_cached_give_each_class_an_equal_share(cache, tmp_path):
    pictures, labels = _pictures()
    for i, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        folder = tmp_path / "pics" / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(folder / f"{i:02d}.png")  # PNG: the pixels come back exactly
    splits = load_splits(_experiment({"name": "image_folder", "path": str(tmp_path / "pics"), "image_size": [8, 9],
                                      "cache": cache}))
    _check_balanced(_epochs(splits, pictures, EPOCHS), labels)
    assert splits.info.class_counts["train"] == [COMMON, RARE]  # the split itself is not resampled


def test_cached_features_are_read_by_balanced_places():
    labels = _pictures()[1]
    epochs = [[int(i) for i in balanced_places(labels, 2, seed)] for seed in (5, 6)]
    _check_balanced(epochs, labels)
    three = [int(i) for i in balanced_places(np.array([0] * 7 + [2] * 3), 3, 1)]  # class 1 has no picture
    assert Counter(int(i >= 7) for i in three) == {0: 5, 1: 5}


def test_each_class_walks_its_pictures_in_an_order_of_its_own():
    # two classes of 12 pictures each, 0-11 and 12-23: a class's order is its pictures' ranks among its own. Seeded
    # alike, both would walk the same ranks (a chance of 1 in 12! apart from that)
    labels = np.repeat([0, 1], 12)
    places = [int(i) for i in balanced_places(labels, 2, 3)]
    assert [i for i in places if i < 12] != [i - 12 for i in places if i >= 12]


def test_the_header_says_how_an_epoch_is_drawn():
    from cnnrun.data import DatasetInfo

    info = DatasetInfo(["a", "b", "c"], [6, 7, 3], "sparse", "none", class_counts={"train": [30, 9, 2]})
    assert sampling_row(info) == "balanced: 41 pictures an epoch, 13 or 14 of each of 3 classes"


@pytest.mark.parametrize("extra, message", [
    ({"train": {"epochs": 1, "class_weight": "balanced"}},
     "dataset.sampling: balanced already gives every class the same weight in an epoch; remove train.class_weight"),
    ({"augmentation": {"horizontal_flip": "alternate"}},
     "dataset.sampling: balanced draws pictures anew each epoch, which horizontal_flip: alternate cannot follow"),
])
def test_what_cannot_go_with_it_is_one_line_before_the_data_loads(extra, message, write_config, tmp_path):
    config = tiny_config(**extra)
    config["dataset"]["sampling"] = "balanced"
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UserError, match="dataset.sampling"):
        validate_experiment({**tiny_config(), "dataset": {"name": "shapes", "sampling": "always"}}, "t.yaml")
    with pytest.raises(UserError, match="sampling: balanced gives each class an equal share of an epoch, but with "
                                        "label_mode: multi_label"):
        validate_experiment({**tiny_config(), "dataset": {"name": "csv", "path": "t.csv", "label_mode": "multi_label",
                                                          "sampling": "balanced"}}, "t.yaml")


@pytest.mark.slow
def test_a_balanced_run_trains_and_says_so(write_config, tmp_path):
    config = tiny_config(train={"epochs": 2, "batch_size": 16})
    config["dataset"]["sampling"] = "balanced"
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    assert "balanced: 90 pictures an epoch, 30 of each of 3 classes" in result.stdout
    assert len(history(only_run(tmp_path / "runs"))) == 2
