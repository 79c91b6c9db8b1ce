"""Latency lookup table vs end-to-end measurement: build, accuracy (MAPE, Kendall tau) and speed, in one run.

Builds a table for the default search space (SearchSpace(): groups 1,2,3,4,8, scale
0.1-2.0, 224 px) on this machine and checks it on random specs of that space (seeded, never
the build's fit points) measured end to end twice: held out during the build (timed whole
among the blocks, under the same conditions, not fitted on), and later on their own, twice
(validate_lut), whose difference is the machine's noise floor. Then times predictions against
measure_latency calls. `--clock cpu` times with the thread's CPU clock: on a shared,
oversubscribed host wall time is mostly other processes' time slices, which no table can predict.

Run: .venv/bin/python benchmarks/bench_lut.py [--specs 24] [--clock wall|cpu] [--statistic median_ms|min_ms]
     [--out /tmp/bench.lut.json] [--load existing.lut.json] [--json]

`--target arm64-emulated` builds the ESTIMATED table instead (every block's aarch64 instructions
counted in one emulated process, converted with `--profile`; needs `shufflesearch setup arm64`),
reports blocks per minute, and checks it on `--specs` seeded random specs (seed 2: not the 24 the
build validated itself on, seed 1) against whole-network emulation; `--load snapdragon820`
checks the shipped table without rebuilding it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from shufflesearch.environment import describe
from shufflesearch.latency.lut import LatencyTable, build_lut, resolve_table, validate_lut
from shufflesearch.latency.measure import measure_latency
from shufflesearch.search.space import SearchSpace


def predictions_per_second(table: LatencyTable, specs: list, seconds: float = 1.0) -> tuple[float, float]:
    """(cold: first prediction per width layout, warm: the steady state a search sees) predictions per second."""
    table._cache.clear()
    start = time.perf_counter()
    for spec in specs:
        table.predict_us(spec)
    cold = len(specs) / (time.perf_counter() - start)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for spec in specs:
            table.predict_us(spec)
        count += len(specs)
    return cold, count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=24, help="validation specs (>= 20)")
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    parser.add_argument("--statistic", default="median_ms", choices=("median_ms", "min_ms"))
    parser.add_argument("--fit-points", type=int, default=12)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per block and round")
    parser.add_argument("--rounds", type=int, default=3, help="timings per block and per validation spec")
    parser.add_argument("--validate-runs", type=int, default=50)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="save the table here (default: not saved)")
    parser.add_argument("--load", default="", help="validate an existing table instead of building one")
    parser.add_argument("--target", default="local", choices=("local", "arm64-emulated"))
    parser.add_argument("--profile", default="snapdragon820", help="device profile of an arm64-emulated table")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    space = SearchSpace(resolution=args.resolution)
    load_before = os.getloadavg()

    def progress(phase: str, done: int, total: int) -> None:
        print(f"\r{phase} {done}/{total}", end="", file=sys.stderr, flush=True)

    if args.target == "arm64-emulated":
        return emulated(args, space, progress, load_before)

    specs = space.sample(args.specs, seed=args.seed + 1)
    if args.load:
        table = LatencyTable.load(args.load)
    else:
        table = build_lut(space, threads=1, runs=args.runs, rounds=args.rounds, clock=args.clock,
                          statistic=args.statistic, fit_points=args.fit_points, seed=args.seed, holdout=specs,
                          progress=progress)  # fmt: skip
        if args.out:
            table.save(args.out)
    report = validate_lut(table, specs, runs=args.validate_runs, rounds=args.rounds, progress=progress)
    # The same specs measured again: how far the ground truth itself moves on this machine (the noise floor).
    again = validate_lut(table, specs, runs=args.validate_runs, rounds=args.rounds, progress=progress)
    print(file=sys.stderr)
    first, second = ([r["measured_us"] for r in v.rows] for v in (report, again))
    floor = 100 * sum(abs(b - a) / a for a, b in zip(first, second)) / len(first)

    sample = space.sample(2000, seed=args.seed + 2)
    cold, warm = predictions_per_second(table, sample)
    start = time.perf_counter()
    for spec in specs[:3]:
        measure_latency(spec, threads=1, runs=args.validate_runs, warmup=10)
    measures = 3 / (time.perf_counter() - start)
    result = {
        "machine": describe(table.machine),
        "load_avg_before_after": [load_before, os.getloadavg()],
        "clock": table.clock,
        "statistic": table.statistic,
        "blocks": len(table.blocks),
        "build_seconds": table.build_seconds,
        "fit": {k: table.fit[k] for k in ("a", "b_us", "mape_pct", "loo_mape_pct")},
        "overhead_us": table.overhead_us,
        "validation_specs": len(specs),
        "holdout": {k: v for k, v in table.fit.get("holdout", {}).items() if k != "rows"},
        "mape_pct": report.mape_pct,
        "kendall_tau": report.kendall_tau,
        "within_10pct": report.within_10pct,
        "repeat_mape_pct": again.mape_pct,
        "repeat_kendall_tau": again.kendall_tau,
        "measured_vs_remeasured_pct": floor,
        "predictions_per_s_cold": cold,
        "predictions_per_s_warm": warm,
        "measure_latency_calls_per_s": measures,
        "speedup_warm": warm / measures,
        "rows": [{k: r[k] for k in ("label", "predicted_us", "measured_us", "error_pct")} for r in report.rows],
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['machine']}; load avg before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"table: {len(table.blocks)} blocks at {table.resolution} px, clock {table.clock}, {table.statistic}, "
          f"built in {table.build_seconds:.0f} s; fit a={table.fit['a']:.3f} b={table.fit['b_us']:.0f} us "
          f"(fit MAPE {table.fit['mape_pct']:.1f}%, leave-one-out {table.fit['loo_mape_pct']:.1f}%)")  # fmt: skip
    held = table.fit.get("holdout")
    if held:
        print(f"held out, timed among the blocks: {len(held['rows'])} random specs, MAPE {held['mape_pct']:.1f}%, "
              f"Kendall tau {held['kendall_tau']:.3f}, within +-10%: {100 * held['within_10pct']:.0f}%")  # fmt: skip
    after = {r["label"]: r for r in held["rows"]} if held else {}
    print(f"{'spec':<26} {'predicted ms':>12} {'held-out ms':>12} {'error':>7} {'later ms':>9} {'error':>7}")
    for r in sorted(report.rows, key=lambda r: r["measured_us"]):
        h = after.get(r["label"])
        during = f"{h['measured_us'] / 1e3:12.3f} {h['error_pct']:+6.1f}%" if h else f"{'-':>12} {'-':>7}"
        print(f"{r['label']:<26} {r['predicted_us'] / 1e3:12.3f} {during} {r['measured_us'] / 1e3:9.3f} "
              f"{r['error_pct']:+6.1f}%")  # fmt: skip
    print(
        f"measured later, alone: MAPE {report.mape_pct:.1f}%, Kendall tau {report.kendall_tau:.3f}, "
        f"within +-10%: {100 * report.within_10pct:.0f}%"
    )
    print(
        f"measured again: MAPE {again.mape_pct:.1f}%, Kendall tau {again.kendall_tau:.3f}; the two later end-to-end "
        f"measurements differ by {floor:.1f}% on average (this machine's noise floor)"
    )
    print(
        f"predictions/s: {warm:,.0f} warm, {cold:,.0f} cold (first per width layout); measure_latency calls/s: "
        f"{measures:.2f}; ratio {warm / measures:,.0f}x"
    )


def emulated(args: argparse.Namespace, space: SearchSpace, progress, load_before) -> None:
    """The estimated table: build time (blocks per minute) and error against whole-network emulation."""
    if args.load:
        table = resolve_table(args.load)
    else:
        table = build_lut(space, target="arm64-emulated", profile=args.profile, fit_points=args.fit_points,
                          seed=args.seed, progress=progress)  # fmt: skip
        if args.out:
            table.save(args.out)
    specs = space.sample(args.specs, seed=args.seed + 2)
    report = validate_lut(table, specs, progress=progress)
    print(file=sys.stderr)
    own = table.measured_error or {}
    result = {
        "load_avg_before_after": [load_before, os.getloadavg()],
        "profile": table.profile,
        "blocks": len(table.blocks),
        "build_seconds": table.build_seconds or None,  # not stored in the file: None for a loaded table
        "blocks_per_minute": len(table.blocks) / table.build_seconds * 60 if table.build_seconds else None,
        "fit": {k: table.fit[k] for k in ("a", "b_us", "mape_pct", "loo_mape_pct")},
        "stored_validation": {k: own.get(k) for k in ("specs", "mape_pct", "kendall_tau")},
        "validation_specs": len(specs),
        "mape_pct": report.mape_pct,
        "kendall_tau": report.kendall_tau,
        "within_10pct": report.within_10pct,
        "max_error_pct": max(abs(r["error_pct"]) for r in report.rows),
        "validate_seconds": report.seconds,
        "rows": [{k: r[k] for k in ("label", "predicted_us", "emulated_us", "error_pct")} for r in report.rows],
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    built = (f"built in {table.build_seconds:.0f} s ({result['blocks_per_minute']:.0f} blocks/min, export included)"
             if table.build_seconds else "loaded")  # fmt: skip
    print(
        f"estimated table for {table.profile}: {len(table.blocks)} blocks at {table.resolution} px, {built}; "
        f"load avg before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    print(
        f"fit a={table.fit['a']:.3f} b={table.fit['b_us']:.0f} us (fit MAPE {table.fit['mape_pct']:.2f}%, "
        f"leave-one-out {table.fit['loo_mape_pct']:.2f}%); stored validation on {own.get('specs')} specs: "
        f"MAPE {own.get('mape_pct', float('nan')):.2f}%, tau {own.get('kendall_tau', float('nan')):.3f}"
    )
    print(f"{'spec':<26} {'table ms':>10} {'whole ms':>10} {'error':>7}   (both estimated, not measured)")
    for r in sorted(report.rows, key=lambda r: r["emulated_us"]):
        print(
            f"{r['label']:<26} {r['predicted_us'] / 1e3:10.2f} {r['emulated_us'] / 1e3:10.2f} {r['error_pct']:+6.2f}%"
        )
    print(
        f"against whole-network emulation on {len(specs)} fresh random specs: MAPE {report.mape_pct:.2f}% "
        f"(max {result['max_error_pct']:.2f}%), Kendall tau {report.kendall_tau:.3f}, within +-10%: "
        f"{100 * report.within_10pct:.0f}% ({report.seconds:.0f} s)"
    )


if __name__ == "__main__":
    main()
