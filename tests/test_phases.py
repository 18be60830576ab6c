"""train.phases: which layers train in each phase, the history's phase column, resume inside a phase, mistakes.

A nested `keras.applications.MobileNetV2` (alpha 0.35, 32×32, random weights) stands for a backbone; cnnrun
configs stand for the model without one (its base: every layer but the Dense head).
"""

import json

import keras
import numpy as np
import pytest
import yaml

from cnnrun.config import load_experiment, validate_experiment
from cnnrun.config.phases import with_total_epochs
from cnnrun.errors import UserError
from cnnrun.model.build import declared_info, new_model
from cnnrun.model.phases import set_trainable, start_phase
from cnnrun.training.trainer import Trainer, resume_run
from tests.conftest import history, only_run, run_here, tiny_config
from tests.test_errors import assert_user_error
from tests.test_trainer import photo_folder

NAMED_LAYERS = [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu", "name": "conv_a"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Flatten": {}},
    {"Dense": {"units": "${num_classes}", "activation": "softmax", "name": "head"}},
]
TWO_PLUS_TWO = [{"epochs": 2, "trainable": "none", "learning_rate": 0.01},
                {"epochs": 2, "trainable": "all", "learning_rate": 0.002, "optimizer": {"name": "sgd",
                                                                                          "momentum": 0.9}}]


def phased_config(phases=TWO_PLUS_TWO, **train) -> dict:
    return tiny_config(model={"layers": NAMED_LAYERS}, output={"plots": False, "report": False},
                       compile={"optimizer": "adam", "jit_compile": False},  # XLA takes seconds to compile each phase
                       train={"batch_size": 16, "deterministic": True, "phases": phases, **train})


def experiment_of(config: dict):
    return validate_experiment(config, "experiment.yaml")


def mobilenet_model():
    """A small functional model around a nested MobileNetV2: the backbone, pooling, a Dense head of 3."""
    backbone = keras.applications.MobileNetV2(alpha=0.35, weights=None, include_top=False, input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="dense")(pooled)), backbone


def training(model) -> set[str]:
    """The names of the layers (nested ones included) whose weights the optimizer updates."""
    trained = {id(w) for w in model.trainable_weights}
    layers = [layer for outer in model.layers for layer in (outer.layers if isinstance(outer, keras.Model)
                                                              else [outer])]
    return {layer.name for layer in layers if any(id(w) in trained for w in layer.weights)}


# ---------------------------------------------------------------- the config


def test_train_epochs_is_the_phases_sum_and_a_different_one_is_an_error():
    assert experiment_of(phased_config()).train.epochs == 4
    assert experiment_of(phased_config(epochs=4)).train.epochs == 4
    with pytest.raises(UserError, match=r"train.epochs: 3, but train.phases add up to 4 epochs"):
        experiment_of(phased_config(epochs=3))


def test_phases_in_a_file_with_a_base_replace_the_bases_epoch_count(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(phased_config(phases=None, epochs=20)))
    (tmp_path / "phased.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "train": {"phases": TWO_PLUS_TWO}}))
    (tmp_path / "both.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "train": {"epochs": 3,
                                                                                        "phases": TWO_PLUS_TWO}}))
    assert load_experiment(tmp_path / "base.yaml").train.epochs == 20
    assert load_experiment(tmp_path / "phased.yaml").train.epochs == 4
    with pytest.raises(UserError, match=r"train.epochs: 3, but train.phases add up to 4 epochs"):
        load_experiment(tmp_path / "both.yaml")


def test_a_moving_average_or_a_plateau_cut_of_a_phase_schedule_is_an_error():
    with pytest.raises(UserError, match=r"compile.optimizer.use_ema: not with train.phases"):
        experiment_of(tiny_config(compile={"optimizer": {"name": "adam", "use_ema": True}},
                                  train={"phases": [{"epochs": 1, "trainable": "all"}]}))
    cosine = {"schedule": "cosine", "initial_learning_rate": 0.01, "decay_steps": 2, "unit": "epochs"}
    with pytest.raises(UserError, match=r"reduce_lr_on_plateau: cannot change the learning-rate schedule of "
                                        r"train.phases.1"):
        experiment_of(tiny_config(callbacks={"reduce_lr_on_plateau": {}}, train={"phases": [
            {"epochs": 1, "trainable": "none", "learning_rate": 0.01},
            {"epochs": 1, "trainable": "all", "learning_rate": cosine}]}))


