"""The `model:` section: the layers (a chain or a graph, backbones among them), the blocks, the weight decay and
where the weights start from (`init_from`). Checked without Keras: layer names come from
`cnnrun.config.registry`'s table of strings, a graph's structure from `cnnrun.config.graph`, a backbone's
keys from `cnnrun.config.backbone`.
"""

import os
from typing import Any

from pydantic import Field, field_validator, model_validator

from cnnrun.config.backbone import check_backbone, resolve_weights_path
from cnnrun.config.graph import MAX_LAYERS, expand_graph, is_graph
from cnnrun.config.registry import check_layer_name
from cnnrun.config.sections import Section
from cnnrun.errors import UserError


class ModelConfig(Section):
    name: str | None = Field(None, description="The Keras model's name (default: the experiment's name).")
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Values for `${name}` in the layers (also allowed at the top level)."
    )
    layers: list[Any] = Field(
        min_length=1,
        description="The layers, in order, written as in Keras: `- Conv2D: {filters: 32, kernel_size: 3}`, "
        "`- Dropout: 0.2`, `- Flatten: {}`; `- repeat: {times: N, layers: [...]}` repeats a block. The input "
        "shape comes from the dataset; `${num_classes}` is the number of classes. A graph: a node may carry "
        "`id: name` beside its layer and `inputs: name` (or a list) to take another node's output than the one "
        "before it; joins (`Add`, `Concatenate`, `Multiply`, `Average`, `Maximum`, `Minimum`, `Subtract`) take "
        "`inputs: [a, b]`; `- block: basic` with `args: {f: 16}`, `repeat: N` and `first: {...}` (the first "
        "copy's args) uses a block of `blocks`. See \"Graphs: residual and inception blocks\". `- backbone: {name: "
        "MobileNetV2, weights: imagenet, trainable: false, pooling: avg}` is a `keras.applications` network "
        "without its top, its family's `preprocess_input` in front (`preprocessing: caffe | tf | torch | none` "
        "chooses another; needs `dataset.normalize: none`); see "
        "\"Start from a pretrained network\".",
    )
    blocks: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Reusable lists of nodes by name, used in `layers` as `- block: name`. `${p}` in a block is "
        "a parameter that each use's `args:` gives (a var of that name is its default); `inputs: in` takes the "
        "block's input; ids are local to each copy.",
    )
    weight_decay: float = Field(0.0, ge=0, description="The papers' weight decay: adds `weight_decay ÷ 2 × Σ w²` "
                                "of every Conv and Dense kernel to the loss (Keras' `kernel_regularizer: {l2: "
                                "weight_decay ÷ 2}`), so each step subtracts `learning_rate × weight_decay × w`, "
                                "through the optimizer's momentum or moments. A layer that sets its own "
                                "`kernel_regularizer` (even `null`) keeps it. Keras' decoupled kind is "
                                "`compile.optimizer.weight_decay`.")
    init_from: str | None = Field(None, description="Start from an earlier run: `RUN_DIR`, `RUN_DIR:best` (the "
                                  "default) or `RUN_DIR:last`; the folder of an experiment's runs (`outputs/NAME`) "
                                  "is its latest finished run. Each layer whose name and weight shapes match a "
                                  "layer of that checkpoint (a nested model's layers too) starts with its weights; "
                                  "the others keep their fresh initialisation; never the optimizer's state. A "
                                  "relative path is taken from the current folder and recorded absolute. See "
                                  "\"Start from a pretrained network\".")
    replace_head: bool = Field(False, description="With `init_from`: the last Dense layer keeps its fresh "
                               "initialisation even when it matches (a head for this dataset's classes). `false`: "
                               "a last Dense of another shape than the run's is an error.")

    @field_validator("init_from")
    @classmethod
    def _run_folder(cls, value: str | None) -> str | None:
        if value is None:
            return None
        folder, which = split_init_from(value)
        return f"{os.path.abspath(os.path.expanduser(folder))}:{which}"

    @model_validator(mode="after")
    def _known_layers(self) -> "ModelConfig":
        """Layer names, and for a graph its structure (ids, inputs, blocks), checked before Keras is loaded;
        a backbone's keys too (its weights file made absolute)."""
        if self.replace_head and self.init_from is None:
            raise UserError("model.replace_head: only with model.init_from (the run whose head it replaces)")
        if not is_graph(self.layers, self.blocks):
            for count, (where, name, _) in enumerate(iter_layer_entries(self.layers), 1):
                if count > MAX_LAYERS:
                    raise UserError(f"model.layers: more than {MAX_LAYERS} layers once `repeat:` blocks are "
                                    f"expanded")
                check_layer_name(name, where)
        for where, args in self.backbones():  # a graph's structure is checked as it is expanded there
            check_backbone(args, where)
            resolve_weights_path(args)
        return self

    def backbones(self) -> list[tuple[str, Any]]:
        """`(where, arguments)` of every `backbone` node, as written (the mappings of `layers` and `blocks`)."""
        if is_graph(self.layers, self.blocks):
            entries = [(node.where, node.layer, node.args) for node in expand_graph(self.layers, self.blocks)]
        else:
            entries = list(iter_layer_entries(self.layers))
        return [(where, args) for where, name, args in entries if name == "backbone"]


def split_init_from(value: str) -> tuple[str, str]:
    """`model.init_from` as `(run folder, "best" or "last")`: `RUN_DIR`, `RUN_DIR:best` or `RUN_DIR:last`."""
    folder, colon, which = value.rpartition(":")
    if not colon or not folder or "/" in which or "\\" in which:  # no suffix (a Windows drive is no suffix)
        folder, which = value, "best"
    if which not in ("best", "last"):
        raise ValueError(f"end with :best or :last (which checkpoint of the run), not ':{which}'")
    if not folder.strip():
        raise ValueError("a run folder, e.g. outputs/NAME/20261127-101500 (optionally :best or :last)")
    return folder, which


def iter_layer_entries(layers: list[Any], where: str = "model.layers"):
    """Yield `(where, layer_name, arguments)` for every layer entry, expanding `repeat:` blocks.

    An entry is `{Name: {args}}`, `{Name: value}` (the first argument, e.g. `Dropout: 0.2`) or a bare `Name`.
    """
    for i, entry in enumerate(layers):
        here = f"{where}[{i}]"
        if isinstance(entry, str):
            yield here, entry, {}
            continue
        if not isinstance(entry, dict) or len(entry) != 1:
            raise UserError(f"{here}: a layer is one `Name: {{arguments}}` pair, got {entry!r}")
        (name, args), = entry.items()
        if name == "repeat":
            if not isinstance(args, dict) or set(args) != {"times", "layers"}:
                raise UserError(f"{here}: repeat takes `{{times: N, layers: [...]}}`, got {args!r}")
            if not isinstance(args["times"], int) or not 1 <= args["times"] <= MAX_LAYERS:
                raise UserError(f"{here}.repeat.times: a whole number from 1 to {MAX_LAYERS}, got {args['times']!r}")
            if not isinstance(args["layers"], list) or not args["layers"]:
                raise UserError(f"{here}.repeat.layers: a non-empty list of layers")
            for _ in range(args["times"]):
                yield from iter_layer_entries(args["layers"], f"{here}.repeat.layers")
            continue
        yield f"{here} ({name})", name, args


