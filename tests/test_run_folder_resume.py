"""Resume after what really happens to a run folder: an edited config.yaml, a checkpoint that could not be written
or was cut short, a damaged history.csv, pictures deleted before the final scoring.

Every run here is trained for real (tiny shapes, one epoch) and damaged on disk the way the fault leaves it.
"""

import hashlib
import json
import re
import shutil

import click
import keras
import numpy as np
import pytest
import typer
import yaml
from PIL import Image

from tests.conftest import history, only_run, run_here, tiny_config, train_then
from tests.test_data_splits import photo_folder
from tests.test_errors import assert_user_error

pytestmark = pytest.mark.slow

STEPS = 6  # 120 shapes, a quarter held out for validation: 90 training examples, batches of 16


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A completed one-epoch run (batch 16), copied by each test that damages it."""
    folder = tmp_path_factory.mktemp("one_epoch")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1, "batch_size": 16},
                                               output={"plots": False, "report": False})))
    result = run_here("train", path, "--output-dir", folder / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    return only_run(folder / "out")


@pytest.fixture
def run(one_epoch, tmp_path):
    return shutil.copytree(one_epoch, tmp_path / "tiny" / one_epoch.name)


def fingerprint(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def state_of(run) -> dict:
    return json.loads((run / "state.json").read_text())


def edit(path, change) -> None:
    doc = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc) if path.suffix == ".json" else yaml.safe_dump(doc, sort_keys=False))


def resumed_at(run) -> int:
    return json.loads((run / "meta.json").read_text())["resumed"][-1]["at_epoch"]


def iterations(path) -> int:
    return int(keras.saving.load_model(path, safe_mode=True).optimizer.iterations.numpy())


# ---------------------------------------------------------------- B.1: an edited config.yaml


def test_a_changed_batch_size_is_refused_in_one_line_and_no_finished_epoch_is_rewritten(run):
    before_history = (run / "history.csv").read_text()
    edit(run / "config.yaml", lambda c: c["train"].update(batch_size=8))
    before = fingerprint(run)
    result = run_here("resume", run, "--epochs", "3")
    assert_user_error(result, f"{run / 'config.yaml'}", "train.batch_size", "16 → 8")
    assert fingerprint(run) == before and (run / "history.csv").read_text() == before_history

    # a run folder of the previous release records no config in meta.json: last.keras's own steps tell
    edit(run / "meta.json", lambda meta: meta.pop("config", None))
    before = fingerprint(run)
    result = run_here("resume", run, "--epochs", "3")
    assert_user_error(result, f"{run / 'config.yaml'}", "train.batch_size 8", f"{STEPS} steps")
    assert fingerprint(run) == before

    edit(run / "config.yaml", lambda c: c["train"].update(batch_size=16))  # put back: it goes on from epoch 1
    result = run_here("resume", run, "--epochs", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [int(row["epoch"]) for row in history(run)] == [1, 2, 3]
    assert history(run)[0] == {k: float(v) for k, v in
                               zip(before_history.splitlines()[0].split(","), before_history.splitlines()[1].split(","),
                                   strict=True)}
    assert resumed_at(run) == 1 and iterations(run / "checkpoints" / "last.keras") == 3 * STEPS


def test_a_changed_callback_is_said_and_kept(run):
    edit(run / "config.yaml", lambda c: c["callbacks"].update(
        early_stopping={"monitor": "val_loss", "patience": 4}))
    result = run_here("resume", run, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "callbacks.early_stopping" in result.stdout and "goes on with" in result.stdout
    assert state_of(run)["status"] == "completed" and resumed_at(run) == 1


def test_a_changed_description_verbosity_or_tracking_is_kept_and_a_changed_batch_size_refused(tmp_path):
    from cnnrun.config import validate_experiment
    from cnnrun.errors import UserError
    from cnnrun.run_folder.files import Meta
    from cnnrun.run_folder.folder import Run
    from cnnrun.training.reopen import check_config

    run = Run(tmp_path)
    began = Meta(config=validate_experiment(tiny_config(), "tiny.yaml").model_dump(mode="json"))
    described = validate_experiment(tiny_config(description="the first try"), "tiny.yaml")
    assert check_config(run, described, began) == (
        f"note: {run.config_file} changed since the run began: description null → the first try; resume goes on "
        f"with the changes")
    quiet = validate_experiment(tiny_config(train={"epochs": 2, "batch_size": 16, "verbose": 0}), "tiny.yaml")
    assert "train.verbose auto → 0; resume goes on with the changes" in check_config(run, quiet, began)
    tracked = validate_experiment(tiny_config(tracking={"mlflow": {"uri": "file:mlruns", "experiment": "tiny"}}),
                                  "tiny.yaml")
    assert check_config(run, tracked, began).endswith(
        "tracking.mlflow.experiment (absent) → tiny; resume goes on with the changes")
    halved = validate_experiment(tiny_config(train={"epochs": 2, "batch_size": 8}), "tiny.yaml")
    with pytest.raises(UserError, match=r"changed since the run began: train\.batch_size 16 → 8; resume goes on "
                                        r"with the run as it began"):
        check_config(run, halved, began)


# ---------------------------------------------------------------- B.3: a checkpoint that could not be written


def _failed_writing(run) -> None:
    """What a full disk leaves after epoch 1 when last.keras could not be written: status failed, no scores."""
    edit(run / "state.json", lambda s: s.update(status="failed", fit_ended=None))
    (run / "scores.json").unlink()


def _cut(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, source", [
    (lambda run: (run / "checkpoints" / "last.keras").unlink(), "best"),
    (lambda run: _cut(run / "checkpoints" / "last.keras"), "best"),
    (lambda run: _cut(run / "checkpoints" / "best.keras"), "last"),
])
def test_resume_goes_on_from_the_newest_whole_checkpoint(run, damage, source):
    _failed_writing(run)
    damage(run)
    result = run_here("resume", run, "--epochs", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and f"from checkpoints/{source}.keras" in result.stdout
    assert [int(row["epoch"]) for row in history(run)] == [1, 2, 3]
    assert resumed_at(run) == 1
    state = state_of(run)
    assert state["status"] == "completed" and state["epochs_completed"] == 3
    for which in ("best", "last"):  # both whole again, and scored
        keras.saving.load_model(run / "checkpoints" / f"{which}.keras", safe_mode=True)
    assert iterations(run / "checkpoints" / "last.keras") == 3 * STEPS
    assert set(json.loads((run / "scores.json").read_text())) == {"best", "last"}


def test_resume_without_any_whole_checkpoint_trains_again_from_the_first_epoch(run):
    _failed_writing(run)
    _cut(run / "checkpoints" / "best.keras")
    (run / "checkpoints" / "last.keras").unlink()
    result = run_here("resume", run, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no whole checkpoint" in result.stdout and "from epoch 1" in result.stdout
    assert [int(row["epoch"]) for row in history(run)] == [1, 2] and resumed_at(run) == 0
    assert iterations(run / "checkpoints" / "last.keras") == 2 * STEPS


def _options(command: str) -> set[str]:
    from cnnrun.cli import app

    group = typer.main.get_command(app)
    found: click.Command = group
    for part in command.split():
        found = found.commands[part]  # type: ignore[attr-defined]
    return {name for param in found.params for name in getattr(param, "opts", [])}


def suggested_options(message: str, command: str) -> list[tuple[str, str]]:
    """Every `--option` a message suggests, with the command it belongs to: the `cnnrun COMMAND` written before it
    in the same clause, else the command that printed the message."""
    pairs = []
    for clause in re.split(r"[;:] ", message):
        for option in re.finditer(r"(?<![\w-])--[a-z][a-z-]*", clause):
            named = re.findall(r"cnnrun ([a-z-]+)", clause[:option.start()])
            pairs.append((named[-1] if named else command, option.group()))
    return pairs


def test_every_option_a_checkpoint_message_suggests_is_one_the_command_has(run, tmp_path):
    picture = tmp_path / "shape.png"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(picture)
    _cut(run / "checkpoints" / "best.keras")
    messages = []
    for command, args in [("evaluate", [run]), ("predict", [picture, "--run", run]), ("export", [run]),
                          ("filters", [run]), ("activations", [run, picture]),
                          ("explain", [run, picture])]:
        result = run_here(command, *args)
        assert_user_error(result, "best.keras: damaged checkpoint")
        messages.append((command, result.stderr))
    # epochs done, not yet scored, best.keras cut: resume cannot score it and says what can be done
    edit(run / "state.json", lambda s: s.update(status="interrupted"))
    result = run_here("resume", run)
    assert_user_error(result, "best.keras: damaged checkpoint", "--epochs")
    messages.append(("resume", result.stderr))
    suggested = [pair for command, message in messages for pair in suggested_options(message, command)]
    assert suggested, messages
    for command, option in suggested:
        assert option in _options(command), (command, option, messages)


def test_suggested_options_are_read_with_their_command():
    message = "x: damaged; use --checkpoint last, or score it with cnnrun evaluate RUN --checkpoint last --split test"
    assert suggested_options(message, "resume") == [("resume", "--checkpoint"), ("evaluate", "--checkpoint"),
                                                    ("evaluate", "--split")]


# ---------------------------------------------------------------- B.7: a damaged history.csv


@pytest.mark.parametrize("damage, says", [
    (lambda text: text[: len(text) - 20], "line 2"),  # cut inside the last row
    (lambda text: text.splitlines()[0] + "\n1,abc\n", "'abc'"),
    (lambda text: "", "empty"),
    (lambda text: text.splitlines()[0] + "\n", "holds 0 epochs"),  # the header alone: epoch 1 is gone
])
def test_a_damaged_history_is_one_line_naming_it_in_resume_and_compare(run, tmp_path, damage, says):
    other = shutil.copytree(run, tmp_path / "other")
    path = run / "history.csv"
    path.write_text(damage(path.read_text()))
    before = fingerprint(run)
    assert_user_error(run_here("resume", run, "--epochs", "3"), f"{path}", says)
    assert fingerprint(run) == before
    if says != "holds 0 epochs":  # a header alone is a history of no epochs, as a run that is starting has
        assert_user_error(run_here("compare", run, other, "--out", tmp_path / "c.png"), f"{path}", says)


# ---------------------------------------------------------------- B.5: pictures deleted before the final scoring


def test_pictures_deleted_before_the_final_scoring_end_in_one_line_and_a_run_resume_can_score(tmp_path, write_config):
    root = photo_folder(tmp_path / "photos", count=64, size=16)
    kept = shutil.copytree(root, tmp_path / "kept")
    config = tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 16, "cache": "memory",
                                  "validation_split": 0.25, "test_split": 0.25},
                         train={"epochs": 2, "batch_size": 8}, output={"plots": False, "report": False})
    result = train_then([write_config(config)], tmp_path / "out", lambda: shutil.rmtree(root))
    assert_user_error(result, str(root), "no such file or directory", "resume")
    run = only_run(tmp_path / "out")
    state = state_of(run)
    assert (state["status"], state["epochs_completed"], state["fit_ended"]) == ("failed", 2, "completed")
    assert not (run / "scores.json").exists()

    shutil.copytree(kept, root)  # the pictures are back
    evaluated = run_here("evaluate", run, "--checkpoint", "last")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    resumed = run_here("resume", run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert state_of(run)["status"] == "completed" and [int(r["epoch"]) for r in history(run)] == [1, 2]
    scores = json.loads((run / "scores.json").read_text())
    assert scores["last"]["accuracy"] == pytest.approx(
        json.loads((run / "eval" / "last_test_metrics.json").read_text())["accuracy"])


# ---------------------------------------------------------------- B.2: the parameters of a resumed run


def test_a_resumed_run_counts_the_models_parameters_not_the_optimizers(run, tmp_path):
    by_hand = keras.Sequential([keras.Input((16, 16, 1)),
                                keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                                keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                                keras.layers.Dense(3, activation="softmax")])
    assert by_hand.count_params() == 811  # (3·3·1 + 1)·4 + (8·8·4 + 1)·3
    other = shutil.copytree(run, tmp_path / "other")
    result = run_here("resume", run, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    listed = run_here("runs", run.parent, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["params"] == by_hand.count_params()
    compared = run_here("compare", run, other, "--out", tmp_path / "c.png")
    assert compared.returncode == 0, compared.stderr
    (line,) = [line for line in compared.stdout.splitlines() if " params " in line]
    assert re.findall(r"\d[\d,]*", line) == ["811", "811"], line
