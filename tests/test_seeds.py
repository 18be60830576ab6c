"""`cnnrun train CONFIG --seeds N`: N sibling runs and the mean ± std of their test metrics."""

import json
import statistics

import pytest
import yaml

from tests.conftest import run_here, tiny_config


@pytest.mark.slow
def test_three_seeds_make_three_runs_and_print_their_mean_and_spread(write_config, tmp_path):
    config = tiny_config(train={"epochs": 1, "batch_size": 16}, output={"plots": False, "report": False})
    result = run_here("train", write_config(config), "--seeds", "3", "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    runs = sorted(p for p in (tmp_path / "tiny").iterdir() if p.is_dir())
    assert len(runs) == 3
    assert sorted(yaml.safe_load((run / "config.yaml").read_text())["seed"] for run in runs) == [3, 4, 5]
    accuracies = [json.loads((run / "scores.json").read_text())["best"]["accuracy"] for run in runs]
    mean, spread = statistics.fmean(accuracies), statistics.stdev(accuracies)
    line = next(line for line in result.stdout.splitlines() if "test accuracy, best.keras" in line)
    assert f"{mean:.4f} ± {spread:.4f}" in line
    assert "seeds" in result.stdout and "3, 4, 5" in result.stdout


def test_seeds_must_be_at_least_one(write_config):
    result = run_here("train", write_config(tiny_config()), "--seeds", "0")
    assert result.returncode == 2 and "--seeds" in result.stderr


def test_op_determinism_follows_each_experiment_in_one_process():
    """TensorFlow's op determinism is process-wide: a run asking for it turns it on, and the next run in the same
    process (a sweep's trial, the next seed) that does not ask has it off again, as TensorFlow itself reports."""
    from tensorflow.python.framework import config

    from cnnrun.config import validate_experiment
    from cnnrun.model.build import seed_everything

    was = config.is_op_determinism_enabled()
    try:
        for deterministic in (True, False, True, False):
            seed_everything(validate_experiment(tiny_config(train={"deterministic": deterministic}), "test"))
            assert config.is_op_determinism_enabled() is deterministic
    finally:
        (config.enable_op_determinism if was else config.disable_op_determinism)()
