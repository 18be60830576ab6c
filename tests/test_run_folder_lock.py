"""`run.lock`: one process at a time writes a run folder; a stale lock is taken over.

Other processes are real ones: a Python child that holds the lock and sleeps, killed or interrupted as a user's
would be.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from cnnrun.errors import UserError
from cnnrun.run_folder.folder import Run

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLD_AND_SLEEP = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from cnnrun.run_folder.folder import Run
    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even where the test runs in a background job (which
    # starts its children with SIGINT ignored, and Python then installs no handler of its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with Run(Path(sys.argv[1])).hold():
        print("held", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """Start a child process that holds the run folder `tmp_path/run`; return it once it holds it."""
    children = []

    def start() -> subprocess.Popen:
        (tmp_path / "run").mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": PROJECT}
        child = subprocess.Popen([sys.executable, "-c", HOLD_AND_SLEEP, str(tmp_path / "run")], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline().strip() == "held", child.stderr.read()
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def lock_of(folder) -> dict:
    return json.loads((folder / "run.lock").read_text())


def test_a_second_process_is_refused_in_one_line_naming_the_holder(tmp_path, holder):
    child = holder()
    run = Run(tmp_path / "run")
    assert lock_of(run.path)["pid"] == child.pid
    with pytest.raises(UserError, match=f"in use by process {child.pid} since") as caught:
        with run.hold():
            pytest.fail("held a folder another process holds")
    assert "\n" not in str(caught.value) and str(run.path) in str(caught.value)
    assert lock_of(run.path)["pid"] == child.pid  # the holder's lock is left alone


def test_ctrl_c_in_the_holder_releases_the_folder(tmp_path, holder):
    child = holder()
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) != 0  # ended by the KeyboardInterrupt
    assert not (tmp_path / "run" / "run.lock").exists()
    with Run(tmp_path / "run").hold():
        assert lock_of(tmp_path / "run")["pid"] == os.getpid()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, holder):
    child = holder()
    child.kill()  # SIGKILL: no chance to remove the lock
    child.wait()
    run = Run(tmp_path / "run")
    assert lock_of(run.path)["pid"] == child.pid
    with run.hold():
        assert lock_of(run.path)["pid"] == os.getpid()
    assert not run.file("run.lock").exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times come from Linux's /proc")
def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path):
    run = Run(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:  # a live PID, but not the process that took the lock (it started at another time)
        run.file("run.lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(),
                                                    "since": "2026-01-01T10:00:00+00:00", "start": "1",
                                                    "token": "0" * 16}))
        with run.hold():
            assert lock_of(run.path)["pid"] == os.getpid()
    finally:
        other.kill()
        other.wait()


def test_a_lock_held_on_another_host_is_respected_and_says_what_to_delete(tmp_path):
    run = Run(tmp_path)
    run.file("run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "since": "2026-01-01T10:00",
                                                "start": None, "token": "0" * 16}))
    with pytest.raises(UserError, match=r"process 1 on elsewhere\.example .*delete .*run\.lock"):
        with run.hold():
            pass
    assert lock_of(run.path)["host"] == "elsewhere.example"


@pytest.mark.parametrize("raised", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_the_lock_goes_when_the_block_raises(tmp_path, raised):
    run = Run(tmp_path)
    with pytest.raises(raised):
        with run.hold():
            assert run.file("run.lock").exists()
            raise raised()
    assert list(tmp_path.iterdir()) == []  # no lock, no file beside it


def test_a_damaged_lock_is_taken_over(tmp_path):
    run = Run(tmp_path)
    run.file("run.lock").write_text("")
    with run.hold():
        assert lock_of(run.path)["pid"] == os.getpid()


def test_a_private_copy_of_a_held_run_folder_can_be_held(tmp_path, holder):
    child = holder()
    copy = Run(tmp_path / "run").copy(tmp_path / "private" / "run")
    assert not copy.file("run.lock").exists() and lock_of(tmp_path / "run")["pid"] == child.pid
    with copy.hold():
        assert lock_of(copy.path)["pid"] == os.getpid()
