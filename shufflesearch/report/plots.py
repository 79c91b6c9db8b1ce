"""Report DataFrames -> matplotlib Axes. No computation beyond layout, no pyplot, no `show()`.

Each `plot_*` draws on the Axes it is given (or on a new Agg figure) and returns the Axes,
so a notebook can compose them and `build_report` can save them. Accuracy is labelled
as what it is: proxy top-1 on the study's dataset, not ImageNet. What all plots share (literal
text, Agg figures, labels, log axes) is in `canvas`; the learning curves and the parameter
importance, each with the pure function that builds its data, have their own modules.

>>> from shufflesearch.report.frames import build_frames
>>> ax = plot_accuracy_vs_mflops(build_frames({}, {}))  # doctest: +SKIP
>>> with literal_text():  # doctest: +SKIP
...     ax.figure.savefig("accuracy_vs_mflops.png")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .budgets import budget_label
from .canvas import (
    GROUP_COLORS,
    MFLOPS_LABEL,
    axes_or_new,
    budget_ticks,
    drawn_literally,
    literal_text,
    log_if_wide,
    new_figure,
    no_data,
    top1_label,
)
from .frames import PAPER, ReportFrames
from .importance import plot_parameter_importance
from .learning_curves import plot_learning_curves
from .text import figure_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LATENCY_MARKERS = {"measured": ("o", "measured"), "lut-predicted": ("s", "LUT-predicted (estimate)"),
                   "lut-estimated": ("D", "LUT-estimated (arm64-emulated)"),
                   "emulated-estimate": ("^", "emulated ARM (estimate)")}  # fmt: skip
STAGE_COLORS = ("#bbbbbb", "#4c72b0", "#55a868", "#c44e52", "#8172b2")


@drawn_literally
def plot_accuracy_vs_mflops(frames: ReportFrames, ax: Axes | None = None) -> Axes:
    """Complete trials by group count, the Pareto front, the budgets and the paper's models."""
    ax = axes_or_new(ax)
    ax.set_title("Proxy accuracy vs MFLOPs: searched trials, Pareto front, paper models")
    done = frames.trials[(frames.trials.state == "complete") & frames.trials.top1_pct.notna()]
    if done.empty:
        return no_data(ax, "No complete trials yet: nothing to plot.")
    for g, grp in done.groupby("groups", sort=True):
        ax.scatter(grp.mflops, grp.top1_pct, s=22, alpha=0.65, color=GROUP_COLORS.get(int(g), "grey"),
                   label=f"trials, g={int(g)}", zorder=2)  # fmt: skip
    front = frames.front  # steps between its points and a ring on each: a one-point front is still drawn
    ax.step(front.mflops, front.top1_pct, where="post", color="black", lw=1.5, marker="o", ms=9, mfc="none",
            mew=1.2, label="Pareto front", zorder=3)  # fmt: skip
    papers = frames.best[frames.best.kind == PAPER].sort_values("top1_pct", na_position="last").drop_duplicates("name")
    # A paper model not trained here has no proxy accuracy: any height would be made up, and Table 2's models
    # of one budget sit within a few MFLOPs of each other, so their names would overprint on a rug. The
    # best_per_budget table lists them; the plot shows only what was measured.
    trained = papers[papers.top1_pct.notna()]
    if len(trained):
        ax.scatter(trained.mflops, trained.top1_pct, marker="*", s=160, facecolor="gold", edgecolor="black",
                   label="paper model (trained here)", zorder=4)  # fmt: skip
    budgets = sorted(set(frames.budgets.budget_mflops.dropna()))  # a latency budget is not a line in MFLOPs
    for budget in budgets:
        ax.axvline(budget, color="grey", ls="--", lw=1, zorder=1)
    log_if_wide(ax, pd.concat([done.mflops, trained.mflops, pd.Series(budgets, dtype=float)]))
    # Named on the top axis, not beside the line inside the plot, where a point's label may sit.
    budget_ticks(ax, budgets, [f"budget {b:g}M" for b in budgets])
    ax.get_xlim(), ax.get_ylim()  # settle the limits the names are placed by
    to_axes = ax.transData + ax.transAxes.inverted()
    for p in trained.itertuples():
        at_right = to_axes.transform((p.mflops, p.top1_pct))[0] > 0.85  # a name there would run off the axes
        ax.annotate(_short(p.label), (p.mflops, p.top1_pct), xytext=(-5 if at_right else 5, 4), fontsize=7,
                    textcoords="offset points", ha="right" if at_right else "left")  # fmt: skip
    ax.set_xlabel(MFLOPS_LABEL)
    ax.set_ylabel(top1_label(frames.dataset, trained_at=frames.trained_at, scored_on=frames.scored_on))
    ax.grid(True, alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def _short(label: str) -> str:
    """'g3 x0.5 [4,8,4] 224px' -> 'g3 x0.5': enough to name a paper model on a plot."""
    return figure_text(" ".join(str(label).split()[:2]))


@drawn_literally
def plot_accuracy_vs_groups(frames: ReportFrames, ax: Axes | None = None) -> Axes:
    """Best (line) and every (dots) proxy top-1 per group count, one colour per budget."""
    ax = axes_or_new(ax)
    ax.set_title("Proxy accuracy vs group count at each budget (the paper's Table 2 question)")
    table = frames.groups
    if table.empty:
        return no_data(ax, "No complete trials yet: nothing to plot.")
    groups = sorted({int(g) for g in table.groups})
    pos = {g: i for i, g in enumerate(groups)}
    done = frames.trials[(frames.trials.state == "complete") & frames.trials.top1_pct.notna()]
    multi = frames.budgets.study.nunique() > 1 and frames.budgets["mode"].eq("pareto").any()
    shown = [b for b in frames.budgets.itertuples() if ((table.study == b.study) & (table.budget == b.budget)).any()]
    for i, b in enumerate(shown):
        color = f"C{i % 10}"
        name = b.budget + (f" ({figure_text(b.study)})" if multi else "")
        grp = table[(table.study == b.study) & (table.budget == b.budget)]
        pts = done[(done.study == b.study) & (done.budget_rank == b.rank)]
        jitter = (i - len(shown) / 2) * 0.04
        ax.scatter([pos[int(g)] + jitter for g in pts.groups], pts.top1_pct, color=color, alpha=0.35, s=14)
        ax.plot([pos[g] for g in grp.groups], grp.best_top1_pct, marker="o", color=color, label=f"best, {name}")
    ax.set_xticks(range(len(groups)), [f"g={g}" for g in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_xlabel("groups in the pointwise (1x1) convolutions")
    ax.set_ylabel(top1_label(frames.dataset, trained_at=frames.trained_at, scored_on=frames.scored_on))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="dots: every trial", title_fontsize=8)
    return ax


@drawn_literally
def plot_latency_vs_mflops(frames: ReportFrames, ax: Axes | None = None) -> Axes:
    """Latency of complete trials against MFLOPs: colour per group count, marker per kind (measured or an
    estimate), the fit per group and kind of `latency_groups` (time at equal MFLOPs), and the budgets."""
    ax = axes_or_new(ax)
    ax.set_title("Latency vs MFLOPs by group count (batch 1): where MFLOPs are not latency")
    lat = frames.latency
    if lat.empty:
        return no_data(ax, "No latency in these studies: they optimise MFLOPs only.")
    for (kind, g), grp in lat.groupby(["latency_kind", "groups"], sort=True):
        marker, name = LATENCY_MARKERS.get(kind, ("x", f"{figure_text(kind)} (unlabelled)"))
        color = GROUP_COLORS.get(int(g), "grey")
        ax.scatter(grp.mflops, grp.latency_ms, marker=marker, s=26, alpha=0.7, color=color, label=f"g={int(g)}, {name}")
    span = pd.Series([lat.mflops.min() * 0.9, lat.mflops.max() * 1.1])
    for row in frames.latency_groups.itertuples():  # the per-group fit that latency_by_groups compares
        fit = row.ms_at_common_mflops * (span / row.common_mflops) ** row.mflops_exponent
        ax.plot(span, fit, color=GROUP_COLORS.get(int(row.groups), "grey"), lw=1, alpha=0.6)
    ms_budgets = sorted(set(frames.budgets.budget_ms.dropna()))
    for ms in ms_budgets:
        ax.axhline(ms, color="grey", ls="--", lw=1, zorder=1)
    mflops_budgets = sorted(set(frames.budgets.budget_mflops.dropna()))
    for mflops in mflops_budgets:
        ax.axvline(mflops, color="grey", ls=":", lw=1, zorder=1)
    log_if_wide(ax, lat.mflops)
    log_if_wide(ax, lat.latency_ms, axis="y")
    # Budgets named on the free axes (right, top), never over a point.
    budget_ticks(ax, ms_budgets, [f"budget {ms:g} ms" for ms in ms_budgets], axis="y")
    budget_ticks(ax, mflops_budgets, [f"{m:g}M" for m in mflops_budgets])
    ax.set_xlabel(MFLOPS_LABEL)
    ax.set_ylabel("latency (ms; the marker says measured or estimated)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


@drawn_literally
def plot_stage_costs(frames: ReportFrames, ax: Axes | None = None) -> Axes:
    """Stacked horizontal bars: where each budget's winner spends its multiply-adds."""
    table = frames.stages
    ax = axes_or_new(ax, height=max(3.0, 1.2 + 0.55 * len(table)))
    ax.set_title("Where the winners spend their MFLOPs (closed-form count per stage)")
    if table.empty:
        return no_data(ax, "No winner yet: nothing to break down.")
    stage_cols = [c for c in table.columns if c.endswith("_mflops") and c not in ("budget_mflops", "mflops")]
    names = [f"{budget_label(m, ms, short=True)} {figure_text(lab)}"
             for m, ms, lab in zip(table.budget_mflops, table.budget_ms, table.label)]  # fmt: skip
    rows = range(len(table))  # positions, not names as categories: two winners may share a label
    left = pd.Series(0.0, index=table.index)
    for col, color in zip(stage_cols, STAGE_COLORS * 2):
        ax.barh(rows, table[col].fillna(0), left=left, color=color, label=col.removesuffix("_mflops"))
        left += table[col].fillna(0)
    for y, total in enumerate(table.mflops):
        ax.annotate(f"{total:.1f}", (total, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(rows, names)
    ax.invert_yaxis()
    ax.set_xlabel(MFLOPS_LABEL)
    ax.set_xlim(0, float(table.mflops.max()) * 1.12)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="stage", title_fontsize=8)
    return ax


@drawn_literally
def plot_history(frames: ReportFrames, fig: Figure | None = None) -> Figure:
    """Best proxy top-1 so far per study; beside it the hypervolume of Pareto studies."""
    hist = frames.history
    has_hv = hist.hypervolume.notna().any()
    fig = fig or new_figure(12.0 if has_hv else 9.0, 5.0)
    axes = fig.subplots(1, 2) if has_hv else [fig.add_subplot()]
    ax = axes[0]
    ax.set_title("Optimisation history: best proxy top-1 so far")
    if hist.top1_pct.notna().sum() == 0:
        no_data(ax, "No complete trials yet: nothing to plot.")
        return fig
    order = frames.budgets.groupby("study")["rank"].max().sort_values(kind="stable").index  # legend by budget
    for i, study in enumerate(s for s in order if s in set(hist.study)):
        grp = hist[hist.study == study]
        color = f"C{i % 10}"
        ax.scatter(grp.trial, grp.top1_pct, s=10, alpha=0.3, color=color)
        ax.step(grp.trial, grp.best_top1_pct, where="post", color=color, label=figure_text(study))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel(top1_label(frames.dataset, trained_at=frames.trained_at, scored_on=frames.scored_on))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="dots: each complete trial", title_fontsize=8)
    if has_hv:
        ax2 = axes[1]
        for study, grp in hist[hist.hypervolume.notna()].groupby("study", sort=True):
            ax2.step(grp.trial, grp.hypervolume, where="post", label=figure_text(study))
        ax2.set_title("Hypervolume (Pareto studies)")
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_xlabel("trial number")
        ax2.set_ylabel("share of [0, max MFLOPs] x [0, 100 %] dominated")
        ax2.grid(True, alpha=0.3)
        ax2.legend(fontsize=8)
    return fig


__all__ = [
    "literal_text",
    "new_figure",
    "plot_accuracy_vs_groups",
    "plot_accuracy_vs_mflops",
    "plot_history",
    "plot_latency_vs_mflops",
    "plot_learning_curves",
    "plot_parameter_importance",
    "plot_stage_costs",
]
