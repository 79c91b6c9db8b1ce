"""Start N local worker processes on a study and watch them until the queue is empty.

Other machines join by running the same command against the same PostgreSQL URL: the
queue and the claim lock live in the storage, not in this process. Each local worker trains
on its own device (`accuracy.devices.worker_devices`: with `device = "auto"` or "cuda" and k
GPUs, worker i takes cuda:i mod k), so `--workers` equal to the GPU count gives one worker per
GPU; across machines run one such command per machine (or `--device cuda:N` per GPU) on one
PostgreSQL study, with `[study] artifacts` on a shared folder or bucket so weights are shared too.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .. import interrupt
from ..errors import MachineError, UsageError
from .queue import run_worker
from .results import StudySummary, summarize_studies
from .storage import NoSuchStorage, open_storage
from .study_file import StudyConfig, load_study


class SearchError(MachineError):
    """A worker failed; the message is the worker's one-line error."""


class NothingToResume(UsageError):
    """`--resume` for a study that has no trials in this storage."""


def storage_url_for(config: StudyConfig, override: str | None = None) -> str:
    """The storage a command uses: `override` (a --storage URL), else the study file's, else the .db beside it."""
    return override if override is not None else config.storage or config.default_storage()


def check_resumable(config: StudyConfig, storage_url: str) -> None:
    """Raise NothingToResume unless some budget window of the study has trials in this storage."""
    import optuna

    try:
        storage = open_storage(storage_url, create=False)
    except NoSuchStorage:
        storage = None
    names = (
        {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)} if storage else set()
    )
    if not set(config.budget_windows()) & names:
        raise NothingToResume(f"nothing to resume: study {config.name!r} has no trials in this storage; "
                              "run it without --resume first")  # fmt: skip


def run_search(config: StudyConfig, storage_url: str, trials: int | None = None, workers: int = 1,
               resume: bool = False, on_progress: Callable[[list[StudySummary]], None] | None = None,
               poll_s: float = 2.0) -> list[StudySummary]:  # fmt: skip
    """Run the study to `trials` finished trials per budget window with `workers` processes.

    Ctrl-C ends it with KeyboardInterrupt once the running trials have stopped cleanly.
    """
    trials = trials or config.trials
    with interrupt.deferred():
        interrupt.check()  # pressed (and perhaps swallowed) while the command was starting
        return _run_search(config, storage_url, trials, workers, resume, on_progress, poll_s)


def _run_search(config, storage_url, trials, workers, resume, on_progress, poll_s) -> list[StudySummary]:
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import worker_devices
    from .objective import latency_table

    devices = worker_devices(config.device, workers)  # a GPU that is not there fails before any work
    load_dataset(config.dataset, config.data_dir)  # a missing dataset fails before anything is written
    latency_table(config)  # and so does a missing or foreign latency table
    open_storage(storage_url)  # fail here, once, if the URL is wrong
    if resume:
        check_resumable(config, storage_url)
    names = list(config.budget_windows())
    interrupt.check()
    if workers == 1:  # in this process: one torch import, and Ctrl-C reaches the trial directly
        _run_with_progress(config, storage_url, trials, names, on_progress, poll_s, devices[0])
    else:
        _run_processes(config, storage_url, trials, devices, names, on_progress, poll_s)
    interrupt.check()  # a Ctrl-C between trials ended the workers early: not a finished study
    summaries = summarize_studies(storage_url, names)
    if on_progress is not None:
        on_progress(summaries)
    return summaries


def _run_with_progress(config, storage_url, trials, names, on_progress, poll_s, device) -> None:
    import threading

    from .objective import proxy_accuracy_evaluator

    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            on_progress(summarize_studies(storage_url, names))

    watcher = threading.Thread(target=watch, daemon=True) if on_progress else None
    if watcher:
        watcher.start()
    try:
        run_worker(config, storage_url, trials, proxy_accuracy_evaluator(config, device=device),
                   max_epochs=max(1, round(config.fidelity.epochs)), stop=interrupt.requested)  # fmt: skip
    finally:
        done.set()
        if watcher:
            watcher.join()


def _run_processes(config, storage_url, trials, devices, names, on_progress, poll_s) -> None:
    context = multiprocessing.get_context("spawn")  # no fork: torch's threads do not survive it
    errors = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    procs = [
        context.Process(target=_worker_main, args=(str(config.path), storage_url, trials, i, threads, errors, device),
                        name=f"shufflesearch-worker-{i}")
        for i, device in enumerate(devices)
    ]  # fmt: skip
    with interrupt.sigint_blocked():
        for p in procs:
            p.start()
    try:
        while any(p.is_alive() for p in procs):
            interrupt.check()
            if on_progress is not None:
                on_progress(summarize_studies(storage_url, names))
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for p in procs:  # the terminal sends SIGINT to the group; a lone parent forwards it
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():  # stuck outside any trial: its trial, if any, is retried like a dead worker's
                p.kill()
        raise
    for p in procs:
        p.join()
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    if messages:
        raise SearchError(messages[0])
    failed = [p for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise SearchError(f"worker {failed[0].name} exited with code {failed[0].exitcode}")


def _worker_main(config_path: str, storage_url: str, trials: int, index: int, threads: int, errors,
                 device: str = "cpu") -> None:  # fmt: skip
    try:
        with interrupt.deferred(escalate=False):
            import torch

            from .objective import proxy_accuracy_evaluator

            torch.set_num_threads(threads)
            config = load_study(Path(config_path))
            evaluate = proxy_accuracy_evaluator(config, threads, device=device)
            run_worker(config, storage_url, trials, evaluate, worker_index=index,
                       max_epochs=max(1, round(config.fidelity.epochs)), stop=interrupt.requested)  # fmt: skip
            interrupt.check()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if os.environ.get("SHUFFLESEARCH_DEBUG"):
            traceback.print_exc()
        errors.put(" ".join(str(exc).split()) or type(exc).__name__)
        raise SystemExit(1) from None
    finally:
        interrupt.settle()  # exiting: a late Ctrl-C must not raise inside exit callbacks


__all__ = ["NothingToResume", "SearchError", "check_resumable", "run_search", "storage_url_for"]
