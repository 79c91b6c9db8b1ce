"""Search quality on a cheap objective with known ground truth: trials to reach the best candidate.

Every candidate of the space under the budget is enumerated and scored by a deterministic
synthetic function (NOT an accuracy: a stand-in with interactions between width, depth and
groups and an interior optimum), so the best one is known. Each sampler then searches with
the real `suggest_spec` and we count trials until it proposes that best candidate (capped).
Printed: median over seeds for TPE and for random search, and their ratio.

Run: .venv/bin/python benchmarks/bench_search.py [--seeds 9] [--cap 400]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import optuna

from shufflesearch.complexity import count_complexity
from shufflesearch.search.space import NoFeasibleWidth, SearchSpace, suggest_spec

SPACE = SearchSpace(groups=(1, 2, 3, 4, 8), scale=(0.1, 1.5), repeats=((2, 6), (4, 10), (2, 6)))
BUDGET = (19.0, 38.0)  # MFLOPs window, like the paper's 0.5x budget


def synthetic_score(spec) -> float:
    """Deterministic stand-in for accuracy: more compute helps with diminishing returns, balanced
    depth is best (Stage3 ~ 2x the others), groups peak at 4 (a mild optimum), over-deep stages cost."""
    cost = count_complexity(spec)
    r2, r3, r4 = spec.repeats
    balance = -((r3 - 2 * r2) ** 2 + (r3 - 2 * r4) ** 2) / 40
    groups = -((math.log2(spec.groups) - 2) ** 2) / 6
    return math.log(cost.macs) + 0.5 * math.log(cost.params) + balance + groups - 0.02 * (r2 + r3 + r4)


def trials_to_best(sampler, best_score: float, cap: int) -> int:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for n in range(1, cap + 1):
        trial = study.ask()
        try:
            score = synthetic_score(suggest_spec(trial, SPACE, BUDGET))
        except NoFeasibleWidth:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        study.tell(trial, score)
        if score >= best_score - 1e-12:
            return n
    return cap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=9)
    parser.add_argument("--cap", type=int, default=400)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    candidates = SPACE.candidates(BUDGET)
    best = max(candidates, key=synthetic_score)
    best_score = synthetic_score(best)
    print(f"{len(candidates)} candidates in {BUDGET[0]:g}-{BUDGET[1]:g} MFLOPs; best: {best.label} "
          f"({count_complexity(best).mflops:.1f} MFLOPs)")  # fmt: skip
    results = {}
    for name, make in (("tpe", lambda s: optuna.samplers.TPESampler(seed=s)),
                       ("random", lambda s: optuna.samplers.RandomSampler(seed=s))):  # fmt: skip
        start = time.perf_counter()
        counts = [trials_to_best(make(seed), best_score, args.cap) for seed in range(args.seeds)]
        results[name] = statistics.median(counts)
        print(f"{name:>6}: median {results[name]:.0f} trials to the best (per seed: {counts}; cap {args.cap}) "
              f"[{time.perf_counter() - start:.0f} s]")  # fmt: skip
    print(f"random / tpe: {results['random'] / results['tpe']:.2f}x fewer trials with TPE "
          f"(exhaustive search would take {len(candidates)})")  # fmt: skip


if __name__ == "__main__":
    main()
