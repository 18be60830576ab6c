"""Faults a user meets in the data: pictures that vanish, npz files cnnrun must refuse, huge and EXIF-rotated
pictures, and the data layer's own structure (one way, one place for folder rules)."""

import ast
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.errors import UserError
from tests.conftest import PROJECT, run_here, tiny_config, train_then
from tests.test_data_splits import folder_experiment, photo_folder

DATA = PROJECT / "cnnrun" / "data"


def _imports(path: Path) -> set[str]:
    """The cnnrun.data modules a module imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnrun.data"):
            found.add(node.module if node.module != "cnnrun.data" else "cnnrun.data.__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cnnrun.data.")}
    return found


def test_no_data_module_imports_one_that_imports_it_back():
    graph = {f"cnnrun.data.{p.stem}": _imports(p) for p in DATA.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    circles = [module for module in graph if reaches(module, module, set())]
    assert not circles, f"import circles through {circles}"


def test_image_suffixes_and_colour_modes_are_written_down_once():
    tables = ('".bmp"', '"RGBA": 4', '"rgba": 4', '4: "RGBA"', '"rgba": "RGBA"')  # the suffix and mode tables
    written = {path.relative_to(PROJECT).as_posix() for path in (PROJECT / "cnnrun").rglob("*.py")
               if any(table in path.read_text() for table in tables)}
    assert written == {"cnnrun/data/folders.py"}


def test_a_picture_that_vanishes_becomes_one_line_naming_it(tmp_path):
    import tensorflow as tf

    from cnnrun.data import data_error

    root = photo_folder(tmp_path / "photos")
    splits = load_splits(folder_experiment(root, cache="none"))
    gone = Path(splits.examples["train"].paths[5])
    gone.unlink()
    with pytest.raises(tf.errors.NotFoundError) as caught:
        for _ in splits.train.take(splits.steps_per_epoch):
            pass
    error = data_error(caught.value)
    assert isinstance(error, UserError)
    assert str(error).startswith(f"{gone}: no such file or directory") and "\n" not in str(error)
    changed = Path(splits.examples["train"].paths[6])
    changed.write_text("no longer a picture")
    gone.touch()  # back, but empty: it no longer decodes either
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        for _ in splits.train.take(splits.steps_per_epoch):
            pass
    error = data_error(caught.value)
    assert isinstance(error, UserError), str(caught.value)
    assert str(error).split(": ")[0] in (str(gone), str(changed)) and "no longer a picture" in str(error)
    assert "\n" not in str(error)
    assert data_error(ValueError(f"{gone}; No such file or directory")) is None  # only TensorFlow's data errors
    assert data_error(tf.errors.InvalidArgumentError(None, None, "logits and labels must have the same shape")) \
        is None


@pytest.mark.slow
def test_a_picture_that_vanishes_during_fit_is_named_in_one_line(tmp_path):
    import keras

    from cnnrun.data import data_error
    from cnnrun.model.build import build_model
    from cnnrun.model.compiling import compile_model

    root = photo_folder(tmp_path / "photos", count=160, size=16)
    experiment = folder_experiment(root, cache="none", train={"epochs": 2, "batch_size": 4})
    splits = load_splits(experiment)
    model = build_model(experiment, tuple(splits.info.input_shape), splits.info.num_classes)
    compile_model(model, experiment)

    class DeletePictures(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for path in root.rglob("*.jpg"):
                path.unlink()

    with pytest.raises(Exception) as caught:  # whatever TensorFlow raises inside Keras' fit
        model.fit(splits.train, epochs=2, steps_per_epoch=splits.steps_per_epoch, callbacks=[DeletePictures()],
                  shuffle=False, verbose=0)
    error = data_error(caught.value)
    assert error is not None, caught.value
    named = str(error).split(":")[0]
    assert Path(named).parent.parent == root and Path(named).suffix == ".jpg" and "\n" not in str(error)


def _npz_experiment(path: Path):
    return validate_experiment(tiny_config(dataset={"name": "npz", "path": str(path)}), "test")


class _Trap:
    """An object whose unpickling would make a folder: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.marker),)


