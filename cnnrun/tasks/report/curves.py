"""The learning curves of one run as the report draws them: loss, the main metric and the learning rate per epoch,
training solid and validation dashed, the best epoch marked and the phases (`train.phases`) shaded."""

from typing import Any

from cnnrun.figures import pyplot
from cnnrun.report import main_metric


def phase_spans(history: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """`(phase, first epoch, last epoch)` for each phase in history.csv's `phase` column, in order ([] without)."""
    spans: list[tuple[int, int, int]] = []
    for row in history:
        phase = row.get("phase")
        if phase is None:
            continue
        if spans and spans[-1][0] == int(phase):
            spans[-1] = (spans[-1][0], spans[-1][1], int(row["epoch"]))
        else:
            spans.append((int(phase), int(row["epoch"]), int(row["epoch"])))
    return spans


def run_curves_figure(history: list[dict[str, Any]], best_epoch: int | None, monitor: str | None, title: str):
    """Loss, the main metric (when one is logged) and the learning rate (when it changes) per epoch, side by side.

    Args:
        history: history.csv's rows (`Run.read_history`), at least one.
        best_epoch: the epoch best.keras holds, drawn as a vertical line; None draws none.
        monitor: what decided best.keras (e.g. `val_loss`), named beside the line.
        title: the figure's title.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    metric = main_metric(history)
    rates = {row.get("learning_rate") for row in history} - {None}
    keys = ["loss"] + ([metric] if metric else []) + (["learning_rate"] if len(rates) > 1 else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
    epochs = [row["epoch"] for row in history]
    spans = phase_spans(history)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(epochs, [row.get(key) for row in history], "o-", ms=3, color="tab:blue",
                label="training" if key != "learning_rate" else "learning rate")
        if any(row.get(f"val_{key}") is not None for row in history):
            ax.plot(epochs, [row.get(f"val_{key}") for row in history], "s--", ms=3, color="tab:orange",
                    label="validation")
        for i, (phase, first, last) in enumerate(spans):
            if i % 2:
                ax.axvspan(first - 0.5, last + 0.5, color="0.92", zorder=0)
            ax.text(first - 0.4, 1.0, f"phase {phase}", transform=ax.get_xaxis_transform(), fontsize=7,
                    va="bottom", color="0.35")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", ls=":", lw=1.5,
                       label=f"best.keras (epoch {best_epoch}{f', {monitor}' if monitor else ''})")
        ax.set(xlabel="epoch", title=key.replace("_", " "))
        if key == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
