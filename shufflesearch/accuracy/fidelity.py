"""Does the proxy rank architectures the way full ImageNet training does?

Trains the 15 models of the paper's Table 2 (groups 1, 2, 3, 4, 8 x scales 0.25, 0.5, 1.0,
widths by our spec rule) at one fidelity and reports Spearman's rank correlation between
proxy accuracy and the published ImageNet accuracy (negated top-1 error): overall, within
each scale, and the seed-to-seed spread. See docs/fidelity.md for the recipes tried.

>>> from shufflesearch.accuracy.datasets import load_dataset
>>> report = run_fidelity(load_dataset("fashion-mnist"), DEFAULT_FIDELITY, seeds=(0,))  # doctest: +SKIP
>>> round(report.spearman_overall, 2)  # doctest: +SKIP
0.9
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..complexity import count_complexity
from ..paper import TABLE2_SCALES, TABLE2_TOP1_ERROR_PCT
from ..spec import ShuffleNetSpec
from .datasets import ImageDataset
from .ranking import agreement, spearman
from .recipe import DEFAULT_FIDELITY, Fidelity
from .train_many import RunProgress, train_many

__all__ = [
    "FidelityProgress",
    "FidelityReport",
    "rankers_vs_paper",
    "run_fidelity",
    "table2_specs",
    "table2_zero_cost_scores",
    "zero_cost_ranking",
]


def table2_specs() -> list[ShuffleNetSpec]:
    """The 15 Table 2 models, in the paper's row order (paper.TABLE2_TOP1_ERROR_PCT)."""
    return [ShuffleNetSpec(groups=g, scale=s) for g, s in TABLE2_TOP1_ERROR_PCT]


# What a study reports while it trains: which run, and that run's own progress.
FidelityProgress = RunProgress


@dataclass(frozen=True)
class FidelityReport:
    """Proxy vs paper for the 15 Table 2 models. Accuracies are fractions; error is percent.

    `rows`: groups, scale, paper_top1_error, macs-free spec label, per-seed top1 and test
    loss, their means, seconds, and the model's params and MFLOPs as the paper counts them
    (224 px, 1000 classes: what `analyze` prints). `rankers`: `rankers_vs_paper`, the proxy
    beside the free counts on the same models and truth. `seed_spread`: mean over models of the per-model standard
    deviation of top-1 across seeds (0 with one seed). `direction_ok_by_scale[s]`: the mean
    top-1 of g > 1 models beats g = 1 at scale s, as in the paper. The `test_loss` fields rank by
    negated test loss instead, which ranked better than top-1 in 4 of 5 runs (docs/fidelity.md).
    """

    rows: list[dict[str, Any]]
    spearman_overall: float
    spearman_by_scale: dict[str, float]
    spearman_test_loss: float
    spearman_test_loss_by_scale: dict[str, float]
    seed_spread: float
    minutes: float
    cpu_minutes: float
    direction_ok_by_scale: dict[str, bool]
    wins_over_g1_by_scale: dict[str, int]
    test_loss_wins_over_g1_by_scale: dict[str, int]
    rankers: dict[str, dict]
    fidelity: dict[str, Any]
    dataset: str
    seeds: list[int]
    cached_runs: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_fidelity(
    dataset: ImageDataset,
    fidelity: Fidelity = DEFAULT_FIDELITY,
    seeds: Sequence[int] = (0,),
    progress: Callable[[FidelityProgress], None] | None = None,
    cache: Any = None,
    threads: int | None = None,
    workers: int = 1,
    device: str = "cpu",
) -> FidelityReport:
    """Train the Table 2 models (each seed) at `fidelity`; compare with the paper.

    `workers` > 1 trains that many models at once in separate processes with one thread
    each (on a small CPU this beats one process with several threads: ShuffleNet's small
    grouped convs scale poorly across threads); progress then arrives once per finished run.
    `minutes` sums each run's own seconds (cached runs: their stored cost), so with workers
    the wall-clock is about minutes / workers. `device` ("cpu", "auto", "cuda", ...): each worker
    trains on its own (`devices.worker_devices`: GPUs round-robin), checked before any work.
    """
    if not seeds:
        raise ValueError("seeds=() is empty: give at least one seed, e.g. seeds=(0,)")
    specs = table2_specs()
    jobs = [(spec, seed) for spec in specs for seed in seeds]
    trained = train_many(jobs, dataset, fidelity, progress, cache, threads, workers, device)
    results = {(i, j): trained[i * len(seeds) + j] for i in range(len(specs)) for j in range(len(seeds))}
    rows = []
    for i, (spec, ((g, s), err)) in enumerate(zip(specs, TABLE2_TOP1_ERROR_PCT.items())):
        per_seed = [results[i, j] for j in range(len(seeds))]
        cost = count_complexity(spec)
        ok = [r.top1 for r in per_seed if r.status == "ok"]
        complete = len(ok) == len(per_seed)
        rows.append({
            "groups": g,
            "scale": s,
            "paper_top1_error": err,
            "label": spec.label,
            "top1_by_seed": [r.top1 for r in per_seed],
            "test_loss_by_seed": [r.test_loss for r in per_seed],
            # A diverged run counts as chance: it is a real failure of that architecture at this fidelity.
            "top1": statistics.fmean(ok) if complete else 1 / dataset.num_classes,
            "test_loss": statistics.fmean(r.test_loss for r in per_seed) if complete else float("inf"),
            "top1_std": statistics.stdev(ok) if len(ok) > 1 else 0.0,
            "seconds": sum(r.seconds for r in per_seed),
            "params": cost.params,
            "mflops": cost.mflops,
        })  # fmt: skip
    done = list(results.values())
    seconds, cpu_seconds = sum(r.seconds for r in done), sum(r.cpu_seconds for r in done)
    return _report(rows, fidelity, dataset, list(seeds), seconds, cpu_seconds, sum(r.cached for r in done))


