"""An ESTIMATED table without hardware: every block's aarch64 instructions, counted in one emulated process.

`lut build --target arm64-emulated --profile snapdragon820` exports every distinct block of a
space, the overhead model, the fit networks and the validation networks, and counts them all
in ONE guest process (the real aarch64 ONNX Runtime under QEMU, loaded once; see
emulated/batch.py), so the default space's 1,300 blocks take minutes. Each count becomes
estimated microseconds with the device profile's additive fit; the whole networks, converted
with the full profile fit exactly as `latency --target arm64-emulated` does, give the fitted
offset (a * sum + b) and, for random specs of the space not fitted on, the table's error
against whole-network emulation, stored in `table.validation`. Nothing here is a latency
measurement, and the table says so: kind="estimated", profile=..., basis=...

>>> table = build_estimated_lut(SearchSpace(), profile="snapdragon820")  # ~18 min on 2 cores  # doctest: +SKIP
>>> table.kind, table.profile, round(table.validation["mape_pct"], 1)  # doctest: +SKIP
('estimated', 'snapdragon820', 1.2)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ...spec import ShuffleNetSpec
from .blocks import block_keys, block_modules, export_block, overhead_model, width_specs
from .fitting import compare, fit_sum, pick_fit_specs, torch_threads
from .table import LatencyTable, LutError
from .timing import PhaseProgress

EMULATED_TARGET = "arm64-emulated"
VALIDATION_SPECS, VALIDATION_SEED = 24, 1  # seed 1: what `lut validate` draws by default
BLOCK_RUNS, NETWORK_RUNS = (3, 1), (1, 1)  # (counted runs, warm-up): blocks are small, so noisier
TRUTH = "emulated_us"  # a whole network's estimate under emulation: the ground truth here, itself an estimate


def build_estimated_lut(
    space: Any,
    profile: str = "snapdragon820",
    fit_points: int = 12,
    validation_specs: int = VALIDATION_SPECS,
    validation_seed: int = VALIDATION_SEED,
    in_channels: int = 3,
    stem: str = "imagenet",
    seed: int = 0,
    holdout: Iterable[ShuffleNetSpec] = (),
    cache_dir: str | os.PathLike | None = None,
    timeout_s: float = 7200.0,
    progress: PhaseProgress | None = None,
) -> LatencyTable:
    """Count every distinct block of `space` under arm64 emulation, in one guest process; estimate ms on `profile`.

    `space` is a SearchSpace or an iterable of specs. The table is validated on `holdout` specs,
    or when none are given on `validation_specs` random specs of a SearchSpace (seeded; 0: none).
    Nothing that varies between builds is stored (no time, no host), and counts repeat between builds, so
    two builds of the same space give the same file byte for byte (docs/arm-emulation.md).
    """
    from ..emulated import device_profiles
    from ..emulated.batch import count_many

    started = time.monotonic()
    estimator = device_profiles.load_profile(profile)
    estimator.additive_ms(1.0, {"simd_dp": 0, "simd_ldst": 0})  # a profile whose fit does not add up fails now
    widths, described = width_specs(space, in_channels, stem, seed)
    fit_specs = pick_fit_specs(widths, fit_points)
    keys = sorted({key for spec in widths for key in block_keys(spec)})
    given = list(holdout)
    holdout = given or _validation_specs(space, validation_specs, validation_seed, widths[0])
    for spec in holdout:
        if not set(block_keys(spec)) <= set(keys):
            raise LutError(f"holdout spec {spec.label!r} lies outside the space the table covers; pick it there")
    networks = {f"fit#{i}": s for i, s in enumerate(fit_specs)} | {f"holdout#{i}": s for i, s in enumerate(holdout)}
    total = 1 + len(keys) + len(networks)
    report = (lambda done: progress("count", done, total)) if progress else None
    models = _models(widths, networks, seed, progress)
    counts = count_many(models, cache_dir=cache_dir, timeout_s=timeout_s, progress=report)

    overhead = counts.pop("overhead")
    blocks = {}
    for key in keys:
        net = {c: max(0, v - overhead.mix[c]) for c, v in counts[key].mix.items()}
        blocks[key] = {"us": round(1e3 * estimator.additive_ms(sum(net.values()), net), 4),
                       "instructions": sum(net.values()), "mix": net}  # fmt: skip
    whole = {name: 1e3 * estimator.predict_ms(counts[name].instructions, counts[name].mix) for name in networks}
    first = widths[0]
    overhead_us = round(1e3 * estimator.additive_ms(overhead.instructions, overhead.mix), 4)
    table = LatencyTable(
        resolution=first.resolution, num_classes=first.num_classes, in_channels=first.in_channels, stem=first.stem,
        target=EMULATED_TARGET, threads=1, clock="wall", statistic="median_ms", blocks=blocks,
        fit={"a": 1.0, "b_us": 0.0, "points": []}, overhead_us=overhead_us, runs=BLOCK_RUNS[0], warmup=BLOCK_RUNS[1],
        rounds=1, machine=_described(overhead, estimator, profile), space=described, kind="estimated",
        profile=profile, basis=basis_of(profile, estimator.basis),
    )  # fmt: skip
    table.fit = fit_sum([(s, table.predict_us(s), whole[f"fit#{i}"]) for i, s in enumerate(fit_specs)], TRUTH)
    table._cache.clear()
    if holdout:
        predicted = [table.predict_us(s) for s in holdout]
        found = compare(holdout, predicted, [whole[f"holdout#{i}"] for i in range(len(holdout))], TRUTH)
        table.validation = validation_record(found, len(holdout), None if given else validation_seed, profile)
    table.build_seconds = time.monotonic() - started
    return table


def validate_estimated(
    table: LatencyTable,
    specs: Sequence[ShuffleNetSpec],
    cache_dir: str | os.PathLike | None = None,
    timeout_s: float = 7200.0,
    progress: PhaseProgress | None = None,
) -> dict[str, Any]:
    """compare() of the table's predictions with whole-network emulation of `specs` (one guest process)."""
    from ..emulated import device_profiles
    from ..emulated.batch import count_many

    predicted = [table.predict_us(spec) for spec in specs]  # mismatches fail before any emulation
    estimator = device_profiles.load_profile(table.profile)
    report = (lambda done: progress("count", done, len(specs))) if progress else None
    models = ((f"net#{i}", *_network(s, 0), *NETWORK_RUNS) for i, s in enumerate(specs))
    counts = count_many(models, cache_dir=cache_dir, timeout_s=timeout_s, progress=report)
    whole = [
        1e3 * estimator.predict_ms(counts[f"net#{i}"].instructions, counts[f"net#{i}"].mix) for i in range(len(specs))
    ]
    return compare(list(specs), predicted, whole, TRUTH)


