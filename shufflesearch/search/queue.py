"""Run a study: queue exactly N trials ("tickets"), let any number of workers take them.

Exactly-N: under the claim lock, `prepare_study` queues the next trial ("ticket") while
fewer than N exist (the paper's presets that fit the budget first), one ahead: queueing
all N up front took minutes for a large N and wrote thousands of rows Ctrl-C could not
stop. The worker then calls `study.optimize(n_trials=1)`; Optuna pops the queued trial, the
objective samples its spec and releases the lock. So workers on any number of machines never
run more than N trials between them, and never the same one twice. The claim lock (a file
lock beside the SQLite file, which the system drops when its holder dies; a PostgreSQL
advisory lock on a server) makes "is there a trial left to run?" and "take it" one step.

Distinct work: every worker that joins a study, on any machine, takes the next seed stream
from a counter in the study (`join_study`), and a sampled spec the study already holds
(complete, pruned, running or queued) is refused and sampled again unless the study asks
for repeats (`objective.refuse_repeat`).

Faults: a trial interrupted by Ctrl-C is marked FAIL by Optuna; one whose worker was
killed stops sending heartbeats and is marked FAIL by the next worker that looks. Either
way the same parameters are queued again, as often as it takes, so nothing completed is
lost and nothing is counted twice. Every other failure (the evaluation raised; Optuna
refused the values at `tell`; recording them failed) counts toward one cap per parameter
set, carried through its retries: after MAX_ERRORS it is left failed.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import MachineError
from ..presets import paper_models
from .objective import (
    FAILURE,
    RESAMPLES,
    Evaluator,
    RepeatedTrial,
    check_same_kind,
    directions,
    failure_kind,
    latency_budget,
    make_objective,
    objectives,
    taken_specs,
    untried,
)
from .space import LEGACY_CONSTRAINTS, constraint_names
from .storage import open_storage, redact, sqlite_path
from .study_file import StudyConfig

MAX_ERRORS = 3  # a parameter set that failed this often (by any path but an interruption) is left failed
POLL_S = 2.0
QUEUE_AHEAD = 1  # tickets waiting at once: each worker queues the one it is about to claim
WORKERS = "shufflesearch:workers"  # study system attr: workers that have joined, on any machine (seed streams)


class StorageWriteFailed(MachineError):
    """The storage failed while the search wrote to it (a full disk, a lost server)."""


def create_sampler(config: StudyConfig, stream: int = 0):
    """The study's sampler on seed stream `stream` (0: the study's seed; every worker takes its own)."""
    import optuna

    seed = (
        config.seed if stream == 0 else int.from_bytes(hashlib.sha256(f"{config.seed}/{stream}".encode()).digest()[:4])
    )
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def create_pruner(config: StudyConfig, max_epochs: int):
    import optuna

    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3)
    if config.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def load_or_create(config: StudyConfig, storage, name: str, window, max_epochs: int = 1, latency=None):
    import optuna

    study = optuna.create_study(
        storage=storage, study_name=name, directions=directions(config), load_if_exists=True,
        sampler=create_sampler(config), pruner=create_pruner(config, max_epochs),
    )  # fmt: skip
    check_same_kind(config, name, [d.name.lower() for d in study.directions], study.user_attrs)
    if study.metric_names is None:  # optuna-dashboard and Optuna's plots name the values by these
        with warnings.catch_warnings(action="ignore", category=optuna.exceptions.ExperimentalWarning):
            study.set_metric_names(objectives(config))
    if "window_mflops" not in study.user_attrs:
        study.set_user_attr("window_mflops", list(window))
        study.set_user_attr("mode", config.mode)
        study.set_user_attr("objectives", objectives(config))
        study.set_user_attr("study_file", str(config.path))
        study.set_user_attr("budgeted", config.budgeted())
        study.set_user_attr("constraint_names", constraint_names(latency))  # of each trial's "constraints" list
        if latency is not None:
            study.set_user_attr("window_latency_ms", list(latency.window_ms))
            study.set_user_attr("latency_predictor", latency.predictor)
        study.set_user_attr("candidates", len(config.space.candidates(window, latency)))
    return study


def join_study(config: StudyConfig, study) -> int:
    """Take this worker's seed stream: the study's count of workers so far. Call under the claim lock.

    Workers that start together on many machines would otherwise seed their samplers alike and
    propose the same trials; a resumed study gets fresh streams, so it does not replay the first run.
    """
    stream = study._storage.get_study_system_attrs(study._study_id).get(WORKERS, 0)
    study._storage.set_study_system_attr(study._study_id, WORKERS, stream + 1)
    study.sampler = create_sampler(config, stream)
    return stream


def prepare_study(config: StudyConfig, study, window, trials: int, latency=None) -> dict:
    """Queue failed trials again and the next ticket while fewer than `trials` exist; call under the claim lock.

    A failed trial is queued again with its parameters: always after an interruption; after
    anything else (the evaluation raised, Optuna refused its values) while its parameter set
    has failed fewer than MAX_ERRORS times. A refused duplicate's ticket is sampled again.
    """
    from optuna.trial import TrialState

    all_trials = study.get_trials(deepcopy=False)
    retried = {n for t in all_trials for n in t.system_attrs.get("retry_history", [])}
    requeued = 0
    for t in all_trials:
        if (
            t.state == TrialState.FAIL
            and t.number not in retried
            and _queue_again(config, study, window, t, all_trials, latency)
        ):
            retried.add(t.number)
            requeued += 1
    all_trials = study.get_trials(deepcopy=False)
    live = [t for t in all_trials if t.state != TrialState.FAIL or (t.number not in retried)]
    waiting = sum(t.state == TrialState.WAITING for t in all_trials)
    missing = min(trials - len(live), QUEUE_AHEAD - waiting)
    tried_presets = {t.user_attrs.get("preset") for t in all_trials}
    queued = 0
    if config.enqueue_presets:
        for name, spec in paper_models().items():
            params = config.space.to_params(spec, window, latency)
            if queued >= missing or name in tried_presets or params is None:
                continue
            study.enqueue_trial(params, user_attrs={"preset": name}, skip_if_exists=False)
            queued += 1
    for _ in range(missing - queued):
        study.enqueue_trial({}, skip_if_exists=False)
    return {"requeued": requeued, "queued": max(missing, 0), "existing": len(live)}


def _queue_again(config: StudyConfig, study, window, failed, all_trials, latency=None) -> bool:
    """Queue the failed trial's ticket again (see prepare_study); False: its parameter set is left failed."""
    kind = failure_kind(failed)
    if kind == "duplicate":  # the sampler gets one more go; then an untried spec is drawn at random
        resamples = failed.system_attrs.get(RESAMPLES, 0) + 1
        params = {}
        if resamples > 1 and (left := untried(config, window, taken_specs(all_trials), latency)):
            spec = random.Random(f"{config.seed}/{failed.number}").choice(left)
            params = config.space.to_params(spec, window, latency) or {}
        _add_ticket(study, failed, {"fixed_params": params, RESAMPLES: resamples} if params else {RESAMPLES: resamples})
        return True
    attrs = dict(failed.user_attrs)
    if kind is None:  # failed outside the evaluation: counted here, as the objective counts what it raises
        attrs["errors"] = attrs.get("errors", 0) + 1
        attrs["error"] = "failed outside the evaluation (Optuna refused its values, or recording them failed)"
    if kind != "interrupted" and attrs.get("errors", 0) >= MAX_ERRORS:
        return False
    # Optuna's own (constraints: set again, as the same, when the spec is sampled) and our marks stay behind.
    dropped = (FAILURE, RESAMPLES, LEGACY_CONSTRAINTS)
    system = {k: v for k, v in failed.system_attrs.items() if k not in dropped and ":" not in k}
    _add_ticket(study, failed, system, failed.params, failed.distributions, attrs)
    return True


