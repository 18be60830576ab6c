"""Bad input about a run (issue 21, B.6, B.10 and B.12): an MLflow store that cannot be used, a phase that trains
nothing new, `init_from` a run that is still training; and summary.txt's Trainable column, whole."""

import socket
import subprocess
import sys
import time

import keras
import pytest

from cnnrun.errors import UserError
from cnnrun.model.phases import summary_text
from cnnrun.run_folder.folder import Run
from cnnrun.training.tracking import check_store
from tests.conftest import PROJECT, run_here, tiny_config
from tests.test_errors import assert_user_error

# ---------------------------------------------------------------- MLflow's store, checked before any folder


@pytest.mark.parametrize("uri, fragments", [
    ("bogus://x", ["tracking.mlflow.uri: bogus://x: MLflow knows no tracking store 'bogus:'; it takes a path or ",
                   "sqlite:", "http:"]),
    ("http://127.0.0.1:1", ["tracking.mlflow.uri: http://127.0.0.1:1: the MLflow server does not answer "
                            "(connection refused)"]),
    ("postgresql://127.0.0.1:1/runs", ["127.0.0.1:1: the postgresql server of the MLflow store does not accept "
                                       "connections (connection refused)"]),
])
def test_a_tracking_store_mlflow_cannot_use_is_one_line_and_no_run_folder(write_config, tmp_path, uri, fragments):
    path = write_config(tiny_config(tracking={"mlflow": {"uri": uri}}))
    started = time.perf_counter()
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "out"), f"{path}: ", *fragments)
    assert time.perf_counter() - started < 60  # http://127.0.0.1:1 used to hang for over 300 s
    assert not (tmp_path / "out").exists()


def test_the_store_in_the_environment_is_checked_too(write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    result = run_here("train", write_config(tiny_config()), "--output-dir", tmp_path / "out")
    assert_user_error(result, "$MLFLOW_TRACKING_URI: bogus://x: MLflow knows no tracking store")
    assert not (tmp_path / "out").exists()


def test_a_server_that_accepts_but_never_answers_is_given_up_after_the_timeout():
    with socket.socket() as server:  # listens (the connection is made) but never reads or answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        started = time.perf_counter()
        with pytest.raises(UserError, match=rf"^{uri}: the MLflow server does not answer \(no answer in 0.5 s\)"):
            check_store(uri, timeout=0.5)
        assert time.perf_counter() - started < 5


def test_stores_mlflow_makes_itself_and_a_server_that_answers_pass(tmp_path):
    check_store(f"sqlite:///{tmp_path}/mlflow.db")
    check_store(str(tmp_path / "mlruns"))
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()  # checked, not made
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().split("port ")[1].split()[0]
        check_store(f"http://127.0.0.1:{port}")
        check_store(f"http://127.0.0.1:{port}/no/such/page")  # an answer, even a 404, is a server that answers
    finally:
        server.kill()
        server.wait()


# ---------------------------------------------------------------- phases and init_from


PHASE_LAYERS = [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu", "name": "conv_a"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Flatten": {}},
    {"Dense": {"units": "${num_classes}", "activation": "softmax", "name": "head"}},
]


@pytest.mark.parametrize("trainable", [{"from": "head"}, {"from": "max_pooling2d"}])
def test_a_phase_from_a_layer_after_the_base_trains_nothing_new_and_is_refused(write_config, tmp_path, trainable):
    phases = [{"epochs": 1, "trainable": "none"}, {"epochs": 1, "trainable": trainable}]
    path = write_config(tiny_config(model={"layers": PHASE_LAYERS}, train={"phases": phases}))
    fragments = [f"{path}: train.phases.1.trainable.from: from '{trainable['from']}' on, the base has no layer "
                 f"with weights (the base runs from 'conv_a' to 'flatten'", "exactly what `none` trains"]
    assert_user_error(run_here("train", path, "--output-dir", tmp_path / "out"), *fragments)
    assert_user_error(run_here("inspect", path), *fragments)
    assert not (tmp_path / "out").exists()


def test_a_phase_from_a_layer_of_the_base_is_kept(write_config):
    phases = [{"epochs": 1, "trainable": "none"}, {"epochs": 1, "trainable": {"from": "conv_a"}}]
    result = run_here("inspect", write_config(tiny_config(model={"layers": PHASE_LAYERS}, train={"phases": phases})))
    assert result.returncode == 0, result.stderr


def running_run(folder) -> Run:
    """A run folder as a run that has just started writes it: config, state `running`, no checkpoint yet."""
    folder.mkdir(parents=True)
    run = Run(folder)
    (folder / "config.yaml").write_text("name: earlier\n")
    run.update_state(status="running", epochs_planned=5)
    return run


def test_init_from_a_run_still_training_names_the_run_and_its_process(write_config, tmp_path):
    earlier = running_run(tmp_path / "earlier" / "20260101-120000").path
    holder = subprocess.Popen(  # a live process holds the run folder, as `cnnrun train` does while it trains
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from cnnrun.run_folder.lock import hold_folder\n"
         "with hold_folder(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(120)\n", str(earlier)],
        cwd=PROJECT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        path = write_config(tiny_config(model={"layers": PHASE_LAYERS, "init_from": str(earlier)}))
        fragments = [f"{path}: model.init_from: {earlier} is still training (process {holder.pid} has held its "
                     f"run.lock since ", "wait for it to end, or start from a finished run"]
        assert_user_error(run_here("train", path, "--output-dir", tmp_path / "out"), *fragments)
        assert_user_error(run_here("inspect", path), *fragments)
        assert not (tmp_path / "out").exists()
    finally:
        holder.kill()
        holder.wait()
    # the process has ended: its lock is stale, and the run is judged by its files (no checkpoint yet)
    assert_user_error(run_here("inspect", path), "checkpoints/best.keras: missing")


# ---------------------------------------------------------------- summary.txt


def test_the_summarys_trainable_column_is_whole_in_a_pipe(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # what a pipe gives: Keras cut the header to "Trai…"
    inputs = keras.Input((8, 8, 1))
    left = keras.layers.Conv2D(2, 3, name="left")(inputs)
    right = keras.layers.Conv2D(2, 3, name="right", trainable=False)(inputs)
    joined = keras.layers.Flatten(name="flatten")(keras.layers.Add()([left, right]))
    functional = keras.Model(inputs, keras.layers.Dense(2, name="head")(joined))
    chain = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    for model in (functional, chain):
        text = summary_text(model)
        header = next(line for line in text.splitlines() if "Param #" in line)
        assert header.split("┃")[-2].strip() == "Trainable", header
        assert "…" not in header
        assert "Total params: " in text and text.endswith("\n")
    rows = {line.split("│")[1].split()[0]: line.split("│")[-2].strip() for line in summary_text(functional).splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert (rows["left"], rows["right"], rows["head"], rows["flatten"]) == ("Y", "N", "Y", "-")
    assert __import__("os").environ["COLUMNS"] == "80"  # put back
