"""Read studies back as plain records: one flat dict per trial, one summary per study.

Everything downstream (the live view, `studies list`, reports) works on these records,
never on Optuna objects. A record's keys and types are `TrialRecord`, written down once.
How a study ranks them (top-1 or loss, raced winners, the Pareto front) is `standing`'s.
"""

from __future__ import annotations

import datetime
import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ..accuracy.recipe import split_of
from ..errors import UsageError
from .standing import pareto_front, rank_value, ranked_by, window_winner
from .storage import NoSuchStorage, StorageError, StorageUnavailable, check_storage_url, open_storage, reading, redact


class TrialRecord(TypedDict):
    """One trial, flat: what `trial_record` makes and the live view, `studies list` and reports read.

    Every value may be None where the storage holds nothing usable (a shared database may hold anything).
    """

    study: str  # the Optuna study: one budget window of a study file
    trial: int
    state: str  # complete, pruned, running, waiting, fail
    label: str | None  # the spec's short name
    preset: str | None  # the paper's model this trial was queued as
    groups: int | None
    mflops: float | None
    params: float | None
    top1: float | None  # proxy accuracy, a fraction in [0, 1], on `split`
    loss: float | None  # the proxy's cross-entropy on `split` (what a loss-ranked study ranks by)
    top5: float | None
    device: str | None  # where it trained, e.g. cpu, cuda:0
    latency_ms: float | None
    latency_kind: str | None  # e.g. lut-predicted
    train_seconds: float | None
    duration_s: float | None
    running_s: float | None  # how long a running trial has run so far
    epoch: int | None  # the last epoch it reported (per-budget studies report each epoch to Optuna)
    status: str | None  # the trainer's status, or why the trial was infeasible
    retry_of: int | None  # the failed trial this one repeats
    worker: str | None  # host:pid
    spec: dict[str, Any] | None  # ShuffleNetSpec.to_dict()
    curve: Any  # per-epoch top-1, as the trainer stored it
    intermediate: dict[int, float]  # per-epoch top-1 as the trial reported it: a pruned trial's only curve
    recipe: dict[str, Any] | None  # the training recipe (Fidelity.to_dict()) the top-1 was made with
    split: str  # what top1/top5 are measured on: "validation" (held out of training), "test" or "unknown"
    seed: float | None
    classes: float | None  # the dataset's class count: chance is 1 / classes
    dataset: str | None  # "name:fingerprint" of the data it trained on


@functools.lru_cache(maxsize=8)
def _reader(storage_url: str):
    # A live view polls every few seconds: open each storage (engine, schema check) once.
    return open_storage(storage_url, create=False)


@dataclass(frozen=True)
class StudySummary:
    name: str
    mode: str
    window_mflops: tuple[float, float]
    candidates: int  # distinct specs of the space inside the window
    complete: int
    pruned: int
    running: int
    waiting: int
    failed: int  # failed attempts (each one retried or given up)
    best_top1: float | None
    best_label: str | None
    best_mflops: float | None
    mean_trial_s: float | None
    pareto: list[dict] = field(default_factory=list)  # multi-objective: the front's records
    window_latency_ms: tuple[float, float] | None = None  # predicted ms, where a latency budget bounds the study
    budgeted: tuple[str, ...] = ("mflops",)  # what bounds the windows: "mflops", "latency_ms" or both
    race: dict | None = None  # the window's race between its finalists (`racing.race_window`), if one ran

    def to_dict(self) -> dict:
        return asdict(self)


