"""Features computed once (`train.phases[i].cache_features`): the head trained on them is the head trained the slow
way, batch for batch; the run stays a normal run (whole checkpoints, resume inside the phase, the next phase
fine-tuning the backbone); a phase that cannot be cached is refused in one line before any data is read."""

import json

import keras
import numpy as np
import pytest

from cnnrun.atomic import checkpoint_info
from cnnrun.config import validate_experiment
from cnnrun.errors import UserError
from tests.conftest import history, run_here
from tests.test_backbone import BACKBONE, DATA, HEAD, SMALL, backbone_config

slow = pytest.mark.slow
# SMALL (MobileNet v1 at alpha 0.25), so the three runs of the slow test build, trace and save in about half
# MobileNetV2's time; the cache does not depend on which network it cuts
SMALL_BACKBONE = {**SMALL, "weights": None, "pooling": "avg", "trainable": False}
LAYERS = [{"backbone": SMALL_BACKBONE}, {"Dropout": {"rate": 0.3}}, HEAD]


def phases(cached) -> dict:
    return {"batch_size": 16, "phases": [{"epochs": 3, "trainable": "none", "learning_rate": 0.01,
                                          "cache_features": cached},
                                         {"epochs": 1, "trainable": {"last": 3}, "learning_rate": 0.001}]}


