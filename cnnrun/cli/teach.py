"""The teaching commands: kernel-demo, image-info, conv-shape, augment-preview, and `data check`."""

from pathlib import Path
from typing import Annotated

import typer

from cnnrun.cli.common import ImageArg, OutOption, Padding, Pool, app, data_app, quiet_imports


@app.command("kernel-demo")
def kernel_demo(
    image: Annotated[Path | None, typer.Argument(help="A PNG or JPEG picture (default: scikit-image's astronaut "
                                                 "photo).", show_default=False)] = None,
    kernel: Annotated[list[str] | None, typer.Option("--kernel", help="A named kernel: vertical, horizontal, "
                      "sobel_x, sobel_y, laplacian, sharpen, box_blur, gaussian, emboss, outline, identity. "
                      "Repeatable (default: vertical and horizontal).", show_default=False)] = None,
    kernel_values: Annotated[list[str] | None, typer.Option("--kernel-values", help='Your own kernel as a nested '
                             'list, e.g. "[[0,-1,0],[-1,5,-1],[0,-1,0]]". Repeatable.', show_default=False)] = None,
    padding: Annotated[Padding, typer.Option("--padding", help="As in Conv2D: valid (no padding) or same.")]
    = Padding.valid,
    stride: Annotated[int, typer.Option("--stride", min=1, help="Step between windows, as Conv2D's strides.")] = 1,
    pool: Annotated[list[Pool] | None, typer.Option("--pool", help="Add the picture after max or average "
                    "pooling. Repeatable (--pool max --pool average).", show_default=False)] = None,
    pool_size: Annotated[int, typer.Option("--pool-size", min=1, help="The pooling window (and stride).")] = 2,
    out: OutOption = None,
) -> None:
    """Convolve a picture with edge (and other) kernels and write the figure: original, gray, one panel per kernel.

    Prints the shapes and, per kernel, the output-size formula (n + 2p − f)/s + 1 with the numbers.

    Example: cnnrun kernel-demo cat.jpg --kernel sobel_x --kernel sharpen --padding same --stride 2 --pool max
    """
    from cnnrun.cli.render import show_lesson
    from cnnrun.teach.kernels import kernel_demo as run_demo

    show_lesson(run_demo(image, kernel, kernel_values, padding.value, stride, [p.value for p in pool or []],
                         pool_size, out))


@app.command("image-info")
def image_info(
    image: ImageArg,
    crop: Annotated[str | None, typer.Option("--crop", help="Zoom on rows y0:y1 and columns x0:x1, "
                                             "e.g. 100:164,200:264.", show_default=False)] = None,
    out: OutOption = None,
) -> None:
    """Print a picture's shape, dtype, value range and channels; write a figure with one panel per channel.

    Example: cnnrun image-info cat.png --crop 100:132,200:232
    """
    from cnnrun.cli.render import show_lesson
    from cnnrun.teach.channels import image_info as run_info

    show_lesson(run_info(image, crop, out))


