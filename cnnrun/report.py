"""What a person sees: the history plot, the header panel before training and the results table after."""

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from cnnrun.atomic import atomic_write_figure

WIDE = 10_000
"""The width cnnrun's consoles take when their stream is not a terminal and COLUMNS is unset: wide enough that
a table or a long value sent to a file or a pipe is never cut or wrapped (rich would take 80 columns)."""


def make_console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width on a terminal (or COLUMNS when set), `WIDE` on a file or a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    return Console(stderr=stderr, width=WIDE if piped and "COLUMNS" not in os.environ else None)


console = make_console()
error_console = make_console(stderr=True)

@dataclass(frozen=True)
class Rows:
    """A titled list of `(label, value)` rows a long task tells as it goes: `panel` before the work (a Trainer's
    header), `table` after it (a Trainer's results)."""

    title: str
    rows: tuple[tuple[str, str], ...]
    kind: Literal["panel", "table"] = "table"


@dataclass(frozen=True)
class Notice:
    """A line the user should not miss, shown apart from the progress lines: `warning` (a file left out of the
    data) or `interrupted` (Ctrl-C: where the run folder is and how to go on)."""

    text: str
    kind: Literal["warning", "interrupted"] = "warning"


Told = str | Rows | Notice
Say = Callable[[Told], None]
"""How a long task below the CLI (a Trainer, a sweep, `--seeds`) tells what it is doing as it goes: a line, a
`Rows` or a `Notice` at a time, handed to a function the CLI gives it (`cnnrun.cli.render.tell` shows each). The
task itself prints nothing."""


def silent(told: Told) -> None:
    """The `Say` of a task nobody watches (a test, a script): what it tells goes nowhere."""


def main_metric(history: list[dict[str, Any]]) -> str | None:
    """The first logged metric that is not the loss or the learning rate (e.g. `accuracy`)."""
    for key in history[0] if history else []:
        if key not in ("epoch", "phase", "loss", "learning_rate") and not key.startswith("val_"):
            return key
    return None


LEFT, RIGHT, GAP = 1.0, 0.15, 1.0  # inches: the history plot's margins (tick labels and the metric's name)


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Write loss and the main metric per epoch, training against validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = main_metric(history)
    keys = ["loss"] + ([metric] if metric else [])
    width = 5.5 * len(keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(width, 4), squeeze=False)
    # margins in inches, set once: matplotlib's tight_layout measured every label first and took half the time
    axes_width = (width - LEFT - RIGHT - GAP * (len(keys) - 1)) / len(keys)
    fig.subplots_adjust(left=LEFT / width, right=1 - RIGHT / width, bottom=0.5 / 4, top=1 - 0.32 / 4,
                        wspace=GAP / axes_width)
    epochs = [row["epoch"] for row in history]
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(epochs, [row.get(key) for row in history], "o-", label="training")
        if any(f"val_{key}" in row for row in history):
            ax.plot(epochs, [row.get(f"val_{key}") for row in history], "o--", label="validation")
        ax.set(xlabel="epoch", ylabel=key, title=key)
        ax.grid(alpha=0.3)
        ax.legend()
    atomic_write_figure(fig, path, dpi=100)


def header_panel(rows: dict[str, str], title: str) -> None:
    """Print a panel of `label: value` lines before training."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column()
    for label, value in rows.items():
        table.add_row(label, value)
    console.print(Panel(table, title=title, expand=False))


def results_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a two-column table of results after training or evaluation."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def show_warnings(lines: Iterable[str]) -> None:
    """Print the data layer's warnings (`Splits.warnings`) to stderr, one `warning: …` line each, never wrapped."""
    from rich.markup import escape

    for line in lines:
        error_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def c_messages_hidden() -> Iterator[None]:
    """Send what C++ code writes to standard error (file descriptor 2) to a temporary file while the block runs;
    if the block raises, what was written is shown. TensorFlow's start-up chatter and LiteRT's delegate lines are
    written there, below Python's reach."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
