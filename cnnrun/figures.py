"""Figures of pictures: the grids and overlays of `explain`, `filters`, `activations`, `data show` and the run
folder's `samples.png`; the reliability diagram of a run's predictions; and matplotlib itself (`pyplot`,
headless). Imports nothing of cnnrun's.

Every function returns a figure; the caller writes it with `cnnrun.atomic.atomic_write_figure`.
"""

import numpy as np

HEAT = "jet"  # the heat maps' colours: blue (nothing) to red (where the class was decided)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no window, works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def picture(image: np.ndarray) -> np.ndarray:
    """A uint8 `(h, w, c)` picture as matplotlib draws it: gray `(h, w)` for one channel, RGB for four."""
    image = np.asarray(image)
    if image.shape[-1] == 1:
        return image[..., 0]
    return image[..., :3]


def overlay(ax, image: np.ndarray, heat: np.ndarray | None, title: str, color: str = "black") -> None:
    """Draw a picture with a heat map over it (half transparent) on `ax`."""
    shown = picture(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    if heat is not None:
        ax.imshow(heat, cmap=HEAT, alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_title(title, fontsize=8, color=color)
    ax.axis("off")


def explained_figure(image: np.ndarray, heat: np.ndarray, top: list[tuple[str, float]], title: str, what: str):
    """One picture: the picture as the model takes it, the heat map over it, and the top-k probabilities.

    The panels are placed in inches, the bars' left margin from the longest class name: matplotlib's
    tight_layout, which measures every label to find such places, made the figure a quarter slower (0.93 s
    against 0.71 s, written as PNG, on our 2-core CPU).
    """
    plt = pyplot()
    names, values = [n for n, _ in top][::-1], [p for _, p in top][::-1]
    labels = 0.07 * max((len(n) for n in names), default=1) + 0.25  # inches for the bars' class names
    side, height = 2.5, 3.45  # the pictures' panels are square
    width = 0.2 + 2 * side + 0.35 + labels + 2.2 + 0.3
    fig = plt.figure(figsize=(width, height))
    inches = [(0.2, side), (0.2 + side + 0.35, side), (0.2 + 2 * side + 0.35 + labels, 2.2)]
    axes = [fig.add_axes((left / width, 0.35 / height, wide / width, side / height)) for left, wide in inches]
    overlay(axes[0], image, None, "the picture, as the model takes it")
    overlay(axes[1], image, heat, what)
    axes[2].barh(range(len(top)), values, color="tab:blue")
    axes[2].set_yticks(range(len(top)), names, fontsize=8)
    axes[2].set_xlim(0, 1)
    for i, value in enumerate(values):
        axes[2].text(min(value + 0.02, 0.8), i, f"{value:.3f}", va="center", fontsize=8)
    axes[2].set_title(f"top {len(top)} probabilities", fontsize=8)
    axes[2].tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    return fig


DPI = 100  # `atomic_write_figure`'s: the grids below are drawn pixel for pixel at it


def _resized(values: np.ndarray, height: int, width: int, smooth: bool) -> np.ndarray:
    """`(h, w)` or `(h, w, c)` values at `height` × `width`: bilinear when `smooth`, else each value a block."""
    from PIL import Image

    method = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    planes = values[..., None] if values.ndim == 2 else values
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], np.float32), mode="F")
                               .resize((width, height), method)) for c in range(planes.shape[-1])], axis=-1)
    return out[..., 0] if values.ndim == 2 else out


def coloured(tile: np.ndarray, cmap: str | None = "gray", vmin: float | None = 0.0,
             vmax: float | None = 1.0) -> np.ndarray:
    """A tile as RGB in [0, 1], as `imshow` shows it: a colour tile (uint8 in [0, 255], else [0, 1]) as it is; a
    one-channel tile through `cmap` between `vmin` and `vmax` (None: its own smallest or largest value)."""
    tile = np.asarray(tile)
    if tile.ndim == 3 and tile.shape[-1] >= 3:
        rgb = tile[..., :3].astype(np.float32)
        return np.clip(rgb / 255 if tile.dtype == np.uint8 else rgb, 0, 1)
    values = (tile[..., 0] if tile.ndim == 3 else tile).astype(np.float32)
    low = float(values.min()) if vmin is None else vmin
    high = float(values.max()) if vmax is None else vmax
    scaled = np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)
    return pyplot().get_cmap(cmap or "gray")(scaled)[..., :3].astype(np.float32)