def trial_record(study_name: str, trial) -> TrialRecord:
    """The flat record of one trial (an Optuna FrozenTrial).

    Stored attributes are typed on the way in: a shared database may hold anything, and a
    report must show a blank, not crash, for a value of the wrong type.
    """
    attrs = trial.user_attrs
    duration = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    running = trial.state.name == "RUNNING" and trial.datetime_start is not None
    # Optuna stamps trials with the local naive time (datetime.now()), so "now" is taken the same way.
    running_s = max(0.0, (datetime.datetime.now() - trial.datetime_start).total_seconds()) if running else None
    steps = [s for s in trial.intermediate_values if isinstance(s, int)]
    return {
        "study": study_name,
        "trial": trial.number,
        "state": trial.state.name.lower(),
        "label": _text(attrs.get("label")),
        "preset": _text(attrs.get("preset")),
        "groups": trial.params.get("groups"),
        "mflops": _number(attrs.get("mflops")),
        "params": _number(attrs.get("params")),
        "top1": _number(attrs.get("top1")),
        "loss": _number(attrs.get("test_loss")),
        "top5": _number(attrs.get("top5")),
        "device": _text(attrs.get("device")),
        "latency_ms": _number(attrs.get("latency_ms")),
        "latency_kind": _text(attrs.get("latency_kind")),
        "train_seconds": _number(attrs.get("train_seconds")),
        "duration_s": duration,
        "running_s": running_s,
        "epoch": max(steps, default=None),
        "status": _text(attrs.get("status") or attrs.get("infeasible")),
        "retry_of": trial.system_attrs.get("failed_trial"),
        "worker": _text(attrs.get("worker")),
        "spec": attrs.get("spec") if isinstance(attrs.get("spec"), dict) else None,
        "curve": attrs.get("curve"),
        "intermediate": _intermediate(trial),
        "recipe": attrs.get("recipe") if isinstance(attrs.get("recipe"), dict) else None,
        "split": split_of(attrs["recipe"]) if isinstance(attrs.get("recipe"), dict) else "unknown",
        "seed": _number(attrs.get("seed")),
        "classes": _number(attrs.get("classes")),
        "dataset": _text(attrs.get("dataset")),
    }


def _intermediate(trial) -> dict[int, float]:
    """Per-epoch top-1 the trial reported (finite values only): a pruned trial's only curve. A loss-ranked
    study reports losses to Optuna and keeps the top-1 beside them (`epoch_top1`)."""
    kept = trial.user_attrs.get("epoch_top1")
    if isinstance(kept, dict):
        pairs = [(int(step), _number(v)) for step, v in kept.items() if str(step).isdigit()]  # JSON keys are text
        return {step: v for step, v in pairs if v is not None}
    return {int(step): v for step, v in trial.intermediate_values.items() if isinstance(v, float) and math.isfinite(v)}


def _number(value):
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def _text(value):
    return value if isinstance(value, str) else None


def _window(value) -> tuple[float, float]:
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(_number(v) is not None for v in value)
    return tuple(value) if ok else (0.0, 0.0)


def study_attrs(storage_url: str) -> dict[str, dict]:
    """Study name -> its user attributes (mode, MFLOPs window, candidate count), for every stored study."""
    import optuna

    storage = _reader(storage_url)
    with reading(storage_url):
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        return {s.study_name: dict(s.user_attrs) for s in summaries}


def load_records(storage_url: str, study_names: list[str] | None = None) -> dict[str, list[TrialRecord]]:
    """Study name -> its trial records, for every study in the storage (or the named ones)."""
    import optuna

    storage = _reader(storage_url)
    with reading(storage_url):
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        if study_names is not None:
            names = [n for n in names if n in set(study_names)]
        out = {}
        for name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            out[name] = [trial_record(name, t) for t in study.get_trials(deepcopy=False)]
        return out


def summarize_studies(storage_url: str, study_names: list[str] | None = None) -> list[StudySummary]:
    """Progress and best result of each study in the storage (or of the named ones)."""
    return read_studies(storage_url, study_names)[0]


def read_studies(
    storage_url: str, study_names: list[str] | None = None
) -> tuple[list[StudySummary], dict[str, list[TrialRecord]]]:
    """The summaries and the trial records of each study in the storage (or of the named ones), in one read:
    what a live view polls."""
    import optuna

    storage = _reader(storage_url)
    summaries, records = [], {}
    with reading(storage_url):
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            if study_names is not None and summary.study_name not in study_names:
                continue
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            name = summary.study_name
            records[name] = [trial_record(name, t) for t in study.get_trials(deepcopy=False)]
            summaries.append(summarize_records(name, study.user_attrs, records[name]))
    return summaries, records


