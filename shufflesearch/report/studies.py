"""Per study: its mode, budget windows, trial counts and state, and what a reader must not mistake for results."""

from __future__ import annotations

import pandas as pd

from ..search.results import TrialRecord, budgeted_axes
from .stored import stored_text, stored_window


def studies_frame(records_by_study: dict[str, list[TrialRecord]], study_attrs: dict[str, dict]) -> pd.DataFrame:
    """One row per study: mode, its budget windows (MFLOPs, ms: blank where that does not bound it), trial
    counts, and whether it is finished, running, empty or failed."""
    rows = []
    for study, records in records_by_study.items():
        attrs = study_attrs.get(study, {})
        states = [r.get("state") for r in records]
        n = {s: states.count(s) for s in ("complete", "pruned", "fail", "running", "waiting")}
        axes, mode = budgeted_axes(attrs), stored_text(attrs.get("mode")) or "per-budget"
        mflops = stored_window(attrs.get("window_mflops")) if "mflops" in axes or mode == "pareto" else None
        ms = stored_window(attrs.get("window_latency_ms")) if "latency_ms" in axes else None
        candidates = attrs.get("candidates")
        rows.append({"study": study, "mode": mode, "lo_mflops": mflops[0] if mflops else None,
                     "hi_mflops": mflops[1] if mflops else None, "lo_ms": ms[0] if ms else None,
                     "hi_ms": ms[1] if ms else None, "candidates": candidates if type(candidates) is int else None,
                     "trials": len(records), "complete": n["complete"], "pruned": n["pruned"], "failed": n["fail"],
                     "running": n["running"], "waiting": n["waiting"], "state": _study_state(n, len(records))})  # fmt: skip
    return pd.DataFrame(rows, columns=["study", "mode", "lo_mflops", "hi_mflops", "lo_ms", "hi_ms", "candidates",
                                       "trials", "complete", "pruned", "failed", "running", "waiting", "state"])  # fmt: skip


def _study_state(n: dict[str, int], total: int) -> str:
    if total == 0:
        return "empty"
    if n["running"] or n["waiting"]:
        return "running"
    if n["fail"] == total:
        return "failed"
    return "finished"


def status_notes(studies: pd.DataFrame) -> list[str]:
    """Plain sentences for studies a reader must not mistake for finished results."""
    if studies.empty:
        return ["No studies found: nothing has been searched yet, so there is nothing to report."]
    notes = []
    for s in studies.itertuples():
        if s.state == "empty":
            notes.append(f"Study {s.study} has no trials yet.")
        elif s.state == "failed":
            notes.append(f"Study {s.study} has only failed trials ({s.failed}): no results to show.")
        elif s.state == "running":
            notes.append(f"Study {s.study} is not finished ({s.running} running, {s.waiting} waiting, "
                         f"{s.complete} complete): this report is a snapshot. A trial whose worker died stays "
                         "'running' until the next `shufflesearch search --resume` retries it.")  # fmt: skip
    return notes
