"""The arithmetic of convolution and pooling: output sizes, Keras' padding and parameter counts, with the numbers.

Pure Python (no Keras, no NumPy), so `cnnrun inspect`, `cnnrun conv-shape` and `cnnrun kernel-demo` share one
source of truth, and a test checks it against real Keras layers. Sizes follow Keras' rules exactly:

- `padding="valid"`: no padding, `out = floor((n - f) / s) + 1`;
- `padding="same"`: `out = ceil(n / s)`; Keras pads `max((out - 1)·s + f - n, 0)` in all, half of it (rounded
  down) before and the rest after.

Both are the course's formula `(n + 2p − f)/s + 1` (rounded down), with `2p` the padding Keras uses.

Example:
>>> size = conv_size(28, kernel=3, stride=1, padding="same")
>>> size.out, size.formula()
(28, '(28 + 2·1 − 3)/1 + 1 = 28')
>>> conv2d_params(3, 3, 1, 16).formula()
'(3·3·1 + 1)·16 = 160'
"""

from dataclasses import dataclass

from cnnrun.errors import UserError

PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class ConvSize:
    """One spatial axis through a convolution or pooling window: input `n`, window `f`, stride `s`, padding.

    `pad_before + pad_after` is the `2p` of the course's formula; `out` is Keras' output size.
    """

    n: int
    f: int
    s: int
    padding: str
    pad_before: int
    pad_after: int
    out: int

    @property
    def total_padding(self) -> int:
        return self.pad_before + self.pad_after

    def formula(self) -> str:
        """The course's formula with this axis' numbers, e.g. `(28 + 2·1 − 3)/1 + 1 = 28`.

        When the division is not exact the result is rounded down, written `⌊(27 + 2·0 − 3)/2⌋ + 1 = 13`;
        when Keras pads unevenly, the two sides are written out: `(28 + (0+1) − 2)/2 + 1 = 14`.
        """
        if self.pad_before == self.pad_after:
            pad = f"2·{self.pad_before}"
        else:
            pad = f"({self.pad_before}+{self.pad_after})"
        inner = f"({self.n} + {pad} − {self.f})/{self.s}"
        if (self.n + self.total_padding - self.f) % self.s:
            inner = f"⌊{inner}⌋"
        return f"{inner} + 1 = {self.out}"


def _positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"must be a whole number of at least 1, got {value!r}", where=what)
    return value


