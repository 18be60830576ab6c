"""`cnnrun profile` on every config in configs/, as a user runs it, on tiny stand-ins for each config's data: the
same network, optimizer, precision and pipeline, a batch of 4 and one timed step.

What changes from the shipped config, and only that: the data (a CIFAR-10 JPEG tree of random pictures,
Fashion-MNIST idx files of random pictures, class folders of flat pictures, fewer shapes), the held-out counts
that would not fit them, ImageNet weights Keras would download (no network in tests: `weights: null`, the same
layers; so too a weights file in ../shared/weights where that folder is absent) and a pretrained run folder that
does not exist here (`init_from: null`, so no head to replace). The FLOP formulas and the timings themselves are
checked against hand counts in tests/test_profile.py.

A config that is its base with other numbers or callbacks only (`vars`, epochs, batch size, classes, callbacks:
cifar10_resnet56 is cifar10_resnet20 at n = 9) trains the same kind of step as its base, which is profiled here; it
is inspected instead (validated and its model built, as `cnnrun inspect` does), which leaves out 35 s of the suite's
time, 25 s of them ResNet-56's profile. Its model's parameters are checked elsewhere
(tests/test_graph.py builds ResNet-56 beside Keras' own).
"""

import re

import numpy as np
import pytest
import yaml
from PIL import Image

from cnnrun.config.load import resolve_config
from tests.conftest import PROJECT, run_here
from tests.files import fashion_files, jpeg_tree

CONFIGS = sorted((PROJECT / "configs").glob("*.yaml"))
# what a config may change of its base and still train its base's kind of step (see the module)
SAME_STEP = ("description", "vars", "model.vars", "train.epochs", "train.batch_size", "dataset.classes", "callbacks")


def same_step_as_base(path) -> bool:
    """Whether `path` names a base and sets nothing of its own but SAME_STEP's keys (a section, or its keys)."""
    own = yaml.safe_load(path.read_text())

    def allowed(key, value) -> bool:
        return key in SAME_STEP or isinstance(value, dict) and all(f"{key}.{sub}" in SAME_STEP for sub in value)

    return "base" in own and all(allowed(key, value) for key, value in own.items() if key != "base")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    pets = root / "cats_and_dogs"
    for k, name in enumerate(("cats", "dogs")):
        (pets / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((40, 40, 3), 60 * k + i, np.uint8)).save(pets / name / f"{i}.jpg")
    return {"cifar10": jpeg_tree(root / "cifar10", train=3, test=1),
            "fashion_mnist": fashion_files(root / "fashion_mnist", train=20, test=4), "image_folder": pets}


def tiny_data(path, data) -> list[str]:
    """The `--set` overrides that put `path`'s experiment on the tiny data (see the module)."""
    doc = resolve_config(path)
    dataset, sets = doc["dataset"], ["train.batch_size=4"]
    if dataset["name"] == "image_folder":
        sets.append(f"dataset.path={data['image_folder']}")
    elif dataset["name"] == "shapes":
        sets += ["dataset.num_samples=16", "dataset.test_samples=0"]
    else:
        sets.append(f"dataset.data_dir={data[dataset['name']]}")
    if dataset.get("holdout_first"):
        sets.append("dataset.holdout_first=2")
    if dataset.get("samples_per_class"):
        sets.append("dataset.samples_per_class=1")
    for i, layer in enumerate(doc["model"].get("layers") or []):
        weights = (layer.get("backbone") or {}).get("weights") if isinstance(layer, dict) else None
        if weights == "imagenet" or (weights and weights.endswith(".h5") and not (PROJECT / weights).exists()):
            sets.append(f"model.layers.{i}.backbone.weights=null")  # a download, or ../shared/weights absent
    if doc["model"].get("init_from"):
        sets += ["model.init_from=null", "model.replace_head=false"]
    return sets


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_profile_works_on_every_shipped_config(path, data):
    overrides = [item for setting in tiny_data(path, data) for item in ("--set", setting)]
    if same_step_as_base(path):
        assert not same_step_as_base(PROJECT / "configs" / yaml.safe_load(path.read_text())["base"])  # profiled
        result = run_here("inspect", path.relative_to(PROJECT), *overrides)
        assert result.returncode == 0, result.stderr
        assert re.search(r"Total params: [\d,]+", result.stdout), result.stdout
        return
    result = run_here("profile", path.relative_to(PROJECT), *overrides, "--steps", "1", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for row in ("step", "waiting for input", "FLOPs", "achieved", "precision", "ceiling", "instruction sets"):
        assert re.search(rf"^│ {row} +│", out, re.MULTILINE), (row, out)
    layers = re.findall(r"^│ (\S+) +│ (\S+) +│ +([\d.]+ [kMG]?FLOP|not counted) │ +([\d.]+ m?s) │ +([\d.]+)% │",
                        out, re.MULTILINE)
    rows = [row for row in layers if row[0] != "all"]
    table = out[out.index("per layer:"):out.index("│ all layers")]
    assert len(rows) == table.count("\n│ ") >= 3, out  # every layer timed: none `not timed`
    # each layer's share of the layers' time as printed (one decimal each) adds up to the whole
    assert sum(float(row[4]) for row in rows) == pytest.approx(100, abs=0.05 * len(rows) + 0.1)
    # the table's total FLOPs a picture is the one the summary states
    total = re.search(r"^│ all layers +│ +│ +([\d.]+ [kMG]?FLOP) │", out, re.MULTILINE)
    assert total and f"│ FLOPs             │ {total[1]} forward per picture" in out, out
    assert ("is a sweep file" in out) == ("sweep" in resolve_config(path))
