"""Every user mistake ends in one readable line and exit code 2, never a traceback."""

import pytest

from tests.conftest import run_cli, run_here, tiny_config


def assert_user_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error:"), message
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_config_file(tmp_path):
    assert_user_error(run_here("inspect", tmp_path / "nope.yaml"), "nope.yaml", "not found")


def test_yaml_syntax_error_names_file_and_line(write_config):
    path = write_config("name: x\nmodel:\n  layers: [Flatten\ntrain: {epochs: 2}\n")
    assert_user_error(run_here("inspect", path), f"{path}:", "YAML syntax error")


def test_unknown_section_suggests(write_config):
    assert_user_error(run_here("inspect", write_config({**tiny_config(), "trian": {"epochs": 1}})),
                      "unknown key 'trian'", "did you mean 'train'")


def test_unknown_key_in_section_suggests(write_config):
    assert_user_error(run_here("inspect", write_config(tiny_config(train={"epoch": 1}))),
                      "train.epoch", "did you mean 'epochs'")


def test_unknown_layer_suggests(write_config):
    config = tiny_config(model={"layers": [{"Conv2d": {"filters": 4, "kernel_size": 3}}, "Flatten"]})
    assert_user_error(run_here("inspect", write_config(config)), "model.layers[0]", "unknown layer 'Conv2d'",
                      "did you mean 'Conv2D'")


def test_layer_argument_keras_does_not_accept(write_config):
    config = tiny_config(model={"layers": [{"Conv2D": {"filters": 4, "kernal_size": 3}}, "Flatten"]})
    assert_user_error(run_here("inspect", write_config(config)), "model.layers[0] (Conv2D)",
                      "no argument 'kernal_size'", "did you mean 'kernel_size'")


@pytest.mark.parametrize("section, message", [
    ({"train": {"epochs": "many"}}, "train.epochs"),
    ({"dataset": {"name": "imagenet"}}, "dataset.name"),
    ({"compile": {"optimizer": "adan"}}, "did you mean 'adam'"),
])
def test_wrong_values(write_config, section, message):
    assert_user_error(run_here("inspect", write_config(tiny_config(**section))), message)


def test_dataset_that_cannot_be_found(write_config, tmp_path):
    config = tiny_config(dataset={"name": "fashion_mnist", "data_dir": str(tmp_path / "empty")})
    (tmp_path / "empty").mkdir()
    assert_user_error(run_here("train", write_config(config)), "dataset.data_dir", "train-images-idx3-ubyte.gz")


def test_npz_that_does_not_exist(write_config, tmp_path):
    config = tiny_config(dataset={"name": "npz", "path": str(tmp_path / "mine.npz")})
    assert_user_error(run_here("inspect", write_config(config)), "mine.npz", "not found")


def test_monitor_that_is_never_logged(write_config):
    config = tiny_config(callbacks={"checkpoint": {"monitor": "val_auc"}})
    assert_user_error(run_here("train", write_config(config)), "callbacks.checkpoint.monitor", "val_auc")


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "inspect", tmp_path / "nope.yaml")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_offline_download_says_which_files_go_where(write_config, offline):
    config = tiny_config(dataset={"name": "fashion_mnist"})
    assert_user_error(run_here("train", write_config(config)), "could not download fashion_mnist",
                      "train-images-idx3-ubyte.gz", "dataset.data_dir")


@pytest.mark.parametrize("args, values", [
    (["evaluate", "--checkpoint", "middle"], "'best', 'last'"),
    (["evaluate", "--split", "train"], "'test', 'validation'"),
    (["predict", "picture.png", "--checkpoint", "first"], "'best', 'last'"),
    (["kernel-demo", "--padding", "full"], "'valid', 'same'"),
    (["kernel-demo", "--pool", "min"], "'max', 'average'"),
    (["conv-shape", "--input", "28x28", "--padding", "full"], "'valid', 'same'"),
])
def test_a_value_outside_an_options_choices_is_refused_by_typer_naming_the_choices(args, values):
    result = run_here(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"is not one of {values}" in " ".join(result.stderr.replace("│", " ").split())


@pytest.mark.parametrize("command, choices", [
    ("evaluate", ["[best|last]", "[test|validation]"]), ("predict", ["[best|last]"]),
    ("kernel-demo", ["[valid|same]", "[max|average]"]), ("conv-shape", ["[valid|same]"]),
])
def test_help_lists_the_choices_of_each_option(command, choices):
    result = run_here(command, "--help")
    assert result.returncode == 0
    for choice in choices:
        assert choice in result.stdout.replace("<", "[").replace(">", "]"), result.stdout


def test_predict_refuses_a_run_folder_among_the_images_and_suggests_run(tmp_path):
    run = tmp_path / "outputs" / "tiny" / "20260101-120000"
    run.mkdir(parents=True)
    (run / "state.json").write_text('{"status": "completed"}')
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"")
    assert_user_error(run_here("predict", run, picture, cwd=tmp_path), f"{run}: is a run folder",
                      f"--run {run}")


