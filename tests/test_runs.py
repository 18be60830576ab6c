"""The run folder: new folder names, finding the latest run by its recorded start, state.json and its schema."""

import json
import os
from datetime import datetime

import pytest
from pydantic import ValidationError

from cnnrun.atomic import atomic_write_text
from cnnrun.errors import UserError
from cnnrun.run_folder.folder import Run, create_run, find_latest_run, open_run
from tests.conftest import run_here

COMPLETED = {"status": "completed", "epochs_completed": 2, "epochs_planned": 2,
             "best": {"monitor": "val_loss", "value": 0.5, "epoch": 2}, "callbacks": {}}


def make_run(path, started: str | None = "2026-01-01T10:00:00+00:00", state: dict | None = None) -> Run:
    """A run folder with a config, a state and a meta.json recording `started`, written as a Trainer would."""
    run = Run(path)
    (run.path / "checkpoints").mkdir(parents=True)
    run.write_json("meta.json", {"started": started})
    run.write_json("state.json", state or COMPLETED)
    atomic_write_text(run.file("config.yaml"), "name: x\n")
    return run


def folder_listing(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


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


def test_a_run_folder_is_named_by_the_second_it_was_made(tmp_path):
    before = datetime.now().replace(microsecond=0)
    run = create_run(tmp_path, "exp")
    after = datetime.now()
    # <output_dir>/<name>/<YYYYMMDD-HHMMSS>: parses back to a time within the call, to the second
    assert run.path.parent == tmp_path / "exp"
    assert before <= datetime.strptime(run.path.name, "%Y%m%d-%H%M%S") <= after


def test_latest_run_is_by_recorded_start_not_folder_date(tmp_path):
    older = make_run(tmp_path / "a" / "1", "2026-01-01T10:00:00+00:00")
    newer = make_run(tmp_path / "b" / "2", "2026-03-01T10:00:00+00:00")
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


@pytest.mark.parametrize("meta", ["[]", '{"started": 5}', '{"started": "last tuesday"}', "{not json"])
def test_one_runs_damaged_meta_json_is_skipped_with_a_note_when_finding_the_latest(tmp_path, capsys, meta):
    good = make_run(tmp_path / "good" / "1", "2026-01-01T10:00:00+00:00")
    bad = make_run(tmp_path / "bad" / "2", "2026-05-01T10:00:00+00:00")
    (bad.path / "meta.json").write_text(meta)
    latest = find_latest_run(tmp_path)
    assert latest.path == good.path
    assert [s.split(" (")[0] for s in latest.skipped] == [str(bad.path)]  # FOLDER (why)
    assert open_run(None, tmp_path).skipped == latest.skipped
    assert capsys.readouterr() == ("", "")  # the run folder package prints nothing: the CLI says it


def test_the_cli_says_which_run_folders_it_skipped_in_one_note_line(tmp_path):
    make_run(tmp_path / "outputs" / "good" / "1", "2026-01-01T10:00:00+00:00")
    bad = make_run(tmp_path / "outputs" / "bad" / "2", "2026-05-01T10:00:00+00:00")
    (bad.path / "meta.json").write_text("{not json")
    result = run_here("export", "--format", "onnx", "--checkpoint", "best", cwd=tmp_path)
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: skipped 1 run folder") and \
        str(bad.path.relative_to(tmp_path)) in notes[0]


@pytest.mark.parametrize("content", [[], {}, {"status": 5}, {"best": "x"},
                                     {"status": "finished", "epochs_planned": 2},
                                     {"status": "running", "epochs_planned": 0},
                                     {"status": "running", "epochs_planned": 2, "epochs_completed": -1},
                                     {**COMPLETED, "best": {"monitor": "val_loss", "value": "low", "epoch": 2}},
                                     {**COMPLETED, "epochs_completed": "2"}])
def test_a_state_json_that_is_not_a_run_state_is_one_line_before_anything_is_written(tmp_path, content):
    run = make_run(tmp_path / "run")
    run.file("state.json").write_text(json.dumps(content))
    before = folder_listing(tmp_path), run.file("state.json").read_bytes()
    for read in (run.read_state, lambda: run.update_state(status="running"), lambda: open_run(run.path)):
        with pytest.raises(UserError, match=r"state\.json: .* is not a cnnrun run state \(.+\)") as caught:
            read()
        assert "\n" not in str(caught.value)
    assert (folder_listing(tmp_path), run.file("state.json").read_bytes()) == before


def test_state_has_a_typed_field_for_each_key_the_trainer_adds_and_merges_changes(tmp_path):
    run = Run(tmp_path)
    state = run.update_state(status="running", epochs_completed=0, epochs_planned=3,
                             best={"monitor": "val_loss", "value": None, "epoch": None}, augmentation="model")
    assert state.status == "running" and state.best.value is None and state.augmentation == "model"
    run.update_state(epochs_completed=1, best={"monitor": "val_loss", "value": 0.7, "epoch": 1}, phase=2,
                     fit_ended="completed")
    on_disk = json.loads(run.file("state.json").read_text())
    assert on_disk["epochs_completed"] == 1 and on_disk["epochs_planned"] == 3
    assert on_disk["best"] == {"monitor": "val_loss", "value": 0.7, "epoch": 1}
    assert (on_disk["augmentation"], on_disk["phase"], on_disk["fit_ended"]) == ("model", 2, "completed")
    assert run.read_state().model_dump() == on_disk


@pytest.mark.parametrize("change", [{"scored": False}, {"augmentation": "gpu"}, {"fit_ended": "failed"},
                                    {"phase": 0}])
def test_a_key_or_value_the_state_does_not_have_is_refused_and_nothing_is_written(tmp_path, change):
    run = make_run(tmp_path / "run")
    before = run.file("state.json").read_bytes()
    with pytest.raises(ValidationError):
        run.update_state(**change)
    assert run.file("state.json").read_bytes() == before
    run.file("state.json").write_text(json.dumps({**COMPLETED, **change}))
    with pytest.raises(UserError, match=rf"state\.json: .* is not a cnnrun run state \({next(iter(change))}: "):
        run.read_state()


@pytest.mark.parametrize("name", ["../escaped", "a/b", ".", "..", "", "x/../../y"])
def test_a_run_name_that_is_not_one_folder_name_is_refused_and_nothing_is_created(tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="--name / name: one folder name, got") as caught:
        create_run(out, name)
    assert repr(name) in str(caught.value) and "\n" not in str(caught.value)
    assert folder_listing(tmp_path) == []


def test_an_absolute_run_name_is_refused_and_nothing_is_created_there(tmp_path):
    target = tmp_path / "elsewhere"
    with pytest.raises(UserError, match="one folder name"):
        create_run(tmp_path / "out", str(target))
    assert not target.exists() and not (tmp_path / "out").exists()


def test_a_running_run_whose_process_is_gone_is_listed_as_stopped(tmp_path):
    import subprocess
    import sys

    from cnnrun.run_folder.lock import Holder
    from cnnrun.tasks.runs_table import list_runs

    running = {**COMPLETED, "status": "running", "epochs_completed": 1}
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_pid = int(ended.stdout)  # a process that has ended: its PID names no process now
    me = Holder.me()
    for name, lock in {"dead": Holder(gone_pid, me.host, me.since, None, "0" * 16), "alive": me, "none": None}.items():
        run = make_run(tmp_path / "out" / name / "20260101-100000", state=running)
        if lock is not None:
            run.file("run.lock").write_bytes(lock.to_bytes())
    statuses = {row["name"]: row["status"] for row in list_runs(tmp_path / "out")}
    assert statuses == {"dead": "stopped (process gone)", "alive": "running", "none": "stopped (process gone)"}
