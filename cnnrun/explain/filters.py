"""`cnnrun filters`: the kernels a run's convolution layer learnt, as a grid of small pictures.

The trained counterpart of `kernel-demo`'s hand-made kernels. Each kernel is drawn with 0 as middle gray, its
largest magnitude as black (negative) or white (positive), so kernel-demo's vertical edge `[[-1, 0, 1]] × 3`
is a black, a gray and a white column. A first layer on colour pictures is drawn in colour (each input channel
as its colour channel); a deeper layer either as each kernel's mean over its input channels (the default) or,
with `per_channel`, one picture per input channel.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.errors import UserError
from cnnrun.explain.network import LayerPath, find_layer, layer_paths
from cnnrun.figures import tile_grid
from cnnrun.run_folder.folder import open_run

MAX_CHANNELS = 16  # input channels drawn per kernel with per_channel


@dataclass(frozen=True)
class Filters:
    """What `show_filters` drew: the layer, its kernels' shape, how they were drawn, and the PNG."""

    layer: str
    kind: str  # the layer's class name
    shape: tuple[int, int, int, int]  # the kernel: (height, width, in, out)
    how: str  # `in colour (red, green, blue inputs)`, `averaged over the 16 input channels`, …
    file: Path


def kernel_of(path: LayerPath) -> np.ndarray | None:
    """A layer's 4-D convolution kernel `(height, width, in, out)` as NumPy, or None for other layers."""
    import keras

    kernel = getattr(path.layer, "kernel", None)
    if kernel is None or len(kernel.shape) != 4:
        return None
    return np.asarray(keras.ops.convert_to_numpy(kernel), np.float32)


def conv_layer(model, name: str | None) -> tuple[LayerPath, np.ndarray]:
    """The convolution layer called `name` (None: the first one) and its kernel.

    Raises:
        UserError: no such layer, it is not a convolution, or the model has none.
    """
    convolutions = [p for p in layer_paths(model) if kernel_of(p) is not None]
    if name is None:
        if not convolutions:
            raise UserError("has no convolution layer (a layer with a 4-D kernel)", where=model.name)
        return convolutions[0], kernel_of(convolutions[0])
    path = find_layer(model, name)
    kernel = kernel_of(path)
    if kernel is None:
        raise UserError(f"a {type(path.layer).__name__} has no convolution kernel (height, width, in, out)",
                        where=f"--layer {path.name}",
                        fix=f"its convolution layers: {', '.join(p.name for p in convolutions)}")
    return path, kernel


def centred(tiles: np.ndarray) -> np.ndarray:
    """Each tile scaled so that 0 is 0.5 and its largest magnitude 0 or 1 (the first axis counts tiles)."""
    axes = tuple(range(1, tiles.ndim))
    top = np.abs(tiles).max(axis=axes, keepdims=True)
    return tiles / (2 * np.where(top > 0, top, 1)) + 0.5


def kernel_tiles(kernel: np.ndarray, per_channel: bool = False) -> tuple[np.ndarray, list[str], str]:
    """The pictures `filters` draws for a `(height, width, in, out)` kernel.

    Returns:
        `(tiles, labels, how)`: tiles in [0, 1], `(n, h, w)` gray or `(n, h, w, 3)` colour; a label per tile;
        how they were made, for the title.
    """
    height, width, inputs, outputs = kernel.shape
    per_filter = kernel.transpose(3, 0, 1, 2)  # (out, h, w, in)
    if inputs == 3 and not per_channel:
        return centred(per_filter), [f"#{i}" for i in range(outputs)], "in colour (red, green, blue inputs)"
    if inputs == 1:
        return centred(per_filter[..., 0]), [f"#{i}" for i in range(outputs)], "one input channel"
    if not per_channel:
        return centred(per_filter.mean(axis=-1)), [f"#{i}" for i in range(outputs)], \
            f"averaged over the {inputs} input channels"
    shown = min(inputs, MAX_CHANNELS)
    tiles = per_filter[..., :shown].transpose(0, 3, 1, 2).reshape(-1, height, width)
    labels = [f"#{i} in {c}" for i in range(outputs) for c in range(shown)]
    more = f" (the first {shown} of {inputs})" if shown < inputs else ""
    return centred(tiles), labels, f"one picture per input channel{more}, a row per kernel"


def show_filters(run_path: str | Path | None, layer: str | None = None, checkpoint: str = "best",
                 per_channel: bool = False, out: Path | None = None) -> Filters:
    """Draw a run's learnt convolution kernels as a grid; say what was drawn.

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        layer: the convolution layer; None: the first one.
        checkpoint: `best` or `last`.
        per_channel: draw every input channel of a deeper layer's kernels, not their mean. Defaults to False.
        out: the PNG file. Defaults to `<layer>_filters.png` in the current folder.

    Returns:
        `Filters`: what was drawn, and where (nothing is printed).
    """
    from cnnrun.model.checkpoints import load_checkpoint

    run = open_run(run_path)
    model = load_checkpoint(run.checkpoint(checkpoint))
    path, kernel = conv_layer(model, layer)
    tiles, labels, how = kernel_tiles(kernel, per_channel)
    height, width, inputs, outputs = kernel.shape
    target = Path(out) if out is not None else Path.cwd() / f"{path.name.replace('/', '_')}_filters.png"
    columns = min(inputs, MAX_CHANNELS) if per_channel and inputs > 1 else min(outputs, 8)
    title = f"{path.name}: {outputs} kernels of {height}×{width}×{inputs}, {how}; gray 0, white +, black −"
    atomic_write_figure(tile_grid(tiles, labels, title, columns=columns), target)
    return Filters(path.name, type(path.layer).__name__, (height, width, inputs, outputs), how, target)
