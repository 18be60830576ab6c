"""The run folder's layout: one module names every file and holds every schema, and a run folder written by the
previous release still opens with resume, evaluate, predict, runs and compare."""

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrun.errors import UserError
from cnnrun.run_folder import files
from cnnrun.run_folder.folder import Run
from tests.conftest import PROJECT, history, run_here, tiny_config

NAMES = {files.CONFIG, files.STATE, files.META, files.DATASET, files.SPLITS, files.BAD_FILES, files.SCORES,
         files.HISTORY, files.HISTORY_PLOT, files.SUMMARY, files.SAMPLES, files.CHECKPOINTS, files.LOCK,
         files.MLFLOW, "best.keras", "last.keras"}
OWNER = "cnnrun/run_folder/files.py"
# `cnnrun data show` writes its own samples.png into a folder of the user's, not a run folder (and the data
# package sits below the run folder's, so it cannot ask it)
ELSEWHERE = {("cnnrun/data/samples.py", "samples.png")}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def run_folder_paths_built(source: str) -> list[str]:
    """The run-folder file names a module's code spells itself: a string that is one of them, or a path joined
    with an f-string that ends in `.keras` (a checkpoint's name made by hand). Docstrings do not count."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in NAMES and id(node) not in docstrings:
            found.append(node.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.JoinedStr):
            last = node.right.values[-1]
            if isinstance(last, ast.Constant) and str(last.value).endswith(".keras"):
                found.append(ast.unparse(node.right))
    return found


def test_no_module_but_the_run_folders_own_spells_a_run_folder_file():
    spelt = {}
    for path in sorted((PROJECT / "cnnrun").rglob("*.py")):
        name = path.relative_to(PROJECT).as_posix()
        found = [value for value in run_folder_paths_built(path.read_text()) if (name, value) not in ELSEWHERE]
        if found and name != OWNER:
            spelt[name] = found
    assert spelt == {}


def test_the_check_finds_a_name_spelt_by_hand_and_leaves_docstrings_and_messages_alone():
    source = '''"""Writes state.json."""
def f(run, which):
    """Reads "meta.json"."""
    print(f"saving {which}.keras")
    return run.path / "state.json", run.checkpoints / f"{which}.keras"
'''
    assert sorted(run_folder_paths_built(source)) == ["f'{which}.keras'", "state.json"]


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("epoch,loss\n1,0.5", "line 2 is cut short"),
    ("epoch,loss\n1,abc\n", "line 2, loss: 'abc' is not a number"),
    ("epoch,loss\n1\n", "line 2 has 1 fields where the header has 2"),
    ("epoch,loss\n2,0.5\n", "line 2 is epoch 2, not 1"),
    ("loss,epoch\n0.5,1\n", "its header line is 'loss,epoch'"),
    ("epoch,loss\n1.5,0.5\n", "line 2, epoch: '1.5' is not a whole number"),
    ("epoch,phase,loss\n1,1.5,0.5\n", "line 2, phase: '1.5' is not a whole number"),
])
def test_a_damaged_history_is_one_line_naming_the_file_and_the_line(tmp_path, text, says):
    (tmp_path / files.HISTORY).write_text(text)
    with pytest.raises(UserError) as caught:
        Run(tmp_path).read_history()
    assert str(caught.value).startswith(f"{tmp_path / files.HISTORY}: damaged: {says}")
    assert "\n" not in str(caught.value)


def test_a_history_reads_back_as_written_with_missing_keys_left_out(tmp_path):
    rows = [{"epoch": 1, "phase": 1, "loss": 0.5}, {"epoch": 2, "phase": 2, "loss": 0.25, "val_loss": 0.75}]
    Run(tmp_path).write_history(rows)
    assert (tmp_path / files.HISTORY).read_text() == "epoch,phase,loss,val_loss\n1,1,0.5,\n2,2,0.25,0.75\n"
    assert Run(tmp_path).read_history() == rows
    # read and written again, as resume does: the same file (a phase stays a whole number, `1`, not `1.0`)
    Run(tmp_path).write_history(Run(tmp_path).read_history())
    assert (tmp_path / files.HISTORY).read_text() == "epoch,phase,loss,val_loss\n1,1,0.5,\n2,2,0.25,0.75\n"
    assert Run(tmp_path / "none").read_history() == []


SUMMARY_AFTER_RESUME = """Model: "tiny"
 Total params: 2,435 (9.52 KB)
 Trainable params: 811 (3.17 KB)
 Non-trainable params: 0 (0.00 B)
 Optimizer params: 1,624 (6.35 KB)