def canvas_grid(tiles: list[np.ndarray], titles: list[str], colors: list[str], title: str, columns: int,
                fontsize: float = 8, gap: int = 8):
    """RGB tiles of one size (`(h, w, 3)` in [0, 1], drawn pixel for pixel at `DPI`) in a grid, each titled above
    in its colour, the whole titled on top.

    One picture and one axes for the whole grid: a subplot per tile builds axes, ticks and a layout for each.
    `evaluate`'s 25 misclassified pictures took 1.65 s that way and take 0.35 s this way, written as PNG on our
    2-core CPU; its top losses under Grad-CAM and `explain`'s grid 1.2 s and 0.4 s.
    """
    plt = pyplot()
    height, width = tiles[0].shape[:2] if tiles else (1, 1)
    columns = max(1, min(columns, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    band = int(fontsize * DPI / 72 * 1.6) + 2  # a title's line above each tile
    top = int(9 * DPI / 72 * (1 + title.count("\n")) * 1.5) + 8  # the grid's title
    margin = 6
    across = 2 * margin + columns * width + (columns - 1) * gap if tiles else 400  # none: room for the title
    canvas = np.ones((top + rows * (band + height) + (rows - 1) * gap + margin, across, 3), np.float32)
    fig = plt.figure(figsize=(canvas.shape[1] / DPI, canvas.shape[0] / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    for k, (tile, name, color) in enumerate(zip(tiles, titles, colors, strict=False)):
        row, column = divmod(k, columns)
        y, x = top + row * (band + height + gap) + band, margin + column * (width + gap)
        canvas[y:y + height, x:x + width] = tile
        ax.text(x + width / 2, y - 3, name, ha="center", va="bottom", fontsize=fontsize, color=color)
    ax.imshow(canvas, interpolation="nearest")
    ax.set(xlim=(-0.5, canvas.shape[1] - 0.5), ylim=(canvas.shape[0] - 0.5, -0.5))
    fig.text(0.5, 1 - 4 / canvas.shape[0], title, ha="center", va="top", fontsize=9)
    return fig


def overlay_grid(images: np.ndarray, heats: np.ndarray | list[np.ndarray | None], titles: list[str], colors: list[str],
                 title: str, columns: int = 5):
    """Every picture with its heat map (or None) over it, half transparent, titled (e.g. `circle 0.97 · true
    square`), in a grid (`canvas_grid`)."""
    heat_colours = pyplot().get_cmap(HEAT)
    tiles = []
    for image, heat in zip(images, heats, strict=False):
        shown = picture(np.clip(np.rint(image), 0, 255).astype(np.uint8))  # pixel values, as stored or decoded
        size = 210, max(1, round(210 * shown.shape[0] / shown.shape[1]))  # about 2.1 inches wide
        rgb = _resized(coloured(shown, vmin=0, vmax=255), size[1], size[0], smooth=False)
        if heat is not None:
            heat = np.clip(_resized(np.asarray(heat, np.float32), size[1], size[0], smooth=True), 0, 1)
            rgb = 0.55 * rgb + 0.45 * heat_colours(heat)[..., :3]
        tiles.append(rgb)
    return canvas_grid(tiles, titles, colors, title, columns)


def tile_grid(tiles: np.ndarray, labels: list[str], title: str, cmap: str | None = "gray", columns: int = 8,
              vmin: float | None = 0.0, vmax: float | None = 1.0, size: float = 1.1):
    """Small images (`(n, h, w)` or `(n, h, w, 3)`) in a grid, each labelled: filters and feature maps
    (`canvas_grid`; each tile `size` inches wide)."""
    width = max(1, round(size * DPI) - 8)
    shown = []
    for tile in tiles:
        height = max(1, round(width * tile.shape[0] / tile.shape[1]))
        shown.append(_resized(coloured(tile, cmap, vmin, vmax), height, width, smooth=False))
    return canvas_grid(shown, labels, ["black"] * len(labels), title, columns, fontsize=6, gap=6)


def mosaic_figure(rows: list[np.ndarray], names: list[str], title: str, gap: int = 2):
    """Rows of equally sized uint8 pictures (one row per class) as one image, each row named on the left.

    One `imshow` for all pictures keeps it fast: the run folder's `samples.png` is drawn when training starts.
    """
    plt = pyplot()
    height, width, channels = rows[0].shape[1:]
    per_row = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (height + gap) - gap, per_row * (width + gap) - gap, channels), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            top, left = i * (height + gap), j * (width + gap)
            canvas[top:top + height, left:left + width] = image
    shown = picture(canvas)
    scale = max(0.35, min(1.2, 48 / max(height, width))) / 30
    fig, ax = plt.subplots(figsize=(1.5 + canvas.shape[1] * scale, 0.7 + canvas.shape[0] * scale))
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([i * (height + gap) + height / 2 for i in range(len(rows))], names, fontsize=8)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def counts_figure(counts: dict[str, list[int]], names: list[str], title: str):
    """Images per class, one bar per split side by side."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(names) * max(1, len(counts)) ** 0.5 + 2), 3.4))
    width = 0.8 / max(1, len(counts))
    for k, (split, values) in enumerate(counts.items()):
        positions = np.arange(len(names)) + (k - (len(counts) - 1) / 2) * width
        ax.bar(positions, values, width, label=f"{split} ({sum(values):,})")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6
                  else "center", fontsize=8)
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def reliability_figure(rel, title: str):
    """A reliability diagram: the accuracy of each bin of confidence against the diagonal of a calibrated model.

    Above, a bar per bin up to its accuracy, the dashed diagonal where accuracy equals confidence, and the gap
    between a bin's accuracy and its mean confidence shaded red (a bar below its red part: overconfident). Below,
    how many pictures fell in each bin. The expected calibration error is in the title.

    Args:
        rel: a `cnnrun.model.calibration.Reliability` (its `bins`, each with `lower`, `upper`, `count`,
            `confidence`, `accuracy`, and `ece`).
        title: the figure's title, e.g. `quickstart: best.keras on test`; the ECE is added to it.
    """
    plt = pyplot()
    fig, (top, below) = plt.subplots(2, 1, figsize=(5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lower = np.array([b.lower for b in rel.bins])
    width = np.array([b.upper - b.lower for b in rel.bins])
    counts = np.array([b.count for b in rel.bins])
    full = counts > 0
    accuracy = np.array([b.accuracy if b.count else 0.0 for b in rel.bins])
    confidence = np.array([b.confidence if b.count else 0.0 for b in rel.bins])
    top.bar(lower[full], accuracy[full], width[full], align="edge", color="tab:blue", edgecolor="white",
            label="accuracy")
    top.bar(lower[full], (confidence - accuracy)[full], width[full], bottom=accuracy[full], align="edge",
            color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", label="gap to the mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.suptitle(f"{title}\nexpected calibration error {rel.ece:.4f}", fontsize=9)
    below.bar(lower, counts, width, align="edge", color="tab:gray", edgecolor="white")
    below.set(xlabel="confidence (largest class probability)", ylabel="pictures")
    below.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
