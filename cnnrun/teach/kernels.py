"""`cnnrun kernel-demo`: what a convolution kernel, padding, stride and pooling do to a picture.

The course's first experiment: convolve a photo, in gray, with a vertical-edge and a horizontal-edge kernel and
look at the results; then see how padding and stride change the output's size, and what max and average pooling
keep. Everything is vectorised (`scipy.ndimage.convolve`, NumPy slicing and reshaping), so a
2048×1365 photo takes about a second.

Note that `scipy.ndimage.convolve` is a true convolution (the kernel is flipped), whereas Keras' Conv2D slides
the kernel unflipped (cross-correlation); the output sizes are the same, and a learned kernel does not care.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.errors import UserError, did_you_mean
from cnnrun.teach.images import BUNDLED, FIGURE_DPI, Lesson, bundled_image, figure_path, pyplot, read_image, show
from cnnrun.teach.shape_math import ConvSize, check_padding, conv_size, padding_note

KERNELS: dict[str, list[list[float]]] = {
    "vertical": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "horizontal": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": [[1 / 9] * 3] * 3,
    "gaussian": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
}
"""The named kernels of `--kernel`: edges (vertical, horizontal, Sobel), the Laplacian, blurs, sharpen, emboss,
outline and the identity (which gives the gray picture back)."""

DEFAULT_KERNELS = ("vertical", "horizontal")
POOLS = ("max", "average")


def named_kernel(name: str) -> np.ndarray:
    """The kernel called `name` (see `KERNELS`) as a float array.

    Raises:
        UserError: no kernel has that name.

    Example:
    >>> named_kernel("vertical")
    array([[-1.,  0.,  1.], [-1.,  0.,  1.], [-1.,  0.,  1.]])
    """
    key = name.strip().lower().replace("-", "_")
    if key not in KERNELS:
        raise UserError(f"no kernel called '{name}'{did_you_mean(key, KERNELS)}", where="--kernel",
                        fix=f"choose from {', '.join(KERNELS)} or give --kernel-values")
    return np.array(KERNELS[key], dtype=float)


def parse_kernel_values(text: str, option: str = "--kernel-values") -> np.ndarray:
    """Read one's own kernel, written as a nested list: `"[[0,-1,0],[-1,5,-1],[0,-1,0]]"`.

    Raises:
        UserError: the text is not a rectangular 2-D list of numbers.

    Example:
    >>> parse_kernel_values("[[1, 0], [0, -1]]").shape
    (2, 2)
    """
    import json

    import yaml

    expected = 'write a rectangular list of rows of numbers, e.g. "[[0,-1,0],[-1,5,-1],[0,-1,0]]"'
    try:
        value = json.loads(text)  # JSON reads 1e-1 as a number, YAML 1.1 would not
    except ValueError:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise UserError(f"'{text}' is not a list ({str(e).splitlines()[0]})", where=option, fix=expected) \
                from e
    rows_ok = isinstance(value, list) and value and all(isinstance(row, list) and row for row in value)
    if not rows_ok:
        raise UserError(f"'{text}' is not a 2-D list", where=option, fix=expected)
    if len({len(row) for row in value}) != 1:
        raise UserError(f"'{text}' has rows of different lengths", where=option, fix=expected)
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for row in value for x in row):
        raise UserError(f"'{text}' holds something that is not a number", where=option, fix=expected)
    kernel = np.array(value, dtype=float)
    if not np.isfinite(kernel).all():
        raise UserError(f"'{text}' holds inf or nan", where=option, fix=expected)
    return kernel


def to_gray(image: np.ndarray) -> np.ndarray:
    """The picture in gray as floats in [0, 1] (`skimage.color.rgb2gray` for colour; alpha is ignored)."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    if image.ndim == 2:
        return img_as_float(image)
    if image.shape[2] == 2:  # gray + alpha
        return img_as_float(image[..., 0])
    return rgb2gray(image[..., :3])


