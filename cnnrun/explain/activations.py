"""`cnnrun activations`: the feature maps a run's layers make of one picture, one grid per layer.

Each grid's title has the layer's output shape, `(None, 14, 14, 16)` as `inspect` prints it, so a learner sees
the maps shrink (pooling, strides) and the channels grow, layer after layer.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.errors import UserError
from cnnrun.explain.network import LayerPath, find_layer, forward, is_spatial, layer_paths
from cnnrun.figures import tile_grid
from cnnrun.run_folder.folder import open_run

MAX_MAPS = 64  # channels drawn per layer


@dataclass(frozen=True)
class LayerMaps:
    """One grid `show_activations` wrote: the layer, its output shape and the PNG."""

    layer: str
    kind: str  # the layer's class name
    shape: tuple[int | None, ...]  # (None, 14, 14, 16), as `inspect` shows it
    file: Path


def default_layers(model) -> list[LayerPath]:
    """Every convolution and pooling layer with a spatial output, nested ones included, in order."""
    return [p for p in layer_paths(model) if is_spatial(p) and any(word in type(p.layer).__name__
                                                                    for word in ("Conv", "Pooling"))]


def feature_maps(model, x: np.ndarray, paths: list[LayerPath]) -> list[np.ndarray]:
    """The output of each layer at `paths` for the batch `x`, as NumPy arrays."""
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(forward(model, x, path, logits=False)[0])) for path in paths]


def show_activations(run_path: str | Path | None, image: Path, layers: list[str] | None = None,
                     checkpoint: str = "best", out: Path | None = None) -> tuple[LayerMaps, ...]:
    """Write one grid of feature maps per layer for one picture, read as `predict` reads it.

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        image: the picture.
        layers: layer names; None: every convolution and pooling layer.
        checkpoint: `best` or `last`.
        out: the folder. Defaults to `activations/` in the current folder.

    Returns:
        The grids written, one per layer, in order (nothing is printed).
    """
    from cnnrun.data import preprocess
    from cnnrun.data.pictures import read_images
    from cnnrun.model.checkpoints import load_run_model

    run = open_run(run_path)
    if not image.is_file():
        raise UserError("no such file", where=str(image), fix="give the path of a picture")
    _, info, model = load_run_model(run, checkpoint)
    paths = [find_layer(model, name, "--layers") for name in layers] if layers else default_layers(model)
    pixels, _, reasons = read_images([image], info.input_shape)
    if reasons:
        raise UserError(f"not a readable picture ({reasons[image]})", where=str(image))
    folder = Path(out) if out is not None else Path.cwd() / "activations"
    written = []
    for path, maps in zip(paths, feature_maps(model, preprocess(pixels, info).numpy(), paths), strict=True):
        shape = (None, *maps.shape[1:])
        target = folder / f"{image.stem}_{path.name.replace('/', '_')}.png"
        if maps.ndim == 4:
            channels = maps.shape[-1]
            tiles = maps[0].transpose(2, 0, 1)[:MAX_MAPS]
            top = float(tiles.max()) if tiles.size else 0.0
            more = f", the first {MAX_MAPS} of {channels} channels" if channels > MAX_MAPS else ""
            title = (f"{image.name} at {path.name} ({type(path.layer).__name__}): output shape {shape}{more}; "
                     f"black 0, white {top:.3g}")
            figure = tile_grid(tiles, [f"#{c}" for c in range(len(tiles))], title, cmap="gray", vmin=min(0.0,
                               float(tiles.min())), vmax=top or 1.0, columns=min(8, len(tiles)),
                               size=max(1.1, min(2.0, 32 / max(tiles.shape[1:]))))
        else:
            values = maps.reshape(1, 1, -1)
            figure = tile_grid(values, [""], f"{path.name}: output shape {shape} (no spatial axes)", cmap="gray",
                               vmin=None, vmax=None, columns=1, size=4)
        atomic_write_figure(figure, target)
        written.append(LayerMaps(path.name, type(path.layer).__name__, shape, target))
    return tuple(written)
