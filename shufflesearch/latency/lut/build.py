"""Building a table: export every distinct block of a space, time them with fit networks, fit the sum."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from ...spec import ShuffleNetSpec
from ..device_runner import latency_stats
from .blocks import block_keys, block_modules, export_block, overhead_model, strip_weights, width_specs
from .fitting import compare, fit_sum, pick_fit_specs, torch_threads
from .table import STATISTICS, LatencyTable, LutError
from .timing import PhaseProgress, make_runner, robust_us


def build_lut(
    space: Any,
    target: Any = "local",
    threads: int = 1,
    runs: int = 20,
    warmup: int = 3,
    rounds: int = 3,
    clock: str = "wall",
    statistic: str = "median_ms",
    fit_points: int = 12,
    in_channels: int = 3,
    stem: str = "imagenet",
    seed: int = 0,
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = 1800.0,
    holdout: Iterable[ShuffleNetSpec] = (),
    progress: PhaseProgress | None = None,
    profile: str = "snapdragon820",
) -> LatencyTable:
    """Time every distinct block of `space` on `target` once, and fit the sum to `fit_points` whole networks.

    target="arm64-emulated" builds an ESTIMATED table for device `profile` instead, from
    instruction counts in one emulated process (estimated.build_estimated_lut; validated on
    random specs of the space against whole-network emulation, or on `holdout` if given).

    `space` is a shufflesearch.search.space.SearchSpace (anything with its fields and `scales()`)
    or an iterable of specs. `target` is "local" or "ssh://user@host[:port]"; remote blocks
    are timed in a few ssh calls of CHUNK_MODELS models (`timeout_s` each). Each block is
    timed `rounds` times (`runs` runs each, rounds in shuffled orders) and keeps the median
    round. The `fit_points` networks (the space's widths, evenly spaced in MACs) and the
    `holdout` specs are timed whole among the blocks, under the same conditions; holdout specs
    are not fitted on, so table.fit["holdout"] is a held-out error free of the machine's drift.
    `progress(phase, done, total)` is called per exported width and per timed chunk.
    """
    started = time.monotonic()
    if target == "arm64-emulated":
        from .estimated import build_estimated_lut

        timing = {"threads": threads, "runs": runs, "warmup": warmup, "rounds": rounds, "clock": clock,
                  "statistic": statistic, "python": python, "ssh_options": tuple(ssh_options) or ()}  # fmt: skip
        defaults = {"threads": 1, "runs": 20, "warmup": 3, "rounds": 3, "clock": "wall", "statistic": "median_ms",
                    "python": "python3", "ssh_options": ()}  # fmt: skip
        changed = [f"{k}={v!r}" for k, v in timing.items() if v != defaults[k]]
        if changed:
            raise LutError(f"--target arm64-emulated counts one thread's instructions, it times nothing: "
                           f"{', '.join(changed)} do not apply (leave them out)")  # fmt: skip
        return build_estimated_lut(space, profile=profile, fit_points=fit_points, in_channels=in_channels, stem=stem,
                                   seed=seed, holdout=holdout, progress=progress)  # fmt: skip
    if statistic not in STATISTICS:
        raise LutError(f"statistic={statistic!r} must be one of {', '.join(STATISTICS)}; median_ms is the protocol's")
    runner = make_runner(target, threads, runs, warmup, clock, rounds, seed=seed, python=python,
                     ssh_options=ssh_options, timeout_s=timeout_s)  # fmt: skip
    if runner.target != "local":  # an unreachable device fails now, not after minutes of exporting blocks
        from ..ssh import check_remote

        check_remote(runner.target, python, ssh_options, timeout_s)
    widths, described = width_specs(space, in_channels, stem, seed)
    fit_specs = pick_fit_specs(widths, fit_points)
    from ...export import onnx_bytes

    holdout = list(holdout)
    covered = {key for spec in widths for key in block_keys(spec)}  # keys name resolution, classes, stem and widths
    for spec in holdout:
        if not set(block_keys(spec)) <= covered:
            raise LutError(f"holdout spec {spec.label!r} lies outside the space the table covers; pick it there")
    networks = {f"fit#{i}": s for i, s in enumerate(fit_specs)} | {f"holdout#{i}": s for i, s in enumerate(holdout)}
    with torch_threads(1):  # tracing on a busy machine: more threads only fight over the cores
        models = export_blocks(widths, seed, progress)
        for name, spec in networks.items():
            models[name] = strip_weights(onnx_bytes(spec, seed)[0], "w.bin")
    overhead = [("overhead", overhead_model(), [])]  # per call: timed in every chunk
    timings = runner.time([(name, *models[name]) for name in sorted(models)], "time", progress, overhead)

    overhead_us = robust_us(timings["overhead"], statistic)
    blocks = {}
    for key in sorted(k for k in models if k not in networks):
        median_us, us = robust_us(timings[key], "median_ms"), robust_us(timings[key], statistic)
        per_round = [latency_stats(t)[statistic] * 1e3 for t in timings[key]]
        blocks[key] = {"us": max(0.0, us - overhead_us), "median_us": median_us,
                       "min_us": min(min(t) for t in timings[key]) * 1e3,
                       "spread_pct": 100 * (max(per_round) - min(per_round)) / us if us > 0 else 0.0}  # fmt: skip
    first = widths[0]
    table = LatencyTable(
        resolution=first.resolution, num_classes=first.num_classes, in_channels=first.in_channels, stem=first.stem,
        target="local" if runner.target == "local" else runner.target.url, threads=threads, clock=clock,
        statistic=statistic, blocks=blocks, fit={"a": 1.0, "b_us": 0.0, "points": []}, overhead_us=overhead_us,
        runs=runs, warmup=warmup, rounds=rounds, machine=runner.machine, space=described,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip
    measured = {name: robust_us(timings[name], statistic) for name in networks}
    table.fit = fit_sum([(s, table.predict_us(s), measured[f"fit#{i}"]) for i, s in enumerate(fit_specs)])
    table._cache.clear()
    if holdout:
        predicted = [table.predict_us(s) for s in holdout]
        table.fit["holdout"] = compare(holdout, predicted, [measured[f"holdout#{i}"] for i in range(len(holdout))])
    table.build_seconds = time.monotonic() - started
    return table


def export_blocks(widths: list[ShuffleNetSpec], seed: int, progress: PhaseProgress | None) -> dict[str, tuple]:
    models: dict[str, tuple[bytes, list]] = {}
    for i, spec in enumerate(widths):
        needed = [k for k in block_keys(spec) if k not in models]
        if needed:
            modules = block_modules(spec, seed)
            for key in needed:
                models[key] = strip_weights(export_block(*modules[key]), "w.bin")
        if progress:
            progress("export", i + 1, len(widths))
    return models
