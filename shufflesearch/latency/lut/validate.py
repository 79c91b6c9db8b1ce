"""Checking a table: predicted vs measured end-to-end latency of whole networks."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...spec import ShuffleNetSpec
from .blocks import strip_weights
from .table import LatencyTable, LutError
from .timing import PhaseProgress, make_runner, robust_us


@dataclass(frozen=True)
class LutValidation:
    """Predicted vs measured end-to-end latency of whole networks on the table's target."""

    mape_pct: float  # mean |predicted - measured| / measured
    kendall_tau: float  # rank agreement: what a search needs most
    within_10pct: float  # share of specs predicted within +-10%
    rows: list[dict[str, Any]]  # label, spec, predicted_us, measured_us, error_pct
    clock: str
    statistic: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_lut(
    table: LatencyTable,
    specs: Iterable[ShuffleNetSpec],
    runs: int = 50,
    warmup: int = 10,
    rounds: int = 3,
    seed: int = 0,
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = 1800.0,
    progress: PhaseProgress | None = None,
) -> LutValidation:
    """Measure each spec end to end at the table's threads, clock and statistic; compare with its prediction.

    A local wall-clock table is checked against `measure_latency` (its output checked against
    PyTorch); other tables against the whole network timed by the same runner as the blocks.
    Each spec is measured `rounds` times (shuffled order) and keeps the median round.
    """
    started = time.monotonic()
    specs = list(specs)
    if len(specs) < 2:
        raise LutError(
            f"validation needs at least 2 specs to rank, got {len(specs)}; e.g. 20 random specs of the space"
        )
    predicted = [table.predict_us(spec) for spec in specs]  # mismatches fail before any timing
    runner = make_runner(table.target, table.threads, runs, warmup, table.clock, rounds, seed=seed, python=python,
                     ssh_options=ssh_options, timeout_s=timeout_s)  # fmt: skip
    if table.target == "local" and table.clock == "wall":
        from ..measure import measure_latency

        timings: dict[str, list] = {}
        jobs = [
            (r, i) for r in range(rounds) for i in random.Random(seed * 1000 + r).sample(range(len(specs)), len(specs))
        ]
        for done, (_, i) in enumerate(jobs, 1):
            result = measure_latency(specs[i], threads=table.threads, runs=runs, warmup=warmup, seed=seed)
            timings.setdefault(f"net#{i}", []).append(list(result.times_ms))
            if progress:
                progress("measure", done, len(jobs))
    else:
        from ...export import onnx_bytes

        models = [(f"net#{i}", *strip_weights(onnx_bytes(s, seed)[0], "w.bin")) for i, s in enumerate(specs)]
        timings = runner.time(models, "measure", progress)
    measured = [robust_us(timings[f"net#{i}"], table.statistic) for i in range(len(specs))]
    return LutValidation(**compare(specs, predicted, measured), clock=table.clock, statistic=table.statistic,
                         seconds=time.monotonic() - started)  # fmt: skip


def compare(specs: list[ShuffleNetSpec], predicted: list[float], measured: list[float]) -> dict[str, Any]:
    from scipy.stats import kendalltau

    rows = [{"label": s.label, "spec": s.to_dict(), "predicted_us": p, "measured_us": m, "error_pct": 100 * (p - m) / m}
            for s, p, m in zip(specs, predicted, measured)]  # fmt: skip
    errors = [abs(r["error_pct"]) for r in rows]
    tau = float(kendalltau(predicted, measured).statistic) if len(rows) > 1 else float("nan")
    return {"mape_pct": sum(errors) / len(errors), "kendall_tau": tau,
            "within_10pct": sum(e <= 10 for e in errors) / len(errors), "rows": rows}  # fmt: skip
