"""The fidelity measured for training recipes: docs/fidelity.md's results as data, for reports to cite.

A proxy top-1 is only worth what its recipe's ranking of the paper's Table 2 models is worth
(Spearman's rho against their ImageNet top-1). A report looks its recipe up here; a recipe not
listed was never measured, and the report says so. Measured with `shufflesearch fidelity`
(`accuracy/fidelity.py`) on the split each recipe names.

>>> measured_fidelity("fashion-mnist", DEFAULT_FIDELITY.to_dict()).name
'R3 on the validation split (the default)'
>>> measured_fidelity("fashion-mnist", DEFAULT_FIDELITY.replace(scored_on="test").to_dict()).spearman
0.971
>>> measured_fidelity("fashion-mnist", DEFAULT_FIDELITY.replace(epochs=1).to_dict()) is None
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..complexity import count_complexity
from ..paper import TABLE2_TOP1_ERROR_PCT
from ..spec import ShuffleNetSpec
from .ranking import spearman
from .recipe import DEFAULT_FIDELITY, Fidelity, recipe_key

__all__ = ["MEASURED", "MEASURED_STEPS", "MeasuredFidelity", "MeasuredStep", "free_baselines", "measured_fidelity",
           "resolving_verdict"]  # fmt: skip


@dataclass(frozen=True)
class MeasuredFidelity:
    name: str  # as docs/fidelity.md calls the recipe
    dataset: str
    recipe: Fidelity
    spearman: float  # top-1 vs the paper's ImageNet top-1, 15 Table 2 models, mean over `seeds`
    seeds: tuple[int, ...]
    spearman_test_loss: float | None  # the same ranking by -test loss
    seed_spread_pts: tuple[float, float]  # per-model top-1 spread between the seeds: mean, max (points)
    measured: str  # date

    def sentence(self) -> str:
        loss = f", {self.spearman_test_loss:.3f} by its loss" if self.spearman_test_loss is not None else ""
        seeds = ", ".join(map(str, self.seeds))
        free = free_baselines()
        return (f"recipe {self.name} ranks the paper's 15 Table 2 models at Spearman {self.spearman:.3f} against "
                f"ImageNet top-1{loss} (seeds {seeds}, measured {self.measured}; docs/fidelity.md), where counting "
                f"parameters ranks them at {free['params']:.3f} and MFLOPs at {free['mflops']:.3f}; its seed-to-seed "
                f"spread is {self.seed_spread_pts[0]:.2f} points of top-1 on average, {self.seed_spread_pts[1]:.2f} "
                "at most")  # fmt: skip


# Only recipes measured as they are defined here: the earlier recipes of docs/fidelity.md ran with
# settings since changed, so they are not listed as if they were today's.
MEASURED = (
    MeasuredFidelity("R3 on the validation split (the default)", "fashion-mnist", DEFAULT_FIDELITY, 0.971, (0, 1),
                     0.971, (0.50, 1.13), "2026-12-02"),
    MeasuredFidelity("R3 on the test split", "fashion-mnist", DEFAULT_FIDELITY.replace(scored_on="test"), 0.971,
                     (0, 1), 0.975, (0.36, 0.95), "2026-11-23"),
)  # fmt: skip


@functools.cache
def free_baselines() -> dict[str, float]:
    """What ranking the 15 Table 2 models by a free count gives: Spearman of #params and of MFLOPs (closed
    form, as `analyze`) against the paper's ImageNet top-1, the baseline beside every proxy figure.

    >>> {k: round(v, 3) for k, v in free_baselines().items()}
    {'params': 0.986, 'mflops': 0.911}
    """
    models = sorted(TABLE2_TOP1_ERROR_PCT)
    costs = [count_complexity(ShuffleNetSpec(groups=g, scale=s)) for g, s in models]
    truth = [-TABLE2_TOP1_ERROR_PCT[m] for m in models]
    return {"params": spearman([c.params for c in costs], truth), "mflops": spearman([c.mflops for c in costs], truth)}


def measured_fidelity(dataset: str, recipe: dict[str, Any]) -> MeasuredFidelity | None:
    """The measurement of exactly this recipe on this dataset (name, without a fingerprint), or None."""
    wanted = recipe_key(recipe)
    return next((m for m in MEASURED if m.dataset == dataset and recipe_key(m.recipe.to_dict()) == wanted), None)


@dataclass(frozen=True)
class MeasuredStep:
    """One width step of a recipe's resolving-power ladder (`accuracy.resolution.resolving_power`, g = 3)."""

    dataset: str
    recipe: Fidelity  # both networks of the step trained with it (a budget-scaled study: the wider one's budget)
    from_mflops: float
    to_mflops: float
    gap_pts: float  # mean top-1 of the wider minus the narrower, points
    spread_pts: float  # one run's top-1 standard deviation, pooled over the two
    chance: float  # that one run of each orders them right by top-1: Phi(gap / (spread * sqrt 2))
    loss_chance: float  # the same by the loss
    seeds: tuple[int, ...]
    measured: str


