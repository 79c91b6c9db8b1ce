"""How results look for a person (rich tables and lines) and for a program (one JSON object).

One convention for accuracy: a person reads percent with the unit (`pct(0.8123)` is
'81.23 %'); JSON keeps fractions under `top1` keys and percent under `*_pct` keys.

>>> pct(0.8123), pct(None)
('81.23 %', '-')
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import typer

__all__ = ["console", "esc", "fmt", "line", "pct", "print_json", "rich_table", "say", "training_bar"]


def console():
    from rich.console import Console

    # Not a terminal (a pipe, a file, CI): wide enough that tables are not truncated.
    # No emoji codes: ":x:" in a path or a label is text. Markup is ours; values go through esc.
    return Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160)


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


def rich_table(rows: list[dict[str, Any]], title: str | None = None, columns: list[str] | None = None):
    from rich.table import Table
    from rich.text import Text

    # Text, not str: a cell or title is never parsed as markup (stored labels and paths may hold '[/]'),
    # and `line`: never a terminal control sequence.
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=Text(line(title)) if title else None, title_justify="left")
    for col in columns:
        justify = "right" if rows and isinstance(rows[0][col], (int, float)) else "left"
        table.add_column(Text(line(col)), justify=justify)
    for row in rows:
        table.add_row(*(Text(line(fmt(row[c]))) for c in columns))
    return table


@contextlib.contextmanager
def training_bar(name: str, epochs: float) -> Iterator[Callable]:
    """A transient progress bar for a training run; yields the `progress` callback `train_proxy` takes."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("epoch {task.fields[epoch]:.2f}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("loss {task.fields[loss]:.3f}  {task.fields[speed]:.0f} img/s"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(name, total=1.0, epoch=0.0, epochs=f"{epochs:g}", loss=float("nan"), speed=0.0)

        def progress(p) -> None:
            bar.update(task, completed=p.step / max(p.steps, 1), epoch=p.epoch, loss=p.train_loss, speed=p.images_per_s)

        yield progress