@dataclass
class Convolved:
    """A kernel's result: the output picture and the size arithmetic of its rows and columns."""

    name: str
    kernel: np.ndarray
    output: np.ndarray
    rows: ConvSize
    cols: ConvSize


def convolve(gray: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: str = "valid",
             name: str = "kernel") -> Convolved:
    """Convolve a gray picture with `kernel` the way a Conv2D layer with one filter would place its windows.

    The picture is zero-padded as Keras pads it (`padding="same"`: half before, the rest after; `"valid"`:
    not at all), convolved with `scipy.ndimage.convolve`, and every `stride`-th window is kept, so the output's
    shape is exactly Keras' `(⌊(n + 2p − f)/s⌋ + 1)` for rows and columns.

    Args:
        gray: a 2-D array.
        kernel: a 2-D array (any size; it need not be square or odd).
        stride: the step between windows. Defaults to 1.
        padding: `"valid"` (the default) or `"same"`.
        name: the kernel's name, for titles.

    Example:
    >>> convolve(np.ones((28, 28)), named_kernel("vertical"), stride=2, padding="same").output.shape
    (14, 14)
    """
    from scipy.ndimage import convolve as scipy_convolve

    rows = conv_size(gray.shape[0], kernel.shape[0], stride, padding)
    cols = conv_size(gray.shape[1], kernel.shape[1], stride, padding)
    padded = np.pad(np.asarray(gray, dtype=float), ((rows.pad_before, rows.pad_after),
                                                    (cols.pad_before, cols.pad_after)))
    full = scipy_convolve(padded, kernel, mode="constant")
    # scipy puts the result of the window starting at row r at row r + (f - 1) // 2
    r0, c0 = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
    output = full[r0:r0 + (rows.out - 1) * stride + 1:stride, c0:c0 + (cols.out - 1) * stride + 1:stride]
    return Convolved(name, kernel, output, rows, cols)


def pool(image: np.ndarray, size: int = 2, kind: str = "max") -> np.ndarray:
    """Max or average pooling as Keras' MaxPooling2D / AveragePooling2D (`pool_size=size`, stride = size, valid).

    Works on gray `(h, w)` and colour `(h, w, c)` pictures, each channel on its own; rows and columns that do not
    fill a whole window are dropped, as Keras does.

    Example:
    >>> pool(np.arange(16).reshape(4, 4), 2, "max")
    array([[ 5,  7], [13, 15]])
    """
    if kind not in POOLS:
        raise UserError(f"'{kind}' is not a pooling", where="--pool", fix="use max or average")
    rows, cols = conv_size(image.shape[0], size, size), conv_size(image.shape[1], size, size)
    windows = image[:rows.out * size, :cols.out * size].reshape(rows.out, size, cols.out, size, *image.shape[2:])
    return windows.max(axis=(1, 3)) if kind == "max" else windows.mean(axis=(1, 3))


def _kernel_text(kernel: np.ndarray) -> str:
    rows = [",".join(f"{x:g}" for x in row) for row in kernel]
    return "[" + ",".join(f"[{r}]" for r in rows) + "]"