def _add_ticket(study, failed, system_attrs: dict, params=None, distributions=None, user_attrs=None) -> None:
    """A waiting trial that answers the failed one's ticket (as Optuna's RetryHeartbeatStaleTrialCallback)."""
    import optuna

    history = [*failed.system_attrs.get("retry_history", []), failed.number]
    system_attrs = {**system_attrs, "failed_trial": failed.system_attrs.get("failed_trial", failed.number),
                    "retry_history": history}  # fmt: skip
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=params or {},
                                              distributions=distributions or {}, user_attrs=user_attrs or {},
                                              system_attrs=system_attrs))  # fmt: skip


@dataclass
class WorkerStats:
    trials_run: int = 0


def run_worker(config: StudyConfig, storage_url: str, trials: int, evaluate: Evaluator, max_epochs: int = 1,
               stop: Callable[[], bool] = lambda: False) -> WorkerStats:  # fmt: skip
    """Take queued trials of every study window until none is left anywhere.

    A storage that fails while the search writes (a full disk, a lost server) raises
    StorageWriteFailed, one line: what is already stored stays, and `--resume` goes on.
    """
    storage = open_storage(storage_url)
    _beat_quietly(storage)
    # A retry of a dead worker's trial (Optuna's callback) inherits its constraints; sampling the same
    # spec sets them again, equal, and Optuna warns that it ignores them: known and harmless.
    warnings.filterwarnings("ignore", message="The constraint value is ignored", category=UserWarning)
    stats = WorkerStats()
    try:
        for name, window in config.budget_windows().items():
            _run_window(config, storage, storage_url, name, window, trials, evaluate, max_epochs, stop, stats)
    except Exception as exc:
        reason = storage_failure(exc)
        if reason is None:
            raise
        raise StorageWriteFailed(f"the study storage {redact(storage_url)} failed during the search: {reason}; "
                                 "the trials finished before are kept: fix it (free space) and continue with "
                                 "--resume") from None  # fmt: skip
    return stats


