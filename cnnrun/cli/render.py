"""What the commands found, shown to a person: the one place that turns report objects and errors into text.

The task functions below `cli/` compute and write files and return small report objects (`Evaluation`,
`Inspection`, `Explanation`, `Filters`, `LayerMaps`, `DataShow`, `Lesson`); they print nothing. Each `show_*`
here prints one of them with Rich on standard output; warnings go to standard error as `warning: …` lines, and a
user's mistake as the one line `error: WHERE: WHAT; FIX` (`error_text`).
"""

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cnnrun.errors import UserError
from cnnrun.report import (
    Notice,
    Rows,
    Told,
    console,
    error_console,
    format_metrics,
    header_panel,
    results_table,
    show_warnings,
)


def error_text(error: UserError) -> Text:
    """`error: WHERE: WHAT; FIX` as one line of Rich text (the place in bold); its plain text is `error: ` + str."""
    text = Text("error:", style="bold red")
    text.append(" ")
    if error.where:
        text.append(error.where, style="bold")
        text.append(": ")
    text.append(error.what)
    if error.fix:
        text.append(f"; {error.fix}")
    return text


def show_error(error: UserError) -> None:
    """Write a user's mistake to standard error in one line, never wrapped."""
    error_console.print(error_text(error), highlight=False, emoji=False, soft_wrap=True)


def say(line: str) -> None:
    """Print one line as it is: no markup, no highlighting, no wrapping of long formulas or paths."""
    console.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)


def tell(told: Told) -> None:
    """What a long task (a Trainer, a sweep, `--seeds`) tells as it goes (`cnnrun.report.Say`): a line as it is,
    `Rows` as the header panel or a results table, a `Notice` as a warning on standard error or the yellow
    `Interrupted.` line."""
    if isinstance(told, Rows):
        if told.kind == "panel":
            header_panel(dict(told.rows), title=told.title)
        else:
            results_table(told.title, list(told.rows))
    elif isinstance(told, Notice):
        if told.kind == "warning":
            show_warnings([told.text])
        else:
            console.print(f"[yellow]Interrupted.[/] {escape(told.text)}", highlight=False)
    else:
        say(told)


def show_evaluation(evaluation) -> None:
    """`cnnrun evaluate`: the warnings, the per-class table, then the metrics and where they were written."""
    show_warnings(evaluation.warnings)
    kind = next(iter(evaluation.per_class[0]))  # class; label (multi-label); target (regression)
    table = Table(title=f"per {kind} ({evaluation.split})", title_justify="left")
    for column in evaluation.per_class[0]:
        table.add_column(column, justify="left" if column == kind else "right")
    for row in evaluation.per_class:
        table.add_row(*(escape(str(v)) for v in row.values()))
    console.print(table)
    results_table(evaluation.title, [("metrics", format_metrics(evaluation.metrics)),
                                     ("examples", f"{evaluation.examples:,}"), ("wrote", evaluation.pattern)])


def show_inspection(inspection) -> None:
    """`cnnrun inspect`: a row per layer with its arithmetic, the parameter counts, init_from and phases."""
    table = Table(title=escape(inspection.title), title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer")
    table.add_column("type", style="cyan")
    if inspection.graph:
        table.add_column("inputs")
    table.add_column("size arithmetic")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    table.add_column("params arithmetic")
    if inspection.init_from is not None:
        table.add_column("init_from")
    for row in inspection.layers:
        cells = [str(row.index), row.name, row.kind, *([row.inputs or ""] if inspection.graph else []), row.size,
                 row.output_shape, f"{row.params:,}", row.params_formula,
                 *([row.init_from or ""] if inspection.init_from is not None else [])]
        table.add_row(*map(escape, cells))
    console.print(table)
    for line in inspection.backbones:
        console.print(line)
    console.print(f"Total params: [bold]{inspection.total:,}[/] (trainable {inspection.trainable:,}, "
                  f"non-trainable {inspection.non_trainable:,})")
    if inspection.init_from is not None:
        say(f"init from: {inspection.init_from}")
    if inspection.phases is not None:
        say(f"phases: {inspection.phases}")
    if inspection.drawn is not None:
        console.print(f"Drawn: {escape(str(inspection.drawn))}")


def show_explanation(explanation) -> None:
    """`cnnrun explain`: a row per picture explained and the files written; then the unreadable ones, as an error.

    Raises:
        UserError: some inputs were not readable pictures (after the others are shown).
    """
    if explanation.pictures:
        table = Table(title=escape(f"{explanation.what}: {explanation.folder}"), title_justify="left")
        for column in ("file", "predicted", "explained", "true", "written"):
            table.add_column(column)
        for picture in explanation.pictures:
            table.add_row(*map(escape, (str(picture.file), f"{picture.predicted} {picture.probability:.3f}",
                                        picture.explained, picture.true or "", picture.written.name)))
        console.print(table)
        grid, numbers = explanation.files
        say(f"wrote {len(explanation.pictures)} pictures, {grid.name} and {numbers.name} into {explanation.folder}")
    problem = explanation.problem()
    if problem is not None:
        raise problem


def show_filters(filters) -> None:
    """`cnnrun filters`: the layer, its kernels' shape, how they were drawn, and the file."""
    height, width, inputs, outputs = filters.shape
    say(f"{filters.layer} ({filters.kind}): {outputs} kernels of {height}×{width}×{inputs}, drawn {filters.how}")
    say(f"wrote {filters.file}")


def show_activations(grids) -> None:
    """`cnnrun activations`: a line per layer: its output shape and the grid written."""
    for grid in grids:
        say(f"{grid.layer} ({grid.kind}): output shape {grid.shape} -> {grid.file}")


def show_data(shown) -> None:
    """`cnnrun data show`: the warnings, the images per class and split, and the figures written."""
    show_warnings(shown.warnings)
    table = Table(title=escape(shown.title), title_justify="left")
    table.add_column("class")
    for name in shown.splits:
        table.add_column(name, justify="right")
    for class_name, counts in shown.counts:
        table.add_row(escape(class_name), *(f"{count:,}" for count in counts))
    table.add_row("all", *(f"{total:,}" for total in shown.totals), style="bold")
    console.print(table)
    say(f"wrote {', '.join(p.name for p in shown.files)} into {shown.folder}")


def show_lesson(lesson, last: str | None = None) -> None:
    """A teaching command's lines, then `last` (default: `Figure: FILE`, the figure written)."""
    for line in lesson.lines:
        say(line)
    say(last if last is not None else f"Figure: {lesson.figure}")
