"""Pictures named on the command line (predict, explain, activations, export's check), read as training reads them.

Example:
>>> images, readable, reasons = read_images(collect_images([Path("photos/")]), [32, 32, 3])
"""

from pathlib import Path

import numpy as np

from cnnrun.data.check import check_file
from cnnrun.data.examples import decoder
from cnnrun.data.folders import MODES, is_image_file, suffix_list
from cnnrun.errors import UserError


def collect_images(paths: list[Path]) -> list[Path]:
    """The files named, and the image files inside the folders named (recursively, sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if is_image_file(p))
        elif path.exists():
            files.append(path)
        else:
            raise UserError("no such file or folder", where=str(path))
    if not files:
        raise UserError(f"no image files ({suffix_list()})", where=", ".join(map(str, paths)))
    return files


def read_images(paths: list[Path], input_shape: list[int]) -> tuple[np.ndarray, list[Path], dict[Path, str]]:
    """Read image files as training reads them: the same check (`check_file`), conversion (CMYK, 16-bit, palette,
    EXIF orientation), decoding and resizing (`decoder`); the first frame of a GIF.

    Returns:
        The uint8 images of the readable files, those files, and the reason for each file that is not readable.
    """
    height, width, channels = input_shape
    readable, converted, reasons = [], {}, {}
    for path in paths:
        checked = check_file(path, MODES[channels])
        if checked.reason is not None:
            reasons[path] = checked.reason
            continue
        readable.append(path)
        if checked.converted is not None:
            converted[str(path)] = checked.converted
    decode = decoder((height, width), channels, converted)
    images = np.stack([decode(str(path)).numpy() for path in readable]) if readable else None
    return images, readable, reasons
