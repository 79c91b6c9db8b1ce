"""Train many (spec, seed) runs of one recipe, one after another or several processes at once.

The fidelity study, the shuffle ablation and the resolving-power ladder are all "these specs, these
seeds, this recipe": this is their one runner. On a small CPU several single-thread processes beat
one process with several threads (ShuffleNet's small grouped convs scale poorly across threads).
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..spec import ShuffleNetSpec
from .datasets import ImageDataset
from .devices import worker_devices
from .recipe import Fidelity
from .trainer import TrainProgress, TrainResult, train_proxy

__all__ = ["RunProgress", "train_many"]


@dataclass(frozen=True)
class RunProgress:
    """Which run is training, and its own progress (with workers: once per finished run)."""

    run: int
    runs: int
    label: str
    seed: int
    train: TrainProgress


def train_many(
    jobs: Sequence[tuple[ShuffleNetSpec, int]],
    dataset: ImageDataset,
    fidelity: Fidelity,
    progress: Callable[[RunProgress], None] | None = None,
    cache: Any = None,
    threads: int | None = None,
    workers: int = 1,
    device: str = "cpu",
) -> list[TrainResult]:
    """Each (spec, seed) of `jobs` trained at `fidelity`; the results in the order of `jobs`.

    `workers` > 1 trains that many at once in separate processes with one thread each, largest
    models first (so the last to finish is a short one). `device` ("cpu", "auto", "cuda", ...):
    each worker trains on its own (`devices.worker_devices`: GPUs round-robin), checked first.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer, e.g. workers=2")
    devices = worker_devices(device, workers)
    results: dict[int, TrainResult] = {}
    if workers == 1:
        for n, (spec, seed) in enumerate(jobs, 1):
            send = _relay(progress, n, len(jobs), spec.label, seed)
            results[n - 1] = train_proxy(spec, dataset, fidelity, seed=seed, progress=send, cache=cache,
                                         threads=threads, device=devices[0])  # fmt: skip
        return [results[i] for i in range(len(jobs))]
    ctx = multiprocessing.get_context("spawn")  # fork after torch has threads is unsafe
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0].scale)
    # A Pool, not ProcessPoolExecutor: on Ctrl-C its `terminate()` (on leaving the block) stops
    # the runs in progress at once instead of finishing the whole queue.
    free = ctx.Queue()  # each worker takes one device as it starts
    for name in devices:
        free.put(name)
    with ctx.Pool(workers, initializer=_set_dataset, initargs=(dataset, free, devices[0])) as pool:
        tasks = [(i, jobs[i][0], fidelity, jobs[i][1], cache) for i in order]
        for n, (i, result) in enumerate(pool.imap_unordered(_train_in_worker, tasks), 1):
            results[i] = result
            if progress is not None:
                done = TrainProgress(fidelity.epochs, fidelity.epochs, 0, 0, 0.0, result.images_seen, 0.0, True)
                progress(RunProgress(n, len(jobs), jobs[i][0].label, jobs[i][1], done))
    return [results[i] for i in range(len(jobs))]


def _relay(progress: Callable | None, run: int, runs: int, label: str, seed: int) -> Callable | None:
    if progress is None:
        return None
    return lambda p: progress(RunProgress(run, runs, label, seed, p))


_WORKER_DATASET: ImageDataset | None = None
_WORKER_DEVICE = "cpu"


def _set_dataset(dataset: ImageDataset, free_devices: Any = None, fallback: str = "cpu") -> None:
    global _WORKER_DATASET, _WORKER_DEVICE
    _WORKER_DATASET = dataset
    try:  # a worker started in place of one that died finds the queue empty: it shares the first device
        _WORKER_DEVICE = free_devices.get(timeout=5) if free_devices is not None else fallback
    except queue.Empty:
        _WORKER_DEVICE = fallback
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it terminates the pool


def _train_in_worker(task: tuple) -> tuple[int, TrainResult]:
    i, spec, fidelity, seed, cache = task
    assert _WORKER_DATASET is not None
    return i, train_proxy(spec, _WORKER_DATASET, fidelity, seed=seed, cache=cache, threads=1, device=_WORKER_DEVICE)
