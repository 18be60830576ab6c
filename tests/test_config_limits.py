"""Configs that once hung, exhausted memory or ended in a traceback: each now ends in one line naming the file."""

import pytest

from cnnrun.config import load_experiment
from cnnrun.errors import UserError
from tests.conftest import run_here, tiny_config


def user_error(path, overrides=()) -> str:
    """The one-line message `load_experiment` gives for a broken config."""
    with pytest.raises(UserError) as caught:
        load_experiment(path, list(overrides))
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


def with_units(expression: str) -> dict:
    return tiny_config(model={"vars": {"base": 8}, "layers": ["Flatten", {"Dense": {"units": expression}}]})


@pytest.mark.parametrize("expression, message", [
    ("${9**9**9}", "too large"),
    ("${base ** 100}", "too large"),
    ("${2.0**5000}", "too large"),
    ("${1e300 * 1e300}", "too large"),
    ("${1/0}", "divides by zero"),
    ("${base // 0}", "divides by zero"),
    ("${(-8) ** 0.5}", "no real value"),
    ("${" + "1+" * 200 + "1}", "longer than"),
])
def test_arithmetic_that_cannot_end_well_is_one_line_naming_file_and_key(write_config, expression, message):
    path = write_config(with_units(expression))
    error = user_error(path)
    assert error.startswith(f"{path}: model.layers[1].Dense.units:"), error
    assert message in error


def test_arithmetic_within_bounds_still_computes(write_config):
    path = write_config(with_units("${base ** 2 * 10 // 3 - 1}"))
    assert load_experiment(path).model.layers[1]["Dense"]["units"] == 212


def test_an_unknown_variable_names_the_config_file(write_config):
    path = write_config(with_units("${bsae}"))
    error = user_error(path)
    assert error.startswith(f"{path}: "), error
    assert "did you mean 'base'" in error


def test_an_unknown_layer_names_the_config_file(write_config):
    path = write_config(tiny_config(model={"layers": ["Flaten"]}))
    assert user_error(path).startswith(f"{path}: model.layers[0]: unknown layer 'Flaten'")


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(write_config):
    # each var holds nine of the one before: 9**6 = 531,441 strings from eight short lines
    lines = ["vars:", '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 6)]
    lines.append("model: {layers: [Flatten, {Dense: {units: 3, name: *a5}}]}")
    path = write_config("\n".join(lines) + "\n")
    assert f"{path}: more than 100,000 values once YAML aliases are expanded" in user_error(path)


def test_a_repeat_of_a_billion_layers_is_refused(write_config):
    block = {"repeat": {"times": 10**9, "layers": ["ReLU"]}}
    path = write_config(tiny_config(model={"layers": [block, "Flatten"]}))
    assert "repeat.times" in user_error(path)


def test_nested_repeats_past_the_layer_bound_are_refused(write_config):
    inner = {"repeat": {"times": 1000, "layers": ["ReLU"]}}
    path = write_config(tiny_config(model={"layers": [{"repeat": {"times": 1000, "layers": [inner]}}]}))
    assert "more than 10000 layers" in user_error(path)


def test_deep_nesting_is_refused(write_config):
    path = write_config("model: {layers: [Flatten]}\nvars: {deep: " + "[" * 100 + "]" * 100 + "}\n")
    assert "nested more than" in user_error(path)


def test_a_latin1_config_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "réseau.yaml"
    path.write_bytes("name: réseau\nmodel: {layers: [Flatten]}\n".encode("latin-1"))
    error = user_error(path)
    assert str(path) in error and "UTF-8" in error


def test_a_png_given_as_the_config_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01")
    result = run_here("config", "show", path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}: not UTF-8 text (byte 0x89 at offset 0); "
                                                  f"a config is a YAML file saved as UTF-8"]


def test_a_set_value_that_is_not_yaml_is_one_line(write_config):
    result = run_here("config", "show", write_config(tiny_config()), "--set", "train.devices=[/gpu:0, /gpu:1")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--set train.devices=[/gpu:0, /gpu:1: the value is not valid YAML" in result.stderr


def test_a_batch_size_beyond_int64_is_one_line(write_config):
    error = user_error(write_config(tiny_config()), ["train.batch_size=1000000000000000000000000000000"])
    assert "train.batch_size" in error and "2147483647" in error


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", ".", "..", "", "a\\b"])
def test_a_name_must_be_one_folder_name(write_config, name):
    path = write_config(tiny_config(name=name))
    assert f"{path}: name: one folder name" in user_error(path)


def test_a_name_set_on_the_command_line_must_be_one_folder_name(write_config):
    result = run_here("config", "show", write_config(tiny_config()), "--set", "name=../../escaped")
    assert result.returncode == 2
    assert "name: one folder name" in result.stderr and "'../../escaped'" in result.stderr


def test_an_ordinary_name_with_dots_and_accents_is_kept(write_config):
    assert load_experiment(write_config(tiny_config(name="réseau_v1.2"))).name == "réseau_v1.2"


def test_a_negative_exponent_beyond_ten_thousand_is_refused_too(write_config):
    # 2 ** -20000 would underflow to 0.0: the bound holds on both sides of 0
    error = user_error(write_config(with_units("${2 ** -20000}")))
    assert "exponents stay within ±10000" in error


@pytest.mark.parametrize("lists, refused", [(62, False), (63, True)])
def test_nesting_is_refused_from_the_sixty_fifth_level(write_config, lists, refused):
    # levels: the document 1, `vars` 2, then the lists 3 … 2 + lists: 64 with 62 lists, 65 with 63
    path = write_config("model: {layers: [Flatten]}\nvars: {deep: " + "[" * lists + "]" * lists + "}\n")
    if refused:
        assert f"{path}: nested more than 64 levels deep" in user_error(path)
    else:
        expected: list = []
        for _ in range(lists - 1):
            expected = [expected]
        assert load_experiment(path).vars["deep"] == expected


def test_a_set_index_one_past_the_end_of_a_list_is_one_line(write_config):
    path = write_config(with_units(3))  # two layers: indexes 0 and 1
    assert "--set model.layers.2.Dense.units: 'model.layers' is a list of 2; '2' is not an index in it" in \
        user_error(path, ["model.layers.2.Dense.units=4"])
