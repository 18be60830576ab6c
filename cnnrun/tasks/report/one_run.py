"""The page of one run: what was trained, how it learned, how it scores on the test split and why.

Everything comes from the run folder's files; no model runs. The test analysis (confusion matrix, per-class
scores, calibration, top losses) reads the predictions that the end of `train`/`resume` and `cnnrun evaluate`
leave in `eval/<checkpoint>_test_predictions.npz`, and shows the Grad-CAM gallery of the top losses that
`cnnrun evaluate` draws (`eval/<checkpoint>_test_explained.png`). A file that is missing or damaged leaves its
part of the page out and says so in it: the page itself is always written.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from cnnrun.config.load import read_yaml
from cnnrun.errors import UserError
from cnnrun.figures import reliability_figure
from cnnrun.model.calibration import reliability
from cnnrun.model.scoring import per_class_table, top_losses
from cnnrun.run_folder import files
from cnnrun.run_folder.folder import Run
from cnnrun.tasks.report.curves import run_curves_figure
from cnnrun.tasks.report.html import cell, details, facts, figure_uri, file_uri, image, missing, note, pre, table

T = TypeVar("T")
TOP_LOSSES = 12  # the rows of the top-losses table


class Reader:
    """Reads the run's files one by one; what cannot be read is noted (`problems`) and its part left out."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.problems: list[str] = []

    def __call__(self, what: str, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except UserError as e:
            self.problems.append(self.said(what, e))
            return default

    def said(self, what: str, error: UserError) -> str:
        """The error's line, its file named once and relative to the run folder."""
        text = str(error).replace(f"{self.run.path}/", "")
        return text if text.startswith(what) else f"{what}: {text}"


def read_history(run: Run, read: Reader) -> tuple[list[dict[str, Any]], str | None]:
    """history.csv's rows and, when it is damaged, what is wrong; a file cut short (a run killed while writing
    it, or a disk that filled) still gives the whole lines before the damage."""
    try:
        return run.read_history(), None
    except UserError as e:
        read.problems.append(read.said(files.HISTORY, e))
        path = run.file(files.HISTORY)
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            return files.parse_history(path, text[: text.rfind("\n") + 1]), read.said(files.HISTORY, e)
        except UserError:
            return [], read.said(files.HISTORY, e)


def _seconds(value: float) -> str:
    minutes, seconds = divmod(value, 60)
    return f"{value:.1f} s" if value < 60 else f"{int(minutes)} min {seconds:.0f} s ({value:.0f} s)"


def overview(run: Run, state, meta, scores: dict[str, Any], params: int | None) -> str:
    """The facts at a glance: status, epochs, the best value, test accuracy, times, parameters."""
    pairs: list[tuple[str, Any]] = []
    if state is not None:
        pairs += [("status", state.status), ("epochs", f"{state.epochs_completed} of {state.epochs_planned}")]
        if state.best is not None and state.best.value is not None:
            best = state.best
            pairs.append((files.checkpoint_name("best"), f"{best.monitor} {best.value:.4f} at epoch {best.epoch}"))
        pairs.append(("time in training", _seconds(state.fit_seconds)))
    for which in files.CHECKPOINT_NAMES:
        metrics = scores.get(which) or {}
        if "accuracy" in metrics:
            pairs.append((f"test accuracy ({which}.keras)", f"{metrics['accuracy']:.4f}"))
    if meta is not None:
        pairs += [("started", meta.started), ("ended", meta.ended or "not yet (or the process was killed)"),
                  ("command", " ".join(meta.command) or None)]
        if meta.resumed:
            pairs.append(("resumed", ", ".join(f"at epoch {r.at_epoch} ({r.time})" for r in meta.resumed)))
        if meta.init_from:
            pairs.append(("weights from", meta.init_from.get("run", meta.init_from)))
        for cached in meta.cached_features:
            pairs.append((f"phase {cached.get('phase')}", f"backbone features of {cached.get('pictures', 0):,} "
                          f"pictures ({cached.get('views', 1)} view{'' if cached.get('views', 1) == 1 else 's'}) "
                          f"computed once in {cached.get('seconds', 0):.1f} s"))
    pairs.append(("parameters", f"{params:,}" if params is not None else None))
    return facts(pairs)


def scores_part(scores: dict[str, Any]) -> str:
    """The test metrics of best.keras and last.keras side by side (`scores.json`)."""
    if not scores.get("best") and not scores.get("last"):
        return missing("No test scores (scores.json): the run has not finished, or its data has no test split.")
    names = list(dict.fromkeys(name for which in files.CHECKPOINT_NAMES for name in (scores.get(which) or {})))
    rows = [[cell(name)] + [cell((scores.get(which) or {}).get(name), attrs=f'data-score="{which}.{name}"')
                            for which in files.CHECKPOINT_NAMES] for name in names]
    views = note(f"Test-time augmentation: the average over the views {', '.join(scores['tta'])} "
                 "(tta_accuracy, tta_loss).") if scores.get("tta") else ""
    return table(["test metric", *map(files.checkpoint_name, files.CHECKPOINT_NAMES)], rows) + views


def curves_part(run: Run, history: list[dict[str, Any]], damage: str | None, state) -> str:
    """The curves, drawn from history.csv, and every logged value in a table below them."""
    damaged = missing(f"{damage}: the {len(history)} whole epochs before the damage are shown.") if damage else ""
    if not history:
        return damaged or missing("No finished epoch yet (history.csv is missing or empty).")
    best = state.best if state is not None else None
    figure = run_curves_figure(history, best.epoch if best else None, best.monitor if best else None,
                               f"{run.path.parent.name}: loss, metrics and learning rate per epoch")
    columns = files.history_columns(history)
    rows = [[cell(row.get(key), 6, attrs=f'data-history="{row["epoch"]}.{key}"') for key in columns]
            for row in history]
    planned = state.epochs_planned if state is not None else None
    cut = note(f"{len(history)} of {planned} epochs recorded.") if planned and len(history) < planned else ""
    rates = {row.get("learning_rate") for row in history} - {None}
    if len(rates) == 1:
        cut += note(f"The learning rate was {rates.pop():.4g} throughout.")
    return (damaged + image(figure_uri(figure), "learning curves") + cut
            + details("every epoch's values (history.csv)", table(columns, rows, sortable=True)))


def confusion_table(matrix: np.ndarray, names: list[str]) -> str:
    """The confusion matrix as a table, true classes down and predicted across; each cell shaded by its share of
    the row (the recall of the class on the diagonal)."""
    rows = []
    for i, name in enumerate(names):
        total = max(int(matrix[i].sum()), 1)
        cells = [cell(name, tag="th")]
        for j in range(len(names)):
            share = matrix[i, j] / total
            colour = "#fff" if share > 0.55 else "inherit"
            cells.append(f'<td class="num" data-value="{int(matrix[i, j])}" style="background:rgba(31,111,235,'
                         f'{share:.3f});color:{colour}">{int(matrix[i, j])}</td>')
        rows.append(cells)
    return table(["true \\ predicted", *names], rows, attrs='class="confusion"')


def top_losses_table(probabilities: np.ndarray, labels: np.ndarray, names: list[str]) -> str:
    """The test pictures with the largest loss, −log p(true class), largest first (ties by index)."""
    chosen = probabilities[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(chosen, 1e-7, 1.0))
    order = top_losses(probabilities, labels, TOP_LOSSES)  # the pictures evaluate's Grad-CAM gallery shows
    predicted = probabilities.argmax(axis=-1)
    rows = [[cell(int(i)), cell(names[labels[i]]), cell(names[predicted[i]]), cell(float(chosen[i])),
             cell(float(losses[i]))] for i in order]
    return table(["test picture", "true", "predicted", "p(true)", "loss"], rows, sortable=True)


def analysis_part(run: Run, read: Reader, names: list[str] | None) -> str:
    """For best.keras and last.keras: confusion matrix, per-class scores, calibration and the top losses."""
    if names is None:
        return missing("No dataset.json: the class names are unknown, so the test analysis is left out.")
    parts, seen = [], {}
    for which in files.CHECKPOINT_NAMES:
        found = read(files.predictions_name(which, "test"), lambda which=which: run.read_predictions(which, "test"),
                     None)
        if found is None:
            parts.append((which, missing(f"No predictions of {which}.keras on the test split: `cnnrun evaluate "
                                         f"{run.path} --checkpoint {which}` writes them.")))
            continue
        probabilities, labels = found
        key = (probabilities.tobytes(), labels.tobytes())
        if key in seen:
            parts.append((which, note(f"last.keras holds the same weights as {seen[key]}.keras: see above.")))
            continue
        seen[key] = which
        parts.append((which, _analysis(run, which, probabilities, labels, names)))
    switch = '<div class="switch"></div>'
    return switch + "".join(f'<div data-checkpoint-part="{which}"><h3>{which}.keras on the test split</h3>{body}'
                            f"</div>" for which, body in parts)


def _analysis(run: Run, which: str, probabilities: np.ndarray, labels: np.ndarray, names: list[str]) -> str:
    predicted = probabilities.argmax(axis=-1)
    matrix, rows = per_class_table(labels, predicted, names)
    per_class = table(["class", "precision", "recall", "F1", "support"],
                      [[cell(r["class"]), cell(r["precision"]), cell(r["recall"]), cell(r["f1"]), cell(r["support"])]
                       for r in rows], sortable=True)
    accuracy = float(np.mean(predicted == labels)) if len(labels) else 0.0
    calibration = reliability(probabilities, labels)
    figure = reliability_figure(calibration, f"{which}.keras: reliability on the test split")
    drawn = run.path / files.explained_name(which, "test")
    predicted_at = run.path / files.predictions_name(which, "test")
    # evaluate writes its predictions, then the pictures: pictures older than the predictions are of an earlier model
    fresh = drawn.exists() and drawn.stat().st_mtime >= predicted_at.stat().st_mtime
    gallery = file_uri(drawn) if fresh else None
    again = f"`cnnrun evaluate {run.path} --checkpoint {which}`"
    shown = (image(gallery, f"Grad-CAM of the top losses of {which}.keras") if gallery else
             note(f"{again} draws these pictures with Grad-CAM (those in eval/ are from before the last training)."
                  if drawn.exists() else f"{again} draws these pictures with Grad-CAM."))
    return (f"<p>{len(labels):,} test pictures, accuracy "
            f'<span data-value="{accuracy!r}">{accuracy:.4f}</span>, expected calibration error '
            f'<span class="ece" data-value="{calibration.ece!r}">{calibration.ece:.4f}</span>.</p>'
            '<div class="grid"><div><h3>Confusion matrix</h3>' + confusion_table(matrix, names) + "</div>"
            "<div><h3>Per class</h3>" + per_class + "</div></div>"
            "<h3>Calibration</h3>" + note("How often the model is right when it is this sure: a calibrated model's "
                                          "bars sit on the diagonal.") + image(figure_uri(figure), "reliability")
            + "<h3>Top losses</h3>" + top_losses_table(probabilities, labels, names) + shown)


def regression_part(run: Run) -> str:
    """A regression run's test split: each checkpoint's scatter of predicted against true and its residuals, as
    `cnnrun evaluate` drew them (`eval/<checkpoint>_test_scatter.png`, `_residuals.png`), or how to draw them."""
    parts = []
    for which in files.CHECKPOINT_NAMES:
        drawn = [run.path / files.EVAL / f"{which}_test_{name}.png" for name in ("scatter", "residuals")]
        body = "".join(image(file_uri(path), f"{which}.keras: {path.stem}") for path in drawn if path.exists()) \
            or missing(f"`cnnrun evaluate {run.path} --checkpoint {which}` draws the test split's predicted "
                       f"against true numbers and their residuals.")
        parts.append(f"<h3>{which}.keras on the test split</h3>{body}")
    return "".join(parts)


def data_part(run: Run, read: Reader, config: dict[str, Any] | None, info) -> str:
    """The dataset: its name, input, normalisation, pictures per split and class, and the training samples."""
    if info is None:
        return missing("No dataset.json: the run stopped before its data was loaded.")
    dataset = (config or {}).get("dataset") or {}
    pairs = [("dataset", dataset.get("name")), ("input", " × ".join(map(str, info.input_shape))),
             ("labels", info.label_mode), ("normalisation", info.normalize),
             ("pictures", ", ".join(f"{split} {count:,}" for split, count in info.sizes.items()))]
    body = facts(pairs)
    counts = getattr(info, "class_counts", None) or {}
    if counts:
        splits = list(counts)
        rows = [[cell(name)] + [cell(int(counts[split][i])) for split in splits]
                for i, name in enumerate(info.class_names)]
        body += table(["class", *splits], rows, sortable=True)
    bad = read(files.BAD_FILES, lambda: run.read_json(files.BAD_FILES) if run.has(files.BAD_FILES) else [], [])
    if bad:
        body += details(f"{len(bad)} files left out by the check",
                        table(["file", "why"], [[cell(b.get("path")), cell(b.get("reason"))] for b in bad]))
    samples = file_uri(run.samples)
    return body + (image(samples, "training samples") if samples else "")


def setup_part(run: Run, read: Reader, meta) -> str:
    """The resolved config, the model summary, and the machine and versions it ran on."""
    config_text = read(files.CONFIG, lambda: run.config_file.read_text(encoding="utf-8"), None) \
        if run.config_file.exists() else None
    body = (details("config.yaml: the experiment, every default filled in", pre(config_text)) if config_text
            else missing("No config.yaml."))
    summary = run.file(files.SUMMARY)
    if summary.exists():
        body += details("the model (Keras' summary)", pre(summary.read_text(encoding="utf-8", errors="replace")))
    if meta is None:
        return body + missing("No meta.json: where and how it ran is unknown.")
    machine = [("platform", meta.platform), ("devices", ", ".join(meta.devices) or None),
               ("distribution", ", ".join(f"{k} {v}" for k, v in meta.distribution.items()) or None),
               ("git commit", meta.git_commit), ("seed", meta.seed)]
    machine += [(name, version) for name, version in meta.versions.items()]
    return body + "<h3>Machine and versions</h3>" + facts(machine)


def config_of(run: Run, read: Reader) -> dict[str, Any] | None:
    if not run.config_file.exists():
        return None
    return read(files.CONFIG, lambda: read_yaml(run.config_file, c_parser=True), None)


def run_sections(run: Run) -> tuple[str, list[str], list[tuple[str, str, str]], list[str]]:
    """The run page's title, subtitle lines, sections `(anchor, title, body)` and what could not be read."""
    read = Reader(run)
    state = read(files.STATE, run.read_state, None) if run.has(files.STATE) else None
    meta = read(files.META, run.read_meta, None)
    scores = read(files.SCORES, run.read_scores, {})
    history, damage = read_history(run, read)
    info = read(files.DATASET, lambda: run.dataset_info(required=False), None)
    config = config_of(run, read)
    params = run.parameters()
    names = info.class_names if info is not None else None
    sections = [("scores", "Test scores", scores_part(scores)),
                ("curves", "Learning curves", curves_part(run, history, damage, state)),
                ("analysis", "On the test split", regression_part(run) if info is not None and
                 info.label_mode == "regression" else analysis_part(run, read, names)),
                ("data", "Data", data_part(run, read, config, info)),
                ("setup", "Config, model and machine", setup_part(run, read, meta))]
    lacking = [what for what, present in ((files.STATE, state), (files.META, meta)) if present is None]
    lacking += read.problems
    summary = overview(run, state, meta, scores, params)
    if lacking:
        summary += "".join(missing(f"Missing or damaged: {what}") for what in lacking)
    title = str((config or {}).get("name") or run.path.parent.name)
    status = state.status if state is not None else "unknown"
    subtitle = [f"{run.path}", f"status {status}"]
    return title, subtitle, [("overview", "Overview", summary), *sections], lacking
