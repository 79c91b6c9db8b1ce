"""Learning curves: proxy top-1 after each epoch of every trial, the budget winners marked, pruned trials stopped.

Two steps, as in Optuna's plots: `curves_frame` turns records into rows (pure, no pixels) and
`plot_learning_curves` draws them, one panel per budget. A complete trial's curve is the one the
trainer stored (`curve`: per epoch `epoch`, `top1` on the per-epoch evaluation subset, `train_loss`);
a pruned trial stores none, so its curve is what it reported to Optuna before it was stopped
(`intermediate`: epoch -> top-1), the very numbers the pruner compared.

>>> import pandas as pd
>>> trials = pd.DataFrame({"study": ["s"], "trial": [0], "state": ["pruned"], "label": ["g3"], "budget_rank": [0],
...                        "budget_mflops": [40.0], "budget_ms": [float("nan")]})
>>> winners = pd.DataFrame({"study": [], "trial": []})
>>> curves_frame({"s": [{"trial": 0, "curve": None, "intermediate": {1: 0.5}}]}, trials, winners).top1_pct.tolist()
[50.0]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from .budgets import budget_label
from .canvas import drawn_literally, new_figure, no_data, top1_label
from .stored import chance_pct, stored_number
from .text import figure_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CURVE_COLUMNS = ["study", "trial", "budget", "budget_mflops", "budget_ms", "budget_rank", "state", "label", "epoch",
                 "top1_pct", "train_loss", "winner", "source", "chance_pct"]  # fmt: skip
PANELS_PER_ROW = 3
PRUNED_COLOR, WINNER_COLOR = "#d62728", "#1f4e9c"


class CurveFrames(Protocol):
    """What the plot reads of a report's frames (`frames.ReportFrames`, which imports this module)."""

    dataset: str
    trained_at: str
    scored_on: str
    curves: pd.DataFrame


def _finite(value: object) -> float | None:
    number = stored_number(value)
    return number if number is not None and math.isfinite(number) else None


def curve_points(record: dict) -> tuple[list[tuple[float, float | None, float | None]], str | None]:
    """(epoch, top-1 fraction, train loss) per epoch, and where they came from: "curve" or "reported".

    The stored curve wins; a record without one (a pruned trial) falls back to Optuna's intermediate
    values. Points that are not numbers (a damaged or foreign storage) are left out, not raised on."""
    stored = record.get("curve")
    if isinstance(stored, list):
        points = [(_finite(p.get("epoch")), _finite(p.get("top1")), _finite(p.get("train_loss")))
                  for p in stored if isinstance(p, dict)]  # fmt: skip
        points = [p for p in points if p[0] is not None]
        if points:
            return sorted(points, key=lambda p: p[0]), "curve"
    reported = record.get("intermediate")
    if isinstance(reported, dict):
        points = []
        for step, value in reported.items():
            try:  # JSON-backed storages give the step back as text
                epoch = _finite(float(step))
            except (TypeError, ValueError):
                epoch = None
            if epoch is not None and _finite(value) is not None:
                points.append((epoch, _finite(value), None))
        if points:
            return sorted(points, key=lambda p: p[0]), "reported"
    return [], None