@pytest.mark.parametrize("phase, fragments", [
    ({"epochs": 2, "trainable": "some"}, ["train.phases.1.trainable: none, all", "'some'"]),
    ({"epochs": 2, "trainable": {"last": 0}}, ["train.phases.1.trainable.last: a whole number ≥ 1"]),
    ({"epoch": 2, "trainable": "all"}, ["train.phases.1: unknown key 'epoch'", "did you mean 'epochs'"]),
    ({"epochs": 0, "trainable": "all"}, ["train.phases.1.epochs:", "(got 0)"]),
    ({"epochs": 2, "trainable": "all", "optimizer": "rmsprob"},
     ["train.phases.1.optimizer: unknown optimizer 'rmsprob'", "did you mean 'rmsprop'"]),
    ({"epochs": 2, "trainable": "all", "learning_rate": {"schedule": "cosin"}},
     ["train.phases.1.learning_rate.schedule: 'cosin' is unknown", "did you mean 'cosine'"]),
    ({"epochs": 2, "trainable": "all", "learning_rate": 0.1, "optimizer": {"name": "adam", "learning_rate": 0.1}},
     ["train.phases.1.learning_rate: given twice"]),
])
def test_a_mistake_in_a_phase_names_the_phase_and_the_key(phase, fragments):
    with pytest.raises(UserError) as error:
        experiment_of(phased_config([TWO_PLUS_TWO[0], phase]))
    for fragment in fragments:
        assert fragment in str(error.value)


def test_resume_epochs_with_phases_sets_the_last_phases_length():
    train = experiment_of(phased_config()).train
    longer = with_total_epochs(train, 7)
    assert (longer.epochs, [p.epochs for p in longer.phases]) == (7, [2, 5])
    assert longer.phases[1].learning_rate == 0.002  # the rest of the phase is kept
    shorter = with_total_epochs(train, 3)
    assert (shorter.epochs, [p.epochs for p in shorter.phases]) == (3, [2, 1])
    with pytest.raises(UserError, match=r"--epochs 2: the run's phases before the last take 2 epochs"):
        with_total_epochs(train, 2)


# ---------------------------------------------------------------- which layers train


def test_from_and_last_train_exactly_the_layers_named_by_hand():
    model, backbone = mobilenet_model()
    set_trainable(model, "none")
    assert training(model) == {"dense"}
    set_trainable(model, {"from": "block_16_expand"})  # the last block and the last 1×1 convolution
    assert training(model) == {"block_16_expand", "block_16_depthwise", "block_16_project", "Conv_1", "dense"}
    set_trainable(model, {"last": 3})  # BatchNormalization layers are not counted: they never train
    assert training(model) == {"block_16_depthwise", "block_16_project", "Conv_1", "dense"}
    set_trainable(model, "all")
    convolutions = {layer.name for layer in backbone.layers
                    if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)}
    assert len(convolutions) == 52
    assert training(model) == convolutions | {"dense"}
    assert not any(layer.trainable for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization))
    set_trainable(model, "none")  # and back: the flags are set afresh every phase
    assert training(model) == {"dense"}


def test_a_layer_name_the_model_lacks_lists_near_names():
    model, _ = mobilenet_model()
    with pytest.raises(UserError, match=r"trainable.from: the model has no layer 'blok_16_expand'; near names: "
                                        r"block_16_expand"):
        set_trainable(model, {"from": "blok_16_expand"})
    with pytest.raises(UserError, match=r"no layer 'dense_4'; near names: dense$"):
        set_trainable(model, {"from": "dense_4"})
    with pytest.raises(UserError, match=r"trainable.last: 53, but the base has 52 layers with weights"):
        set_trainable(model, {"last": 53})


