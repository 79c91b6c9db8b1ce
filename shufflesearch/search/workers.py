"""Start N local worker processes on a study and watch them until the queue is empty.

Other machines join by running the same command against the same PostgreSQL URL: the
queue and the claim lock live in the storage, not in this process. Each local worker trains
on its own device (`accuracy.devices.worker_devices`: with `device = "auto"` or "cuda" and k
GPUs, worker i takes cuda:i mod k), so `--workers` equal to the GPU count gives one worker per
GPU; across machines run one such command per machine (or `--device cuda:N` per GPU) on one
PostgreSQL study, with `[study] artifacts` on a shared folder or bucket so weights are shared too.

Before any worker starts: the stored study must be of the same kind (`check_study_matches`),
and N workers must fit the machine's memory (`check_workers_fit`). A worker stops (as on
Ctrl-C: its trial is queued again) when the process that started it is gone, however it
died; and a search whose other workers finished every trial ends well though one died.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from .. import interrupt, logs
from ..errors import MachineError, UsageError
from .objective import check_same_kind
from .progress import SearchProgress, SearchWatch
from .queue import run_worker
from .results import StudySummary, read_studies, study_finished, summarize_studies
from .storage import NoSuchStorage, open_storage, reading
from .study_file import StudyConfig, load_study


class SearchError(MachineError):
    """A worker failed; the message is the worker's one-line error."""


class NothingToResume(UsageError):
    """`--resume` for a study that has no trials in this storage."""


class TooManyWorkers(MachineError):
    """`--workers N` would need more memory than this machine has available."""


class WorkerLost(UserWarning):
    """A worker failed or died, and the others finished every trial without it."""


# Measured: a CPU worker training a tiny net holds ~600 MB (torch, Optuna, the dataset as loaded);
# its run's images and its model's training memory come on top (see check_workers_fit).
WORKER_RUNTIME_BYTES = 512 * 2**20
PARENT_GONE_GRACE_S = 30  # a worker whose parent died stops at its next safe point, or exits after this

logger = logging.getLogger(__name__)


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
    names = set()
    if storage is not None:
        try:
            with reading(storage_url):  # a damaged file: one line, not Optuna's traceback
                names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
        finally:
            storage.engine.dispose()
    if not set(config.budget_windows()) & names:
        raise NothingToResume(f"nothing to resume: study {config.name!r} has no trials in this storage; "
                              "run it without --resume first")  # fmt: skip


def check_study_matches(config: StudyConfig, storage_url: str) -> None:
    """Raise StudyMismatch if a stored study of one of the study's names has another mode or objectives.

    Optuna would open it and fail every trial at `tell`: found at once here, before any work.
    """
    try:
        storage = open_storage(storage_url, create=False)
    except NoSuchStorage:
        return
    windows = config.budget_windows()
    try:
        stored = storage.get_all_studies()
    finally:
        storage.engine.dispose()  # an SQLite connection left open here kept this process's later reads stale
    for study in stored:
        if study.study_name in windows:
            check_same_kind(config, study.study_name, [d.name.lower() for d in study.directions], study.user_attrs)


