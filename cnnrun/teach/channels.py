"""`cnnrun image-info`: what a picture is to a CNN: a `(height, width, channels)` array of numbers.

Prints the shape, dtype, value range and channels (alpha included), and writes a figure with each channel as a
grayscale picture and in its own colour, and optionally a zoom on a crop so single pixels show.
"""

import re
from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.errors import UserError
from cnnrun.teach.images import FIGURE_DPI, Lesson, figure_path, pyplot, read_image, show

CHANNEL_NAMES = {1: ("gray",), 2: ("gray", "alpha"), 3: ("red", "green", "blue"), 4: ("red", "green", "blue", "alpha")}
COLOURS = {"red": 0, "green": 1, "blue": 2}


def parse_crop(text: str, shape: tuple[int, ...], option: str = "--crop") -> tuple[slice, slice]:
    """Read `y0:y1,x0:x1` (rows, then columns, as NumPy slices; a bound may be left out) for a picture of `shape`.

    Raises:
        UserError: the text is not of that form, or the crop is empty or outside the picture.

    Example:
    >>> parse_crop("100:164,200:264", (512, 512, 3))
    (slice(100, 164, None), slice(200, 264, None))
    """
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*,\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not m:
        raise UserError(f"'{text}' is not a crop", where=option,
                        fix="write Y0:Y1,X0:X1 (rows then columns, whole numbers), e.g. 100:164,200:264")
    h, w = shape[0], shape[1]
    y0, y1, x0, x1 = (int(g) if g else None for g in m.groups())
    y0, y1, x0, x1 = y0 or 0, h if y1 is None else y1, x0 or 0, w if x1 is None else x1
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise UserError(f"'{text}' is empty or outside the picture", where=option,
                        fix=f"rows go 0..{h} and columns 0..{w}, with Y0 < Y1 and X0 < X1, e.g. "
                        f"0:{min(h, 64)},0:{min(w, 64)}")
    return slice(y0, y1), slice(x0, x1)


def describe_image(image: np.ndarray) -> dict:
    """Shape, dtype, value range, channel count and alpha of a picture array, in a dict."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    return {
        "shape": image.shape,
        "dtype": str(image.dtype),
        "min": image.min().item(),
        "max": image.max().item(),
        "channels": channels,
        "names": CHANNEL_NAMES.get(channels, tuple(f"channel {i}" for i in range(channels))),
        "alpha": channels in (2, 4),
    }


def image_info(image_path: str | Path, crop: str | None = None, out: str | Path | None = None) -> Lesson:
    """Work out what a picture is made of and write a figure of its channels.

    The figure's first row shows the picture and each channel as a grayscale picture; for colour pictures a
    second row shows red, green and blue each in its own colour. With `crop`, a zoom panel shows that part
    with its pixels (and the crop is outlined on the picture).

    Args:
        image_path: a PNG or JPEG (alpha is kept and reported).
        crop: `"y0:y1,x0:x1"`, the rows and columns to zoom in on.
        out: the figure's file; defaults to `<image stem>_channels.png` in the current folder.

    Returns:
        A `Lesson`: shape, dtype, value range and channels as lines; the figure's path (nothing is printed).

    Example:
    >>> image_info("cat.png", crop="100:132,200:232").figure
    PosixPath('cat_channels.png')
    """
    image = read_image(image_path, keep_alpha=True)
    path = figure_path(out, Path(image_path).stem, "channels")
    info = describe_image(image)
    crop_slices = parse_crop(crop, image.shape) if crop is not None else None
    lines = []
    say = lines.append
    say(f"Image: {image_path}")
    say(f"Shape: {info['shape']} (height, width{', channels' if image.ndim == 3 else ''})")
    say(f"dtype: {info['dtype']}, values from {info['min']} to {info['max']}")
    say(f"Channels: {info['channels']} ({', '.join(info['names'])}); alpha: {'yes' if info['alpha'] else 'no'}")
    planes = [image] if image.ndim == 2 else [image[..., i] for i in range(info["channels"])]
    for name, plane in zip(info["names"], planes, strict=True):
        say(f"  {name}: min {plane.min().item()}, max {plane.max().item()}, mean {plane.mean():.1f}")
    if crop_slices is not None:
        part = image[crop_slices]
        say(f"Crop {crop}: shape {part.shape}")
        if part.shape[0] * part.shape[1] <= 64:
            for name, plane in zip(info["names"], [part] if part.ndim == 2 else np.moveaxis(part, 2, 0),
                                   strict=True):
                say(f"  {name} values:\n{plane}")
    _draw(image, info, crop_slices, path)
    return Lesson(tuple(lines), (path,))


def _show(ax, array: np.ndarray, title: str, gray: bool = False) -> None:
    show(ax, array, title, gray=gray, vmin=0, vmax=_top(array))


def _top(array: np.ndarray) -> float:
    """The largest value the dtype can hold for integer pictures (255 for uint8), 1 for float ones."""
    return float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0


def _draw(image: np.ndarray, info: dict, crop: tuple[slice, slice] | None, path: Path) -> None:
    from matplotlib.patches import Rectangle

    plt = pyplot()
    names = info["names"]
    colour = image.ndim == 3 and info["channels"] >= 3
    rgb = image[..., :3] if colour else (image if image.ndim == 2 else image[..., 0])
    top_row = [(f"picture\n{image.shape}", rgb, False)]
    top_row += [(f"{name} as gray\n{image.shape[:2]}", image if image.ndim == 2 else image[..., i], True)
                for i, name in enumerate(names)]
    if crop is not None:
        top_row.append((f"crop [{crop[0].start}:{crop[0].stop}, {crop[1].start}:{crop[1].stop}]\n"
                        f"{image[crop].shape}", rgb[crop], False))
    ncols = len(top_row)
    nrows = 2 if colour else 1
    height = min(max(3.0 * image.shape[0] / image.shape[1], 1.5), 5) + 0.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, height * nrows), squeeze=False)
    for ax, (title, array, gray) in zip(axes[0], top_row, strict=True):
        _show(ax, array, title, gray)
    if crop is not None:
        axes[0][0].add_patch(Rectangle((crop[1].start - 0.5, crop[0].start - 0.5), crop[1].stop - crop[1].start,
                                       crop[0].stop - crop[0].start, fill=False, edgecolor="yellow", linewidth=1.5))
    if colour:
        for ax in axes[1]:
            ax.axis("off")
        for name, i in COLOURS.items():
            only = np.zeros_like(rgb)
            only[..., i] = rgb[..., i]
            ax = axes[1][1 + i]
            ax.axis("on")
            _show(ax, only, f"{name} in its colour")
    fig.suptitle(f"{info['shape']} {info['dtype']}, values {info['min']}..{info['max']}", fontsize=10)
    fig.tight_layout()
    atomic_write_figure(fig, path, FIGURE_DPI)
