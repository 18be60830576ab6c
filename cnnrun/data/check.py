"""Check an image folder before training: which files decode, which do not and why, and the sizes seen.

Users' folders hold truncated JPEGs, zero-byte files, text files named `.jpg`, CMYK and 16-bit pictures. Every
file with an image suffix is opened and fully decoded (`Image.load()`: that is what finds a truncated file) in a
pool of threads. CMYK, palette, 16-bit and other pictures Pillow can convert are good: they are converted to the
colour mode training asks for. A phone photo whose EXIF says it was taken sideways is turned upright (TensorFlow's
decoders ignore EXIF). A picture above Pillow's decompression-bomb limit is used with a note in the report, not a
Python warning; one above twice the limit is refused. A name with an image suffix that is no file (a symbolic link
to a missing file, a named pipe) is a bad file too, with its reason, and never opened. `predict` reads its inputs
through the same `check_file`.

Example:
>>> report = check_image_folder("data/cats_and_dogs")
>>> report.num_images, len(report.bad_files)
(2000, 3)
"""

import contextlib
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cnnrun.data.folders import CHANNELS, IMAGE_SUFFIXES, class_folders, folder_splits, is_image_file, subfolders
from cnnrun.errors import UserError

EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how a camera was held; 1 is upright


@dataclass
class BadFile:
    """A file with an image suffix that cannot be used, and why."""

    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


@dataclass
class ClassReport:
    """One class folder of one split: its good files (and their `(height, width)`), its bad files."""

    name: str
    good: list[Path] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)
    converted: dict[str, bytes] = field(default_factory=dict)  # PNG bytes of files TensorFlow cannot decode as is
    notes: list[str] = field(default_factory=list)  # good files worth a word (very large pictures)


@dataclass
class FolderReport:
    """What `check_image_folder` found: per split (train, validation, test), per class folder."""

    root: Path
    splits: dict[str, dict[str, ClassReport]]
    ignored: int = 0  # files without an image suffix

    @property
    def class_names(self) -> list[str]:
        return list(self.splits["train"])

    @property
    def bad_files(self) -> list[BadFile]:
        return [bad for classes in self.splits.values() for c in classes.values() for bad in c.bad]

    @property
    def notes(self) -> list[str]:
        """What the check noticed about good files (very large pictures), one line each."""
        return [note for classes in self.splits.values() for c in classes.values() for note in c.notes]

    @property
    def num_images(self) -> int:
        return sum(len(c.good) for classes in self.splits.values() for c in classes.values())

    @property
    def empty_classes(self) -> list[Path]:
        """Class folders without a single good image."""
        return [self.folders[split] / name for split, classes in self.splits.items()
                for name, c in classes.items() if not c.good]

    @property
    def folders(self) -> dict[str, Path]:
        return folder_splits(self.root)


def to_mode(image, mode: str):
    """Convert a Pillow image to `mode` (L, RGB, RGBA); 16- and 32-bit grayscale is scaled to 0–255, not clipped."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode != "F" and pixels.max(initial=0) > 255:
            pixels = pixels / 257.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and mode != "RGBA":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    return image if image.mode == mode else image.convert(mode)


# what TensorFlow's decode_image reads as is: (format, Pillow mode) → the channel counts it can give
TF_DECODABLE = {("JPEG", "L"): {1, 3}, ("JPEG", "RGB"): {1, 3},
                **{("PNG", m): {1, 3, 4} for m in ("L", "LA", "RGB", "RGBA")}}


class FileCheck(NamedTuple):
    """What `check_file` found about one file.

    `size` is `(height, width)` as the picture is meant to be seen (EXIF orientation applied) and `reason` None
    for a good file; `reason` says why a bad one cannot be used. `converted` holds the picture as PNG bytes when
    TensorFlow could not decode the file as it is or would read it other than upright; `note` is a remark about
    a good file (a very large picture).
    """

    size: tuple[int, int] | None
    reason: str | None
    converted: bytes | None = None
    note: str | None = None


@contextlib.contextmanager
def bomb_warnings_quiet() -> Iterator[None]:
    """Keep Pillow's `DecompressionBombWarning` from reaching the terminal: `check_file` reports it as a note.

    The filter is process-wide, so the folder check sets it once, in the calling thread, around its pool.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def check_file(path: Path, mode: str | None = None) -> FileCheck:
    """Open and decode one picture, as training will read it.

    A JPEG (or any picture) whose EXIF orientation is not upright is turned as the camera meant
    (`PIL.ImageOps.exif_transpose`) and converted, because TensorFlow's decoders ignore EXIF. A picture above
    Pillow's `Image.MAX_IMAGE_PIXELS` gets a note (it is used); one above twice that is refused, as Pillow does.

    Args:
        path: the file.
        mode: the Pillow mode (L, RGB, RGBA) training reads it in; None checks the conversion to RGB.

    Returns:
        A `FileCheck`: for a good file its size, and the picture as PNG bytes in `mode` when TensorFlow cannot
        decode the file as it is (CMYK, 16-bit, palette, GIF, BMP, EXIF-rotated); for a bad one the reason.
    """
    with bomb_warnings_quiet():
        return _check_file(path, mode)