class InterruptAt(keras.callbacks.Callback):
    """Ctrl-C as the first batch of epoch `epoch` (from 0) begins: the epochs before it are in the run folder."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch, self.current = epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt


@slow
def test_the_head_trained_on_cached_features_is_the_head_trained_the_slow_way(tmp_path):
    """Same seed, same batches: a run whose first phase trains the head (with Dropout) on cached features, stopped
    by Ctrl-C in that phase and resumed, then fine-tuning the backbone's last layers, ends with the weights,
    optimizer state and history of the same run trained straight through with the backbone run on every batch."""
    from cnnrun.model.checkpoints import load_checkpoint
    from cnnrun.training.trainer import Trainer, resume_run, train_experiment

    def experiment(cached, name):
        return validate_experiment(backbone_config(layers=LAYERS, train=phases(cached), output={
            "dir": str(tmp_path / name), "plots": False, "report": False},
            dataset={**DATA, "test_samples": 0}), f"{name}.yaml")  # no test split: nothing to score

    said = []
    slow_run = train_experiment(experiment(False, "slow")).path
    with Trainer.new(experiment(True, "cached"), callbacks=[InterruptAt(2)], say=said.append) as trainer:
        with pytest.raises(SystemExit):
            trainer.fit()
    cached_run = trainer.run.path
    # epoch 2 is done but waited, as a cached fit's checkpoints wait SAVE_EVERY seconds: the run folder holds
    # epoch 1 whole (state.json and last.keras agree), and resume trains epoch 2 again
    done = json.loads((cached_run / "state.json").read_text())["epochs_completed"]
    assert done == checkpoint_info(cached_run / "checkpoints" / "last.keras")["epoch"] == 1
    assert len(history(cached_run)) == 2
    resumed = resume_run(cached_run, say=said.append).path

    lines = [str(line) for line in said]
    assert any("features cached" in line for line in lines)  # the header's phases
    told = [line for line in lines if line.startswith("phase 1: backbone features of 48 pictures computed once")]
    assert len(told) == 2, lines  # at the start, and again when resumed inside the phase
    meta = json.loads((resumed / "meta.json").read_text())
    assert [entry["phase"] for entry in meta["cached_features"]] == [1, 1]

    fast, straight = history(resumed), history(slow_run)
    assert [row["epoch"] for row in fast] == [1, 2, 3, 4]
    for ours, theirs in zip(fast, straight, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), (ours, theirs, key)
    ours, theirs = (load_checkpoint(run / "checkpoints" / "last.keras") for run in (resumed, slow_run))
    assert len(ours.layers) == len(theirs.layers)  # the whole model, not the head
    for mine, other in zip(ours.weights + ours.optimizer.variables, theirs.weights + theirs.optimizer.variables,
                           strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(other), rtol=1e-4, atol=1e-5, err_msg=mine.path)
    assert not (resumed / "features").exists()

    from cnnrun.run_folder.folder import Run
    from cnnrun.tasks.report import write_run_report

    page = write_run_report(Run(resumed), tmp_path / "page.html").path.read_text()  # the overview tells both
    assert page.count("backbone features of 48 pictures (1 view) computed once in") == 2


def test_cached_batches_come_in_the_order_of_the_pictures(tmp_path):
    """The cached stream shuffles indices as the picture stream shuffles pictures (arrays, and files without a
    cache, in memory and on disk): epoch by epoch the labels come in the same order, features in memory or in a
    memory-mapped file alike, view e mod K in epoch e."""
    import tensorflow as tf
    from PIL import Image

    from cnnrun.data.examples import ArrayExamples, FileExamples
    from cnnrun.data.features import feature_stream

    labels = np.arange(23) % 5
    paths = []
    for i in range(23):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(paths[-1])
    examples = [ArrayExamples(np.zeros((23, 4, 4, 3), np.uint8), labels)]
    examples += [FileExamples(paths, labels, (4, 4), 3, cache=cache, cache_dir=str(tmp_path)) for cache in
                 ("none", "memory", "disk")]
    config = validate_experiment(backbone_config(train={"epochs": 3, "batch_size": 8}), "t.yaml")
    info = _info()
    features = np.stack([np.arange(23, dtype=np.float32)[:, None] + 100 * view for view in range(2)])
    mapped = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=features.shape)
    mapped[:] = features
    for example in examples:
        source = example.source()
        for stored in (features, mapped):
            batches = list(feature_stream(stored, labels, example, info, config, initial_epoch=1))
            assert [len(b[0]) for b in batches] == [8, 8, 7] * 2
            for epoch in (1, 2):
                order = np.concatenate([b[0].numpy()[:, 0] for b in batches[(epoch - 1) * 3:epoch * 3]])
                assert set(order // 100) == {epoch % 2}
                seed = config.seed * 1_000_003 + epoch
                pictures = [int(label) for _, label in example.ordered(source, tf.constant(seed, tf.int64))]
                assert list(labels[(order % 100).astype(int)]) == pictures
                assert sorted(order % 100) == list(range(23))


def _info():
    from cnnrun.data import DatasetInfo

    return DatasetInfo(class_names=list("abcde"), input_shape=[4, 4, 3], label_mode="int", normalize="none")


@pytest.mark.parametrize("change, fragment", [
    ({"train": {"phases": [{"epochs": 1, "trainable": "all", "cache_features": True}]}},
     "train.phases.0.cache_features: the backbone trains in this phase (trainable: all)"),
    ({"train": {"phases": [{"epochs": 1, "trainable": "none", "cache_features": 0}]}},
     "train.phases.0.cache_features: true, false or a number of augmented views ≥ 1, got 0"),
    ({"train": {"phases": [{"epochs": 1, "trainable": "none", "cache_features": True}]},
      "augmentation": {"horizontal_flip": True}},
     "train.phases.0.cache_features: true, but augmentation changes the pictures before the backbone"),
])
def test_a_phase_that_cannot_be_cached_is_one_line_from_the_config(change, fragment):
    with pytest.raises(UserError) as caught:
        validate_experiment(backbone_config(**change), "t.yaml")
    assert fragment in str(caught.value)


@pytest.mark.parametrize("layers, fragment", [
    ([{"Conv2D": {"filters": 4, "kernel_size": 3}}, {"Flatten": {}}, HEAD], "the model has no backbone"),
    ([{"Dropout": {"rate": 0.1}}, {"backbone": BACKBONE}, HEAD],
     "the layer 'dropout' (Dropout) before the backbone is random in training"),
    ([{"Conv2D": {"filters": 3, "kernel_size": 1}}, {"backbone": BACKBONE}, HEAD],
     "the layer 'conv2d' before the backbone has weights"),
])
def test_a_model_that_cannot_be_cached_is_refused_before_any_data(layers, fragment, write_config, tmp_path):
    """`cnnrun train` names the file and the key, exits 2, and makes no run folder."""
    config = backbone_config(layers=layers, train={"batch_size": 16, "phases": [
        {"epochs": 1, "trainable": "none", "cache_features": True}]}, output={"dir": str(tmp_path / "out")})
    result = run_here("train", write_config(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr and "train.phases.0.cache_features" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_a_random_layer_before_the_backbone_is_refused_with_true_but_not_with_fixed_views():
    from cnnrun.model.build import build_model
    from cnnrun.model.features import check_cacheable

    def checked(cached):
        config = backbone_config(layers=[{"Dropout": {"rate": 0.1}}, {"backbone": SMALL_BACKBONE}, HEAD],
                                 train={"batch_size": 16, "phases": [{"epochs": 1, "trainable": "none",
                                                                      "cache_features": cached}]})
        experiment = validate_experiment(config, "t.yaml")
        check_cacheable(build_model(experiment, (32, 32, 3), 3), experiment)

    checked(2)  # two views, each drawn once: an epoch reads the same features whichever view it takes
    with pytest.raises(UserError, match="random in training, so the features differ every epoch"):
        checked(True)  # one pass read every epoch would freeze one draw of the dropout as if it were the picture


@slow
def test_views_are_the_backbones_outputs_on_augmented_pictures_kept_in_a_file(tmp_path):
    """`cache_features: 2` with flips, beyond the memory limit: `features/train.npy` holds two views of every
    training picture, each the backbone's output (computed here with the model's own layers) on the picture or on
    its mirror image, the two views not alike; the validation features are those of the pictures as they are; the
    files go when the phase is done."""
    from cnnrun.data import load_splits
    from cnnrun.model.build import new_model
    from cnnrun.model.phases import start_phase
    from cnnrun.training.features import cache_phase

    experiment = validate_experiment(backbone_config(
        layers=LAYERS, augmentation={"horizontal_flip": True, "placement": "pipeline"},
        train={"batch_size": 16, "phases": [{"epochs": 2, "trainable": "none", "cache_features": 2}]}), "t.yaml")
    splits = load_splits(experiment, augment=True)
    model = new_model(experiment, splits.info, False, 1, splits.steps_per_epoch)
    for layer in model.get_layer("backbone").layers:  # random weights: keep the signal alive through the depth
        if isinstance(layer, keras.layers.BatchNormalization):  # (see tests/test_backbone_commands.py)
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 0.1, "float32"))
    start_phase(model, experiment, 0, splits.steps_per_epoch)
    cached = cache_phase(model, splits, experiment, 0, folder=tmp_path, limit=0)
    assert cached.folder == tmp_path / "features" and cached.views == 2 and cached.pictures == 48

    def backbone(images):
        x = model.get_layer("backbone_preprocessing")(np.asarray(images, np.float32))
        return np.asarray(model.get_layer("backbone")(x, training=False))

    train, held_out = splits.examples["train"], splits.examples["validation"]
    views = np.load(tmp_path / "features" / "train.npy")
    plain, mirrored = backbone(train.images), backbone(train.images[:, :, ::-1])
    scale = np.abs(plain).max()
    assert views.shape == (2, 36, 256)  # 36 training pictures, 256 channels (MobileNet at alpha 0.25)
    assert np.abs(plain - mirrored).max(axis=1).min() > 1e-2 * scale
    assert np.abs(views[0] - views[1]).max() > 1e-2 * scale  # each view flips its own pictures
    for view in views:  # every picture as it is, or mirrored
        near = np.minimum(np.abs(view - plain).max(axis=1), np.abs(view - mirrored).max(axis=1))
        assert near.max() < 1e-4 * scale
    np.testing.assert_allclose(np.load(tmp_path / "features" / "validation.npy")[0], backbone(held_out.images),
                               atol=1e-4 * scale)
    cached.remove_files()
    assert not (tmp_path / "features").exists()


def test_the_phase_line_says_the_views_when_there_are_several_and_where_the_features_are(tmp_path):
    from cnnrun.training.features import CachedPhase

    two = CachedPhase(None, None, None, phase=1, views=2, pictures=1200, seconds=3.25, folder=tmp_path)
    assert two.line() == (f"phase 1: backbone features of 1,200 pictures (2 views of each training picture) "
                          f"computed once in 3.2 s, kept in {tmp_path}; the head trains on them")
    one = CachedPhase(None, None, None, phase=2, views=1, pictures=5, seconds=0.0)
    assert "of 5 pictures computed" in one.line() and "kept in memory" in one.line()
    assert one.record()["kept"] == "memory" and two.record()["kept"] == "file"


def test_features_of_exactly_the_memory_limit_stay_in_memory(tmp_path):
    from cnnrun.training.features import _features

    inputs = keras.Input((2,))
    front = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    batches = [(np.ones((4, 2), np.float32), None), (np.ones((1, 2), np.float32), None)]
    size = 1 * 5 * 3 * 4  # 1 view · 5 pictures · 3 features · 4 bytes = 60
    kept = _features(front, batches, 5, 1, 0, None, tmp_path / "train.npy", limit=size)
    assert not isinstance(kept, np.memmap) and not (tmp_path / "train.npy").exists()
    assert kept.shape == (1, 5, 3)
    beyond = _features(front, batches, 5, 1, 0, None, tmp_path / "train.npy", limit=size - 1)
    assert isinstance(beyond, np.memmap) and (tmp_path / "train.npy").is_file()
