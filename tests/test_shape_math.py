"""shape_math against real Keras layers, its formulas, the `conv-shape` command and inspect's arithmetic column."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from cnnrun.errors import UserError
from cnnrun.teach import shape_math


def _built(input_shape, layer):
    return keras.Sequential([keras.Input(input_shape), layer])


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_sizes_and_params_equal_keras(padding, stride):
    h, w, c = 9, 12, 3
    for k in (1, 2, 3, 4):
        rows = shape_math.conv_size(h, k, stride, padding)
        cols = shape_math.conv_size(w, k, stride, padding)
        mine = shape_math.conv_layer((h, w, c), k, k, 5, stride, padding)
        assert mine.output_shape == (rows.out, cols.out, 5)
        model = _built((h, w, c), keras.layers.Conv2D(5, k, strides=stride, padding=padding))
        assert tuple(model.layers[-1].output.shape)[1:] == mine.output_shape, (k, stride, padding)
        assert model.count_params() == mine.params.total
        for cls in (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D):
            pooled = shape_math.pool_layer((h, w, c), k, stride, padding, cls.__name__)
            model = _built((h, w, c), cls(pool_size=k, strides=stride, padding=padding))
            assert tuple(model.layers[-1].output.shape)[1:] == pooled.output_shape, (cls.__name__, k, stride, padding)
            assert model.count_params() == pooled.params.total == 0


def test_pooling_stride_defaults_to_pool_size_as_in_keras():
    model = _built((15, 15, 2), keras.layers.MaxPooling2D(3))
    assert tuple(model.layers[-1].output.shape)[1:] == shape_math.pool_layer((15, 15, 2), 3).output_shape == (5, 5, 2)


def test_dilation_depthwise_separable_and_dense_equal_keras():
    size = shape_math.conv_size(20, 3, 2, "valid", dilation=2)
    model = _built((20, 20, 1), keras.layers.Conv2D(1, 3, strides=1, dilation_rate=2))
    assert tuple(model.layers[-1].output.shape)[1:3] == (shape_math.conv_size(20, 3, 1, "valid", 2).out,) * 2
    assert size.f == 5
    model = _built((10, 10, 4), keras.layers.DepthwiseConv2D(3, depth_multiplier=2))
    assert model.count_params() == shape_math.depthwise_params(3, 3, 4, 2).total
    model = _built((10, 10, 4), keras.layers.SeparableConv2D(6, 3, depth_multiplier=2))
    assert model.count_params() == shape_math.separable_params(3, 3, 4, 6, 2).total
    model = _built((10, 10, 4), keras.layers.Conv2D(6, (3, 2), use_bias=False))
    assert model.count_params() == shape_math.conv2d_params(3, 2, 4, 6, use_bias=False).total
    model = _built((37,), keras.layers.Dense(11))
    assert model.count_params() == shape_math.dense_params(37, 11).total


def test_formulas_show_the_numbers():
    assert shape_math.conv_size(28, 3, 1, "same").formula() == "(28 + 2·1 − 3)/1 + 1 = 28"
    assert shape_math.conv_size(27, 3, 2, "valid").formula() == "(27 + 2·0 − 3)/2 + 1 = 13"
    assert shape_math.conv_size(28, 3, 2, "valid").formula() == "⌊(28 + 2·0 − 3)/2⌋ + 1 = 13"
    assert shape_math.conv_size(28, 2, 1, "same").formula() == "(28 + (0+1) − 2)/1 + 1 = 28"
    assert shape_math.conv2d_params(3, 3, 1, 16).formula() == "(3·3·1 + 1)·16 = 160"
    assert shape_math.dense_params(6272, 512).formula() == "(6272 + 1)·512 = 3,211,776"
    # Keras' 'same' padding: half before (rounded down), the rest after
    same = shape_math.conv_size(2048, 3, 3, "same")
    assert (same.out, same.pad_before, same.pad_after) == (683, 0, 1)


def test_a_valid_window_as_wide_as_the_input_fits_and_gives_one_value():
    # (3 − 3)/1 + 1 = 1, as Keras gives
    assert shape_math.conv_size(3, 3, 1, "valid").out == 1
    model = _built((3, 3, 1), keras.layers.Conv2D(2, 3))
    assert tuple(model.layers[-1].output.shape)[1:] == shape_math.conv_layer((3, 3, 1), 3, 3, 2).output_shape


def test_same_padding_that_divides_exactly_is_written_without_floor_brackets():
    # out = ceil(28 / 2) = 14; Keras pads (14 − 1)·2 + 3 − 28 = 1: 0 before, 1 after; (28 + 1 − 3)/2 = 13 exactly
    assert shape_math.conv_size(28, 3, 2, "same").formula() == "(28 + (0+1) − 3)/2 + 1 = 14"


def test_bad_sizes_are_user_errors():
    with pytest.raises(UserError, match="does not fit"):
        shape_math.conv_size(4, 7, 1, "valid")
    with pytest.raises(UserError, match="valid or same"):
        shape_math.conv_size(4, 3, 1, "full")
    with pytest.raises(UserError, match="at least 1"):
        shape_math.conv_size(4, 3, 0, "valid")


def test_parse_shape_and_steps():
    assert shape_math.parse_shape("28x28x1") == (28, 28, 1)
    assert shape_math.parse_shape("32x32") == (32, 32, 1)
    assert shape_math.parse_step("conv:3x3x32", "same") == {
        "kind": "conv", "kernel_h": 3, "kernel_w": 3, "filters": 32, "stride": 1, "padding": "same"}
    assert shape_math.parse_step("conv:5x5x64/2:valid", "same")["stride"] == 2
    assert shape_math.parse_step("pool:2")["stride"] is None
    assert shape_math.parse_step("avgpool:3/2:same")["layer"] == "AveragePooling2D"
    assert shape_math.parse_step("dense:10") == {"kind": "dense", "units": 10}
    for bad in ("conv:3x3", "pool:", "conv:3x3x32/", "dens:3", "pool:2x3"):
        with pytest.raises(UserError, match="--then"):
            shape_math.parse_step(bad)
    for bad in ("28", "28x28x1x1", "axbxc", "0x28x1"):
        with pytest.raises(UserError, match="--input"):
            shape_math.parse_shape(bad)


def test_a_pool_step_pools_with_valid_padding_whatever_the_padding_default():
    assert shape_math.parse_step("pool:2", "same")["padding"] == "valid"
    # 7×7 through a same 1×1 Conv2D stays 7×7; 2×2 pooling, valid: ⌊(7 − 2)/2⌋ + 1 = 3 (same would give 4)
    layers = shape_math.conv_chain("7x7", "1", 1, "same", 1, ["pool:2"])
    model = _built((7, 7, 1), keras.layers.MaxPooling2D(2))
    assert layers[1].output_shape == tuple(model.layers[-1].output.shape)[1:] == (3, 3, 1)


def test_chain_matches_a_keras_model():
    steps = ["conv:3x3x32", "pool:2", "conv:5x5x64/2:valid", "avgpool:3/2:same", "flatten", "dense:512"]
    shape = (28, 28, 1)
    layers = [shape_math.conv_layer(shape, 3, 3, 16, 1, "same")]
    for text in steps:
        layers.append(shape_math.apply_step(layers[-1].output_shape, shape_math.parse_step(text, "same")))
    model = keras.Sequential([
        keras.Input(shape), keras.layers.Conv2D(16, 3, padding="same"), keras.layers.Conv2D(32, 3, padding="same"),
        keras.layers.MaxPooling2D(2), keras.layers.Conv2D(64, 5, strides=2), keras.layers.AveragePooling2D(
            3, 2, padding="same"), keras.layers.Flatten(), keras.layers.Dense(512)])
    for mine, theirs in zip(layers, model.layers, strict=True):
        assert mine.output_shape == tuple(theirs.output.shape)[1:]
        assert mine.params.total == theirs.count_params()


def test_convolve_matches_keras_conv2d_with_the_kernel_flipped():
    """kernel-demo's picture is what a one-filter Conv2D gives (scipy convolves, Keras cross-correlates)."""
    from cnnrun.teach.kernels import convolve

    rng = np.random.default_rng(1)
    gray = rng.random((11, 13))
    kernel = rng.random((3, 2))
    for padding in ("valid", "same"):
        for stride in (1, 2, 3):
            layer = keras.layers.Conv2D(1, kernel.shape, strides=stride, padding=padding, use_bias=False)
            model = _built((11, 13, 1), layer)
            layer.set_weights([kernel[::-1, ::-1, None, None]])
            expected = np.asarray(model(gray[None, :, :, None]))[0, :, :, 0]
            np.testing.assert_allclose(convolve(gray, kernel, stride, padding).output, expected, rtol=1e-5,
                                       atol=1e-5)