def conv_size(n: int, kernel: int, stride: int = 1, padding: str = "valid", dilation: int = 1) -> ConvSize:
    """Work out one axis of a Conv2D / pooling output the way Keras does.

    Args:
        n: the input's size along the axis (rows or columns).
        kernel: the window's size along the axis (`kernel_size` or `pool_size`).
        stride: the step between windows (`strides`). Defaults to 1.
        padding: `"valid"` (no padding, the default) or `"same"` (Keras pads so that `out = ceil(n / stride)`).
        dilation: `dilation_rate`; the window then covers `dilation·(kernel − 1) + 1` pixels. Defaults to 1.

    Returns:
        A `ConvSize` whose `out` equals the Keras layer's output size and whose `formula()` shows the numbers.

    Raises:
        UserError: a size is not a positive whole number, the padding is unknown, or the window is larger than
            the (unpadded) input with `"valid"` padding.

    Example:
    >>> conv_size(28, 3, 1, "same").formula()
    '(28 + 2·1 − 3)/1 + 1 = 28'
    """
    _positive(n, "input size")
    _positive(kernel, "kernel size")
    _positive(stride, "stride")
    _positive(dilation, "dilation")
    check_padding(padding)
    f = dilation * (kernel - 1) + 1
    if padding == "valid":
        if f > n:
            raise UserError(f"a {f}-wide window does not fit in an input of size {n} with padding 'valid'",
                            fix="use a smaller kernel or padding 'same'")
        return ConvSize(n, f, stride, padding, 0, 0, (n - f) // stride + 1)
    out = -(-n // stride)
    total = max((out - 1) * stride + f - n, 0)
    return ConvSize(n, f, stride, padding, total // 2, total - total // 2, out)


@dataclass(frozen=True)
class ParamCount:
    """A layer's parameter count and how it is made up, e.g. `(3·3·1 + 1)·16 = 160`."""

    total: int
    explained: str

    def formula(self) -> str:
        """`(3·3·1 + 1)·16 = 160`, or just `0` for a layer without weights."""
        return f"{self.explained} = {self.total:,}" if self.total else "0"


def conv2d_params(kernel_h: int, kernel_w: int, in_channels: int, filters: int, use_bias: bool = True) -> ParamCount:
    """Parameters of a Conv2D layer: one `kernel_h·kernel_w·in_channels` kernel (plus a bias) per filter.

    Args:
        kernel_h: the kernel's height.
        kernel_w: the kernel's width.
        in_channels: channels of the layer's input (1 for gray, 3 for RGB, the filters of the layer before).
        filters: how many kernels (= output channels).
        use_bias: whether each filter has a bias. Defaults to True, as in Keras.

    Example:
    >>> conv2d_params(3, 3, 1, 16).formula()
    '(3·3·1 + 1)·16 = 160'
    """
    weights = kernel_h * kernel_w * in_channels
    if use_bias:
        return ParamCount((weights + 1) * filters, f"({kernel_h}·{kernel_w}·{in_channels} + 1)·{filters}")
    return ParamCount(weights * filters, f"{kernel_h}·{kernel_w}·{in_channels}·{filters}")


def dense_params(inputs: int, units: int, use_bias: bool = True) -> ParamCount:
    """Parameters of a Dense layer: one weight per input and unit, plus a bias per unit.

    Example:
    >>> dense_params(6272, 512).formula()
    '(6272 + 1)·512 = 3,211,776'
    """
    if use_bias:
        return ParamCount((inputs + 1) * units, f"({inputs} + 1)·{units}")
    return ParamCount(inputs * units, f"{inputs}·{units}")


def depthwise_params(kernel_h: int, kernel_w: int, in_channels: int, depth_multiplier: int = 1,
                     use_bias: bool = True) -> ParamCount:
    """Parameters of a DepthwiseConv2D layer: `depth_multiplier` kernels per input channel (plus biases).

    Example:
    >>> depthwise_params(3, 3, 32).formula()
    '(3·3 + 1)·32·1 = 320'
    """
    outputs = in_channels * depth_multiplier
    if use_bias:
        return ParamCount((kernel_h * kernel_w + 1) * outputs,
                          f"({kernel_h}·{kernel_w} + 1)·{in_channels}·{depth_multiplier}")
    return ParamCount(kernel_h * kernel_w * outputs, f"{kernel_h}·{kernel_w}·{in_channels}·{depth_multiplier}")


def separable_params(kernel_h: int, kernel_w: int, in_channels: int, filters: int, depth_multiplier: int = 1,
                     use_bias: bool = True) -> ParamCount:
    """Parameters of a SeparableConv2D layer: a depthwise step, then a 1×1 pointwise convolution (plus biases).

    Example:
    >>> separable_params(3, 3, 32, 64).formula()
    '3·3·32·1 + 32·1·64 + 64 = 2,400'
    """
    depthwise = kernel_h * kernel_w * in_channels * depth_multiplier
    pointwise = in_channels * depth_multiplier * filters
    parts = f"{kernel_h}·{kernel_w}·{in_channels}·{depth_multiplier} + {in_channels}·{depth_multiplier}·{filters}"
    if use_bias:
        return ParamCount(depthwise + pointwise + filters, f"{parts} + {filters}")
    return ParamCount(depthwise + pointwise, parts)


def axes_formula(rows: ConvSize, cols: ConvSize) -> str:
    """One formula when both axes read the same, else `rows: … ; cols: …`."""
    if (rows.n, rows.f, rows.s, rows.pad_before, rows.pad_after) == (cols.n, cols.f, cols.s, cols.pad_before,
                                                                    cols.pad_after):
        return rows.formula()
    return f"rows: {rows.formula()}; cols: {cols.formula()}"


def padding_note(rows: ConvSize, cols: ConvSize) -> str:
    """In words, the zero padding Keras adds with `padding="same"` (empty for `"valid"`)."""
    if rows.padding != "same":
        return ""
    if rows.total_padding == cols.total_padding == 0:
        return "Keras pads nothing here"
    return (f"Keras pads {rows.pad_before} row(s) above, {rows.pad_after} below, "
            f"{cols.pad_before} column(s) left, {cols.pad_after} right")


@dataclass(frozen=True)
class LayerMath:
    """One layer of a `conv-shape` chain: what it is, its shapes, the size formula and the parameter count."""

    layer: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    size: str
    params: ParamCount
    note: str = ""


def conv_layer(shape: tuple[int, ...], kernel_h: int, kernel_w: int, filters: int, stride: int = 1,
               padding: str = "valid") -> LayerMath:
    """A Conv2D layer (channels last, with bias) applied to `shape` = `(height, width, channels)`.

    Example:
    >>> conv_layer((28, 28, 1), 3, 3, 16, 1, "same").output_shape
    (28, 28, 16)
    """
    h, w, c = _image_shape(shape, "Conv2D")
    _positive(filters, "filters")
    rows, cols = conv_size(h, kernel_h, stride, padding), conv_size(w, kernel_w, stride, padding)
    return LayerMath(f"Conv2D({filters}, {kernel_h}×{kernel_w}, strides={stride}, {padding})", shape,
                     (rows.out, cols.out, filters), axes_formula(rows, cols),
                     conv2d_params(kernel_h, kernel_w, c, filters), padding_note(rows, cols))


def pool_layer(shape: tuple[int, ...], size: int, stride: int | None = None, padding: str = "valid",
               kind: str = "MaxPooling2D") -> LayerMath:
    """A pooling layer (no parameters); `stride` defaults to `size`, as in Keras.

    Example:
    >>> pool_layer((28, 28, 16), 2).output_shape
    (14, 14, 16)
    """
    h, w, c = _image_shape(shape, kind)
    stride = size if stride is None else stride
    rows, cols = conv_size(h, size, stride, padding), conv_size(w, size, stride, padding)
    return LayerMath(f"{kind}({size}×{size}, strides={stride}, {padding})", shape, (rows.out, cols.out, c),
                     axes_formula(rows, cols), ParamCount(0, "no weights"), padding_note(rows, cols))


def flatten_layer(shape: tuple[int, ...]) -> LayerMath:
    """Flatten: every value of the input in one row."""
    total = 1
    for d in shape:
        total *= d
    return LayerMath("Flatten", shape, (total,), "·".join(map(str, shape)) + f" = {total:,}",
                     ParamCount(0, "no weights"))


def dense_layer(shape: tuple[int, ...], units: int) -> LayerMath:
    """Dense on the last axis of `shape` (as Keras does; add a Flatten first for one row)."""
    _positive(units, "units")
    return LayerMath(f"Dense({units})", shape, (*shape[:-1], units), "", dense_params(shape[-1], units))


def _image_shape(shape: tuple[int, ...], layer: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise UserError(f"needs a (height, width, channels) input, got {shape} (after a Flatten?)", where=layer)
    return shape[0], shape[1], shape[2]


def check_padding(padding: str, option: str = "padding") -> str:
    """`padding` if it is one of Keras' two paddings (`valid`, `same`), else a UserError naming `option`."""
    if padding not in PADDINGS:
        raise UserError(f"'{padding}' is not a padding", where=option, fix="use valid or same")
    return padding


def parse_dims(text: str, count: tuple[int, ...], option: str, example: str) -> tuple[int, ...]:
    """Read `HxW`-style sizes (`28x28x1`, `3x5`, `3`; `×` works too) as positive whole numbers.

    Args:
        text: what the user wrote.
        count: how many numbers may be given, e.g. `(1, 2)` for a kernel size.
        option: the option's name, for the error message.
        example: what it should be, then what to write (`a kernel size; write 3 or 3x3`), for the error message.

    Raises:
        UserError: not that many positive whole numbers separated by `x`.

    Example:
    >>> parse_dims("3x5", (1, 2), "--kernel", "3 or 3x3")
    (3, 5)
    """
    parts = [p.strip() for p in text.strip().lower().replace("×", "x").split("x")]
    if len(parts) not in count or not all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        wanted, _, fix = example.partition("; ")
        raise UserError(f"'{text}' is not {wanted}", where=option, fix=fix)
    return tuple(int(p) for p in parts)


def parse_shape(text: str, option: str = "--input") -> tuple[int, int, int]:
    """`28x28x1` (or `28x28`, one channel) -> `(28, 28, 1)`."""
    dims = parse_dims(text, (2, 3), option, "an input shape; write HEIGHTxWIDTHxCHANNELS, e.g. 28x28x1")
    h, w, c = dims if len(dims) == 3 else (*dims, 1)
    return h, w, c


def parse_kernel_size(text: str, option: str = "--kernel") -> tuple[int, int]:
    """`3` -> `(3, 3)`, `3x5` -> `(3, 5)` (height x width), as Conv2D's `kernel_size`."""
    dims = parse_dims(text, (1, 2), option, "a kernel size; write 3 or 3x3 (height x width)")
    return dims[0], dims[-1]


STEP_SYNTAX = ("conv:KHxKWxFILTERS (optionally /STRIDE and :same or :valid), pool:SIZE (optionally /STRIDE and "
               ":same or :valid; also maxpool:, avgpool:), flatten or dense:UNITS")


def parse_step(text: str, default_padding: str = "valid", option: str = "--then") -> dict:
    """One `--then` step as keyword arguments for `apply_step`.

    Syntax: `conv:3x3x32` (3×3 kernels, 32 filters, stride 1, the `--padding` default), `conv:5x5x64/2:valid`,
    `pool:2` (2×2 max pooling, stride 2, valid), `pool:3/2:same`, `avgpool:2`, `flatten`, `dense:128`.
    """
    import re

    spec = text.strip().lower().replace("×", "x").replace(" ", "")
    bad = UserError(f"'{text}' is not a step", where=option,
                    fix=f"write {STEP_SYNTAX}, e.g. --then pool:2 --then conv:3x3x32")
    if spec == "flatten":
        return {"kind": "flatten"}
    if m := re.fullmatch(r"dense:(\d+)", spec):
        return {"kind": "dense", "units": int(m[1])}
    if m := re.fullmatch(r"conv:(\d+)x(\d+)x(\d+)(?:/(\d+))?(?::(same|valid))?", spec):
        return {"kind": "conv", "kernel_h": int(m[1]), "kernel_w": int(m[2]), "filters": int(m[3]),
                "stride": int(m[4] or 1), "padding": m[5] or default_padding}
    if m := re.fullmatch(r"(max|avg|)pool:(\d+)(?:x(\d+))?(?:/(\d+))?(?::(same|valid))?", spec):
        if m[3] and m[3] != m[2]:
            raise UserError("only square pooling windows here, e.g. pool:2 or pool:2x2", where=f"{option}: '{text}'")
        return {"kind": "pool", "size": int(m[2]), "stride": int(m[4]) if m[4] else None,
                "padding": m[5] or "valid", "layer": "AveragePooling2D" if m[1] == "avg" else "MaxPooling2D"}
    raise bad


def apply_step(shape: tuple[int, ...], step: dict) -> LayerMath:
    """The layer that a `parse_step` result describes, applied to `shape`."""
    kind = step["kind"]
    if kind == "conv":
        return conv_layer(shape, step["kernel_h"], step["kernel_w"], step["filters"], step["stride"],
                          step["padding"])
    if kind == "pool":
        return pool_layer(shape, step["size"], step["stride"], step["padding"], step["layer"])
    if kind == "flatten":
        return flatten_layer(shape)
    return dense_layer(shape, step["units"])


def conv_chain(input_: str, kernel: str = "3", stride: int = 1, padding: str = "valid", filters: int = 1,
               then: list[str] | None = None) -> list[LayerMath]:
    """The layers of `cnnrun conv-shape`: a first Conv2D, then the `--then` steps, each with its arithmetic.

    Args:
        input_: the input shape, `HxWxC` (or `HxW` for one channel).
        kernel: the first Conv2D's kernel size, `3` or `3x5`.
        stride: the first Conv2D's stride.
        padding: `valid` or `same`: the first Conv2D's padding and the default of later `conv:` steps.
        filters: the first Conv2D's number of filters.
        then: further steps in `parse_step`'s syntax (`pool:2`, `conv:3x3x32`, `flatten`, `dense:10`).

    Raises:
        UserError: a shape, size or step is malformed, or a window does not fit; the message names the option.

    Example:
    >>> [layer.output_shape for layer in conv_chain("28x28x1", "3", 1, "same", 16, ["pool:2"])]
    [(28, 28, 16), (14, 14, 16)]
    """
    shape = parse_shape(input_, "--input")
    kh, kw = parse_kernel_size(kernel, "--kernel")
    check_padding(padding, "--padding")
    steps = [("--kernel/--stride/--filters", {"kind": "conv", "kernel_h": kh, "kernel_w": kw, "filters": filters,
                                              "stride": stride, "padding": padding})]
    steps += [(f"--then {text}", parse_step(text, padding, "--then")) for text in then or []]
    layers = []
    for option, step in steps:
        try:
            layers.append(apply_step(shape, step))
        except UserError as e:
            raise e.at(option) from e
        shape = layers[-1].output_shape
    return layers


def chain_lines(layers: list[LayerMath]) -> list[str]:
    """`conv_chain`'s layers as the lines `conv-shape` prints: shapes, the size formula and the parameters."""
    lines = [f"Input: {layers[0].input_shape}. Output size = (n + 2p − f)/s + 1, rounded down; "
             "Conv2D params = (kh·kw·channels + 1)·filters"]
    for i, layer in enumerate(layers):
        lines.append(f"#{i} {layer.layer} -> {layer.output_shape}")
        if layer.size:
            lines.append(f"   size:   {layer.size}" + (f"   ({layer.note})" if layer.note else ""))
        lines.append(f"   params: {layer.params.formula()}")
    return lines
