"""The races between each budget's finalists (`search.racing`), as a table and as sentences.

Per finalist: its seeds, its mean score and spread over them, and how it ended (the winner, the
runner-up, or beaten clearly after so many seeds); per race: whether the winner is distinguishable
from the runner-up, whether racing changed the search's single-seed winner, and what a pick by
parameter count alone would have chosen. A stored race is read as data from another version may
have written it: anything malformed is left out, not raised on.
"""

from __future__ import annotations

import statistics

import pandas as pd

from .stored import stored_number, stored_text

__all__ = ["RACE_COLUMNS", "race_lines", "races_frame"]

RACE_COLUMNS = ["study", "trial", "label", "ended", "seeds", "ranked_by", "mean", "spread", "distinguishable",
                "lead", "lead_lower_95", "extra_trainings", "search_winner", "params_pick"]  # fmt: skip


def _scores(race: dict) -> dict[int, list[float]]:
    found = {}
    for trial, by_seed in (race.get("scores") or {}).items():
        values = [stored_number(v) for v in by_seed.values()] if isinstance(by_seed, dict) else []
        if str(trial).isdigit() and values and all(v is not None for v in values):
            found[int(trial)] = values
    return found


def races_frame(study_attrs: dict[str, dict]) -> pd.DataFrame:
    """One row per finalist of every stored race, the winner first; the mean is top-1 in % or the loss."""
    rows = []
    for study, attrs in study_attrs.items():
        race = attrs.get("race")
        scores = _scores(race) if isinstance(race, dict) else {}
        if not scores:
            continue
        by_loss = race.get("rank_by") == "loss"
        labels = race.get("labels") if isinstance(race.get("labels"), dict) else {}
        eliminated = race.get("eliminated") if isinstance(race.get("eliminated"), dict) else {}
        winner, runner_up = race.get("winner"), race.get("runner_up")
        for trial in sorted(scores, key=lambda t: (t != winner, t != runner_up, -statistics.fmean(scores[t]))):
            values = [-v for v in scores[trial]] if by_loss else [100 * v for v in scores[trial]]
            beaten = stored_number(eliminated.get(str(trial)))
            ended = ("winner" if trial == winner else f"beaten clearly after {int(beaten)} seed(s)"
                     if beaten is not None else "runner-up" if trial == runner_up else "not separated")  # fmt: skip
            rows.append({
                "study": study, "trial": trial, "label": stored_text(labels.get(str(trial))), "ended": ended,
                "seeds": len(values), "ranked_by": "loss" if by_loss else "top1_pct",
                "mean": round(statistics.fmean(values), 4 if by_loss else 2),
                "spread": round(statistics.stdev(values), 4 if by_loss else 2) if len(values) > 1 else None,
                "distinguishable": bool(race.get("distinguishable")), "lead": stored_number(race.get("lead")),
                "lead_lower_95": stored_number(race.get("lead_lower_95")),
                "extra_trainings": stored_number(race.get("extra_trainings")), "search_winner": race.get("search_winner"),
                "params_pick": stored_text(race.get("params_pick_label")),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=RACE_COLUMNS)


def race_lines(races: pd.DataFrame) -> list[str]:
    """One sentence per race: who won, by how much against the noise, and what it changed."""
    lines = []
    for study, grp in races.groupby("study", sort=False):
        w = grp.iloc[0]
        unit = "" if w.ranked_by == "loss" else "%"
        what = "loss" if w.ranked_by == "loss" else "top-1"
        spread = f" ± {w.spread:g}" if pd.notna(w.spread) else ""
        extra = int(w.extra_trainings) if pd.notna(w.extra_trainings) else 0
        line = (f"{study}: the race of {len(grp)} finalists ({extra} "
                f"extra trainings) picked trial {w.trial} ({w.label}), mean {what} {w['mean']:g}{unit}{spread} over "
                f"{w.seeds} seeds")  # fmt: skip
        lead, lower = (v if pd.notna(v) else None for v in (w.lead, w.lead_lower_95))
        scale = 1 if w.ranked_by == "loss" else 100
        if len(grp) > 1:
            margin = f"lead {scale * lead:.2f}" if lead is not None else "lead unknown"
            bound = f", 95% lower bound {scale * lower:.2f}" if lower is not None else ""
            line += (f"; {'distinguishable from' if w.distinguishable else 'NOT distinguishable from'} the "
                     f"runner-up ({margin}{bound}{' points' if scale == 100 else ''})")  # fmt: skip
        if w.search_winner is not None and w.search_winner != w.trial:
            line += f"; racing changed the winner from trial {w.search_winner}"
        if w.params_pick:
            line += f"; picking by parameter count alone: {w.params_pick}"
        lines.append(line + ".")
    return lines
