"""Many runs: `cnnrun runs` lists run folders (damaged ones as a row), `cnnrun compare` shows what differs
between runs, `cnnrun export` takes one out for serving (each format reloads with its own runtime and predicts
what the checkpoint predicts on raw pixels, the run's normalisation inside, its augmentation layers left out).

One module, so that its two tiny trained runs serve every test (test time is scarce)."""

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from cnnrun.run_folder.lock import Holder
from cnnrun.tasks.compare import compare_runs
from tests.conftest import PROJECT, run_here, tiny_config
from tests.test_errors import assert_user_error
from tests.test_speed_paths import HEAVY, PROBE

slow = pytest.mark.slow  # the tests of the two tiny trained runs (`outputs`): a few seconds, once for the module


def _config(learning_rate: float, batch_size: int) -> dict:
    """A tiny experiment whose model holds its augmentation layers and whose inputs are standardised."""
    config = tiny_config(compile={"optimizer": {"name": "adam", "learning_rate": learning_rate}},
                         train={"epochs": 1, "batch_size": batch_size}, output={"plots": False, "report": False},
                         augmentation={"horizontal_flip": True, "placement": "model"})
    config["dataset"]["normalize"] = "standardize"
    return config


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two trained runs that differ in two keys (learning rate, batch size), a copy of the first that says it is
    still running, and a copy whose state.json is damaged; returns the folder and the four run folders."""
    root = tmp_path_factory.mktemp("many_runs")
    folders = {}
    for key, config in {"a": _config(0.001, 16), "b": _config(0.01, 32)}.items():
        path = root / f"{key}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        result = run_here("train", path, "--output-dir", root / "outputs")
        assert result.returncode == 0, result.stderr
        (folders[key],) = set((root / "outputs" / "tiny").iterdir()) - set(folders.values())
    running = shutil.copytree(folders["a"], root / "outputs" / "tiny" / "20991231-000000")
    state = json.loads((running / "state.json").read_text())
    (running / "state.json").write_text(json.dumps({**state, "status": "running", "epochs_completed": 0}))
    meta = json.loads((running / "meta.json").read_text())
    (running / "meta.json").write_text(json.dumps({**meta, "started": "2099-12-31T00:00:00+00:00"}))
    (running / "run.lock").write_bytes(Holder.me().to_bytes())  # running: a live process (this one) holds it
    damaged = shutil.copytree(folders["a"], root / "outputs" / "broken" / "20000101-000000")
    (damaged / "state.json").write_text('{"status": "completed", "epochs_')
    return root / "outputs", {**folders, "running": running, "damaged": damaged}


def _json_rows(*args) -> list[dict]:
    result = run_here("runs", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@slow
def test_runs_lists_a_completed_a_running_and_a_damaged_run_one_row_each(outputs):
    root, runs = outputs
    rows = {row["run"]: row for row in _json_rows(root)}
    assert set(rows) == {runs[key].relative_to(root).as_posix() for key in runs}
    first = rows[runs["a"].relative_to(root).as_posix()]
    state = json.loads((runs["a"] / "state.json").read_text())
    scores = json.loads((runs["a"] / "scores.json").read_text())
    classes = len(json.loads((runs["a"] / "dataset.json").read_text())["class_names"])
    assert first["status"] == "completed" and (first["epochs"], first["planned"]) == (1, 1)
    assert (first["monitor"], first["best"]) == ("val_loss", state["best"]["value"])
    assert (first["test_best"], first["test_last"]) == (scores["best"]["accuracy"], scores["last"]["accuracy"])
    # Conv2D(4, 3×3) on one channel: 3·3·4 + 4 = 40; Dense on the 8·8·4 = 256 pooled values: 257 per class
    assert first["params"] == 40 + 257 * classes
    assert first["fit_seconds"] == state["fit_seconds"] and first["backend"] == "tensorflow"
    assert first["started"] == json.loads((runs["a"] / "meta.json").read_text())["started"]
    running = rows[runs["running"].relative_to(root).as_posix()]
    assert (running["status"], running["epochs"], running["problem"]) == ("running", 0, None)
    damaged = rows["broken/20000101-000000"]
    assert damaged["status"] == "damaged" and "state.json: damaged JSON" in damaged["problem"]

    table = run_here("runs", root)
    assert table.returncode == 0, table.stderr
    assert "4 runs under" in table.stdout and "damaged" in table.stdout and "running" in table.stdout


@slow
def test_where_keeps_the_runs_that_match_a_column_and_a_config_key(outputs):
    root, runs = outputs
    rows = _json_rows(root, "--where", "status=completed", "--where", "train.batch_size=32")
    assert [row["run"] for row in rows] == [runs["b"].relative_to(root).as_posix()]
    assert rows[0]["train.batch_size"] == 32  # a config key asked for becomes a column
    rows = _json_rows(root, "--where", "compile.optimizer=adam", "--where", "compile.optimizer.learning_rate=1e-3")
    assert {row["run"] for row in rows} == {runs[key].relative_to(root).as_posix()
                                            for key in ("a", "running", "damaged")}


@slow
def test_sort_descending_puts_runs_without_a_value_last_and_csv_reads_back(outputs):
    root, runs = outputs
    result = run_here("runs", root, "--sort", "-test_best", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    values = [row["test_best"] for row in rows]
    assert values[-1] == "" and rows[-1]["status"] == "damaged"
    assert [float(v) for v in values[:-1]] == sorted((float(v) for v in values[:-1]), reverse=True)
    by_start = _json_rows(root, "--sort", "-started")
    assert by_start[0]["run"] == runs["running"].relative_to(root).as_posix()  # started in 2099


@slow
@pytest.mark.parametrize("args, fragments", [
    (["--where", "colour=red"], ["'colour' is not a column", "status", "train.epochs"]),
    (["--sort", "-bets"], ["'bets' is not a column", "did you mean 'best'"]),
    (["--where", "status"], ["--where 'status'", "KEY=VALUE"]),
])
def test_an_unknown_or_malformed_key_is_one_line_listing_what_is_valid(outputs, args, fragments):
    root, _ = outputs
    assert_user_error(run_here("runs", root, *args), *fragments)


@slow
def test_runs_imports_neither_tensorflow_nor_keras_nor_matplotlib(outputs):
    root, _ = outputs
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), "runs", str(root), "--where",
                             "compile.optimizer=adam", "--sort", "-best"], capture_output=True, text=True,
                            cwd=PROJECT, timeout=120)
    exit_code, heavy = json.loads(result.stdout.splitlines()[-1])
    assert (exit_code, heavy) == (0, [])
    assert "4 runs under" in result.stdout  # the damaged run's config.yaml is intact


def test_runs_of_a_folder_that_does_not_exist_is_one_line(tmp_path):
    assert_user_error(run_here("runs", tmp_path / "nowhere"), "nowhere: no such folder")


@slow
def test_compare_of_two_runs_that_differ_in_two_keys_lists_exactly_those_two(outputs, tmp_path):
    _, runs = outputs
    figure = tmp_path / "curves.png"
    result = run_here("compare", runs["a"], runs["b"], "--out", figure)
    assert result.returncode == 0, result.stderr
    assert "config keys that differ (2)" in result.stdout
    differ_table = result.stdout.split("scores")[0]
    keys = [line.split("│")[1].strip() for line in differ_table.splitlines() if line.startswith("│")]
    assert keys == ["compile.optimizer.learning_rate", "train.batch_size"]
    scores = json.loads((runs["b"] / "scores.json").read_text())
    assert f"{scores['best']['accuracy']:.4f}" in result.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    differing = compare_runs([runs["a"], runs["b"]], tmp_path / "again.png").differing
    assert differing == {"compile.optimizer.learning_rate": [0.001, 0.01], "train.batch_size": [16, 32]}


@slow
def test_compare_needs_two_readable_runs(outputs, tmp_path):
    _, runs = outputs
    assert_user_error(run_here("compare", runs["a"]), "give two or more run folders, got 1")
    assert_user_error(run_here("compare", runs["a"], runs["damaged"]), "state.json: damaged JSON")
    assert_user_error(run_here("compare", runs["a"], runs["a"]), "given twice")
    assert_user_error(run_here("compare", runs["a"], runs["b"], "--out", tmp_path / "c.txt"), "--out", ".png")


def _reloaded(path, format_):
    """The exported model loaded by hand with its runtime: float32 pixels in, probabilities out."""
    if format_ == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        return lambda x: loaded.serve(tf.constant(x)).numpy()
    if format_ == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {session.get_inputs()[0].name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))

    def predict(x):
        (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(given["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(output["index"])

    return predict


@slow
@pytest.mark.parametrize("format_, default_name", [
    ("saved_model", "best_saved_model"), ("onnx", "best.onnx"), ("litert", None)])
def test_each_format_reloads_and_predicts_what_the_checkpoint_predicts_on_raw_pixels(outputs, tmp_path, format_,
                                                                                      default_name):
    run = outputs[1]["a"]
    from cnnrun.model.checkpoints import load_checkpoint

    out = run / "export" / default_name if default_name else tmp_path / "served.tflite"
    args = ["--out", out] if default_name is None else []
    result = run_here("export", run, "--format", format_, *args)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and "max difference" in result.stdout and "within" in result.stdout
    assert "augmentation layers left out" in result.stdout

    info = json.loads((run / "dataset.json").read_text())
    pixels = np.random.default_rng(0).integers(0, 256, (5, *info["input_shape"])).astype(np.float32)
    model = load_checkpoint(run / "checkpoints" / "best.keras")
    expected = model.predict((pixels - info["mean"]) / (info["std"] + 1e-7), verbose=0)  # as training normalises
    got = _reloaded(out, format_)(pixels)
    assert got.shape == expected.shape == (5, len(info["class_names"]))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@slow
def test_the_served_model_leaves_the_augmentation_layers_out(outputs):
    run = outputs[1]["a"]
    from cnnrun.data import DatasetInfo
    from cnnrun.model.checkpoints import load_checkpoint
    from cnnrun.tasks.export import serving_model

    model = load_checkpoint(run / "checkpoints" / "best.keras")
    serving = serving_model(model, DatasetInfo(**json.loads((run / "dataset.json").read_text())))
    assert "augmentation" in [layer.name for layer in model.layers]
    assert "augmentation" not in [layer.name for layer in serving._flatten_layers()]
    assert {"RandomAffine"}.isdisjoint(type(layer).__name__ for layer in serving._flatten_layers())


@slow
def test_a_missing_export_package_names_the_extra_before_the_model_loads(outputs, monkeypatch):
    run = outputs[1]["a"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # how Python marks a module that cannot be imported
    assert_user_error(run_here("export", run, "--format", "onnx"), "--format onnx needs onnxruntime",
                      "pip install 'cnnrun[export]'")


@slow
@pytest.mark.parametrize("args, fragments", [
    (["--format", "litert", "--out", "model.onnx"], ["--out model.onnx", "ending in .tflite"]),
    (["--format", "pdf"], []),
])
def test_a_wrong_export_format_or_file_name_is_one_line(outputs, args, fragments):
    run = outputs[1]["a"]
    result = run_here("export", run, *args)
    if fragments:
        assert_user_error(result, *fragments)
    else:
        assert result.returncode == 2 and "Traceback" not in result.stderr and "pdf" in result.stderr


def test_an_export_file_name_may_end_in_an_upper_case_suffix(tmp_path):
    from cnnrun.tasks.export import export_path

    for format_, name in (("onnx", "model.ONNX"), ("litert", "model.TFLite")):
        assert export_path(None, format_, "best", tmp_path / name) == tmp_path / name  # --out given: no run read


def test_the_export_names_probabilities_unless_the_loss_says_logits():
    from cnnrun.tasks.export import _output_text

    names = ["cat", "dog", "fox"]
    assert _output_text(3, names, "categorical_crossentropy") == "3 probabilities per image: cat, dog, fox"
    assert _output_text(3, names, {"name": "categorical_crossentropy"}) == "3 probabilities per image: cat, dog, fox"
    assert _output_text(3, names, {"name": "categorical_crossentropy", "from_logits": True}) == \
        "3 logits per image: cat, dog, fox"
    assert _output_text(1, names[:2], {"name": "binary_crossentropy"}) == \
        "1 value per image: the probability of dog (against cat)"


def test_a_graph_model_is_served_without_its_augmentation_and_with_its_normalisation():
    from cnnrun.config import validate_experiment
    from cnnrun.data import DatasetInfo, model_augmenter
    from cnnrun.model.build import build_model
    from cnnrun.tasks.export import serving_model
    from tests.test_graph_run import RESIDUAL_NET

    experiment = validate_experiment(tiny_config(model=RESIDUAL_NET, augmentation={"horizontal_flip": True,
                                                                                    "placement": "model"}), "test")
    info = DatasetInfo(class_names=["a", "b", "c"], input_shape=[16, 16, 1], label_mode="categorical",
                       normalize="standardize", mean=100.0, std=50.0)
    model = build_model(experiment, (16, 16, 1), 3, model_augmenter(experiment, info))
    serving = serving_model(model, info)
    assert "augmentation" in [layer.name for layer in model.layers]
    assert "augmentation" not in [layer.name for layer in serving._flatten_layers()]
    pixels = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 1)).astype(np.float32)
    expected = model.predict((pixels - 100.0) / (50.0 + 1e-7), verbose=0)
    np.testing.assert_allclose(serving.predict(pixels, verbose=0), expected, atol=1e-5, rtol=0)


def test_a_name_alone_and_a_mapping_with_a_name_compare_as_one_key():
    from cnnrun.tasks.compare import MISSING, differing_keys

    configs = [{"compile": {"optimizer": "sgd", "loss": "mse"}},
               {"compile": {"optimizer": {"name": "adam", "learning_rate": 0.01}, "loss": "mse"}}]
    assert differing_keys(configs) == {"compile.optimizer.name": ["sgd", "adam"],
                                       "compile.optimizer.learning_rate": [MISSING, 0.01]}


def test_an_empty_mapping_or_list_differs_from_a_key_left_out():
    from cnnrun.tasks.compare import MISSING, differing_keys

    configs = [{"train": {"epochs": 3, "class_weight": {}}, "tags": []}, {"train": {"epochs": 3}}]
    assert differing_keys(configs) == {"train.class_weight": [{}, MISSING], "tags": [[], MISSING]}


def test_a_mixed_precision_model_is_exported_computing_in_float32(tmp_path):
    import keras
    import onnxruntime

    from cnnrun.config import validate_experiment
    from cnnrun.data import DatasetInfo
    from cnnrun.model.build import build_model
    from cnnrun.tasks.export import computes_in_float32, inference_model, serving_model, write_export

    experiment = validate_experiment(tiny_config(train={"epochs": 1, "mixed_precision": True}), "test")
    try:
        model = build_model(experiment, (16, 16, 1), 3)  # bfloat16 on a CPU, float32 output
    finally:
        keras.config.set_dtype_policy("float32")  # build_model sets Keras' process-wide policy
    assert not computes_in_float32(model)
    info = DatasetInfo(class_names=["a", "b", "c"], input_shape=[16, 16, 1], label_mode="categorical",
                       normalize="rescale")
    serving = serving_model(model, info)
    assert computes_in_float32(serving)
    write_export(serving, "onnx", tmp_path / "model.onnx")  # ONNX refuses bfloat16 mixed with float32
    pixels = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 1)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: pixels})[0]
    reference = inference_model(model).predict(pixels / 255.0, verbose=0)
    np.testing.assert_allclose(got, reference, atol=1e-5, rtol=0)
    bfloat16 = model.predict(pixels / 255.0, verbose=0)
    np.testing.assert_allclose(got, bfloat16, atol=0.05, rtol=0)  # the same model, less exactly computed


def _hand_run(root, name: str, files: dict[str, str]):
    """A run folder `root/name` holding `files` (name → text), written by hand."""
    folder = root / name
    folder.mkdir(parents=True)
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


STATE = '{"status": "completed", "epochs_completed": 2, "epochs_planned": 2}'


@pytest.mark.parametrize("files, problem", [
    ({"state.json": "[1, 2]"}, "state.json: [1, 2] is not a cnnrun run state"),
    ({"state.json": '{"status": "pruned", "epochs_planned": 4}', "meta.json": '{"started": 5}'},
     "meta.json: started: 5 is not a time"),
    ({"meta.json": '{"started": "2026-11-27T10:00:00+00:00"}'}, "state.json: missing"),
])
def test_a_folder_with_files_of_the_wrong_shape_is_a_damaged_row(tmp_path, files, problem):
    from cnnrun.tasks.runs_table import list_runs

    (_hand_run(tmp_path / "outputs", "x/20261127-100000", files) / "checkpoints").mkdir()
    (row,) = list_runs(tmp_path / "outputs")
    assert row["status"] == "damaged" and problem in row["problem"], row


def test_a_status_this_version_does_not_know_is_shown_as_it_is(tmp_path):
    from cnnrun.tasks.runs_table import list_runs

    _hand_run(tmp_path, "x/20261127-100000",
              {"state.json": '{"status": "pruned", "epochs_completed": 2, "epochs_planned": 4}'})
    (row,) = list_runs(tmp_path)
    assert (row["run"], row["status"], row["epochs"], row["planned"], row["problem"]) == \
        ("x/20261127-100000", "pruned", 2, 4, None)


def test_a_score_other_than_accuracy_is_named_in_the_table(tmp_path):
    from cnnrun.tasks.runs_table import list_runs, table_text

    _hand_run(tmp_path, "angles/20261203-100000", {
        "state.json": STATE, "scores.json": '{"best": {"loss": 0.1, "mae": 2.215, "rmse": 4.128, "r2": 0.9741}, '
                                            '"last": {"loss": 0.1, "mae": 2.115, "rmse": 4.04, "r2": 0.9752}}'})
    rows = list_runs(tmp_path)
    assert (rows[0]["test_best"], rows[0]["test_last"]) == (2.215, 2.115)  # the CSV and JSON keep the numbers
    line = table_text(rows).splitlines()[-1]
    assert "mae 2.215" in line and "mae 2.115" in line


def test_a_true_or_false_config_key_matches_where_written_as_in_yaml(tmp_path):
    from cnnrun.tasks.runs_table import list_runs, select

    for name, flip in (("x/20261127-100000", "true"), ("x/20261127-110000", "false")):
        _hand_run(tmp_path, name, {"state.json": STATE, "config.yaml": f"augmentation: {{horizontal_flip: {flip}}}\n"})
    for flip, run in (("true", "x/20261127-100000"), ("false", "x/20261127-110000")):
        rows = select(list_runs(tmp_path), where=[f"augmentation.horizontal_flip={flip}"])
        assert [row["run"] for row in rows] == [run]


def test_the_table_shows_the_start_to_the_second(tmp_path):
    from cnnrun.tasks.runs_table import list_runs, table_text

    _hand_run(tmp_path, "x/20261127-101542", {"state.json": STATE,
                                               "meta.json": '{"started": "2026-11-27T10:15:42+00:00"}'})
    assert "2026-11-27 10:15:42" in table_text(list_runs(tmp_path)).splitlines()[-1]


def test_compare_shows_each_runs_best_and_last_test_scores_side_by_side(tmp_path):
    from cnnrun.run_folder.folder import Run
    from cnnrun.tasks.compare import score_rows

    runs = [Run(_hand_run(tmp_path, f"x/2026112{i}-100000", {
        "state.json": STATE, "scores.json": json.dumps({"best": {"loss": 0.5, "accuracy": best},
                                                       "last": {"loss": 0.6, "accuracy": last}})}))
        for i, (best, last) in enumerate([(0.8, 0.75), (0.9, 0.625)])]
    rows = dict(score_rows(runs))
    assert rows["test accuracy (best.keras)"] == ["0.8000", "0.9000"]
    assert rows["test accuracy (last.keras)"] == ["0.7500", "0.6250"]
    assert rows["epochs"] == ["2/2", "2/2"]


@slow
def test_compare_labels_each_run_by_its_name_and_time(outputs, tmp_path):
    _, runs = outputs
    comparison = compare_runs([runs["a"], runs["b"]], tmp_path / "c.png")
    assert comparison.labels == [f"tiny/{runs['a'].name}", f"tiny/{runs['b'].name}"]