def _run_window(config, storage, storage_url, name, window, trials, evaluate, max_epochs, stop, stats) -> None:
    from optuna.trial import TrialState

    latency = latency_budget(config, name)  # None unless the study budgets milliseconds
    # a budget-scaled window may train more epochs than the study's base recipe: its pruner counts them all
    max_epochs = max(max_epochs, round(config.window_fidelity(name).epochs))
    study = load_or_create(config, storage, name, window, max_epochs, latency)
    lock = ClaimLock(storage, storage_url, name)
    objective = make_objective(config, window, evaluate, lock.release, latency)
    try:
        lock.acquire()
        join_study(config, study)
        prepare_study(config, study, window, trials, latency)
        lock.release()
        while not stop():
            lock.acquire()
            try:
                fail_dead_trials(study, storage)  # dead workers' trials go back in the queue
                prepare_study(config, study, window, trials, latency)  # and interrupted ones
                counts = _count_states(study)
                if counts[TrialState.WAITING] == 0:
                    lock.release()
                    if counts[TrialState.RUNNING] == 0:
                        break  # every ticket is done
                    time.sleep(POLL_S)  # others are running: one may die and need a retry
                    continue
                try:
                    study.optimize(objective, n_trials=1, catch=(RepeatedTrial,))
                except ValueError as exc:
                    # Stalled past the grace period (a suspended laptop), this worker was taken for
                    # dead: its trial is already FAIL and queued again, so drop this result.
                    if "Cannot tell a FAIL trial" not in str(exc):
                        raise
                    continue
                stats.trials_run += 1
            finally:
                lock.release()
    finally:
        lock.close()


def storage_failure(exc: BaseException) -> str | None:
    """The storage's own words if `exc` (or what it wraps) is the storage failing, else None.

    Optuna hides a failed write of a trial's result behind `AssertionError: Should not reach.`;
    the driver's error is in its context.
    """
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    seen = 0
    while exc is not None and seen < 20:  # bounded: a chain can loop
        if isinstance(exc, SQLAlchemyError | sqlite3.Error) or (isinstance(exc, OSError) and exc.errno in _FULL):
            root = getattr(exc, "orig", None) or exc
            text = root.strerror if isinstance(root, OSError) and root.strerror else str(root).strip()
            return redact((text.splitlines() or [type(root).__name__])[0])
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


def _beat_quietly(storage) -> None:
    """A heartbeat the storage cannot record is skipped, not a traceback from Optuna's heartbeat thread:
    a storage that stays broken fails the trial's next write, which says so in one line."""
    record = storage.record_heartbeat

    def record_heartbeat(trial_id: int) -> None:
        with contextlib.suppress(Exception):
            record(trial_id)

    storage.record_heartbeat = record_heartbeat


def _count_states(study) -> Counter:
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def fail_dead_trials(study, storage) -> None:
    """Mark FAIL (and queue again) the running trials whose worker is gone.

    Optuna's heartbeat check misses one case: a worker killed after it took a trial but
    before its first heartbeat leaves a RUNNING trial with no heartbeat row at all, which
    would keep every other worker waiting for it forever. Such a trial, older than twice
    the grace period, is dead too.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState
    from sqlalchemy import text

    fail_stale_trials(study)
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=2 * storage.grace_period)
    with storage.engine.connect() as connection:  # the tables are Optuna's RDB schema (pinned optuna<6)
        orphans = connection.execute(
            text(
                "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
                "WHERE t.study_id = :study AND t.state = 'RUNNING' AND h.trial_id IS NULL AND t.datetime_start < :cutoff"
            ),
            {"study": study._study_id, "cutoff": cutoff},
        ).scalars().all()  # fmt: skip
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in orphans:
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                retry(study, storage.get_trial(trial_id))
        except UpdateFinishedTrialError:
            pass  # another worker got there first


class ClaimLock:
    """Mutual exclusion for claiming trials of one study, across processes and machines.

    Not a context manager on purpose: the worker releases it from inside the objective,
    right after Optuna has popped the queued trial. `release` is idempotent.
    """

    def __init__(self, storage, url: str, study_name: str) -> None:
        self._path = sqlite_path(url)
        self._storage = storage
        self._key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        self._held = False
        self._file_lock = None
        self._connection = None

    def acquire(self) -> None:
        if self._path is not None:
            if self._file_lock is None:
                from filelock import FileLock

                # Not thread-local: the lock is this object's, as the flock on one descriptor was, whoever releases it.
                self._file_lock = FileLock(self._path.with_name(self._path.name + ".lock"), thread_local=False)
            self._file_lock.acquire()  # waits as long as it takes
        else:
            from sqlalchemy import text

            if self._connection is None:
                self._connection = self._storage.engine.connect()
            self._connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._path is not None:
            self._file_lock.release()
        else:
            from sqlalchemy import text

            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})

    def close(self) -> None:
        self.release()
        if self._connection is not None:
            self._connection.close()
        self._file_lock = self._connection = None


# fmt: off
__all__ = ["MAX_ERRORS", "ClaimLock", "StorageWriteFailed", "WorkerStats", "fail_dead_trials", "join_study",
           "load_or_create", "prepare_study", "run_worker", "storage_failure"]
# fmt: on
