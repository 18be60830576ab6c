"""`model.init_from`: a new run starts from an earlier run's checkpoint, exactly the layers of the same name and
shapes; the reference for every weight is Keras' own loading of that checkpoint, and for a fresh layer the same
config built without `init_from` (the same seed draws the same initial weights)."""

import json
import shutil

import numpy as np
import pytest
import yaml

from cnnrun.config import validate_experiment
from tests.conftest import only_run, run_here, tiny_config
from tests.test_errors import assert_user_error

CONV = {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}
HEAD = {"Dense": {"units": "${num_classes}", "activation": "softmax"}}
# the earlier run's layers: conv2d, max_pooling2d, conv2d_1, flatten, dense
A_LAYERS = [{"Conv2D": CONV}, {"MaxPooling2D": 2}, {"Conv2D": CONV}, "Flatten", HEAD]
# one layer more, named `extra`: conv2d, conv2d_1 and dense match the run's
B_LAYERS = [{"Conv2D": CONV}, {"MaxPooling2D": 2}, {"Conv2D": CONV}, {"Conv2D": {**CONV, "name": "extra"}},
            "Flatten", HEAD]


def _config(classes: int = 4, layers=None, **model) -> dict:
    config = tiny_config(train={"epochs": 1, "batch_size": 16})
    config["dataset"]["num_classes"] = classes
    config["model"] = {"layers": layers or B_LAYERS, **model}
    return config


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """A run of 4 shapes classes, 1 epoch: the earlier run the others start from."""
    folder = tmp_path_factory.mktemp("a")
    config = _config(layers=A_LAYERS)
    config["name"] = "a"
    (folder / "a.yaml").write_text(yaml.safe_dump(config))
    result = run_here("train", folder / "a.yaml", "--output-dir", folder / "outputs")
    assert result.returncode == 0, result.stderr
    return only_run(folder / "outputs")


def _weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _built(config: dict) -> dict[str, list[np.ndarray]]:
    """The weights a new run of `config` starts with, by layer name."""
    from cnnrun.model.build import declared_info, new_model

    experiment = validate_experiment(config, "b.yaml")
    return _weights(new_model(experiment, declared_info(experiment), augment_in_model=False))


def _checkpoint(path) -> dict[str, list[np.ndarray]]:
    import keras

    return _weights(keras.saving.load_model(path))


def _same(mine: list[np.ndarray], theirs: list[np.ndarray]) -> bool:
    return len(mine) == len(theirs) and all(np.array_equal(m, t) for m, t in zip(mine, theirs, strict=True))


def test_a_new_model_takes_exactly_the_layers_of_the_same_name_and_shapes_from_best_keras(run_a):
    started = _built(_config(init_from=str(run_a)))
    fresh = _built(_config())
    best = _checkpoint(run_a / "checkpoints" / "best.keras")
    assert sorted(started) == ["conv2d", "conv2d_1", "dense", "extra"]
    for name in ("conv2d", "conv2d_1", "dense"):
        assert _same(started[name], best[name]), name
        assert not _same(fresh[name], best[name]), name  # the copy is not a coincidence of the seed
    assert _same(started["extra"], fresh["extra"])


def test_replace_head_keeps_a_fresh_last_dense_for_another_number_of_classes(run_a):
    from cnnrun.model.build import build_model
    from cnnrun.model.init_from import plan_init

    # 2 classes; conv2d_1 without a bias has other weights than the run's conv2d_1
    layers = [{"Conv2D": CONV}, {"MaxPooling2D": 2}, {"Conv2D": {**CONV, "use_bias": False}}, "Flatten", HEAD]
    config = _config(classes=2, layers=layers, init_from=str(run_a), replace_head=True)
    started, fresh = _built(config), _built(_config(classes=2, layers=layers))
    best = _checkpoint(run_a / "checkpoints" / "best.keras")
    assert _same(started["conv2d"], best["conv2d"])
    assert _same(started["conv2d_1"], fresh["conv2d_1"])
    assert _same(started["dense"], fresh["dense"]) and started["dense"][0].shape == (256, 2)

    experiment = validate_experiment(config, "b.yaml")
    matching = plan_init(build_model(experiment, (16, 16, 1), 2), experiment)
    assert matching.loaded == ["conv2d"]
    assert matching.new == {"conv2d_1": "weights [(3, 3, 4, 4)], the run's [(3, 3, 4, 4), (4,)]",
                            "dense": "the head (replace_head)"}


