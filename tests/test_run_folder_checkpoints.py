"""Checkpoints: the record each carries, saves that cannot clash, and messages that say what is wrong.

Every model here is a real Keras model saved by Keras; every damaged file is a real file on disk.
"""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from cnnrun.atomic import atomic_save_model, checkpoint_info
from cnnrun.errors import UserError
from cnnrun.model.checkpoints import load_checkpoint
from cnnrun.run_folder.folder import Run
from tests.test_run_folder_faults import tiny_disk

BEST = {"monitor": "val_loss", "value": 0.41, "epoch": 3}


def small_model(units: int = 3) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)  # as after training: Adam's slots are saved too
    return model


def run_with_checkpoints(tmp_path) -> Run:
    run = Run(tmp_path / "run")
    run.update_state(status="running", epochs_completed=3, epochs_planned=5, best=BEST)
    model = small_model()
    atomic_save_model(model, run.checkpoints / "best.keras", info=BEST)
    atomic_save_model(model, run.checkpoints / "last.keras", info={"epoch": 3})
    return run


def test_a_checkpoint_carries_its_record_and_keras_safe_mode_still_loads_it(tmp_path):
    model = small_model()
    path = tmp_path / "checkpoints" / "best.keras"
    atomic_save_model(model, path, info=BEST)
    assert checkpoint_info(path) == BEST
    loaded = keras.saving.load_model(path, safe_mode=True)
    for saved, original in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, original)
    # Keras' own entries only: an extra entry would make Keras extract the whole archive on every load
    assert sorted(zipfile.ZipFile(path).namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    assert [p.name for p in path.parent.iterdir()] == ["best.keras"]


def test_a_copied_checkpoint_carries_its_own_record_and_the_same_model(tmp_path):
    """best.keras copied to last.keras (the same epoch): the copy's record is its own, the source keeps its own,
    the weights and Adam's slots load alike, and only Keras' entries are in the archive."""
    from cnnrun.atomic import atomic_copy_model

    model = small_model()
    model.optimizer.variables[-1].assign(np.full(model.optimizer.variables[-1].shape, 0.5, "float32"))
    best, last = tmp_path / "best.keras", tmp_path / "last.keras"
    atomic_save_model(model, best, info=BEST)
    atomic_copy_model(best, last, info={"epoch": 3, "phase": 1})
    assert checkpoint_info(best) == BEST and checkpoint_info(last) == {"epoch": 3, "phase": 1}
    loaded = keras.saving.load_model(last, safe_mode=True)
    for saved, original in zip(loaded.get_weights() + [np.asarray(v) for v in loaded.optimizer.variables],
                               model.get_weights() + [np.asarray(v) for v in model.optimizer.variables], strict=True):
        np.testing.assert_array_equal(saved, original)
    assert sorted(zipfile.ZipFile(last).namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "last.keras"]


def test_a_checkpoint_saved_without_a_record_or_foreign_has_none(tmp_path):
    small_model().save(tmp_path / "plain.keras")
    (tmp_path / "text.keras").write_text("not a zip")
    assert checkpoint_info(tmp_path / "plain.keras") is None
    assert checkpoint_info(tmp_path / "text.keras") is None
    assert checkpoint_info(tmp_path / "missing.keras") is None


def test_the_best_value_is_known_from_best_keras_when_state_json_lags_behind(tmp_path):
    """The instant of fault B3: best.keras replaced (epoch 4), the process killed before state.json said so."""
    run = run_with_checkpoints(tmp_path)
    assert run.recorded_best() == BEST
    newer = {"monitor": "val_loss", "value": 0.37, "epoch": 4}
    atomic_save_model(small_model(), run.checkpoints / "best.keras", info=newer)
    assert run.read_state().best.model_dump() == BEST  # state.json still says epoch 3
    assert run.recorded_best() == newer


def test_a_save_leaves_another_writers_partial_file_alone(tmp_path):
    """Two saves of one checkpoint at once: the other writer is half-way through its own partial file."""
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    theirs = checkpoints / ".best.partial.keras"  # the name every writer used to share
    theirs.write_bytes(b"another process is writing this")
    atomic_save_model(small_model(), checkpoints / "best.keras")
    assert theirs.read_bytes() == b"another process is writing this"
    assert sorted(p.name for p in checkpoints.iterdir()) == [".best.partial.keras", "best.keras"]
    assert isinstance(load_checkpoint(checkpoints / "best.keras"), keras.Model)


def test_a_checkpoint_gets_the_permissions_the_umask_gives(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_save_model(small_model(), tmp_path / "last.keras", info={"epoch": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "last.keras").stat().st_mode & 0o777 == 0o640


def test_a_model_save_on_a_full_disk_says_disk_full_and_leaves_no_partial(tmp_path):
    with tiny_disk(tmp_path / "disk", "32k") as disk:
        path = disk / "checkpoints" / "best.keras"
        with pytest.raises(UserError) as caught:
            atomic_save_model(small_model(units=5000), path)  # 100 KB of weights, 3 copies with Adam
        assert str(caught.value) == f"{path}: cannot write (disk full)"
        assert list(path.parent.iterdir()) == []


def test_a_truncated_checkpoint_says_so_and_names_the_intact_other_one(tmp_path):
    run = run_with_checkpoints(tmp_path)
    best = run.checkpoints / "best.keras"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    with pytest.raises(UserError) as caught:
        load_checkpoint(best)
    assert str(caught.value) == (f"{best}: damaged checkpoint: truncated or not a .keras file "
                                 "(not a whole zip archive); checkpoints/last.keras is intact: use --checkpoint last")
    assert isinstance(load_checkpoint(run.checkpoints / "last.keras"), keras.Model)


def test_a_lambda_layer_is_refused_by_safe_mode_not_called_damaged(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    path = tmp_path / "checkpoints" / "last.keras"
    path.parent.mkdir()
    model.save(path)
    with pytest.raises(UserError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message == (f"{path}: refused: holds a Lambda layer, which safe mode does not load — cnnrun never "
                       "runs code from a checkpoint; checkpoints/best.keras is missing too")
    assert "damaged" not in message


def test_both_checkpoints_damaged_and_one_missing_are_said_as_such(tmp_path):
    run = run_with_checkpoints(tmp_path)
    for name in ("best.keras", "last.keras"):
        (run.checkpoints / name).write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(UserError, match=r"best\.keras: damaged checkpoint: truncated .*; checkpoints/last\.keras is "
                                        r"damaged too$"):
        load_checkpoint(run.checkpoints / "best.keras")
    (run.checkpoints / "best.keras").unlink()
    with pytest.raises(UserError, match=r"best\.keras: checkpoint missing; checkpoints/last\.keras is damaged"):
        load_checkpoint(run.checkpoints / "best.keras")


@pytest.mark.parametrize("stop_early", [False, True])
def test_history_png_waits_between_fast_epochs_and_always_shows_the_last(tmp_path, monkeypatch, stop_early):
    """Epochs of a fraction of a second are drawn at most every PLOT_EVERY seconds, counted from the fit's start,
    and the fit's last epoch always, also when early stopping ends the fit before its planned end; epochs that take
    PLOT_EVERY or longer (here 0 s) are each drawn as they end."""
    from cnnrun.config import CheckpointConfig
    from cnnrun.training import callbacks

    drawn, draw = [], callbacks.plot_history
    monkeypatch.setattr(callbacks, "plot_history", lambda history, path: (drawn.append(len(history)),
                                                                          draw(history, path)))
    run = Run(tmp_path / "run")
    run.update_state(status="running", epochs_completed=0, epochs_planned=5)
    recorder = callbacks.RunRecorder(run, "loss", CheckpointConfig())
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
    stopper = [keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=100.0)] if stop_early else []
    small_model().fit(x, y, epochs=5, verbose=0, callbacks=[recorder, *stopper])
    assert drawn == ([2] if stop_early else [5])
    assert run.history_plot.stat().st_size > 0
    drawn.clear()
    monkeypatch.setattr(callbacks, "PLOT_EVERY", 0.0)
    recorder = callbacks.RunRecorder(run, "loss", CheckpointConfig())
    small_model().fit(x, y, epochs=3, verbose=0, callbacks=[recorder])
    assert drawn == [1, 2, 3]


def head_in_whole() -> tuple[keras.Model, keras.Model]:
    """A fit on cached features as the Trainer makes it: fit trains a head; the checkpoints hold the model around
    it, compiled with the head's own optimizer."""
    whole = small_model()
    head = keras.Model(whole.inputs, whole.outputs)  # the same layers, another model (fit's)
    head.compile(optimizer=whole.optimizer, loss="sparse_categorical_crossentropy")
    return head, whole


@pytest.mark.parametrize("case", ["cached", "cached, stopped early", "not cached"])
def test_in_a_fit_on_cached_features_last_keras_and_state_json_wait_together(tmp_path, monkeypatch, case):
    """A fit on cached features writes last.keras and state.json at its first epoch, then at most every
    SAVE_EVERY seconds, and always at its last epoch (also one early stopping ends); the two always agree on the
    epochs done, so a run killed between them resumes from a whole state. Other fits write them every epoch."""
    from cnnrun.config import CheckpointConfig
    from cnnrun.training import callbacks

    saved, save = [], callbacks.atomic_save_model
    monkeypatch.setattr(callbacks, "atomic_save_model", lambda model, path, info=None: (
        saved.append((path.name, info["epoch"])), save(model, path, info)))
    run = Run(tmp_path / "run")
    run.update_state(status="running", epochs_completed=0, epochs_planned=6)
    never_better = CheckpointConfig(initial_value_threshold=-1.0)  # best.keras is never written: no copies
    recorder = callbacks.RunRecorder(run, "loss", never_better, plots=False)
    model, whole = head_in_whole()
    recorder.whole = whole if case != "not cached" else model  # as the Trainer sets it: the model saved
    agreed = []

    class Probe(keras.callbacks.Callback):  # after the recorder: what a process killed now would leave
        def on_epoch_end(self, epoch, logs=None):
            done = json.loads((run.path / "state.json").read_text())["epochs_completed"]
            agreed.append(done == checkpoint_info(run.checkpoints / "last.keras")["epoch"])

    stop = [keras.callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=100.0)] if "early" in case else []
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
    model.fit(x, y, epochs=6, verbose=0, callbacks=[*stop, recorder, Probe()])
    expected = {"cached": [1, 6], "cached, stopped early": [1, 3], "not cached": [1, 2, 3, 4, 5, 6]}[case]
    assert saved == [("last.keras", epoch) for epoch in expected]
    assert all(agreed) and len(agreed) == expected[-1]
    assert json.loads((run.path / "state.json").read_text())["epochs_completed"] == expected[-1]
    assert len(run.read_history()) == expected[-1]


def test_a_best_epoch_held_while_the_checkpoints_wait_is_written_with_its_own_values(tmp_path):
    """In a fit on cached features the best epoch (here the 2nd of 6) falls inside the wait: its values are held
    and written as best.keras when the wait ends, equal to the model's after that epoch (weights and optimizer
    state), while last.keras and the model in memory hold the 6th epoch's."""
    from cnnrun.config import CheckpointConfig
    from cnnrun.training import callbacks

    scores = iter([5.0, 3.0, 4.0, 4.0, 4.0, 4.0])  # a monitored value that improves only at epoch 2

    class Score(keras.callbacks.Callback):  # before the recorder: puts the value in the logs it reads
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = next(scores)

    after = {}

    class Keep(keras.callbacks.Callback):  # after the recorder: each epoch's values
        def on_epoch_end(self, epoch, logs=None):
            after[epoch + 1] = [np.array(v) for v in [*self.model.weights, *self.model.optimizer.variables]]

    run = Run(tmp_path / "run")
    run.update_state(status="running", epochs_completed=0, epochs_planned=6)
    recorder = callbacks.RunRecorder(run, "score", CheckpointConfig(mode="min"), plots=False)
    model, recorder.whole = head_in_whole()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
    model.fit(x, y, epochs=6, batch_size=4, verbose=0, callbacks=[Score(), recorder, Keep()])
    assert checkpoint_info(run.checkpoints / "best.keras")["epoch"] == 2
    assert checkpoint_info(run.checkpoints / "last.keras")["epoch"] == 6
    for name, epoch in (("best", 2), ("last", 6)):
        saved = load_checkpoint(run.checkpoints / f"{name}.keras")
        values = [np.array(v) for v in [*saved.weights, *saved.optimizer.variables]]
        assert int(saved.optimizer.iterations) == 4 * epoch
        for got, expected in zip(values, after[epoch], strict=True):
            np.testing.assert_array_equal(got, expected)
    for got, expected in zip([*model.weights, *model.optimizer.variables], after[6], strict=True):
        np.testing.assert_array_equal(np.array(got), expected)  # put back after the held values were saved
    assert json.loads((run.path / "state.json").read_text())["best"]["epoch"] == 2


class LoggedValues(keras.callbacks.Callback):
    """Before the recorder: puts each epoch's value of `name` in the logs it reads."""

    def __init__(self, name: str, values: list[float]):
        super().__init__()
        self.name, self.values = name, iter(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.name] = next(self.values)


def best_epoch(tmp_path, monitor: str, values: list[float], mode: str = "auto") -> int:
    """The epoch best.keras records after a fit whose monitored value is `values`, one an epoch."""
    from cnnrun.config import CheckpointConfig
    from cnnrun.training.callbacks import RunRecorder

    run = Run(tmp_path / "run")
    run.update_state(status="running", epochs_completed=0, epochs_planned=len(values))
    recorder = RunRecorder(run, monitor, CheckpointConfig(mode=mode), plots=False)
    x, y = np.zeros((4, 4), "float32"), np.zeros(4, "int64")
    small_model().fit(x, y, epochs=len(values), verbose=0, callbacks=[LoggedValues(monitor, values), recorder])
    return checkpoint_info(run.checkpoints / "best.keras")["epoch"]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_an_epoch_that_only_equals_the_best_value_does_not_replace_best_keras(tmp_path, mode):
    # min: 5, 3, 3, 4 improves at epoch 2 only; max: the negatives, likewise
    values = [5.0, 3.0, 3.0, 4.0] if mode == "min" else [-5.0, -3.0, -3.0, -4.0]
    assert best_epoch(tmp_path, "score", values, mode) == 2


@pytest.mark.parametrize("monitor", ["val_accuracy", "val_auc", "val_precision", "val_recall", "val_f1_score",
                                     "val_loss"])
def test_in_auto_mode_an_accuracy_like_monitor_keeps_its_largest_value_and_a_loss_its_smallest(tmp_path, monitor):
    values = [0.6, 0.2, 0.4] if monitor == "val_loss" else [0.2, 0.6, 0.4]
    assert best_epoch(tmp_path, monitor, values) == 2  # 0.2 the smallest loss, 0.6 the largest of the others


def test_a_restored_plateau_cooldown_goes_on_counting_and_is_saved_again(tmp_path):
    from cnnrun.config import CheckpointConfig
    from cnnrun.training.callbacks import RunRecorder

    run = Run(tmp_path / "run")
    run.update_state(status="running", epochs_completed=2, epochs_planned=3)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, cooldown=3, min_delta=100.0)
    restored = {"reduce_lr_on_plateau": {"wait": 0, "best": 0.5, "cooldown_counter": 2}}
    recorder = RunRecorder(run, "loss", CheckpointConfig(), plots=False, stateful={"reduce_lr_on_plateau": plateau},
                           restored=restored)
    model = small_model()
    model.optimizer.learning_rate.assign(0.01)
    x, y = np.zeros((4, 4), "float32"), np.zeros(4, "int64")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[plateau, recorder])
    # in cooldown: the count goes 2 → 1, the wait stays 0 and the rate is not reduced (patience 1 would have)
    saved = json.loads((run.path / "state.json").read_text())["callbacks"]["reduce_lr_on_plateau"]
    assert saved["cooldown_counter"] == 1 and saved["wait"] == 0
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