def test_a_frozen_backbone_stays_in_phase_one_and_its_batch_norm_statistics_in_both_phases():
    model, backbone = mobilenet_model()
    experiment = experiment_of(tiny_config(compile={"optimizer": "adam", "jit_compile": False}, train={
        "batch_size": 8, "phases": [
        {"epochs": 1, "trainable": "none", "learning_rate": 0.01},
        {"epochs": 1, "trainable": {"from": "block_15_expand"}, "learning_rate": 0.01}]}))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, 3, 16), 3)

    def weights():
        return {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}

    def changed(before, after):
        return {path for path in before if not np.array_equal(before[path], after[path])}

    statistics = {w.path for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
                  for w in layer.weights}
    initial = weights()
    start_phase(model, experiment, 0, steps_per_epoch=2)
    model.run_eagerly = True  # the same arithmetic, without tracing a 154-layer graph (7 s a phase)
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    after_one = weights()
    assert changed(initial, after_one) == {"dense/kernel", "dense/bias"}  # only the head learnt

    start_phase(model, experiment, 1, steps_per_epoch=2)
    model.run_eagerly = True
    model.fit(images, labels, batch_size=8, epochs=2, initial_epoch=1, verbose=0)
    moved = changed(after_one, weights())
    unfrozen = {"block_15_expand/kernel", "block_15_depthwise/kernel", "block_15_project/kernel",
                "block_16_expand/kernel", "block_16_depthwise/kernel", "block_16_project/kernel",
                "Conv_1/kernel"}  # MobileNetV2's convolutions have no bias: BatchNormalization follows each
    assert moved == unfrozen | {"dense/kernel", "dense/bias"}
    assert not moved & statistics  # moving mean and variance, gamma and beta: as they were, in both phases


# ---------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A 2 + 2 run trained straight through (with its config file and output)."""
    folder = tmp_path_factory.mktemp("straight")
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(phased_config(), sort_keys=False))
    result = run_here("train", path, "--output-dir", folder / "runs")
    assert result.returncode == 0, result.stderr[-2000:]
    return only_run(folder / "runs"), result


def last_weights(run):
    return keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True).get_weights()


def assert_same_weights(a, b):
    for w_a, w_b in zip(a, b, strict=True):
        np.testing.assert_allclose(w_a, w_b, atol=1e-5)


