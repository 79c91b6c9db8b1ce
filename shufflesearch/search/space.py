"""The search space, and the one function that turns an Optuna trial into a spec.

Budgets are exact because MFLOPs are known in closed form: a trial first picks groups,
stage depths and the other discrete choices, then a `width` in [0, 1] that indexes the
ladder of distinct widths that fit the budget for those choices (0 = narrowest, 1 = widest).
No sampled spec is ever over budget, and the constraints are still recorded on the trial so
Optuna's constrained samplers see them. A latency budget (milliseconds on one predictor,
e.g. a lookup table) cuts the same ladder by predicted latency: both budgets must hold.
Beside the index each trial records what a person reads: its `scale` and the share of the
budget it spends (`budget_used`); optuna-dashboard lists them with the parameters.
(Sampling that share instead cost TPE 1.7x the trials to find the best network: a choice's
ladder spans only part of the shares, so most of the range maps to one width.)

>>> from optuna.trial import FixedTrial
>>> space = SearchSpace()
>>> trial = FixedTrial({"groups": 3, "repeats2": 4, "repeats3": 8, "repeats4": 4, "width": 1.0})
>>> spec = suggest_spec(trial, space, (0, 40))
>>> spec.stage_channels, count_macs(spec) <= 40e6, trial.user_attrs["scale"], round(trial.user_attrs["budget_used"], 2)
((120, 240, 480), True, 0.5, 0.94)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..complexity import count_macs
from ..spec import GROUP_CHOICES, ShuffleNetSpec, SpecError

# Optuna 5 stores each named constraint under "constraints:<name>"; optuna-dashboard (0.21) and
# Optuna before 5 read only the list under "constraints" (what `constraints_func` still writes).
LEGACY_CONSTRAINTS = "constraints"


class NoFeasibleWidth(Exception):
    """The discrete choices of a trial leave no width within the budget."""


@dataclass(frozen=True)
class LatencyBudget:
    """A latency window in ms on one predictor: `predict_ms(spec)`, e.g. a LatencyTable's.

    `predictor` says what predicts (a table and where its blocks came from), for records.
    """

    window_ms: tuple[float, float]
    predict_ms: Callable[[ShuffleNetSpec], float] = field(compare=False)
    predictor: str = ""

    def admits(self, spec: ShuffleNetSpec) -> bool:
        return self.window_ms[0] <= self.predict_ms(spec) <= self.window_ms[1]


def constraint_names(latency: LatencyBudget | None = None) -> list[str]:
    """The trial constraints, in the order of the list optuna-dashboard reads (feasible when <= 0)."""
    names = ["mflops_over_budget", "mflops_under_minimum"]
    return [*names, "latency_ms_over_budget", "latency_ms_under_minimum"] if latency is not None else names


@dataclass(frozen=True)
class SearchSpace:
    """Which variants a study may sample. Ranges are inclusive; MFLOPs are counted on
    `resolution` px and `num_classes` classes (224 and 1000: the paper's convention)."""

    groups: tuple[int, ...] = GROUP_CHOICES
    scale: tuple[float, float] = (0.1, 2.0)
    scale_step: float = 0.05
    repeats: tuple[tuple[int, int], ...] = ((2, 6), (4, 10), (2, 6))
    bottleneck_ratio: tuple[float, ...] = (0.25,)
    shuffle: tuple[bool, ...] = (True,)
    resolution: int = 224
    num_classes: int = 1000
    _ladders: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def scales(self) -> tuple[float, ...]:
        lo, hi = self.scale
        steps = math.floor((hi - lo) / self.scale_step + 1e-9)
        return tuple(round(lo + i * self.scale_step, 6) for i in range(steps + 1))

    def spec(self, groups: int, repeats: tuple[int, ...], scale: float, bottleneck: float = 0.25, shuffle: bool = True):
        return ShuffleNetSpec(
            groups=groups, scale=scale, repeats=tuple(repeats), bottleneck_ratio=bottleneck, shuffle=shuffle,
            resolution=self.resolution, num_classes=self.num_classes,
        )  # fmt: skip

    def sample(self, n: int, seed: int = 0) -> list[ShuffleNetSpec]:
        """`n` uniformly random specs of the space (seeded): what a latency table is checked on."""
        import random

        rng, specs = random.Random(seed), []
        for _ in range(1000 * n):
            if len(specs) == n:
                break
            repeats = tuple(rng.randint(lo, hi) for lo, hi in self.repeats)
            g, scale = rng.choice(self.groups), rng.choice(self.scales())
            bottleneck, shuffle = (
                c[0] if len(c) == 1 else rng.choice(c) for c in (self.bottleneck_ratio, self.shuffle)
            )
            try:
                specs.append(self.spec(g, repeats, scale, bottleneck, shuffle))
            except SpecError:
                continue  # as width_ladder: not every scale gives valid widths
        return specs

    def width_ladder(self, groups: int, repeats: tuple[int, ...], bottleneck: float, shuffle: bool):
        """Distinct (scale, MACs) pairs for these choices, narrowest first (memoised)."""
        key = (groups, tuple(repeats), bottleneck, shuffle)
        if key not in self._ladders:
            seen, ladder = set(), []
            for s in self.scales():
                try:
                    spec = self.spec(groups, repeats, s, bottleneck, shuffle)
                except SpecError:
                    continue
                widths = (spec.stem_channels, spec.stage_channels)
                if widths not in seen:
                    seen.add(widths)
                    ladder.append((s, count_macs(spec)))
            self._ladders[key] = tuple(sorted(ladder, key=lambda sm: sm[1]))
        return self._ladders[key]

    def feasible(self, groups, repeats, bottleneck, shuffle, budget: tuple[float, float],
                 latency: LatencyBudget | None = None):  # fmt: skip
        """The ladder's (scale, MACs) entries within `budget` MFLOPs and, if given, within `latency`."""
        lo, hi = budget[0] * 1e6, budget[1] * 1e6
        ladder = [(s, m) for s, m in self.width_ladder(groups, repeats, bottleneck, shuffle) if lo <= m <= hi]
        if latency is None:
            return ladder
        return [(s, m) for s, m in ladder if latency.admits(self.spec(groups, repeats, s, bottleneck, shuffle))]

    def discrete_choices(self):
        repeat_ranges = [range(lo, hi + 1) for lo, hi in self.repeats]
        return itertools.product(self.groups, itertools.product(*repeat_ranges), self.bottleneck_ratio, self.shuffle)

    def candidates(self, budget: tuple[float, float], latency: LatencyBudget | None = None) -> list[ShuffleNetSpec]:
        """Every distinct spec of the space whose MFLOPs lie within `budget` (min, max), and within `latency`."""
        return [
            self.spec(g, r, s, b, sh)
            for g, r, b, sh in self.discrete_choices()
            for s, _ in self.feasible(g, r, b, sh, budget, latency)
        ]

    @functools.cached_property
    def mflops_range(self) -> tuple[float, float]:
        """Smallest and largest MFLOPs any spec of the space reaches."""
        macs = [m for choice in self.discrete_choices() for _, m in self.width_ladder(*choice)]
        return min(macs) / 1e6, max(macs) / 1e6

    def budget_used(self, groups, repeats, bottleneck, shuffle, entry: tuple[float, float], budget,
                    latency: LatencyBudget | None = None) -> float:  # fmt: skip
        """The share of the budget the ladder's `entry` (scale, MACs) spends: of the closer budget, if two."""
        share = entry[1] / (budget[1] * 1e6)
        if latency is None:
            return share
        spec = self.spec(groups, repeats, entry[0], bottleneck, shuffle)
        return max(share, latency.predict_ms(spec) / latency.window_ms[1])

    def to_params(self, spec: ShuffleNetSpec, budget: tuple[float, float],
                  latency: LatencyBudget | None = None) -> dict | None:  # fmt: skip
        """Trial parameters that reproduce `spec` (to enqueue a preset), or None if outside the space/budget."""
        choice = (spec.groups, spec.repeats, spec.bottleneck_ratio, spec.shuffle)
        if choice not in set(self.discrete_choices()):
            return None
        ladder = self.feasible(*choice, budget, latency)
        target = count_macs(spec.replace(resolution=self.resolution, num_classes=self.num_classes))
        index = next((i for i, (_, m) in enumerate(ladder) if m == target), None)
        if index is None:
            return None
        params = {"groups": spec.groups, **{f"repeats{i + 2}": n for i, n in enumerate(spec.repeats)}}
        params["width"] = index / (len(ladder) - 1) if len(ladder) > 1 else 0.5
        if len(self.bottleneck_ratio) > 1:
            params["bottleneck_ratio"] = spec.bottleneck_ratio
        if len(self.shuffle) > 1:
            params["shuffle"] = spec.shuffle
        return params


def specs_for_table(space: SearchSpace | None, table, n: int, seed: int = 1) -> list[ShuffleNetSpec]:
    """`n` random specs of `space` (default: the default space) as `table` (a LatencyTable) was built for.

    Resolution, classes, input channels and stem are the table's, so each spec is one the
    table can predict and its target can measure whole: what `lut validate` checks.
    """
    space = dataclasses.replace(
        SearchSpace() if space is None else space, resolution=table.resolution, num_classes=table.num_classes
    )
    return [s.replace(in_channels=table.in_channels, stem=table.stem) for s in space.sample(n, seed)]


def suggest_spec(trial, space: SearchSpace, budget: tuple[float, float],
                 latency: LatencyBudget | None = None) -> ShuffleNetSpec:  # fmt: skip
    """Sample a spec within `budget` = (min, max) MFLOPs (and `latency`); the only code that touches `optuna.Trial`.

    Raises NoFeasibleWidth (after recording the violated constraints) when the sampled
    discrete choices admit no width in the budget: nothing is trained for such a trial.
    """
    groups = trial.suggest_categorical("groups", space.groups)
    repeats = tuple(trial.suggest_int(f"repeats{i + 2}", lo, hi) for i, (lo, hi) in enumerate(space.repeats))
    bottleneck = space.bottleneck_ratio[0]
    if len(space.bottleneck_ratio) > 1:
        bottleneck = trial.suggest_categorical("bottleneck_ratio", space.bottleneck_ratio)
    shuffle = space.shuffle[0]
    if len(space.shuffle) > 1:
        shuffle = trial.suggest_categorical("shuffle", space.shuffle)
    width = trial.suggest_float("width", 0.0, 1.0)
    ladder = space.feasible(groups, repeats, bottleneck, shuffle, budget, latency)
    if not ladder:
        within_mflops = space.feasible(groups, repeats, bottleneck, shuffle, budget)
        scale, macs = (within_mflops or space.width_ladder(groups, repeats, bottleneck, shuffle))[0]
        narrowest = space.spec(groups, repeats, scale, bottleneck, shuffle)
        _record_constraints(trial, macs / 1e6, budget, narrowest, latency)
        why = f"costs {macs / 1e6:.1f} MFLOPs, outside the budget {budget[0]:g}-{budget[1]:g}"
        if within_mflops:
            why = (f"is predicted at {latency.predict_ms(narrowest):.1f} ms, outside the latency budget "
                   f"{latency.window_ms[0]:g}-{latency.window_ms[1]:g} ms")  # fmt: skip
        raise NoFeasibleWidth(f"groups={groups} repeats={repeats}: the narrowest width {why}")
    chosen = min(int(width * len(ladder)), len(ladder) - 1)
    scale, macs = ladder[chosen]
    spec = space.spec(groups, repeats, scale, bottleneck, shuffle)
    _record_constraints(trial, macs / 1e6, budget, spec, latency)
    # What a person reads beside the parameters (optuna-dashboard lists a trial's user attrs).
    trial.set_user_attr("scale", scale)
    trial.set_user_attr("budget_used", space.budget_used(groups, repeats, bottleneck, shuffle, ladder[chosen], budget,
                                                         latency))  # fmt: skip
    return spec


def _record_constraints(trial, mflops: float, budget, spec: ShuffleNetSpec, latency: LatencyBudget | None) -> None:
    """Feasible when <= 0 (Optuna's convention): by name (Optuna 5) and as the list optuna-dashboard reads.

    Optuna 5 reads both forms, so its samplers see each violation twice: the same trials are
    feasible, and a sum of violations (TPE, NSGA-II) doubles for every trial alike, which keeps their order.
    """
    values = [mflops - budget[1], budget[0] - mflops]
    if latency is not None:
        ms = latency.predict_ms(spec)
        values += [ms - latency.window_ms[1], latency.window_ms[0] - ms]
    for name, value in zip(constraint_names(latency), values, strict=True):
        trial.set_constraint(name, value)
    if getattr(trial, "storage", None) is not None:  # a FixedTrial has no storage
        trial.storage.set_trial_system_attr(trial._trial_id, LEGACY_CONSTRAINTS, values)


__all__ = [
    "LEGACY_CONSTRAINTS",
    "LatencyBudget",
    "NoFeasibleWidth",
    "SearchSpace",
    "constraint_names",
    "specs_for_table",
    "suggest_spec",
]
