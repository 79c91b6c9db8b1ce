"""Study records -> pandas DataFrames: everything a report shows, computed without pixels.

Input is plain data (`report_study` loads it): `records_by_study` maps an Optuna study name to
its flat trial records (`shufflesearch.search.results.TrialRecord`) and `study_attrs` maps
it to the study's user attributes (`window_mflops`, `mode`, ...). Nothing here imports
Optuna; the Pareto front is the search layer's one function. Units travel in column names:
`mflops` (multiply-adds at 224 px, as in the paper), `params_m`, `top1_pct` (proxy accuracy
on the study's dataset, not ImageNet), `latency_ms`.

>>> rec = {"study": "s-40M", "trial": 0, "state": "complete", "groups": 3, "mflops": 38.0, "top1": 0.8}
>>> f = build_frames({"s-40M": [rec]}, {"s-40M": {"mode": "per-budget", "window_mflops": [20, 40]}})
>>> f.best.loc[f.best.kind == "searched best", "top1_pct"].tolist()
[80.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ..complexity import count_complexity
from ..complexity.sweep import complexity_rows
from ..paper import OFFICIAL_LAYOUTS, TABLE2_SCALES, TABLE2_TOP1_ERROR_PCT
from ..presets import paper_models
from ..search.results import TrialRecord
from ..search.standing import pareto_front, window_winner
from ..spec import ShuffleNetSpec, SpecError
from .budgets import bin_of, budgets_frame
from .history import history_frame
from .importance import importance_frame
from .latency_view import latency_frame, latency_groups_frame
from .learning_curves import curves_frame
from .provenance import caveats, provenance_frame, resolution_notes
from .races import races_frame
from .stored import stored_number, stored_text
from .studies import status_notes, studies_frame

# The paper's scales: Table 2's (0.25x, 0.5x, 1x) and the official code's (1.5x, 2x).
PAPER_SCALES = tuple(sorted({*TABLE2_SCALES, *(scale for _, scale in OFFICIAL_LAYOUTS)}))
SEARCHED, PAPER = "searched best", "paper model"
INTERNAL = ["spec_obj", "budget_rank"]  # columns for computing, never written
# spec -> {"latency_ms", "latency_kind", ...} as a trial records it (search.objective.predicted_latency), or None
PaperLatency = Callable[[ShuffleNetSpec], dict | None]


@dataclass
class ReportFrames:
    """Every table of a report. Empty frames keep their columns, so callers never special-case."""

    dataset: str
    studies: pd.DataFrame  # one row per study: mode, window, counts, state
    trials: pd.DataFrame  # one row per trial
    front: pd.DataFrame  # Pareto front (higher top1, lower mflops) over all complete trials
    budgets: pd.DataFrame  # one row per (study, budget): the MFLOPs bin trials are grouped by
    best: pd.DataFrame  # per budget: the searched best and the paper models in the same window
    groups: pd.DataFrame  # per budget and group count: best and median proxy top-1
    complexity: pd.DataFrame  # paper-Table-1-style widths and cost for the groups/scales touched
    stages: pd.DataFrame  # per-stage MFLOPs of each budget's winner
    latency: pd.DataFrame  # complete trials with a latency
    latency_groups: pd.DataFrame  # per latency kind and group count: time at equal MFLOPs, from one fit
    history: pd.DataFrame  # per study and trial: best so far, hypervolume (Pareto studies)
    provenance: pd.DataFrame  # per study: recipe, split, seeds, devices, data, the recipe's measured fidelity
    trained_at: str  # the training resolution(s), e.g. "48 px": labels say it beside the 224 px of the counts
    scored_on: str  # the split(s) the top-1 numbers are on, e.g. "validation": every accuracy label says it
    curves: pd.DataFrame  # per trial and epoch: top-1 on the curve subset; the budget winners flagged
    importance: pd.DataFrame  # per budget and readable parameter: PED-ANOVA importance (shares sum to 1)
    races: pd.DataFrame  # per raced budget and finalist: seeds, mean and spread, how it ended (`races.races_frame`)
    notes: list[str] = field(default_factory=list)  # read first: unfinished studies, caveats


TRIAL_COLUMNS = [
    "study", "budget_mflops", "budget_ms", "trial", "state", "label", "preset", "groups", "scale", "repeats", "stem_channels",
    "stage_channels", "bottleneck_ratio", "shuffle", "resolution", "trained_px", "mflops", "params_m", "top1_pct", "loss",
    "latency_ms", "latency_kind", "train_seconds", "duration_s", "status", "retry_of", "worker",
]  # fmt: skip


def build_frames(
    records_by_study: dict[str, list[TrialRecord]], study_attrs: dict[str, dict],
    paper_latency: PaperLatency | None = None,
) -> ReportFrames:  # fmt: skip
    """All report tables for the given studies (pure: no files, no plotting).

    `paper_latency` is the studies' latency predictor (a spec -> its latency record, as a trial
    records it), for placing paper models in latency budgets; None where the studies have none."""
    budgets = budgets_frame(records_by_study, study_attrs)
    trials = trials_frame(records_by_study, budgets)
    done = trials[(trials.state == "complete") & trials.top1_pct.notna()]
    best = best_frame(trials, budgets, paper_latency, _race_winners(records_by_study, study_attrs))
    studies = studies_frame(records_by_study, study_attrs)
    latency = latency_frame(done)
    provenance = provenance_frame(records_by_study, study_attrs)
    frames = ReportFrames(
        dataset=_dataset_name(records_by_study, study_attrs),
        studies=studies,
        trials=trials,
        front=pareto_frame(done),
        budgets=budgets,
        best=best,
        groups=groups_frame(done, budgets),
        complexity=complexity_frame(trials, best),
        stages=stages_frame(best, trials),
        latency=latency,
        latency_groups=latency_groups_frame(latency),
        history=history_frame(trials, budgets),
        provenance=provenance,
        curves=curves_frame(records_by_study, trials, best[best.kind == SEARCHED]),
        importance=importance_frame(trials, budgets),
        races=races_frame(study_attrs),
        trained_at=", ".join(f"{int(px)} px" for px in sorted(set(provenance.trained_px.dropna()))) or "?",
        scored_on=_splits(records_by_study),
    )
    frames.notes = status_notes(studies) + _ranked_by_loss(budgets) + caveats(trials, best, records_by_study) + (
        resolution_notes(provenance)) + (
        [] if len(frames.latency) else [
        "No trial has a latency (measured or estimated): the MFLOPs-vs-latency plot is skipped."])  # fmt: skip
    return frames


def _trained_px(record: dict) -> float | None:
    """The resolution the trial trained at (its recipe's), where the record says."""
    recipe = record.get("recipe")
    return stored_number(recipe.get("resolution")) if isinstance(recipe, dict) else None


def _dataset_name(records_by_study: dict, study_attrs: dict) -> str:
    """The datasets' names (records store "name:fingerprint"; the provenance table shows the fingerprint)."""
    texts = {stored_text(r.get("dataset")) for recs in records_by_study.values() for r in recs}
    texts |= {stored_text(a.get("dataset")) for a in study_attrs.values()}
    names = {t.rsplit(":", 1)[0] if ":" in t else t for t in texts if t}
    return ", ".join(sorted(names)) or "the study's dataset"


def _race_winners(records_by_study: dict[str, list[TrialRecord]], study_attrs: dict[str, dict]) -> dict[str, int]:
    """Study -> the trial its stored race picked (`search.standing.window_winner`: a stale race does not count)."""
    winners = {}
    for study, attrs in study_attrs.items():
        done = [r for r in records_by_study.get(study, []) if r.get("state") == "complete"]
        winner = window_winner(done, attrs) if isinstance(attrs.get("race"), dict) else None
        if winner is not None:
            winners[study] = winner["trial"]
    return winners


def _ranked_by_loss(budgets: pd.DataFrame) -> list[str]:
    """A note naming the studies whose winners are chosen by loss: the tables show top-1 beside them."""
    studies = sorted(set(budgets.study[budgets.rank_by == "loss"]))
    return [f"{', '.join(studies)} rank{'s' * (len(studies) == 1)} trials by the proxy's loss, not its top-1: each "
            "budget's winner is the lowest loss, which need not be the highest top-1 shown."] if studies else []  # fmt: skip


def _splits(records_by_study: dict) -> str:
    """The split(s) complete trials' top-1 is on ("validation", "test"; "?" when none says)."""
    found = {r.get("split") for recs in records_by_study.values() for r in recs if r.get("state") == "complete"}
    return ", ".join(sorted(s for s in found if s in ("validation", "test"))) or "?"


def _spec(record: dict) -> ShuffleNetSpec | None:
    try:
        return ShuffleNetSpec.from_dict(record["spec"]) if record.get("spec") else None
    except (SpecError, TypeError, KeyError):
        return None  # a record written by another version: show what it has, skip the rest


def trials_frame(records_by_study: dict[str, list[TrialRecord]], budgets: pd.DataFrame) -> pd.DataFrame:
    """One row per trial, spec fields spelled out, units in column names."""
    rows = []
    for study, records in records_by_study.items():
        here = budgets[budgets.study == study].sort_values("hi_mflops", kind="stable")
        for r in records:
            spec = _spec(r)
            top1, mflops, params = (
                stored_number(r.get("top1")),
                stored_number(r.get("mflops")),
                stored_number(r.get("params")),
            )
            latency, train_s, duration = (
                stored_number(r.get(k)) for k in ("latency_ms", "train_seconds", "duration_s")
            )
            rank = bin_of(here, mflops)
            bin_row = budgets.iloc[rank] if rank is not None else None
            rows.append({
                "study": study, "budget_mflops": bin_row.budget_mflops if rank is not None else None,
                "budget_ms": bin_row.budget_ms if rank is not None else None, "trial": r.get("trial"),
                "state": r.get("state"), "label": stored_text(r.get("label")) or (spec.label if spec else None),
                "preset": stored_text(r.get("preset")), "groups": spec.groups if spec else r.get("groups"),
                "scale": spec.scale if spec else None,
                "repeats": ",".join(map(str, spec.repeats)) if spec else None,
                "stem_channels": spec.stem_channels if spec else None,
                "stage_channels": ",".join(map(str, spec.stage_channels)) if spec else None,
                "bottleneck_ratio": spec.bottleneck_ratio if spec else None,
                "shuffle": spec.shuffle if spec else None, "resolution": spec.resolution if spec else None,
                "trained_px": _trained_px(r),
                "mflops": round(mflops, 3) if mflops is not None else None,
                "params_m": round(params / 1e6, 4) if params is not None else None,
                "top1_pct": round(100 * top1, 2) if top1 is not None else None,
                "loss": stored_number(r.get("loss")),
                "latency_ms": round(latency, 3) if latency is not None else None,
                "latency_kind": stored_text(r.get("latency_kind")),
                "train_seconds": round(train_s, 1) if train_s is not None else None,
                "duration_s": round(duration, 1) if duration is not None else None,
                "status": stored_text(r.get("status")), "retry_of": r.get("retry_of"), "worker": stored_text(r.get("worker")),
                "spec_obj": spec, "budget_rank": rank,
            })  # fmt: skip
    frame = pd.DataFrame(rows, columns=[*TRIAL_COLUMNS, *INTERNAL])
    for col in ("mflops", "params_m", "top1_pct", "loss", "latency_ms", "budget_mflops", "budget_ms", "scale"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in ("trial", "groups", "stem_channels", "resolution", "trained_px", "retry_of", "budget_rank"):
        # ints stay ints beside blanks
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    return frame.sort_values(["study", "trial"], kind="stable").reset_index(drop=True)


def pareto_frame(done: pd.DataFrame, second: str = "mflops") -> pd.DataFrame:
    """Rows not dominated in (higher top1_pct, lower `second`), sorted by `second` (the search layer's front)."""
    shown = zip(done.top1_pct, done[second])  # the front of the values a reader sees: percent, rounded
    points = [
        {"top1": top1, second: x, "row": i} for i, (top1, x) in enumerate(shown) if pd.notna(top1) and pd.notna(x)
    ]
    rows = [p["row"] for p in pareto_front(points, second)]
    return public(done.iloc[rows]).reset_index(drop=True)


def paper_models_frame(paper_latency: PaperLatency | None = None) -> pd.DataFrame:
    """The named presets plus the paper's Table 2 models (groups x 0.25/0.5/1.0) with their cost, and
    their latency where `paper_latency` (the study's predictor) can say it."""
    rows = []
    for name, spec in paper_models().items():
        cost = count_complexity(spec)
        err = TABLE2_TOP1_ERROR_PCT.get((spec.groups, spec.scale))
        latency = (paper_latency(spec) if paper_latency else None) or {}
        rows.append({"name": name, "label": spec.label, "groups": spec.groups, "scale": spec.scale,
                     "mflops": round(cost.mflops, 3), "params_m": round(cost.params / 1e6, 4),
                     "latency_ms": round(latency["latency_ms"], 3) if latency else None,
                     "latency_kind": latency.get("latency_kind"),
                     "paper_imagenet_top1_pct": round(100 - err, 1) if err is not None else None,
                     "spec_obj": spec})  # fmt: skip
    frame = pd.DataFrame(rows).sort_values(["mflops", "name"]).reset_index(drop=True)
    frame["latency_ms"] = frame["latency_ms"].astype(float)
    return frame


BEST_COLUMNS = [
    "study", "budget", "budget_mflops", "budget_ms", "kind", "name", "label", "trained_px", "groups", "scale", "mflops",
    "params_m", "top1_pct", "latency_ms", "latency_kind", "paper_imagenet_top1_pct", "trial",
]  # fmt: skip


def best_frame(trials: pd.DataFrame, budgets: pd.DataFrame, paper_latency: PaperLatency | None = None,
               race_winners: dict[str, int] | None = None) -> pd.DataFrame:  # fmt: skip
    """Per budget: the complete trial its study ranks best (highest top-1, or lowest loss where the study
    ranks by loss; a per-budget study's race winner where it ran one), then every paper model inside the
    same window.

    A paper model's `top1_pct` is filled when the study trained that exact spec (the search
    queues them first), so searched and paper models compare on the same proxy. Inside a latency
    window means inside by the study's predictor (`paper_latency`); without one, no paper model is
    placed in a latency window.
    """
    papers = paper_models_frame(paper_latency)
    by_spec = dict(zip(papers.spec_obj, papers.name))  # a sampled spec may equal a paper model: say so
    done = trials[(trials.state == "complete") & trials.top1_pct.notna()]
    rows = []
    for b in budgets.itertuples():
        where = {"study": b.study, "budget": b.budget, "budget_mflops": b.budget_mflops, "budget_ms": b.budget_ms}
        here = done[(done.study == b.study) & (done.budget_rank == b.rank)]
        if len(here):
            by = ["loss", "mflops"] if b.rank_by == "loss" else ["top1_pct", "mflops"]
            ranked = here[here.loss.notna()] if b.rank_by == "loss" and here.loss.notna().any() else here
            w = ranked.sort_values(by, ascending=[b.rank_by == "loss", True], kind="stable").iloc[0]
            raced = here[here.trial == (race_winners or {}).get(b.study, -1)] if b.mode == "per-budget" else here[:0]
            w = raced.iloc[0] if len(raced) else w
            rows.append({**where, "kind": SEARCHED, "name": stored_text(w.preset) or by_spec.get(w.spec_obj) or
                         f"trial {w.trial}", "label": w.label, "trained_px": w.trained_px, "groups": w.groups, "scale": w.scale,
                         "mflops": w.mflops, "params_m": w.params_m, "top1_pct": w.top1_pct,
                         "latency_ms": w.latency_ms, "latency_kind": w.latency_kind,
                         "paper_imagenet_top1_pct": _paper_top1(w.spec_obj), "trial": w.trial})  # fmt: skip
        fit = papers[(papers.mflops > b.lo_mflops) & (papers.mflops <= b.hi_mflops)]
        if pd.notna(b.hi_ms):
            fit = fit[(fit.latency_ms > b.lo_ms) & (fit.latency_ms <= b.hi_ms)]
        for p in fit.itertuples():
            match = here[here.spec_obj.map(lambda s, p=p: s == p.spec_obj) | (here.preset == p.name)]
            m = match.sort_values("top1_pct", ascending=False).iloc[0] if len(match) else None
            rows.append({**where, "kind": PAPER, "name": p.name, "label": p.label,
                         "trained_px": m.trained_px if m is not None else None, "groups": p.groups,
                         "scale": p.scale, "mflops": p.mflops, "params_m": p.params_m,
                         "top1_pct": m.top1_pct if m is not None else None,
                         "latency_ms": m.latency_ms if m is not None and pd.notna(m.latency_ms) else p.latency_ms,
                         "latency_kind": m.latency_kind if m is not None and pd.notna(m.latency_ms) else
                         p.latency_kind, "paper_imagenet_top1_pct": p.paper_imagenet_top1_pct,
                         "trial": m.trial if m is not None else None})  # fmt: skip
    frame = pd.DataFrame(rows, columns=BEST_COLUMNS)
    for col in ("top1_pct", "budget_mflops", "budget_ms", "latency_ms"):
        frame[col] = frame[col].astype(float)
    frame["trial"] = frame["trial"].astype("Int64")
    frame["trained_px"] = pd.to_numeric(frame["trained_px"], errors="coerce").astype("Int64")
    return frame


def _paper_top1(spec: ShuffleNetSpec | None) -> float | None:
    if spec is None or spec != ShuffleNetSpec(groups=spec.groups, scale=spec.scale):
        return None
    err = TABLE2_TOP1_ERROR_PCT.get((spec.groups, spec.scale))
    return round(100 - err, 1) if err is not None else None


def groups_frame(done: pd.DataFrame, budgets: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 question per budget: how does proxy top-1 vary with the group count?"""
    cols = ["study", "budget", "budget_mflops", "budget_ms", "groups", "trials", "best_top1_pct", "median_top1_pct",
            "best_label", "best_mflops"]  # fmt: skip
    rows = []
    for b in budgets.itertuples():
        here = done[(done.study == b.study) & (done.budget_rank == b.rank)].dropna(subset=["groups"])
        for g, grp in here.groupby("groups", sort=True):
            top = grp.sort_values(["top1_pct", "mflops"], ascending=[False, True]).iloc[0]
            rows.append({"study": b.study, "budget": b.budget, "budget_mflops": b.budget_mflops,
                         "budget_ms": b.budget_ms, "groups": int(g), "trials": len(grp),
                         "best_top1_pct": top.top1_pct, "median_top1_pct": round(float(grp.top1_pct.median()), 2),
                         "best_label": top.label, "best_mflops": top.mflops})  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def complexity_frame(trials: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Paper-Table-1-style rows (repeats 4,8,4 at 224 px) for the group counts the study tried.

    Scales: the paper's (0.25 ... 2) inside the range the study sampled, plus each winner's.
    """
    touched = trials.dropna(subset=["scale"])
    if touched.empty:
        return pd.DataFrame(columns=["groups", "scale", "stem_channels", "stage2_channels", "stage3_channels",
                                     "stage4_channels", "mflops", "params_m", "model_mb", "preset"])  # fmt: skip
    lo, hi = touched.scale.min(), touched.scale.max()
    winners = best[best.kind == SEARCHED].scale.dropna()
    scales = sorted({s for s in PAPER_SCALES if lo <= s <= hi} | {round(float(s), 3) for s in winners})
    groups = sorted({int(g) for g in touched.groups.dropna()})
    return pd.DataFrame(complexity_rows(groups, scales))


def stages_frame(best: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per-stage MFLOPs (closed-form count) of each budget's searched winner."""
    rows = []
    for w in best[best.kind == SEARCHED].itertuples():
        match = trials[(trials.study == w.study) & (trials.trial == w.trial)]
        spec = match.spec_obj.iloc[0] if len(match) else None
        if spec is None:
            continue
        cost = count_complexity(spec)
        row = {
            "study": w.study,
            "budget": w.budget,
            "budget_mflops": w.budget_mflops,
            "budget_ms": w.budget_ms,
            "label": w.label,
        }
        row.update({f"{st.name}_mflops": round(st.macs / 1e6, 3) for st in cost.stages})
        row["mflops"] = round(cost.mflops, 3)
        rows.append(row)
    return pd.DataFrame(rows, columns=["study", "budget", "budget_mflops", "budget_ms", "label"] if not rows else None)


def public(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without its in-memory columns (spec objects, bin ranks), for writing."""
    return frame.drop(columns=INTERNAL, errors="ignore")
