"""The HTML report in a real browser (issue 25): Chromium opens the page from file:// as a user's browser would.

First the harness itself (tests/browser.py), on a page written here by hand: a good page must come out clean, and
every kind of fault it is there to see (a console error, an uncaught exception, a missing picture, a request to the
network, a picture that does not decode) must come out in `problems` or `broken_images`. Then the pages `cnnrun
report` writes, of one tiny run and of a folder of three: loaded with no problem and no network request, every
picture decoded, the sortable tables sorted by a click (ascending, then descending, numbers as numbers), the
figures equal to the run's own scores.json and history.csv, and everything but the sorting there without
JavaScript.
"""

import base64
import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from tests.browser import broken_images, column, descending, element, headers, numbers_without_value, sort_keys
from tests.conftest import history, run_here, tiny_config

pytestmark = pytest.mark.browser

# the sorting a report's tables carry, written here independently of cnnrun's: a click on a <th> of a table.sortable
# sorts its body rows by that column, ascending first, then descending; a cell with a numeric data-value is a
# number, others are words (case aside), and numbers come before words, words before empty cells, both ways
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(table => {
  table.tHead.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
    const up = th.dataset.order !== "ascending";
    table.tHead.querySelectorAll("th").forEach(other => delete other.dataset.order);
    th.dataset.order = up ? "ascending" : "descending";
    const key = row => {
      const c = row.cells[i], v = c.dataset.value, text = c.textContent.trim();
      if (v !== undefined && v !== "" && !isNaN(Number(v))) return [0, Number(v)];
      return text === "" || text === "\u2014" ? [2, ""] : [1, text.toLowerCase()];
    };
    const rows = Array.from(table.tBodies[0].rows);
    rows.sort((a, b) => {
      const [gx, x] = key(a), [gy, y] = key(b);
      if (gx !== gy) return gx - gy;
      const order = x < y ? -1 : x > y ? 1 : 0;
      return up ? order : -order;
    });
    rows.forEach(row => table.tBodies[0].appendChild(row));
  }));
});
"""
# names and numbers whose order as text differs from their order as numbers (10 < 100 < 9 as text), and a column
# of numbers, a word and a dash
ROWS = [("adam", 9, 0.25, 0.5), ("sgd", 100, 0.5, None), ("Lion", 10, 0.125, "diverged"), ("rmsprop", 2, 1.0, 12)]


def number(value) -> str:
    """A cell as a report writes it: a number's exact value in data-value, text for words, a dash for nothing."""
    if value is None:
        return "<td>—</td>"
    return f"<td data-value='{value}'>{value:g}</td>" if isinstance(value, int | float) else f"<td>{value}</td>"


def png(width: int, height: int) -> str:
    """A data: URI of a PNG picture `width` × `height` (a grey ramp), as a report inlines its figures."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def hand_page(body_extra: str = "", script: str = SORT_SCRIPT) -> str:
    """A small self-contained page like a report: inline CSS, two inlined pictures, a sortable table, its script."""
    rows = "".join(f"<tr><td>{name}</td>{number(epochs)}<td data-value='{rate}'>{rate:.1%}</td>{number(note)}</tr>"
                   for name, epochs, rate, note in ROWS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hand-made report</title>
<style>table {{ border-collapse: collapse }} th {{ cursor: pointer }} img {{ max-width: 100% }}</style></head>
<body><h1>Runs</h1>
<img src="{png(40, 20)}" alt="curves"><img src="{png(8, 8)}" alt="confusion matrix">
<table class="sortable"><thead><tr><th>optimizer</th><th>epochs</th><th>rate</th><th>note</th></tr></thead>
<tbody>{rows}</tbody></table>{body_extra}
<script>{script}</script></body></html>"""


@pytest.fixture
def good_page(tmp_path):
    (path := tmp_path / "report.html").write_text(hand_page())
    return path


def test_the_harness_finds_nothing_wrong_with_a_good_page(open_page, good_page):
    loaded = open_page(good_page)
    assert loaded.page.title() == "hand-made report"
    assert loaded.page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)") == [40, 8]
    assert broken_images(loaded.page) == []
    assert headers(loaded.page, "table.sortable") == ["optimizer", "epochs", "rate", "note"]
    assert column(loaded.page, "table.sortable", 0) == [name for name, *_ in ROWS]
    assert numbers_without_value(loaded.page) == []
    assert loaded.problems == []