def _report(
    rows: list[dict[str, Any]],
    fidelity: Fidelity,
    dataset: ImageDataset,
    seeds: list[int],
    seconds: float,
    cpu_seconds: float,
    cached: int,
) -> FidelityReport:
    def rho(subset: list[dict[str, Any]], key: str = "top1", sign: float = 1.0) -> float:
        return spearman([sign * r[key] for r in subset], [-r["paper_top1_error"] for r in subset])

    by_scale, loss_by_scale, direction, wins, loss_wins = {}, {}, {}, {}, {}
    for s in TABLE2_SCALES:
        subset = [r for r in rows if r["scale"] == s]
        g1 = next(r for r in subset if r["groups"] == 1)
        grouped = [r for r in subset if r["groups"] > 1]
        by_scale[f"{s:g}"], loss_by_scale[f"{s:g}"] = rho(subset), rho(subset, "test_loss", -1.0)
        direction[f"{s:g}"] = statistics.fmean(r["top1"] for r in grouped) > g1["top1"]
        wins[f"{s:g}"] = sum(r["top1"] > g1["top1"] for r in grouped)
        loss_wins[f"{s:g}"] = sum(r["test_loss"] < g1["test_loss"] for r in grouped)
    return FidelityReport(
        rows=rows,
        spearman_overall=rho(rows),
        spearman_by_scale=by_scale,
        spearman_test_loss=rho(rows, "test_loss", -1.0),
        spearman_test_loss_by_scale=loss_by_scale,
        seed_spread=statistics.fmean(r["top1_std"] for r in rows),
        minutes=seconds / 60,
        cpu_minutes=cpu_seconds / 60,
        rankers=rankers_vs_paper(rows),
        direction_ok_by_scale=direction,
        wins_over_g1_by_scale=wins,
        test_loss_wins_over_g1_by_scale=loss_wins,
        fidelity=fidelity.to_dict(),
        dataset=f"{dataset.name}:{dataset.fingerprint}",
        seeds=seeds,
        cached_runs=cached,
    )


def rankers_vs_paper(rows: Sequence[dict[str, Any]], scores: dict[str, Sequence[float]] | None = None) -> dict:
    """Each ranker against the paper's ImageNet accuracy on the same models: the proxy beside what is free.

    Rankers: the proxy's top-1 and test loss, #params and MFLOPs (closed form, as `analyze`),
    and any `scores` (a zero-cost score per row, higher = better). Each: Spearman and Kendall
    with 95% bootstrap intervals, overall and within each scale (`ranking.agreement`).
    """
    rankers = {
        "proxy top-1": [r["top1"] for r in rows],
        "proxy test loss": [-r["test_loss"] for r in rows],
        "params": [r["params"] for r in rows],
        "mflops": [r["mflops"] for r in rows],
        **(scores or {}),
    }
    return agreement([-r["paper_top1_error"] for r in rows], rankers, [f"{r['scale']:g}" for r in rows])


def table2_zero_cost_scores(data: ImageDataset, fidelity: Fidelity = DEFAULT_FIDELITY) -> dict[str, list[float]]:
    """Every zero-cost score of the 15 Table 2 models, as the trainer would train them on `data`, in row order."""
    from .zero_cost import score_on_dataset

    table = [score_on_dataset(spec, data, fidelity)[1].scores for spec in table2_specs()]
    return {name: [row.get(name, float("nan")) for row in table] for name in dict.fromkeys(n for r in table for n in r)}


def zero_cost_ranking(report: FidelityReport, scores: dict[str, Sequence[float]]) -> dict:
    """Spearman of each zero-cost score (and the baselines) against the study's proxy top-1.

    `scores`: `table2_zero_cost_scores`; the result is `zero_cost.score_correlations`' dict
    (score name -> rho).
    """
    from .zero_cost import score_correlations

    specs = table2_specs()
    top1 = [next(r["top1"] for r in report.rows if (r["groups"], r["scale"]) == (s.groups, s.scale))
            for s in specs]  # fmt: skip
    table = [{name: values[i] for name, values in scores.items()} for i in range(len(specs))]
    return score_correlations(specs, top1, table)