def summarize_records(name: str, study_attrs: dict, records: list[TrialRecord]) -> StudySummary:
    """One study's summary from its attributes and trial records."""

    def count(state: str) -> int:
        return sum(r["state"] == state for r in records)

    rank_by = ranked_by(study_attrs)
    done = [r for r in records if r["state"] == "complete" and rank_value(r, rank_by) is not None]
    best = window_winner(done, study_attrs)
    durations = [r["duration_s"] for r in records if r["state"] in ("complete", "pruned") and r["duration_s"]]
    mode = _text(study_attrs.get("mode")) or "per-budget"
    return StudySummary(
        name=name,
        mode=mode,
        window_mflops=_window(study_attrs.get("window_mflops")),
        candidates=int(_number(study_attrs.get("candidates")) or 0),
        complete=count("complete"),
        pruned=count("pruned"),
        running=count("running"),
        waiting=count("waiting"),
        failed=count("fail"),
        best_top1=best["top1"] if best else None,
        best_label=best["label"] if best else None,
        best_mflops=best["mflops"] if best else None,
        mean_trial_s=sum(durations) / len(durations) if durations else None,
        pareto=pareto_front([r for r in done if r["mflops"] is not None], rank_by=rank_by) if mode == "pareto" else [],
        window_latency_ms=_window(study_attrs["window_latency_ms"]) if "window_latency_ms" in study_attrs else None,
        budgeted=budgeted_axes(study_attrs),
        race=study_attrs["race"] if isinstance(study_attrs.get("race"), dict) else None,
    )


def budgeted_axes(study_attrs: dict) -> tuple[str, ...]:
    """What bounds a stored study: its `budgeted` list ("mflops", "latency_ms"), else (a study made before the
    list was stored) MFLOPs, and latency where a latency window is stored."""
    value = study_attrs.get("budgeted")
    known = tuple(v for v in value if v in ("mflops", "latency_ms")) if isinstance(value, list | tuple) else ()
    window = study_attrs.get("window_latency_ms")
    return known or ("mflops", *(("latency_ms",) if _window(window) != (0.0, 0.0) else ()))


def study_finished(config, url: str, wanted: int) -> bool:
    """Every budget window of the study `config` (a StudyConfig) holds `wanted` finished trials, none queued or running.

    False where the storage has no studies yet: a first run creates them.
    """
    windows = list(config.budget_windows())
    try:
        by_name = {s.name: s for s in summarize_studies(url, windows)}
    except NoSuchStorage:
        return False
    return set(by_name) >= set(windows) and all(
        s.complete + s.pruned >= wanted and s.running == s.waiting == 0 for s in by_name.values()
    )


class NoSuchTrial(UsageError):
    """A budget or trial that the study does not hold (or that did not finish)."""


