"""The run folder helpers: atomic writes, new folder names, finding the latest run by its recorded start."""

import os

import pytest

from cnnrun.atomic import atomic_write_text
from cnnrun.errors import UserError
from cnnrun.runs import Run, create_run, find_latest_run, open_run


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "state.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    first, second = create_run(tmp_path, "exp"), create_run(tmp_path, "exp")
    assert first.path != second.path and first.path.parent == second.path.parent
    assert (first.path / "checkpoints").is_dir()


def test_latest_run_is_by_recorded_start_not_folder_date(tmp_path):
    older, newer = Run(tmp_path / "a" / "1"), Run(tmp_path / "b" / "2")
    for run, started in ((older, "2026-01-01T10:00:00+00:00"), (newer, "2026-03-01T10:00:00+00:00")):
        run.path.mkdir(parents=True)
        run.write_json("meta.json", {"started": started})
        run.write_json("state.json", {"status": "completed"})
        (run.path / "config.yaml").write_text("name: x\n")
    os.utime(older.path / "meta.json", (2e9, 2e9))  # touched later on disk
    assert find_latest_run(tmp_path).path == newer.path
    assert open_run(None, tmp_path).path == newer.path


def test_no_runs_and_not_a_run_folder(tmp_path):
    with pytest.raises(UserError, match="no runs under"):
        find_latest_run(tmp_path)
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="config.yaml: missing"):
        open_run(tmp_path / "x")
    (tmp_path / "x" / "config.yaml").write_text("name: x\n")
    (tmp_path / "x" / "state.json").write_text("{not json")
    with pytest.raises(UserError, match="damaged JSON"):
        Run(tmp_path / "x").read_json("state.json")
    assert (tmp_path / "x" / "state.json").read_text() == "{not json"