def test_inspect_arithmetic_column():
    from cnnrun.tasks.inspect import layer_arithmetic

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(16, 3, padding="same"),
                              keras.layers.MaxPooling2D(2), keras.layers.SeparableConv2D(8, 3, strides=2),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    rows = [layer_arithmetic(layer) for layer in model.layers]
    assert rows[0] == ("(28 + 2·1 − 3)/1 + 1 = 28", "(3·3·1 + 1)·16 = 160")
    assert rows[1] == ("(28 + 2·0 − 2)/2 + 1 = 14", "")
    assert rows[2] == ("⌊(14 + 2·0 − 3)/2⌋ + 1 = 6", "3·3·16·1 + 16·1·8 + 8 = 280")
    assert rows[3] == ("", "")
    assert rows[4] == ("", "(288 + 1)·10 = 2,890")


def test_inspect_arithmetic_works_out_rows_and_columns_of_a_non_square_kernel_apart():
    from cnnrun.tasks.inspect import layer_arithmetic

    model = _built((28, 28, 1), keras.layers.Conv2D(2, (3, 5)))
    assert tuple(model.layers[-1].output.shape)[1:3] == (26, 24)
    # rows: 28 − 3 + 1 = 26; columns: 28 − 5 + 1 = 24
    assert layer_arithmetic(model.layers[-1])[0] == "rows: (28 + 2·0 − 3)/1 + 1 = 26; cols: (28 + 2·0 − 5)/1 + 1 = 24"


