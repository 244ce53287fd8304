"""A report's blocks as one self-contained HTML page: plots embedded as PNG ``data:`` URIs, no network.

Every table sorts by a click on a column header (a few lines of inline JavaScript, no library): numbers
by value (``61.3 ± 2.1`` sorts as 61.3, ``n/a`` last), text alphabetically; a second click reverses.
The KFP UI shows the page as an ``HTML`` artifact in a sandboxed frame, so nothing in it is fetched.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from safetax.analysis.document import Block, Bullets, Heading, Image, Table, Text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #eee; }
h3 { font-size: 1.1em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0 1.2em; }
th, td { border: 1px solid #d8d8d8; padding: .25em .55em; white-space: nowrap; }
th { background: #f5f6f8; cursor: pointer; user-select: none; position: sticky; top: 0; }
th.asc::after { content: " \\25B2"; font-size: .7em; }
th.desc::after { content: " \\25BC"; font-size: .7em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
tbody tr:hover { background: #eef4ff; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
"""

# Sort a table by the clicked column: a cell's leading number when it has one, else its text; "n/a" last.
SCRIPT = """
(function () {
  function key(cell) {
    var t = cell.textContent.trim();
    var m = t.match(/^[-+]?\\d+(\\.\\d+)?(e[-+]?\\d+)?/i);
    return m ? { n: parseFloat(m[0]), t: t } : { n: null, t: t };
  }
  function compare(a, b) {
    if (a.n !== null && b.n !== null) return a.n - b.n;
    if (a.n !== null) return -1;
    if (b.n !== null) return 1;
    return a.t.localeCompare(b.t);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("asc");
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(key(r1.cells[col]), key(r2.cells[col]));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def inline(text: str) -> str:
    """Escape ``text`` and render its inline Markdown: `code` and **bold**.

    >>> inline("`a<b` is **bold**")
    '<code>a&lt;b</code> is <strong>bold</strong>'
    """
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _table(t: Table) -> str:
    right = t.right or (False,) * len(t.header)
    ident = f' id="{html.escape(t.name)}"' if t.name else ""
    head = "".join(f"<th>{inline(c)}</th>" for c in t.header)
    rows = "\n".join("<tr>" + "".join(f'<td class="num">{inline(c)}</td>' if r else f"<td>{inline(c)}</td>"
                                      for c, r in zip(row, right)) + "</tr>" for row in t.rows)
    return f'<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody></table></div>'


def _block(b: Block) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{inline(b.text)}</h{b.level}>"
    if isinstance(b, Text):
        return f"<p>{inline(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in b.items) + "</ul>"
    if isinstance(b, Table):
        return _table(b)
    assert isinstance(b, Image), type(b)
    alt = html.escape(b.alt)
    return f'<figure><img src="{b.data_uri()}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One HTML page of ``blocks`` with ``title`` in the browser tab; a leading level-1 heading stays the page's."""
    body = "\n".join(_block(b) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n")