def check_workers_fit(config: StudyConfig, workers: int, devices: list[str], dataset) -> None:
    """Raise TooManyWorkers unless `workers` processes fit this machine's available memory.

    Each holds its runtime, its run's images (uint8, resized) and, on the CPU, the training
    floor (`memory.memory_floor_bytes`) of the largest spec the study may sample. Silent where
    the available memory is unknown, and for one worker (the trainer checks its own spec).
    """
    from .. import memory
    from ..accuracy.recipe import adapt_spec

    available = memory.available_bytes()
    if workers < 2 or available is None:
        return
    fid, space = config.fidelity, config.space
    size = fid.resolution or dataset.image_size
    evaluated = len(dataset.test_images) if fid.eval_images is None else min(fid.eval_images, len(dataset.test_images))
    try:  # what a run holds of its images (resized up front, or per batch when that would be large)
        from ..accuracy.images import split_bytes
    except ImportError:
        split_bytes = None
    images = 0
    for count in (min(fid.train_images, len(dataset.train_images)), evaluated):
        held = count * dataset.in_channels * size**2
        images += split_bytes(count, dataset.in_channels, dataset.image_size, size) if split_bytes else held
    loaded = dataset.train_images.nbytes + dataset.test_images.nbytes
    batch, copies = max(2, min(fid.batch_size, fid.train_images)), 2 + (fid.momentum > 0)
    largest, model = None, 0
    for window in config.budget_windows().values():
        for g, r, b, sh in space.discrete_choices():
            ladder = space.feasible(g, r, b, sh, window)
            if ladder:  # the floor grows with the width: the widest spec of each choice is the one to check
                spec = adapt_spec(space.spec(g, r, ladder[-1][0], b, sh), dataset, fid)
                need = memory.memory_floor_bytes(spec, batch, copies)
                largest, model = (spec, need) if need > model else (largest, model)
    on_cpu = sum(d == "cpu" for d in devices)
    each = WORKER_RUNTIME_BYTES + images + loaded
    need = workers * each + on_cpu * model
    if need > available:
        fits = max(1, int(available // (each + (model if on_cpu else 0))))
        what = f", {largest.label} training on batches of {batch}" if on_cpu and largest else ""
        raise TooManyWorkers(
            f"{workers} workers need at least {need / 2**30:.1f} GiB (each: its runtime and images{what}); "
            f"this machine has {available / 2**30:.1f} GiB available: use --workers {fits} or fewer"
        )


def run_search(config: StudyConfig, storage_url: str, trials: int | None = None, workers: int = 1,
               resume: bool = False, on_progress: Callable[[SearchProgress], None] | None = None,
               poll_s: float = 2.0, windows: dict[str, str] | None = None,
               on_race: Callable[[str], None] | None = None) -> list[StudySummary]:  # fmt: skip
    """Run the study to `trials` finished trials per budget window with `workers` processes, then race
    each window's finalists (`racing.race_windows`; `on_race` gets a line per race training).

    `on_progress` gets a `SearchProgress` (studies, trials, what changed, the time left) every
    `poll_s` seconds and once at the end; `windows` (study name -> its budget window as text) is
    handed on in it. Ctrl-C ends it with KeyboardInterrupt once the running trials have stopped cleanly.
    """
    trials = trials or config.trials
    with interrupt.deferred():
        interrupt.check()  # pressed (and perhaps swallowed) while the command was starting
        return _run_search(config, storage_url, trials, workers, resume, on_progress, poll_s, windows, on_race)


def _run_search(config, storage_url, trials, workers, resume, on_progress, poll_s, windows,
                on_race=None) -> list[StudySummary]:  # fmt: skip
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import worker_devices
    from .objective import latency_table

    devices = worker_devices(config.device, workers)  # a GPU that is not there fails before any work
    dataset = load_dataset(config.dataset, config.data_dir)  # a missing dataset fails before anything is written
    latency_table(config)  # and so does a missing or foreign latency table
    check_workers_fit(config, workers, devices, dataset)  # and N workers that cannot fit
    del dataset  # each worker loads its own
    check_study_matches(config, storage_url)  # and a stored study of another kind
    open_storage(storage_url).engine.dispose()  # fail here, once, if the URL is wrong (and keep no connection)
    if resume:
        check_resumable(config, storage_url)
    names = list(config.budget_windows())
    look = None
    if on_progress is not None:  # what is stored already (a resumed study) is not news
        watch = SearchWatch(trials, workers, windows or dict.fromkeys(names, ""), read_studies(storage_url, names)[1])

        def look() -> None:
            on_progress(watch.update(*read_studies(storage_url, names)))

    interrupt.check()
    logger.info("searching %s: %d trial(s) per budget window, %d worker(s) on %s", config.name, trials, workers,
                ", ".join(devices))  # fmt: skip
    if workers == 1:  # in this process: one torch import, and Ctrl-C reaches the trial directly
        _run_with_progress(config, storage_url, trials, look, poll_s, devices[0])
    else:
        _run_processes(config, storage_url, trials, devices, look, poll_s)
    interrupt.check()  # a Ctrl-C between trials ended the workers early: not a finished study
    if look is not None:
        look()
    from .racing import race_windows

    race_windows(config, storage_url, devices[0], on_race)
    return summarize_studies(storage_url, names)


def _run_with_progress(config, storage_url, trials, look, poll_s, device) -> None:
    from .objective import proxy_accuracy_evaluator

    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            look()

    watcher = threading.Thread(target=watch, daemon=True) if look else None
    if watcher:
        watcher.start()
    try:
        run_worker(config, storage_url, trials, proxy_accuracy_evaluator(config, device=device),
                   max_epochs=max(1, round(config.fidelity.epochs)), stop=interrupt.requested)  # fmt: skip
    finally:
        done.set()
        if watcher:
            watcher.join()


def _run_processes(config, storage_url, trials, devices, look, poll_s) -> None:
    context = multiprocessing.get_context("spawn")  # no fork: torch's threads do not survive it
    errors = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    procs = [
        context.Process(target=_worker_main, args=(str(config.path), storage_url, trials, i, threads, errors, device,
                                                   os.getpid(), logs.chosen()),
                        name=f"shufflesearch-worker-{i}")
        for i, device in enumerate(devices)
    ]  # fmt: skip
    with interrupt.sigint_blocked():
        for p in procs:
            p.start()
    try:
        while any(p.is_alive() for p in procs):
            interrupt.check()
            if look is not None:
                look()
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
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    problems += [(f"worker {p.name} {_exit_words(p.exitcode)}", 1) for p in procs if p.exitcode not in (0, None)]
    for p in procs:
        logger.debug("worker %s (pid %s) %s", p.name, p.pid, _exit_words(p.exitcode))
    if not problems:
        return
    message, code = problems[0]
    if study_finished(config, storage_url, trials):  # another worker took over the lost one's trial
        warnings.warn(f"{message}; the other workers finished every trial", WorkerLost, stacklevel=2)
        return
    error = SearchError(message)
    error.exit_code = code  # a worker's usage error (a study of another kind) stays one
    raise error


def _exit_words(code: int) -> str:
    if code == 0:
        return "exited cleanly"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _worker_main(config_path: str, storage_url: str, trials: int, index: int, threads: int, errors,
                 device: str = "cpu", parent: int | None = None,
                 log_levels: tuple[int, int] | None = None) -> None:  # fmt: skip
    warnings.showwarning = _one_line_warning
    if log_levels is not None:  # a spawned process starts with logging unset: show what the parent shows
        logs.show(*log_levels)
    if parent is not None:
        _stop_with_parent(parent)
    try:
        with interrupt.deferred(escalate=False):
            import torch

            from .objective import proxy_accuracy_evaluator

            torch.set_num_threads(threads)
            config = load_study(Path(config_path))
            evaluate = proxy_accuracy_evaluator(config, threads, device=device)
            run_worker(config, storage_url, trials, evaluate, max_epochs=max(1, round(config.fidelity.epochs)),
                       stop=interrupt.requested)  # fmt: skip
            interrupt.check()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if os.environ.get("SHUFFLESEARCH_DEBUG"):
            traceback.print_exc()
        errors.put((" ".join(str(exc).split()) or type(exc).__name__, getattr(exc, "exit_code", 1)))
        raise SystemExit(1) from None
    finally:
        interrupt.settle()  # exiting: a late Ctrl-C must not raise inside exit callbacks


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A worker's warnings as the command line shows its own: one line each, not Python's two."""
    with contextlib.suppress(OSError, ValueError):  # stderr gone with the parent
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def _stop_with_parent(parent: int) -> None:
    """Stop as on Ctrl-C (the trial is marked and queued again) once `parent` is gone, however it died.

    Linux tells a child when its parent dies (PR_SET_PDEATHSIG); elsewhere, and for a parent
    that died before that was set, a thread watches the parent id change. A worker that does
    not reach a safe point within PARENT_GONE_GRACE_S exits; its trial is then a dead worker's.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGINT))  # 1: PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(PARENT_GONE_GRACE_S)
        os._exit(130)

    threading.Thread(target=watch, name="shufflesearch-parent-watch", daemon=True).start()


__all__ = [
    "NothingToResume",
    "SearchError",
    "TooManyWorkers",
    "WorkerLost",
    "check_resumable",
    "check_study_matches",
    "check_workers_fit",
    "run_search",
    "storage_url_for",
]
