"""Layer names that depend on the config alone, not on what the process built before.

Keras names a layer without a `name` from a counter kept for the whole process: the first Conv2D it ever makes
is `conv2d`, the next `conv2d_1`, whichever model it belongs to. A second model built in the same process (the
Trainer builds again once the data's statistics are known; a sweep or `train --seeds N` builds one per trial;
tests build many) would have other names than the first, and so would its checkpoints. `model.init_from` matches
layers by name, `explain --layer` and `filters --layer` take a name: the names must not move.

So cnnrun names every layer of the config that has no `name:` (and no `id:`) itself, with the name Keras would give
it in a fresh process: the class's name in snake case, numbered within the model in order (`conv2d`, `conv2d_1`,
`dense`, `dense_1`). A number that a layer of the config takes by its own `name:` is skipped.

Example:
>>> specs = [("model.layers[0]", Conv2D, {}), ("model.layers[1]", Conv2D, {"name": "conv2d"}),
...          ("model.layers[2]", Dense, {})]
>>> name_unnamed(specs)
>>> [kwargs["name"] for _, _, kwargs in specs]
['conv2d_1', 'conv2d', 'dense']
"""

import re
from typing import Any


def keras_prefix(cls: type) -> str:
    """The name Keras gives the first layer of class `cls` in a process: `Conv2D` → `conv2d`,
    `BatchNormalization` → `batch_normalization` (Keras' own snake case, `keras.src.utils.naming`)."""
    name = re.sub(r"\W+", "", cls.__name__)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def name_unnamed(specs: list[tuple[str, type, dict[str, Any]]]) -> None:
    """Set `name` in the keyword arguments of every layer spec that has none, counting per class in order.

    Args:
        specs: `(where, Keras class, keyword arguments)` of one model's layers, in the config's order (as
            `cnnrun.model.build.layer_specs` makes them); their keyword arguments are completed in place.
    """
    taken = {kwargs["name"] for _, _, kwargs in specs if kwargs.get("name") is not None}
    counts: dict[str, int] = {}
    for _, cls, kwargs in specs:
        if kwargs.get("name") is not None:
            continue
        prefix = keras_prefix(cls)
        name = prefix
        while name in taken:
            counts[prefix] = counts.get(prefix, 0) + 1
            name = f"{prefix}_{counts[prefix]}"
        kwargs["name"] = name
        taken.add(name)
