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
import io

import pytest

from tests.browser import broken_images, column, descending, element, headers, numbers_without_value, sort_keys

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
