"""Measured latency on this machine: ONNX Runtime (what a device runs) or PyTorch eager.

Protocol: batch 1, a fixed number of intra-op threads, untimed warm-up runs, then timed
runs summarised by median, p90, min and IQR spread. Before timing, ONNX Runtime and
PyTorch must agree on a seeded input (max abs diff <= 1e-4, relative to the logit scale),
so the number belongs to the network the spec describes. ONNX Runtime timing is the very
code shipped to devices (`device_runner.time_onnx`).

>>> from shufflesearch.presets import get_preset
>>> result = measure_latency(get_preset("shufflenet_v1_x0_5_g3"), threads=1)  # doctest: +SKIP
>>> result.median_ms, result.machine["arch"]  # doctest: +SKIP
(1.9, 'x86_64')
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..environment import machine_info
from ..errors import MachineError, UsageError
from ..spec import ShuffleNetSpec
from .device_runner import RunnerError, latency_stats, sample_indices, seeded_input, time_onnx

BACKENDS = ("onnxruntime", "torch")
TOLERANCE = 1e-4  # max abs diff per unit of the largest |logit| (and at least absolute 1e-4)
MIN_RUNS = 3
MAX_THREADS = 1024


class LatencySettingError(UsageError):
    """A bad measurement setting (backend, threads, runs, warm-up, model path)."""


class OutputMismatchError(MachineError):
    """ONNX Runtime and PyTorch compute different outputs: the timing would be of another network."""


@dataclass(frozen=True)
class LatencyResult:
    """One latency measurement and everything needed to reproduce or distrust it."""

    median_ms: float
    p90_ms: float
    min_ms: float
    iqr_ms: float
    spread_pct: float  # IQR as a percentage of the median: above ~10% the machine was busy
    runs: int
    warmup: int
    target: str  # "local" or "ssh://user@host[:port]"
    backend: str  # "onnxruntime" | "torch"
    threads: int
    resolution: int
    machine: dict[str, Any]
    model: str = ""  # spec label or ONNX file name
    max_abs_diff: float | None = None  # ONNX Runtime vs PyTorch on the seeded input; None: no reference
    times_ms: tuple[float, ...] = ()
    kind: str = "measured"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["times_ms"] = list(self.times_ms)
        return data


def check_settings(backend: str, threads: int, runs: int, warmup: int) -> None:
    """Raise LatencySettingError (one line, with the fix) for an unusable setting."""
    if backend not in BACKENDS:
        raise LatencySettingError(f"backend={backend!r} is not supported; choose one of {', '.join(BACKENDS)}")
    for name, value, low, high, hint in (
        ("threads", threads, 1, MAX_THREADS, "1 matches the paper's single-core protocol"),
        ("runs", runs, MIN_RUNS, 10**6, "50 is the protocol default"),
        ("warmup", warmup, 0, 10**6, "10 is the protocol default"),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise LatencySettingError(f"{name}={value!r} must be an integer in [{low}, {high}]; {hint}")


def measure_latency(
    spec: ShuffleNetSpec,
    backend: str = "onnxruntime",
    threads: int = 1,
    runs: int = 50,
    warmup: int = 10,
    seed: int = 0,
) -> LatencyResult:
    """Latency of `spec`'s network (seeded weights) at batch 1 on this machine."""
    check_settings(backend, threads, runs, warmup)
    import torch

    from ..export import onnx_bytes

    data, model = onnx_bytes(spec, seed)
    check = time_onnx(data, threads=threads, runs=0, warmup=0, seed=seed)
    shape = check["input_shape"]
    diff = check_outputs(torch_output_sample(model, shape, seed), check["output_sample"], "local")
    if backend == "onnxruntime":
        times = time_onnx(data, threads=threads, runs=runs, warmup=warmup, seed=seed)["times_ms"]
    else:
        times = _time_torch(model, torch.from_numpy(seeded_input(shape, seed)), threads, runs, warmup)
    return result_from_timing(
        times,
        runs=runs,
        warmup=warmup,
        target="local",
        backend=backend,
        threads=threads,
        resolution=spec.resolution,
        machine=machine_info(),
        model=spec.label,
        max_abs_diff=diff,
    )


def measure_onnx_file(
    path: str | os.PathLike,
    input_shape: Sequence[int] | None = None,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 10,
    seed: int = 0,
) -> LatencyResult:
    """ONNX Runtime latency of an ONNX file (e.g. one block for a lookup table); no PyTorch reference.

    `input_shape` is needed only when the model's input shape is not fixed.
    """
    check_settings("onnxruntime", threads, runs, warmup)
    path = Path(path)
    if not path.is_file():
        raise LatencySettingError(f"ONNX model {str(path)!r} does not exist; export one with `shufflesearch export`")
    shape = list(input_shape) if input_shape is not None else None
    try:
        timing = time_onnx(str(path), threads=threads, runs=runs, warmup=warmup, seed=seed, input_shape=shape)
    except RunnerError as exc:
        raise LatencySettingError(f"{path}: {exc}") from None
    return result_from_timing(
        timing["times_ms"],
        runs=runs,
        warmup=warmup,
        target="local",
        backend="onnxruntime",
        threads=threads,
        resolution=int(timing["input_shape"][-1]),
        machine=machine_info(),
        model=path.name,
    )


def result_from_timing(times_ms: Sequence[float], **fields: Any) -> LatencyResult:
    """A LatencyResult from raw run times (ms) and the descriptive fields; stats from `latency_stats`."""
    stats = latency_stats(list(times_ms))
    keep = ("median_ms", "p90_ms", "min_ms", "iqr_ms", "spread_pct")
    return LatencyResult(**{k: stats[k] for k in keep}, times_ms=tuple(times_ms), **fields)


def torch_output_sample(model: Any, input_shape: Sequence[int], seed: int = 0) -> list[float]:
    """PyTorch's output on the seeded input, at the indices the device runner reports."""
    import torch

    x = torch.from_numpy(seeded_input(tuple(input_shape), seed))
    with torch.inference_mode():
        flat = model.eval()(x).reshape(-1).numpy()
    return [float(v) for v in flat[sample_indices(flat.size)]]


def check_outputs(expected: Sequence[float], got: Sequence[float], where: str) -> float:
    """Max abs diff between PyTorch's and ONNX Runtime's output samples; raise if above tolerance."""
    if len(expected) != len(got):
        raise OutputMismatchError(f"ONNX Runtime on {where} returned {len(got)} output values, PyTorch {len(expected)}")
    diff = max((abs(e - g) for e, g in zip(expected, got, strict=True)), default=0.0)
    limit = TOLERANCE * max(1.0, max((abs(e) for e in expected), default=0.0))
    if not diff <= limit:  # also catches NaN
        raise OutputMismatchError(
            f"ONNX Runtime on {where} differs from PyTorch by {diff:.2e} (> {limit:.1e}) on the seeded input; "
            "the timed model would not be the spec's network"
        )
    return diff


def _time_torch(model: Any, x: Any, threads: int, runs: int, warmup: int) -> list[float]:
    import time

    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(previous)  # a process-wide setting: leave it as found
    return times
