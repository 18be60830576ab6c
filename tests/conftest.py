"""Shared test helpers: tiny experiments written to tmp_path, the CLI run as a user runs it."""

import contextlib
import copy
import csv
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.browser import chromium, open_page  # noqa: F401  (fixtures: a real browser, tests/browser.py)

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `make test` runs two workers on two cores: one thread each for TensorFlow's ops (and in the processes tests
# start, which inherit it), instead of each worker's ops contending for both cores. The inter-op pool (tf.data's
# and Keras' steps side by side) keeps its default: one thread there made three training tests 18 % slower.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# Python's bytecode cache, on as on a user's machine: an environment with PYTHONDONTWRITEBYTECODE set (as in
# this project's containers) compiles cnnrun and the tests from source in every process (all 134 of cnnrun's modules
# take 1–2 s of CPU to compile; a command imports part of them). The .pyc files go to __pycache__/, which git ignores.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
os.environ["COLUMNS"] = "200"  # rich reads it once, when cnnrun's consoles are made: keep table rows on one line
# `cnnrun profile --compare-jit` records its verdicts in $CNNRUN_CACHE_DIR/jit.json, which `jit_compile: auto`
# follows: the tests (and the processes they start) read and write an empty cache of their own, never the user's
os.environ["CNNRUN_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnnrun-test-cache-")
# Keras' cache (datasets, ImageNet weights; Keras reads KERAS_HOME once, when it is imported) is an empty folder of
# the tests' own, never the user's ~/.keras: a download that fails finds nothing there (see `offline`)
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="cnnrun-test-keras-")


TINY_LAYERS = [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Flatten": {}},
    {"Dense": {"units": "${num_classes}", "activation": "softmax"}},
]


# The modules with the longest tests (several processes each, 10–55 s a test), longest first, run before the
# others: `pytest -n 2 --dist worksteal` gives each worker half of the list in order and lets an idle one take the
# back half of the other's queue, so with these at the front the last tests to run are short ones and neither core
# waits alone on a long one at the end. A module stays whole (its module-scoped fixtures are made once).
FIRST = ("test_distribution.py", "test_sweep.py", "test_cached_features.py", "test_on_jax.py", "test_backbone.py",
         "test_bench.py", "test_profile_configs.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: each module keeps its order


def pytest_configure(config):
    """Import TensorFlow and Keras as the CLI does, without JAX (0.9 s of CPU less), in each process that runs
    tests: every process without xdist, its workers with it (the controller runs no test, so it imports neither).

    The processor is shown to TensorFlow as two logical CPU devices there, as `train.devices: [/cpu:0, /cpu:1]`
    does at a command's start, so that a test can train under MirroredStrategy in its own process (one device,
    /cpu:0, is what every other run uses). Splitting it at a command's start, in a new process, is
    tests/test_distribution.py's."""
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        from cnnrun.devices.backend import import_keras
        from cnnrun.devices.distribute import _split_processor

        import_keras()
        _split_processor(2)


def tiny_config(**sections) -> dict:
    """A small shapes experiment that trains in a few seconds; keyword arguments replace whole sections."""
    config = {
        "name": "tiny",
        "seed": 3,
        "dataset": {"name": "shapes", "image_size": 16, "num_samples": 120, "test_samples": 40,
                    "validation_split": 0.25},
        "model": {"layers": copy.deepcopy(TINY_LAYERS)},  # tests change their copy in place
        "compile": {"optimizer": "adam"},
        "train": {"epochs": 2, "batch_size": 16},
        # plots and the page (0.3 s a run each): off here, on in the tests about them
        "output": {"plots": False, "report": False},
    }
    config.update(sections)
    # TensorBoard (on by default) adds about a second to a run this small: tests not about it leave it off
    if isinstance(config.get("callbacks", {}), dict):
        config["callbacks"] = {"tensorboard": False, **config.get("callbacks", {})}
    return config


@pytest.fixture
def write_config(tmp_path):
    """Write a config dict (or raw YAML text) to tmp_path and return its path."""

    def write(config: dict | str, name: str = "experiment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def offline(monkeypatch) -> Path:
    """No network in this process, as on a laptop on a train: every download goes to a proxy on a closed local
    port and fails at once. Returns Keras' cache folder (empty: see KERAS_HOME above).

    urllib builds its opener, proxies and all, at the first download of a process and keeps it: a new one is
    installed that reads these proxies, and dropped afterwards (the next download builds another)."""
    import urllib.request

    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    urllib.request.install_opener(urllib.request.build_opener())
    yield Path(os.environ["KERAS_HOME"])
    urllib.request.install_opener(None)


def run_cli(*args: str, cwd: Path | None = None, columns: str | None = "200") -> subprocess.CompletedProcess:
    """Run `python -m cnnrun ARGS` as a user would and capture its output (stdout and stderr are pipes).

    `columns=None` leaves COLUMNS unset, as in a script that sends cnnrun's output to a file or a pipe.
    """
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "cnnrun", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or PROJECT, env=env, timeout=600)


def run_here(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `cnnrun ARGS` through the same entry point, in this process, and capture its output and exit code.

    Saves the few seconds TensorFlow takes to start in every new process; tests about processes themselves
    (signals, several processes, the environment) use `run_cli`.
    """
    from cnnrun import cli

    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = ["cnnrun", *map(str, args)]
    try:
        with contextlib.chdir(cwd or PROJECT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def only_run(folder: Path) -> Path:
    """The one run folder under `folder` (`<folder>/<name>/<time>`)."""
    (run,) = [p for p in folder.glob("*/*") if p.is_dir()]
    return run


def history(run: Path) -> list[dict[str, float]]:
    """A run's history.csv as numbers, one dict per epoch."""
    with (run / "history.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train_then(args: list, out: Path, action) -> subprocess.CompletedProcess:
    """`run_here("train", *args, "--output-dir", out)`, with `action()` run in a thread as soon as the first
    epoch's history.csv is in a run folder under `out` (to change the data under a training run)."""
    import threading
    import time

    done = threading.Event()

    def after_the_first_epoch():
        while not done.is_set() and not list(out.glob("*/*/history.csv")):
            time.sleep(0.01)
        action()

    worker = threading.Thread(target=after_the_first_epoch)
    worker.start()
    try:
        return run_here("train", *args, "--output-dir", out)
    finally:
        done.set()
        worker.join()