def kernel_demo(image_path: str | Path | None = None, kernels: list[str] | None = None,
                kernel_values: list[str] | None = None, padding: str = "valid", stride: int = 1,
                pools: list[str] | None = None, pool_size: int = 2,
                out: str | Path | None = None) -> Lesson:
    """Convolve a picture with kernels and write the course's figure: original, gray, then one panel per kernel.

    Args:
        image_path: a PNG or JPEG; None uses scikit-image's bundled astronaut photo.
        kernels: names from `KERNELS`; defaults to vertical and horizontal (unless `kernel_values` are given).
        kernel_values: one's own kernels, each a nested list as text (`"[[0,-1,0],[-1,5,-1],[0,-1,0]]"`).
        padding: `"valid"` (the default) or `"same"`, as in Conv2D.
        stride: the step between windows, as Conv2D's `strides`. Defaults to 1.
        pools: `"max"` and/or `"average"`: add the picture after pooling (`pool_size`, stride `pool_size`).
        pool_size: the pooling window. Defaults to 2.
        out: the figure's file; defaults to `<image stem>_kernels.png` in the current folder.

    Returns:
        A `Lesson`: the shapes and, per kernel, the size arithmetic, as lines; the figure's path (nothing is
        printed).

    Example:
    >>> kernel_demo("cat.jpg", kernels=["sobel_x", "sharpen"], padding="same", stride=2).figure
    PosixPath('cat_kernels.png')
    """
    check_padding(padding, "--padding")
    if stride < 1:
        raise UserError(f"must be at least 1, got {stride}", where="--stride")
    if pool_size < 1:
        raise UserError(f"must be at least 1, got {pool_size}", where="--pool-size")
    pools = list(dict.fromkeys(pools or []))
    for kind in pools:
        if kind not in POOLS:
            raise UserError(f"'{kind}' is not a pooling", where="--pool", fix="use max or average (repeat for both)")
    chosen = [(name, named_kernel(name)) for name in (kernels or [])]
    chosen += [(f"custom {_kernel_text(k)}", k) for k in map(parse_kernel_values, kernel_values or [])]
    if not chosen:
        chosen = [(name, named_kernel(name)) for name in DEFAULT_KERNELS]

    lines = []
    say = lines.append
    if image_path is None:
        stem = "astronaut"
        image = bundled_image(stem)
        say(f"Image: scikit-image's bundled photo {BUNDLED[stem]} (give IMAGE to use your own)")
    else:
        image = read_image(image_path)
        stem = Path(image_path).stem
        say(f"Image: {image_path}")
    path = figure_path(out, stem, "kernels")
    gray = to_gray(image)
    say(f"Original's shape: {image.shape}")
    say(f"Gray's shape: {gray.shape}")

    say(f"Convolution, padding '{padding}', stride {stride}: output size = (n + 2p − f)/s + 1, rounded down")
    results = []
    for name, kernel in chosen:
        try:
            result = convolve(gray, kernel, stride, padding, name)
        except UserError as e:
            raise e.at(f"--kernel {name}") from e
        results.append(result)
        note = padding_note(result.rows, result.cols)
        say(f"  {name}: rows {result.rows.formula()}, columns {result.cols.formula()} -> {result.output.shape}"
             + (f" ({note})" if note else ""))

    panels = [("original", image), ("gray", gray)]
    panels += [(f"{r.name}", r.output) for r in results]
    for kind in pools:
        pooled = pool(image, pool_size, kind)
        rows = conv_size(image.shape[0], pool_size, pool_size)
        cols = conv_size(image.shape[1], pool_size, pool_size)
        say(f"{kind.capitalize()} pooling {pool_size}×{pool_size}, stride {pool_size}, valid: rows {rows.formula()}, "
             f"columns {cols.formula()} -> {pooled.shape}")
        panels.append((f"{kind} pooling {pool_size}×{pool_size}", pooled))

    _draw(panels, image.shape, path, f"padding '{padding}', stride {stride}")
    return Lesson(tuple(lines), (path,))


def _draw(panels: list[tuple[str, np.ndarray]], shape: tuple[int, ...], path: Path, subtitle: str) -> None:
    """Lay the panels out on a grid (2 columns up to 4 panels, then 3, then 4) with their shapes in the titles."""
    plt = pyplot()
    n = len(panels)
    ncols = 2 if n <= 4 else 3 if n <= 9 else 4
    nrows = -(-n // ncols)
    width = 3.4
    height = min(max(width * shape[0] / shape[1], 1.5), 6) + 0.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (title, array) in zip(axes.flat, panels, strict=False):
        if array.ndim == 3 and array.dtype != np.uint8:  # average pooling of a colour picture
            show(ax, array / 255.0, f"{title}\n{array.shape}")
        else:
            show(ax, array, f"{title}\n{array.shape}")
    fig.suptitle(f"Convolution: {subtitle}", fontsize=10)
    fig.tight_layout()
    atomic_write_figure(fig, path, FIGURE_DPI)
