"""Complexity speed, measured side by side in one run; prints ratios (absolute times are noise here).

Targets (issue: model generator and analyzer):
- the closed-form counter handles >= 10,000 specs/s;
- `shufflesearch analyze ... --json` in a fresh process costs <= 2.5x a bare `python -c "import torch"`;
- the fvcore cross-check's cost per model is reported.

Run: .venv/bin/python benchmarks/bench_complexity.py
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from shufflesearch.complexity import count_complexity, count_macs
from shufflesearch.complexity.fvcore_check import fvcore_count
from shufflesearch.presets import list_presets
from shufflesearch.spec import GROUP_CHOICES, ShuffleNetSpec

CLI = str(Path(sys.executable).with_name("shufflesearch"))


def random_specs(n: int, seed: int = 0) -> list[ShuffleNetSpec]:
    rng = random.Random(seed)
    return [
        ShuffleNetSpec(
            groups=rng.choice(GROUP_CHOICES),
            scale=rng.randint(10, 200) / 100,
            repeats=tuple(rng.randint(1, 8) for _ in range(3)),
            resolution=rng.choice([28, 64, 128, 160, 224]),
        )
        for _ in range(n)
    ]


def rate(fn, specs: list[ShuffleNetSpec], seconds: float = 2.0) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for spec in specs:
            fn(spec)
        done += len(specs)
    return done / (time.perf_counter() - start)


def fresh_process_seconds(argv: list[str], repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    specs = random_specs(1000)
    per_layer, total_only = rate(count_complexity, specs), rate(count_macs, specs)
    print(
        f"count_complexity (per layer):  {per_layer:>10,.0f} specs/s  ({per_layer / 10_000:.2f}x the 10,000/s target)"
    )
    print(f"count_macs (budget total):     {total_only:>10,.0f} specs/s  ({total_only / 10_000:.2f}x the target)")

    # Interleave the two commands so machine load hits both alike.
    torch_s, analyze_s = [], []
    for _ in range(5):
        torch_s.append(fresh_process_seconds([sys.executable, "-c", "import torch"], 1))
        analyze_s.append(fresh_process_seconds([CLI, "analyze", "--groups", "8", "--scale", "0.5", "--json"], 1))
    t_torch, t_analyze = statistics.median(torch_s), statistics.median(analyze_s)
    print(f"fresh `analyze --json`: {t_analyze:.3f} s, bare `import torch`: {t_torch:.3f} s, "
          f"ratio {t_analyze / t_torch:.2f} (target <= 2.5)")  # fmt: skip

    presets = list(list_presets().values())
    fvcore_count(presets[0])  # warm the tracer once
    fv = statistics.median(fvcore_count(s).seconds for s in presets)
    closed = 1 / rate(count_complexity, presets, 1.0)
    print(f"fvcore cross-check: {fv * 1e3:.0f} ms per preset model (median), closed form {closed * 1e6:.0f} us: "
          f"closed form is {fv / closed:,.0f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
