"""Read a picture into a NumPy array and draw it on a figure: shared by every teaching command.

Figures are written with `cnnrun.atomic.atomic_write_figure(fig, path, FIGURE_DPI)`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrun.errors import UserError
from cnnrun.figures import pyplot  # noqa: F401  (the teaching modules take it from here)

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
FIGURE_DPI = 80
"""The teaching commands' figures: 80 dots per inch (a 3.4-inch panel is 272 pixels wide)."""
BUNDLED = {"astronaut": "skimage.data.astronaut()", "coffee": "skimage.data.coffee()"}
READ_FIX = "give the path of a PNG or JPEG picture"


@dataclass(frozen=True)
class Lesson:
    """What a teaching command worked out: the lines that explain it, in order, and the files it wrote.

    The commands print nothing; the CLI shows the lines, then the files.
    """

    lines: tuple[str, ...]
    files: tuple[Path, ...]  # the figure (or the grid) last

    @property
    def figure(self) -> Path:
        """The figure: the last file written."""
        return self.files[-1]


def read_image(path: str | Path, keep_alpha: bool = False) -> np.ndarray:
    """Read a PNG, JPEG or any picture Pillow knows as a NumPy array, the way a CNN's input is made.

    A colour picture becomes `(height, width, 3)` RGB, a grayscale one stays `(height, width)`. Palette images
    become RGB; transparency (RGBA, LA, a palette with a transparent colour) is dropped unless `keep_alpha`.

    Args:
        path: the picture's file.
        keep_alpha: keep the alpha channel: RGBA stays `(h, w, 4)`, gray with alpha `(h, w, 2)`. Defaults to
            False.

    Returns:
        The pixels, usually `uint8` (16-bit grayscale PNGs give `uint16`, 32-bit ones `int32`).

    Raises:
        UserError: the file is missing, not a file, or not a picture.

    Example:
    >>> read_image("cat.jpg").shape
    (1365, 2048, 3)
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise UserError("no such file", where=str(path), fix=READ_FIX)
    if not path.is_file():
        raise UserError("is not a file", where=str(path), fix=READ_FIX)
    try:
        with Image.open(path) as image:
            image.load()
            image = _convert(image, keep_alpha)
            return np.asarray(image)
    except UnidentifiedImageError as e:
        raise UserError("not a picture Pillow can read", where=str(path), fix="give a PNG or JPEG file") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read this picture ({str(e).splitlines()[0]})", where=str(path),
                        fix="give a PNG or JPEG file") from e


def _convert(image, keep_alpha: bool):
    """The Pillow modes a CNN can take: L (gray), RGB, and with `keep_alpha` LA and RGBA; 16/32-bit gray stays."""
    mode = image.mode
    if mode == "P":
        has_alpha = "transparency" in image.info
        return image.convert("RGBA" if keep_alpha and has_alpha else "RGB")
    if mode in ("L", "RGB", "I", "I;16") or (keep_alpha and mode in ("LA", "RGBA")):
        return image
    if mode in ("1", "LA", "La"):
        return image.convert("LA" if keep_alpha and mode != "1" else "L")
    if mode == "F":
        return image
    if keep_alpha and mode in ("RGBa", "PA"):
        return image.convert("RGBA")
    return image.convert("RGB")


def bundled_image(name: str = "astronaut") -> np.ndarray:
    """A photo that ships with scikit-image (no download): `astronaut` (512×512) or `coffee` (400×600)."""
    import skimage.data

    return getattr(skimage.data, name)()


def figure_path(out: str | Path | None, stem: str, suffix: str) -> Path:
    """Where a figure goes: `out`, or `<stem>_<suffix>.png` in the current folder.

    Raises:
        UserError: `out` has a file type matplotlib cannot write, or is a folder.
    """
    if out is None:
        return Path.cwd() / f"{stem}_{suffix}.png"
    path = Path(out)
    if path.is_dir():
        raise UserError(f"{path} is a folder", where="--out",
                        fix=f"give a file name such as {path / f'{stem}_{suffix}.png'}")
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"{path} should end in one of {', '.join(FIGURE_SUFFIXES)}", where="--out",
                        fix=f"e.g. {stem}_{suffix}.png")
    return path


def show(ax, array: np.ndarray, title: str, gray: bool = False, vmin: float | None = None,
         vmax: float | None = None, max_side: int = 512) -> None:
    """Draw a picture on a matplotlib axis, quickly even when it is large.

    A picture larger than `max_side` is averaged down over whole blocks first (a figure panel has a few hundred
    pixels anyway; this keeps a 2048×1365 photo fast), while the axis ticks keep counting the picture's own rows
    and columns. Small pictures are drawn pixel by pixel (no smoothing), so a 28×28 input shows its pixels.

    Args:
        ax: the matplotlib axis.
        array: `(h, w)` (drawn in gray) or `(h, w, 3|4)`; uint8 or floats in [0, 1] for colour.
        title: the panel's title.
        gray: draw a 2-D array with the gray colour map (always so for 2-D arrays).
        vmin, vmax: the gray map's range; defaults to the data's.
        max_side: the largest side drawn as it is.
    """
    h, w = array.shape[:2]
    factor = -(-max(h, w) // max_side)
    shown = array
    if factor > 1:
        hh, ww = h // factor, w // factor
        blocks = array[:hh * factor, :ww * factor].reshape(hh, factor, ww, factor, *array.shape[2:])
        shown = blocks.mean(axis=(1, 3))
        if array.dtype == np.uint8 and array.ndim == 3:
            shown = np.rint(shown).astype(np.uint8)
    if shown.ndim == 3 and shown.dtype != np.uint8:
        shown = np.clip(shown, 0, 1)
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    if shown.ndim == 2 or gray:
        ax.imshow(shown, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", extent=extent)
    else:
        ax.imshow(shown, interpolation="nearest", extent=extent)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
