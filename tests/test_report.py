"""`cnnrun report` and the report.html that train, resume and evaluate write: the numbers in the page equal the run
folder's files (read here independently), the page stands alone, and a damaged folder still gets a page.

The page in a real browser (loading, sorting, pictures) is tested in tests/test_report_page.py.
"""

import csv
import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from tests.conftest import only_run, run_cli, run_here, tiny_config


class Cells(HTMLParser):
    """Every element's attributes and its text, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.open: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        text: list[str] = []
        self.elements.append((tag, dict(attrs), text))
        if tag not in ("img", "meta", "br", "input"):
            self.open.append(text)

    def handle_endtag(self, tag):
        if self.open:
            self.open.pop()

    def handle_data(self, data):
        for text in self.open:
            text.append(data)


def parse(path) -> list[tuple[str, dict[str, str], str]]:
    parser = Cells()
    parser.feed(path.read_text(encoding="utf-8"))
    return [(tag, attrs, "".join(text).strip()) for tag, attrs, text in parser.elements]


def by_attribute(elements, name: str) -> dict[str, tuple[float, str]]:
    """`{attribute value: (data-value, text shown)}` of the elements that carry the attribute `name`."""
    return {attrs[name]: (float(attrs["data-value"]), text) for _, attrs, text in elements
            if name in attrs and attrs.get("data-value") not in (None, "")}


def train(folder, **sections):
    config = folder / "experiment.yaml"
    config.write_text(json.dumps(tiny_config(**{"output": {"report": True}, **sections})))
    result = run_here("train", config, "--output-dir", folder / "runs")
    assert result.returncode == 0, result.stderr[-2000:]
    return result, only_run(folder / "runs")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    # early stopping on a tiny run: best.keras and last.keras hold different epochs, so the page shows both
    return train(folder, train={"epochs": 4, "batch_size": 16})


@pytest.mark.slow
def test_train_writes_a_page_whose_numbers_are_the_run_folders(trained):
    result, run = trained
    page = run / "report.html"
    assert f"report: {page}" in result.stdout
    elements = parse(page)
    scores = json.loads((run / "scores.json").read_text())
    shown = by_attribute(elements, "data-score")
    expected = {f"{which}.{name}": value for which in ("best", "last") for name, value in scores[which].items()}
    assert expected and {key: value for key, (value, _) in shown.items()} == expected
    assert all(text == f"{expected[key]:.4f}" for key, (_, text) in shown.items())
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    history = by_attribute(elements, "data-history")
    assert len(history) == sum(1 for row in rows for value in row.values() if value != "")
    for row in rows:
        for key, value in row.items():
            assert history[f"{row['epoch']}.{key}"][0] == pytest.approx(float(value), rel=1e-12)


@pytest.mark.slow
def test_the_confusion_matrix_and_calibration_shown_are_those_of_the_predictions(trained):
    _, run = trained
    elements = parse(run / "report.html")
    names = json.loads((run / "dataset.json").read_text())["class_names"]
    # the confusion tables, best.keras's then last.keras's (a different epoch here), counted here by hand
    tables = [i for i, (tag, attrs, _) in enumerate(elements) if tag == "table" and attrs.get("class") == "confusion"]
    assert len(tables) == 2
    for which, first in zip(("best", "last"), tables, strict=True):
        saved = np.load(run / "eval" / f"{which}_test_predictions.npz")
        cells = []
        for tag, attrs, text in elements[first:]:
            if tag == "td" and "data-value" in attrs:
                cells.append(int(text))
            if len(cells) == len(names) ** 2:
                break
        counted = np.zeros((len(names), len(names)), dtype=int)
        for truth, guess in zip(saved["labels"], saved["probabilities"].argmax(axis=1), strict=True):
            counted[truth, guess] += 1
        assert np.array_equal(np.array(cells).reshape(counted.shape), counted), which
    eces = [float(attrs["data-value"]) for tag, attrs, _ in elements if attrs.get("class") == "ece"]
    saved = np.load(run / "eval" / "best_test_predictions.npz")
    probabilities, labels = saved["probabilities"], saved["labels"]
    # 15 bins [k/15, (k+1)/15), a confidence of 1 in the last: the gap of each, weighted by its share of pictures
    confidence, correct = probabilities.max(axis=1).astype(float), probabilities.argmax(axis=1) == labels
    ece = 0.0
    for k in range(15):
        low, high = k / 15, (k + 1) / 15
        inside = (confidence >= low) & ((confidence < high) | ((k == 14) & (confidence == 1.0)))
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    assert eces[0] == pytest.approx(ece, abs=1e-6)


@pytest.mark.slow
def test_the_page_stands_alone(trained):
    _, run = trained
    text = (run / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", text)
    assert "<link" not in text and "@import" not in text
    images = [attrs["src"] for tag, attrs, _ in parse(run / "report.html") if tag == "img"]
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)


@pytest.mark.slow
def test_a_damaged_folder_still_gets_a_page_that_says_what_is_missing(trained, tmp_path):
    _, run = trained
    copy = tmp_path / "tiny" / "damaged"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "eval")
    lines = (copy / "history.csv").read_text().splitlines()
    (copy / "history.csv").write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    (copy / "report.html").unlink()
    result = run_here("report", copy)
    assert result.returncode == 0, result.stderr
    missing = [text for tag, attrs, text in parse(copy / "report.html") if attrs.get("class") == "missing"]
    # the cut line is named, once, and the whole epoch before it is still drawn and listed
    assert "history.csv: damaged: line 3 is cut short (no line end): the 1 whole epochs before the damage are " \
           "shown." in missing, missing
    assert sorted({key.split(".")[0] for key in by_attribute(parse(copy / "report.html"), "data-history")}) == ["1"]
    assert any("No predictions of best.keras" in line for line in missing), missing
    assert "history.csv" in result.stdout  # the command says it too


@pytest.mark.slow
def test_evaluate_adds_its_grad_cam_gallery_until_a_later_training_makes_it_stale(trained, tmp_path):
    import os

    _, run = trained
    copy = tmp_path / "tiny" / "evaluated"
    shutil.copytree(run, copy)
    result = run_here("evaluate", copy, "--explain", "3")
    assert result.returncode == 0, result.stderr
    assert f"report: {copy / 'report.html'}" in result.stdout

    def gallery() -> list[str]:
        return [attrs["alt"] for tag, attrs, _ in parse(copy / "report.html") if tag == "img"
                and attrs["alt"].startswith("Grad-CAM")]

    assert gallery() == ["Grad-CAM of the top losses of best.keras"]
    # a resume rewrites the predictions after evaluate drew its pictures: they are of an older model now
    predictions = copy / "eval" / "best_test_predictions.npz"
    later = (copy / "eval" / "best_test_explained.png").stat().st_mtime + 60
    os.utime(predictions, (later, later))
    assert run_here("report", copy).returncode == 0
    assert gallery() == []
    assert "those in eval/ are from before the last training" in (copy / "report.html").read_text()


@pytest.mark.slow
def test_a_folder_of_runs_gets_one_page_with_a_row_and_a_link_each(trained, tmp_path):
    _, run = trained
    folder = tmp_path / "outputs"
    for name in ("a", "b", "c"):
        shutil.copytree(run, folder / "tiny" / f"2026010{'abc'.index(name) + 1}-120000")
    result = run_here("report", folder)
    assert result.returncode == 0, result.stderr
    assert f"wrote {folder / 'report.html'} (3 runs" in result.stdout
    elements = parse(folder / "report.html")
    links = [attrs["href"] for tag, attrs, _ in elements if tag == "a" and attrs.get("href", "").endswith(".html")]
    assert links == [f"tiny/2026010{i}-120000/report.html" for i in (1, 2, 3)]
    (table_at,) = [i for i, (tag, attrs, _) in enumerate(elements) if attrs.get("id") == "runs-table"]
    accuracy = json.loads((run / "scores.json").read_text())["best"]["accuracy"]
    shown = [float(attrs["data-value"]) for tag, attrs, _ in elements[table_at:] if tag == "td"
             and attrs.get("data-value") and float(attrs["data-value"]) == accuracy]
    assert len(shown) >= 3


@pytest.mark.slow
def test_output_report_false_writes_no_page_but_cnnrun_report_does(tmp_path):
    result, run = train(tmp_path, output={"report": False})
    assert not (run / "report.html").exists() and "report:" not in result.stdout
    result = run_here("evaluate", run, "--explain", "0")
    assert result.returncode == 0 and not (run / "report.html").exists()
    assert run_here("report", run).returncode == 0 and (run / "report.html").exists()


def test_a_path_that_is_not_a_run_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, expected in ([(tmp_path / "empty",), "not a run folder and holds none"],
                           [(tmp_path / "nowhere",), "no such folder"],
                           [(tmp_path / "empty", "--out", tmp_path / "page.png"), "give a file ending in .html"]):
        result = run_cli("report", *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_cnnrun_report_says_the_pages_size_in_megabytes(tmp_path, capsys):
    from cnnrun.cli.render_tasks import show_report
    from cnnrun.tasks.report import ReportPage

    page = tmp_path / "report.html"
    page.write_bytes(b"x" * 2_500_000)  # 2,500,000 bytes / 1e6 = 2.5 MB
    show_report(ReportPage(page, "runs", 3, ("b: no history.csv",)))
    assert capsys.readouterr().out == (f"wrote {page} (3 runs, 2.5 MB)\n"
                                       "the page says what is missing: b: no history.csv\n")


def test_the_main_metric_skips_the_bookkeeping_columns_and_metrics_print_to_four_places():
    from cnnrun.report import format_metrics, main_metric

    row = {"epoch": 1, "phase": 1, "loss": 0.5, "learning_rate": 0.01, "val_loss": 0.6, "accuracy": 0.7}
    assert main_metric([row]) == "accuracy"
    assert main_metric([{"epoch": 1, "loss": 0.5}]) is None
    assert format_metrics({"loss": 0.123456, "accuracy": 0.5}) == "loss 0.1235, accuracy 0.5000"
