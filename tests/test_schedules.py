"""Learning-rate schedules: each gives the rate worked out by hand, in steps or the run's real epochs, across a resume.

The references are hand computations (the formulas of the Keras documentation, written out in numpy) at chosen
steps; "step" is Keras' `iterations`, the count of updates made before the one in question.
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from cnnrun.config import load_experiment
from cnnrun.config.schedules import SCHEDULES, parse_schedule
from cnnrun.model.compiling import make_optimizer
from cnnrun.model.schedules import PiecewiseLinearDecay, describe_learning_rate, learning_rate_at, make_learning_rate
from tests.conftest import PROJECT, history, only_run, run_here, tiny_config
from tests.test_errors import assert_user_error


def rates(value: dict, steps: list[int], steps_per_epoch: int | None = None, scale: float = 1.0) -> list[float]:
    """The rates a real Keras optimizer made from `value` uses at `steps`."""
    optimizer = keras.optimizers.SGD(learning_rate=make_learning_rate(value, steps_per_epoch, scale))
    return [learning_rate_at(optimizer, step) for step in steps]


def cosine(step: float, start: float, target: float, warmup: float, decay: float, alpha: float) -> float:
    """Keras' CosineDecay with warm-up, as its documentation writes it."""
    if step < warmup:
        return start + (target - start) * step / warmup
    fraction = min(step - warmup, decay) / decay
    return target * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * fraction)) + alpha)


