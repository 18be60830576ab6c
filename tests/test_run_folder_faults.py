"""Writes that fail for real: a full disk, a read-only folder, a file too large; and the umask files get.

A full disk is a 64 KiB tmpfs and a read-only folder a tmpfs remounted read-only when the tests run as root (root
ignores permission bits); otherwise a folder without write permission. Where neither can be had, the test says
why it skips, and the same code path is still covered by a path whose parent is a regular file.
"""

import contextlib
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cnnrun.atomic import atomic_write_bytes, atomic_write_json
from cnnrun.errors import UserError
from cnnrun.run_folder.folder import Run, create_run

ROOT = os.geteuid() == 0


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")


@contextlib.contextmanager
def tiny_disk(folder: Path, size: str = "64k") -> Iterator[Path]:
    """`folder` as a real file system of `size` bytes (a tmpfs): writes past it fail with ENOSPC."""
    if not ROOT or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    folder.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def read_only(folder: Path, fill: Callable[[Path], None]) -> Iterator[Path]:
    """`folder`, filled by `fill`, then made read-only for real: a read-only tmpfs as root, else chmod a-w."""
    folder.mkdir(parents=True, exist_ok=True)
    if ROOT:
        with tiny_disk(folder, "1m"):
            fill(folder)
            _mount("-o", "remount,ro", str(folder))
            yield folder
        return
    fill(folder)
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
    for p in modes:
        p.chmod(0o555)
    try:
        yield folder
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_a_write_on_a_full_disk_says_disk_full_and_leaves_the_old_file_and_no_partial(tmp_path):
    with tiny_disk(tmp_path / "disk") as disk:
        atomic_write_json(disk / "state.json", {"status": "running"})
        old = (disk / "state.json").read_bytes()
        with pytest.raises(UserError) as caught:
            atomic_write_bytes(disk / "state.json", b"x" * 200_000)
        assert one_line(caught) == f"{disk / 'state.json'}: cannot write (disk full)"
        assert [p.name for p in disk.iterdir()] == ["state.json"]
        assert (disk / "state.json").read_bytes() == old


def test_a_write_past_the_file_size_limit_removes_its_partial_file(tmp_path):
    """The same path as a full disk, for any user: the write fails half-way (EFBIG)."""
    target = tmp_path / "history.csv"
    atomic_write_bytes(target, b"epoch\n1\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of ending the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(UserError) as caught:
            atomic_write_bytes(target, b"x" * 200_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert one_line(caught) == f"{target}: cannot write (file too large)"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]
    assert target.read_bytes() == b"epoch\n1\n"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_run_files_get_the_permissions_the_umask_gives(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "state.json", {"status": "running"})
        Run(tmp_path).write_history([{"epoch": 1, "loss": 0.5}])
    finally:
        os.umask(previous)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == \
        {"state.json": mode, "history.csv": mode}


def test_a_read_only_run_folder_is_found_before_work_starts(tmp_path):
    def fill(folder: Path) -> None:
        (folder / "checkpoints").mkdir()
        (folder / "state.json").write_text("{}")

    with read_only(tmp_path / "run", fill) as folder:
        run = Run(folder)
        reason = "read-only file system" if ROOT else "permission denied"
        with pytest.raises(UserError) as caught:
            run.check_writable("checkpoints", "eval")
        assert one_line(caught).startswith(f"{folder}: cannot write in the run folder ({reason})")
        with pytest.raises(UserError, match=rf"cannot write in the run folder \({reason}\)"):
            with run.hold():
                pytest.fail("held a folder it cannot write")
        assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "state.json"]


def test_a_read_only_experiment_folder_is_one_line_when_a_run_starts(tmp_path):
    with read_only(tmp_path / "out" / "exp", lambda folder: None) as folder:
        with pytest.raises(UserError, match="cannot create the run folder") as caught:
            create_run(tmp_path / "out", "exp")
        assert str(folder) in one_line(caught)


def test_a_run_folder_under_a_regular_file_is_not_writable(tmp_path):
    """Any user, any file system: the same check, refused by the system for another reason."""
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError) as caught:
        Run(tmp_path / "file" / "run").check_writable()
    assert "cannot write in the run folder (a part of the path is not a folder)" in one_line(caught)
    with pytest.raises(UserError, match="cannot create the run folder"):
        create_run(tmp_path / "file", "exp")
    with pytest.raises(UserError, match=r"file: cannot create the run folder \(a file is in the way of a folder\)"):
        create_run(tmp_path, "file")
    with pytest.raises(UserError, match=r"state\.json: cannot write \(.*/file is a file, not a folder\)"):
        atomic_write_json(tmp_path / "file" / "state.json", {})
    with pytest.raises(UserError, match=r"state\.json: cannot write \(a part of the path is not a folder\)"):
        atomic_write_json(tmp_path / "file" / "run" / "state.json", {})


def test_a_writable_run_folder_passes_the_check_and_keeps_no_trace(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    Run(tmp_path).check_writable("checkpoints", "eval")
    assert [p.name for p in tmp_path.rglob("*")] == ["checkpoints"]
