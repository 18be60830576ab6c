"""Every mistake in a graph is one line naming the config file and the node, exit 2, before any data is loaded."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import run_here, tiny_config
from tests.test_errors import assert_user_error

HEAD = ["GlobalAveragePooling2D", {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]
CONV = {"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same"}}
RESIDUAL = [  # a block whose shortcut is the identity
    CONV,
    {**CONV, "id": "body"},
    {"Add": {}, "inputs": ["in", "body"]},
]


def graph(layers, blocks=None) -> dict:
    return tiny_config(model={"layers": [*layers, *HEAD], **({"blocks": blocks} if blocks else {})})


BAD_GRAPHS = {
    "unknown id": (
        graph([{**CONV, "id": "a"}, CONV, {"Add": {}, "inputs": ["a", "b"]}]),
        ["model.layers[2]", "unknown id 'b'", "known here: in, a"]),
    "misspelt id": (
        graph([CONV, {"block": "res"}], {"res": [CONV, {**CONV, "id": "body"}, {"Add": {}, "inputs": ["in", "bdy"]}]}),
        ["model.layers[1] (block res, copy 1) > model.blocks.res[2]", "unknown id 'bdy'", "did you mean 'body'"]),
    "a parameter the block does not use": (
        graph([CONV, {"block": "res", "args": {"filtres": 8}}],
              {"res": [{"Conv2D": {"filters": "${filters}", "kernel_size": 1}}]}),
        ["model.layers[1]", "block res has no parameter 'filtres'", "did you mean 'filters'"]),
    "a parameter nobody gives": (
        graph([{"block": "res"}], {"res": [{"Conv2D": {"filters": "${f}", "kernel_size": 1}}]}),
        ["model.layers[0] (block res, copy 1) > model.blocks.res[0].Conv2D.filters", "unknown variable 'f'"]),
    "a block that calls itself": (
        graph([{"block": "a"}], {"a": [CONV, {"block": "b"}], "b": [{"block": "a"}]}),
        ["model.blocks.b[0]", "block a calls itself (a > b > a)"]),
    "an unknown block": (
        graph([{"block": "residul"}], {"residual": RESIDUAL}),
        ["model.layers[0]", "unknown block 'residul'", "did you mean 'residual'"]),
    "a branch nobody uses": (
        graph([{**CONV, "id": "a"}, {**CONV, "inputs": "in"}, CONV]),
        ["model.layers[0] (Conv2D)", "its output goes to no node"]),
    "a branch nobody uses in a block": (
        graph([CONV, {"block": "res", "repeat": 2}], {"res": [CONV, {**CONV, "inputs": "in"}]}),
        ["model.layers[1] (block res, copy 1) > model.blocks.res[0] (Conv2D)", "its output goes to no node"]),
    "a join of shapes that do not fit": (
        graph([{**CONV, "id": "a"}, {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same"}, "id": "b"},
               {"Add": {}, "inputs": ["a", "b"]}]),
        ["model.layers[2] (Add)", "cannot join 'a' of shape (None, 16, 16, 4) and 'b' of shape (None, 16, 16, 8)"]),
    "a concatenation of different sizes": (
        graph([{**CONV, "id": "a"}, {"MaxPooling2D": {"pool_size": 2}, "id": "b"},
               {"Concatenate": {}, "inputs": ["a", "b"]}]),
        ["model.layers[2] (Concatenate)", "(None, 16, 16, 4)", "(None, 8, 8, 4)"]),
    "a cycle": (
        graph([{**CONV, "id": "a", "inputs": "c"}, {**CONV, "id": "c"}]),
        ["model.layers[0]", "input 'c' is a later node's output", "no cycle"]),
    "a node that takes itself": (
        graph([{**CONV, "id": "a", "inputs": "a"}]),
        ["model.layers[0]", "takes its own output 'a' (a cycle)"]),
    "a join of one input": (
        graph([CONV, {"Add": {}}]),
        ["model.layers[1] (Add)", "Add joins two or more outputs"]),
    "code instead of a layer": (
        graph([{"_target_": "os.system", "id": "a"}]),
        ["model.layers[0]", "unknown layer '_target_'"]),
    "two layers in one node": (
        graph([{**CONV, "Dense": {"units": 3}, "id": "a"}]),
        ["model.layers[0]", "a node is one layer"]),
    "a repeated id": (
        graph([{**CONV, "id": "a"}, {**CONV, "id": "a"}]),
        ["model.layers[1]", "id 'a' is already the id of model.layers[0]"]),
}


@pytest.mark.parametrize("mistake", BAD_GRAPHS)
def test_a_graph_mistake_is_one_line_naming_the_file_and_the_node(write_config, mistake):
    config, fragments = BAD_GRAPHS[mistake]
    path = write_config(config)
    assert_user_error(run_here("inspect", path), f"error: {path}: ", *fragments)


def test_the_structure_is_checked_with_the_schema_before_keras_builds_anything(write_config):
    config, fragments = BAD_GRAPHS["a cycle"]
    path = write_config(config)
    assert_user_error(run_here("config", "show", path), str(path), *fragments)  # config show builds no model


def test_a_block_shape_mistake_names_the_copy(write_config):
    blocks = {"down": [{"MaxPooling2D": {"pool_size": 2}}]}
    path = write_config(graph([{"block": "down", "repeat": 5}], blocks))
    assert_user_error(run_here("inspect", path), "model.layers[0] (block down, copy 5) > model.blocks.down[0] "
                      "(MaxPooling2D)", "cannot take the output of 'down4_0', of shape (None, 1, 1, ",
                      "zero or negative")


def test_inspect_shows_each_nodes_inputs_by_id(write_config):
    path = write_config(graph([{**CONV, "id": "stem"}, {"block": "res", "repeat": 2}], {"res": RESIDUAL}))
    result = run_here("inspect", path)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[2].strip(): line for line in result.stdout.splitlines() if line.count("│") > 5}
    assert "stem, res1_body" in rows["res1_2"] and "Add" in rows["res1_2"]
    assert "res1_2, res2_body" in rows["res2_2"]
    assert "(16 + 2·1 − 3)/1 + 1 = 16" in rows["res2_body"] and "(3·3·4 + 1)·4 = 148" in rows["res2_body"]


def test_plot_draws_the_graph_or_says_in_one_line_what_to_install(write_config, tmp_path, monkeypatch):
    """With pydot and Graphviz (`make install` puts both in), the drawing is a PNG; without `dot` on the PATH, one
    line says what to install and nothing is written."""
    path = write_config(graph([{**CONV, "id": "stem"}, {"block": "res"}], {"res": RESIDUAL}))
    if not (importlib.util.find_spec("pydot") and shutil.which("dot")):
        pytest.skip("pydot or Graphviz's dot is missing (make install puts them in)")
    result = run_here("inspect", path, "--plot", tmp_path / "graph.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # a PATH without Graphviz's dot
    result = run_here("inspect", path, "--plot", tmp_path / "again.png")
    assert_user_error(result, "pip install 'cnnrun[plot]'", "Graphviz")
    assert not (tmp_path / "again.png").exists()