STEPS = [0, 1, 31_999, 32_000, 47_999, 48_000, 64_000]
CASES = {
    # He et al.: 0.1, ÷10 after 32k and 48k updates
    "piecewise_constant in steps": (
        {"schedule": "piecewise_constant", "boundaries": [32000, 48000], "values": [0.1, 0.01, 0.001]}, None,
        STEPS, [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
    # 352 steps per epoch: epochs 1–91 (steps 0–32031) at 0.1, epochs 92–136 at 0.01, then 0.001
    "piecewise_constant in epochs": (
        {"schedule": "piecewise_constant", "boundaries": [91, 136], "values": [0.1, 0.01, 0.001], "unit": "epochs"},
        352, [0, 91 * 352 - 1, 91 * 352, 136 * 352 - 1, 136 * 352, 200 * 352], [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
    "cosine with warm-up in epochs": (
        {"schedule": "cosine", "initial_learning_rate": 0.0, "warmup_target": 0.1, "warmup_steps": 5,
         "decay_steps": 95, "alpha": 0.1, "unit": "epochs"},
        10, [0, 25, 49, 50, 100, 525, 999, 1000, 5000],
        [cosine(s, 0.0, 0.1, 50, 950, 0.1) for s in [0, 25, 49, 50, 100, 525, 999, 1000, 5000]]),
    "cosine without warm-up": (
        {"schedule": "cosine", "initial_learning_rate": 0.2, "decay_steps": 1000},
        None, [0, 250, 500, 1000, 2000], [0.2, 0.1 * (1 + math.cos(math.pi / 4)), 0.1, 0.0, 0.0]),
    "exponential": (
        {"schedule": "exponential", "initial_learning_rate": 0.1, "decay_steps": 1000, "decay_rate": 0.96},
        None, [0, 500, 1000, 2500], [0.1 * 0.96 ** (s / 1000) for s in [0, 500, 1000, 2500]]),
    "exponential in stairs of epochs": (
        {"schedule": "exponential", "initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5,
         "staircase": True, "unit": "epochs"},
        10, [0, 19, 20, 39, 40, 65], [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125]),
    "piecewise_linear one cycle in epochs": (
        {"schedule": "piecewise_linear", "points": [[0, 0.0], [15, 0.4], [30, 0.0]], "unit": "epochs"},
        10, [0, 75, 150, 225, 300, 1000], [0.0, 0.2, 0.4, 0.2, 0.0, 0.0]),
    "piecewise_linear held before its first point": (
        {"schedule": "piecewise_linear", "points": [[100, 0.1], [200, 0.3]]},
        None, [0, 100, 150, 199, 250], [0.1, 0.1, 0.2, 0.298, 0.3]),
}


@pytest.mark.parametrize("case", CASES)
def test_each_schedule_gives_the_hand_computed_rate_at_chosen_steps(case):
    value, steps_per_epoch, steps, expected = CASES[case]
    assert rates(value, steps, steps_per_epoch) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_scale_learning_rate_scales_every_rate_of_a_schedule():
    value = {"schedule": "cosine", "initial_learning_rate": 0.01, "warmup_target": 0.1, "warmup_steps": 10,
             "decay_steps": 100}
    expected = [4 * cosine(s, 0.01, 0.1, 10, 100, 0.0) for s in (0, 5, 60, 200)]
    assert rates(value, [0, 5, 60, 200], scale=4) == pytest.approx(expected, rel=1e-5)
    assert rates({"schedule": "piecewise_linear", "points": [[0, 0.1], [10, 0.2]]}, [5], scale=2) == \
        pytest.approx([0.3])


@pytest.mark.parametrize("optimizer, expected", [
    ({"name": "sgd", "learning_rate": 0.05}, [0.1, 0.1]),
    ("rmsprop", [0.002, 0.002]),  # RMSprop's own default rate, 0.001
    ({"name": "sgd", "learning_rate": {"schedule": "piecewise_constant", "boundaries": [2], "values": [0.05, 0.01],
                                       "unit": "epochs"}}, [0.1, 0.02]),
])
def test_scale_learning_rate_linear_multiplies_a_number_the_default_and_a_schedule(write_config, optimizer, expected):
    config = tiny_config(compile={"optimizer": optimizer}, train={"scale_learning_rate": "linear"})
    experiment = load_experiment(write_config(config))
    made = make_optimizer(experiment, steps_per_epoch=3, replicas=2)
    assert [learning_rate_at(made, 5), learning_rate_at(made, 6)] == pytest.approx(expected)


def test_the_header_describes_a_schedule_and_its_rate_now():
    value = {"schedule": "piecewise_constant", "boundaries": [91, 136], "values": [0.1, 0.01, 0.001],
             "unit": "epochs"}
    optimizer = keras.optimizers.SGD(learning_rate=make_learning_rate(value, 10))
    assert describe_learning_rate(optimizer, parse_schedule(value)) == \
        "0.1, 0.01 after 91 epochs, 0.001 after 136 epochs (now 0.1, step 0)"
    assert describe_learning_rate(keras.optimizers.SGD(learning_rate=0.05), None) == "0.05"


def test_the_header_describes_a_scaled_schedule_with_its_scaled_rates():
    value = {"schedule": "piecewise_constant", "boundaries": [91, 136], "values": [0.1, 0.01, 0.001],
             "unit": "epochs"}
    optimizer = keras.optimizers.SGD(learning_rate=make_learning_rate(value, 10, scale=4))
    # 4 × 0.1 = 0.4, 4 × 0.01 = 0.04, 4 × 0.001 = 0.004: the rates training uses, not the config's
    assert describe_learning_rate(optimizer, parse_schedule(value), scale=4) == \
        "0.4, 0.04 after 91 epochs, 0.004 after 136 epochs (now 0.4, step 0)"


@pytest.mark.parametrize("rate, fragments", [
    ({"schedule": "cosin", "initial_learning_rate": 0.1, "decay_steps": 10},
     ["compile.optimizer.learning_rate.schedule", "'cosin' is unknown", "did you mean 'cosine'"]),
    ({"boundaries": [10], "values": [0.1, 0.01]}, ["compile.optimizer.learning_rate.schedule: is missing"]),
    ({"schedule": "cosine", "initial_learning_rate": 0.1}, ["compile.optimizer.learning_rate.decay_steps",
                                                             "required"]),
    ({"schedule": "cosine", "initial_learning_rate": 0.1, "decay_steps": 10, "warmup": 2},
     ["unknown key 'warmup'", "did you mean 'warmup_steps'"]),
    ({"schedule": "piecewise_constant", "boundaries": [10, 5], "values": [0.1, 0.01, 0.001]},
     ["compile.optimizer.learning_rate.boundaries", "increasing"]),
    ({"schedule": "piecewise_constant", "boundaries": [10], "values": [0.1]},
     ["compile.optimizer.learning_rate.values", "one more value than boundaries"]),
    ({"schedule": "piecewise_constant", "boundaries": [10], "values": [0.1, 0.01], "unit": "epoch"},
     ["compile.optimizer.learning_rate.unit", "'steps' or 'epochs'"]),
    ({"schedule": "piecewise_linear", "points": [[0, 0.1], [0, 0.2]]},
     ["compile.optimizer.learning_rate.points", "increasing"]),
    ({"schedule": "exponential", "initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.5},
     ["compile.optimizer.learning_rate.decay_steps", "greater than 0"]),
    ({"schedule": "cosine", "initial_learning_rate": 0.1, "decay_steps": 10, "warmup_steps": 2},
     ["compile.optimizer.learning_rate.warmup_target", "warm-up needs"]),
    ("fast", ["compile.optimizer.learning_rate", "a number", "or a schedule mapping"]),
])
def test_a_bad_schedule_is_one_line_naming_its_key(write_config, rate, fragments):
    config = tiny_config(compile={"optimizer": {"name": "sgd", "learning_rate": rate}})
    path = write_config(config)
    assert_user_error(run_here("inspect", path), str(path), *fragments)


def test_reduce_lr_on_plateau_and_a_schedule_are_refused_together(write_config):
    rate = {"schedule": "exponential", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}
    config = tiny_config(compile={"optimizer": {"name": "sgd", "learning_rate": rate}},
                         callbacks={"reduce_lr_on_plateau": {"patience": 1}})
    assert_user_error(run_here("inspect", write_config(config)), "callbacks.reduce_lr_on_plateau",
                      "cannot change a learning-rate schedule")


def test_a_config_with_a_schedule_loads_without_tensorflow_or_keras(write_config):
    rate = {"schedule": "piecewise_linear", "points": [[0, 0.0], [2, 0.1]], "unit": "epochs"}
    path = write_config(tiny_config(compile={"optimizer": {"name": "sgd", "learning_rate": rate}}))
    script = f"""
import sys
from cnnrun.config import load_experiment
experiment = load_experiment({str(path)!r})
assert experiment.compile.schedule.unit == "epochs"
print(",".join(sorted({{m.split(".")[0] for m in sys.modules}} & {{"tensorflow", "keras", "jax"}})) or "none")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"




@pytest.mark.slow
def test_a_schedule_in_epochs_uses_the_real_steps_per_epoch(write_config, tmp_path):
    # epoch 1 at 0.1, epoch 2 at 0.01: only right if the boundary is the real steps per epoch (the model is first
    # compiled before the data has loaded, at one step per epoch)
    rate = {"schedule": "piecewise_constant", "boundaries": [1], "values": [0.1, 0.01], "unit": "epochs"}
    config = tiny_config(compile={"optimizer": {"name": "sgd", "learning_rate": rate}})
    result = run_here("train", write_config(config), "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "learning rate 0.1, 0.01 after 1 epoch (now 0.1, step 0)" in result.stdout
    run = only_run(tmp_path)
    assert [row["learning_rate"] for row in history(run)] == pytest.approx([0.1, 0.01])
    steps_per_epoch = -(-json.loads((run / "dataset.json").read_text())["sizes"]["train"] // 16)
    optimizer = keras.saving.load_model(run / "checkpoints" / "last.keras", safe_mode=True).optimizer
    assert int(optimizer.iterations.numpy()) == 2 * steps_per_epoch
    before, after = (learning_rate_at(optimizer, s) for s in (steps_per_epoch - 1, steps_per_epoch))
    assert (before, after) == pytest.approx((0.1, 0.01))


@pytest.mark.slow
def test_across_a_resume_every_epoch_has_the_rate_of_a_straight_run(write_config, tmp_path):
    # a rate that changes every step, in cnnrun's own schedule class (resume loads it from last.keras in safe mode)
    rate = {"schedule": "piecewise_linear", "points": [[0, 0.0], [1, 0.05], [4, 0.0]], "unit": "epochs"}
    config = tiny_config(compile={"optimizer": {"name": "sgd", "learning_rate": rate, "momentum": 0.9}},
                         train={"epochs": 4, "batch_size": 16})
    path = write_config(config)
    assert run_here("train", path, "--output-dir", tmp_path / "straight").returncode == 0
    assert run_here("train", path, "--output-dir", tmp_path / "split", "--set", "train.epochs=2").returncode == 0
    run = only_run(tmp_path / "split")
    resumed = run_here("resume", run, "--epochs", "4")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    straight, split = history(only_run(tmp_path / "straight")), history(run)
    assert [row["epoch"] for row in split] == [1, 2, 3, 4]
    steps_per_epoch = -(-json.loads((run / "dataset.json").read_text())["sizes"]["train"] // 16)
    # the rate of each epoch's last step, on the straight lines through the points
    last_steps = [epoch * steps_per_epoch - 1 for epoch in (1, 2, 3, 4)]
    by_hand = np.interp(last_steps, [0, steps_per_epoch, 4 * steps_per_epoch], [0.0, 0.05, 0.0])
    assert [row["learning_rate"] for row in split] == pytest.approx([row["learning_rate"] for row in straight],
                                                                    abs=1e-9)
    assert [row["learning_rate"] for row in split] == pytest.approx(list(by_hand), rel=1e-5)


@pytest.mark.slow
def test_a_checkpoint_with_cnnruns_schedule_and_rates_loads_in_safe_mode_in_a_new_process(tmp_path):
    from cnnrun.model.rates import RATED

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=RATED["SGD"](learning_rate=PiecewiseLinearDecay([0, 1500, 3000], [0.0, 0.4, 0.0]),
                                         rate_multipliers={"kernel": 3}), loss="mse")
    model.save(tmp_path / "last.keras")
    script = f"""
import sys
from pathlib import Path
assert "cnnrun.model.schedules" not in sys.modules  # the checkpoint loader alone must find the class
from cnnrun.model.checkpoints import load_checkpoint
optimizer = load_checkpoint(Path({str(tmp_path / "last.keras")!r})).optimizer
from cnnrun.model.schedules import learning_rate_at
print(type(optimizer._learning_rate).__name__, learning_rate_at(optimizer, 750), learning_rate_at(optimizer, 2250))
print(type(optimizer).__name__, optimizer.rate_multipliers)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    schedule, rates = result.stdout.splitlines()
    name, middle, down = schedule.split()
    assert name == "PiecewiseLinearDecay"
    assert rates == "SGDWithRates {'kernel': 3.0}"  # the multipliers go on after a resume
    assert (float(middle), float(down)) == pytest.approx((0.2, 0.2))


def test_every_schedule_has_its_own_table_in_the_readme_reference():
    from tests.test_config_reference import table_keys

    assert {name: table_keys(f"`compile.optimizer.learning_rate` with `schedule: {name}`") for name in SCHEDULES} == {
        "piecewise_constant": ["boundaries", "unit", "values"],
        "cosine": ["alpha", "decay_steps", "initial_learning_rate", "unit", "warmup_steps", "warmup_target"],
        "exponential": ["decay_rate", "decay_steps", "initial_learning_rate", "staircase", "unit"],
        "piecewise_linear": ["points", "unit"],
    }