"""


@pytest.mark.parametrize("summary, params", [
    (SUMMARY_AFTER_RESUME, 811),  # Keras' total counts Adam's two slots per weight and its step counter
    (" Total params: 52,980 (206.95 KB)\n", 52980),  # a summary without the split
    ("no counts here\n", None),
])
def test_the_parameters_are_the_models_own(summary, params):
    assert files.parameters_in(summary) == params


def test_scores_splits_and_meta_are_checked_against_their_schemas(tmp_path):
    run = Run(tmp_path)
    run.write_scores({"best": {"accuracy": 0.5, "loss": 1.0}, "last": {"accuracy": 0.5, "loss": 1.0}})
    assert run.read_scores() == {"best": {"accuracy": 0.5, "loss": 1.0}, "last": {"accuracy": 0.5, "loss": 1.0}}
    (tmp_path / files.SCORES).write_text('{"best": {"accuracy": "high"}}')
    with pytest.raises(UserError, match=r"scores\.json: .* is not a cnnrun score record \(best\.accuracy: "):
        run.read_scores()
    (tmp_path / files.SPLITS).write_text('{"root": "/data", "train": ["a.png"], "extra": 1}')
    with pytest.raises(UserError, match=r"splits\.json: .* is not a cnnrun split record \(extra: "):
        run.read_splits()
    (tmp_path / files.META).write_text('{"started": "last tuesday"}')
    with pytest.raises(UserError, match=r"meta\.json: started: 'last tuesday' is not an ISO time$"):
        run.read_meta()
    (tmp_path / files.DATASET).write_text('{"class_names": ["a"], "input_shape": "16x16", "label_mode": "int", '
                                          '"normalize": "rescale"}')
    with pytest.raises(UserError, match=r"dataset\.json: .* is not a cnnrun dataset description \(input_shape: "):
        run.dataset_info()


def test_meta_json_holds_every_key_even_when_empty_and_the_optional_records_only_when_there_are_some(tmp_path):
    run = Run(tmp_path)
    run.write_meta({"command": ["cnnrun", "train", "tiny.yaml"], "seed": 3, "started": "2026-11-26T10:15:00+00:00"})
    # the keys the previous release wrote, empty or null as they are, and no init_from, config or cached_features
    assert json.loads((tmp_path / files.META).read_text()) == {
        "command": ["cnnrun", "train", "tiny.yaml"], "seed": 3, "git_commit": None, "versions": {}, "devices": [],
        "distribution": {}, "platform": None, "started": "2026-11-26T10:15:00+00:00", "ended": None, "resumed": []}
    run.write_meta({"seed": 3, "init_from": {"run": "outputs/base/1"}, "config": {"name": "tiny"}})
    written = json.loads((tmp_path / files.META).read_text())
    assert written["init_from"] == {"run": "outputs/base/1"} and written["config"] == {"name": "tiny"}
    assert "cached_features" not in written and written["command"] == []


# ---------------------------------------------------------------- a run folder of the previous release

OLD_STATE = {"status": "completed", "epochs_completed": 1, "epochs_planned": 1,
             "best": {"monitor": "val_loss", "value": 1.1330835819244385, "epoch": 1}, "callbacks": {},
             "fit_seconds": 1.32, "ended": "2026-11-26T10:15:02+00:00", "augmentation": None,
             "fit_ended": "completed"}
OLD_META = {"command": ["cnnrun", "train", "tiny.yaml"], "seed": 3, "git_commit": None,
            "versions": {"cnnrun": "0.1.0", "python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1",
                         "numpy": "2.4.6"},
            "devices": ["/cpu:0"], "distribution": {"backend": "tensorflow", "strategy": "none", "replicas": 1,
                                                     "processes": 1, "devices": ["/cpu:0"]},
            "platform": "Linux", "started": "2026-11-26T10:15:00+00:00", "ended": "2026-11-26T10:15:02+00:00",
            "resumed": [{"at_epoch": 0, "time": "2026-11-26T10:15:01+00:00", "command": ["cnnrun", "resume"],
                         "distribution": {"backend": "tensorflow"}}]}
OLD_DATASET = {"class_names": ["circle", "square", "triangle"], "input_shape": [16, 16, 1],
               "label_mode": "categorical", "normalize": "rescale", "mean": 0.0, "std": 1.0,
               "sizes": {"train": 90, "validation": 30, "test": 40}}
OLD_HISTORY = ("epoch,accuracy,loss,val_accuracy,val_loss,learning_rate\n"
               "1,0.30000001192092896,1.2132422924041748,0.4000000059604645,1.1330835819244385,0.0010000000474974513\n")
OLD_SUMMARY = 'Model: "tiny"\n Total params: 811 (3.17 KB)\n Trainable params: 811 (3.17 KB)\n' \
              ' Non-trainable params: 0 (0.00 B)\n'
OLD_SCORES = {"best": {"accuracy": 0.325, "loss": 1.1325}, "last": {"accuracy": 0.325, "loss": 1.1325}}


def previous_release_run(folder: Path) -> Path:
    """A run folder as the previous release wrote it, file by file, with checkpoints of a model built by hand
    (the tiny experiment's layers, compiled as cnnrun compiles it, Adam after one epoch of 6 steps)."""
    import keras

    from cnnrun.atomic import atomic_save_model
    from cnnrun.config import experiment_to_yaml, validate_experiment

    run = folder / "tiny" / "20261126-101500"
    (run / "checkpoints").mkdir(parents=True)
    experiment = validate_experiment(tiny_config(train={"epochs": 1, "batch_size": 16}, output={"plots": False}),
                                     "test")
    (run / "config.yaml").write_text(experiment_to_yaml(experiment))
    for name, content in (("state.json", OLD_STATE), ("meta.json", OLD_META), ("dataset.json", OLD_DATASET),
                          ("scores.json", OLD_SCORES)):
        (run / name).write_text(json.dumps(content, indent=2) + "\n")
    (run / "history.csv").write_text(OLD_HISTORY)
    (run / "summary.txt").write_text(OLD_SUMMARY)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")], name="tiny")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(6)  # one epoch: 90 training shapes in batches of 16
    atomic_save_model(model, run / "checkpoints" / "best.keras", info=OLD_STATE["best"])
    atomic_save_model(model, run / "checkpoints" / "last.keras", info={"epoch": 1})
    return run


@pytest.mark.slow
def test_a_run_folder_of_the_previous_release_opens_with_every_command(tmp_path):
    run = previous_release_run(tmp_path / "outputs")
    picture = tmp_path / "shape.png"
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(picture)

    listed = run_here("runs", tmp_path / "outputs", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["status"], row["epochs"], row["params"], row["test_best"], row["problem"]) == \
        ("completed", 1, 811, 0.325, None)
    for args in (["evaluate", run], ["predict", picture, "--run", run]):
        result = run_here(*args)
        assert result.returncode == 0, (args, result.stderr[-2000:])
    before = shutil.copytree(run, tmp_path / "before")

    result = run_here("resume", run, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [int(row["epoch"]) for row in history(run)] == [1, 2]
    assert history(run)[0] == history(before)[0]  # the finished epoch as it was
    meta = json.loads((run / "meta.json").read_text())
    assert [entry["at_epoch"] for entry in meta["resumed"]] == [0, 1] and meta["config"]["train"]["epochs"] == 2
    assert json.loads((run / "state.json").read_text())["status"] == "completed"
    compared = run_here("compare", run, before, "--out", tmp_path / "c.png")
    assert compared.returncode == 0, compared.stderr[-2000:]