def _ladder(recipe: Fidelity, steps: tuple) -> tuple[MeasuredStep, ...]:
    return tuple(MeasuredStep("fashion-mnist", recipe, *step, (0, 1, 2), "2026-12-02") for step in steps)


# docs/fidelity.md, "Resolving power by budget": the ladders measured (`shufflesearch resolution`, g3, seeds
# 0-2, validation split), step by step: from and to MFLOPs, gap, spread, chance by top-1, by loss.
MEASURED_STEPS: tuple[MeasuredStep, ...] = _ladder(DEFAULT_FIDELITY, (
    (11.0, 37.6, 2.31, 0.47, 1.0, 1.0), (37.6, 79.7, 0.23, 0.28, 0.718, 0.759),
    (79.7, 137.5, 0.47, 0.30, 0.871, 0.992), (137.5, 207.4, 0.62, 0.28, 0.944, 0.9),
)) + _ladder(DEFAULT_FIDELITY.replace(epochs=4.0), (  # the bigger budgets of `60 = { epochs = 4 }`
    (37.6, 79.7, 0.50, 0.25, 0.92, 0.987), (79.7, 137.5, 0.20, 0.25, 0.715, 0.969),
))  # fmt: skip
# The width rule rounds channels, so a ladder's networks land near, not on, round budgets (1x g3 costs
# 138 MFLOPs, the paper's 140): a step speaks for budgets up to this factor past its wider network.
STEP_REACH = 1.1


def resolving_verdict(dataset: str, recipe: dict[str, Any], budget_mflops: float,
                      rank_by: str = "top1") -> tuple[bool | None, str]:  # fmt: skip
    """Whether this recipe resolves a search at `budget_mflops` (True / False / None: never measured), in a sentence,
    for a study ranking by `rank_by` ("top1" or "loss": each has its own measured chance).

    The step that decides is the measured width step the budget falls in (the first whose wider network
    costs at least the budget, within `STEP_REACH`): a budget's candidates, which cost up to the budget,
    are told apart as well as that step's two networks.
    """
    from .resolution import TRUSTED_CHANCE

    wanted = recipe_key(recipe)
    steps = sorted((s for s in MEASURED_STEPS if s.dataset == dataset and recipe_key(s.recipe.to_dict()) == wanted),
                   key=lambda s: s.to_mflops)  # fmt: skip
    if not steps:
        return None, ("its resolving power was never measured for this recipe: measure it with `shufflesearch "
                      "resolution` (docs/fidelity.md)")  # fmt: skip
    step = next((s for s in steps if s.to_mflops * STEP_REACH >= budget_mflops), None)
    if step is None or budget_mflops * STEP_REACH < step.from_mflops:
        return None, (f"{budget_mflops:g} MFLOPs lies outside the width steps measured for this recipe "
                      f"({steps[0].from_mflops:.0f}-{steps[-1].to_mflops:.0f} MFLOPs): its resolving power there "
                      "is unknown")  # fmt: skip
    chance = step.loss_chance if rank_by == "loss" else step.chance
    said = (f"networks one width step apart there ({step.from_mflops:.0f} -> {step.to_mflops:.0f} MFLOPs, g3) score "
            f"{step.gap_pts:+.2f} points of top-1 apart against one run's seed spread of {step.spread_pts:.2f}, so one "
            f"run orders them right by {'its loss' if rank_by == 'loss' else 'top-1'} {100 * chance:.0f}% of the time "
            f"(seeds {', '.join(map(str, step.seeds))}, measured {step.measured}; docs/fidelity.md)")  # fmt: skip
    if chance >= TRUSTED_CHANCE:
        return True, f"{budget_mflops:g} MFLOPs is within this recipe's resolving power: {said}"
    return False, (f"{budget_mflops:g} MFLOPs lies beyond this recipe's resolving power: {said}, under "
                   f"{100 * TRUSTED_CHANCE:.0f}%; its winner is chosen inside the noise: read the race, rank by loss, or "
                   "scale this budget's recipe ([accuracy.fidelity_by_budget]) and measure it (`shufflesearch "
                   "resolution --study`)")  # fmt: skip