def test_the_harness_reports_every_kind_of_fault(open_page, tmp_path):
    faults = """<img src="missing.png" alt="a file that is not there"><img src="data:image/png;base64,AAAA" alt="x">
<img src="http://127.0.0.1:9/remote.png" alt="on the network"><table class="sortable"><thead><tr><th>n</th></tr>
</thead><tbody><tr><td>12</td></tr><tr><td data-value="3">3</td></tr></tbody></table>"""
    script = SORT_SCRIPT + """console.error("the report's own error"); fetch("https://example.com/data.json");
                              undefinedFunction();"""
    (path := tmp_path / "broken.html").write_text(hand_page(faults, script))
    loaded = open_page(path)
    loaded.page.wait_for_timeout(200)  # the fetch fails after the load
    assert broken_images(loaded.page) == ["missing.png", "data:image/png;base64,AAAA", "http://127.0.0.1:9/remote.png"]
    assert numbers_without_value(loaded.page) == ["12"]  # a number that would sort as a word
    assert sorted(loaded.network_requests) == ["http://127.0.0.1:9/remote.png", "https://example.com/data.json"]
    assert "the report's own error" in loaded.console_errors
    assert any("undefinedFunction is not defined" in error for error in loaded.page_errors)
    assert any(failed.endswith("missing.png (net::ERR_FILE_NOT_FOUND)") for failed in loaded.failed_requests)
    assert {problem.partition(":")[0] for problem in loaded.problems} == {
        "console error", "page error", "failed request", "network request"}


def click_twice(loaded, table, index: int) -> tuple[list[tuple], list[tuple]]:
    """Click the header of column `index` of `table` (a selector or an element handle) twice; the column's
    `sort_keys` after each click."""
    header = element(loaded.page, table).query_selector_all("thead th")[index]
    header.click()
    ascending = sort_keys(loaded.page, table, index)
    header.click()
    return ascending, sort_keys(loaded.page, table, index)


def assert_sorts(loaded, table, index: int) -> None:
    """Two clicks on the header of column `index` sort the rows ascending, then descending, whole (every other
    column's cells move with theirs)."""
    rows_before = sorted(table_rows(loaded.page, table))
    before = sort_keys(loaded.page, table, index)
    ascending, descending_ = click_twice(loaded, table, index)
    assert ascending == sorted(before), (index, ascending)
    assert descending_ == descending(before), (index, descending_)
    assert sorted(table_rows(loaded.page, table)) == rows_before  # whole rows moved, none lost or torn


def table_rows(page, table) -> list[tuple[str, ...]]:
    """The body rows of `table` (a selector or an element handle) as tuples of their cells' text."""
    rows = element(page, table).evaluate(
        "t => Array.from(t.tBodies[0].rows, r => Array.from(r.cells, c => c.textContent.trim()))")
    return [tuple(row) for row in rows]


def test_clicking_a_header_sorts_by_it_numbers_as_numbers(open_page, good_page):
    loaded = open_page(good_page)
    click_twice(loaded, "table.sortable", 1)
    assert column(loaded.page, "table.sortable", 1) == ["100", "10", "9", "2"]  # descending, as numbers
    loaded.page.locator("table.sortable thead th").nth(1).click()  # a third click: ascending again
    assert column(loaded.page, "table.sortable", 1) == ["2", "9", "10", "100"]
    assert column(loaded.page, "table.sortable", 0) == ["rmsprop", "adam", "Lion", "sgd"]  # the rows moved whole
    loaded.page.locator("table.sortable thead th").nth(3).click()  # numbers, then words, then the dash
    assert column(loaded.page, "table.sortable", 3) == ["0.5", "12", "diverged", "—"]
    loaded.page.locator("table.sortable thead th").nth(3).click()
    assert column(loaded.page, "table.sortable", 3) == ["12", "0.5", "diverged", "—"]
    for index in range(4):
        assert_sorts(loaded, "table.sortable", index)
    assert loaded.problems == []


def test_without_javascript_the_page_is_all_there_but_does_not_sort(open_page, good_page):
    loaded = open_page(good_page, javascript=False)
    assert broken_images(loaded.page) == [] and len(loaded.page.query_selector_all("img")) == 2
    as_written = [f"{epochs}" for _, epochs, *_ in ROWS]
    assert column(loaded.page, "table.sortable", 1) == as_written
    loaded.page.locator("table.sortable thead th").nth(1).click()
    assert column(loaded.page, "table.sortable", 1) == as_written  # no script ran
    assert loaded.problems == []


