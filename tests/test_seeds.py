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
