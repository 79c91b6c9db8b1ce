"""The offline report page: one self-contained HTML file, relative image paths, no script.

Every piece of text that came from a study (names, labels, worker hosts, notes) goes
through `html.escape`, so a study called `<script>` shows as text.

>>> page = render_page("r", ["1 study"], [], [], [])
>>> "<h1>r</h1>" in page
True
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

GENERATOR = "shufflesearch report"  # also marks a folder as ours, so a rebuild may replace it


@dataclass(frozen=True)
class PlotEntry:
    title: str
    png: str  # path relative to index.html
    svg: str
    caption: str


@dataclass(frozen=True)
class TableEntry:
    title: str
    rows: list[dict]
    csv: str  # paths relative to index.html
    markdown: str
    caption: str = ""
    collapsed: bool = False  # long tables sit in a <details> element (native, no script)
    lead: bool = False  # shown right after the summary, before the plots: the answer comes first


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 1.5rem 3rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #666; font-size: .9rem; }
.notes { background: #fff6d6; border: 1px solid #e6c65c; padding: .6rem 1rem; border-radius: 4px; }
.notes li { margin: .2rem 0; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .82rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .45rem; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
nav a { margin-right: .8rem; } .links { font-size: .85rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def format_cell(value: object) -> str:
    """Text for one cell: blank for missing, integers without '.0', other floats as stored (already rounded)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else format(value, ".10g")
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return ""
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return str(value)


def render_table(rows: list[dict]) -> str:
    if not rows:
        return "<p><em>No rows.</em></p>"
    header = list(rows[0])
    out = [
        '<div class="scroll"><table>',
        "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>",
    ]
    out.append("<tbody>")
    for row in rows:
        cells = []
        for key in header:
            value = row.get(key)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cells.append(
                f'<td class="num">{_e(format_cell(value))}</td>' if numeric else f"<td>{_e(format_cell(value))}</td>"
            )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _anchor(title: str, kind: str) -> str:
    """A unique id per section: a plot and a table may share a title."""
    return kind + "-" + "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def render_page(
    title: str, summary: list[str], notes: list[str], plots: list[PlotEntry], tables: list[TableEntry],
    generated: str = "",
) -> str:  # fmt: skip
    """The whole page as a string (pure; `build_report` writes it)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="{_e(GENERATOR)}">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(generated)}</p>' if generated else "",
        "<p>Accuracy here is <strong>proxy top-1</strong>: a short training run on the study's dataset, "
        "used to rank architectures. It is not ImageNet accuracy. MFLOPs are multiply-adds at 224 px, "
        "1000 classes, as in the ShuffleNet paper.</p>",
    ]
    if notes:
        parts.append('<div class="notes"><strong>Read first</strong><ul>')
        parts += [f"<li>{_e(n)}</li>" for n in notes]
        parts.append("</ul></div>")
    parts.append('<h2 id="summary">Summary</h2><ul>' + "".join(f"<li>{_e(s)}</li>" for s in summary) + "</ul>")
    nav = [(t.title, _anchor(t.title, "table")) for t in tables if t.lead]
    nav += [(f"{p.title} (plot)", _anchor(p.title, "plot")) for p in plots]
    nav += [(t.title, _anchor(t.title, "table")) for t in tables if not t.lead]
    parts.append("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for t, a in nav) + "</nav>")
    parts += [_table_html(t) for t in tables if t.lead]
    if plots:
        parts.append('<h2 id="plots">Plots</h2>')
    for p in plots:
        parts.append(
            f'<figure id="{_anchor(p.title, "plot")}"><img src="{_e(p.png)}" alt="{_e(p.title)}" loading="eager">'
            f"<figcaption><strong>{_e(p.title)}.</strong> {_e(p.caption)} "
            f'<span class="links">(<a href="{_e(p.svg)}">SVG</a>, <a href="{_e(p.png)}">PNG</a>)</span>'
            "</figcaption></figure>"
        )
    parts.append('<h2 id="tables">Tables</h2>')
    parts += [_table_html(t) for t in tables if not t.lead]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def _table_html(t: TableEntry) -> str:
    links = f'<span class="links">(<a href="{_e(t.csv)}">CSV</a>, <a href="{_e(t.markdown)}">Markdown</a>)</span>'
    level = "h2" if t.lead else "h3"
    head = f'<{level} id="{_anchor(t.title, "table")}">{_e(t.title)} {links}</{level}>'
    caption = f"<p>{_e(t.caption)}</p>" if t.caption else ""
    body = render_table(t.rows)
    if t.collapsed:
        body = f"<details><summary>Show all {len(t.rows)} rows</summary>{body}</details>"
    return head + caption + body