# --- the pages cnnrun writes: one tiny run, and a folder of three (1, 2 and 3 epochs) --------------------------------


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> Path:
    """A folder of three tiny runs, trained for 3, 1 and 2 epochs (in that order); the folder."""
    folder = tmp_path_factory.mktemp("report_page")
    (config := folder / "tiny.yaml").write_text(yaml.safe_dump(tiny_config(output={"report": True}), sort_keys=False))
    for epochs in (3, 1, 2):
        result = run_here("train", config, "--output-dir", folder / "runs", "--set", f"train.epochs={epochs}")
        assert result.returncode == 0, result.stderr[-3000:]
    return folder / "runs"


@pytest.fixture(scope="module")
def run_page(three_runs) -> tuple[Path, Path]:
    """The page of the three-epoch run, written by `write_report` where it goes by default: (run folder, page)."""
    from cnnrun.tasks.report import write_report

    (run,) = [path for path in three_runs.glob("*/*") if len(history(path)) == 3]
    page = write_report([run])
    assert (page.kind, page.path, page.missing) == ("run", run / "report.html", ())
    return run, page.path


@pytest.fixture(scope="module")
def runs_page(three_runs, tmp_path_factory) -> Path:
    """The page of the folder of three runs, written with `out=` elsewhere."""
    from cnnrun.tasks.report import write_report

    page = write_report([three_runs], tmp_path_factory.mktemp("pages") / "all.html")
    assert (page.kind, page.missing) == ("runs", ())
    return page.path


def assert_stands_alone(loaded) -> None:
    """Every picture is inlined and decoded, and nothing in the page points at another file to load."""
    page = loaded.page
    assert broken_images(page) == []
    assert all(src.startswith("data:image/png;base64,") for src in page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => i.getAttribute('src'))"))
    assert page.eval_on_selector_all("script[src], link[href], iframe, object, embed", "found => found.length") == 0
    ids = page.eval_on_selector_all("[id]", "found => found.map(e => e.id)")
    assert sorted({i for i in ids if ids.count(i) > 1}) == []  # each anchor of the menu leads to one place


def by_attribute(page, name: str) -> dict[str, tuple[float, str]]:
    """`{value of the attribute name: (data-value as a number, the text shown)}` of the page's elements with it."""
    found = page.eval_on_selector_all(f"[{name}]", f"els => els.map(e => [e.getAttribute('{name}'), "
                                                   "e.getAttribute('data-value'), e.textContent.trim()])")
    return {key: (float(value), text) for key, value, text in found}


def facts(page, name: str) -> list[str]:
    """The values shown beside `name` in the page's lists of facts (each <dt> with that text, its <dd>)."""
    return page.eval_on_selector_all("dl.facts dt", "(dts, n) => dts.filter(d => d.textContent === n)"
                                                    ".map(d => d.nextElementSibling.textContent)", name)


def reveal(loaded, table) -> None:
    """Make `table` visible as a reader would: open the <details> it is folded in, or press the switch that shows
    the checkpoint its part is about."""
    part = table.evaluate("t => { const p = t.closest('[data-checkpoint-part]'); "
                          "return p ? p.getAttribute('data-checkpoint-part') : null; }")
    if part is not None and not table.is_visible():
        loaded.page.get_by_role("button", name=f"{part}.keras").click()
    if table.evaluate("t => !!t.closest('details:not([open])')"):
        table.evaluate("t => t.closest('details').querySelector('summary').click()")
    assert table.is_visible()


def assert_every_sortable_table_sorts(loaded) -> int:
    """Two clicks on each header of each sortable table sort it (`assert_sorts`); how many columns' numeric order
    differs from their order as text (those show that numbers sort as numbers)."""
    tables = loaded.page.query_selector_all("table.sortable")
    assert tables
    telling = 0
    for table in tables:
        reveal(loaded, table)
        for index in range(len(headers(loaded.page, table))):
            keys = sort_keys(loaded.page, table, index)
            texts = column(loaded.page, table, index)
            if [k for k in keys if k[0] == 0] and sorted(keys) != [k for _, k in sorted(zip(texts, keys, strict=True))]:
                telling += 1
            assert_sorts(loaded, table, index)
    return telling