def test_an_npz_with_object_arrays_is_refused_in_one_line_and_never_unpickled(tmp_path, write_config):
    marker = tmp_path / "unpickled"
    path = tmp_path / "objects.npz"
    images = np.empty(4, dtype=object)
    images[:] = [_Trap(marker)] * 4
    np.savez(path, x_train=images, y_train=np.arange(4))
    with pytest.raises(UserError, match=r"x_train holds Python objects \(dtype=object\)"):
        load_splits(_npz_experiment(path))
    result = run_here("train", write_config(tiny_config(dataset={"name": "npz", "path": str(path)})),
                      "--output-dir", tmp_path / "out")
    assert result.returncode == 2 and "dtype=object" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("arrays", [None, {}, {"x_train": np.zeros((0, 8, 8), np.uint8), "y_train": np.zeros(0, int)}],
                         ids=["zero bytes", "no arrays", "no examples"])
def test_an_empty_npz_is_refused_in_one_line(tmp_path, write_config, arrays):
    path = tmp_path / "empty.npz"
    if arrays is None:
        path.write_bytes(b"")
    else:
        np.savez(path, **arrays)
    with pytest.raises(UserError, match=f"{path}") as caught:
        load_splits(_npz_experiment(path))
    assert "\n" not in str(caught.value)
    result = run_here("train", write_config(tiny_config(dataset={"name": "npz", "path": str(path)})),
                      "--output-dir", tmp_path / "out")
    assert result.returncode == 2 and str(path) in result.stderr and "Aborted" not in result.stderr


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG that says it is `width`×`height` pixels (8-bit gray) without holding them: Pillow refuses or warns
    from the header alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_a_196_megapixel_png_is_refused(tmp_path):
    from cnnrun.data.check import check_file

    _png_header(tmp_path / "huge.png", 14_000, 14_000)
    checked = check_file(tmp_path / "huge.png", "RGB")
    assert checked.size is None and checked.reason.startswith("too large")


def test_a_large_picture_is_a_note_of_the_check_not_a_python_warning(tmp_path, monkeypatch):
    from cnnrun.data.check import check_image_folder

    photo_folder(tmp_path / "photos", count=8, size=20)
    big = tmp_path / "photos" / "circle" / "big.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 pixels: above the warning limit, below the error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = check_image_folder(tmp_path / "photos", "RGB")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert big in report.splits["train"]["circle"].good
    (note,) = report.notes
    assert str(big) in note and "40×40" in note
    splits = load_splits(folder_experiment(tmp_path / "photos"))
    assert any(str(big) in line for line in splits.warnings)


def _sideways_jpeg(path: Path) -> np.ndarray:
    """A 20×30 JPEG whose EXIF says "rotate 90° clockwise to view" (orientation 6); returns what a viewer shows."""
    from PIL import ImageOps

    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :10] = (250, 20, 20)  # a red band on the left of the stored picture
    pixels[:, 10:] = (20, 20, 250)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, quality=100, exif=exif.tobytes())
    with Image.open(path) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert upright.shape == (30, 20, 3) and not np.array_equal(upright[:20, :20], np.asarray(Image.open(path))[:, :20])
    return upright


def test_exif_orientation_is_honoured_in_training_and_predict(tmp_path):
    from cnnrun.data.pictures import read_images

    photo_folder(tmp_path / "photos", count=8, size=20)
    path = tmp_path / "photos" / "circle" / "sideways.jpg"
    upright = _sideways_jpeg(path)
    experiment = folder_experiment(tmp_path / "photos", image_size=[30, 20], label_mode="sparse")
    train = load_splits(experiment).examples["train"]
    seen = train.pixels(np.array([train.paths.index(str(path))]))[0]
    np.testing.assert_array_equal(seen, upright)  # training sees the picture as a viewer shows it
    images, readable, reasons = read_images([path], [30, 20, 3])
    assert readable == [path] and not reasons
    np.testing.assert_array_equal(images[0], upright)  # and predict reads it exactly so