def test_inspect_gives_no_parameter_formula_for_a_grouped_convolution():
    from cnnrun.tasks.inspect import layer_arithmetic

    layer = _built((8, 8, 4), keras.layers.Conv2D(8, 3, groups=2)).layers[-1]
    # two groups: each kernel sees 4 / 2 = 2 channels, 3·3·2·8 + 8 = 152, not (3·3·4 + 1)·8 = 296
    assert layer.count_params() == 152
    assert layer_arithmetic(layer) == ("(8 + 2·0 − 3)/1 + 1 = 6", "")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnrun", *args], capture_output=True, text=True, timeout=60)


def test_conv_shape_answers_the_quiz():
    result = _cli("conv-shape", "--input", "28x28x1", "--kernel", "3", "--stride", "1", "--padding", "same",
                  "--filters", "16", "--then", "pool:2", "--then", "conv:3x3x32")
    assert result.returncode == 0, result.stderr
    assert "(28, 28, 16)" in result.stdout
    assert "(3·3·1 + 1)·16 = 160" in result.stdout
    assert "(14, 14, 32)" in result.stdout
    assert "total params: 4,800" in result.stdout


@pytest.mark.parametrize("args, option", [
    (["--input", "28by28"], "--input"),
    (["--input", "28x28x1", "--then", "pool"], "--then"),
    (["--input", "28x28x1", "--kernel", "3x"], "--kernel"),
    (["--input", "4x4x1", "--kernel", "7"], "--kernel"),
])
def test_conv_shape_bad_syntax_is_one_line_and_exit_2(args, option):
    result = _cli("conv-shape", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert option in result.stderr


def test_conv_chain_works_out_each_layer_by_the_course_formula():
    layers = shape_math.conv_chain("28x28", "3x5", 2, "same", 8, ["pool:2", "flatten", "dense:10"])
    # same padding: ceil(28 / 2) = 14 rows and columns; 2×2 pooling halves them; 7·7·8 = 392 values
    assert [layer.output_shape for layer in layers] == [(14, 14, 8), (7, 7, 8), (392,), (10,)]
    assert [layer.params.total for layer in layers] == [(3 * 5 * 1 + 1) * 8, 0, 0, (392 + 1) * 10]
    assert layers[0].input_shape == (28, 28, 1)
    lines = shape_math.chain_lines(layers)
    assert lines[1] == "#0 Conv2D(8, 3×5, strides=2, same) -> (14, 14, 8)"
    assert "   params: (3·5·1 + 1)·8 = 128" in lines


@pytest.mark.parametrize("text, size", [("3", (3, 3)), ("3x5", (3, 5)), (" 7 × 2 ", (7, 2))])
def test_kernel_sizes_read_as_height_by_width(text, size):
    assert shape_math.parse_kernel_size(text) == size


@pytest.mark.parametrize("text", ["3x", "x3", "0", "3x3x3", "-1", "²", "three"])
def test_a_malformed_kernel_size_names_the_option(text):
    with pytest.raises(UserError, match=f"--kernel: '{text}' is not a kernel size"):
        shape_math.parse_kernel_size(text)


def test_one_padding_check_for_every_command():
    assert shape_math.check_padding("same") == "same"
    with pytest.raises(UserError, match="--padding: 'full' is not a padding; use valid or same"):
        shape_math.check_padding("full", "--padding")
    with pytest.raises(UserError, match="padding: 'full'"):
        shape_math.conv_size(28, 3, 1, "full")
