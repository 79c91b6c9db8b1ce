"""A study as data: what a study file says, validated (`study_file.load_study` makes one), and the
budget windows it searches, each an Optuna study of its own, with the recipe that window trains with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..accuracy.recipe import DEFAULT_FIDELITY, Fidelity
from .space import SearchSpace

__all__ = ["StudyConfig"]


@dataclass(frozen=True)
class StudyConfig:
    name: str
    path: Path
    mode: str = "per-budget"
    trials: int = 20  # per budget in per-budget mode, in all in pareto mode
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "hyperband"
    storage: str | None = None  # None: the embedded SQLite file beside the study file
    enqueue_presets: bool = True
    repeat_specs: bool = False  # True: a spec may be trained again (else the queue samples a distinct one)
    budgets: tuple[float, ...] = ()  # per-budget mode, MFLOPs
    latency_budgets: tuple[float, ...] = ()  # ms on `lut`'s predictor; with `budgets`, paired: both must hold
    min_fraction: float = 0.5  # per-budget: sample specs between min_fraction*budget and budget
    budget_range: tuple[float, float] = (10.0, 150.0)  # pareto mode
    space: SearchSpace = field(default_factory=SearchSpace)
    second_objective: str = "mflops"  # pareto mode
    rank_by: str = "top1"  # one of RANK_BY: the first objective, what prunes and what picks each budget's winner
    lut: str | None = None  # the one latency predictor: a shipped table's name ("snapdragon820") or a table file
    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    fidelity: Fidelity = DEFAULT_FIDELITY  # the default recipe with the file's [accuracy.fidelity] overrides
    # per-budget: (MFLOPs, recipe) ascending; a budget above MFLOPs trains with that recipe (the last such)
    fidelity_by_budget: tuple[tuple[float, Fidelity], ...] = ()
    # auto: a GPU when there is one (each local worker its own), else the CPU. Results record
    # the device, and the result cache keeps CPU and GPU results apart.
    device: str = "auto"
    keep_weights: str = "best"
    finalists: int = 3  # per-budget: the best trials raced on more seeds after the search (0 or 1: no race)
    race_seeds: int = 4  # the seed cap of a race: each finalist's seeds, the search's one included
    artifacts: str | None = None  # None: the folder beside the study file; else a folder, s3://bucket or gs://bucket

    def fidelity_for(self, budget_mflops: float) -> Fidelity:
        """The recipe a budget's candidates train with: `fidelity`, or the last `fidelity_by_budget` tier below it."""
        return next((f for above, f in reversed(self.fidelity_by_budget) if budget_mflops > above), self.fidelity)

    def window_fidelity(self, name: str) -> Fidelity:
        """The recipe of study window `name` (its MFLOPs budget picks the tier)."""
        return self.fidelity_for(self.budget_windows()[name][1]) if self.fidelity_by_budget else self.fidelity

    def resolving_verdicts(self) -> dict[str, tuple[bool | None, str]]:
        """Study window -> whether its recipe resolves its MFLOPs budget, in a sentence
        (`measured_fidelity.resolving_verdict`; None: never measured). Latency-only windows have no MFLOPs budget."""
        from ..accuracy.measured_fidelity import resolving_verdict

        if self.mode == "per-budget" and not self.budgets:
            return {}
        return {name: resolving_verdict(self.dataset, self.window_fidelity(name).to_dict(), mflops[1], self.rank_by)
                for name, mflops in self.budget_windows().items()}  # fmt: skip

    def budget_windows(self) -> dict[str, tuple[float, float]]:
        """Optuna study name -> (min, max) MFLOPs: one per budget, or one for the whole front."""
        return {name: mflops for name, (mflops, _) in self._windows().items()}

    def budgeted(self) -> list[str]:
        """What bounds each window: "mflops" (a pareto range counts), "latency_ms", or both."""
        return ["mflops"] * bool(self.budgets or self.mode == "pareto") + ["latency_ms"] * bool(self.latency_budgets)

    def latency_windows(self) -> dict[str, tuple[float, float] | None]:
        """Optuna study name -> (min, max) predicted ms on `lut`, or None where only MFLOPs bound it."""
        return {name: ms for name, (_, ms) in self._windows().items()}

    def _windows(self) -> dict[str, tuple[tuple[float, float], tuple[float, float] | None]]:
        if self.mode == "pareto":  # one front; a latency budget there is a cap
            return {self.name: (self.budget_range, (0.0, self.latency_budgets[0]) if self.latency_budgets else None)}
        f, n = self.min_fraction, max(len(self.budgets), len(self.latency_budgets))
        mflops = [(b * f, b) for b in self.budgets] or [(0.0, self.space.mflops_range[1])] * n
        ms = [(t * f, t) for t in self.latency_budgets] or [None] * n
        names = [
            "-".join([self.name, *([f"{m[1]:g}M"] if self.budgets else []), *([f"{t[1]:g}ms"] if t else [])])
            for m, t in zip(mflops, ms, strict=True)
        ]
        return dict(zip(names, zip(mflops, ms, strict=True), strict=True))

    def default_storage(self) -> str:
        return f"sqlite:///{self.path.with_suffix('.db')}"

    def artifact_location(self) -> str:
        """Where trials' weights go: the file's `artifacts`, else `<study file>.artifacts/` beside it."""
        return self.artifacts or str(self.path.with_suffix(".artifacts"))