def _check_file(path: Path, mode: str | None) -> FileCheck:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return FileCheck(None, "empty file (0 bytes)")
        with Image.open(path) as image:
            image.load()
            kind = (image.format, image.mode)
            pixels = image.width * image.height
            turned = image.getexif().get(EXIF_ORIENTATION, 1) not in (1, None)
            upright = ImageOps.exif_transpose(image) if turned else image
            try:
                converted = to_mode(upright, mode or "RGB")
            except (ValueError, OSError) as e:
                return FileCheck(None, f"unsupported colour mode {image.mode} ({_first_line(e)})")
            height, width = upright.height, upright.width
    except UnidentifiedImageError:
        return FileCheck(None, "not an image (Pillow does not recognise its format)")
    except Image.DecompressionBombError as e:
        return FileCheck(None, f"too large ({_first_line(e)})")
    except OSError as e:
        text = _first_line(e)
        cut = any(word in text.lower() for word in ("truncat", "end of", "broken"))
        return FileCheck(None, ("truncated" if cut else "cannot decode") + f" ({text})")
    except EOFError as e:
        return FileCheck(None, f"truncated ({_first_line(e)})")
    except Exception as e:  # a damaged file can make a decoder fail in any way; it must not stop training
        return FileCheck(None, f"cannot decode ({type(e).__name__}: {_first_line(e)})")
    note = None
    if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
        note = (f"{path}: a very large picture ({width}×{height}, {pixels / 1e6:.0f} megapixels, above Pillow's "
                f"{Image.MAX_IMAGE_PIXELS / 1e6:.0f}); used, but it is slow to decode: consider shrinking it")
    if mode is None or (CHANNELS[mode] in TF_DECODABLE.get(kind, ()) and not turned):
        return FileCheck((height, width), None, None, note)
    png = io.BytesIO()
    converted.save(png, format="PNG")
    return FileCheck((height, width), None, png.getvalue(), note)


def not_a_file(path: Path) -> str | None:
    """Why `path`, named like a picture, is no file to read: a link to nothing, a pipe, a socket, a device; None
    for a folder (a folder named `x.jpg` is a folder) or a file. Such a path is never opened (a pipe would block)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        target = os.readlink(path) if path.is_symlink() else "?"
        return f"a symbolic link to a missing file ({target})"
    except OSError as e:
        return f"cannot be read ({_first_line(e)})"
    kinds = {stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device"}
    kind = next((words for test, words in kinds.items() if test(mode)), None)
    return None if kind is None else f"not a regular file: {kind}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:120] if text else type(e).__name__


def check_image_folder(root: str | Path, mode: str | None = None, workers: int | None = None,
                       on_progress: Callable[[int, int], Any] | None = None,
                       classes: list[str] | None = None) -> FolderReport:
    """Check every picture of an image folder, in parallel.

    The folder holds `train/` (and optionally `validation/`, `test/`) of class folders, or class folders directly.
    Every split must hold the same class folders.

    Args:
        root: the image folder.
        mode: the Pillow mode (L, RGB, RGBA) training reads the pictures in: files TensorFlow cannot decode as
            they are get converted to it (`ClassReport.converted`). Defaults to None (check only).
        workers: threads; defaults to ThreadPoolExecutor's choice.
        on_progress: called with (files done, files in all) now and then.
        classes: check only these class folders, and report them in this order (`dataset.classes`, names the
            caller has checked: see `cnnrun.data.subsets.chosen_classes`). Defaults to None: every class folder.

    Returns:
        A `FolderReport`.

    Raises:
        UserError: `root` is not an image folder, has fewer than two classes, or its splits' classes differ.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such folder; give an image folder (train/ validation/ test/ of class folders, "
                        f"or class folders)")
    folders = folder_splits(root)
    names = class_folders(folders["train"])
    for folder in folders.values():
        found = subfolders(folder)
        if found != names:
            missing, extra = sorted(set(names) - set(found)), sorted(set(found) - set(names))
            detail = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                                 f"extra {', '.join(extra)}" if extra else "") if part)
            raise UserError(f"{folder}: should hold the same class folders as {folders['train']} "
                            f"({', '.join(names)}); {detail}")
    if classes is not None:
        missing = [name for name in classes if name not in names]
        if missing:
            raise UserError(f"{folders['train']}: no class folder {missing[0]}; it holds {', '.join(names)}")
        names = list(classes)

    splits = {split: {name: ClassReport(name) for name in names} for split in folders}
    jobs: list[tuple[str, str, Path]] = []
    ignored = 0
    for split, folder in folders.items():
        for name in names:
            for path in sorted((folder / name).iterdir()):
                if is_image_file(path):
                    jobs.append((split, name, path))
                elif path.is_file():
                    ignored += 1
                elif path.suffix.lower() in IMAGE_SUFFIXES and (reason := not_a_file(path)) is not None:
                    splits[split][name].bad.append(BadFile(path, reason))

    with bomb_warnings_quiet(), ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4)) as pool:
        results = pool.map(lambda job: _check_file(job[2], mode), jobs)
        for done, ((split, name, path), (shape, reason, converted, note)) in enumerate(zip(jobs, results, strict=True),
                                                                                        1):
            entry = splits[split][name]
            if reason is not None:
                entry.bad.append(BadFile(path, reason))
            else:
                entry.good.append(path)
                entry.sizes.append(shape)
                if converted is not None:
                    entry.converted[str(path)] = converted
                if note is not None:
                    entry.notes.append(note)
            if on_progress and (done % 500 == 0 or done == len(jobs)):
                on_progress(done, len(jobs))
    return FolderReport(root, splits, ignored)


def size_summary(sizes: list[tuple[int, int]]) -> str:
    """`h×w` for a single size, else `min / median / max` of height and of width."""
    if not sizes:
        return "—"
    heights, widths = np.array(sizes).T
    if len(set(sizes)) == 1:
        return f"{heights[0]}×{widths[0]}"

    def three(values: np.ndarray) -> str:
        return f"{values.min()}/{int(np.median(values))}/{values.max()}"

    return f"h {three(heights)}, w {three(widths)}"