def test_an_experiments_folder_of_runs_means_its_latest_finished_run(run_a, tmp_path):
    """`init_from: outputs/NAME` takes the newest run that finished, not one still running or interrupted."""
    from cnnrun.model.build import build_model
    from cnnrun.model.init_from import plan_init

    runs = tmp_path / "a"
    older, newer, running = runs / "20260101-000000", runs / "20260102-000000", runs / "20260103-000000"
    for copy in (older, newer, running):
        shutil.copytree(run_a, copy)
    state = json.loads((running / "state.json").read_text())
    (running / "state.json").write_text(json.dumps({**state, "status": "interrupted"}))
    experiment = validate_experiment(_config(init_from=str(runs)), "b.yaml")
    assert plan_init(build_model(experiment, (16, 16, 1), 4), experiment).run == str(newer)


def test_a_run_stopped_early_is_finished_and_can_be_the_latest(run_a, tmp_path):
    from cnnrun.model.init_from import latest_finished

    runs = tmp_path / "a"
    older, newer = runs / "20260101-000000", runs / "20260102-000000"
    for copy in (older, newer):
        shutil.copytree(run_a, copy)
    state = json.loads((newer / "state.json").read_text())
    (newer / "state.json").write_text(json.dumps({**state, "status": "stopped_early"}))
    assert latest_finished(runs) == newer


def test_replace_head_leaves_the_last_dense_fresh_and_loads_an_earlier_one():
    import keras

    from cnnrun.model.init_from import Source, match_layers

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                              keras.layers.Dense(2, name="out")])
    source = Source("run", "best.keras", {"hidden": [np.zeros((4, 3)), np.zeros(3)],
                                          "out": [np.zeros((3, 2)), np.zeros(2)]})
    matching = match_layers(model, source, replace_head=True)
    assert matching.loaded == ["hidden"] and matching.new == {"out": "the head (replace_head)"}


def test_a_lock_of_this_very_process_is_no_live_holder(tmp_path):
    from cnnrun.model.init_from import live_holder
    from cnnrun.run_folder.lock import LOCK_NAME, Holder

    (tmp_path / LOCK_NAME).write_bytes(Holder.me().to_bytes())
    assert live_holder(tmp_path) is None


def test_last_takes_the_weights_of_last_keras(run_a, tmp_path):
    import keras

    copy = tmp_path / "a"
    shutil.copytree(run_a, copy)
    last = keras.saving.load_model(copy / "checkpoints" / "last.keras")
    kernel, bias = last.get_layer("conv2d").get_weights()
    last.get_layer("conv2d").set_weights([np.full_like(kernel, 0.5), bias])
    last.save(copy / "checkpoints" / "last.keras")

    assert np.all(_built(_config(init_from=f"{copy}:last"))["conv2d"][0] == 0.5)
    best = _checkpoint(copy / "checkpoints" / "best.keras")["conv2d"]
    assert _same(_built(_config(init_from=f"{copy}:best"))["conv2d"], best)
    assert not np.all(best[0] == 0.5)


def test_the_layers_of_a_nested_model_are_matched_by_their_path():
    import keras

    from cnnrun.model.init_from import Source, match_layers

    backbone = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                                 keras.layers.BatchNormalization(name="bn")], name="backbone")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, name="dense")(keras.layers.GlobalAveragePooling2D()(backbone(inputs)))
    model = keras.Model(inputs, outputs)
    zeros = [np.zeros(shape) for shape in [(3, 3, 3, 4), (4,)]]
    source = Source("run", "best.keras", {"backbone/conv": zeros, "backbone/bn": [np.zeros(8)] * 4,
                                          "conv": zeros, "dense": [np.zeros((4, 2)), np.zeros(2)]})
    matching = match_layers(model, source)
    assert matching.loaded == ["backbone/conv", "dense"]
    assert matching.new == {"backbone/bn": "weights [(4,), (4,), (4,), (4,)], the run's [(8,), (8,), (8,), (8,)]"}
    assert matching.status(backbone) == "1 loaded, 1 new"


def test_layer_names_do_not_depend_on_the_models_built_before_in_the_process():
    from cnnrun.model.build import build_model

    layers = [{"Conv2D": CONV}, {"Conv2D": {**CONV, "name": "conv2d"}}, {"MaxPooling2D": 2}, "Flatten", HEAD]
    experiment = validate_experiment(_config(layers=layers), "b.yaml")
    names = [[layer.name for layer in build_model(experiment, (16, 16, 1), 4).layers] for _ in range(2)]
    # Keras' names in a fresh process, but for the first Conv2D: `conv2d` is the second one's own name
    assert names == [["conv2d_1", "conv2d", "max_pooling2d", "flatten", "dense"]] * 2


