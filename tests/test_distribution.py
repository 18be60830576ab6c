"""Scale out on CPU: MirroredStrategy over two logical CPU devices, the JAX backend, two processes on 127.0.0.1.

Every test ends by itself: each process it starts is killed after a bounded time, and the cluster's addresses
are 127.0.0.1 only (the coordinator binds there too).
"""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from tests.conftest import PROJECT, history, only_run, run_cli, run_here, tiny_config

TIMEOUT = 120  # seconds any process started here may take
QUICKSTART = PROJECT / "configs" / "quickstart.yaml"
# one epoch of the quick start on 320 of its pictures (8 steps of 32 after its validation split of 0.2), without
# its Dropout (random masks cannot be the same on two replicas) and without its test split (only the training
# history is compared)
NO_DROPOUT = ["--set", "train.epochs=1", "--set", "model.layers.3.Dropout=0.0", "--set", "dataset.test_samples=0",
              "--set", "dataset.num_samples=320"]
# what these tests do not look at: no plots, page or TensorBoard logs (tested elsewhere; a second a process)
QUIET = ["--set", "output.plots=false", "--set", "output.report=false", "--set", "callbacks.tensorboard=false"]


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python -m cnnrun ARGS` in the background, as a user would."""
    return subprocess.Popen([sys.executable, "-m", "cnnrun", *map(str, args)], cwd=PROJECT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200", **(env or {})})


def finish_all(processes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """Wait for every process (at most TIMEOUT seconds in all); kill them all if one is late."""
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster(port: int, process_id: int) -> dict[str, str]:
    return {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
            "KERAS_DISTRIBUTION_PROCESS_ID": str(process_id), "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}"}


@pytest.mark.slow
def test_quickstart_mirrored_on_two_cpus(tmp_path):
    # Two quick starts at once (the machine has 2 cores): MirroredStrategy over two logical CPU devices with the
    # same global batch of 32, in a process of its own (the devices are split before TensorFlow starts), and one
    # device, in this process while it runs. (The quick start on JAX: tests/test_on_jax.py.)
    scored = ["--set", "dataset.test_samples=64", *QUIET]
    two = start("train", QUICKSTART, *NO_DROPOUT, *scored, "--set", "train.devices=[/cpu:0, /cpu:1]",
                "--output-dir", tmp_path / "two")
    try:
        one = run_here("train", QUICKSTART, *NO_DROPOUT, *scored, "--output-dir", tmp_path / "one")
    finally:
        started = finish_all([two])
    for code, _out, err in [(one.returncode, one.stdout, one.stderr), *started]:
        assert code == 0, err[-3000:]

    # Tolerance 1e-4 relative: the replicas sum the gradients in another order (measured: 2e-7 after one epoch).
    alone, mirrored = history(only_run(tmp_path / "one"))[0], history(only_run(tmp_path / "two"))[0]
    for key in ("loss", "val_loss"):
        assert mirrored[key] == pytest.approx(alone[key], rel=1e-4), key
    # the test scores too: Keras' losses divide by the replicas under tf.distribute, as each replica's share
    scored = [json.loads((only_run(tmp_path / name) / "scores.json").read_text())["best"] for name in ("one", "two")]
    assert scored[1] == pytest.approx(scored[0], rel=1e-4)
    meta = json.loads((only_run(tmp_path / "two") / "meta.json").read_text())
    assert meta["distribution"] == {"backend": "tensorflow", "strategy": "mirrored", "replicas": 2, "processes": 1,
                                    "devices": ["/cpu:0", "/cpu:1"]}


@pytest.mark.slow
def test_two_processes_train_one_model_and_process_0_writes(write_config, tmp_path):
    tiny = tiny_config()["dataset"] | {"test_samples": 0}  # scoring would compile two more models in each process
    config = write_config(tiny_config(backend="jax", dataset=tiny, output={"plots": False, "report": False}))
    port = free_port()
    processes = [start("train", config, "--output-dir", tmp_path / "runs", env=cluster(port, i)) for i in (0, 1)]
    results = finish_all(processes)
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert "DataParallel: 2 replicas in 2 processes" in out
    # the same weights in both processes, and one run folder: process 0's
    prints = [re.findall(r"fingerprint (\w+)", out) for _, out, _ in results]
    assert len(prints[0]) == 1 and prints[0] == prints[1]
    run = only_run(tmp_path / "runs")
    assert str(run) in results[0][1]
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "completed" and state["epochs_completed"] == 2

    resumed = run_cli("resume", run, "--epochs", "3")  # on one process, from the run's own config (JAX)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["epoch"] for r in history(run)] == [1, 2, 3]
    assert only_run(tmp_path / "runs") == run


def test_cluster_mistakes_are_one_line(write_config, tmp_path):
    config = write_config(tiny_config(backend="jax"))
    nobody = free_port()  # nothing listens there
    cases = {
        "TF_CONFIG is set": ({"TF_CONFIG": '{"cluster": {}}'}, []),
        "cannot reach the coordinator": (cluster(nobody, 1), ["--set", "train.coordinator_timeout=1"]),
        "set backend: jax": (cluster(nobody, 1), ["--set", "backend=tensorflow"]),
        "does not split evenly over 2 replicas": ({}, ["--set", "backend=tensorflow", "--set", "train.batch_size=15",
                                                       "--set", "train.devices=[/cpu:0, /cpu:1]"]),
    }
    for expected, (env, args) in cases.items():
        (code, _out, err), = finish_all([start("train", config, *args, "--output-dir", tmp_path, env=env)])
        assert code == 2, (expected, err[-2000:])
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.glob("tiny"))


def test_devices_are_written_as_tensorflow_writes_them():
    from cnnrun.config import TrainConfig
    from cnnrun.errors import UserError

    assert TrainConfig(devices=["/CPU:0", "cpu:1", "/device:CPU:2"]).devices == ["/cpu:0", "/cpu:1", "/cpu:2"]
    for wrong in (["/tpu:0"], ["/gpu:0", "/gpu:0"], ["/gpu:0", "/cpu:0"]):
        with pytest.raises((ValueError, UserError)):
            TrainConfig(devices=wrong)


def test_a_batch_that_does_not_split_suggests_the_next_multiple_up():
    from cnnrun.devices.backend import check_batch_size
    from cnnrun.errors import UserError

    check_batch_size(12, 4)  # 12 = 3·4 splits
    with pytest.raises(UserError) as caught:
        check_batch_size(10, 4)
    assert "e.g. 12" in str(caught.value)  # 10 / 4 = 2.5, rounded up to 3 · 4 = 12 (not down to 8)


def test_a_process_id_must_be_below_the_number_of_processes(monkeypatch):
    from cnnrun.devices.backend import read_cluster
    from cnnrun.errors import UserError

    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert read_cluster().process_id == 1
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "2")  # processes 0 and 1 only
    with pytest.raises(UserError, match="2 is not one of 0 … 1"):
        read_cluster()