def find_trial(
    config, url: str, *, budget: float | None = None, trial: int | None = None, budget_ms: float | None = None
) -> tuple[str, TrialRecord]:
    """(Optuna study name, record) of trial `trial` of a budget window, or of the window's winner.

    The winner is `standing.window_winner`'s: the complete trial the study ranks best (`rank_by`: proxy
    top-1 or loss), or its race's winner where the finalists were raced. A window is named by its MFLOPs
    `budget`, its latency `budget_ms`, or both (paired budgets); in pareto mode they are caps on
    the front instead. They may be left out when the study has one window (pareto, or one budget).
    """
    windows = config.budget_windows()
    if config.mode == "pareto" or (len(windows) == 1 and budget is None and budget_ms is None):
        name = next(iter(windows))
    else:
        name = _window_named(config, budget, budget_ms)
    try:
        records = load_records(url, [name]).get(name, [])
    except NoSuchStorage:
        records = []
    if not records:
        raise NoSuchTrial(f"study {name} has no trials in {redact(url)}; run it first: shufflesearch search "
                          f"{config.path}")  # fmt: skip
    if trial is not None:
        found = next((r for r in records if r["trial"] == trial), None)
        if found is None or found["state"] != "complete" or found["spec"] is None:
            what = "does not exist" if found is None else f"is {found['state']}, not complete"
            raise NoSuchTrial(f"trial {trial} of {name} {what} (trials 0-{len(records) - 1})")
        return name, found
    done = [r for r in records if r["state"] == "complete" and rank_value(r, config.rank_by) is not None
            and r["spec"] is not None]  # fmt: skip
    if config.mode == "pareto":
        caps = ((budget, "mflops", "MFLOPs"), (budget_ms, "latency_ms", "ms"))
        for cap, key, _ in caps:
            done = [r for r in done if cap is None or (r[key] is not None and r[key] <= cap)]
        under = " and ".join(f"{cap:g} {unit}" for cap, _, unit in caps if cap is not None)
        if not done:
            raise NoSuchTrial(f"study {name} has no complete trial{' under ' + under if under else ''} yet")
    if not done:
        raise NoSuchTrial(f"study {name} has no complete trial yet")
    if config.mode == "pareto":
        return name, max(done, key=lambda r: rank_value(r, config.rank_by))
    return name, window_winner(done, study_attrs(url).get(name, {}))


def _window_named(config, budget: float | None, budget_ms: float | None) -> str:
    """The per-budget window whose MFLOPs and/or ms budgets are the ones given."""
    windows, ms = config.budget_windows(), config.latency_windows()
    options = " or ".join(o for o, given in (("--budget", config.budgets), ("--budget-ms", config.latency_budgets))
                          if given)  # fmt: skip
    if config.budgets and config.latency_budgets:
        have = ", ".join(f"{w[1]:g} MFLOPs and {ms[n][1]:g} ms" for n, w in windows.items())
    else:
        have = ", ".join(f"{b:g}" for b in config.budgets or config.latency_budgets)
        have += " MFLOPs" if config.budgets else " ms"
    if budget is None and budget_ms is None:
        raise NoSuchTrial(f"study {config.name} has budgets {have}: name one with {options}")
    found = [
        n for n, w in windows.items()
        if (budget is None or (config.budgets and math.isclose(w[1], budget)))
        and (budget_ms is None or (ms[n] is not None and math.isclose(ms[n][1], budget_ms)))
    ]  # fmt: skip
    if len(found) != 1:
        asked = " ".join(f"{o} {v:g}" for o, v in (("--budget", budget), ("--budget-ms", budget_ms)) if v is not None)
        several = f" ({len(found)} match: name one with {options.replace(' or ', ' and ')})" if found else ""
        raise NoSuchTrial(f"{asked}: study {config.name} has budgets {have}{several}")
    return found[0]


def stored_studies(storage: str | None = None, folder: str | Path = "studies") -> tuple[list[dict], list[str]]:
    """The rows of `studies list` (one per study: {"storage": redacted URL, **StudySummary.to_dict()}) and warnings.

    `storage` None: every `folder`/*.db. Of those, one being created right now holds no studies
    yet and is left out; another program's file, or a damaged one, is left out with a warning
    ("skipped ..."): one bad file must not hide the others. A named `storage` raises instead.
    """
    urls = [storage] if storage is not None else [f"sqlite:///{p}" for p in sorted(Path(folder).glob("*.db"))]
    rows, warnings = [], []
    for url in urls:
        try:
            summaries = summarize_studies(check_storage_url(url))
        except (StorageError, StorageUnavailable) as exc:
            if storage is not None:
                raise
            if not isinstance(exc, NoSuchStorage):
                warnings.append(f"skipped {' '.join(str(exc).split())}")
            continue
        rows += [{"storage": redact(url), **s.to_dict()} for s in summaries]
    return rows, warnings


__all__ = ["NoSuchTrial", "StudySummary", "TrialRecord", "find_trial", "load_records", "read_studies",
           "stored_studies", "study_attrs", "study_finished", "summarize_records", "summarize_studies",
           "trial_record"]  # fmt: skip