def test_inspect_says_which_layers_the_run_gives_and_which_are_new(run_a, tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(_config(init_from=str(run_a))))
    result = run_here("inspect", path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"init from: {run_a} (best.keras): 3 layers loaded, 1 new (extra)" in lines
    assert [line.split("│")[-2].strip() for line in lines if "│" in line] == [
        "loaded", "", "loaded", "new: no layer of this name in the run", "", "loaded"]


@pytest.mark.slow
def test_a_run_records_what_it_loaded_and_resume_does_not_load_again(run_a, tmp_path):
    earlier = tmp_path / "earlier"
    shutil.copytree(run_a, earlier)
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(_config(init_from=str(earlier))))
    result = run_here("train", path, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    said = f"{earlier} (best.keras): 3 layers loaded, 1 new (extra)"
    assert any("init from" in line and said in line for line in result.stdout.splitlines()), result.stdout
    run = only_run(tmp_path / "out")
    record = {"run": str(earlier), "checkpoint": "best.keras", "loaded": ["conv2d", "conv2d_1", "dense"],
              "new": ["extra"]}
    assert json.loads((run / "meta.json").read_text())["init_from"] == record
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_from"] == f"{earlier}:best"

    shutil.rmtree(earlier)  # resume restores last.keras: it must not read the earlier run again
    resumed = run_here("resume", run, "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "init from" not in resumed.stdout
    meta = json.loads((run / "meta.json").read_text())
    assert meta["init_from"] == record and meta["resumed"][0]["at_epoch"] == 1


def _copy_of(run_a, tmp_path, change=None) -> str:
    """A copy of the earlier run with `change(best.keras)` done to its best checkpoint."""
    copy = tmp_path / "a"
    shutil.copytree(run_a, copy)
    change(copy / "checkpoints" / "best.keras")
    return str(copy)


OTHER_NAMES = [{"Conv2D": {**CONV, "name": "mine"}}, {"MaxPooling2D": 2}, "Flatten", {"Dense": {
    "units": "${num_classes}", "activation": "softmax", "name": "head"}}]
NO_DENSE = [{"Conv2D": {**CONV, "filters": "${num_classes}"}}, "GlobalAveragePooling2D", {"Activation": "softmax"}]

BAD = {  # what the model section says, given the earlier run and a folder of the test's own; what the line says
    "no such folder": (lambda a, tmp: {"init_from": str(tmp / "nowhere")},
                       ["model.init_from", "nowhere: no such run folder"]),
    "not a run": (lambda a, tmp: {"init_from": str(tmp / "empty")},
                  ["model.init_from", "empty is neither a run folder nor holds a finished run"]),
    "no best.keras": (lambda a, tmp: {"init_from": _copy_of(a, tmp, lambda path: path.unlink())},
                      ["model.init_from", "checkpoints/best.keras: missing", "a:last"]),
    "middle": (lambda a, tmp: {"init_from": f"{a}:middle"},
               ["model.init_from", "end with :best or :last", "':middle'"]),
    "damaged": (lambda a, tmp: {"init_from": _copy_of(a, tmp, lambda path: path.write_bytes(b"not a zip"))},
                ["model.init_from", "best.keras: damaged checkpoint",
                 "checkpoints/last.keras is intact: use model.init_from: "]),
    "loads nothing": (lambda a, tmp: {"init_from": str(a), "layers": OTHER_NAMES},
                      ["model.init_from", "nothing to load from", "this model has mine, head",
                       "the run has conv2d, conv2d_1, dense"]),
    "head of other shapes": (lambda a, tmp: {"init_from": str(a), "classes": 2},
                             ["model.init_from", "last Dense layer 'dense'", "set model.replace_head: true"]),
    "replace_head without a Dense": (lambda a, tmp: {"init_from": str(a), "replace_head": True, "layers": NO_DENSE},
                                     ["model.replace_head", "no Dense layer"]),
    "replace_head alone": (lambda a, tmp: {"replace_head": True}, ["model.replace_head: only with model.init_from"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_init_from_is_one_line_and_writes_nothing(run_a, tmp_path, case):
    (tmp_path / "empty").mkdir()
    model, fragments = BAD[case]
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(_config(**model(run_a, tmp_path))))
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()