@pytest.mark.slow
def test_the_run_page_loads_whole_from_disk_and_touches_no_network(open_page, run_page):
    loaded = open_page(run_page[1])
    assert_stands_alone(loaded)
    assert len(loaded.page.query_selector_all("img")) >= 2  # the curves and the calibration at least
    assert loaded.problems == []


@pytest.mark.slow
def test_the_run_page_shows_the_numbers_of_scores_json_and_history_csv(open_page, run_page):
    run, path = run_page
    loaded = open_page(path)
    scores = json.loads((run / "scores.json").read_text())
    expected = {f"{which}.{name}": value for which in ("best", "last") for name, value in scores[which].items()}
    assert by_attribute(loaded.page, "data-score") == {key: (value, f"{value:.4f}") for key, value in
                                                       expected.items()}
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    shown = by_attribute(loaded.page, "data-history")
    expected = {f"{row['epoch']}.{key}": float(value) for row in rows for key, value in row.items() if value != ""}
    assert {key: value for key, (value, _) in shown.items()} == expected
    for key, (value, text) in shown.items():
        assert text == (str(int(value)) if key.endswith(".epoch") else f"{value:.6f}"), key
    for which in ("best", "last"):
        assert facts(loaded.page, f"test accuracy ({which}.keras)") == [f"{scores[which]['accuracy']:.4f}"]
    state = json.loads((run / "state.json").read_text())
    assert facts(loaded.page, "epochs") == [f"{state['epochs_completed']} of {state['epochs_planned']}"] == ["3 of 3"]
    assert loaded.problems == []


@pytest.mark.slow
def test_every_table_of_the_run_page_sorts_by_a_click(open_page, run_page):
    loaded = open_page(run_page[1])
    assert numbers_without_value(loaded.page) == []  # every number sorts as a number
    assert assert_every_sortable_table_sorts(loaded) >= 1  # and one column at least sorts otherwise as text
    assert loaded.problems == []


@pytest.mark.slow
def test_the_runs_page_shows_each_runs_numbers_sorts_and_links_to_each_run(open_page, three_runs, runs_page):
    loaded = open_page(runs_page)
    assert_stands_alone(loaded)
    names = headers(loaded.page, "#runs-table")
    values = loaded.page.eval_on_selector("#runs-table", "t => Array.from(t.tBodies[0].rows, r => Array.from(r.cells, "
                                                   "c => [c.getAttribute('data-value'), c.textContent.trim()]))")
    rows = {cells[0][1]: {name: cell for name, cell in zip(names, cells, strict=True)} for cells in values}
    runs = {run.relative_to(three_runs).as_posix(): run for run in three_runs.glob("*/*")}
    assert sorted(rows) == sorted(runs)
    for name, row in rows.items():
        run = runs[name]
        scores = json.loads((run / "scores.json").read_text())
        assert row["epochs"] == [str(len(history(run)))] * 2  # data-value and text
        assert (float(row["test best"][0]), float(row["test last"][0])) == (scores["best"]["accuracy"],
                                                                            scores["last"]["accuracy"])
    assert sorted(int(row["epochs"][0]) for row in rows.values()) == [1, 2, 3]
    assert numbers_without_value(loaded.page) == []
    assert_every_sortable_table_sorts(loaded)
    with loaded.page.expect_navigation():  # a run's name opens its own page
        loaded.page.get_by_role("link", name=next(iter(rows))).click()
    assert loaded.page.url == (runs[next(iter(rows))] / "report.html").resolve().as_uri()
    assert_stands_alone(loaded)
    assert loaded.problems == []


@pytest.mark.slow
def test_without_javascript_both_pages_are_all_there(open_page, run_page, runs_page):
    loaded = open_page(run_page[1], javascript=False)
    assert_stands_alone(loaded)
    assert loaded.page.query_selector_all(".switch button") == []  # the script did not run
    parts = loaded.page.query_selector_all("[data-checkpoint-part]")
    assert parts and all(part.is_visible() for part in parts)  # both checkpoints, one after the other
    for table in loaded.page.query_selector_all("table"):
        assert table.evaluate("t => t.tBodies[0].rows.length") > 0
    assert sorted(by_attribute(loaded.page, "data-score")) == sorted(
        f"{which}.{name}" for which in ("best", "last")
        for name in json.loads((run_page[0] / "scores.json").read_text())[which])
    runs = open_page(runs_page, javascript=False)
    assert_stands_alone(runs)
    assert len(column(runs.page, "#runs-table", 0)) == 3
    assert loaded.problems == [] and runs.problems == []
