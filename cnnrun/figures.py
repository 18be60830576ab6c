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
    """One picture: the picture as the model takes it, the heat map over it, and the top-k probabilities."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    overlay(axes[0], image, None, "the picture, as the model takes it")
    overlay(axes[1], image, heat, what)
    names, values = [n for n, _ in top][::-1], [p for _, p in top][::-1]
    axes[2].barh(range(len(top)), values, color="tab:blue")
    axes[2].set_yticks(range(len(top)), names, fontsize=8)
    axes[2].set_xlim(0, 1)
    for i, value in enumerate(values):
        axes[2].text(min(value + 0.02, 0.8), i, f"{value:.3f}", va="center", fontsize=8)
    axes[2].set_title(f"top {len(top)} probabilities", fontsize=8)
    axes[2].tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def overlay_grid(images: np.ndarray, heats: np.ndarray, titles: list[str], colors: list[str], title: str,
                 columns: int = 5):
    """Every picture with its heat map, titled (e.g. `circle 0.97 · true square`), in a grid."""
    plt = pyplot()
    columns = max(1, min(columns, len(images)))
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, heat, name, color in zip(axes.flat, images, heats, titles, colors, strict=False):
        overlay(ax, image, heat, name, color)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def tile_grid(tiles: np.ndarray, labels: list[str], title: str, cmap: str | None = "gray", columns: int = 8,
              vmin: float | None = 0.0, vmax: float | None = 1.0, size: float = 1.1):
    """Small images (`(n, h, w)` or `(n, h, w, 3)`) in a grid, each labelled: filters and feature maps."""
    plt = pyplot()
    columns = max(1, min(columns, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns + 0.2, size * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, label in zip(axes.flat, tiles, labels, strict=False):
        ax.imshow(tile, cmap=None if tile.ndim == 3 else cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


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
