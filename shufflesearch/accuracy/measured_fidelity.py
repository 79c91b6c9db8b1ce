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
    chance: float  # that one run of each orders them right: Phi(gap / (spread * sqrt 2))
    seeds: tuple[int, ...]
    measured: str


# docs/fidelity.md, "Resolving power by budget": the ladders measured, step by step.
MEASURED_STEPS: tuple[MeasuredStep, ...] = ()


def resolving_verdict(dataset: str, recipe: dict[str, Any], budget_mflops: float) -> tuple[bool | None, str]:
    """Whether this recipe resolves a search at `budget_mflops` (True / False / None: never measured), in a sentence.

    The step that decides is the measured width step spanning the budget (the first whose wider network
    costs at least the budget): a budget's candidates are told apart as well as that step's two networks.
    """
    from .resolution import TRUSTED_CHANCE

    wanted = recipe_key(recipe)
    steps = sorted((s for s in MEASURED_STEPS if s.dataset == dataset and recipe_key(s.recipe.to_dict()) == wanted),
                   key=lambda s: s.to_mflops)  # fmt: skip
    if not steps:
        return None, ("its resolving power was never measured for this recipe: measure it with `shufflesearch "
                      "resolution` (docs/fidelity.md)")  # fmt: skip
    step = next((s for s in steps if s.to_mflops >= budget_mflops), None)
    if step is None:
        return None, (f"{budget_mflops:g} MFLOPs lies past the largest width step measured for this recipe "
                      f"({steps[-1].to_mflops:.0f} MFLOPs): its resolving power there is unknown")  # fmt: skip
    said = (f"networks one width step apart there ({step.from_mflops:.0f} -> {step.to_mflops:.0f} MFLOPs, g3) score "
            f"{step.gap_pts:+.2f} points apart against one run's seed spread of {step.spread_pts:.2f}, so one run "
            f"orders them right {100 * step.chance:.0f}% of the time (seeds {', '.join(map(str, step.seeds))}, "
            f"measured {step.measured}; docs/fidelity.md)")  # fmt: skip
    if step.chance >= TRUSTED_CHANCE:
        return True, f"{budget_mflops:g} MFLOPs is within this recipe's resolving power: {said}"
    return False, (f"{budget_mflops:g} MFLOPs lies beyond this recipe's resolving power: {said}, under "
                   f"{100 * TRUSTED_CHANCE:.0f}%; its winner is chosen inside the noise: read the race, or train this "
                   "budget longer ([accuracy.fidelity_by_budget])")  # fmt: skip
