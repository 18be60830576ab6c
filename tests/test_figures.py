"""The picture grids of `evaluate`, `explain`, `filters`, `activations` and `data show` (`cnnrun.figures`), read
back from the PNG files they write: each tile's pixels are the picture's, or the picture under its heat map at
0.45, worked out here by hand."""

import io

import numpy as np
from PIL import Image

from cnnrun.figures import overlay_grid, tile_grid


def png(figure) -> np.ndarray:
    """The figure as `atomic_write_figure` writes it (PNG at 100 dpi), as RGB pixels."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return np.asarray(Image.open(buffer).convert("RGB")).astype(int)


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """The (start, end) of each run of True along a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def test_an_overlay_grid_shows_each_picture_and_its_heat_map_at_045():
    grey = np.full((8, 8, 1), 200, np.uint8)  # one channel: drawn grey
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 2] = 255  # blue
    heat = np.ones((4, 4), np.float32)  # the hottest everywhere: jet's last colour, (0.5, 0, 0)
    pixels = png(overlay_grid([grey, colour], [None, heat], ["plain", "hot"], ["black", "firebrick"], "two pictures",
                              columns=2))
    # two tiles side by side, each 210 pixels square, on white
    row = pixels[pixels.shape[0] // 2]
    tiles = [(a, b) for a, b in runs_of((row != 255).any(-1)) if b - a > 100]
    assert [b - a for a, b in tiles] == [210, 210], tiles
    middle = pixels.shape[0] // 2
    assert (pixels[middle, (tiles[0][0] + tiles[0][1]) // 2] == (200, 200, 200)).all()
    expected = np.round(0.55 * np.array([0, 0, 255]) + 0.45 * np.array([127.5, 0, 0]))  # by hand: blue under jet(1)
    assert np.abs(pixels[middle, (tiles[1][0] + tiles[1][1]) // 2] - expected).max() <= 1


def test_a_tile_grid_maps_one_channel_between_vmin_and_vmax_and_shows_colour_as_it_is():
    tiles = np.stack([np.full((3, 3), 0.25), np.full((3, 3), 1.0), np.full((3, 3), -1.0)])
    pixels = png(tile_grid(tiles, ["a", "b", "c"], "three kernels", cmap="gray", vmin=0.0, vmax=1.0, size=1.1))
    middle = pixels[pixels.shape[0] // 2 + 10]  # a row through the tiles (below the titles)
    width = round(1.1 * 100) - 8
    # the grid's left margin is 6 pixels and its gap 6: tile k spans 6 + k·(width + 6) … + width
    centres = [6 + k * (width + 6) + width // 2 for k in range(3)]
    values = [tuple(middle[c]) for c in centres]
    assert values == [(64, 64, 64), (255, 255, 255), (0, 0, 0)]  # 0.25 of the way to white; 1 and below 0 clip
    colour = png(tile_grid(np.array([[[[255, 0, 0]]]], np.uint8), ["red"], "one pixel", size=1.1))
    assert tuple(colour[colour.shape[0] // 2 + 10, 6 + width // 2]) == (255, 0, 0)