@app.command("conv-shape")
def conv_shape(
    input_: Annotated[str, typer.Option("--input", help="The input, HEIGHTxWIDTHxCHANNELS (e.g. 28x28x1).",
                                        show_default=False)],
    kernel: Annotated[str, typer.Option("--kernel", help="The first Conv2D's kernel size: 3 or 3x5.")] = "3",
    stride: Annotated[int, typer.Option("--stride", help="The first Conv2D's stride.")] = 1,
    padding: Annotated[Padding, typer.Option("--padding", help="The first Conv2D's padding, and the default of "
                                             "later conv steps.")] = Padding.valid,
    filters: Annotated[int, typer.Option("--filters", help="The first Conv2D's number of filters.")] = 1,
    then: Annotated[list[str] | None, typer.Option("--then", help="A further layer, repeatable: "
                    "conv:KHxKWxFILTERS, pool:SIZE (maxpool:, avgpool:), each optionally followed by /STRIDE and "
                    ":same or :valid (conv:5x5x64/2:valid, pool:3/2); flatten; dense:UNITS.",
                    show_default=False)] = None,
) -> None:
    """Work out a Conv2D's output shape and parameters (and those of the layers after it), with the numbers.

    Example: cnnrun conv-shape --input 28x28x1 --kernel 3 --padding same --filters 16 --then pool:2 --then conv:3x3x32
    """
    from cnnrun.cli.render import say
    from cnnrun.report import console
    from cnnrun.teach.shape_math import chain_lines, conv_chain

    layers = conv_chain(input_, kernel, stride, padding.value, filters, then)
    for line in chain_lines(layers):
        say(line)
    total = sum(layer.params.total for layer in layers)
    console.print(f"Output shape: [bold]{layers[-1].output_shape}[/]; total params: [bold]{total:,}[/]")


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="An image folder (train/ validation/ test/ of class folders, or class "
                                         "folders) or a CSV table of picture paths and labels.", show_default=False)],
    path_column: Annotated[str, typer.Option("--path-column", help="A table's column of picture paths.")] = "path",
    label_column: Annotated[str, typer.Option("--label-column", help="A table's column of labels.")] = "label",
    split_column: Annotated[str, typer.Option("--split-column", help="A table's column of splits (train, "
                            "validation, test), used when the table has it.")] = "split",
    classes: Annotated[str | None, typer.Option("--classes", help="A table's labels, comma-separated: a row with "
                       "another label is a problem (a typo such as Cat for cat).", show_default=False)] = None,
    label_separator: Annotated[str | None, typer.Option("--label-separator", help="A table of several labels a "
                               "picture (label_mode: multi_label): what separates them in the label column, e.g. "
                               "';'. Each label is then checked (none empty; each in --classes).",
                               show_default=False)] = None,
    targets: Annotated[str | None, typer.Option("--targets", help="A table of numbers a picture (label_mode: "
                       "regression): its columns of numbers, comma-separated, checked instead of the label column "
                       "(each present; every cell a number).", show_default=False)] = None,
) -> None:
    """Decode every picture of an image folder or a CSV table; print pictures, sizes and problems per split and
    class.

    A table's problems (a column missing, a missing or undecodable file, an empty label, a label not in --classes,
    a split value other than train, validation or test, a file listed twice) are listed each with its line.
    Exit code 0 when every picture decodes and the table has no problem, 1 when there are some (each is listed),
    2 when PATH is neither an image folder nor a readable CSV file.

    Example: cnnrun data check data/cats_and_dogs; cnnrun data check data/pets.csv --label-column breed;
    cnnrun data check tags.csv --label-separator ';' --classes cat,dog,animal;
    cnnrun data check angles.csv --targets angle
    """
    if path.is_file() or path.suffix.lower() == ".csv":
        from cnnrun.cli.render_tasks import show_table_check
        from cnnrun.data.csv_table import check_table

        wanted = [name.strip() for name in classes.split(",") if name.strip()] if classes is not None else None
        columns = [name.strip() for name in targets.split(",") if name.strip()] if targets else None
        table = check_table(path, None, path_column, label_column, split_column, wanted, label_separator or None,
                            columns)
        show_table_check(table)
        if table.line_problems():
            raise typer.Exit(1)
        return
    from cnnrun.cli.render_tasks import show_folder_check
    from cnnrun.data.check import check_image_folder

    report = check_image_folder(path)
    show_folder_check(report)
    if report.bad_files:
        raise typer.Exit(1)


@app.command("augment-preview")
def augment_preview(
    image: ImageArg,
    config: Annotated[Path | None, typer.Option("--config", help="Use this experiment's `augmentation:` section "
                      "(default: the course's rotation 40, shifts 0.2, zoom 0.2, horizontal flip, brightness "
                      "[0.4, 1.5]).", show_default=False)] = None,
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many augmented versions.")] = 8,
    out: Annotated[Path | None, typer.Option("--out", help="The folder the pictures go to (default: "
                   "<image stem>_augmented in the current folder).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the augmentation: the same seed, the same pictures.")]
    = 0,
) -> None:
    """Write N augmented versions of a picture (PNG files) and a grid of the original beside them.

    Example: cnnrun augment-preview cat.jpg -n 8 --config configs/cats_vs_dogs.yaml
    """
    from cnnrun.cli.render import show_lesson
    from cnnrun.teach.augment import augment_preview as run_preview

    quiet_imports()
    lesson = run_preview(image, config, count, out, seed)
    show_lesson(lesson, f"wrote {count} augmented pictures and {lesson.figure}")

