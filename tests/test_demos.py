"""The teaching commands: kernel-demo, image-info and the image reader they share (real files, no mocks)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnrun.errors import UserError
from cnnrun.teach.channels import describe_image, image_info, parse_crop
from cnnrun.teach.images import read_image
from cnnrun.teach.kernels import KERNELS, convolve, kernel_demo, named_kernel, parse_kernel_values, pool

DOCUMENTED_KERNELS = {
    "vertical": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "horizontal": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": np.full((3, 3), 1 / 9),
    "gaussian": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
}


@pytest.fixture
def photo(tmp_path):
    """A small RGB PNG with a bright square, so the edge kernels have edges to find."""
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[12:36, 20:44] = (250, 120, 30)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def not_a_picture(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not a PNG\n")
    return path


def direct_convolution(gray, kernel, stride, pad):
    """out[i, j] = Σ_a Σ_b k[a, b] · x[i·s + fh−1−a, j·s + fw−1−b] on the zero-padded picture, one window at a time."""
    (top, bottom), (left, right) = pad
    x = np.pad(gray, ((top, bottom), (left, right)))
    fh, fw = kernel.shape
    out_h, out_w = (x.shape[0] - fh) // stride + 1, (x.shape[1] - fw) // stride + 1
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = sum(kernel[a, b] * x[i * stride + fh - 1 - a, j * stride + fw - 1 - b]
                            for a in range(fh) for b in range(fw))
    return out


@pytest.mark.parametrize("shape", [(3, 3), (2, 2), (3, 5), (1, 1)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_convolution_equals_the_sum_over_each_window(shape, padding, stride):
    rng = np.random.default_rng(0)
    gray = rng.random((9, 11))
    kernel = rng.integers(-3, 4, size=shape).astype(float)
    result = convolve(gray, kernel, stride, padding)
    pad = ((result.rows.pad_before, result.rows.pad_after), (result.cols.pad_before, result.cols.pad_after))
    expected = direct_convolution(gray, kernel, stride, pad)
    assert result.output.shape == (result.rows.out, result.cols.out) == expected.shape
    np.testing.assert_allclose(result.output, expected, atol=1e-12)


def test_vertical_kernel_finds_vertical_edges_only():
    gray = np.zeros((8, 8))
    gray[:, 4:] = 1.0
    assert np.abs(convolve(gray, named_kernel("horizontal")).output).max() == 0
    assert np.abs(convolve(gray, named_kernel("vertical")).output).max() == 3


def test_every_named_kernel_has_the_documented_values():
    assert set(KERNELS) == set(DOCUMENTED_KERNELS)
    for name, values in DOCUMENTED_KERNELS.items():
        np.testing.assert_allclose(named_kernel(name), np.array(values, float), err_msg=name)
    with pytest.raises(UserError, match="did you mean 'sobel_x'"):
        named_kernel("sobelx")


def test_kernel_values_are_validated():
    np.testing.assert_array_equal(parse_kernel_values("[[0,-1,0],[-1,5,-1],[0,-1,0]]"), named_kernel("sharpen"))
    np.testing.assert_array_equal(parse_kernel_values("[[0.5, 1e-1]]"), [[0.5, 0.1]])
    for bad in ("[[1,2],[3]]", "[1,2,3]", "[[1,'a']]", "[[true]]", "[[", "7", "[]", "[[]]", "[[.inf]]"):
        with pytest.raises(UserError, match="--kernel-values"):
            parse_kernel_values(bad)


def test_pooling_equals_keras_rules_on_a_small_array():
    x = np.arange(35).reshape(5, 7)
    np.testing.assert_array_equal(pool(x, 2, "max"), [[8, 10, 12], [22, 24, 26]])
    np.testing.assert_allclose(pool(x, 2, "average"), [[4, 6, 8], [18, 20, 22]])
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    pooled = pool(rgb, 3, "max")
    assert pooled.shape == (2, 3, 3)
    assert pooled[1, 2, 0] == rgb[3:6, 6:9, 0].max()


def test_read_image_modes(tmp_path):
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "photo.jpg")
    assert read_image(tmp_path / "rgba.png").shape == (5, 6, 3)
    assert read_image(tmp_path / "rgba.png", keep_alpha=True).shape == (5, 6, 4)
    assert read_image(tmp_path / "gray.png").shape == (5, 6)
    assert read_image(tmp_path / "palette.png").shape == (5, 6, 3)
    assert read_image(tmp_path / "photo.jpg").dtype == np.uint8


def test_read_image_errors_name_the_path(tmp_path, not_a_picture):
    with pytest.raises(UserError, match="notes.png: not a picture"):
        read_image(not_a_picture)
    with pytest.raises(UserError, match="missing.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(UserError, match="is not a file"):
        read_image(tmp_path)
    truncated = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 256, (50, 50, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    truncated.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(UserError, match="cut.png"):
        read_image(truncated)


def test_kernel_demo_writes_a_figure_that_grows_with_the_kernels(photo, tmp_path):
    lesson = kernel_demo(photo, out=tmp_path / "two.png")
    out, lines = lesson.figure, lesson.lines
    with Image.open(out) as figure:
        two = figure.size
    assert two[0] == 2 * 3.4 * 80  # 2 columns of 3.4 inches at 80 dpi
    assert "Original's shape: (48, 64, 3)" in lines
    assert "Gray's shape: (48, 64)" in lines
    assert any("vertical" in line and "(46, 62)" in line for line in lines)
    out = kernel_demo(photo, kernels=["sobel_x", "laplacian", "gaussian"], kernel_values=["[[1,0],[0,-1]]"],
                      padding="same", stride=2, pools=["max", "average"], out=tmp_path / "many.png").figure
    with Image.open(out) as figure:
        assert figure.size[0] == 3 * 3.4 * 80 and figure.size[1] > two[1]


def test_kernel_demo_prints_keras_shapes_for_padding_and_stride(photo, tmp_path):
    first = kernel_demo(photo, kernels=["vertical"], padding="same", stride=3, pools=["max"], out=tmp_path / "k.png")
    second = kernel_demo(photo, kernels=["vertical"], padding="same", stride=2, out=tmp_path / "k.png")
    text = "\n".join(first.lines + second.lines)
    # Keras' 'same': out = ceil(n / s), padding max((out − 1)·s + f − n, 0), the odd one after
    assert "rows (48 + 2·0 − 3)/3 + 1 = 16, columns (64 + 2·1 − 3)/3 + 1 = 22 -> (16, 22)" in text
    assert "rows (48 + (0+1) − 3)/2 + 1 = 24, columns (64 + (0+1) − 3)/2 + 1 = 32 -> (24, 32)" in text
    assert "Keras pads 0 row(s) above, 1 below, 0 column(s) left, 1 right" in text
    assert "-> (24, 32, 3)" in text  # 2×2 max pooling


def test_a_pooling_asked_for_twice_is_shown_once(photo, tmp_path):
    lines = kernel_demo(photo, kernels=["vertical"], pools=["max", "max"], out=tmp_path / "k.png").lines
    assert [line for line in lines if line.startswith("Max pooling")] == [
        "Max pooling 2×2, stride 2, valid: rows (48 + 2·0 − 2)/2 + 1 = 24, columns (64 + 2·0 − 2)/2 + 1 = 32 -> "
        "(24, 32, 3)"]  # ⌊46/2⌋ + 1 = 24, ⌊62/2⌋ + 1 = 32


def test_kernel_demo_default_image_is_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lesson = kernel_demo()
    assert lesson.figure == tmp_path / "astronaut_kernels.png" and lesson.figure.is_file()
    assert "scikit-image" in lesson.lines[0]


def test_kernel_demo_options_are_checked(photo, tmp_path):
    for kwargs, option in [({"padding": "full"}, "--padding"), ({"pools": ["min"]}, "--pool"),
                           ({"out": tmp_path / "figure.txt"}, "--out"), ({"kernels": ["blur"]}, "--kernel")]:
        with pytest.raises(UserError, match=option):
            kernel_demo(photo, **kwargs)


def test_image_info_prints_and_draws_channels(tmp_path):
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    lesson = image_info(tmp_path / "rgba.png", crop="0:4,10:14")
    out = lesson.figure
    assert out == tmp_path / "rgba_channels.png" or out.name == "rgba_channels.png"
    text = "\n".join(lesson.lines)
    assert "Shape: (30, 40, 4)" in text and "dtype: uint8" in text and "values from 0 to 255" in text
    assert "Channels: 4 (red, green, blue, alpha); alpha: yes" in text
    assert "Crop 0:4,10:14: shape (4, 4, 4)" in text
    with Image.open(out) as figure:
        assert figure.size[0] == 6 * 3.0 * 80  # picture, 4 channels, crop


def test_image_info_gray_and_crop_errors(tmp_path):
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(tmp_path / "gray.png")
    out = image_info(tmp_path / "gray.png", out=tmp_path / "g.png").figure
    with Image.open(out) as figure:
        assert figure.size[0] == 2 * 3.0 * 80
    assert describe_image(np.zeros((2, 3), np.uint8))["channels"] == 1
    assert parse_crop(":5,10:", (20, 30)) == (slice(0, 5), slice(10, 30))
    for bad in ("5:2,0:9", "0:30,0:5", "1-5,2-6", "a:b,c:d", "0:5"):
        with pytest.raises(UserError, match="--crop"):
            parse_crop(bad, (20, 30))


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cnnrun", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_cli_kernel_demo_writes_its_png(photo, tmp_path):
    result = _cli("kernel-demo", str(photo), "--kernel", "sobel_y", "--padding", "same", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Original's shape: (48, 64, 3)" in result.stdout
    with Image.open(tmp_path / "photo_kernels.png") as figure:
        assert figure.format == "PNG" and figure.size[0] == 2 * 3.4 * 80


@pytest.mark.parametrize("command", ["kernel-demo", "image-info"])
def test_cli_fails_cleanly_on_bad_files(command, not_a_picture, tmp_path):
    for path in (not_a_picture, tmp_path / "missing.png"):
        result = _cli(command, str(path), cwd=tmp_path)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and path.name in lines[0]


def test_cli_bad_options_are_one_line(photo, tmp_path):
    for args in (["kernel-demo", str(photo), "--kernel-values", "[[1,2],[3]]"],
                 ["image-info", str(photo), "--crop", "0:99,0:5"]):
        result = _cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_figure_name_may_end_in_an_upper_case_suffix(tmp_path):
    from cnnrun.teach.images import figure_path

    assert figure_path(tmp_path / "edges.PNG", "cat", "kernels") == tmp_path / "edges.PNG"
    with pytest.raises(UserError, match="should end in one of"):
        figure_path(tmp_path / "edges.gif", "cat", "kernels")


def test_a_picture_larger_than_max_side_is_drawn_as_the_means_of_whole_blocks():
    from cnnrun.figures import pyplot
    from cnnrun.teach.images import show

    picture = np.arange(600 * 600, dtype=np.float64).reshape(600, 600)
    fig, ax = pyplot().subplots()
    show(ax, picture, "big")  # 600 > 512: blocks of ⌈600 / 512⌉ = 2 × 2 pixels
    drawn = np.asarray(ax.images[0].get_array())
    pyplot().close(fig)
    assert drawn.shape == (300, 300)
    np.testing.assert_allclose(drawn, picture.reshape(300, 2, 300, 2).mean(axis=(1, 3)))
    assert ax.images[0].get_extent() == [-0.5, 599.5, 599.5, -0.5]  # the ticks count the picture's own pixels


def test_a_palette_picture_with_a_transparent_colour_keeps_its_alpha_only_when_asked(tmp_path):
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[:, 3:] = 255
    Image.fromarray(rgb).convert("P").save(tmp_path / "clear.png", transparency=0)
    with Image.open(tmp_path / "clear.png") as saved:
        assert saved.mode == "P" and "transparency" in saved.info
    assert read_image(tmp_path / "clear.png").shape == (5, 6, 3)
    with_alpha = read_image(tmp_path / "clear.png", keep_alpha=True)
    assert with_alpha.shape == (5, 6, 4)
    assert np.array_equal(with_alpha[..., 3], np.where(rgb[..., 0] == 0, 0, 255))  # palette index 0 is clear


def test_gray_with_alpha_is_two_named_channels_and_an_empty_crop_is_refused():
    gray_alpha = describe_image(np.zeros((2, 3, 2), np.uint8))
    assert gray_alpha["names"] == ("gray", "alpha") and gray_alpha["alpha"] is True
    assert describe_image(np.zeros((2, 3, 3), np.uint8))["alpha"] is False
    for empty in ("3:3,0:5", "0:5,7:7"):  # no rows, no columns
        with pytest.raises(UserError, match="empty or outside"):
            parse_crop(empty, (20, 30))