def test_library_warnings_stay_out_of_the_terminal_but_not_out_of_debug(tmp_path):
    from PIL import Image

    # just over Pillow's 89,478,485-pixel limit: opening it raises a DecompressionBombWarning (a Python warning)
    Image.new("L", (9500, 9450)).save(tmp_path / "large.png")
    result = run_cli("image-info", tmp_path / "large.png", "--out", tmp_path / "figure.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Shape: (9450, 9500)" in result.stdout
    assert result.stderr == ""
    result = run_cli("--debug", "image-info", tmp_path / "large.png", "--out", tmp_path / "figure.png", cwd=tmp_path)
    assert "DecompressionBombWarning" in result.stderr


def test_a_user_error_keeps_where_what_and_fix_and_reads_as_one_line():
    from cnnrun.errors import UserError

    error = UserError("must be at least 1, got 0", where="--stride", fix="give 1 or more")
    assert (error.where, error.what, error.fix) == ("--stride", "must be at least 1, got 0", "give 1 or more")
    assert str(error) == "--stride: must be at least 1, got 0; give 1 or more" == error.args[0]
    assert str(UserError("no place", fix="a fix")) == "no place; a fix"
    whole = UserError("config.yaml: train.epochs: must be a number")  # 279 call sites write the whole line
    assert (str(whole), whole.where, whole.fix) == ("config.yaml: train.epochs: must be a number", "", "")


def test_a_user_error_crosses_processes_whole():
    import pickle

    from cnnrun.errors import UserError

    again = pickle.loads(pickle.dumps(UserError("bad", where="a.yaml", fix="fix it")))
    assert type(again) is UserError and (again.where, again.what, again.fix) == ("a.yaml", "bad", "fix it")


def test_placing_an_error_puts_the_outer_place_first_once():
    from cnnrun.errors import UserError

    inner = UserError("a 5-wide window does not fit", where="stride", fix="use padding 'same'")
    placed = inner.at("--then conv:5x5x1")
    assert (placed.where, placed.what, placed.fix) == ("--then conv:5x5x1: stride", inner.what, inner.fix)
    assert str(UserError("no place").at("--kernel sobel_x")) == "--kernel sobel_x: no place"
    # already placed there (a file named twice): unchanged, whether the place is data or written in the line
    assert str(placed.at("--then conv:5x5x1")) == str(placed)
    assert str(UserError("a.yaml: model: bad").at("a.yaml")) == "a.yaml: model: bad"
    assert str(UserError("a.yaml.bak: bad").at("a.yaml")) == "a.yaml: a.yaml.bak: bad"


def test_placing_an_error_can_replace_the_start_of_its_place():
    from cnnrun.errors import UserError

    here, inner = "train.phases.1.optimizer", "compile.optimizer"
    for error in (UserError("must be > 0", where="compile.optimizer.learning_rate"),
                  UserError("compile.optimizer.learning_rate: must be > 0")):  # written whole
        assert str(error.at(here, replacing=inner)) == "train.phases.1.optimizer.learning_rate: must be > 0"
    assert str(UserError("compile.optimizer: unknown 'adan'").at(here, replacing=inner)) == \
        "train.phases.1.optimizer: unknown 'adan'"
    assert str(UserError("bad", where="model.layers[0]").at("sweep.params (lr=0.1)", replacing="x.yaml")) == \
        "sweep.params (lr=0.1): model.layers[0]: bad"
    assert str(UserError("x.yaml: model.layers[0]: bad").at("x.yaml: sweep.params (lr=0.1)", replacing="x.yaml")) \
        == "x.yaml: sweep.params (lr=0.1): model.layers[0]: bad"
