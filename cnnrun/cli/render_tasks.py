"""What the commands about runs and data found, shown to a person: `data check`, `predict`, `export`,
`train --seeds`. Like `render`, the one place these report objects become text.
"""

from rich.markup import escape
from rich.table import Table

from cnnrun.data.check import size_summary
from cnnrun.report import console, results_table
from cnnrun.tasks.compare import shown


def show_predictions(predictions) -> None:
    """`cnnrun predict`: a row per input (the top class, its probability, the others), then the CSV written."""
    if any("labels" in r for r in predictions.results):
        return _show_label_predictions(predictions)
    if any("numbers" in r for r in predictions.results):
        return _show_number_predictions(predictions)
    table = Table(title=predictions.title, title_justify="left")
    table.add_column("file")
    table.add_column("class", style="bold")
    table.add_column("probability", justify="right")
    table.add_column("others")
    for r in predictions.results:
        if "error" in r:
            table.add_row(r["file"], "[red]—[/]", "", f"[red]{r['error']}[/]")
        else:
            (name, p), rest = r["top"][0], r["top"][1:]
            table.add_row(r["file"], name, f"{p:.3f}", ", ".join(f"{n} {q:.3f}" for n, q in rest))
    console.print(table)
    if predictions.output:
        console.print(f"wrote {predictions.output}")


def _show_number_predictions(predictions) -> None:
    """A regression run's `cnnrun predict`: a row per input, one column a target."""
    names = next(name for r in predictions.results if "numbers" in r for name in [[n for n, _ in r["numbers"]]])
    table = Table(title=predictions.title, title_justify="left")
    table.add_column("file")
    for name in names:
        table.add_column(escape(name), justify="right", style="bold")
    for r in predictions.results:
        table.add_row(r["file"], *([f"[red]{r['error']}[/]"] + [""] * (len(names) - 1) if "error" in r
                                   else [f"{value:.4g}" for _, value in r["numbers"]]))
    console.print(table)
    if predictions.output:
        console.print(f"wrote {predictions.output}")


def _show_label_predictions(predictions) -> None:
    """A multi-label run's `cnnrun predict`: a row per input, the labels above their thresholds, the other scores."""
    table = Table(title=predictions.title, title_justify="left")
    table.add_column("file")
    table.add_column("labels (score ≥ threshold)", style="bold")
    table.add_column("the other labels' scores")
    for r in predictions.results:
        if "error" in r:
            table.add_row(r["file"], "[red]—[/]", f"[red]{r['error']}[/]")
            continue
        above = {name for name, _ in r["labels"]}
        table.add_row(r["file"], ", ".join(f"{n} {p:.3f}" for n, p in r["labels"]) or "none",
                      ", ".join(f"{n} {p:.3f}" for n, p in r["top"] if n not in above))
    console.print(table)
    if predictions.output:
        console.print(f"wrote {predictions.output}")


def show_export(exported) -> None:
    """`cnnrun export`: what was written, its input and output, and the check against the checkpoint."""
    results_table(exported.title, exported.rows)
    if not exported.ok:
        console.print(f"[red]the exported model does not predict what {exported.checkpoint}.keras predicts[/]")


def show_sweep_results(results) -> None:
    """`cnnrun sweep`, at its end: the notes (no trial complete, a plot not drawn), then the best trial."""
    for note in results.notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    if results.rows:
        results_table(results.title, results.rows)


def show_comparison(comparison) -> None:
    """`cnnrun compare`: the config keys that differ, the scores side by side, the figure written."""
    keys = Table(title=f"config keys that differ ({len(comparison.differing)})", title_justify="left")
    scores = Table(title="scores", title_justify="left")
    for table, first in ((keys, "key"), (scores, "")):
        table.add_column(first)
        for label in comparison.labels:
            table.add_column(escape(label), overflow="fold")
    for key, values in comparison.differing.items():
        keys.add_row(escape(key), *(escape(shown(value)) for value in values))
    for what, values in comparison.scores:
        scores.add_row(what, *values)
    console.print(keys if comparison.differing else "no config key differs between these runs")
    console.print(scores)
    console.print(f"wrote {escape(str(comparison.figure))}", highlight=False)


def show_seeds(summary) -> None:
    """`cnnrun train --seeds N`: the mean ± standard deviation of each test metric, and the run folders."""
    results_table(summary.title, summary.rows)


def show_folder_check(report, limit: int = 50) -> None:
    """Print a report as rich tables: images and sizes per split and class, then the bad files with reasons."""
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
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    summary = f"{report.num_images} good image(s), {len(bad_files)} bad"
    if report.ignored:
        summary += f", {report.ignored} file(s) without an image suffix ignored"
    console.print(summary, highlight=False)


def show_table_check(report, limit: int = 50) -> None:
    """`cnnrun data check table.csv`: pictures per split and class, then every problem with its line."""
    table = Table(title=f"{report.table}", title_justify="left")
    for column in ("split", "class", "pictures", "bad", "size (h×w, or min/median/max)"):
        table.add_column(column, justify="right" if column in ("pictures", "bad") else "left")
    counts: dict[tuple[str, str], list] = {}
    targets = report.targets  # numbers a picture: one line a split, named by the target columns

    def names(row) -> tuple[str, ...]:
        return (", ".join(targets),) if targets is not None else row.label_names

    for row, size in zip(report.good, report.sizes, strict=True):  # a row of several labels counts in each
        for name in names(row):
            counts.setdefault((row.split, name), [[], 0])[0].append(size)
    for row, _ in report.bad:
        for name in names(row):
            counts.setdefault((row.split, name), [[], 0])[1] += 1
    order = {"train": 0, "validation": 1, "test": 2}
    for (split, name), (sizes, bad) in sorted(counts.items(), key=lambda item: (order[item[0][0]], item[0][1])):
        table.add_row(split, escape(name), str(len(sizes)) if sizes else "[yellow]0[/]",
                      f"[red]{bad}[/]" if bad else "0", size_summary(sizes))
    console.print(table)
    problems = report.line_problems()
    if problems:
        listed = Table(title=f"{len(problems)} problem(s)", title_justify="left")
        listed.add_column("line", justify="right")
        listed.add_column("problem", overflow="fold")
        for line, what in problems[:limit]:
            listed.add_row(str(line), escape(what))
        console.print(listed)
        if len(problems) > limit:
            console.print(f"… and {len(problems) - limit} more")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    split_by = f"splits from column '{report.split_column}'" if report.split_column else "no split column: " \
        "every row is training data"
    console.print(f"{len(report.good)} good picture(s), {len(problems)} problem(s); {split_by}", highlight=False)


def show_report(page, *, after: bool = False) -> None:
    """`cnnrun report` (or the end of train, resume, evaluate: `after`): the page written, what it lacks."""
    if after:
        console.print(f"report: {escape(str(page.path))}", highlight=False, soft_wrap=True)
        return
    what = "one run" if page.kind == "run" else f"{page.runs} runs"
    console.print(f"wrote {escape(str(page.path))} ({what}, {page.path.stat().st_size / 1e6:.1f} MB)",
                  highlight=False, soft_wrap=True)
    for line in page.missing:
        console.print(f"[yellow]the page says what is missing:[/] {escape(line)}", highlight=False, soft_wrap=True)
