"""`callbacks.lookahead`: airbench94's lookahead, against a hand-written loop that trains the same batches with
`train_on_batch` and applies `slow ← d·slow + (1 − d)·fast; fast ← slow` in numpy at the steps worked out by hand;
through `steps_per_execution`; a resumed run ending with the weights of a straight one; and its mistakes."""

import keras
import numpy as np
import pytest

from cnnrun.config import validate_experiment
from cnnrun.errors import UserError
from cnnrun.training.lookahead import Lookahead
from tests.conftest import history, run_here, tiny_config
from tests.test_cached_features import InterruptAt

BATCH, STEPS = 4, 6


def _model(execution: int = 1) -> keras.Model:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.5), steps_per_execution=execution,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(BATCH * STEPS, 3)).astype("float32"), rng.integers(0, 2, BATCH * STEPS)


def _by_hand(epochs: int, updates: dict[int, float]) -> list[np.ndarray]:
    """Train batch by batch; after step t (counted over the run) in `updates`, lerp with its decay."""
    model, (x, y) = _model(), _data()
    slow = [np.array(v.numpy()) for v in model.weights]
    for t in range(1, epochs * STEPS + 1):
        i = (t - 1) % STEPS
        model.train_on_batch(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
        if t in updates:
            d = updates[t]
            slow = [d * s + (1 - d) * np.asarray(v.numpy()) for s, v in zip(slow, model.weights, strict=True)]
            for v, s in zip(model.weights, slow, strict=True):
                v.assign(s)
    return [np.asarray(v.numpy()) for v in model.weights]


def _fitted(epochs: int, execution: int = 1, **lookahead) -> list[np.ndarray]:
    model, (x, y) = _model(execution), _data()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[Lookahead(**lookahead, epochs=epochs)])
    return [np.asarray(v.numpy()) for v in model.weights]


def _same(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    for mine, other in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, other, rtol=1e-5, atol=1e-6)


def test_every_four_steps_and_at_each_epoch_end_with_the_decay_growing_over_the_run():
    # 2 epochs of 6 steps, every 4: steps 4, 8 (multiples), 6 and 12 (epoch ends); d = 0.6 × (t/12)²
    updates = {t: 0.6 * (t / 12) ** 2 for t in (4, 6, 8, 12)}
    ours = _fitted(2, every=4, decay=0.6, power=2)
    _same(ours, _by_hand(2, updates))
    # and it did something: without the updates the weights are others
    assert not np.allclose(ours[0], _by_hand(2, {})[0], atol=1e-4)


def test_power_zero_keeps_the_decay_and_moving_statistics_take_part():
    updates = {t: 0.5 for t in (2, 4, 6)}
    ours = _fitted(1, every=2, decay=0.5, power=0)
    _same(ours, _by_hand(1, updates))


def test_with_steps_per_execution_the_update_comes_at_the_end_of_the_execution_that_reaches_a_multiple():
    # executions of 3 steps end at 3 and 6: every 2 is reached within the first (at 2) and the second (at 4, 6)
    updates = {3: 0.5 * (3 / 6), 6: 0.5}
    _same(_fitted(1, execution=3, every=2, decay=0.5, power=1), _by_hand(1, updates))


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_a_straight_one(tmp_path):
    from cnnrun.model.checkpoints import load_checkpoint
    from cnnrun.training.trainer import Trainer, resume_run, train_experiment

    def experiment(epochs: int, name: str):
        config = tiny_config(train={"epochs": epochs, "batch_size": 16}, callbacks={"lookahead": {"every": 2}},
                             output={"dir": str(tmp_path / name), "plots": False, "report": False})
        config["dataset"]["test_samples"] = 0
        return validate_experiment(config, f"{name}.yaml")

    straight = train_experiment(experiment(3, "straight")).path
    with Trainer.new(experiment(3, "resumed"), callbacks=[InterruptAt(1)]) as trainer:
        with pytest.raises(SystemExit):  # Ctrl-C as epoch 2 begins: epoch 1 is in the run folder
            trainer.fit()
    resumed = resume_run(trainer.run.path).path
    assert [row["epoch"] for row in history(resumed)] == [1, 2, 3]
    ours, theirs = (load_checkpoint(run / "checkpoints" / "last.keras") for run in (resumed, straight))
    _same([np.asarray(v) for v in ours.weights], [np.asarray(v) for v in theirs.weights])


def test_mistakes_are_one_line(write_config):
    config = tiny_config(callbacks={"lookahead": {"every": 0}})
    result = run_here("train", write_config(config))
    assert result.returncode == 2 and "callbacks.lookahead.every" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError, match="callbacks.lookahead: not with compile.optimizer.use_ema"):
        validate_experiment(tiny_config(callbacks={"lookahead": True},
                                        compile={"optimizer": {"name": "adam", "use_ema": True}}), "t.yaml")
    assert validate_experiment(tiny_config(callbacks={"lookahead": True}), "t.yaml").callbacks.lookahead.every == 5

