"""The graph language of `model.layers`: ids, inputs, joins and reusable blocks, expanded into a list of nodes.

A layer list is a chain: each layer takes the output of the one before it. A node may also carry `id:` (a name
for its output) and `inputs:` (the id, or the list of ids, it takes instead of the node before it); a join (`Add`,
`Concatenate`, …) takes two or more. `model.blocks:` names lists of nodes with parameters (`${f}`); `- block:
basic` with `args:` puts a copy in the list, `repeat: N` a chain of N copies, `first: {…}` changes the args of the
first copy. Inside a block, `in` is the block's input and ids are local to each copy.

`expand_graph` turns all of that into `Node`s in order, each naming the earlier nodes it takes, and finds every
mistake of structure without Keras: an unknown id, a node that takes a later one (a cycle), a block that calls
itself, a parameter a block does not use, a branch whose output goes nowhere. The schema runs it when the config
is read (without values: `${…}` stays as written); the model builder runs it again with the values, and Keras
then checks that the shapes fit (`cnnrun.model.graph`).

Example:
>>> nodes = expand_graph([{"Conv2D": {"filters": 4, "kernel_size": 3}, "id": "a"}, "ReLU"], {})
>>> [(node.layer, node.inputs, node.name) for node in nodes]
[('Conv2D', (-1,), 'a'), ('ReLU', (0,), None)]
"""

import re
from dataclasses import dataclass
from typing import Any

from cnnrun.config.expressions import substitute, variable_names
from cnnrun.config.registry import MERGE_LAYERS, check_layer_name
from cnnrun.errors import UserError, did_you_mean

INPUT = -1  # the model's input, where a node's inputs are indices of earlier nodes
MAX_LAYERS = 10_000  # layers of one model, blocks and `repeat:` expanded: far beyond any CNN, and quick to check
NODE_KEYS = ("id", "inputs")  # what a node may carry beside its one layer key
BLOCK_KEYS = ("block", "args", "repeat", "first", "id", "inputs")
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Node:
    """One layer of the expanded graph.

    Attributes:
        where: its place in the config, for messages, e.g.
            `model.layers[1] (block basic, copy 2) > model.blocks.basic[6] (Add)`.
        layer: the registry's name of its layer (`Conv2D`).
        args: the layer's arguments as written (`${…}` replaced when expanded with values).
        inputs: the indices of the earlier nodes it takes; `INPUT` is the model's input.
        name: its Keras layer name: its id (`body`); in a block, the copy and its id or place (`basic2_body`,
            `basic2_0` for the first node of the second copy of block `basic`); None: Keras names it.
    """

    where: str
    layer: str
    args: Any
    inputs: tuple[int, ...]
    name: str | None = None


def is_graph(layers: list[Any], blocks: dict[str, Any] | None) -> bool:
    """Whether a model is a graph (blocks, a join, or a node with `id:`, `inputs:` or `block:`), not a chain.

    A chain builds a `keras.Sequential`, as it always has; a graph a functional `keras.Model`.
    """
    def graph_entry(entry: Any) -> bool:
        if not isinstance(entry, dict):
            return entry in MERGE_LAYERS
        repeated = entry.get("repeat")
        if len(entry) == 1 and isinstance(repeated, dict) and isinstance(repeated.get("layers"), list):
            return any(graph_entry(e) for e in repeated["layers"])
        return any(key in entry for key in (*NODE_KEYS, "block", *MERGE_LAYERS))

    return bool(blocks) or any(graph_entry(entry) for entry in layers)


def expand_graph(layers: list[Any], blocks: dict[str, list[Any]],
                 variables: dict[str, Any] | None = None) -> list[Node]:
    """Expand `model.layers` and the blocks they use into nodes, in order; raise a UserError at the first mistake.

    Args:
        layers: `model.layers`, vars already substituted (`${num_classes}` may remain).
        blocks: `model.blocks`, as written.
        variables: the values `${…}` may name (the vars and `num_classes`); a block's args are added inside it.
            None checks the structure only and leaves every `${…}` as written (a `repeat:` not yet known counts 1).

    Returns:
        The nodes; the last one's output is the model's output.
    """
    expander = _Expander(blocks, variables)
    output = expander.chain(layers, INPUT, "model.layers", "", "", (), variables)
    expander.check_all_used(output)
    return expander.nodes


def block_parameters(body: list[Any]) -> set[str]:
    """The names a block's `${…}` use: its parameters, given by `args:` (a var gives a default)."""
    return variable_names(body)


