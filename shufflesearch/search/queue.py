"""Run a study: queue exactly N trials ("tickets"), let any number of workers take them.

Exactly-N: under the claim lock, `prepare_study` queues the next trial ("ticket") while
fewer than N exist (the paper's presets that fit the budget first), one ahead: queueing
all N up front took minutes for a large N and wrote thousands of rows Ctrl-C could not
stop. The worker then calls `study.optimize(n_trials=1)`; Optuna pops the queued trial and
the objective releases the lock as its first act. So workers on any number of machines never
run more than N trials between them, and never the same one twice. The claim lock (a file
lock beside the SQLite file, a PostgreSQL advisory lock on a server) makes "is there a
trial left to run?" and "take it" one step across processes and machines.

Faults: a trial interrupted by Ctrl-C is marked FAIL by Optuna; one whose worker was
killed stops sending heartbeats and is marked FAIL by the next worker that looks. Either
way the same parameters are queued again, as often as it takes, so nothing completed is
lost and nothing is counted twice. A trial whose evaluation raised is retried too, but
only until it has raised MAX_ERRORS times.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..presets import paper_models
from .objective import Evaluator, make_objective
from .storage import open_storage, sqlite_path
from .study_file import StudyConfig

MAX_ERRORS = 3  # a trial whose evaluation raised this often is left failed: it would raise again
POLL_S = 2.0
QUEUE_AHEAD = 1  # tickets waiting at once: each worker queues the one it is about to claim


def create_sampler(config: StudyConfig, worker_index: int, trials_before: int = 0):
    import optuna

    # Each worker gets its own seed, or parallel workers would propose identical trials; and a
    # resumed run is offset by the trials already stored, or it would replay the first run's proposals.
    seed = config.seed + 1000 * worker_index + trials_before
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


def directions(config: StudyConfig) -> list[str]:
    return ["maximize"] if config.mode == "per-budget" else ["maximize", "minimize"]


def load_or_create(config: StudyConfig, storage, name: str, window, worker_index: int = 0, max_epochs: int = 1):
    import optuna

    study = optuna.create_study(
        storage=storage, study_name=name, directions=directions(config), load_if_exists=True,
        sampler=create_sampler(config, worker_index), pruner=create_pruner(config, max_epochs),
    )  # fmt: skip
    trials_before = len(study.get_trials(deepcopy=False))
    if trials_before:
        study.sampler = create_sampler(config, worker_index, trials_before)
    if "window_mflops" not in study.user_attrs:
        study.set_user_attr("window_mflops", list(window))
        study.set_user_attr("mode", config.mode)
        study.set_user_attr("study_file", str(config.path))
        study.set_user_attr("candidates", len(config.space.candidates(window)))
    return study


def prepare_study(config: StudyConfig, study, window, trials: int) -> dict:
    """Requeue interrupted trials and queue the next ticket while fewer than `trials` exist; call under the claim lock."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    all_trials = study.get_trials(deepcopy=False)
    retried = {n for t in all_trials for n in t.system_attrs.get("retry_history", [])}
    requeued = 0
    for t in all_trials:
        if t.state == TrialState.FAIL and t.number not in retried and t.user_attrs.get("errors", 0) < MAX_ERRORS:
            RetryHeartbeatStaleTrialCallback()(study, t)
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
            params = config.space.to_params(spec, window)
            if queued >= missing or name in tried_presets or params is None:
                continue
            study.enqueue_trial(params, user_attrs={"preset": name}, skip_if_exists=False)
            queued += 1
    for _ in range(missing - queued):
        study.enqueue_trial({}, skip_if_exists=False)
    return {"requeued": requeued, "queued": max(missing, 0), "existing": len(live)}


@dataclass
class WorkerStats:
    trials_run: int = 0


def run_worker(config: StudyConfig, storage_url: str, trials: int, evaluate: Evaluator, worker_index: int = 0,
               max_epochs: int = 1, stop: Callable[[], bool] = lambda: False) -> WorkerStats:  # fmt: skip
    """Take queued trials of every study window until none is left anywhere."""
    from optuna.trial import TrialState

    storage = open_storage(storage_url)
    stats = WorkerStats()
    for name, window in config.budget_windows().items():
        study = load_or_create(config, storage, name, window, worker_index, max_epochs)
        lock = ClaimLock(storage, storage_url, name)
        objective = make_objective(config, window, evaluate, lock.release)
        try:
            lock.acquire()
            prepare_study(config, study, window, trials)
            lock.release()
            while not stop():
                lock.acquire()
                try:
                    fail_dead_trials(study, storage)  # dead workers' trials go back in the queue
                    prepare_study(config, study, window, trials)  # and interrupted ones
                    counts = _count_states(study)
                    if counts[TrialState.WAITING] == 0:
                        lock.release()
                        if counts[TrialState.RUNNING] == 0:
                            break  # every ticket is done
                        time.sleep(POLL_S)  # others are running: one may die and need a retry
                        continue
                    try:
                        study.optimize(objective, n_trials=1, catch=())
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
    return stats


def _count_states(study) -> dict:
    from optuna.trial import TrialState

    counts = dict.fromkeys(TrialState, 0)
    for t in study.get_trials(deepcopy=False):
        counts[t.state] += 1
    return counts


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
        self._handle = None
        self._connection = None

    def acquire(self) -> None:
        if self._path is not None:
            if self._handle is None:
                self._handle = open(self._path.with_name(self._path.name + ".lock"), "a")  # noqa: SIM115
            fcntl.flock(self._handle, fcntl.LOCK_EX)
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
            fcntl.flock(self._handle, fcntl.LOCK_UN)
        else:
            from sqlalchemy import text

            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})

    def close(self) -> None:
        self.release()
        for resource in (self._handle, self._connection):
            if resource is not None:
                resource.close()
        self._handle = self._connection = None


__all__ = [
    "MAX_ERRORS",
    "ClaimLock",
    "WorkerStats",
    "fail_dead_trials",
    "load_or_create",
    "prepare_study",
    "run_worker",
]
