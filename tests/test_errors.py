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


def test_offline_download_says_which_files_go_where(write_config, tmp_path, monkeypatch):
    # A proxy on a closed local port makes every download fail at once, as on a machine without network.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    config = tiny_config(dataset={"name": "fashion_mnist"})
    assert_user_error(run_cli("train", write_config(config)), "could not download fashion_mnist",
                      "train-images-idx3-ubyte.gz", "dataset.data_dir")