def basis_of(profile: str, profile_basis: str) -> str:
    return (
        f"estimated, not measured: per-block aarch64 instruction counts of ONNX Runtime under QEMU user-mode "
        f"emulation, converted to ms with device profile {profile} ({profile_basis})"
    )


def against_emulation(profile: str) -> str:
    return f"whole-network emulation (arm64-emulated, profile {profile})"


def validation_record(found: dict[str, Any], n: int, seed: int | None, profile: str) -> dict[str, Any]:
    """What a table stores of a validation: its error against whole-network emulation, and how it was got."""
    return {"against": against_emulation(profile), "specs": n, "seed": seed, **found}


def _validation_specs(space: Any, n: int, seed: int, like: ShuffleNetSpec) -> list[ShuffleNetSpec]:
    if not hasattr(space, "sample") or n == 0:
        return []
    if n < 2:
        raise LutError(f"validation_specs={n}: at least 2 specs are needed to rank (or 0 for none); e.g. 24")
    return [s.replace(in_channels=like.in_channels, stem=like.stem) for s in space.sample(n, seed)]


def _models(
    widths: list[ShuffleNetSpec], networks: dict[str, ShuffleNetSpec], seed: int, progress: PhaseProgress | None
) -> Iterator[tuple]:
    """The overhead model, every distinct block (exported as needed), then the whole networks."""
    yield ("overhead", overhead_model(), (1, 1, 1, 1), *BLOCK_RUNS)
    seen: set[str] = set()
    total = len(widths) + len(networks)
    with torch_threads(1):
        for i, spec in enumerate(widths, 1):
            needed = [k for k in block_keys(spec) if k not in seen]
            modules = block_modules(spec, seed) if needed else {}
            for key in needed:
                seen.add(key)
                yield (key, export_block(*modules[key]), modules[key][1], *BLOCK_RUNS)
            if progress:
                progress("export", i, total)
        for i, (name, spec) in enumerate(networks.items(), len(widths) + 1):
            yield (name, *_network(spec, seed), *NETWORK_RUNS)
            if progress:
                progress("export", i, total)


def _network(spec: ShuffleNetSpec, seed: int) -> tuple[bytes, tuple[int, ...]]:
    from ...export import onnx_bytes  # torch: only when networks are exported

    return onnx_bytes(spec, seed)[0], (1, spec.in_channels, spec.resolution, spec.resolution)


def _described(count: Any, estimator: Any, profile: str) -> dict[str, Any]:
    """The emulated machine and the profile: fixed by the set-up, so the file stays deterministic."""
    guest = count.guest
    return {"arch": "aarch64 (emulated)", "cpu": count.cpu, "midr": count.midr,
            "versions": {"onnxruntime": count.ort_version, "qemu": count.qemu_version, "numpy": guest.get("numpy"),
                         "python": guest.get("python")},
            "profile": {"name": profile, "formula": estimator.formula,
                        "fit_error_pct": round(estimator.loo_error_pct, 2)}}  # fmt: skip
