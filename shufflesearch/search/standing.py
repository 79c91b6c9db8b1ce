"""How a study ranks its trials: by proxy top-1 or by loss (`ranked_by`, from what the study stored),
a record's standing (`rank_value`), a window's winner (raced or not) and the Pareto front.

Records are `results.TrialRecord`s (or dicts with their keys); nothing here reads a storage.

>>> pareto_front([{"top1": 0.8, "mflops": 40.0}, {"top1": 0.7, "mflops": 50.0}])
[{'top1': 0.8, 'mflops': 40.0}]
"""

from __future__ import annotations

__all__ = ["pareto_front", "rank_value", "ranked_by", "window_winner"]


def window_winner(done: list[dict], study_attrs: dict) -> dict | None:
    """A window's winner among its complete records `done`: the record its ranking (`ranked_by`) puts first
    (ties: the lower trial), or its race's winner where the study stored a race (`racing.RACE_ATTR`) that
    this first record ran in (a race from before later trials is stale)."""
    rank_by = ranked_by(study_attrs)
    scored = [r for r in done if rank_value(r, rank_by) is not None]
    first = min(scored, key=lambda r: (-rank_value(r, rank_by), r["trial"]), default=None)
    raced = study_attrs.get("race")
    if first is None or not isinstance(raced, dict) or str(first["trial"]) not in (raced.get("scores") or {}):
        return first
    return next((r for r in done if r["trial"] == raced.get("winner")), first)


def ranked_by(study_attrs: dict) -> str:
    """What a stored study ranks its trials by: "top1" or "loss" (its first stored objective; studies
    stored before there was a choice ranked by top-1)."""
    objectives = study_attrs.get("objectives")
    return "loss" if isinstance(objectives, list) and objectives[:1] == ["loss"] else "top1"


def rank_value(record: dict, rank_by: str = "top1") -> float | None:
    """A record's standing in its study, higher is better: its top-1, or its negated loss (None: not scored).

    >>> rank_value({"top1": 0.8, "loss": 0.5}), rank_value({"top1": 0.8, "loss": 0.5}, "loss")
    (0.8, -0.5)
    """
    value = record.get("top1" if rank_by == "top1" else "loss")
    return None if value is None else value if rank_by == "top1" else -value


def pareto_front(records: list[dict], second: str = "mflops", rank_by: str = "top1") -> list[dict]:
    """Records not dominated in (higher `rank_value`, lower `second`), sorted by `second`."""
    points = [r for r in records if rank_value(r, rank_by) is not None and r.get(second) is not None]
    points.sort(key=lambda r: (r[second], -rank_value(r, rank_by)))
    front, best = [], float("-inf")
    for r in points:
        if rank_value(r, rank_by) > best:
            front.append(r)
            best = rank_value(r, rank_by)
    return front
