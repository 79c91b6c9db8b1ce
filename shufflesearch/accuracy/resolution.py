"""What a recipe can tell apart: the channel-shuffle ablation, and its resolving power by budget.

Counting parameters ranks the paper's Table 2 as well as the proxy does (docs/fidelity.md); the
proxy earns its cost only where counts are blind. Two measurements say how far it can be trusted:

- `shuffle_ablation`: each shuffled network beside its no-shuffle twin (equal widths, equal
  parameters). The paper's claim is the truth: without shuffle, g >= 3 loses. Paired by seed (same
  data order, same initialisation), the recipe passes where the twin scores lower on every seed.
- `resolving_power`: networks one width step apart on a ladder (more parameters, more MFLOPs,
  better on ImageNet). Each step's gap is set against one run's seed noise: the chance that a
  single run puts the wider network first is Phi(gap / (sd * sqrt 2)). A recipe is trusted up to
  the budget where that chance stays >= `TRUSTED_CHANCE`; past it a search is choosing in the noise.

>>> _chance_ordered(gap=0.01, sd=0.005)  # a gap of twice one run's noise
0.921
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from ..complexity import count_complexity
from ..spec import ShuffleNetSpec
from .datasets import ImageDataset
from .recipe import Fidelity
from .train_many import RunProgress, train_many
from .trainer import TrainResult

__all__ = ["ABLATION_GROUPS", "LADDER_SCALES", "PARTS", "TRUSTED_CHANCE", "measure_resolution", "resolving_power",
           "shuffle_ablation", "trusted_up_to"]  # fmt: skip

ABLATION_GROUPS = (3, 8)  # the paper ablates shuffle at g = 3 and 8, where it matters
ABLATION_SCALES = (0.25, 0.5, 1.0)
# g = 3 widths from the bottom of the search's 10-150 MFLOPs range to just past its top.
LADDER_SCALES = (0.25, 0.5, 0.75, 1.0, 1.25)
LADDER_GROUPS = 3
# A width step is resolved when one run orders its two networks right at least this often.
TRUSTED_CHANCE = 0.9


PARTS = ("both", "shuffle", "ladder")


def measure_resolution(
    dataset: ImageDataset,
    fidelity: Fidelity,
    seeds: Sequence[int],
    part: str = "both",
    scaled: Callable[[float], Fidelity] | None = None,
    **run: Any,
) -> dict[str, Any]:
    """`shuffle_ablation` at `fidelity` and/or (`part`) `resolving_power` at `scaled` (a budget's recipe; None:
    `fidelity` everywhere): {"shuffle": ..., "ladder": ...}. `run`: `train_many`'s options and `progress`."""
    if part not in PARTS:
        raise ValueError(f"part={part!r} must be one of {', '.join(PARTS)}")
    if len(seeds) < 2:
        raise ValueError("a seed spread needs at least two seeds, e.g. seeds=(0, 1, 2)")
    result = {}
    if part in ("both", "shuffle"):
        result["shuffle"] = shuffle_ablation(dataset, fidelity, seeds, **run)
    if part in ("both", "ladder"):
        result["ladder"] = resolving_power(dataset, scaled or fidelity, seeds, **run)
    return result


def shuffle_ablation(
    dataset: ImageDataset,
    fidelity: Fidelity,
    seeds: Sequence[int],
    groups: Sequence[int] = ABLATION_GROUPS,
    scales: Sequence[float] = ABLATION_SCALES,
    progress: Callable[[RunProgress], None] | None = None,
    **run: Any,
) -> dict[str, Any]:
    """Each shuffled (groups, scale) network and its no-shuffle twin, on every seed.

    Rows: the per-seed top-1 of both, the paired margins (shuffled minus twin, points), their mean,
    the seed spread (one run's top-1 standard deviation, pooled over the twins, points), whether
    the twin is below on every seed, and the same margins by loss. `run`: `train_many`'s options.
    """
    pairs = [(ShuffleNetSpec(groups=g, scale=s), ShuffleNetSpec(groups=g, scale=s, shuffle=False))
             for g in groups for s in scales]  # fmt: skip
    jobs = [(spec, seed) for pair in pairs for spec in pair for seed in seeds]
    trained = train_many(jobs, dataset, fidelity, progress, **run)
    results, rows = iter(trained), []
    for on, _off in pairs:
        with_shuffle, without = [next(results) for _ in seeds], [next(results) for _ in seeds]
        margins = [100 * (_top1(a) - _top1(b)) for a, b in zip(with_shuffle, without)]
        spread = _pooled_sd([[_top1(r) * 100 for r in with_shuffle], [_top1(r) * 100 for r in without]])
        loss_margins = [_loss(b) - _loss(a) for a, b in zip(with_shuffle, without)]
        rows.append({
            "groups": on.groups, "scale": on.scale, "params": count_complexity(on).params,
            "top1_by_seed": [_top1(r) for r in with_shuffle],
            "no_shuffle_top1_by_seed": [_top1(r) for r in without],
            "margin_pts_by_seed": margins,
            "margin_pts": statistics.fmean(margins),
            "seed_spread_pts": spread,
            "margin_over_spread": statistics.fmean(margins) / spread if spread > 0 else math.inf,
            "below_on_every_seed": all(m > 0 for m in margins),
            "loss_margin_by_seed": loss_margins,
            "loss_below_on_every_seed": all(m > 0 for m in loss_margins),
        })  # fmt: skip
    passes = {"passes": all(r["below_on_every_seed"] for r in rows),
              "passes_by_loss": all(r["loss_below_on_every_seed"] for r in rows)}  # fmt: skip
    return {"rows": rows, **passes, **_provenance(fidelity, dataset, seeds, trained)}