class _Expander:
    """Walks the layer list and the blocks, appending nodes; remembers which outputs are taken."""

    def __init__(self, blocks: dict[str, list[Any]], variables: dict[str, Any] | None):
        self.blocks, self.variables = blocks, variables
        self.nodes: list[Node] = []
        self.taken: set[int] = set()
        self.copies: dict[str, int] = {}  # copies of each block so far: they name its layers basic1_…, basic2_…

    def chain(self, entries: list[Any], start: int, where: str, context: str, prefix: str,
              stack: tuple[str, ...], values: dict[str, Any] | None) -> int:
        """Append the nodes of one list (the model's layers or a block's copy); return its output's index.

        `start` is what `in` and the first node take; `context` is put before every place named in a message;
        `prefix` before every id made a Keras name; `stack` holds the blocks being expanded (to find recursion).
        """
        later = self._ids(entries, where, context)
        scope = {"in": start}
        previous = start
        for i, entry in enumerate(entries):
            here = f"{context}{where}[{i}]"
            entry = {entry: None} if isinstance(entry, str) else entry
            if not isinstance(entry, dict) or not entry:
                raise UserError(f"{here}: a node is one layer `Name: {{arguments}}` (with optional id: and inputs:) "
                                f"or `block: name`, got {entry!r}")
            inputs = self._take(entry.get("inputs"), here, scope, later, i, previous)
            if "block" in entry:
                previous = self._block(entry, here, inputs, prefix, stack, values)
            elif _old_repeat(entry):
                previous = self._repeat(entry["repeat"], here, inputs, values)
            else:
                previous = self._layer(entry, here, inputs, prefix, i, values)
            if "id" in entry:
                scope[entry["id"]] = previous
        return previous

    def _ids(self, entries: list[Any], where: str, context: str) -> dict[str, int]:
        """The ids of one list and their positions; a malformed, reserved or repeated id is an error."""
        ids: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "id" not in entry:
                continue
            name, here = entry["id"], f"{context}{where}[{i}]"
            if not isinstance(name, str) or not _ID.fullmatch(name) or name == "in":
                raise UserError(f"{here}: id {name!r} must be a name of letters, digits and _ (not `in`, which is "
                                f"the input)")
            if name in ids:
                raise UserError(f"{here}: id '{name}' is already the id of {where}[{ids[name]}]; ids are unique "
                                f"within one list")
            ids[name] = i
        return ids

    def _take(self, inputs: Any, here: str, scope: dict[str, int], later: dict[str, int], position: int,
              previous: int) -> tuple[int, ...]:
        """The indices a node takes: the node before it, or the outputs its `inputs:` name."""
        if inputs is None:
            return (previous,)
        names = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise UserError(f"{here}: inputs: one id or a list of ids, got {inputs!r}")
        taken = []
        for name in names:
            if name in scope:
                taken.append(scope[name])
            elif later.get(name) == position:
                raise UserError(f"{here}: takes its own output '{name}' (a cycle); name an earlier node")
            elif name in later:
                raise UserError(f"{here}: input '{name}' is a later node's output (position {later[name]}); a node "
                                f"takes only earlier ones, so the graph has no cycle")
            else:
                known = ", ".join(scope)
                raise UserError(f"{here}: unknown id '{name}'{did_you_mean(name, scope)}; known here: {known}")
        return tuple(taken)

    def _append(self, node: Node) -> int:
        self.taken.update(node.inputs)
        self.nodes.append(node)
        if len(self.nodes) > MAX_LAYERS:
            raise UserError(f"model.layers: more than {MAX_LAYERS} layers once blocks and `repeat:` are expanded")
        return len(self.nodes) - 1

    def _layer(self, entry: dict[str, Any], here: str, inputs: tuple[int, ...], prefix: str, position: int,
               values: dict[str, Any] | None) -> int:
        """Append one layer node, named by its id, or in a block copy by the copy and its id or position."""
        rest = {key: value for key, value in entry.items() if key not in NODE_KEYS}
        if len(rest) != 1:
            raise UserError(f"{here}: a node is one layer `Name: {{arguments}}` beside id: and inputs:, got keys "
                            f"{', '.join(map(str, entry))}")
        (layer, args), = rest.items()
        check_layer_name(layer, here)
        where = f"{here} ({layer})"
        if layer in MERGE_LAYERS and (len(inputs) < 2 or (layer == "Subtract" and len(inputs) != 2)):
            count = "exactly two" if layer == "Subtract" else "two or more"
            raise UserError(f"{where}: {layer} joins {count} outputs: write `inputs: [a, b]` with their ids")
        if layer not in MERGE_LAYERS and len(inputs) != 1:
            raise UserError(f"{where}: {layer} takes one input, got {len(inputs)}; join them first (Add, "
                            f"Concatenate, …)")
        if values is not None:
            args = substitute(args, values, f"{here}.{layer}")
        name = f"{prefix}{entry.get('id', position)}" if prefix else entry.get("id")
        return self._append(Node(where, layer, args, inputs, name))

    def _repeat(self, repeat: dict[str, Any], here: str, inputs: tuple[int, ...],
                values: dict[str, Any] | None) -> int:
        """Today's `- repeat: {times: N, layers: [...]}`: N chained copies of plain layers."""
        times, layers = repeat.get("times"), repeat.get("layers")
        if set(repeat) != {"times", "layers"} or not isinstance(times, int) or not 1 <= times <= MAX_LAYERS \
                or not layers:
            raise UserError(f"{here}: repeat takes `{{times: N, layers: [...]}}` (N from 1 to {MAX_LAYERS})")
        previous, = inputs
        for _ in range(times):
            for j, entry in enumerate(layers):
                if isinstance(entry, dict) and any(key in entry for key in (*NODE_KEYS, "block")):
                    raise UserError(f"{here}.repeat.layers[{j}]: ids, inputs and blocks do not go in `repeat:`; "
                                    f"write a block in model.blocks and use it with `repeat: N`")
                previous = self._layer({entry: None} if isinstance(entry, str) else entry,
                                       f"{here}.repeat.layers[{j}]", (previous,), "", j, values)
        return previous

    def _block(self, entry: dict[str, Any], here: str, inputs: tuple[int, ...], prefix: str,
               stack: tuple[str, ...], values: dict[str, Any] | None) -> int:
        """Chain `repeat` copies of a block, each with its own ids; return the last copy's output."""
        name = entry["block"]
        unknown = [key for key in entry if key not in BLOCK_KEYS]
        if unknown:
            raise UserError(f"{here}: a block node takes {', '.join(BLOCK_KEYS)}; got '{unknown[0]}'"
                            f"{did_you_mean(str(unknown[0]), BLOCK_KEYS)}")
        if not isinstance(name, str) or name not in self.blocks:
            known = ", ".join(self.blocks) or "none defined in model.blocks"
            raise UserError(f"{here}: unknown block {name!r}{did_you_mean(str(name), self.blocks)}; blocks: {known}")
        if name in stack:
            raise UserError(f"{here}: block {name} calls itself ({' > '.join((*stack, name))}); a block cannot "
                            f"contain itself")
        if len(inputs) != 1:
            raise UserError(f"{here}: a block takes one input, got {len(inputs)}; join them first (Add, …)")
        if not self.blocks[name]:  # every copy adds a layer: what bounds the expansion
            raise UserError(f"{here}: block {name} has no layers (model.blocks.{name} is empty)")
        args, first = entry.get("args") or {}, entry.get("first") or {}
        if not isinstance(args, dict) or not isinstance(first, dict):
            raise UserError(f"{here}: args and first are mappings of the block's parameters, e.g. {{f: 16}}")
        parameters = block_parameters(self.blocks[name])
        for key in (*args, *first):
            if key not in parameters:
                uses = ", ".join(sorted(parameters)) or "no parameters"
                raise UserError(f"{here}: block {name} has no parameter '{key}'{did_you_mean(str(key), parameters)}"
                                f"; it uses {uses}")
        repeat = entry.get("repeat", 1)
        if values is not None:
            repeat = substitute(repeat, values, f"{here}.repeat")
        elif isinstance(repeat, str) and "${" in repeat:
            repeat = 1  # known once the model is built with values
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_LAYERS:
            raise UserError(f"{here}: repeat: a whole number from 1 to {MAX_LAYERS}, got {repeat!r}")
        output, = inputs
        for copy in range(repeat):
            self.copies[name] = self.copies.get(name, 0) + 1
            given = {**args, **(first if copy == 0 else {})}
            inner = None if values is None else {**(self.variables or {}), **substitute(given, values, f"{here}.args")}
            context = f"{here} (block {name}, copy {copy + 1}) > "
            output = self.chain(self.blocks[name], output, f"model.blocks.{name}", context,
                                f"{prefix}{name}{self.copies[name]}_", (*stack, name), inner)
        return output

    def check_all_used(self, output: int) -> None:
        """Every node's output goes somewhere: to a later node, or out of the model (the last node)."""
        for index, node in enumerate(self.nodes):
            if index != output and index not in self.taken:
                raise UserError(f"{node.where}: its output goes to no node (the node after it takes `inputs:` "
                                f"instead); give it an id: and name that in an inputs:, or remove it")


def _old_repeat(entry: dict[str, Any]) -> bool:
    """`- repeat: {times: N, layers: [...]}`, today's way to repeat layers in a chain."""
    return set(entry) == {"repeat"} and isinstance(entry["repeat"], dict)
