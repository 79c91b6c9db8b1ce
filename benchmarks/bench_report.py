"""How long `build_report` takes for a large study, on SYNTHETIC records (not search results).

The records are made up (random specs, a made-up accuracy formula plus noise) only to give
the report realistic sizes: 500 trials in five per-budget studies and 500 in one Pareto
study. Times are wall-clock on this machine, split into the pure part (records ->
DataFrames) and the whole build (tables, PNG + SVG plots, HTML, atomic swap).

    .venv/bin/python benchmarks/bench_report.py [--trials 500] [--out /tmp/bench-report]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from shufflesearch.complexity import count_complexity
from shufflesearch.report.build import build_report
from shufflesearch.report.frames import build_frames
from shufflesearch.spec import ShuffleNetSpec

STATES = ["complete"] * 16 + ["pruned"] * 2 + ["fail", "running"]


def synthetic_records(study: str, n: int, window: tuple[float, float], seed: int, latency: bool) -> list[dict]:
    """`n` made-up trial records whose specs fall in `window` MFLOPs (rejection sampling)."""
    rng = random.Random(seed)
    records = []
    while len(records) < n:
        g = rng.choice((1, 2, 3, 4, 8))
        repeats = (rng.randint(2, 6), rng.randint(4, 10), rng.randint(2, 6))
        spec = ShuffleNetSpec(groups=g, scale=round(rng.uniform(0.1, 1.5), 2), repeats=repeats)
        cost = count_complexity(spec)
        if not window[0] <= cost.mflops <= window[1]:
            continue
        state = rng.choice(STATES)
        top1 = 0.80 + 0.02 * (cost.mflops / window[1]) + 0.003 * (g > 1) + rng.gauss(0, 0.01)  # made up
        done = state == "complete"
        records.append({
            "study": study, "trial": len(records), "state": state, "label": spec.label, "preset": None, "groups": g,
            "mflops": cost.mflops, "params": cost.params, "top1": top1 if done else None,
            "latency_ms": 0.3 * cost.mflops ** 0.8 if done and latency else None,
            "latency_kind": "lut-predicted" if done and latency else None, "train_seconds": 30.0,
            "duration_s": 31.0, "status": "ok" if done else None, "retry_of": None, "worker": "synthetic:0",
            "spec": spec.to_dict(),
            "curve": [{"epoch": 1, "images_seen": 2000, "train_loss": 1.0, "top1": top1, "seconds": 15.0}],
        })  # fmt: skip
    return records


def synthetic_studies(trials: int) -> tuple[dict, dict]:
    records, attrs = {}, {}
    budgets = (10, 20, 40, 80, 150)
    for i, b in enumerate(budgets):
        name = f"SYNTHETIC-budgets-{b}M"
        records[name] = synthetic_records(name, trials // len(budgets), (b / 2, b), seed=i, latency=False)
        attrs[name] = {"mode": "per-budget", "window_mflops": [b / 2, b], "dataset": "SYNTHETIC (made-up records)"}
    records["SYNTHETIC-frontier"] = synthetic_records("SYNTHETIC-frontier", trials, (10, 150), seed=99, latency=True)
    attrs["SYNTHETIC-frontier"] = {
        "mode": "pareto",
        "window_mflops": [10, 150],
        "dataset": "SYNTHETIC (made-up records)",
    }
    return records, attrs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500, help="trials per study file (default 500)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp()) / "report"
    for label, (records, attrs) in _splits(*synthetic_studies(args.trials)).items():
        n = sum(map(len, records.values()))
        t0 = time.perf_counter()
        build_frames(records, attrs)
        t1, cpu1 = time.perf_counter(), time.process_time()
        result = build_report(records, attrs, out / label, title=f"SYNTHETIC benchmark data: {label}")
        t2, cpu2 = time.perf_counter(), time.process_time()
        print(f"{label}: {n} SYNTHETIC records: frames {t1 - t0:.2f} s, whole report {t2 - t1:.2f} s "
              f"wall ({cpu2 - cpu1:.2f} s CPU) "
              f"({len(result.files)} files in {out / label})")  # fmt: skip


def _splits(records: dict, attrs: dict) -> dict[str, tuple[dict, dict]]:
    per_budget = [k for k in records if attrs[k]["mode"] == "per-budget"]
    return {
        "per-budget": ({k: records[k] for k in per_budget}, {k: attrs[k] for k in per_budget}),
        "pareto": ({"SYNTHETIC-frontier": records["SYNTHETIC-frontier"]},
                   {"SYNTHETIC-frontier": attrs["SYNTHETIC-frontier"]}),
    }  # fmt: skip


if __name__ == "__main__":
    main()