def curves_frame(records_by_study: dict[str, list[dict]], trials: pd.DataFrame, winners: pd.DataFrame) -> pd.DataFrame:
    """One row per trial and epoch: top-1 (%) on the per-epoch subset, the train loss, and whether the trial
    is its budget's winner (`winners`: a study and trial per budget, the best frame's searched rows).
    `trials` gives each trial's budget and state."""
    won = {(w.study, int(w.trial)) for w in winners.itertuples() if pd.notna(w.trial)}
    by_trial = {(t.study, int(t.trial)): t for t in trials.itertuples() if pd.notna(t.trial)}
    rows = []
    for study, records in records_by_study.items():
        for record in records:
            number = record.get("trial")
            t = by_trial.get((study, number)) if type(number) is int else None
            if t is None:
                continue
            points, source = curve_points(record)
            rank = int(t.budget_rank) if pd.notna(t.budget_rank) else None
            chance = chance_pct(record)
            for epoch, top1, loss in points:
                rows.append({"study": study, "trial": number, "budget": budget_label(t.budget_mflops, t.budget_ms),
                             "budget_mflops": t.budget_mflops, "budget_ms": t.budget_ms, "budget_rank": rank,
                             "state": t.state, "label": t.label, "epoch": epoch,
                             "top1_pct": round(100 * top1, 2) if top1 is not None else None, "train_loss": loss,
                             "winner": (study, number) in won, "source": source, "chance_pct": chance})  # fmt: skip
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    for col in ("budget_mflops", "budget_ms", "epoch", "top1_pct", "train_loss", "chance_pct"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in ("trial", "budget_rank"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame["winner"] = frame["winner"].astype(bool)
    return frame.sort_values(["budget_rank", "study", "trial", "epoch"], kind="stable").reset_index(drop=True)


def _panels(curves: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per budget, in budget order; the study is named where two studies share a budget label."""
    drawn = curves[curves.top1_pct.notna()]
    keys = drawn[["study", "budget_rank", "budget"]].drop_duplicates()
    shared = keys.budget.duplicated(keep=False)
    panels = []
    for (study, rank, budget), same in zip(keys.itertuples(index=False), shared):
        rows = drawn[(drawn.study == study) & (drawn.budget_rank.fillna(-1) == (-1 if pd.isna(rank) else rank))]
        panels.append((f"{budget} ({figure_text(study)})" if same else budget, rows))
    return panels


@drawn_literally
def plot_learning_curves(frames: CurveFrames, fig: Figure | None = None) -> Figure:
    """Top-1 vs epoch for every trial, one panel per budget: grey complete trials, the winner in thick colour,
    pruned trials dashed red and ending in an x where the pruner stopped them, and chance where it is known."""
    panels = _panels(frames.curves)
    cols = min(PANELS_PER_ROW, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = fig or new_figure(4.2 * cols + 1.0 if panels else 9.0, 3.6 * rows + 0.8 if panels else 4.0)
    if not panels:
        no_data(fig.add_subplot(), "No learning curves stored: no trial has finished an epoch.")
        return fig
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    fig.suptitle("Learning curves: proxy top-1 after each epoch, per budget")
    for i, (ax, (title, rows_here)) in enumerate(zip(axes, panels)):
        _draw_panel(ax, title, rows_here)
        if i % cols == 0:
            ax.set_ylabel(
                top1_label(frames.dataset, "top-1 (%), per-epoch subset", frames.trained_at, frames.scored_on),
                fontsize=8,
            )
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig


def _draw_panel(ax: Axes, title: str, rows: pd.DataFrame) -> None:
    from matplotlib.ticker import MaxNLocator

    shown: set[str] = set()

    def once(name: str) -> str:  # one legend entry per kind of line
        label = "_" + name if name in shown else name
        shown.add(name)
        return label

    for (_, number), line in rows.groupby(["study", "trial"], sort=True):
        state, winner = line.state.iloc[0], bool(line.winner.iloc[0])
        if winner:
            name = f"winner: {figure_text(line.label.iloc[0])} (trial {number})"
            ax.plot(line.epoch, line.top1_pct, color=WINNER_COLOR, lw=2.4, marker="o", ms=4, label=once(name), zorder=4)
        elif state == "pruned":
            ax.plot(line.epoch, line.top1_pct, color=PRUNED_COLOR, lw=1, ls="--", alpha=0.8, zorder=3)
            ax.plot(line.epoch.iloc[-1:], line.top1_pct.iloc[-1:], color=PRUNED_COLOR, marker="x", ms=8, mew=2,
                    ls="none", label=once("pruned (x: stopped here)"), zorder=3)  # fmt: skip
        elif state == "complete":
            ax.plot(line.epoch, line.top1_pct, color="grey", lw=1, alpha=0.55, marker="o", ms=2.5,
                    label=once("complete trial"), zorder=2)  # fmt: skip
        else:  # running, or failed after some epochs
            ax.plot(line.epoch, line.top1_pct, color="grey", lw=1, ls=":", label=once("unfinished"), zorder=1)
    chance = rows.chance_pct.dropna().unique()
    if len(chance) == 1:  # one dataset in the panel: where learning nothing lands
        ax.axhline(chance[0], color="black", ls=":", lw=1, label=f"chance ({chance[0]:g} %)", zorder=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, float(rows.epoch.max()) * 1.04 + 0.1)  # from the start of training, even after one epoch
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


__all__ = ["curve_points", "curves_frame", "plot_learning_curves"]
