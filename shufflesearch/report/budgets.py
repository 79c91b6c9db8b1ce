"""A study's budgets as the report bins trials: MFLOPs windows, latency windows (ms), or both.

Each (study, budget) is one bin: a per-budget study is one bin (its window), a Pareto study is cut
at the paper's MFLOPs ladder. A bin is named by what bounds it, so a latency-only budget reads
"≤ 7.7 ms", never as the search space's whole MFLOPs range. Study attributes used: `mode`,
`window_mflops`, `window_latency_ms`, `budgeted` (which of "mflops", "latency_ms" bound the
study; without it, MFLOPs and whatever latency window is stored) and `objectives` (whether the
study ranks by top-1 or by loss: `rank_by`).

>>> frame = budgets_frame(["s-7.7ms"], {"s-7.7ms": {"window_mflops": [0, 419], "window_latency_ms": [4.6, 7.7],
...                                                 "budgeted": ["latency_ms"]}})
>>> frame.budget.tolist(), frame.budget_mflops.isna().tolist()
(['≤ 7.7 ms'], [True])
"""

from __future__ import annotations

import math

import pandas as pd

from ..paper import TABLE2_BUDGETS_MFLOPS
from ..search.results import budgeted_axes
from ..search.standing import ranked_by
from .stored import stored_text, stored_window

BUDGET_COLUMNS = ["study", "mode", "budget", "budget_mflops", "budget_ms", "lo_mflops", "hi_mflops", "lo_ms", "hi_ms",
                  "rank_by", "rank"]  # fmt: skip


def budget_label(mflops: float | None, ms: float | None, short: bool = False) -> str:
    """'≤ 40 MFLOPs', '≤ 7.7 ms' or both; `short` for plots: '≤40M', '≤7.7ms'."""
    parts = []
    if _given(mflops):
        parts.append(f"≤{mflops:g}M" if short else f"≤ {mflops:g} MFLOPs")
    if _given(ms):
        parts.append(f"≤{ms:g}ms" if short else f"≤ {ms:g} ms")
    return (" " if short else " and ").join(parts) or "no budget"


def _given(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def budgets_frame(studies, study_attrs: dict[str, dict]) -> pd.DataFrame:
    """(study, budget) bins, ordered by budget; `rank` is a bin's position (trials carry it to their bin)."""
    rows = []
    for study in studies:
        attrs = study_attrs.get(study, {})
        lo, hi = stored_window(attrs.get("window_mflops")) or (0.0, float("inf"))
        ms = stored_window(attrs.get("window_latency_ms"))
        axes = budgeted_axes(attrs)
        lo_ms, hi_ms = ms if ms and "latency_ms" in axes else (None, None)
        mode = stored_text(attrs.get("mode")) or "per-budget"
        edges = [b for b in TABLE2_BUDGETS_MFLOPS if lo < b < hi] if mode == "pareto" else []
        for prev, top in zip([lo, *edges], [*edges, hi]):
            shown = top if "mflops" in axes or mode == "pareto" else None
            rows.append({"study": study, "mode": mode, "budget": budget_label(shown, hi_ms), "budget_mflops": shown,
                         "budget_ms": hi_ms, "lo_mflops": prev, "hi_mflops": top, "lo_ms": lo_ms, "hi_ms": hi_ms,
                         "rank_by": ranked_by(attrs)})  # fmt: skip
    frame = pd.DataFrame(rows, columns=BUDGET_COLUMNS[:-1])
    for col in ("budget_mflops", "budget_ms", "lo_ms", "hi_ms"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame = frame.sort_values(["budget_mflops", "budget_ms", "study"], kind="stable", na_position="first")
    frame = frame.reset_index(drop=True)
    frame["rank"] = range(len(frame))
    return frame


def bin_of(bins: pd.DataFrame, mflops: float | None) -> int | None:
    """The `rank` of the study's bin that holds `mflops` (`bins`: that study's rows, ascending)."""
    if len(bins) == 1:
        return int(bins["rank"].iloc[0])
    if mflops is None:
        return None
    return next((int(rank) for hi, rank in zip(bins.hi_mflops, bins["rank"]) if mflops <= hi + 1e-9), None)
