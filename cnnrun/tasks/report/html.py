"""The page's building blocks: one self-contained HTML file that opens from disk, with nothing fetched.

Styles and the little JavaScript sit inside the page, pictures are `data:` URIs (PNG), so the file can be mailed
and opened anywhere. The JavaScript only adds comfort: a click on a column header of a `sortable` table sorts it,
and a switch shows `best.keras` or `last.keras`; without it every table and picture is still there to read, both
checkpoints one after the other.

Every number a table shows keeps its exact value in `data-value` (what the sorting uses, and what a program or a
test can read back), and the text shows it rounded.

Example:
>>> cell(0.87654321)
'<td class="num" data-value="0.87654321">0.8765</td>'
>>> table(["metric", "value"], [[cell("accuracy"), cell(0.87654321)]])[:80]
'<div class="scroll"><table><thead><tr><th>metric</th><th>value</th></tr></thead>'
"""

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9dee3; --accent: #1f6feb; --soft: #f4f6f8; --bad: #b42318; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0;
       background: #fff; }
header { padding: 1.4rem 2rem 1rem; border-bottom: 1px solid var(--line); background: var(--soft); }
header h1 { margin: 0 0 .2rem; font-size: 1.6rem; }
header p { margin: .1rem 0; color: var(--muted); }
nav { padding: .5rem 2rem; border-bottom: 1px solid var(--line); font-size: .9rem; }
nav a { margin-right: 1rem; color: var(--accent); text-decoration: none; }
main { padding: 0 2rem 2rem; max-width: 1200px; }
section { margin-top: 1.8rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-bottom: .4rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; font-size: .7em; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; font-size: .7em; }
table.confusion td { text-align: center; min-width: 2.6rem; }
img { max-width: 100%; height: auto; border: 1px solid var(--line); }
pre { background: var(--soft); padding: .8rem; overflow-x: auto; font-size: .82rem; line-height: 1.35; }
.missing { color: var(--bad); }
.note { color: var(--muted); font-size: .9rem; }
.switch button { font: inherit; padding: .2rem .8rem; border: 1px solid var(--accent); background: #fff;
                 color: var(--accent); cursor: pointer; }
.switch button[aria-pressed="true"] { background: var(--accent); color: #fff; }
.grid { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1.2rem; margin: .5rem 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
footer { padding: 1rem 2rem; color: var(--muted); font-size: .8rem; border-top: 1px solid var(--line); }
"""

SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[column];
        if (!cell) { return [2, ""]; }
        var value = cell.getAttribute("data-value");
        if (value !== null && value !== "" && !isNaN(Number(value))) { return [0, Number(value)]; }
        var text = cell.textContent.trim();
        return text === "" || text === "—" ? [2, ""] : [1, text.toLowerCase()];
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x[0] !== y[0]) { return x[0] - y[0]; }  // numbers, then words, then empty cells
        var order = x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0;
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
document.querySelectorAll(".switch").forEach(function (box) {
  var parts = document.querySelectorAll("[data-checkpoint-part]");
  var names = [];
  parts.forEach(function (part) {
    var name = part.getAttribute("data-checkpoint-part");
    if (names.indexOf(name) < 0) { names.push(name); }
  });
  if (names.length < 2) { return; }
  function show(name) {
    parts.forEach(function (part) { part.hidden = part.getAttribute("data-checkpoint-part") !== name; });
    box.querySelectorAll("button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.textContent === name + ".keras"));
    });
  }
  box.appendChild(document.createTextNode("Show: "));
  names.forEach(function (name) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = name + ".keras";
    button.addEventListener("click", function () { show(name); });
    box.appendChild(button);
  });
  show(names[0]);
});
"""


def esc(text: Any) -> str:
    """Text made safe inside HTML (and inside an attribute's quotes)."""
    return html.escape(str(text), quote=True)


def shown_number(value: float | int, digits: int = 4) -> str:
    """A number as the tables show it: integers with thousands separators, others with `digits` decimals."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def cell(value: Any, digits: int = 4, *, tag: str = "td", attrs: str = "") -> str:
    """One table cell: a number right-aligned with its exact value in `data-value`, None as a dash, text escaped.

    Args:
        value: what the cell holds.
        digits: decimals shown for a float. Defaults to 4.
        tag: `td` or `th`. Defaults to `td`.
        attrs: more attributes, already escaped (e.g. `data-metric="accuracy"`). Defaults to none.
    """
    extra = f" {attrs}" if attrs else ""
    if value is None:
        return f"<{tag}{extra}>—</{tag}>"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (f'<{tag} class="num" data-value="{esc(repr(value) if isinstance(value, float) else value)}"{extra}>'
                f"{esc(shown_number(value, digits))}</{tag}>")
    return f"<{tag}{extra}>{esc(value)}</{tag}>"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, sortable: bool = False, attrs: str = "") -> str:
    """A table: `header` is plain text (escaped here), each row a list of `cell(...)` strings."""
    classes = ' class="sortable"' if sortable else ""
    extra = f" {attrs}" if attrs else ""
    head = "".join(f"<th>{esc(name)}</th>" for name in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return (f'<div class="scroll"><table{classes}{extra}><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f"</table></div>")


def facts(pairs: Sequence[tuple[str, Any]]) -> str:
    """A list of `what: value` lines (a definition list), values escaped; None values are left out."""
    items = "".join(f"<dt>{esc(what)}</dt><dd>{esc(value)}</dd>" for what, value in pairs if value is not None)
    return f'<dl class="facts">{items}</dl>'


def figure_uri(fig, dpi: int = 100) -> str:
    """A matplotlib figure as a PNG `data:` URI; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return png_uri(buffer.getvalue())


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def file_uri(path: Path) -> str | None:
    """A PNG file as a `data:` URI; None when it is missing or not a PNG (a damaged file is left out, not shown
    broken)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return png_uri(data) if data.startswith(b"\x89PNG\r\n\x1a\n") else None


def image(uri: str, alt: str, width: int | None = None) -> str:
    size = f' style="width:{width}px"' if width else ""
    return f'<img src="{uri}" alt="{esc(alt)}"{size}>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def missing(text: str) -> str:
    """A line saying what the page cannot show and why (marked `missing`, which tests and readers look for)."""
    return f'<p class="missing">{esc(text)}</p>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def page(title: str, subtitle: list[str], sections: list[tuple[str, str, str]], footer: str) -> str:
    """The whole page: a header, a menu of the sections, the sections (`(anchor, title, body)`), a footer."""
    menu = "".join(f'<a href="#{esc(anchor)}">{esc(name)}</a>' for anchor, name, _ in sections)
    lines = "".join(f"<p>{esc(line)}</p>" for line in subtitle)
    body = "".join(section(*part) for part in sections)
    return ("<!doctype html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            f'initial-scale=1"><title>{esc(title)}</title><style>{STYLE}</style></head>\n'
            f"<body><header><h1>{esc(title)}</h1>{lines}</header><nav>{menu}</nav><main>{body}</main>"
            f"<footer>{esc(footer)}</footer><script>{SCRIPT}</script></body></html>\n")