def resolving_power(
    dataset: ImageDataset,
    fidelity: Fidelity | Callable[[float], Fidelity],
    seeds: Sequence[int],
    scales: Sequence[float] = LADDER_SCALES,
    groups: int = LADDER_GROUPS,
    progress: Callable[[RunProgress], None] | None = None,
    **run: Any,
) -> dict[str, Any]:
    """How far apart networks one width step apart score, against one run's seed noise.

    `fidelity` may be a function of a budget in MFLOPs (a study's budget-scaled recipe, `StudyConfig.fidelity_for`):
    each step trains both its networks at the recipe of the wider one's cost, as that budget's search would. Rows, one
    per step from `scales[i]` to `scales[i + 1]`: both MFLOPs, the mean top-1 gap (points), the seed
    spread (pooled over the two), gap / spread, the chance one run orders them right, and the same by
    loss. `trusted_up_to_mflops`: `trusted_up_to` of the rows.
    """
    specs = [ShuffleNetSpec(groups=groups, scale=s) for s in scales]
    mflops = [count_complexity(spec).mflops for spec in specs]
    recipe_of = fidelity if callable(fidelity) else (lambda _mflops: fidelity)
    # A step compares its two networks as a study's budget at the wider one would: both on that budget's recipe.
    step_recipe = [recipe_of(mflops[i + 1]) for i in range(len(specs) - 1)]
    by_recipe: dict[Fidelity, set[int]] = {}
    for i, recipe in enumerate(step_recipe):
        by_recipe.setdefault(recipe, set()).update((i, i + 1))
    scored: dict[tuple[Fidelity, int], list[TrainResult]] = {}
    for recipe, members in by_recipe.items():
        jobs = [(specs[i], seed) for i in sorted(members) for seed in seeds]
        results = iter(train_many(jobs, dataset, recipe, progress, **run))
        for i in sorted(members):
            scored[recipe, i] = [next(results) for _ in seeds]
    rows = []
    for i, recipe in enumerate(step_recipe):
        narrow, wide = scored[recipe, i], scored[recipe, i + 1]
        top1 = [[_top1(r) * 100 for r in narrow], [_top1(r) * 100 for r in wide]]
        loss = [[_loss(r) for r in narrow], [_loss(r) for r in wide]]
        gap, sd = statistics.fmean(top1[1]) - statistics.fmean(top1[0]), _pooled_sd(top1)
        loss_gap, loss_sd = statistics.fmean(loss[0]) - statistics.fmean(loss[1]), _pooled_sd(loss)
        rows.append({
            "from_scale": scales[i], "to_scale": scales[i + 1],
            "from_mflops": mflops[i], "to_mflops": mflops[i + 1],
            "from_top1_by_seed": top1[0], "to_top1_by_seed": top1[1],
            "gap_pts": gap, "seed_spread_pts": sd, "gap_over_spread": gap / sd if sd > 0 else math.inf,
            "chance_ordered": _chance_ordered(gap, sd),
            "loss_gap": loss_gap, "loss_chance_ordered": _chance_ordered(loss_gap, loss_sd),
            "recipe_changes": _difference(recipe, recipe_of(0.0)),
        })  # fmt: skip
    return {"groups": groups, "rows": rows, "trusted_up_to_mflops": trusted_up_to(rows),
            "trusted_up_to_mflops_by_loss": trusted_up_to(rows, "loss_chance_ordered"),
            **_provenance(recipe_of(0.0), dataset, seeds, [r for runs in scored.values() for r in runs])}  # fmt: skip


def trusted_up_to(rows: Sequence[dict[str, Any]], chance: str = "chance_ordered") -> float | None:
    """The largest budget (MFLOPs) below which every width step is resolved; None if the first is not."""
    trusted = None
    for row in rows:
        if row[chance] < TRUSTED_CHANCE:
            break
        trusted = row["to_mflops"]
    return trusted


def _chance_ordered(gap: float, sd: float) -> float:
    """P(one run of each puts the better first): the difference of two runs has sd * sqrt(2)."""
    if sd <= 0:
        return 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
    return round(0.5 * (1 + math.erf(gap / (sd * math.sqrt(2)) / math.sqrt(2))), 3)


def _pooled_sd(groups: Sequence[Sequence[float]]) -> float:
    """One run's standard deviation, pooled over groups of seeds (0 with one seed)."""
    variances = [statistics.variance(g) for g in groups if len(g) > 1]
    return math.sqrt(statistics.fmean(variances)) if variances else 0.0


def _top1(result: TrainResult) -> float:
    return result.top1 if result.status == "ok" and result.top1 is not None else 0.0


def _loss(result: TrainResult) -> float:
    return result.test_loss if result.status == "ok" and result.test_loss is not None else math.inf


def _difference(recipe: Fidelity, base: Fidelity) -> dict[str, Any]:
    wanted, plain = recipe.to_dict(), base.to_dict()
    return {k: v for k, v in wanted.items() if plain[k] != v}


def _provenance(fidelity: Fidelity, dataset: ImageDataset, seeds: Sequence[int], runs: Sequence[TrainResult]) -> dict:
    """What was trained, on what, and at what cost (cached runs count their stored cost)."""
    return {
        "fidelity": fidelity.to_dict(),
        "dataset": f"{dataset.name}:{dataset.fingerprint}",
        "seeds": list(seeds),
        "cpu_minutes": sum(r.cpu_seconds for r in runs) / 60,
        "cached_runs": sum(r.cached for r in runs),
    }
