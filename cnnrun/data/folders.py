"""Image folders on disk: which files are pictures, where the splits and class folders are, and the colour modes.

Everything that looks at an image folder's layout asks this module, so the folder check, the data sources and
`predict` agree on what a picture is and where it belongs. It imports nothing from the rest of cnnrun's data
layer: data flows from here outwards.

An image folder holds either `train/` (and optionally `validation/`, `test/`), each of one folder per class, or
the class folders directly (all of it is then the training split):

```
pets/train/cat/001.jpg      pets/cat/001.jpg
pets/train/dog/002.png      pets/dog/002.png
pets/test/cat/003.jpg
```

Example:
>>> folder_splits(Path("pets"))
{'train': PosixPath('pets/train'), 'test': PosixPath('pets/test')}
>>> class_folders(Path("pets/train"))
['cat', 'dog']
"""

from pathlib import Path

from cnnrun.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
SPLIT_NAMES = ("train", "validation", "test")

PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}  # the config's color_mode → Pillow's mode
CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}  # Pillow's mode → channels of the decoded picture
MODES = {channels: mode for mode, channels in CHANNELS.items()}  # channels → Pillow's mode


def is_image_file(path: Path) -> bool:
    """Whether `path` is a file with one of the picture suffixes (any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def suffix_list() -> str:
    """The picture suffixes, for messages: `.bmp, .gif, .jpeg, .jpg, .png`."""
    return ", ".join(sorted(IMAGE_SUFFIXES))


def folder_splits(root: Path) -> dict[str, Path]:
    """`train/`, `validation/`, `test/` under an image folder, or the folder itself as the training split.

    Raises:
        UserError: `root` is not a folder.
    """
    if not root.is_dir():
        raise UserError(f"dataset.path: {root} is not a folder (it should hold train/ validation/ test/ "
                        f"of class folders, or class folders)")
    if (root / "train").is_dir():
        return {name: root / name for name in SPLIT_NAMES if (root / name).is_dir()}
    return {"train": root}


def subfolders(folder: Path) -> list[str]:
    """The names of the folders inside `folder`, sorted (the class names, when it is a split folder)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def class_folders(folder: Path) -> list[str]:
    """The class names of a split folder: its subfolders, sorted; at least two.

    Raises:
        UserError: fewer than two class folders.
    """
    names = subfolders(folder)
    if len(names) < 2:
        raise UserError(f"dataset.path: {folder} should hold one folder per class (at least two)")
    return names