def test_predict_reads_pictures_exactly_as_training_does(tmp_path):
    from cnnrun.data.pictures import read_images

    root = photo_folder(tmp_path / "photos", count=8, size=20)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (25, 18, 3), np.uint8)).convert("CMYK").save(
        root / "circle" / "cmyk.jpg")
    (root / "circle" / "broken.jpg").write_text("not a picture")
    experiment = folder_experiment(root, image_size=[12, 14], label_mode="sparse")
    train = load_splits(experiment).examples["train"]
    paths = sorted(Path(p) for p in train.paths)
    images, readable, reasons = read_images(paths + [root / "circle" / "broken.jpg"], [12, 14, 3])
    assert readable == paths and list(reasons) == [root / "circle" / "broken.jpg"]
    expected = train.pixels(np.array([train.paths.index(str(p)) for p in paths]))
    np.testing.assert_array_equal(images, expected)


@pytest.mark.slow
def test_predict_files_counts_the_inputs_it_could_not_read(tmp_path, write_config):
    from cnnrun.tasks.predict import predict_files

    config = write_config(tiny_config(train={"epochs": 1, "batch_size": 16}))
    assert run_here("train", config, "--output-dir", tmp_path / "out").returncode == 0
    (run,) = (tmp_path / "out" / "tiny").iterdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"")
    (tmp_path / "worse.jpg").write_text("text")
    assert predict_files(run, [tmp_path / "good.png"]).unreadable == 0
    found = predict_files(run, [tmp_path / "good.png", tmp_path / "bad.png", tmp_path / "worse.jpg"])
    assert found.unreadable == 2
    assert [r["file"] for r in found.results] == [str(tmp_path / n) for n in ("good.png", "bad.png", "worse.jpg")]
    assert ["error" in r for r in found.results] == [False, True, True]


@pytest.mark.slow
def test_train_ends_failed_in_one_line_when_pictures_vanish_mid_training(tmp_path, write_config):
    import json

    root = photo_folder(tmp_path / "photos", count=160, size=16)
    config = tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 16, "cache": "none"},
                         train={"epochs": 50, "batch_size": 8})
    def delete_the_pictures():
        for path in root.rglob("*.jpg"):
            path.unlink()

    result = train_then([write_config(config)], tmp_path / "out", delete_the_pictures)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "no such file or directory" in result.stderr
    assert str(root) in result.stderr
    (run,) = (tmp_path / "out" / "tiny").iterdir()
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "failed" and state["epochs_completed"] >= 1
    assert (run / "checkpoints" / "last.keras").is_file()


def test_the_file_named_is_what_follows_the_last_colon_of_tensorflows_line():
    import tensorflow as tf

    from cnnrun.data import data_error

    text = ("Graph execution error:\n\n  (0) NOT_FOUND: {{function_node __wrapped__IteratorGetNext}} Error in "
            "user-defined function passed to MapDataset:0 transformation: /data/cat.png; No such file or directory")
    error = data_error(tf.errors.NotFoundError(None, None, text))
    assert str(error).startswith("/data/cat.png: no such file or directory (it was there when the data was checked)")


def test_the_pictures_in_a_folder_are_collected_sorted_after_the_files_named(tmp_path):
    from cnnrun.data.pictures import collect_images

    for name in ("b.png", "a.jpg", "sub/c.png", "z.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a picture")
    folder = [tmp_path / "a.jpg", tmp_path / "b.png", tmp_path / "sub" / "c.png", tmp_path / "z.png"]
    assert collect_images([tmp_path / "z.png", tmp_path]) == [tmp_path / "z.png", *folder]
