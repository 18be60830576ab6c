"""Check an image folder before training: which files decode, which do not and why, and the sizes seen.

Users' folders hold truncated JPEGs, zero-byte files, text files named `.jpg`, CMYK and 16-bit pictures. Every
file with an image suffix is opened and fully decoded (`Image.load()`: that is what finds a truncated file) in a
pool of threads. CMYK, palette, 16-bit and other pictures Pillow can convert are good: they are converted to the
colour mode training asks for.

Example:
>>> report = check_image_folder("data/cats_vs_dogs")
>>> report.num_images, len(report.bad_files)
(2000, 3)
"""

import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.data.sources import IMAGE_SUFFIXES, _class_folders, _folder_splits
from cnnrun.errors import UserError

PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


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
    def num_images(self) -> int:
        return sum(len(c.good) for classes in self.splits.values() for c in classes.values())

    @property
    def empty_classes(self) -> list[Path]:
        """Class folders without a single good image."""
        return [self.folders[split] / name for split, classes in self.splits.items()
                for name, c in classes.items() if not c.good]

    @property
    def folders(self) -> dict[str, Path]:
        return _folder_splits(self.root)


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
CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}


def check_file(path: Path, mode: str | None = None) -> tuple[tuple[int, int] | None, str | None, bytes | None]:
    """Open and decode one picture.

    Args:
        path: the file.
        mode: the Pillow mode (L, RGB, RGBA) training reads it in; None checks the conversion to RGB.

    Returns:
        `((height, width), None, converted)` for a good file, `(None, reason, None)` for a bad one. `converted`
        is the picture as PNG bytes in `mode` when TensorFlow cannot decode the file as it is (CMYK, 16-bit,
        palette, GIF, BMP), else None.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)", None
        with Image.open(path) as image:
            image.load()
            height, width, kind = image.height, image.width, (image.format, image.mode)
            try:
                converted = to_mode(image, mode or "RGB")
            except (ValueError, OSError) as e:
                return None, f"unsupported colour mode {image.mode} ({_first_line(e)})", None
    except UnidentifiedImageError:
        return None, "not an image (Pillow does not recognise its format)", None
    except Image.DecompressionBombError as e:
        return None, f"too large ({_first_line(e)})", None
    except OSError as e:
        text = _first_line(e)
        cut = any(word in text.lower() for word in ("truncat", "end of", "broken"))
        return None, ("truncated" if cut else "cannot decode") + f" ({text})", None
    except EOFError as e:
        return None, f"truncated ({_first_line(e)})", None
    except Exception as e:  # a damaged file can make a decoder fail in any way; it must not stop training
        return None, f"cannot decode ({type(e).__name__}: {_first_line(e)})", None
    if mode is None or CHANNELS[mode] in TF_DECODABLE.get(kind, ()):
        return (height, width), None, None
    png = io.BytesIO()
    converted.save(png, format="PNG")
    return (height, width), None, png.getvalue()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:120] if text else type(e).__name__


def _class_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def check_image_folder(root: str | Path, mode: str | None = None, workers: int | None = None,
                       on_progress: Callable[[int, int], Any] | None = None) -> FolderReport:
    """Check every picture of an image folder, in parallel.

    The folder holds `train/` (and optionally `validation/`, `test/`) of class folders, or class folders directly.
    Every split must hold the same class folders.

    Args:
        root: the image folder.
        mode: the Pillow mode (L, RGB, RGBA) training reads the pictures in: files TensorFlow cannot decode as
            they are get converted to it (`ClassReport.converted`). Defaults to None (check only).
        workers: threads; defaults to ThreadPoolExecutor's choice.
        on_progress: called with (files done, files in all) now and then.

    Returns:
        A `FolderReport`.

    Raises:
        UserError: `root` is not an image folder, has fewer than two classes, or its splits' classes differ.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such folder; give an image folder (train/ validation/ test/ of class folders, "
                        f"or class folders)")
    folders = _folder_splits(root)
    names = _class_folders(folders["train"])
    for folder in folders.values():
        found = _class_names(folder)
        if found != names:
            missing, extra = sorted(set(names) - set(found)), sorted(set(found) - set(names))
            detail = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                                 f"extra {', '.join(extra)}" if extra else "") if part)
            raise UserError(f"{folder}: should hold the same class folders as {folders['train']} "
                            f"({', '.join(names)}); {detail}")

    splits = {split: {name: ClassReport(name) for name in names} for split in folders}
    jobs: list[tuple[str, str, Path]] = []
    ignored = 0
    for split, folder in folders.items():
        for name in names:
            for path in sorted((folder / name).iterdir()):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    jobs.append((split, name, path))
                elif path.is_file():
                    ignored += 1

    with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4)) as pool:
        results = pool.map(lambda job: check_file(job[2], mode), jobs)
        for done, ((split, name, path), (shape, reason, converted)) in enumerate(zip(jobs, results, strict=True), 1):
            entry = splits[split][name]
            if reason is not None:
                entry.bad.append(BadFile(path, reason))
            else:
                entry.good.append(path)
                entry.sizes.append(shape)
                if converted is not None:
                    entry.converted[str(path)] = converted
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


def print_report(report: FolderReport, limit: int = 50) -> None:
    """Print a report as rich tables: images and sizes per split and class, then the bad files with reasons."""
    from rich.markup import escape
    from rich.table import Table

    from cnnrun.report import console

    table = Table(title=f"{report.root}", title_justify="left")
    for column in ("split", "class", "images", "bad", "size (h×w, or min/median/max)"):
        table.add_column(column, justify="right" if column in ("images", "bad") else "left")
    for split, classes in report.splits.items():
        for name, entry in classes.items():
            bad = f"[red]{len(entry.bad)}[/]" if entry.bad else "0"
            images = str(len(entry.good)) if entry.good else "[yellow]0[/]"
            table.add_row(split, escape(name), images, bad, size_summary(entry.sizes))
    console.print(table)
    bad_files = report.bad_files
    if bad_files:
        bad_table = Table(title=f"{len(bad_files)} bad file(s)", title_justify="left")
        bad_table.add_column("file", overflow="fold")
        bad_table.add_column("reason", overflow="fold")
        for bad in bad_files[:limit]:
            bad_table.add_row(escape(str(bad.path)), escape(bad.reason))
        console.print(bad_table)
        if len(bad_files) > limit:
            console.print(f"… and {len(bad_files) - limit} more")
    for folder in report.empty_classes:
        console.print(f"[yellow]warning:[/] {escape(str(folder))} holds no usable image", highlight=False)
    summary = f"{report.num_images} good image(s), {len(bad_files)} bad"
    if report.ignored:
        summary += f", {report.ignored} file(s) without an image suffix ignored"
    console.print(summary, highlight=False)