def test_history_numbers_epochs_through_the_phases_and_the_header_shows_them(straight):
    run, result = straight
    assert [(r["epoch"], r["phase"]) for r in history(run)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert [r["learning_rate"] for r in history(run)] == pytest.approx([0.01, 0.01, 0.002, 0.002])
    assert "1: epochs 1–2, trainable none, adam 0.01; 2: epochs 3–4, trainable all, sgd 0.002" in result.stdout
    assert "phase 2 of 2: epochs 3–4, trainable all" in result.stdout
    state = json.loads((run / "state.json").read_text())
    assert (state["status"], state["epochs_completed"], state["phase"]) == ("completed", 4, 2)
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert saved["epochs"] == 4 and [p["epochs"] for p in saved["phases"]] == [2, 2]


class StopBeforeEpoch(keras.callbacks.Callback):
    """Ctrl-C at the start of epoch `epoch` (from 0): after the phase before it has been saved and the next begun."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_run_stopped_at_the_phase_boundary_froze_the_base_and_resumes_as_a_straight_run(straight, tmp_path):
    experiment = experiment_of(phased_config())
    with Trainer.new(experiment, str(tmp_path), callbacks=[StopBeforeEpoch(2)]) as trainer:
        with pytest.raises(SystemExit):
            trainer.fit()
    run = only_run(tmp_path)
    assert json.loads((run / "state.json").read_text())["phase"] == 2  # ahead of last.keras, from phase 1
    initial = new_model(experiment, declared_info(experiment), augment_in_model=False)
    after_one = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True)
    for name in ("conv_a", "head"):
        same = [np.array_equal(a, b) for a, b in zip(initial.get_layer(name).get_weights(),
                                                      after_one.get_layer(name).get_weights(), strict=True)]
        assert same == ([True, True] if name == "conv_a" else [False, False]), name  # the base froze in phase 1

    assert resume_run(run) is not None
    assert [(r["epoch"], r["phase"]) for r in history(run)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert_same_weights(last_weights(straight[0]), last_weights(run))


@pytest.mark.slow
def test_a_run_resumed_inside_its_last_phase_reaches_the_straight_runs_weights(straight, tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(phased_config(), sort_keys=False))
    first = run_here("train", path, "--output-dir", tmp_path, "--set", "train.phases.1.epochs=1")
    assert first.returncode == 0, first.stderr[-2000:]
    run = only_run(tmp_path)
    resumed = run_here("resume", run, "--epochs", "4")  # the last phase grows from 1 epoch to 2
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "phase 2 of 2: epochs 3–4" in resumed.stdout
    assert [(r["epoch"], r["phase"]) for r in history(run)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert_same_weights(last_weights(straight[0]), last_weights(run))
    straight_rows = history(straight[0])
    for row_a, row_b in zip(straight_rows, history(run), strict=True):
        assert row_b["val_loss"] == pytest.approx(row_a["val_loss"], abs=1e-5)
    assert json.loads((run / "state.json").read_text())["best"]["epoch"] == \
        json.loads((straight[0] / "state.json").read_text())["best"]["epoch"]  # judged across phases


# ---------------------------------------------------------------- mistakes found before any data


def test_a_layer_name_the_model_lacks_is_one_line_before_any_data_and_nothing_is_written(write_config, tmp_path):
    # the folder holds a file that stops data loading (on_bad_file: error): the name must be found first
    folder = photo_folder(tmp_path / "photos", broken=True)
    phases = [{"epochs": 1, "trainable": "none"}, {"epochs": 1, "trainable": {"from": "conv_b"}}]
    config = phased_config(phases)
    config["dataset"] = {"name": "image_folder", "path": str(folder), "image_size": 16, "on_bad_file": "error"}
    path = write_config(config)
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "runs"),
                      f"{path}: train.phases.1.trainable.from: the model has no layer 'conv_b'", "near names: conv_a")
    too_many = write_config(phased_config([{"epochs": 1, "trainable": {"last": 2}}]), "too_many.yaml")
    assert_user_error(run_here("train", too_many, "--output-dir", tmp_path / "runs"),
                      "train.phases.0.trainable.last: 2, but the base has 1 layer with weights")
    assert not (tmp_path / "runs").exists()
    assert_user_error(run_here("inspect", path), "train.phases.1.trainable.from: the model has no layer 'conv_b'")


def test_inspect_shows_the_phases(write_config):
    phases = [{"epochs": 1, "trainable": "none"}, {"epochs": 2, "trainable": "all", "learning_rate": 1.0e-5}]
    result = run_here("inspect", write_config(phased_config(phases)))
    assert result.returncode == 0, result.stderr
    assert "phases: 1: epoch 1, trainable none, adam; 2: epochs 2–3, trainable all, adam 1e-05" in result.stdout


def test_resume_epochs_that_leave_the_last_phase_no_epoch_is_one_line(straight):
    assert_user_error(run_here("resume", straight[0], "--epochs", "2"),
                      "--epochs 2: the run's phases before the last take 2 epochs")


def test_a_checkpoint_without_an_epoch_record_starts_at_its_phases_first_epoch(tmp_path):
    from cnnrun.atomic import atomic_save_model
    from cnnrun.model.phases import phase_start_in_checkpoint

    experiment = experiment_of(phased_config())  # phases of 2 and 2 epochs: phase 1 from 0 done, phase 2 from 2
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for phase, start in ((1, 0), (2, 2)):
        atomic_save_model(model, tmp_path / f"phase{phase}.keras", {"phase": phase})
        assert phase_start_in_checkpoint(tmp_path / f"phase{phase}.keras", experiment) == start
    atomic_save_model(model, tmp_path / "phase3.keras", {"phase": 3})
    with pytest.raises(UserError, match="records phase 3, but the run's config.yaml has phases 1 to 2"):
        phase_start_in_checkpoint(tmp_path / "phase3.keras", experiment)
