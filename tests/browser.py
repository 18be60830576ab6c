"""A real browser for the tests of cnnrun's HTML pages: Debian's Chromium, driven by Playwright.

`make install` puts Chromium at /usr/bin/chromium (`apt-get install chromium`, as root); Playwright is the Python
package from the `dev` extra, told to use that executable (never `playwright install`). Where /usr/bin/chromium is
absent the tests that ask for the `chromium` or `open_page` fixture are skipped, with the reason; nothing else
skips them.

The fixtures are registered in tests/conftest.py:

- `chromium` (session): one headless Chromium a test process (each pytest-xdist worker launches its own), with a
  fresh profile (user-data-dir) that Playwright makes in the temporary folder and removes at the end, and the
  switches that keep a browser on a closed network quiet (no background networking, updates, sync or QUIC).
- `open_page` (function): `open_page(path, javascript=True)` loads `file://path` in a new browser context and
  returns a `Loaded`: the Playwright page and what went wrong while it loaded and while the test used it (console
  errors, uncaught JavaScript errors, failed requests and every request that is neither `file:` nor `data:`, which
  is aborted: a page of cnnrun's must not touch the network). Assert `loaded.problems == []` last, after the
  clicks, so that what they broke is in it too.

Example:

    def test_page(open_page, tmp_path):
        loaded = open_page(tmp_path / "report.html")
        assert broken_images(loaded.page) == []
        assert loaded.problems == []
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# headless, as root in a container (no sandbox), no GPU, and nothing that calls home on its own: on a closed
# network those calls fail and fill the log
SWITCHES = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
LOCAL = ("file:", "data:")  # the only URLs a page may load


@dataclass
class Loaded:
    """A page open in Chromium and what went wrong in it so far (the lists grow while the test uses the page).

    Args:
        page: the Playwright `Page`, for queries and clicks.
        console_errors: the text of every `console.error` (Chromium also logs a resource it could not load here).
        page_errors: uncaught JavaScript exceptions.
        failed_requests: `URL (reason)` of every request that failed, a missing file:// picture among them.
        network_requests: every URL that is neither `file:` nor `data:` (each is aborted before it leaves).
    """

    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything above as one list of lines, each saying what kind of problem it is; empty for a good page."""
        return ([f"console error: {text}" for text in self.console_errors]
                + [f"page error: {text}" for text in self.page_errors]
                + [f"failed request: {text}" for text in self.failed_requests]
                + [f"network request: {url}" for url in self.network_requests])


def launch(playwright) -> object:
    """Chromium from /usr/bin/chromium, headless, with `SWITCHES` and a fresh profile in the temporary folder."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=SWITCHES)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """One headless Chromium for this test process (a Playwright `Browser`); skips where Chromium is absent."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: `make install` as root installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def watch(context, page) -> Loaded:
    """Record every problem of `page` into a `Loaded`, and abort any request that would leave the machine."""
    loaded = Loaded(page)

    def refuse(route) -> None:
        loaded.network_requests.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(LOCAL), refuse)
    page.on("console", lambda message: message.type == "error" and loaded.console_errors.append(message.text))
    page.on("pageerror", lambda error: loaded.page_errors.append(str(error)))
    page.on("requestfailed", lambda request: loaded.failed_requests.append(f"{request.url} ({request.failure})"))
    page.on("websocket", lambda socket: loaded.network_requests.append(socket.url))
    return loaded


@pytest.fixture
def open_page(chromium) -> Iterator[Callable[..., Loaded]]:
    """`open_page(path, javascript=True, width=1200)`: load `file://path` in a new context; closed after the test."""
    contexts = []

    def open_(path: Path, javascript: bool = True, width: int = 1200) -> Loaded:
        context = chromium.new_context(java_script_enabled=javascript, viewport={"width": width, "height": 800})
        contexts.append(context)
        page = context.new_page()
        loaded = watch(context, page)
        page.goto(Path(path).resolve().as_uri(), wait_until="load")
        return loaded

    yield open_
    for context in contexts:
        context.close()


def broken_images(page) -> list[str]:
    """The `src` (cut to 80 characters) of every <img> that did not load: incomplete, or naturalWidth 0."""
    found = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src') || '', i.complete, "
                                             "i.naturalWidth])")
    return [src[:80] for src, complete, width in found if not complete or width == 0]


def element(page, table):
    """`table` as an element handle: a CSS selector is looked up (the first match); a handle is returned as is."""
    if not isinstance(table, str):
        return table
    found = page.query_selector(table)
    assert found is not None, f"no {table} in the page"
    return found


def column(page, table, index: int, attribute: str | None = None) -> list[str]:
    """Column `index` (from 0) of the body rows of the table `table` (a CSS selector or an element handle): each
    cell's text, stripped, or its `attribute` where it is given (cells without it give '')."""
    return element(page, table).evaluate(
        "(t, [i, a]) => Array.from(t.tBodies[0].rows, r => { const c = r.cells[i]; "
        "return a ? (c.getAttribute(a) || '') : c.textContent.trim(); })", [index, attribute])


def headers(page, table) -> list[str]:
    """The text of the header cells (<th> of the <thead>) of the table `table`, stripped."""
    return element(page, table).evaluate("t => Array.from(t.tHead.rows[0].cells, c => c.textContent.trim())")


NUMBER = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")
EMPTY = ("", "—")  # what a table shows for no value


def sort_key(value: str | None, text: str) -> tuple:
    """Where a cell goes when its table is sorted, worked out here from the rule the report states: numbers (a
    cell's `data-value`) first, by value; then words, by their lower-case text; then empty cells ('' or —).

    Args:
        value: the cell's `data-value` attribute, None when it has none.
        text: the cell's text, stripped.
    """
    if value not in (None, ""):
        try:
            return (0, float(value), "")
        except ValueError:
            pass
    if text in EMPTY:
        return (2, 0.0, "")
    return (1, 0.0, text.lower())


def sort_keys(page, table: str, index: int) -> list[tuple]:
    """`sort_key` of each cell of column `index` of the table `table` (a CSS selector or an element handle), in
    the order the rows are in now."""
    cells = element(page, table).evaluate(
        "(t, i) => Array.from(t.tBodies[0].rows, r => { const c = r.cells[i]; "
        "return c ? [c.getAttribute('data-value'), c.textContent.trim()] : [null, '']; })", index)
    return [sort_key(value, text) for value, text in cells]


def descending(keys: list[tuple]) -> list[tuple]:
    """`keys` as a click on a sorted column leaves them: numbers, words, empty cells still in that order (the groups
    do not turn), each group largest first."""
    return [key for group in (0, 1, 2) for key in sorted((k for k in keys if k[0] == group), reverse=True)]


def numbers_without_value(page, table: str = "table.sortable") -> list[str]:
    """The text of every body cell of the tables `table` that reads as a number but has no numeric `data-value`:
    such a cell would sort as a word (10 before 9)."""
    cells = page.eval_on_selector_all(table, "ts => ts.flatMap(t => Array.from(t.tBodies[0].querySelectorAll('td'), "
                                             "c => [c.getAttribute('data-value'), c.textContent.trim()]))")
    return [text for value, text in cells if NUMBER.match(text) and sort_key(value, text)[0] != 0]
