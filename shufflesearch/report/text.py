"""Stored text (labels, dataset and worker names: anyone with access to a storage writes them) made safe to show.

One function per place text lands: `visible` for a terminal or a figure (no control, bidi or surrogate
characters, so nothing moves the cursor, reorders a line or fails to encode), `figure_text` for matplotlib
(also cut short; `plots.literal_text` turns mathtext and TeX off), `markdown_cell` for a Markdown table.
HTML goes through `html.escape` (html.py), CSV through `tables.spreadsheet_safe`.

>>> visible("a\\x1b[2Jb\\u202ec")
'a\\\\x1b[2Jb\\\\u202ec'
>>> markdown_cell("<b>x</b> | `y`")
'&lt;b&gt;x&lt;/b&gt; \\\\| \\\\`y\\\\`'
"""

from __future__ import annotations

import re
import unicodedata

FIGURE_CHARS = 60  # a label longer than this is cut on a figure (tables keep it whole)
# Control, format (bidi overrides, zero-width), surrogate, private, unassigned; line and paragraph separators.
# Other spaces (no-break, ideographic) are shown as they are: they only look like a space.
_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(value: object, limit: int | None = None) -> str:
    """`value` as text: control, format (bidi, zero-width) and surrogate characters as escapes; cut at `limit`."""
    text = str(value)
    if not text.isprintable():  # fast path: almost every label is plain
        text = "".join(_escape(c) if unicodedata.category(c) in _HIDDEN else c for c in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def figure_text(value: object) -> str:
    """Text for a figure: `visible` and at most FIGURE_CHARS long. Drawn literally inside `plots.literal_text`."""
    return visible(value, FIGURE_CHARS)


_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """`text` with lone surrogates (JSON may hold "\\udcff") as U+FFFD, so every output can write it as UTF-8."""
    return text if text.isprintable() else _SURROGATE.sub("\ufffd", text)


# Markdown's inline syntax: backslash escapes for its own characters, entities for HTML's. `_` between two
# letters or digits opens no emphasis (CommonMark), so `shufflenet_v1_x0_5_g3` stays readable.
_MARKDOWN = re.compile(r"[\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def markdown_cell(value: object) -> str:
    """One table cell of Markdown that renders as the text itself: no HTML, link, code, emphasis or column break.

    Line breaks and other control characters become escapes, like `visible`'s (a cell is one line)."""
    text = visible(value)
    # Other blanks (no-break, em, ideographic spaces) as numeric entities: a cell's edges are trimmed of them
    text = "".join(_ENTITIES.get(c) or (f"&#{ord(c)};" if c.isspace() and c not in " \t" else c) for c in text)
    return _MARKDOWN.sub(lambda m: "\\" + m.group(0), text)


__all__ = ["FIGURE_CHARS", "encodable", "figure_text", "markdown_cell", "visible"]
