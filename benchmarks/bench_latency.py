"""Deployable path vs PyTorch eager: ONNX Runtime and eager latency of every preset, side by side in one run.

Both backends time the same seeded network (outputs checked equal first) at batch 1,
224 px, one thread, measured back to back per preset so that load on a shared machine
hits both alike. The ratio eager/ORT is what the numbers are for: eager PyTorch is not
what a phone runs, so it overstates latency by that factor.

Run: .venv/bin/python benchmarks/bench_latency.py [--runs 50] [--warmup 10] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math

from shufflesearch.complexity import count_macs
from shufflesearch.environment import describe, machine_info
from shufflesearch.latency.measure import measure_latency
from shufflesearch.presets import list_presets


def bench(names: list[str], runs: int, warmup: int, threads: int, resolution: int) -> list[dict]:
    rows = []
    for name in names:
        spec = list_presets()[name].replace(resolution=resolution)
        ort = measure_latency(spec, backend="onnxruntime", threads=threads, runs=runs, warmup=warmup)
        eager = measure_latency(spec, backend="torch", threads=threads, runs=runs, warmup=warmup)
        rows.append(
            {
                "preset": name,
                "mmacs": count_macs(spec) / 1e6,
                "ort_median_ms": ort.median_ms,
                "ort_p90_ms": ort.p90_ms,
                "ort_spread_pct": ort.spread_pct,
                "ort_min_ms": ort.min_ms,
                "eager_median_ms": eager.median_ms,
                "eager_p90_ms": eager.p90_ms,
                "eager_spread_pct": eager.spread_pct,
                "eager_min_ms": eager.min_ms,
                "ratio_eager_over_ort": eager.median_ms / ort.median_ms,
                # Minima are the least disturbed runs: the better ratio when the machine is shared.
                "min_ratio_eager_over_ort": eager.min_ms / ort.min_ms,
                "max_abs_diff": ort.max_abs_diff,
            }
        )
    return rows


def render(rows: list[dict], header: str) -> str:
    lines = [
        header,
        f"{'preset':<24} {'MMACs':>7} {'ORT med':>8} {'p90':>7} {'IQR%':>5} {'eager med':>9} {'p90':>7} {'IQR%':>5} "
        f"{'eager/ORT':>9} {'min/min':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r['preset']:<24} {r['mmacs']:7.1f} {r['ort_median_ms']:8.2f} {r['ort_p90_ms']:7.2f} "
            f"{r['ort_spread_pct']:5.1f} {r['eager_median_ms']:9.2f} {r['eager_p90_ms']:7.2f} "
            f"{r['eager_spread_pct']:5.1f} {r['ratio_eager_over_ort']:8.2f}x {r['min_ratio_eager_over_ort']:7.2f}x"
        )
    for key, what in (("ratio_eager_over_ort", "medians"), ("min_ratio_eager_over_ort", "minima")):
        ratios = [r[key] for r in rows]
        geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines.append(f"eager/ORT of {what}: geometric mean {geomean:.2f}x, range {min(ratios):.2f}x-{max(ratios):.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--presets", default="", help="comma-separated names (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.presets.split(",") if args.presets else sorted(list_presets())
    rows = bench(names, args.runs, args.warmup, args.threads, args.resolution)
    machine = machine_info()
    if args.json:
        print(json.dumps({"machine": machine, "threads": args.threads, "resolution": args.resolution, "rows": rows}))
        return
    header = (
        f"batch 1, {args.resolution}px, {args.threads} thread(s), {args.runs} timed runs after {args.warmup} warm-up; "
        f"times in ms (median, p90, IQR as % of median)\nmachine: {describe(machine)}; "
        f"load average {machine['load_avg']} on {machine['cpu_cores']} cores"
    )
    print(render(rows, header))


if __name__ == "__main__":
    main()
