"""Config loading: base inheritance, --set overrides, ${vars}, and what `config show` prints."""

import os
import subprocess
import sys

import pytest
import yaml

from cnnrun.config import experiment_to_yaml, load_experiment, resolve_config
from cnnrun.errors import UserError
from tests.conftest import PROJECT, run_here, tiny_config


def test_base_merges_sections_and_replaces_lists(write_config):
    write_config(tiny_config(train={"epochs": 5, "batch_size": 8}), "base.yaml")
    child = write_config({"base": "base.yaml", "train": {"epochs": 9},
                          "compile": {"metrics": ["acc"]}}, "child.yaml")
    experiment = load_experiment(child)
    assert experiment.train.epochs == 9
    assert experiment.train.batch_size == 8  # kept from the base
    assert experiment.compile.metrics == ["accuracy"]  # list replaced, alias made canonical
    assert experiment.name == "tiny"


def test_base_loop_is_an_error(write_config):
    write_config({"base": "b.yaml"}, "a.yaml")
    b = write_config({"base": "a.yaml"}, "b.yaml")
    with pytest.raises(UserError, match="loop"):
        load_experiment(b)


def test_set_overrides_read_values_as_yaml(write_config):
    path = write_config(tiny_config())
    experiment = load_experiment(path, ["train.epochs=3", "augmentation.zoom_range=[0.9, 1.2]",
                                        "model.layers.0.Conv2D.filters=7", "callbacks.early_stopping.patience=2"])
    assert experiment.train.epochs == 3
    assert experiment.augmentation.zoom_range == (0.9, 1.2)
    assert experiment.model.layers[0]["Conv2D"]["filters"] == 7
    assert experiment.callbacks.early_stopping.patience == 2


@pytest.mark.parametrize("assignment, message", [
    ("train.epochs", "KEY=VALUE"),
    ("model.layers.9.Conv2D=1", "not an index"),
    ("seed.x=1", "is a value, not a section"),
])
def test_bad_overrides(write_config, assignment, message):
    with pytest.raises(UserError, match=message):
        load_experiment(write_config(tiny_config()), [assignment])


def test_vars_substitute_with_arithmetic_and_keep_types(write_config):
    config = tiny_config(vars={"width": 4})
    config["model"] = {"vars": {"base": 8}, "layers": [
        {"Conv2D": {"filters": "${base * 2}", "kernel_size": 3}},
        {"Flatten": {}},
        {"Dense": {"units": "${width + base}", "name": "dense_${base}"}},
        {"Dense": {"units": "${num_classes}"}},
    ]}
    experiment = load_experiment(write_config(config), ["model.vars.base=16"])
    layers = experiment.model.layers
    assert layers[0]["Conv2D"]["filters"] == 32
    assert layers[2]["Dense"] == {"units": 20, "name": "dense_16"}
    assert layers[3]["Dense"]["units"] == "${num_classes}"  # filled in from the dataset when built


@pytest.mark.parametrize("expression, message", [
    ("${nope}", "unknown variable 'nope'"),
    ("${__import__('os')}", "not a variable or arithmetic"),
    ("${base.__class__}", "not a variable or arithmetic"),
    ("${base +}", "not a valid expression"),
])
def test_vars_are_safe(write_config, expression, message):
    config = tiny_config()
    config["model"] = {"vars": {"base": 8}, "layers": [{"Dense": {"units": expression}}]}
    with pytest.raises(UserError, match=message):
        load_experiment(write_config(config))


def test_every_shipped_config_resolves():
    for path in sorted((PROJECT / "configs").glob("*.yaml")):
        doc = resolve_config(path)
        assert "${" not in yaml.safe_dump({k: v for k, v in doc.items() if k != "model"}), path


def test_config_show_prints_resolved_config(write_config):
    path = write_config(tiny_config())
    result = run_here("config", "show", path, "--set", "train.epochs=4")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["train"]["epochs"] == 4
    assert shown["train"]["shuffle"] is True  # defaults are filled in
    assert shown["callbacks"]["checkpoint"]["monitor"] == "val_loss"


def test_a_long_string_is_written_on_one_line_and_reads_back(write_config):
    description = "A description far longer than eighty columns, " * 6 + "end."  # 300 characters
    experiment = load_experiment(write_config(tiny_config(description=description)))
    text = experiment_to_yaml(experiment)
    assert f"description: {description}" in text.splitlines()
    assert load_experiment(write_config(text, "config.yaml")).description == description


def test_a_config_error_and_a_good_config_answer_without_tensorflow_or_keras(write_config):
    bad = write_config(tiny_config(dataset={"name": "shapes", "color_mode": "rgb"}), "bad.yaml")
    good = write_config(tiny_config(), "good.yaml")
    script = f"""
import sys
from cnnrun.config import load_experiment
from cnnrun.errors import UserError
try:
    load_experiment({str(bad)!r})
    raise SystemExit("no error")
except UserError:
    pass
load_experiment({str(good)!r}, ["train.epochs=3"])
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"tensorflow", "keras", "jax", "matplotlib"}})
print(",".join(heavy) or "none")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"
