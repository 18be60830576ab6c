"""`cnnrun runs` lists run folders (damaged ones as a row) and `cnnrun compare` shows what differs between runs."""

import csv
import io
import json
import shutil

import pytest
import yaml

from cnnrun.compare import compare_runs
from tests.conftest import run_here, tiny_config
from tests.test_errors import assert_user_error

pytestmark = pytest.mark.slow  # the module trains two tiny runs (a few seconds)


def _optimizer(learning_rate: float) -> dict:
    return {"optimizer": {"name": "adam", "learning_rate": learning_rate}}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two trained runs that differ in two keys (epochs, learning rate), a copy of the first that says it is
    still running, and a copy whose state.json is damaged; returns the folder and the four run folders."""
    root = tmp_path_factory.mktemp("many_runs")
    configs = {"a": tiny_config(compile=_optimizer(0.001)),
               "b": tiny_config(compile=_optimizer(0.01), train={"epochs": 1, "batch_size": 16})}
    folders = {}
    for key, config in configs.items():
        path = root / f"{key}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        result = run_here("train", path, "--output-dir", root / "outputs")
        assert result.returncode == 0, result.stderr
        (folders[key],) = set((root / "outputs" / "tiny").iterdir()) - set(folders.values())
    running = shutil.copytree(folders["a"], root / "outputs" / "tiny" / "20991231-000000")
    state = json.loads((running / "state.json").read_text())
    (running / "state.json").write_text(json.dumps({**state, "status": "running", "epochs_completed": 1}))
    meta = json.loads((running / "meta.json").read_text())
    (running / "meta.json").write_text(json.dumps({**meta, "started": "2099-12-31T00:00:00+00:00"}))
    damaged = shutil.copytree(folders["a"], root / "outputs" / "broken" / "20000101-000000")
    (damaged / "state.json").write_text('{"status": "completed", "epochs_')
    return root / "outputs", {**folders, "running": running, "damaged": damaged}


def _json_rows(*args) -> list[dict]:
    result = run_here("runs", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_runs_lists_a_completed_a_running_and_a_damaged_run_one_row_each(outputs):
    root, runs = outputs
    rows = {row["run"]: row for row in _json_rows(root)}
    assert set(rows) == {runs[key].relative_to(root).as_posix() for key in runs}
    first = rows[runs["a"].relative_to(root).as_posix()]
    state = json.loads((runs["a"] / "state.json").read_text())
    scores = json.loads((runs["a"] / "scores.json").read_text())
    classes = len(json.loads((runs["a"] / "dataset.json").read_text())["class_names"])
    assert first["status"] == "completed" and (first["epochs"], first["planned"]) == (2, 2)
    assert (first["monitor"], first["best"]) == ("val_loss", state["best"]["value"])
    assert (first["test_best"], first["test_last"]) == (scores["best"]["accuracy"], scores["last"]["accuracy"])
    # Conv2D(4, 3×3) on one channel: 3·3·4 + 4 = 40; Dense on the 8·8·4 = 256 pooled values: 257 per class
    assert first["params"] == 40 + 257 * classes
    assert first["fit_seconds"] == state["fit_seconds"] and first["backend"] == "tensorflow"
    assert first["started"] == json.loads((runs["a"] / "meta.json").read_text())["started"]
    running = rows[runs["running"].relative_to(root).as_posix()]
    assert (running["status"], running["epochs"], running["problem"]) == ("running", 1, None)
    damaged = rows["broken/20000101-000000"]
    assert damaged["status"] == "damaged" and "state.json: damaged JSON" in damaged["problem"]

    table = run_here("runs", root)
    assert table.returncode == 0, table.stderr
    assert "4 runs under" in table.stdout and "damaged" in table.stdout and "running" in table.stdout


def test_where_keeps_the_runs_that_match_a_column_and_a_config_key(outputs):
    root, runs = outputs
    rows = _json_rows(root, "--where", "status=completed", "--where", "train.epochs=1")
    assert [row["run"] for row in rows] == [runs["b"].relative_to(root).as_posix()]
    assert rows[0]["train.epochs"] == 1  # a config key asked for becomes a column
    rows = _json_rows(root, "--where", "compile.optimizer=adam", "--where", "compile.optimizer.learning_rate=1e-3")
    assert {row["run"] for row in rows} == {runs[key].relative_to(root).as_posix()
                                            for key in ("a", "running", "damaged")}


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


@pytest.mark.parametrize("args, fragments", [
    (["--where", "colour=red"], ["'colour' is not a column", "status", "train.epochs"]),
    (["--sort", "-bets"], ["'bets' is not a column", "did you mean 'best'"]),
    (["--where", "status"], ["--where 'status'", "KEY=VALUE"]),
])
def test_an_unknown_or_malformed_key_is_one_line_listing_what_is_valid(outputs, args, fragments):
    root, _ = outputs
    assert_user_error(run_here("runs", root, *args), *fragments)


def test_runs_of_a_folder_that_does_not_exist_is_one_line(tmp_path):
    assert_user_error(run_here("runs", tmp_path / "nowhere"), "nowhere: no such folder")


def test_compare_of_two_runs_that_differ_in_two_keys_lists_exactly_those_two(outputs, tmp_path):
    _, runs = outputs
    figure = tmp_path / "curves.png"
    result = run_here("compare", runs["a"], runs["b"], "--out", figure)
    assert result.returncode == 0, result.stderr
    assert "config keys that differ (2)" in result.stdout
    differ_table = result.stdout.split("scores")[0]
    keys = [line.split("│")[1].strip() for line in differ_table.splitlines() if line.startswith("│")]
    assert keys == ["compile.optimizer.learning_rate", "train.epochs"]
    scores = json.loads((runs["b"] / "scores.json").read_text())
    assert f"{scores['best']['accuracy']:.4f}" in result.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    differing = compare_runs([runs["a"], runs["b"]], tmp_path / "again.png")
    assert differing == {"compile.optimizer.learning_rate": [0.001, 0.01], "train.epochs": [2, 1]}


def test_compare_needs_two_readable_runs(outputs, tmp_path):
    _, runs = outputs
    assert_user_error(run_here("compare", runs["a"]), "give two or more run folders, got 1")
    assert_user_error(run_here("compare", runs["a"], runs["damaged"]), "state.json: damaged JSON")
    assert_user_error(run_here("compare", runs["a"], runs["a"]), "given twice")
    assert_user_error(run_here("compare", runs["a"], runs["b"], "--out", tmp_path / "c.txt"), "--out", ".png")
