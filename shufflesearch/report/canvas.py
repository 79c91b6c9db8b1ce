"""What every report plot shares: literal text, standalone Agg figures, axis labels, log axes, colours.

Text from a study (labels, dataset, study and latency-kind names) goes through `figure_text`, and
everything is drawn inside `literal_text`: a label `$\\frac{$` is shown as typed, never parsed as
mathtext (which raised) or handed to TeX. matplotlib is imported only when a figure is made.

>>> ax = new_figure().add_subplot()  # doctest: +SKIP
>>> with literal_text():  # doctest: +SKIP
...     ax.figure.savefig("plot.png")
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from .text import figure_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GROUP_COLORS = {1: "#1b9e77", 2: "#d95f02", 3: "#7570b3", 4: "#e7298a", 8: "#66a61e"}
MFLOPS_LABEL = "MFLOPs (multiply-adds at 224 px, as in the paper)"

# Drawn text is text: no mathtext (`$...$`), no TeX (a user's matplotlibrc may turn it on).
LITERAL_RC = {"text.parse_math": False, "text.usetex": False}


@contextlib.contextmanager
def literal_text() -> Iterator[None]:
    """Draw and save inside this: every Text artist made here (tick labels are made while saving) is literal.

    Glyphs a font lacks (emoji, scripts beyond DejaVu Sans) are drawn as boxes without a warning per glyph."""
    import matplotlib

    with matplotlib.rc_context(LITERAL_RC), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        yield


def drawn_literally(plot):
    """A plot function whose artists are made inside `literal_text`."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with literal_text():
            return plot(*args, **kwargs)

    return wrapper


def new_figure(width: float = 9.0, height: float = 5.5) -> Figure:
    """A standalone Agg figure: no pyplot state, safe in threads and servers."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def axes_or_new(ax: Axes | None, width: float = 9.0, height: float = 5.5) -> Axes:
    return ax if ax is not None else new_figure(width, height).add_subplot()


def top1_label(dataset: str, what: str = "proxy top-1 (%)", trained_at: str | None = None,
               scored_on: str | None = None) -> str:  # fmt: skip
    """The accuracy axis: what it is, on which data and split, at which training resolution (MFLOPs count 224 px).

    >>> top1_label("fashion-mnist", trained_at="48 px", scored_on="validation")
    'proxy top-1 (%) on fashion-mnist validation images, trained at 48 px (not ImageNet)'
    """
    at = f", trained at {figure_text(trained_at)}" if trained_at and trained_at != "?" else ""
    split = f" {figure_text(scored_on)} images" if scored_on and scored_on != "?" else ""
    return f"{what} on {figure_text(dataset)}{split}{at} (not ImageNet)"


def log_if_wide(ax: Axes, values: pd.Series, axis: str = "x") -> None:
    """A log axis when the data spans more than 4x, with plain-number ticks at 1, 2, 5 x 10^k."""
    values = values[values > 0]
    if not len(values) or values.max() / values.min() <= 4:
        return
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def budget_ticks(ax: Axes, values: list[float], labels: list[str], axis: str = "x") -> None:
    """Name budget lines on the opposite axis (top or right), where no data point or point label can sit."""
    if not values:
        return
    extra = ax.secondary_xaxis("top") if axis == "x" else ax.secondary_yaxis("right")
    extra.set_ticks(values, labels, fontsize=8, color="dimgrey")
    extra.tick_params(length=3, color="grey")
    extra.minorticks_off()


def no_data(ax: Axes, message: str) -> Axes:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=12, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


__all__ = ["literal_text", "new_figure"]
