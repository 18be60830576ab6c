"""Image folders with bad files in them, `cnnrun data check` (augment-preview: test_augmentation.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrun.config import validate_experiment
from cnnrun.data import load_splits
from cnnrun.data.check import check_image_folder
from cnnrun.data.shapes import make_shapes
from cnnrun.errors import UserError
from tests.conftest import run_here, tiny_config

BAD = {"cut.jpg": "truncated", "notes.jpg": "not an image", "zero.png": "empty"}


def make_tree(root: Path, bad: bool = True, empty_class: bool = True) -> Path:
    """train/ and test/ of circle and square pictures (PNG and JPEG); with `bad`, three bad files in train/circle,
    a CMYK JPEG, a 16-bit PNG and a palette GIF (all good) and a text file that is ignored."""
    x, y, names = make_shapes(32, image_size=20, channels=3, num_classes=2, seed=5)
    for i in range(len(x)):
        folder = root / ("train" if i < 24 else "test") / names[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    if empty_class:
        for split in ("train", "test"):
            (root / split / "zz_empty").mkdir()
    if bad:
        folder = root / "train" / "circle"
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(root / "whole.jpg")
        data = (root / "whole.jpg").read_bytes()
        (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
        (folder / "notes.jpg").write_text("not a picture, only named like one")
        (folder / "zero.png").write_bytes(b"")
        (folder / "readme.txt").write_text("ignored: not an image suffix")
        Image.fromarray(x[0]).convert("CMYK").save(folder / "cmyk.jpg")
        Image.fromarray((np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)).save(folder / "deep.png")
        Image.fromarray(x[0]).convert("P").save(folder / "palette.gif")
    return root


def folder_experiment(root: Path, **dataset):
    return validate_experiment(tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 16,
                                                    **dataset}), "test")


def test_check_reports_each_bad_file_with_its_reason(tmp_path):
    report = check_image_folder(make_tree(tmp_path / "pics"))
    reasons = {bad.path.name: bad.reason for bad in report.bad_files}
    assert set(reasons) == set(BAD)
    for name, word in BAD.items():
        assert word in reasons[name], reasons
    circle = report.splits["train"]["circle"]
    assert {"cmyk.jpg", "deep.png", "palette.gif"} <= {p.name for p in circle.good}  # converted, not bad
    assert (30, 40) in circle.sizes and (20, 20) in circle.sizes
    assert report.ignored == 1
    assert report.class_names == ["circle", "square", "zz_empty"]
    assert tmp_path / "pics" / "train" / "zz_empty" in report.empty_classes
    assert report.num_images == 32 + 3


def test_splits_must_hold_the_same_classes(tmp_path):
    root = make_tree(tmp_path / "pics", bad=False, empty_class=False)
    (root / "test" / "triangle").mkdir()
    with pytest.raises(UserError, match="test.*triangle"):
        check_image_folder(root)
    with pytest.raises(UserError, match="triangle"):
        load_splits(folder_experiment(root))


def test_skip_loads_the_rest_with_one_warning_returned_not_printed(tmp_path, capsys):
    root = make_tree(tmp_path / "pics")
    splits = load_splits(folder_experiment(root, label_mode="sparse"))
    assert capsys.readouterr().err == ""  # the caller shows them
    warnings = [line for line in splits.warnings if "bad file" in line]
    assert len(warnings) == 1 and "3 bad file(s)" in warnings[0] and "cut.jpg" in warnings[0]
    assert any("zz_empty" in line and "no usable image" in line for line in splits.warnings)
    assert splits.info.sizes == {"train": 24 + 3, "test": 8}
    assert sorted(Path(b["path"]).name for b in splits.bad_files) == sorted(BAD)
    images, labels = next(iter(splits.test))
    assert images.shape == (8, 16, 16, 3) and labels.shape == (8,)
    assert splits.info.class_names[-1] == "zz_empty"


def test_grayscale_and_categorical(tmp_path):
    root = make_tree(tmp_path / "pics")
    splits = load_splits(folder_experiment(root, color_mode="grayscale", image_size=[12, 10]))
    images, labels = next(iter(splits.test))
    assert images.shape == (8, 12, 10, 1)
    assert labels.shape == (8, 3) and np.allclose(labels.numpy().sum(axis=1), 1)
    x_train = splits.examples["train"].pixels(np.arange(27))  # the converted CMYK, 16-bit and GIF files too
    assert x_train.dtype == np.uint8 and x_train.shape == (27, 12, 10, 1)


def test_error_stops_before_training(tmp_path, write_config):
    root = make_tree(tmp_path / "pics")
    with pytest.raises(UserError, match="3 file.*cut.jpg"):
        load_splits(folder_experiment(root, on_bad_file="error"))
    config = write_config(tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 16,
                                               "on_bad_file": "error"}))
    result = run_here("train", config, "--output-dir", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "cut.jpg" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_skips_bad_files_and_records_them(tmp_path, write_config):
    root = make_tree(tmp_path / "pics")
    config = write_config(tiny_config(dataset={"name": "image_folder", "path": str(root), "image_size": 16},
                                      train={"epochs": 1, "batch_size": 8}))
    result = run_here("train", config, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 bad file(s)" in result.stderr
    (run,) = (tmp_path / "out" / "tiny").iterdir()
    recorded = json.loads((run / "bad_files.json").read_text())
    assert sorted(Path(b["path"]).name for b in recorded) == sorted(BAD)
    assert json.loads((run / "state.json").read_text())["status"] == "completed"


def test_data_check_exit_codes(tmp_path):
    clean = make_tree(tmp_path / "clean", bad=False, empty_class=False)
    result = run_here("data", "check", clean)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "circle" in result.stdout and "20×20" in result.stdout

    result = run_here("data", "check", make_tree(tmp_path / "bad"))
    assert result.returncode == 1, result.stdout + result.stderr
    for name in BAD:
        assert name in result.stdout
    assert "truncated" in result.stdout and "zz_empty" in result.stdout

    result = run_here("data", "check", tmp_path / "nowhere")
    assert result.returncode == 2 and "nowhere" in result.stderr
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "one.png").write_bytes(b"")
    assert run_here("data", "check", tmp_path / "flat").returncode == 2


@pytest.mark.slow
def test_augmentation_in_the_model_trains_resumes_and_evaluates(tmp_path, write_config):
    config = tiny_config(augmentation={"horizontal_flip": True, "brightness_range": [0.8, 1.2],
                                       "placement": "model"},
                         dataset={"name": "shapes", "image_size": 16, "num_samples": 80, "test_samples": 20,
                                  "validation_split": 0.25, "normalize": "standardize"})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "out" / "tiny").iterdir())
    assert "augmentation" in (run / "summary.txt").read_text()
    assert run_here("resume", run, "--epochs", "3").returncode == 0
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 3
    result = run_here("evaluate", run)
    assert result.returncode == 0, result.stderr


def test_folder_cache_modes_give_the_same_batches(tmp_path):
    root = make_tree(tmp_path / "pics", bad=False, empty_class=False)
    batches = {}
    for cache in ("none", "memory", "disk"):
        splits = load_splits(folder_experiment(root, cache=cache, label_mode="sparse", validation_split=0.25))
        assert splits.examples["train"].cache == cache
        batches[cache] = [images.numpy() for images, _ in splits.train.take(4)]  # two epochs of 16-image batches
        batches[cache] += [images.numpy() for _ in range(2) for images, _ in splits.validation]
    for cache in ("memory", "disk"):
        for one, two in zip(batches["none"], batches[cache], strict=True):
            np.testing.assert_array_equal(one, two)
    assert not np.array_equal(batches["none"][0], batches["none"][2])  # each epoch has its own order
    assert len(batches["none"]) == 6  # 18 training images in 2 batches, twice; 6 validation images in 1, twice


def test_test_split_holds_out_a_seeded_part_that_never_overlaps(tmp_path):
    root = make_tree(tmp_path / "pics", bad=False, empty_class=False) / "train"
    splits = load_splits(folder_experiment(root, test_split=0.25, validation_split=0.25))
    parts = {name: set(part.paths) for name, part in splits.examples.items()}
    assert {name: len(paths) for name, paths in parts.items()} == {"train": 12, "validation": 6, "test": 6}
    assert not (parts["train"] & parts["validation"] or parts["train"] & parts["test"]
                or parts["validation"] & parts["test"])
    assert splits.test is not None
    with pytest.raises(UserError, match="test split of its own"):
        load_splits(folder_experiment(root.parent, test_split=0.2))


def test_converted_files_decode_as_pillow_reads_them(tmp_path):
    from cnnrun.data.check import check_file, to_mode
    from cnnrun.data.examples import decoder

    picture = np.random.default_rng(2).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(picture).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    _, reason, png, _ = check_file(tmp_path / "cmyk.jpg", "RGB")
    assert reason is None and png is not None  # TensorFlow cannot read CMYK: converted
    pixels = decoder((20, 20), 3, {str(tmp_path / "cmyk.jpg"): png})(str(tmp_path / "cmyk.jpg")).numpy()
    with Image.open(tmp_path / "cmyk.jpg") as image:
        np.testing.assert_array_equal(pixels, np.asarray(to_mode(image, "RGB")))
    Image.fromarray(picture).save(tmp_path / "plain.png")
    assert check_file(tmp_path / "plain.png", "RGB").converted is None  # read by TensorFlow as it is


def test_a_16_bit_picture_is_scaled_to_8_bits_by_dividing_by_257(tmp_path):
    import io

    from cnnrun.data.check import check_file

    # 65535 / 257 = 255 exactly: 0, 257·100, 257·200 and 65535 become 0, 100, 200, 255 (÷ 256 would give 201 for 51400)
    Image.fromarray(np.array([[0, 25700, 51400, 65535]], np.uint16)).save(tmp_path / "deep.png")
    size, reason, png, _ = check_file(tmp_path / "deep.png", "L")
    assert (size, reason) == ((1, 4), None)
    with Image.open(io.BytesIO(png)) as converted:
        assert converted.mode == "L" and np.asarray(converted).tolist() == [[0, 100, 200, 255]]


def test_the_size_summary_gives_the_median_between_the_least_and_the_largest():
    from cnnrun.data.check import size_summary

    # heights 10 10 40: median 10 (the mean would be 20); widths 20 30 100: median 30 (mean 50)
    assert size_summary([(10, 20), (10, 30), (40, 100)]) == "h 10/10/40, w 20/30/100"
    assert size_summary([(8, 6), (8, 6)]) == "8×6"
    assert size_summary([]) == "—"


def test_the_moments_of_files_are_the_mean_and_standard_deviation_of_their_pixels(tmp_path):
    from cnnrun.data.examples import FileExamples

    for name, value in (("dark.png", 10), ("light.png", 30)):
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / name)
    examples = FileExamples([str(tmp_path / "dark.png"), str(tmp_path / "light.png")], np.array([0, 1]), (4, 4), 1)
    # half the pixels 10, half 30: mean 20, every pixel 10 away from it
    assert examples.moments() == pytest.approx((20.0, 10.0))


def test_a_picture_shrunk_to_one_pixel_is_the_antialiased_mean_rounded(tmp_path):
    from cnnrun.data.examples import FileExamples

    picture = np.full((4, 4), 200, np.uint8)
    picture[1:3, 1:3] = 0  # a 200 ring around a black 2×2 centre
    Image.fromarray(picture).save(tmp_path / "ring.png")
    examples = FileExamples([str(tmp_path / "ring.png")], np.array([0]), (1, 1), 1)
    # antialiased bilinear 4 → 1: a triangle 4 pixels wide on each axis, weights 1 − |d|/4 at d = 1.5, .5, .5, 1.5:
    # (5, 7, 7, 5)/24; the centre weighs (14/24)² = 196/576, so 200·(1 − 196/576) = 131.94…, rounded 132
    # (without antialiasing the pixel would come from the black centre alone: 0)
    assert examples.pixels(np.array([0])).ravel().tolist() == [132]


def test_a_warning_names_three_files_and_marks_only_more_with_an_ellipsis():
    from cnnrun.data.image_folder import first_few

    assert first_few(["a", "b", "c"]) == "a; b; c"
    assert first_few(["a", "b", "c", "d"]) == "a; b; c; …"


def test_data_check_lists_as_many_bad_files_as_its_limit_then_counts_the_rest(tmp_path, capsys):
    from cnnrun.cli.render_tasks import show_folder_check

    show_folder_check(check_image_folder(make_tree(tmp_path / "bad", empty_class=False)), limit=2)
    out = capsys.readouterr().out
    assert "3 bad file(s)" in out
    assert sum(name in out for name in BAD) == 2  # two of the three listed
    assert "… and 1 more" in out  # 3 − 2
