"""Optimisation history: per study in trial order, the best proxy top-1 so far and (Pareto studies) the hypervolume.

>>> hypervolume([(10.0, 50.0)], 20.0)
0.25
"""

from __future__ import annotations

import pandas as pd


def hypervolume(points: list[tuple[float, float]], ref_mflops: float) -> float:
    """Share of the box [0, ref_mflops] x [0, 100 %] dominated by (mflops, top1_pct) points; 0..1."""
    inside = sorted((m, a) for m, a in points if m <= ref_mflops and a > 0)
    area, best = 0.0, 0.0
    for m, a in inside:  # each new front point adds the strip between the best accuracy so far and its own
        if a > best:
            area += (ref_mflops - m) * (a - best)
            best = a
    return area / (ref_mflops * 100.0) if ref_mflops > 0 else 0.0


def history_frame(trials: pd.DataFrame, budgets: pd.DataFrame) -> pd.DataFrame:
    """Per study in trial order: the trial's proxy top-1, the best so far and (Pareto studies) the hypervolume."""
    rows = []
    pareto_studies = set(budgets[budgets["mode"] == "pareto"].study)
    for study, group in trials.groupby("study", sort=True):
        ref = float(budgets[budgets.study == study].hi_mflops.max())
        best, points = None, []
        for t in group.sort_values("trial").itertuples():
            ok = t.state == "complete" and pd.notna(t.top1_pct)
            if ok:
                best = t.top1_pct if best is None else max(best, t.top1_pct)
                if pd.notna(t.mflops):
                    points.append((t.mflops, t.top1_pct))
            hv = round(hypervolume(points, ref), 5) if study in pareto_studies else None
            rows.append({"study": study, "trial": t.trial, "state": t.state, "top1_pct": t.top1_pct if ok else None,
                         "best_top1_pct": best, "hypervolume": hv})  # fmt: skip
    return pd.DataFrame(rows, columns=["study", "trial", "state", "top1_pct", "best_top1_pct", "hypervolume"])
