"""Wire a graph's layers into a functional `keras.Model`, naming the node and both shapes when they do not fit.

`cnnrun.config.graph` has already expanded the config into nodes and checked their structure (ids, inputs,
blocks); here each node's layer is called on the outputs of the nodes it takes, in order, which is where Keras
finds that shapes do not fit: a join of `(None, 16, 16, 16)` and `(None, 8, 8, 32)`, a window larger than its input.
Keras is imported by the caller; this module imports nothing heavy.

Example:
>>> inputs = keras.Input((32, 32, 3))
>>> output = connect(nodes, layers, inputs)
>>> model = keras.Model(inputs, output)
"""

import re
from typing import Any

from cnnrun.config.graph import INPUT, Node
from cnnrun.config.registry import MERGE_LAYERS
from cnnrun.errors import UserError


def keras_reason(error: BaseException) -> str:
    """The line of a Keras error that says what is wrong (not "Exception encountered when calling …")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered"):
        return lines[1]
    return lines[0] if lines else type(error).__name__


def misfit(where: str, source: str, shape: tuple, error: BaseException) -> UserError:
    """The error for a layer that cannot take its input: what it takes, the shape, Keras' reason, a hint."""
    reason = keras_reason(error)
    hint = "; use padding: same, fewer pooling steps or a larger input" if "zero or negative" in reason else ""
    return UserError(f"{where}: cannot take the output of {source}, of shape {shape}: {reason}{hint}")


def connect(nodes: list[Node], layers: list[Any], inputs: Any) -> Any:
    """Call each node's layer on the outputs of the nodes it takes; return the last node's output.

    Args:
        nodes: the expanded graph, in order (each takes only earlier nodes).
        layers: one Keras layer per node, not yet called.
        inputs: the tensor `INPUT` stands for (the model's input, after the augmentation layers).

    Raises:
        UserError: a layer cannot take its input's shape, or a join's inputs do not fit together.
    """
    outputs: list[Any] = []
    for node, layer in zip(nodes, layers, strict=True):
        taken = [inputs if index == INPUT else outputs[index] for index in node.inputs]
        try:
            outputs.append(layer(taken if node.layer in MERGE_LAYERS else taken[0]))
        except (ValueError, TypeError) as e:
            sources = [_label(nodes, index) for index in node.inputs]
            shapes = [tuple(tensor.shape) for tensor in taken]
            if node.layer not in MERGE_LAYERS:
                raise misfit(node.where, sources[0], shapes[0], e) from e
            joined = " and ".join(f"{source} of shape {shape}" for source, shape in zip(sources, shapes, strict=True))
            need = "equal shapes but along the joined axis" if node.layer == "Concatenate" else "equal shapes"
            raise UserError(f"{node.where}: cannot join {joined}: {node.layer} needs {need}") from e
    return outputs[-1]


def _label(nodes: list[Node], index: int) -> str:
    """How a message names a node's output: `'body'` (its id), `the input`, or its place in the config."""
    if index == INPUT:
        return "the input"
    node = nodes[index]
    return f"'{node.name}'" if node.name else node.where
