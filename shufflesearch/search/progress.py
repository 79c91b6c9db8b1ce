"""What a running search shows: trial events (started, finished, pruned, failed) and the time left.

Pure functions over trial records (`results.TrialRecord`): `workers.run_search` polls the
storage and hands each `SearchProgress` to its caller, which renders it (the CLI: a live table
on a terminal, one line per event in a log file).

The ETA is the work left divided over the workers: every trial not yet finished (running ones
included) costs the mean duration of its budget window's finished trials (pruned ones count: a
study that prunes often is quicker), less what each running trial has already run.

>>> eta_s([10.0, 20.0], left=4, workers=2)  # 4 trials of 15 s on 2 workers
30.0
>>> eta_s([10.0, 20.0], left=4, workers=2, running_s=[5.0, 20.0])  # two are 5 s and 15 s (at most the mean) in
20.0
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .results import StudySummary, TrialRecord

__all__ = ["SearchProgress", "SearchWatch", "TrialEvent", "eta_s", "remaining_work_s", "search_eta_s"]

FINISHED = ("complete", "pruned")  # a ticket done: fail is retried (or given up), so it is not
EVENT_OF_STATE = {"running": "started", "complete": "finished", "pruned": "pruned", "fail": "failed"}


def remaining_work_s(durations: Sequence[float], left: int, running_s: Sequence[float] = ()) -> float | None:
    """Seconds of work in `left` unfinished trials (those running have run `running_s`), at the mean of
    `durations`; None before any trial finished (no mean yet), 0 when nothing is left."""
    if left <= 0:
        return 0.0
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    # A running trial is credited at most the mean: one running long is not taken to be nearly done.
    return max(0.0, left * mean - sum(min(s, mean) for s in running_s))


def eta_s(durations: Sequence[float], left: int, workers: int, running_s: Sequence[float] = ()) -> float | None:
    """Seconds until `left` unfinished trials end on `workers` workers (see the module's formula)."""
    work = remaining_work_s(durations, left, running_s)
    # Fewer trials than workers: the others idle, a trial does not go faster.
    return None if work is None else work / max(1, min(workers, left))


def search_eta_s(records: dict[str, list[TrialRecord]], trials: int, workers: int,
                 studies: Sequence[str] | None = None) -> float | None:  # fmt: skip
    """Seconds until every study (budget window) holds `trials` finished trials.

    `studies`: the search's study names (default: those in `records`); one not stored yet (the
    workers reach windows in turn) has all its trials left. Each window's trials cost its own mean
    duration (a larger budget trains larger nets); a window with none finished yet takes the mean
    of all windows. None until some trial has finished.
    """
    pooled = [r["duration_s"] for rs in records.values() for r in rs if r["state"] in FINISHED and r["duration_s"]]
    total, left_all = 0.0, 0
    for rs in (records.get(name, []) for name in (records if studies is None else studies)):
        durations = [r["duration_s"] for r in rs if r["state"] in FINISHED and r["duration_s"]] or pooled
        left = max(0, trials - sum(r["state"] in FINISHED for r in rs))
        running = [r["running_s"] or 0.0 for r in rs if r["state"] == "running"]
        work = remaining_work_s(durations, left, running)
        if work is None:
            return None
        total, left_all = total + work, left_all + left
    return total / max(1, min(workers, left_all)) if left_all else 0.0


@dataclass(frozen=True)
class TrialEvent:
    """A trial changed state: `kind` is started, finished, pruned or failed; `record` is the trial as it is now."""

    kind: str
    record: TrialRecord


@dataclass(frozen=True)
class SearchProgress:
    """One look at a running search: its studies, their trials, what happened since the last look, the time left."""

    summaries: list[StudySummary]
    records: dict[str, list[TrialRecord]]
    events: list[TrialEvent]  # since the previous look, in trial order
    eta_s: float | None  # None until a trial has finished
    elapsed_s: float
    trials: int  # wanted per budget window
    workers: int
    windows: dict[str, str] = field(default_factory=dict)  # study name -> its budget window, as text

    @property
    def finished(self) -> int:
        return sum(s.complete + s.pruned for s in self.summaries)

    @property
    def running(self) -> list[TrialRecord]:
        return [r for rs in self.records.values() for r in rs if r["state"] == "running"]

    @property
    def wanted(self) -> int:
        """Trials the whole search runs: `trials` in each of its budget windows."""
        return self.trials * max(1, len(self.windows) or len(self.summaries))


class SearchWatch:
    """Turns successive reads of a study's storage into `SearchProgress`: what changed, and the time left.

    `baseline` is what the storage held before this search started: a resumed study's old trials
    are not announced again. A running trial is announced once its spec is known (its label).
    """

    def __init__(self, trials: int, workers: int, windows: dict[str, str] | None = None,
                 baseline: dict[str, list[TrialRecord]] | None = None, clock=time.monotonic) -> None:  # fmt: skip
        self.trials, self.workers, self.windows = trials, workers, dict(windows or {})
        self._clock = clock
        self._started = clock()
        self._seen = {(r["study"], r["trial"]): r["state"] for rs in (baseline or {}).values() for r in rs}

    def update(self, summaries: list[StudySummary], records: dict[str, list[TrialRecord]]) -> SearchProgress:
        events = []
        for r in sorted((r for rs in records.values() for r in rs), key=lambda r: (r["study"], r["trial"])):
            key, state = (r["study"], r["trial"]), r["state"]
            if state not in EVENT_OF_STATE or self._seen.get(key) == state:
                continue
            if state == "running" and r["label"] is None:
                continue  # still sampling its spec: announced at the next look
            self._seen[key] = state
            events.append(TrialEvent(EVENT_OF_STATE[state], r))
        return SearchProgress(summaries, records, events, search_eta_s(records, self.trials, self.workers, list(self.windows) or None),
                              self._clock() - self._started, self.trials, self.workers, self.windows)  # fmt: skip
