"""The fidelity measured for training recipes: docs/fidelity.md's results as data, for reports to cite.

A proxy top-1 is only worth what its recipe's ranking of the paper's Table 2 models is worth
(Spearman's rho against their ImageNet top-1). A report looks its recipe up here; a recipe not
listed was never measured, and the report says so. Measured with `shufflesearch fidelity`
(`accuracy/fidelity.py`) on the whole Fashion-MNIST test split.

>>> measured_fidelity("fashion-mnist", DEFAULT_FIDELITY.to_dict()).spearman
0.971
>>> measured_fidelity("fashion-mnist", DEFAULT_FIDELITY.replace(epochs=1).to_dict()) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .recipe import DEFAULT_FIDELITY, Fidelity

__all__ = ["MEASURED", "MeasuredFidelity", "measured_fidelity"]


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
        loss = f", {self.spearman_test_loss:.3f} by test loss" if self.spearman_test_loss is not None else ""
        seeds = ", ".join(map(str, self.seeds))
        return (f"recipe {self.name} ranks the paper's 15 Table 2 models at Spearman {self.spearman:.3f} against "
                f"ImageNet top-1{loss} (seeds {seeds}, measured {self.measured}; docs/fidelity.md); its seed-to-seed "
                f"spread is {self.seed_spread_pts[0]:.2f} points of top-1 on average, {self.seed_spread_pts[1]:.2f} "
                "at most")  # fmt: skip


# Only recipes measured as they are defined here: the earlier recipes of docs/fidelity.md ran with
# settings since changed, so they are not listed as if they were today's.
MEASURED = (
    MeasuredFidelity("R3 (the default)", "fashion-mnist", DEFAULT_FIDELITY, 0.971, (0, 1), 0.975, (0.36, 0.95),
                     "2026-11-23"),
)  # fmt: skip


def measured_fidelity(dataset: str, recipe: dict[str, Any]) -> MeasuredFidelity | None:
    """The measurement of exactly this recipe on this dataset (name, without a fingerprint), or None."""
    return next((m for m in MEASURED if m.dataset == dataset and m.recipe.to_dict() == recipe), None)
