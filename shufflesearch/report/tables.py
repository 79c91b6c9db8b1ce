"""Render rows (a list of flat dicts) as CSV or Markdown, chosen by file extension."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import UsageError
from .text import markdown_cell

TABLE_FORMATS = {".csv": "csv", ".md": "markdown"}


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict]) -> str:
    """A Markdown table; every cell (and header) is text, never HTML, a link or a column break (`markdown_cell`)."""
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(markdown_cell(row[k]) for k in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_table(rows: list[dict], path: str | Path) -> str:
    """CSV or Markdown text for `path`'s extension; ValueError names the supported ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise TableFormatError(
            f"cannot write a table to {str(path)!r}: use a name ending in {' or '.join(TABLE_FORMATS)}"
        )
    return to_csv(rows) if TABLE_FORMATS[suffix] == "csv" else to_markdown(rows)


class TableFormatError(UsageError):
    """An output path whose extension names no table format we write."""


def frame_rows(frame) -> list[dict]:
    """A pandas DataFrame as rows of plain Python values, missing values as None (duck-typed: no pandas import)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(rows: list[dict]) -> list[dict]:
    """Rows whose text cells cannot run as spreadsheet formulas: a leading '=', '+', '-', '@' gets a quote.

    Study names come from a database anyone with access can write; a CSV opened in a
    spreadsheet must not execute them (OWASP "CSV injection").
    """
    return [{k: _defused(v) for k, v in row.items()} for row in rows]


def _defused(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
