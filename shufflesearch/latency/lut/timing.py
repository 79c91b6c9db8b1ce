"""Timing many small models, here or on a device, robustly against a shared machine's bursts."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...environment import machine_info
from ..device_runner import latency_stats, time_manifest
from .table import LutError

CHUNK_MODELS = 150  # models per runner call: progress and per-call timeouts, without many ssh round trips
PhaseProgress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class Runner:
    """Times named ONNX models in chunks through device_runner's manifest mode, in-process or over ssh."""

    target: Any  # "local" or an SshTarget
    threads: int
    runs: int
    warmup: int
    clock: str
    rounds: int = 1
    seed: int = 0
    python: str = "python3"
    ssh_options: Sequence[str] | str = ()
    timeout_s: float = 1800.0
    machine: dict[str, Any] = field(default_factory=dict)

    def time(self, models: list[tuple], phase: str, progress: PhaseProgress | None, every_chunk: Sequence[tuple] = ()):
        """models: (name, weightless ONNX bytes, fill recipe) -> {name: [run times (ms) of each timing]}.

        Every model is timed once per round, each round in its own shuffled order, so a burst of
        load on a shared machine (or a device heating up) spoils one timing of a model, not its
        latency. Each of `every_chunk` (reference networks) is also timed in every chunk: it
        sees the same conditions as the blocks it is compared with.
        """
        timings: dict[str, list[list[float]]] = {}
        for r in range(self.rounds):
            order = list(models)
            random.Random(self.seed * 1000 + r).shuffle(order)
            for start in range(0, len(order), CHUNK_MODELS):
                files, entries = {}, []
                for i, (name, data, fill) in enumerate([*order[start : start + CHUNK_MODELS], *every_chunk]):
                    files[f"m{i}.onnx"] = data
                    entries.append({"name": name, "file": f"m{i}.onnx"})
                    if fill:
                        entries[-1]["weights"] = {"file": "w.bin", "fill": fill}  # one at a time: a shared name
                for name, result in self._run(files, {"models": entries}).items():
                    timings.setdefault(name, []).append(result["times_ms"])
                if progress:
                    progress(phase, r * len(order) + min(start + CHUNK_MODELS, len(order)), self.rounds * len(order))
        return timings

    def _run(self, files: dict[str, bytes], manifest: dict) -> dict[str, Any]:
        settings = dict(threads=self.threads, runs=self.runs, warmup=self.warmup, seed=self.seed, clock=self.clock)
        if self.target == "local":
            with tempfile.TemporaryDirectory(prefix="shufflesearch-lut-") as directory:
                for name, data in files.items():
                    Path(directory, name).write_bytes(data)
                results = time_manifest(directory, manifest, **settings)
            self.machine = self.machine or machine_info()
            return results
        from ..ssh import time_models_remote

        payload = time_models_remote(files, manifest, self.target, python=self.python, ssh_options=self.ssh_options,
                                     timeout_s=self.timeout_s, **settings)  # fmt: skip
        self.machine = payload["machine"]
        return payload["results"]


def make_runner(target: Any, threads: int, runs: int, warmup: int, clock: str, rounds: int, **remote: Any) -> Runner:
    from ..measure import check_settings
    from ..ssh import SshTarget

    check_settings("onnxruntime", threads, runs, warmup)
    if clock not in ("wall", "cpu") or (clock == "cpu" and threads != 1):
        raise LutError(f"clock={clock!r} must be 'wall', or 'cpu' with threads=1 (it times one thread)")
    if type(rounds) is not int or not 1 <= rounds <= 100:
        raise LutError(f"rounds={rounds!r} must be an integer in [1, 100]; 3 outvotes one disturbed timing")
    if target != "local" and not isinstance(target, SshTarget):
        target = SshTarget.parse(target)
    return Runner(target, threads, runs, warmup, clock, rounds, **remote)


def robust_us(timings: list[list[float]], statistic: str) -> float:
    """Median over timings of each timing's statistic, in us."""
    values = sorted(latency_stats(times)[statistic] * 1e3 for times in timings)
    return (values[(len(values) - 1) // 2] + values[len(values) // 2]) / 2
