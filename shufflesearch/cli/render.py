"""How results look for a person (rich tables and lines) and for a program (one JSON object).

One convention for accuracy: a person reads percent with the unit (`pct(0.8123)` is
'81.23 %'); JSON keeps fractions under `top1` keys and percent under `*_pct` keys.

>>> pct(0.8123), pct(None)
('81.23 %', '-')
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import typer

__all__ = ["FittedTable", "console", "esc", "fmt", "line", "pct", "print_json", "rich_table", "say", "training_bar"]


def console():
    from rich.console import Console

    # Not a terminal (a pipe, a file, CI): 160 columns, unless COLUMNS says otherwise (rich reads it).
    # No emoji codes: ":x:" in a path or a label is text. Markup is ours; values go through esc.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160
    return Console(highlight=False, emoji=False, width=width)


def esc(value: object) -> str:
    """A value (a path, a URL, a stored label) as literal text inside our markup: '[/]' must not parse."""
    from rich.markup import escape

    return escape(str(value))


def line(value: object) -> str:
    """Stored text (a label, a dataset name) as a terminal shows it: escapes instead of control characters, so a
    label holding ESC [2J cannot clear the screen, nor a bidi override reorder the line."""
    from ..report.text import visible

    return visible(value)


def say(message: str, err: bool = False) -> None:
    """A plain line (no markup): progress and notes go to stderr with err=True."""
    typer.echo(message, err=err)


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def pct(fraction: float | None, digits: int = 2) -> str:
    """An accuracy fraction as a person reads it: percent, with the unit."""
    return "-" if fraction is None else f"{100 * fraction:.{digits}f} %"


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def rich_table(rows: list[dict[str, Any]], title: str | None = None, columns: list[str] | None = None) -> FittedTable:
    """A table of `rows` that fits the console it is printed on without cutting a number (see FittedTable)."""
    # Text, not str: a cell or title is never parsed as markup (stored labels and paths may hold '[/]'),
    # and `line`: never a terminal control sequence.
    columns = columns or (list(rows[0]) if rows else [])
    cells = [[line(fmt(row[c])) for c in columns] for row in rows]
    return FittedTable([line(c) for c in columns], cells, line(title) if title else None)


# A token a reader takes as one value (a number, '38.5 %', '4,8,4', '240x28x28', 'g3'): never folded. A longer
# token with letters (a path, a URL) may fold, or a narrow terminal could never show it.
_NUMBER = re.compile(r"[-+~≤<>]?[\d.,]*\d(?:e[-+]?\d+)?%?")
_WHOLE_TOKEN_MAX = 24
_HEADER_WORD_MAX = 16  # a longer header word folds


def _unbreakable(token: str) -> bool:
    return bool(_NUMBER.fullmatch(token)) or (len(token) <= _WHOLE_TOKEN_MAX and any(ch.isdigit() for ch in token))


def _numeric(text: str) -> bool:
    return text == "-" or all(_NUMBER.fullmatch(t) or t == "%" for t in text.split())


class FittedTable:
    """Rows as one or more rich tables that fit the console's width, with every number whole.

    Rich shrinks an over-wide table by cutting cells ('38.5…'). Here no cell is ever cut: a column
    is at least as wide as its longest number (or other unbreakable token), text folds or wraps,
    and when even that is wider than the console, the columns are split into several tables,
    each repeating the first column (the row's name) so every value keeps its row.
    """

    def __init__(self, columns: list[str], cells: list[list[str]], title: str | None = None) -> None:
        from rich.cells import cell_len

        # A header's '_' shows as a space, so 'stage2_channels' may wrap between its words like any header.
        self.columns, self.cells, self.title = [c.replace("_", " ") for c in columns], cells, title
        columns = self.columns
        values = list(zip(*cells)) if cells else [() for _ in columns]
        self.right = [bool(v) and all(_numeric(x) for x in v) for v in values]
        self.widest = [max([cell_len(c), *(cell_len(x) for x in v)]) for c, v in zip(columns, values)]
        self.narrowest = [
            max([1, *(min(cell_len(w), _HEADER_WORD_MAX) for w in c.split()),
                 *(cell_len(t) for x in v for t in x.split() if _unbreakable(t))])
            for c, v in zip(columns, values)
        ]  # fmt: skip

    def __rich_console__(self, console, options):
        groups = self.column_groups(options.max_width)
        for n, group in enumerate(groups):
            title = self.title if n == 0 or self.title is None else f"{self.title} (continued)"
            yield self._table(group, self.widths(group, options.max_width), title)

    @staticmethod
    def overhead(n_columns: int) -> int:
        return 3 * n_columns + 1  # a border left of each column and at the end, one space of padding each side

    def column_groups(self, width: int) -> list[list[int]]:
        """Column indices per table: all in one if their narrowest widths fit, else the first column and as many
        more as fit, repeated until every column is shown."""
        indices = list(range(len(self.columns)))
        if sum(self.narrowest) + self.overhead(len(indices)) <= width or len(indices) < 2:
            return [indices]
        groups, group = [], [0]
        for i in indices[1:]:
            if len(group) > 1 and sum(self.narrowest[j] for j in [*group, i]) + self.overhead(len(group) + 1) > width:
                groups.append(group)
                group = [0]
            group.append(i)
        return [*groups, group]

    def widths(self, group: list[int], width: int) -> list[int]:
        """Each column's width: its widest cell, shrunk (widest slack first, never below its narrowest) to fit."""
        widths = [self.widest[i] for i in group]
        excess = sum(widths) + self.overhead(len(group)) - width
        while excess > 0:
            slack = [w - self.narrowest[i] for w, i in zip(widths, group)]
            k = max(range(len(group)), key=slack.__getitem__)
            if slack[k] <= 0:
                break
            widths[k] -= 1
            excess -= 1
        return widths

    def _table(self, group: list[int], widths: list[int], title: str | None):
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(title) if title else None, title_justify="left")
        for i, w in zip(group, widths):
            table.add_column(Text(self.columns[i]), justify="right" if self.right[i] else "left", width=w,
                             overflow="fold")  # fmt: skip
        for row in self.cells:
            table.add_row(*(Text(row[i]) for i in group))
        return table


@contextlib.contextmanager
def training_bar(name: str, epochs: float) -> Iterator[Callable]:
    """A transient progress bar for a training run; yields the `progress` callback `train_proxy` takes.

    Until the first step it says what is happening (loading and resizing the data), not `loss nan 0 img/s`;
    then the loss, the speed, the time spent and the time left. Under `-q` there is no bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..logs import quiet

    if quiet():
        yield lambda p: None
        return
    columns = (TextColumn("epoch {task.fields[epoch]:.2f}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("left"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(name, total=1.0, epoch=0.0, epochs=f"{epochs:g}", status="preparing the data")

        def progress(p) -> None:
            status = f"loss {p.train_loss:.3f}  {p.images_per_s:.0f} img/s" if p.step else "preparing the data"
            bar.update(task, completed=p.step / max(p.steps, 1), epoch=p.epoch, status=status)

        yield progress
